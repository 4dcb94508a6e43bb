"""No 500s: lone surrogates are refused before anything is stored, error handlers cannot fail,
unexpected errors answer JSON with a request id, and batches can be deleted (issue 8, items 4, 16)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from edgemine.service.api import (
    routes_feedback,
    routes_health,
    routes_images,
    routes_labels,
    routes_mine,
    routes_scenarios,
)
from edgemine.service.api.errors import install_error_handlers
from edgemine.service.api.guard import GuardedRoute
from edgemine.service.api.request_ids import install_request_ids
from edgemine.service.api.safe_json import MAX_ITEMS, MAX_TEXT, safe_json
from tests.support.state_backend import state_of

Make = Callable[..., Any]
LONE = '"\\ud800"'  # the JSON escape of a lone high surrogate, as raw JSON text
PAIR = '"\\ud83d\\ude00"'  # an escaped emoji: a valid surrogate pair

# (route, raw JSON body with POS/POS2 for real ids and LONE for the bad string): every string field.
BODIES: list[tuple[str, str]] = [
    ("/v1/mine", '{"positive_ids": [LONE]}'),
    ("/v1/mine", '{"positive_ids": ["POS"], "negative_ids": [LONE]}'),
    ("/v1/mine", '{"texts": [LONE]}'),
    ("/v1/mine", '{"positive_ids": ["POS"], "negative_texts": [LONE]}'),
    ("/v1/mine", '{"positive_ids": ["POS"], "exclude_ids": [LONE]}'),
    ("/v1/mine", '{"positive_ids": ["POS"], "strategy": LONE}'),
    ("/v1/mine", '{"positive_ids": ["POS"], "group_by": LONE, "max_per_group": 1}'),
    ("/v1/mine", '{"positive_ids": ["POS"], "filters": {LONE: 1}}'),
    ("/v1/mine", '{"positive_ids": ["POS"], "filters": {"time_of_day": LONE}}'),
    ("/v1/mine", '{"positive_ids": ["POS"], "filters": {"time_of_day": {"in": ["day", LONE]}}}'),
    ("/v1/mine", '{"positive_ids": ["POS"], "include_states": [LONE]}'),
    ("/v1/mine", '{"positive_ids": ["POS"], LONE: 1}'),
    ("/v1/batches", '{"name": LONE, "items": [{"image_id": "POS"}]}'),
    ("/v1/batches", '{"name": "b", "items": [{"image_id": LONE}]}'),
    ("/v1/batches", '{"name": "b", "items": [{"image_id": "POS", "nearest_example_id": LONE}]}'),
    ("/v1/batches", '{"name": "b", "items": [{"image_id": "POS", LONE: "extra"}]}'),
    ("/v1/batches", '{"name": "b", "items": [{"image_id": "POS"}], "query": {"texts": [LONE]}}'),
    ("/v1/batches", '{"name": "b", "items": [{"image_id": "POS"}], "query": {LONE: 1}}'),
    ("/v1/labels", '{"image_ids": [LONE]}'),
    ("/v1/labels", '{"image_ids": ["POS"], "state": LONE}'),
    ("/v1/scenarios", '{"name": LONE, "ids": ["POS"]}'),
    ("/v1/scenarios", '{"name": "s", "ids": [LONE]}'),
    ("/v1/scenarios", '{"name": "s", "ids": ["POS"], "description": LONE}'),
    ("/v1/scenarios", '{"name": "s", "query": {"texts": [LONE]}}'),
    ("/v1/scenarios", '{"name": "s", "ids": ["POS"], "metric": {"name": "accuracy", "classes": [LONE]}}'),
    ("/v1/evaluations", '{"model": LONE}'),
    ("/v1/evaluations", '{"model": "v8", "baseline": LONE}'),
    ("/v1/evaluations", '{"model": "v8", "scenarios": [LONE]}'),
    ("/v1/evaluations", '{"model": "v8", "slice_by": [LONE]}'),
]


def fill(text: str, bundle: Any) -> str:
    return text.replace("LONE", LONE).replace('"POS"', json.dumps(bundle.ids[0]))


def assert_nothing_stored(client: TestClient) -> None:
    assert client.get("/v1/health").json()["counts"]["unlabeled"] == 30
    assert client.get("/v1/batches").json() == []


@pytest.mark.parametrize(("route", "body"), BODIES, ids=[f"{r}:{b[:60]}" for r, b in BODIES])
def test_lone_surrogate_in_any_json_string_field_is_422(image_bundle: Any, open_client: Make, route: str,
                                                        body: str) -> None:
    client = open_client(image_bundle.path, raise_server_exceptions=False)
    response = client.post(route, content=fill(body, image_bundle), headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert errors[0]["type"] == "unicode_surrogate" and errors[0]["loc"][0] == "body"
    assert "surrogate" in errors[0]["msg"]
    assert_nothing_stored(client)


def test_lone_surrogate_in_form_and_query_parameters_is_422(image_bundle: Any, open_client: Make) -> None:
    client = open_client(image_bundle.path, raise_server_exceptions=False)
    png = (image_bundle.image_root / image_bundle.ids[0]).read_bytes()
    for query in ('{"texts": [LONE]}', '{"positive_ids": [LONE]}', '{"filters": {"time_of_day": LONE}}'):
        response = client.post("/v1/mine/upload", data={"query": query.replace("LONE", LONE)},
                               files=[("files", ("x.png", png, "image/png"))])
        assert response.status_code == 422, (query, response.text)
    for params in ({"filters": '{"time_of_day": "\\ud800"}'}, {"filters": '{"\\udc00": 1}'},
                   {"contains": LONE}, {"filters": "{}", "contains": f"[{LONE}]"}):
        response = client.get("/v1/images", params=params)
        assert response.status_code == 422, (params, response.text)
        assert "surrogate" in response.text
    # Text that is not JSON stays text: a search for the six characters \ud800 is legal (and finds nothing).
    plain = client.get("/v1/images", params={"contains": "\\ud800"})
    assert plain.status_code == 200 and plain.json()["items"] == []
    assert_nothing_stored(client)


def asgi_get(app: Any, path: str) -> tuple[int, dict[str, str], bytes]:
    """Send a GET straight to the ASGI app: a server decoding leniently could pass such paths."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode("utf-8", "surrogatepass"), "root_path": "",
             "query_string": b"", "headers": [(b"host", b"testserver")], "server": ("testserver", 80),
             "client": ("testclient", 1)}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, body


def test_lone_surrogate_in_path_parameters_is_422(image_bundle: Any, open_client: Make) -> None:
    client = open_client(image_bundle.path, raise_server_exceptions=False)
    for path in ("/v1/images/a\ud800.png", "/v1/batches/b-\udfff", "/v1/batches/b-\ud800/export",
                 "/v1/scenarios/s-\ud800"):
        status, headers, body = asgi_get(client.app, path)
        assert status == 422, (path, body)
        assert json.loads(body)["detail"][0]["loc"][0] == "path" and "x-request-id" in headers
    # Over HTTP the encoded bytes of a surrogate are not UTF-8: decoded as U+FFFD, an unknown id.
    response = client.get("/v1/images/%ED%A0%80")
    assert response.status_code == 404 and response.json()["unknown_ids"] == ["\ufffd" * 3]
    assert client.get("/v1/batches/%ED%A0%80").status_code == 404


def test_valid_pairs_and_escaped_backslashes_are_kept(image_bundle: Any, open_client: Make) -> None:
    client = open_client(image_bundle.path)
    body = '{"name": PAIR, "items": [{"image_id": "POS"}], "query": {"texts": ["\\\\ud800", PAIR]}}'
    response = client.post("/v1/batches", content=fill(body.replace("PAIR", PAIR), image_bundle),
                           headers={"content-type": "application/json"})
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "\U0001F600"
    assert response.json()["query"] == {"texts": ["\\ud800", "\U0001F600"]}
    mined = client.post("/v1/mine", content=f'{{"texts": [{PAIR}, "\\\\udc00"], "k": 2}}',
                        headers={"content-type": "application/json"})
    assert mined.status_code == 200, mined.text


def test_batch_stored_with_bad_text_by_an_older_version_is_listed_and_deletable(image_bundle: Any,
                                                                                open_client: Make) -> None:
    client = open_client(image_bundle.path)
    ids = image_bundle.ids[:3]
    created = client.post("/v1/batches", json={"name": "old", "items": [{"image_id": i} for i in ids]})
    batch_id = created.json()["batch_id"]
    # What versions without the check stored for {"query": {"note": "\ud800"}}: json.dumps escapes it.
    with state_of(image_bundle.path).write() as db:
        db.execute("UPDATE batches SET query = ? WHERE batch_id = ?", (json.dumps({"note": "\ud800"}), batch_id))
        db.execute("UPDATE batch_items SET nearest_example_id = ? WHERE batch_id = ?", ("\\ud800", batch_id))
    listed = client.get("/v1/batches")
    assert listed.status_code == 200, listed.text
    assert listed.json()[0]["query"] == {"note": "\ufffd"}
    one = client.get(f"/v1/batches/{batch_id}")
    assert one.status_code == 200 and one.json()["query"] == {"note": "\ufffd"}
    for fmt in ("jsonl", "csv", "labelstudio"):
        assert client.get(f"/v1/batches/{batch_id}/export", params={"format": fmt}).status_code == 200
    deleted = client.delete(f"/v1/batches/{batch_id}")
    assert deleted.status_code == 200 and deleted.json() == {"batch_id": batch_id, "released": 3}
    assert client.get("/v1/batches").json() == []
    assert client.get("/v1/health").json()["counts"]["unlabeled"] == 30


def test_deleting_a_batch_releases_its_queued_images_only(image_bundle: Any, open_client: Make) -> None:
    client = open_client(image_bundle.path)
    ids = image_bundle.ids[:4]
    first = client.post("/v1/batches", json={"name": "a", "items": [{"image_id": i} for i in ids[:3]]}).json()
    assert client.post("/v1/labels", json={"image_ids": [ids[0]]}).json()["changed"] == 1
    # ids[1] is unqueued by hand and re-queued by a later batch: it belongs to that batch now.
    client.post("/v1/labels", json={"image_ids": [ids[1]], "state": "unlabeled"})
    second = client.post("/v1/batches", json={"name": "b", "items": [{"image_id": i} for i in ids[1:]]}).json()
    assert second["skipped"] == [ids[2]] and second["size"] == 2
    query = {"positive_ids": [image_bundle.ids[10]], "k": 30}
    before = client.post("/v1/mine", json=query).json()["eligible"]

    response = client.delete(f"/v1/batches/{first['batch_id']}")
    assert response.status_code == 200 and response.json()["released"] == 1  # only ids[2]
    states = {item["image_id"]: item["state"] for item in client.get(f"/v1/batches/{second['batch_id']}")
              .json()["items"]}
    assert states == {ids[1]: "queued", ids[3]: "queued"}
    assert client.get("/v1/health").json()["counts"] == {"images": 30, "unlabeled": 27, "queued": 2, "labeled": 1,
                                                         "rejected": 0}
    after = client.post("/v1/mine", json=query).json()
    assert after["eligible"] == before + 1  # the miner sees the released image again
    assert [b["batch_id"] for b in client.get("/v1/batches").json()] == [second["batch_id"]]
    again = client.delete(f"/v1/batches/{first['batch_id']}")
    assert again.status_code == 404 and "unknown batch" in again.json()["detail"]


def test_a_batch_of_only_already_queued_images_is_refused(image_bundle: Any, open_client: Make) -> None:
    client = open_client(image_bundle.path)
    ids = image_bundle.ids[:15]
    client.post("/v1/batches", json={"name": "a", "items": [{"image_id": i} for i in ids[:14]]})
    client.post("/v1/labels", json={"image_ids": [ids[14]]})
    response = client.post("/v1/batches", json={"name": "again", "items": [{"image_id": i} for i in ids]})
    assert response.status_code == 409, response.text
    body = response.json()
    assert "all 15 images are already queued or labeled" in body["detail"]
    assert ids[0] in body["detail"] and "and 5 more" in body["detail"]  # listed, truncated
    assert body["skipped"] == sorted(ids)
    assert [b["name"] for b in client.get("/v1/batches").json()] == ["a"]  # nothing empty created


def test_unexpected_errors_answer_json_500_with_the_request_id(image_bundle: Any, open_client: Make,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    client = open_client(image_bundle.path, raise_server_exceptions=False)

    def broken(*_: Any) -> None:
        raise RuntimeError("simulated bug \ud800")

    monkeypatch.setattr(routes_labels, "list_batches", broken)
    with caplog.at_level(logging.ERROR, logger="edgemine.service"):
        response = client.get("/v1/batches")
    assert response.status_code == 500 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert body == {"detail": "internal error", "request_id": response.headers["x-request-id"]}
    assert len(body["request_id"]) >= 16
    logged = [r for r in caplog.records if body["request_id"] in r.getMessage()]
    assert logged and logged[0].exc_info is not None and "simulated bug" in str(logged[0].exc_info[1])


def test_every_response_carries_a_request_id(image_bundle: Any, open_client: Make) -> None:
    client = open_client(image_bundle.path)
    responses = [client.get("/v1/health"), client.get("/no/such/route"), client.post("/v1/mine", json={}),
                 client.get("/v1/images/nope.png"), client.get("/")]
    ids = [r.headers["x-request-id"] for r in responses]
    assert [r.status_code for r in responses] == [200, 404, 422, 404, 200]
    assert len(set(ids)) == len(ids) and all(len(i) == 32 for i in ids)
    assert client.get("/v1/health", headers={"X-Request-ID": "trace-42"}).headers["x-request-id"] == "trace-42"
    forged = client.get("/v1/health", headers={"X-Request-ID": "a b\tc" + "x" * 100}).headers["x-request-id"]
    assert forged != "a b\tc" + "x" * 100 and len(forged) == 32


def test_error_handlers_cannot_fail_on_what_they_echo() -> None:
    app = FastAPI()
    install_error_handlers(app)
    install_request_ids(app)

    @app.get("/http")
    def http() -> None:
        raise HTTPException(404, detail={"id": "\ud800", "score": math.nan, "big": 10**5000, "raw": b"\xff"})

    @app.get("/huge")
    def huge() -> None:
        raise HTTPException(413, detail="x" * 1_000_000)

    client = TestClient(app)
    response = client.get("/http")
    assert response.status_code == 404
    assert response.json()["detail"] == {"id": "\ufffd", "score": "nan", "big": "<integer of 16610 bits>",
                                         "raw": "\ufffd"}
    response = client.get("/huge")
    assert response.status_code == 413 and len(response.content) < MAX_TEXT + 100


def test_validation_errors_echo_bounded_json(image_bundle: Any, open_client: Make) -> None:
    client = open_client(image_bundle.path, raise_server_exceptions=False)
    # 5000 wrong-typed entries (under the list's length limit) give 5000 errors
    response = client.post("/v1/mine", content='{"positive_ids": ["a"], "exclude_ids": [' + ",".join(["1"] * 5000)
                           + '], "k": NaN}',
                           headers={"content-type": "application/json"})
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert len(errors) == MAX_ITEMS and errors[-1]["type"] == "truncated" and "more errors" in errors[-1]["msg"]
    assert all(set(e) >= {"loc", "msg", "type"} for e in errors)
    response = client.post("/v1/mine", json={"positive_ids": ["x" * 100_000, ""]})
    assert response.status_code == 422 and len(response.content) < 3 * MAX_TEXT


def test_safe_json_makes_anything_encodable() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    deep: Any = []
    for _ in range(50):
        deep = [deep]
    value = {"s": "a\udc80b", "\ud800key": 1, "f": [math.inf, -math.inf, math.nan, 1.5], "i": -(10**100),
             "b": b"\xff\xfe", "long": "y" * (MAX_TEXT + 5), "many": list(range(MAX_ITEMS + 7)),
             "deep": deep, "obj": Unprintable(), "set": {1}}
    out = safe_json(value)
    json.dumps(out, allow_nan=False).encode("utf-8")  # strict JSON, valid UTF-8
    assert out["s"] == "a\ufffdb" and out["\ufffdkey"] == 1 and out["f"] == ["inf", "-inf", "nan", 1.5]
    assert out["i"] == "<integer of 333 bits>" and out["b"] == "\ufffd\ufffd"
    assert out["long"].startswith("y" * MAX_TEXT) and out["long"].endswith(f"({MAX_TEXT + 5} characters)")
    assert len(out["many"]) == MAX_ITEMS + 1 and out["many"][-1] == "... 7 more"
    assert out["obj"] == "<unprintable Unprintable>" and out["set"] == [1]
    assert "..." in json.dumps(out["deep"])


def test_every_api_route_is_guarded() -> None:
    modules = (routes_mine, routes_labels, routes_images, routes_health, routes_feedback, routes_scenarios)
    routes = [r for m in modules for r in m.router.routes]
    api_routes = [r for r in routes if isinstance(r, APIRoute)]
    assert len(api_routes) >= 10
    assert all(isinstance(r, GuardedRoute) for r in api_routes), [r.path for r in api_routes
                                                                  if not isinstance(r, GuardedRoute)]
