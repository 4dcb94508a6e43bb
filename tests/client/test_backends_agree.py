"""Local and HTTP backends on the same bundle give identical answers to the same calls."""

from __future__ import annotations

import json
from typing import Any

import pytest

import edgemine
from edgemine.service.query import MineQuery, MineResult

from .conftest import ApiBundle

Pair = tuple[edgemine.Client, edgemine.Client]


def assert_same_result(a: MineResult, b: MineResult) -> None:
    """Same candidates in the same order, scores to float precision, same paging state."""
    assert [c.image_id for c in a.candidates] == [c.image_id for c in b.candidates]
    assert [c.score for c in a.candidates] == pytest.approx([c.score for c in b.candidates], abs=1e-6)
    for x, y in zip(a.candidates, b.candidates, strict=True):
        assert (x.rank, x.nearest_example_id, x.metadata, x.state, x.image_url) == \
               (y.rank, y.nearest_example_id, y.metadata, y.state, y.image_url)
        assert x.nearest_example_similarity == pytest.approx(y.nearest_example_similarity, abs=1e-6)
    assert (a.eligible, a.offset, a.next_offset, a.next_cursor, a.bundle_version, a.model, a.strategy) == \
           (b.eligible, b.offset, b.next_offset, b.next_cursor, b.bundle_version, b.model, b.strategy)


QUERIES: list[dict[str, Any]] = [
    {"positive_ids": [0], "k": 10},
    {"positive_ids": [0, 9], "negative_ids": [4], "strategy": "mean", "k": 8, "negative_weight": 1.0},
    {"positive_ids": [2, 3, 5], "strategy": "rrf", "k": 12, "filters": {"time_of_day": {"in": ["night", "dusk"]}}},
    {"positive_ids": [6], "k": 9, "group_by": "sequence_id", "max_per_group": 2},
    {"positive_ids": [7], "k": 5, "dedup_threshold": 0.5, "exclude_ids": [8, 11], "min_score": -0.5},
    {"positive_ids": [1], "k": 6, "offset": 4, "include_states": ["unlabeled", "queued", "labeled"]},
]


def _resolve(query: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    out = dict(query)
    for key in ("positive_ids", "negative_ids", "exclude_ids"):
        if key in out:
            out[key] = [ids[i] for i in out[key]]
    return out


@pytest.mark.parametrize("query", QUERIES, ids=["max", "mean-negatives", "rrf-filter", "per-group",
                                                 "dedup-exclude-minscore", "offset-all-states"])
def test_same_query_gives_identical_results_on_both_backends(both: Pair, api_bundle: ApiBundle,
                                                             query: dict[str, Any]) -> None:
    local, remote = both
    q = _resolve(query, api_bundle.ids)
    assert_same_result(local.mine(**q).result, remote.mine(**q).result)


def test_cursor_pages_are_identical_and_interchangeable(both: Pair, api_bundle: ApiBundle) -> None:
    local, remote = both
    q: dict[str, Any] = {"positive_ids": [api_bundle.ids[3]], "k": 7, "strategy": "max"}
    a: edgemine.MiningResult | None = local.mine(**q)
    b: edgemine.MiningResult | None = remote.mine(**q)
    pages = 0
    while a is not None and b is not None:
        assert_same_result(a.result, b.result)
        pages += 1
        # A cursor from one backend continues the ranking on the other (same bundle, same query).
        cross = remote.mine(**q, cursor=a.next_cursor) if a.next_cursor else None
        a, b = a.next_page(), b.next_page()
        if cross is not None and b is not None:
            assert_same_result(cross.result, b.result)
    assert a is None and b is None and pages == 9  # 59 rows (one is the example), 7 per page


def test_state_changed_on_one_backend_is_seen_by_the_other(both: Pair, api_bundle: ApiBundle) -> None:
    local, remote = both
    q: dict[str, Any] = {"positive_ids": [api_bundle.ids[12]], "k": 6}
    first = local.mine(**q)
    batch = local.queue(first, name="from the notebook")
    assert remote.batch(batch.batch_id).model == local.batch(batch.batch_id).model
    assert [b.model for b in remote.batches()] == [b.model for b in local.batches()]
    remote.label(first.ids[:2])
    assert_same_result(local.mine(**q).result, remote.mine(**q).result)
    assert not set(first.ids) & set(remote.mine(**q).ids)
    assert local.health()["counts"] == remote.health()["counts"] == {
        "images": 60, "unlabeled": 54, "queued": 4, "labeled": 2, "rejected": 0}


def test_exports_differ_only_in_absolute_image_links(both: Pair, api_bundle: ApiBundle) -> None:
    local, remote = both
    batch = local.queue(local.mine(positive_ids=[api_bundle.ids[13]], k=4), name="links")
    here = [json.loads(line) for line in batch.export("jsonl").splitlines()]
    there = [json.loads(line) for line in remote.batch(batch.batch_id).export("jsonl").splitlines()]
    base = remote.backend.url  # type: ignore[attr-defined]
    for mine, theirs in zip(here, there, strict=True):
        assert theirs["image_url"] == base + mine["image_url"]  # the service makes links absolute
        assert {**mine, "image_url": ""} == {**theirs, "image_url": ""}


def test_health_browse_and_thumbnails_are_identical(both: Pair, api_bundle: ApiBundle) -> None:
    local, remote = both
    h_local, h_remote = local.health(), remote.health()
    assert h_local.keys() == h_remote.keys()
    for key in ("bundle_version", "model", "dim", "index", "counts", "metadata_columns", "writable", "ready"):
        assert h_local[key] == h_remote[key], key
    page: dict[str, Any] = {"filters": {"time_of_day": "dusk"}, "offset": 3, "limit": 7}
    assert local.images(**page) == remote.images(**page)
    image_id = api_bundle.ids[14]
    assert local.thumbnail(image_id, 20) == remote.thumbnail(image_id, 20)


def test_verdicts_and_yield_reports_are_identical_on_both_backends(both: Pair, api_bundle: ApiBundle) -> None:
    local, remote = both
    a = local.mine(positive_ids=[api_bundle.ids[0]], k=6, session_id="s-local")
    b = remote.mine(positive_ids=[api_bundle.ids[5]], k=5, strategy="rrf", session_id="s-remote",
                    exclude_ids=a.ids)  # disjoint candidates: each image has one story
    a.review(accept=a.ids[:2], reject=a.ids[2:5], reviewer="ana")
    b.review(accept=b.ids[:1], reject=b.ids[1:3], skip=b.ids[3:4])
    remote.review(accept=[a.ids[2]], query_id=a.query_id)  # a later verdict from the other backend wins
    for kwargs in ({}, {"verdict": "reject"}, {"session_id": "s-local"}, {"query_id": b.query_id},
                   {"latest_only": False}):
        assert local.verdicts(**kwargs) == remote.verdicts(**kwargs)  # type: ignore[arg-type]
    assert local.verdicts(verdict="reject").ids == [*a.ids[3:5], *b.ids[1:3]]
    assert local.yield_report() == remote.yield_report()
    assert local.yield_report(session_id="s-remote") == remote.yield_report(session_id="s-remote")
    assert local.yield_report().overall.reviewed == 8
    assert local.health()["counts"] == remote.health()["counts"]
    assert local.health()["counts"]["rejected"] == 4


def test_open_and_connect_take_a_session_that_queries_and_verdicts_carry(api_bundle: ApiBundle, server: str) -> None:
    with edgemine.open(api_bundle.path, session_id="s-a") as local, \
            edgemine.connect(server, retries=0, session_id="s-b") as remote:
        a = local.mine(positive_ids=[api_bundle.ids[0]], k=3)
        b = remote.mine(positive_ids=[api_bundle.ids[0]], k=3, exclude_ids=a.ids)
        assert (a.query.session_id, b.query.session_id) == ("s-a", "s-b")
        local.review(accept=a)  # a whole result: its query_id, the client's session
        remote.review(reject=b.ids[:1])  # plain ids: no query, the client's session
        assert [(v.query_id, v.session_id) for v in local.verdicts()] == \
            [(a.query_id, "s-a")] * 3 + [(None, "s-b")]
        assert [s.session_id for s in remote.yield_report().sessions] == ["s-a", "s-b"]
        other = remote.mine(positive_ids=[api_bundle.ids[0]], k=3, session_id="s-c")
        assert other.query.session_id == "s-c"  # a query's own session wins over the client's
        ready = local.mine_query(MineQuery(positive_ids=[api_bundle.ids[1]], k=2))
        assert ready.query.session_id == "s-a"  # a ready MineQuery without a session gets the client's
