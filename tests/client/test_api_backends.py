"""The same API test suite over both backends: a local bundle and a live `edgemine serve` (the `api` fixture)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import edgemine
from edgemine.bundle.feedback import VerdictRecord
from edgemine.client import ImageUnavailable
from edgemine.service.batches import Batch as BatchModel
from edgemine.service.browse import ImagePage
from edgemine.service.limits import MAX_LABEL_IDS, MAX_SESSION_CHARS
from edgemine.service.query import Candidate, MineQuery, MineResult

from .conftest import ApiBundle


def test_mine_returns_the_service_models(api: edgemine.Client, api_bundle: ApiBundle) -> None:
    res = api.mine(positive_ids=[api_bundle.ids[0]], k=5, filters={"time_of_day": {"in": ["night"]}})
    assert isinstance(res, edgemine.MiningResult) and isinstance(res.result, MineResult)
    assert isinstance(res.query, MineQuery) and res.query.k == 5
    assert len(res) == 5 and all(isinstance(c, Candidate) for c in res)
    assert res.ids == [c.image_id for c in res.candidates]
    assert all(c.metadata["time_of_day"] == "night" for c in res)
    assert [c.rank for c in res] == [1, 2, 3, 4, 5]
    assert res.result.model == "byo:test" and res.result.eligible == 20


def test_next_page_walks_the_ranking_until_none(api: edgemine.Client, api_bundle: ApiBundle) -> None:
    query: dict[str, Any] = {"positive_ids": [api_bundle.ids[1], api_bundle.ids[7]], "strategy": "rrf",
             "filters": {"time_of_day": ["day", "dusk"]}}
    whole = api.mine(k=100, **query)
    pages = [api.mine(k=7, **query)]
    while (page := pages[-1].next_page()) is not None:
        pages.append(page)
    walked = [i for p in pages for i in p.ids]
    assert walked == whole.ids and len(walked) == 40  # the day and dusk rows (the examples are night)
    assert [len(p) for p in pages] == [7, 7, 7, 7, 7, 5]
    assert pages[-1].next_cursor is None
    assert pages[0].next_page(k=2) is not None and len(pages[0].next_page(k=2) or []) == 2


def test_to_records_and_to_pandas_flatten_metadata(api: edgemine.Client, api_bundle: ApiBundle) -> None:
    res = api.mine(positive_ids=[api_bundle.ids[2]], k=4)
    records = res.to_records()
    assert [r["image_id"] for r in records] == res.ids
    assert {"rank", "score", "nearest_example_id", "state", "time_of_day", "sequence_id"} <= set(records[0])
    pandas = pytest.importorskip("pandas")
    frame = res.to_pandas()
    assert isinstance(frame, pandas.DataFrame) and list(frame["image_id"]) == res.ids
    assert list(frame.columns[:3]) == ["rank", "image_id", "score"]


def test_queue_keeps_provenance_and_queued_images_are_not_mined_again(api: edgemine.Client,
                                                                       api_bundle: ApiBundle) -> None:
    res = api.mine(positive_ids=[api_bundle.ids[3]], k=6)
    batch = api.queue(res, name="night-crosswalk-1")
    assert isinstance(batch, edgemine.Batch) and isinstance(batch.model, BatchModel)
    assert batch.name == "night-crosswalk-1" and batch.ids == res.ids and batch.skipped == []
    for item, cand in zip(batch.items, res.candidates, strict=True):
        assert item.score == pytest.approx(cand.score) and item.nearest_example_id == cand.nearest_example_id
        assert item.state == "queued"
    assert batch.model.query["positive_ids"] == [api_bundle.ids[3]] and batch.model.query["k"] == 6
    again = api.mine(positive_ids=[api_bundle.ids[3]], k=6)
    assert not set(again.ids) & set(batch.ids)
    listed = api.batches()
    assert [b.batch_id for b in listed] == [batch.batch_id] and listed[0].ids == batch.ids  # items fetched
    assert api.batch(batch.batch_id).ids == batch.ids
    by_ids = api.queue(again.ids[:2], name="by ids")
    assert by_ids.ids == again.ids[:2] and by_ids.items[0].score is None


def test_queue_refuses_nothing_and_bad_names_with_query_error(api: edgemine.Client, api_bundle: ApiBundle) -> None:
    with pytest.raises(edgemine.QueryError, match="nothing to queue"):
        api.queue([], name="empty")
    with pytest.raises(edgemine.QueryError, match="name"):
        api.queue(api_bundle.ids[:1], name="")
    with pytest.raises(edgemine.QueryError, match="image_id"):
        api.queue([""], name="blank id")
    assert api.batches() == []


def test_export_in_every_format_and_write_it_atomically(api: edgemine.Client, api_bundle: ApiBundle,
                                                         tmp_path: Path) -> None:
    res = api.mine(positive_ids=[api_bundle.ids[4]], k=3)
    batch = api.queue(res, name="export-me")
    lines = [json.loads(line) for line in batch.export("jsonl").splitlines()]
    assert [line["image_id"] for line in lines] == res.ids and lines[0]["batch_name"] == "export-me"
    rows = list(csv.DictReader(io.StringIO(batch.export("csv"))))
    assert [r["image_id"] for r in rows] == res.ids and rows[0]["time_of_day"]
    target = tmp_path / "out" / "tasks.json"
    text = batch.export("labelstudio", target)
    assert target.read_text() == text
    assert [t["data"]["image_id"] for t in json.loads(text)] == res.ids
    assert [p.name for p in target.parent.iterdir()] == ["tasks.json"]  # no temporary file left


def test_label_changes_state_counts_and_mining(api: edgemine.Client, api_bundle: ApiBundle) -> None:
    res = api.mine(positive_ids=[api_bundle.ids[5]], k=5)
    assert api.label(res.ids[:3], state="labeled") == 3
    assert api.label(res.ids[:3], state="labeled") == 0  # already labeled: nothing changed
    counts = api.health()["counts"]
    assert counts == {"images": 60, "unlabeled": 57, "queued": 0, "labeled": 3, "rejected": 0}
    assert api.mine(positive_ids=[api_bundle.ids[5]], k=2).ids == res.ids[3:5]
    assert api.label(res.ids[0], state="unlabeled") == 1  # one id, not its characters
    with pytest.raises(edgemine.QueryError, match="unknown labeling state"):
        api.label(res.ids[:1], state="done")
    with pytest.raises(edgemine.QueryError, match="at most"):
        api.label([res.ids[0]] * (MAX_LABEL_IDS + 1))
    with pytest.raises(TypeError, match="int"):
        api.label([res.ids[0], 7])  # type: ignore[list-item]
    with pytest.raises(edgemine.QueryError, match="unknown labeling state"):
        api.label([], state="done")


def test_unknown_ids_raise_unknown_image_ids_naming_them(api: edgemine.Client, api_bundle: ApiBundle) -> None:
    with pytest.raises(edgemine.UnknownImageIds) as mined:
        api.mine(positive_ids=[api_bundle.ids[0], "nope-1"], negative_ids=["nope-2"])
    assert mined.value.ids == ["nope-1", "nope-2"]
    with pytest.raises(edgemine.UnknownImageIds) as labeled:
        api.label([api_bundle.ids[0], "ghost"])
    assert labeled.value.ids == ["ghost"]
    with pytest.raises(edgemine.UnknownImageIds) as queued:
        api.queue(["ghost", api_bundle.ids[0]], name="bad")
    assert queued.value.ids == ["ghost"]
    assert api.health()["counts"]["unlabeled"] == 60  # nothing was labeled or queued
    with pytest.raises(edgemine.UnknownImageIds):
        api.thumbnail("ghost.png")


def test_bad_queries_raise_query_error(api: edgemine.Client, api_bundle: ApiBundle) -> None:
    first = api_bundle.ids[0]
    with pytest.raises(edgemine.QueryError, match="k"):
        api.mine(positive_ids=[first], k=0)  # refused by the model, before any call
    with pytest.raises(edgemine.QueryError, match="precomputed embeddings"):
        api.mine(texts=["a pedestrian at night"])  # refused by the miner: this bundle has no model
    with pytest.raises(edgemine.QueryError, match="uploaded image"):
        api.mine(uploads=[b"not really an image"], k=3)
    with pytest.raises(edgemine.QueryError, match="weather"):
        api.mine(positive_ids=[first], filters={"weather": "rain"})  # unknown column
    with pytest.raises(edgemine.QueryError, match="cursor"):
        api.mine(positive_ids=[first], cursor="not-a-cursor")
    with pytest.raises(edgemine.QueryError, match="empty query"):
        api.mine(k=3)


def test_unknown_batch_raises_unknown_batch(api: edgemine.Client) -> None:
    with pytest.raises(edgemine.UnknownBatch):
        api.batch("b-000000000000")


def test_thumbnail_is_a_bounded_jpeg(api: edgemine.Client, api_bundle: ApiBundle) -> None:
    data = api.thumbnail(api_bundle.ids[0], size=16)
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG" and max(image.size) == 16  # the 24x16 source, scaled down
    with pytest.raises(edgemine.QueryError):
        api.thumbnail(api_bundle.ids[0], size=8)


def test_thumbnail_of_a_removed_file_is_image_unavailable(api: edgemine.Client, api_bundle: ApiBundle) -> None:
    (api_bundle.path.parent / "images" / api_bundle.ids[1]).unlink()
    with pytest.raises(ImageUnavailable, match="gone"):
        api.thumbnail(api_bundle.ids[1])


def test_images_browse_with_filters_states_and_contains(api: edgemine.Client, api_bundle: ApiBundle) -> None:
    page = api.images(filters={"time_of_day": "night"}, limit=5)
    assert isinstance(page, ImagePage) and page.total == 20 and len(page.items) == 5
    assert all(item.metadata["time_of_day"] == "night" for item in page.items)
    api.label([page.items[0].image_id])
    assert [i.image_id for i in api.images(state="labeled").items] == [page.items[0].image_id]
    assert api.images(contains="g1/").total == 20
    with pytest.raises(edgemine.QueryError):
        api.images(filters={"time_of_day": {}})
    with pytest.raises(edgemine.QueryError, match="unknown labeling state"):
        api.images(state="done")


def test_delete_batch_releases_its_queued_images(api: edgemine.Client, api_bundle: ApiBundle) -> None:
    batch = api.queue(api_bundle.ids[10:14], name="to delete")
    api.label(api_bundle.ids[10:11])
    assert batch.delete() == 3  # the labeled one stays labeled
    assert api.batches() == []
    assert api.health()["counts"]["labeled"] == 1
    with pytest.raises(edgemine.UnknownBatch):
        api.delete_batch(batch.batch_id)


def test_queueing_only_queued_images_raises_batch_conflict(api: edgemine.Client, api_bundle: ApiBundle) -> None:
    api.queue(api_bundle.ids[20:23], name="first")
    with pytest.raises(edgemine.BatchConflict) as conflict:
        api.queue(api_bundle.ids[20:23], name="again")
    assert sorted(conflict.value.skipped) == sorted(api_bundle.ids[20:23])
    assert len(api.batches()) == 1


def test_client_is_a_context_manager_and_names_its_backend(api: edgemine.Client) -> None:
    assert repr(api).startswith(("<edgemine.Client over LocalBackend('", "<edgemine.Client over HttpBackend('http"))
    assert api.health()["ready"] is True


def test_health_is_a_dict_that_renders_as_a_table(api: edgemine.Client) -> None:
    health = api.health()
    assert isinstance(health, dict) and health["counts"]["images"] == 60 and health["model"] == "byo:test"
    assert "<table" in health._repr_html_() and "byo:test" in health._repr_html_()  # type: ignore[attr-defined]


def test_review_stores_verdicts_and_a_reject_is_not_mined_again(api: edgemine.Client, api_bundle: ApiBundle) -> None:
    query: dict[str, Any] = {"positive_ids": [api_bundle.ids[0]], "k": 6}
    res = api.mine(**query)
    assert res.query_id.startswith("q-") and res.query_id == res.result.query_id
    assert res.review(accept=res.ids[:2], reject=res.ids[2:4], skip=[res.candidates[4]], reviewer="ana") == 5
    stored = api.verdicts(query_id=res.query_id)
    assert isinstance(stored, edgemine.Verdicts) and all(isinstance(v, VerdictRecord) for v in stored)
    assert [(v.image_id, v.verdict) for v in stored] == \
        [*((i, "accept") for i in res.ids[:2]), *((i, "reject") for i in res.ids[2:4]), (res.ids[4], "skip")]
    assert {(v.query_id, v.reviewer, v.source) for v in stored} == {(res.query_id, "ana", "api")}
    assert api.verdicts(verdict="reject").ids == res.ids[2:4]
    assert api.health()["counts"]["rejected"] == 2
    again = api.mine(**query)
    assert not set(res.ids[2:4]) & set(again.ids) and set(res.ids[:2]) <= set(again.ids)
    back = api.mine(**query, include_states=["unlabeled", "rejected"])
    assert set(res.ids[2:4]) <= set(back.ids)
    assert api.review(accept=res.ids[2]) == 1  # a later accept wins and brings the image back
    assert api.health()["counts"]["rejected"] == 1
    assert api.verdicts(verdict="reject").ids == [res.ids[3]]
    assert len(api.verdicts(latest_only=False)) == 6  # the history keeps both verdicts on ids[2]
    assert "<table" in stored._repr_html_() and res.query_id in stored._repr_html_()


def test_result_accept_and_reject_use_its_query_and_the_clients_session(api: edgemine.Client,
                                                                        api_bundle: ApiBundle) -> None:
    session = edgemine.Client(api.backend, session_id="night-1")
    res = session.mine(positive_ids=[api_bundle.ids[1]], k=4)
    assert res.query.session_id == "night-1"
    assert res.accept(res.ids[:2]) == 2 and res.reject(res.ids[2]) == 1  # one id, not its characters
    mine = api.verdicts(session_id="night-1")
    assert mine.ids == res.ids[:3] and {(v.query_id, v.session_id) for v in mine} == {(res.query_id, "night-1")}
    assert api.verdicts(session_id="other") == []
    with pytest.raises(edgemine.QueryError, match="not candidates of this result"):
        res.accept([api_bundle.ids[1]])  # the example itself is no candidate
    with pytest.raises(TypeError, match="strings"):
        res.accept([1])  # type: ignore[list-item]
    assert len(api.verdicts()) == 3  # nothing more stored


@pytest.mark.parametrize("strategy", ["max", "probe"])
def test_use_verdicts_through_the_client_equals_passing_ids_by_hand(api: edgemine.Client, api_bundle: ApiBundle,
                                                                    strategy: str) -> None:
    ids = api_bundle.ids
    session = edgemine.Client(api.backend, session_id="refine")
    first = session.mine(positive_ids=[ids[0]], k=8)
    first.review(accept=first.ids[:2], reject=first.ids[2:5])
    refined = session.mine(positive_ids=[ids[0]], k=10, strategy=strategy, use_verdicts=True)
    by_hand = api.mine(positive_ids=[ids[0], *first.ids[:2]], negative_ids=first.ids[2:5], k=10, strategy=strategy)
    assert refined.ids == by_hand.ids and len(refined) == 10
    assert [c.score for c in refined] == pytest.approx([c.score for c in by_hand], abs=1e-6)
    assert [c.nearest_example_id for c in refined] == [c.nearest_example_id for c in by_hand]
    with pytest.raises(edgemine.QueryError, match="use_verdicts needs session_id"):
        api.mine(positive_ids=[ids[0]], use_verdicts=True)  # this client has no session


def test_verdicts_on_unknown_ids_raise_unknown_image_ids_and_store_nothing(api: edgemine.Client,
                                                                          api_bundle: ApiBundle) -> None:
    with pytest.raises(edgemine.UnknownImageIds) as unknown:
        api.review(accept=[api_bundle.ids[0]], reject=["ghost-1", "ghost-2"])
    assert sorted(unknown.value.ids) == ["ghost-1", "ghost-2"]
    assert api.verdicts() == [] and api.health()["counts"]["rejected"] == 0


def test_bad_verdict_calls_raise_query_error(api: edgemine.Client, api_bundle: ApiBundle) -> None:
    first = api_bundle.ids[0]
    assert api.review() == 0  # nothing given, nothing sent
    with pytest.raises(edgemine.QueryError, match="both accept and reject"):
        api.review(accept=[first], reject=[first])
    with pytest.raises(edgemine.QueryError, match="reviewer"):
        api.review(accept=[first], reviewer="x" * (MAX_SESSION_CHARS + 1))
    with pytest.raises(edgemine.QueryError, match="unknown verdict 'maybe'"):
        api.verdicts(verdict="maybe")
    with pytest.raises(edgemine.QueryError, match="session_id"):
        api.yield_report(session_id="")
    assert api.verdicts() == []


def test_yield_report_counts_per_query_strategy_and_session(api: edgemine.Client, api_bundle: ApiBundle) -> None:
    session = edgemine.Client(api.backend, session_id="s1")
    a = session.mine(positive_ids=[api_bundle.ids[0]], k=5)
    a.review(accept=a.ids[:3], reject=a.ids[3:5])
    b = api.mine(positive_ids=[api_bundle.ids[9]], k=4, strategy="mean")
    b.review(accept=b.ids[:1], skip=b.ids[1:2])
    report = api.yield_report()
    assert isinstance(report, edgemine.YieldReport)
    assert (report.overall.reviewed, report.overall.accepted, report.overall.skipped) == (6, 4, 1)
    assert report.overall.ci_low is not None and report.overall.ci_low < 4 / 6 < (report.overall.ci_high or 0)
    per_query = {q.query_id: (q.strategy, q.accepted, q.reviewed) for q in report.queries}
    assert per_query == {a.query_id: ("max", 3, 5), b.query_id: ("mean", 1, 1)}
    assert [(s.session_id, s.accepted, s.reviewed) for s in report.sessions] == [("s1", 3, 5)]
    assert [(p.verdicts, p.accepted) for p in report.sessions[0].curve] == [(1, 1), (2, 2), (3, 3), (4, 3), (5, 3)]
    only = api.yield_report(session_id="s1")
    assert (only.overall.accepted, only.overall.reviewed) == (3, 5) and only.to_dict()["overall"]["accepted"] == 3
    assert "Mining yield" in report._repr_html_() and "<svg" in report._repr_html_()
