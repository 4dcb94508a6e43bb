"""Labeling state: batches and labels exclude images from mining, survive restarts and re-indexing."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgemine.indexer import read_embeddings_source, run_index, scan_directory
from edgemine.service import MineQuery
from edgemine.service.batches import BatchCreate, BatchItemIn, create_batch, export_batch, get_batch
from tests.support.state_backend import runtime_of, state_of, state_url

Make = Callable[..., Any]
PUBLIC = "http://mine.example:8080"


def mine_ids(client: Any, **query: Any) -> list[str]:
    response = client.post("/v1/mine", json=query)
    assert response.status_code == 200, response.text
    return [c["image_id"] for c in response.json()["candidates"]]


def test_library_batch_queues_and_excludes(make_byo_bundle: Make) -> None:
    built = make_byo_bundle(n=100)
    runtime = runtime_of(built.path)
    miner = runtime.current().miner
    first = miner.mine(MineQuery(positive_ids=["im0001"], k=10))
    db = state_of(built.path)
    db.set_state(["im0099"], "labeled")
    request = BatchCreate(name="night glare", query={"positive_ids": ["im0001"], "k": 10},
                          items=[BatchItemIn(image_id=c.image_id, score=c.score,
                                             nearest_example_id=c.nearest_example_id,
                                             nearest_example_similarity=c.nearest_example_similarity)
                                 for c in first.candidates[:6]] + [BatchItemIn(image_id="im0099")])
    batch = create_batch(db, runtime.current().snapshot, request)
    queued = [c.image_id for c in first.candidates[:6]]
    assert [i.image_id for i in batch.items or []] == queued
    assert {i.state for i in batch.items or []} == {"queued"}
    assert batch.skipped == ["im0099"]  # labeled stays labeled, not demoted to queued
    assert batch.bundle_version == 1 and batch.query == {"positive_ids": ["im0001"], "k": 10}

    second = miner.mine(MineQuery(positive_ids=["im0001"], k=10))
    assert not {c.image_id for c in second.candidates} & {*queued, "im0099"}
    assert [c.image_id for c in second.candidates[:4]] == [c.image_id for c in first.candidates[6:10]]
    assert db.state_counts() == {"unlabeled": 93, "queued": 6, "labeled": 1, "rejected": 0}

    # A fresh Runtime (a restart) reads the same state.
    again = runtime_of(built.path).current().miner.mine(MineQuery(positive_ids=["im0001"], k=10))
    assert [c.image_id for c in again.candidates] == [c.image_id for c in second.candidates]


def test_http_batch_labels_and_exports(image_bundle: Any, open_client: Make) -> None:
    client = open_client(image_bundle.path, public_url=PUBLIC)
    positive = image_bundle.ids[0]
    query = {"positive_ids": [positive], "k": 8, "strategy": "max"}
    mined = client.post("/v1/mine", json=query).json()
    candidates = mined["candidates"]
    assert candidates[0]["image_url"].startswith(f"{PUBLIC}/v1/images/")

    # The candidates as returned by /v1/mine can be posted as batch items (extra keys ignored).
    response = client.post("/v1/batches", json={"name": "glare", "items": candidates[:3], "query": query})
    assert response.status_code == 201, response.text
    batch = response.json()
    assert batch["size"] == 3 and batch["bundle_version"] == 1 and batch["query"] == query
    assert [i["state"] for i in batch["items"]] == ["queued"] * 3
    queued = [c["image_id"] for c in candidates[:3]]
    after_batch = mine_ids(client, **query)
    assert not set(after_batch) & set(queued)
    assert after_batch[:5] == [c["image_id"] for c in candidates[3:8]]

    response = client.post("/v1/labels", json={"image_ids": [candidates[3]["image_id"]]})
    assert response.status_code == 200 and response.json() == {"changed": 1, "state": "labeled"}
    assert candidates[3]["image_id"] not in mine_ids(client, **query)
    health = client.get("/v1/health").json()
    assert health["counts"] == {"images": 30, "unlabeled": 26, "queued": 3, "labeled": 1, "rejected": 0}

    # Putting an image back to unlabeled makes it minable again.
    client.post("/v1/labels", json={"image_ids": [candidates[3]["image_id"]], "state": "unlabeled"})
    assert candidates[3]["image_id"] in mine_ids(client, **query)

    listed = client.get("/v1/batches").json()
    assert [b["batch_id"] for b in listed] == [batch["batch_id"]] and listed[0]["items"] is None
    assert client.get(f"/v1/batches/{batch['batch_id']}").json()["items"] == batch["items"]
    missing = client.get("/v1/batches/b-nope")
    assert missing.status_code == 404 and "b-nope" in missing.json()["detail"]

    by_id = {c["image_id"]: c for c in candidates[:3]}
    meta_by_id = dict(zip(image_bundle.ids, zip(*image_bundle.meta.values(), strict=True), strict=True))

    def check_item(image_id: str, url: str, score: float, nearest: str, seq: str) -> None:
        assert url == f"{PUBLIC}/v1/images/{image_id}"
        assert abs(float(score) - by_id[image_id]["score"]) < 1e-9
        assert nearest == positive == by_id[image_id]["nearest_example_id"]
        assert seq == meta_by_id[image_id][0]

    export = client.get(f"/v1/batches/{batch['batch_id']}/export", params={"format": "jsonl"})
    assert export.status_code == 200 and export.headers["content-type"].startswith("application/x-ndjson")
    assert f'{batch["batch_id"]}.jsonl' in export.headers["content-disposition"]
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert [line["image_id"] for line in lines] == queued
    for line in lines:
        check_item(line["image_id"], line["image_url"], line["score"], line["nearest_example_id"],
                   line["metadata"]["sequence_id"])
        assert line["metadata"]["frame"] == meta_by_id[line["image_id"]][1]
        assert line["batch_id"] == batch["batch_id"] and line["query"] == query

    export = client.get(f"/v1/batches/{batch['batch_id']}/export", params={"format": "csv"})
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [r["image_id"] for r in rows] == queued
    for r in rows:
        check_item(r["image_id"], r["image_url"], float(r["score"]), r["nearest_example_id"], r["sequence_id"])
        assert {"frame", "timestamp", "time_of_day"} <= set(r)
        assert json.loads(r["query"]) == query and r["batch_id"] == batch["batch_id"]

    export = client.get(f"/v1/batches/{batch['batch_id']}/export", params={"format": "labelstudio"})
    assert export.status_code == 200
    tasks = export.json()
    assert [t["data"]["image_id"] for t in tasks] == queued
    for t in tasks:
        check_item(t["data"]["image_id"], t["data"]["image"], t["meta"]["score"],
                   t["meta"]["nearest_example_id"], t["data"]["sequence_id"])
        assert t["meta"]["query"] == query and t["meta"]["batch_name"] == "glare"

    assert client.get(f"/v1/batches/{batch['batch_id']}/export", params={"format": "xml"}).status_code == 422


def test_unknown_ids_change_nothing(image_bundle: Any, open_client: Make) -> None:
    client = open_client(image_bundle.path)
    known = image_bundle.ids[:2]
    before = client.get("/v1/health").json()["counts"]

    response = client.post("/v1/batches", json={"name": "x", "items": [
        {"image_id": known[0]}, {"image_id": "ghost/1.png"}, {"image_id": known[1]}, {"image_id": "ghost/2.png"}]})
    assert response.status_code == 404
    assert response.json()["unknown_ids"] == ["ghost/1.png", "ghost/2.png"]
    assert "ghost/1.png" in response.json()["detail"]

    response = client.post("/v1/labels", json={"image_ids": [known[0], "ghost/3.png"]})
    assert response.status_code == 404 and response.json()["unknown_ids"] == ["ghost/3.png"]

    assert client.get("/v1/health").json()["counts"] == before
    assert client.get("/v1/batches").json() == []
    mined = mine_ids(client, positive_ids=[image_bundle.ids[5]], k=29)
    assert set(known) <= set(mined) and len(mined) == 29


def test_state_survives_restart_and_reindex(tmp_path: Path, make_byo_bundle: Make) -> None:
    built = make_byo_bundle(n=80, seed=1)
    runtime = runtime_of(built.path)
    db = state_of(built.path)
    batch = create_batch(db, runtime.current().snapshot, BatchCreate(
        name="b", items=[BatchItemIn(image_id=i) for i in ["im0003", "im0004"]]))
    db.set_state(["im0005", "im0006"], "labeled")
    gone = {"im0003", "im0004", "im0005", "im0006"}

    # Re-index: the same 80 vectors plus 40 new ones -> version 2 (ids/metadata regenerated identically).
    rng = np.random.default_rng(1)
    vectors = np.concatenate([rng.standard_normal((80, 16)), np.random.default_rng(99).standard_normal((40, 16))])
    rebuilt = make_byo_bundle(vectors=vectors.astype(np.float32), bundle=built.path)
    assert (built.path / "CURRENT").read_text().strip() == "v000002"
    snapshot = runtime_of(built.path).current().snapshot
    assert snapshot.version == 2 and len(snapshot.image_ids) == 120
    assert snapshot.manifest.counts.added == 40

    for rt in (runtime, runtime_of(built.path)):  # the old runtime hot-switches; a new one starts fresh
        result = rt.current().miner.mine(MineQuery(positive_ids=["im0001"], k=200))
        assert result.bundle_version == 2
        returned = {c.image_id for c in result.candidates}
        assert len(returned) == 115 and not returned & gone
        assert {f"im{i:04d}" for i in range(80, 120)} <= returned
    assert db.state_counts() == {"unlabeled": 116, "queued": 2, "labeled": 2, "rejected": 0}
    assert [i.state for i in get_batch(db, snapshot, batch.batch_id).items or []] == ["queued", "queued"]
    text, media = export_batch(get_batch(db, snapshot, batch.batch_id), "jsonl")
    assert media == "application/x-ndjson" and len(text.splitlines()) == 2
    assert rebuilt.ids[-1] == "im0119"


def test_state_survives_reindex_of_images(tmp_path: Path, image_bundle: Any, open_client: Make,
                                          make_images: Make, fake_model: Any) -> None:
    client = open_client(image_bundle.path)
    labeled = image_bundle.ids[1:4]
    assert client.post("/v1/labels", json={"image_ids": labeled}).status_code == 200
    new_ids = make_images(image_bundle.image_root, 6, seed=77, prefix="new")
    report = run_index(scan_directory(image_bundle.image_root, tmp_path / "metadata.csv"), image_bundle.path,
                       fake_model, workers=0, progress=False, state_url=state_url(image_bundle.path))
    assert report.version == 2 and report.added == 6
    body = client.post("/v1/mine", json={"positive_ids": [image_bundle.ids[0]], "k": 100}).json()
    returned = {c["image_id"] for c in body["candidates"]}
    assert body["bundle_version"] == 2
    assert set(new_ids) <= returned and not returned & set(labeled) and len(returned) == 36 - 1 - 3
    assert client.get("/v1/health").json()["counts"]["labeled"] == 3


def test_labeled_column_in_source_marks_images_labeled(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from edgemine.bundle.layout import ModelInfo
    from edgemine.indexer import ModelChoice

    vectors = np.random.default_rng(0).standard_normal((20, 8)).astype(np.float32)
    pq.write_table(pa.table({"image_id": [f"x{i}" for i in range(20)],
                             "embedding": pa.array(vectors.tolist(), pa.list_(pa.float32())),
                             "labeled": [i < 5 for i in range(20)]}), tmp_path / "e.parquet")
    run_index(read_embeddings_source(tmp_path / "e.parquet"), tmp_path / "b",
              ModelChoice(ModelInfo(identity="byo:x", name="x", pretrained="external"), None), progress=False,
         state_url=state_url(tmp_path / "b"))
    result = runtime_of(tmp_path / "b").current().miner.mine(MineQuery(positive_ids=["x10"], k=50))
    assert sorted(c.image_id for c in result.candidates) == sorted(f"x{i}" for i in range(5, 20) if i != 10)
