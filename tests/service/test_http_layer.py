"""The HTTP layer's per-request work: pure ASGI middlewares, one threadpool hop, one serialization."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY
from starlette.middleware.base import BaseHTTPMiddleware

from edgemine.service.api import routes_labels
from edgemine.service.query import MineResult

Make = Callable[..., Any]


def requests_counted(method: str, route: str, status: str) -> float:
    value = REGISTRY.get_sample_value("edgemine_http_requests_total",
                                      {"method": method, "route": route, "status": status})
    return value or 0.0


def test_no_middleware_is_a_base_http_middleware(image_bundle: Any, open_client: Make) -> None:
    # BaseHTTPMiddleware runs each request through a task group and memory streams.
    client = open_client(image_bundle.path, cors_origins=["http://localhost:8080"], api_key="k" * 16)
    classes = [m.cls for m in client.app.user_middleware]  # type: ignore[attr-defined]
    assert classes, "the app has middlewares"
    assert not [c for c in classes if isinstance(c, type) and issubclass(c, BaseHTTPMiddleware)]


def test_request_counter_counts_route_templates_and_statuses(image_bundle: Any, open_client: Make) -> None:
    client = open_client(image_bundle.path)
    before_ok = requests_counted("POST", "/v1/mine", "200")
    before_bad = requests_counted("POST", "/v1/mine", "422")
    before_image = requests_counted("GET", "/v1/images/{image_id:path}", "404")
    before_none = requests_counted("GET", "unmatched", "404")
    assert client.post("/v1/mine", json={"positive_ids": image_bundle.ids[:2], "k": 3}).status_code == 200
    assert client.post("/v1/mine", json={"k": 3}).status_code == 422
    assert client.get("/v1/images/no-such.png").status_code == 404
    assert client.get("/no/such/route").status_code == 404
    assert requests_counted("POST", "/v1/mine", "200") == before_ok + 1
    assert requests_counted("POST", "/v1/mine", "422") == before_bad + 1
    assert requests_counted("GET", "/v1/images/{image_id:path}", "404") == before_image + 1
    assert requests_counted("GET", "unmatched", "404") == before_none + 1


def test_request_counter_counts_unexpected_errors_as_500(image_bundle: Any, open_client: Make,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    client = open_client(image_bundle.path, raise_server_exceptions=False)

    def broken(*_: Any) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(routes_labels, "list_batches", broken)
    before = requests_counted("GET", "/v1/batches", "500")
    assert client.get("/v1/batches").status_code == 500
    assert requests_counted("GET", "/v1/batches", "500") == before + 1


def test_mine_makes_one_threadpool_hop(image_bundle: Any, open_client: Make,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Each hop is a thread handoff and back; sync dependencies and response validation each added one.
    import anyio.to_thread

    client = open_client(image_bundle.path)
    calls: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(func: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(getattr(func, "__name__", repr(func)))
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    response = client.post("/v1/mine", json={"positive_ids": image_bundle.ids[:2], "k": 5})
    assert response.status_code == 200, response.text
    assert len(calls) == 1, calls


def test_mine_response_is_the_documented_model_in_json(image_bundle: Any, open_client: Make) -> None:
    client = open_client(image_bundle.path)
    response = client.post("/v1/mine", json={"positive_ids": image_bundle.ids[:2], "k": 5,
                                             "filters": {"time_of_day": ["day"]}})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    result = MineResult.model_validate_json(response.content)  # every field, typed as documented
    assert len(result.candidates) == 5 and [c.rank for c in result.candidates] == [1, 2, 3, 4, 5]
    assert all(c.metadata["time_of_day"] == "day" for c in result.candidates)
    schema = client.get("/openapi.json").json()["paths"]["/v1/mine"]["post"]["responses"]["200"]
    assert schema["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/MineResult"}


@pytest.mark.parametrize("query", [
    {"k": 7},
    {"k": 4, "filters": {"time_of_day": ["day", "night"]}, "strategy": "rrf"},
    {"k": 3, "offset": 2, "dedup_threshold": 0.999, "max_per_group": 1, "group_by": "sequence_id"},
])
def test_mine_response_body_is_the_library_result_in_json(image_bundle: Any, open_client: Make,
                                                          query: dict[str, Any]) -> None:
    # The HTTP layer adds nothing and re-encodes nothing: the body is the library's MineResult as
    # model_dump_json writes it, byte for byte (but for this query's own id and timings).
    from edgemine.service.query import MineQuery

    client = open_client(image_bundle.path)
    body = {"positive_ids": image_bundle.ids[:2], "negative_ids": image_bundle.ids[5:6], **query}
    response = client.post("/v1/mine", json=body)
    assert response.status_code == 200, response.text
    served = MineResult.model_validate_json(response.content)
    miner = client.app.state.runtime.current().miner  # type: ignore[attr-defined]
    library = miner.mine(MineQuery.model_validate(body))
    assert library.candidates, "the query finds candidates"
    expected = library.model_copy(update={"query_id": served.query_id, "timings": served.timings})
    assert response.content == expected.model_dump_json(by_alias=True).encode()


def test_mine_route_solves_no_dependencies() -> None:
    # FastAPI's dependency machinery costs more per request than the lookups it would make.
    from fastapi.routing import APIRoute

    from edgemine.service.api import routes_mine

    routes = [r for r in routes_mine.router.routes if isinstance(r, APIRoute) and r.path == "/v1/mine"]
    assert len(routes) == 1 and routes[0].methods == {"POST"}
    assert routes[0].dependant.dependencies == []
