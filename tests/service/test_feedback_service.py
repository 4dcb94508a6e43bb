"""Verdicts and yield over HTTP and in the mining library: stored queries, rejects excluded,
use_verdicts, restarts, read-only state."""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

from edgemine.bundle import state as state_module
from edgemine.bundle.feedback import list_verdicts, wilson_interval
from edgemine.service import limits
from edgemine.service.query import MineQuery
from tests.support.state_backend import runtime_of, sqlite_only, state_of

Make = Callable[..., Any]


def ids_of(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [c["image_id"] for c in response.json()["candidates"]]


def stored_queries(bundle: Any) -> list[tuple[Any, ...]]:
    with state_of(bundle.path).write() as db:
        return db.execute("SELECT query_id, session_id, parent_query_id, bundle_version, strategy, query "
                          "FROM queries ORDER BY created_at, rowid").fetchall()


def test_every_mine_call_returns_and_stores_its_query(make_byo_bundle: Make, open_client: Make) -> None:
    built = make_byo_bundle(n=120, seed=5)
    client = open_client(built.path)
    body = {"positive_ids": ["im0001"], "k": 5, "session_id": "s-1"}
    first = client.post("/v1/mine", json=body).json()
    second = client.post("/v1/mine", json={**body, "parent_query_id": first["query_id"], "strategy": "mean"}).json()
    assert first["query_id"].startswith("q-") and len(first["query_id"]) == 14
    assert first["query_id"] != second["query_id"]
    rows = stored_queries(built)
    assert [r[:5] for r in rows] == [(first["query_id"], "s-1", None, 1, "max"),
                                     (second["query_id"], "s-1", first["query_id"], 1, "mean")]
    assert MineQuery.model_validate_json(rows[0][5]) == MineQuery.model_validate(body)


def test_upload_mining_stores_its_query_too(image_bundle: Any, open_client: Make) -> None:
    client = open_client(image_bundle.path)
    png = (image_bundle.image_root / image_bundle.ids[0]).read_bytes()
    response = client.post("/v1/mine/upload", files={"files": ("a.png", png, "image/png")},
                           data={"query": '{"k": 3, "session_id": "up"}'})
    assert response.status_code == 200, response.text
    assert [(r[0], r[1]) for r in stored_queries(image_bundle)] == [(response.json()["query_id"], "up")]


def test_a_rejected_image_never_comes_back_by_default_even_after_a_restart(
        make_byo_bundle: Make, open_client: Make) -> None:
    built = make_byo_bundle(n=200, seed=8)
    client = open_client(built.path)
    query = {"positive_ids": ["im0010"], "k": 10}
    mined = client.post("/v1/mine", json=query).json()
    first = [c["image_id"] for c in mined["candidates"]]
    response = client.post("/v1/verdicts", json={
        "verdicts": [{"image_id": first[0], "verdict": "reject", "query_id": mined["query_id"]},
                     {"image_id": first[1], "verdict": "accept", "query_id": mined["query_id"]}],
        "reviewer": "ann", "session_id": "s"})
    assert response.status_code == 200, response.text
    assert response.json() == {"recorded": 2, "states": {"rejected": 1, "unlabeled": 0}}
    again = ids_of(client.post("/v1/mine", json=query))
    assert first[0] not in again and again[:9] == first[1:]
    assert client.get("/v1/health").json()["counts"]["rejected"] == 1

    # A restart (a new app over the same bundle) keeps the verdicts and the exclusion.
    restarted = open_client(built.path)
    assert first[0] not in ids_of(restarted.post("/v1/mine", json={**query, "k": 200}))
    listed = restarted.get("/v1/verdicts", params={"session_id": "s"}).json()
    assert [(v["image_id"], v["verdict"], v["query_id"], v["reviewer"]) for v in listed["verdicts"]] == [
        (first[0], "reject", mined["query_id"], "ann"), (first[1], "accept", mined["query_id"], "ann")]
    assert listed["next_offset"] is None

    # include_states brings it back; a later accept makes it unlabeled (eligible by default) again.
    back = restarted.post("/v1/mine", json={**query, "include_states": ["unlabeled", "rejected"]}).json()
    assert [c["image_id"] for c in back["candidates"]] == first
    assert back["candidates"][0]["state"] == "rejected"
    assert ids_of(restarted.post("/v1/mine", json={**query, "include_states": ["rejected"]})) == [first[0]]
    assert restarted.get("/v1/images", params={"state": "rejected"}).json()["items"][0]["image_id"] == first[0]
    undo = restarted.post("/v1/verdicts", json={"verdicts": [{"image_id": first[0], "verdict": "accept"}]})
    assert undo.json() == {"recorded": 1, "states": {"rejected": 0, "unlabeled": 1}}
    assert ids_of(restarted.post("/v1/mine", json=query)) == first


def test_a_verdict_twice_the_later_wins_and_both_are_in_the_history(make_byo_bundle: Make,
                                                                    open_client: Make) -> None:
    built = make_byo_bundle(n=50, seed=2)
    client = open_client(built.path)
    for verdict in ("accept", "reject"):
        assert client.post("/v1/verdicts", json={"verdicts": [{"image_id": "im0004", "verdict": verdict}]},
                           ).status_code == 200
    latest = client.get("/v1/verdicts").json()["verdicts"]
    history = client.get("/v1/verdicts", params={"latest_only": "false"}).json()["verdicts"]
    assert [(v["image_id"], v["verdict"]) for v in latest] == [("im0004", "reject")]
    assert [v["verdict"] for v in history] == ["accept", "reject"] and history[0]["seq"] < history[1]["seq"]
    assert client.get("/v1/verdicts", params={"verdict": "accept"}).json()["verdicts"] == []
    page = client.get("/v1/verdicts", params={"latest_only": "false", "limit": 1}).json()
    assert [v["verdict"] for v in page["verdicts"]] == ["accept"] and page["next_offset"] == 1
    rest = client.get("/v1/verdicts", params={"latest_only": "false", "limit": 1, "offset": 1}).json()
    assert [v["verdict"] for v in rest["verdicts"]] == ["reject"] and rest["next_offset"] is None


def test_unknown_ids_answer_404_naming_them_and_nothing_is_stored(make_byo_bundle: Make, open_client: Make) -> None:
    built = make_byo_bundle(n=50, seed=2)
    client = open_client(built.path)
    response = client.post("/v1/verdicts", json={"verdicts": [
        {"image_id": "im0001", "verdict": "reject"}, {"image_id": "ghost", "verdict": "accept"}]})
    assert response.status_code == 404
    assert response.json()["unknown_ids"] == ["ghost"] and "ghost" in response.json()["detail"]
    assert client.get("/v1/verdicts", params={"latest_only": "false"}).json()["verdicts"] == []
    assert client.get("/v1/health").json()["counts"]["rejected"] == 0


@pytest.mark.parametrize("body", [
    {"verdicts": []},
    {"verdicts": [{"image_id": "im0001", "verdict": "maybe"}]},
    {"verdicts": [{"image_id": "im0001", "verdict": "accept", "extra": 1}]},
    {"verdicts": [{"image_id": "", "verdict": "accept"}]},
    {"verdicts": [{"image_id": "im0001", "verdict": "accept"}], "session_id": "s" * 201},
    {"verdicts": [{"image_id": "im0001", "verdict": "accept"}] * (limits.MAX_VERDICTS + 1)},
])
def test_bad_verdict_requests_are_422(make_byo_bundle: Make, open_client: Make, body: dict[str, Any]) -> None:
    client = open_client(make_byo_bundle(n=20, seed=2).path)
    response = client.post("/v1/verdicts", json=body)
    assert response.status_code == 422, response.text
    assert client.get("/v1/verdicts", params={"latest_only": "false"}).json()["verdicts"] == []


def test_use_verdicts_equals_passing_the_same_ids_by_hand(make_byo_bundle: Make, open_client: Make) -> None:
    built = make_byo_bundle(n=300, seed=11)
    client = open_client(built.path)
    start = client.post("/v1/mine", json={"positive_ids": ["im0020"], "k": 12, "session_id": "s"}).json()
    shown = [c["image_id"] for c in start["candidates"]]
    accepted, rejected = shown[0:12:3], [i for i in shown if i not in shown[0:12:3]][:5]
    verdicts = [{"image_id": i, "verdict": "accept", "query_id": start["query_id"]} for i in accepted]
    verdicts += [{"image_id": i, "verdict": "reject", "query_id": start["query_id"]} for i in rejected]
    verdicts += [{"image_id": shown[11], "verdict": "skip"}]
    # Sent without the session id: they belong to the session through their query.
    assert client.post("/v1/verdicts", json={"verdicts": verdicts}).status_code == 200
    # A verdict of another session is not used.
    assert client.post("/v1/verdicts", json={"verdicts": [{"image_id": "im0299", "verdict": "accept"}],
                                             "session_id": "other"}).status_code == 200

    for strategy in ("max", "mean", "rrf"):
        base = {"positive_ids": ["im0020"], "negative_ids": ["im0100"], "k": 20, "strategy": strategy}
        by_verdicts = client.post("/v1/mine", json={**base, "session_id": "s", "use_verdicts": True}).json()
        by_hand = client.post("/v1/mine", json={**base, "positive_ids": ["im0020", *accepted],
                                                "negative_ids": ["im0100", *rejected],
                                                "include_states": ["unlabeled"]}).json()
        assert by_verdicts["candidates"] == by_hand["candidates"], strategy
        assert by_verdicts["eligible"] == by_hand["eligible"]
        assert {c["nearest_example_id"] for c in by_verdicts["candidates"]} & set(accepted)


def test_use_verdicts_over_the_examples_limit_is_422_naming_it(make_byo_bundle: Make, open_client: Make,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    built = make_byo_bundle(n=60, seed=3)
    client = open_client(built.path)
    client.post("/v1/verdicts", json={"verdicts": [{"image_id": f"im{i:04d}", "verdict": "accept"}
                                                   for i in range(10, 16)], "session_id": "s"})
    monkeypatch.setattr(limits, "MAX_EXAMPLES", 4)
    response = client.post("/v1/mine", json={"positive_ids": ["im0001"], "session_id": "s", "use_verdicts": True})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "at most 4" in detail and "use_verdicts added 6 accepted and 0 rejected" in detail
    no_session = client.post("/v1/mine", json={"positive_ids": ["im0001"], "use_verdicts": True})
    assert no_session.status_code == 422 and "use_verdicts needs session_id" in no_session.text


def test_use_verdicts_alone_needs_an_accepted_image(make_byo_bundle: Make, open_client: Make) -> None:
    built = make_byo_bundle(n=60, seed=3)
    client = open_client(built.path)
    body = {"session_id": "s", "use_verdicts": True, "k": 5}
    assert client.post("/v1/mine", json=body).status_code == 422  # nothing accepted yet: no positive
    client.post("/v1/verdicts", json={"verdicts": [{"image_id": "im0007", "verdict": "accept"}], "session_id": "s"})
    mined = client.post("/v1/mine", json=body).json()
    assert {c["nearest_example_id"] for c in mined["candidates"]} == {"im0007"}


def test_a_use_verdicts_cursor_is_refused_clearly_once_the_verdicts_change(
        make_byo_bundle: Make, open_client: Make) -> None:
    built = make_byo_bundle(n=200, seed=4)
    client = open_client(built.path)
    client.post("/v1/verdicts", json={"verdicts": [{"image_id": "im0003", "verdict": "accept"}], "session_id": "s"})
    body = {"session_id": "s", "use_verdicts": True, "k": 5}
    page = client.post("/v1/mine", json=body).json()
    more = client.post("/v1/mine", json={**body, "cursor": page["next_cursor"]})
    assert not {c["image_id"] for c in page["candidates"]} & set(ids_of(more))  # unchanged verdicts: pages go on

    client.post("/v1/verdicts", json={"verdicts": [{"image_id": page["candidates"][0]["image_id"],
                                                    "verdict": "reject"}], "session_id": "s"})
    stale = client.post("/v1/mine", json={**body, "cursor": page["next_cursor"]})
    assert stale.status_code == 422 and "verdicts changed since the first page" in stale.json()["detail"]


def test_yield_endpoint_reports_per_query_and_session(make_byo_bundle: Make, open_client: Make) -> None:
    built = make_byo_bundle(n=100, seed=6)
    client = open_client(built.path)
    mined = client.post("/v1/mine", json={"positive_ids": ["im0001"], "k": 10, "session_id": "s",
                                          "strategy": "rrf"}).json()
    shown = [c["image_id"] for c in mined["candidates"]]
    client.post("/v1/verdicts", json={"verdicts": [
        {"image_id": i, "verdict": "accept" if n < 3 else "reject", "query_id": mined["query_id"]}
        for n, i in enumerate(shown[:8])], "session_id": "s"})
    report = client.get("/v1/yield").json()
    [query] = report["queries"]
    assert (query["query_id"], query["strategy"], query["reviewed"], query["accepted"]) == (
        mined["query_id"], "rrf", 8, 3)
    assert query["yield_rate"] == 3 / 8 and [query["ci_low"], query["ci_high"]] == list(wilson_interval(3, 8))  # type: ignore[arg-type]
    assert report["strategies"] == [{**{k: query[k] for k in query if k not in (
        "query_id", "session_id", "created_at")}, "strategy": "rrf"}]
    [session] = report["sessions"]
    assert [p["accepted"] for p in session["curve"]] == [1, 2, 3, 3, 3, 3, 3, 3]
    assert client.get("/v1/yield", params={"session_id": "none"}).json()["overall"]["reviewed"] == 0


@sqlite_only
def test_read_only_state_still_mines_returns_a_query_id_and_refuses_verdicts(
        make_byo_bundle: Make, open_client: Make, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    built = make_byo_bundle(n=50, seed=2)
    monkeypatch.setattr(state_module, "state_writable", lambda path: False)
    client = open_client(built.path, raise_server_exceptions=False)
    with caplog.at_level(logging.WARNING, logger="edgemine.service"):
        mined = client.post("/v1/mine", json={"positive_ids": ["im0001"], "k": 3})
    assert mined.status_code == 200 and mined.json()["query_id"].startswith("q-")
    assert f"query {mined.json()['query_id']} not stored" in caplog.text
    refused = client.post("/v1/verdicts", json={"verdicts": [{"image_id": "im0002", "verdict": "reject"}]})
    assert refused.status_code == 503 and "read-only" in refused.json()["detail"]
    assert client.get("/v1/verdicts").json()["verdicts"] == []
    assert client.get("/v1/yield").status_code == 200
    monkeypatch.undo()
    assert stored_queries(built) == [] and list_verdicts(state_of(built.path)) == []


def test_the_library_stores_the_query_and_uses_verdicts_like_http(make_byo_bundle: Make, open_client: Make) -> None:
    built = make_byo_bundle(n=150, seed=9)
    client = open_client(built.path)
    client.post("/v1/verdicts", json={"verdicts": [{"image_id": "im0005", "verdict": "accept"},
                                                   {"image_id": "im0006", "verdict": "reject"}], "session_id": "s"})
    body = {"positive_ids": ["im0001"], "k": 10, "session_id": "s", "use_verdicts": True}
    result = runtime_of(built.path).current().miner.mine(MineQuery.model_validate(body))
    assert [c.image_id for c in result.candidates] == ids_of(client.post("/v1/mine", json=body))
    assert result.query_id in {r[0] for r in stored_queries(built)}


@sqlite_only
def test_mining_does_not_wait_long_behind_another_writer_to_store_its_query(
        make_byo_bundle: Make, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from edgemine.service import miner as miner_module

    built = make_byo_bundle(n=50, seed=2)
    miner = runtime_of(built.path).current().miner
    monkeypatch.setattr(miner_module, "RECORD_QUERY_WAIT", 0.05)
    holder = sqlite3.connect(built.path / "state.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a write (e.g. an indexing run)
    try:
        with caplog.at_level(logging.WARNING, logger="edgemine.service"):
            result = miner.mine(MineQuery(positive_ids=["im0001"], k=3))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert len(result.candidates) == 3
    assert f"query {result.query_id} not stored" in caplog.text and "busy" in caplog.text
    assert stored_queries(built) == []
    stored = miner.mine(MineQuery(positive_ids=["im0001"], k=3))  # once the writer is done, stored again
    assert [r[0] for r in stored_queries(built)] == [stored.query_id]


def test_the_openapi_document_declares_the_feedback_routes(make_byo_bundle: Make, open_client: Make) -> None:
    spec = open_client(make_byo_bundle(n=20, seed=2).path).get("/openapi.json").json()
    post = spec["paths"]["/v1/verdicts"]["post"]["responses"]
    assert post["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/UnknownIdsError")
    assert {"200", "401", "413", "422", "500", "503"} <= set(post)
    assert spec["paths"]["/v1/yield"]["get"]["responses"]["200"]["content"]["application/json"]["schema"][
        "$ref"].endswith("/YieldReport")
    assert "VerdictPage" in spec["paths"]["/v1/verdicts"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]["$ref"]


def test_cli_mine_with_session_and_use_verdicts_equals_the_ids_by_hand(make_byo_bundle: Make) -> None:
    import json

    from typer.testing import CliRunner

    from edgemine.bundle.feedback import record_verdicts
    from edgemine.cli.main import app as cli

    built = make_byo_bundle(n=120, seed=12)
    record_verdicts(state_of(built.path), [("im0004", "accept", None), ("im0009", "reject", None)],
                    session_id="ls-1")
    runner = CliRunner()
    base = ["mine", "--bundle", str(built.path), "-p", "im0001", "-k", "6", "--format", "jsonl"]
    by_verdicts = runner.invoke(cli, [*base, "--session", "ls-1", "--use-verdicts"])
    by_hand = runner.invoke(cli, [*base, "-p", "im0004", "-n", "im0009"])
    assert by_verdicts.exit_code == 0 and by_hand.exit_code == 0, by_verdicts.output
    assert [json.loads(line) for line in by_verdicts.stdout.splitlines()] == [
        json.loads(line) for line in by_hand.stdout.splitlines()]
    query_id = re.search(r"query_id: (q-[0-9a-f]{12})", by_verdicts.stderr)
    assert query_id is not None and (query_id.group(1), "ls-1") in [(r[0], r[1]) for r in stored_queries(built)]
    alone = runner.invoke(cli, ["mine", "--bundle", str(built.path), "--use-verdicts"])
    assert alone.exit_code == 2 and "use_verdicts needs session_id" in alone.output
