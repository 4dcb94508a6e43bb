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
from edgemine.client import ImageUnavailable
from edgemine.service.batches import Batch as BatchModel
from edgemine.service.browse import ImagePage
from edgemine.service.limits import MAX_LABEL_IDS
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
