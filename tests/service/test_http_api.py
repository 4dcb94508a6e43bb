"""The HTTP API: mining, uploads, images, health, metrics, docs, validation and a small fuzz."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edgemine.indexer import read_manifest_source, run_index
from edgemine.models.base import ModelUnavailable
from tests.support.state_backend import state_url

Make = Callable[..., Any]


def test_mine_happy_path(image_bundle: Any, open_client: Make, reference: Make, check: Make) -> None:
    client = open_client(image_bundle.path)
    positives = image_bundle.ids[:2]
    response = client.post("/v1/mine", json={"positive_ids": positives, "negative_ids": [image_bundle.ids[2]],
                                             "k": 7, "strategy": "mean", "filters": {"time_of_day": ["day", "night"]}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"query_id", "candidates", "eligible", "offset", "next_offset", "next_cursor",
                         "bundle_version", "model", "strategy", "timings"}
    assert body["bundle_version"] == 1 and body["model"] == "fake/v1" and body["strategy"] == "mean"
    assert set(body["timings"]) == {"embed_ms", "search_ms", "total_ms"}
    assert body["timings"]["total_ms"] >= body["timings"]["search_ms"] >= 0
    assert body["offset"] == 0 and body["next_offset"] == 7
    assert [c["rank"] for c in body["candidates"]] == list(range(1, 8))
    for c in body["candidates"]:
        assert set(c) == {"image_id", "score", "rank", "nearest_example_id", "nearest_example_similarity",
                          "metadata", "state", "image_url"}
        assert c["image_url"] == f"/v1/images/{c['image_id']}" and c["state"] == "unlabeled"
        assert set(c["metadata"]) == {"sequence_id", "frame", "timestamp", "time_of_day"}
        assert c["metadata"]["time_of_day"] in ("day", "night")
        assert c["nearest_example_id"] in positives

    E = image_bundle.embeddings()
    row = image_bundle.row()
    eligible = np.array([t in ("day", "night") for t in image_bundle.meta["time_of_day"]])
    eligible[[row[i] for i in image_bundle.ids[:3]]] = False
    assert body["eligible"] == int(eligible.sum())
    check(body["candidates"], reference(E, image_bundle.ids, pos=E[[row[i] for i in positives]], pos_labels=positives,
                                        neg=E[[row[image_bundle.ids[2]]]], strategy="mean", eligible=eligible, k=7))
    first = body["candidates"][0]
    meta = dict(zip(image_bundle.meta, [v[row[first["image_id"]]] for v in image_bundle.meta.values()], strict=True))
    assert first["metadata"]["frame"] == meta["frame"] and first["metadata"]["sequence_id"] == meta["sequence_id"]
    assert first["metadata"]["timestamp"] == meta["timestamp"].isoformat()


def test_unknown_ids_are_404(image_bundle: Any, open_client: Make) -> None:
    client = open_client(image_bundle.path)
    response = client.post("/v1/mine", json={"positive_ids": [image_bundle.ids[0], "nope/a.png"],
                                             "negative_ids": ["nope/b.png"]})
    assert response.status_code == 404
    body = response.json()
    assert body["unknown_ids"] == ["nope/a.png", "nope/b.png"] and "nope/a.png" in body["detail"]


@pytest.mark.parametrize(("body", "needle"), [
    ({}, "empty query"),
    ({"negative_ids": ["NEG"]}, "empty query"),
    ({"positive_ids": ["POS"], "k": 0}, "k"),
    ({"positive_ids": ["POS"], "k": 10_001}, "k"),
    ({"positive_ids": ["POS"], "strategy": "median"}, "strategy"),
    ({"positive_ids": ["POS"], "filters": {"weather": "rain"}}, "valid columns: sequence_id, frame"),
    ({"positive_ids": ["POS"], "filters": {"frame": "abc"}}, "'frame'"),
    ({"positive_ids": ["POS"], "filters": {"timestamp": {"gte": "soon"}}}, "'timestamp'"),
    ({"positive_ids": ["POS"], "topk": 5}, "topk"),
    ({"positive_ids": ["POS"], "filters": {"frame": {"eq": 1, "approx": True}}}, "approx"),
    ({"positive_ids": ["POS"], "max_per_group": 2}, "group_by"),
    ({"positive_ids": ["POS"], "group_by": "weather", "max_per_group": 2}, "weather"),
])
def test_bad_queries_are_422(image_bundle: Any, open_client: Make, body: dict[str, Any], needle: str) -> None:
    client = open_client(image_bundle.path)
    text = json.dumps(body).replace("POS", image_bundle.ids[0]).replace("NEG", image_bundle.ids[1])
    response = client.post("/v1/mine", content=text, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert needle in response.text


@pytest.mark.parametrize(("raw", "status"), [(b"{", 422), (b'{"positive_ids": ["a"],}', 422), (b"", 422),
                                             (b"positive_ids=a", 422), (b"\xff\xfe\x00", 400)])
def test_malformed_json_is_rejected(image_bundle: Any, open_client: Make, raw: bytes, status: int) -> None:
    client = open_client(image_bundle.path)
    response = client.post("/v1/mine", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == status  # FastAPI answers 400 when the body is not even text


def png_bytes(path: Path) -> bytes:
    return path.read_bytes()


def test_upload_mining(image_bundle: Any, open_client: Make, fake_embedder: Any, reference: Make,
                       check: Make) -> None:
    client = open_client(image_bundle.path)
    target = image_bundle.ids[7]
    data = png_bytes(image_bundle.image_root / target)
    response = client.post("/v1/mine/upload", files=[("files", ("failure.png", data, "image/png"))],
                           data={"query": json.dumps({"k": 5, "strategy": "max"})})
    assert response.status_code == 200, response.text
    candidates = response.json()["candidates"]
    # The upload is a copy of an indexed image, which is not excluded (it is not an id in the query).
    assert candidates[0]["image_id"] == target and candidates[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert {c["nearest_example_id"] for c in candidates} == {"upload:failure.png"}
    with Image.open(io.BytesIO(data)) as im:
        pos = fake_embedder.embed_images([im.convert("RGB")])
    E = image_bundle.embeddings()
    check(candidates, reference(E, image_bundle.ids, pos=pos, pos_labels=["upload:failure.png"],
                                eligible=np.ones(len(E), bool), k=5))

    # Uploads combine with ids and the rest of the query.
    combined = client.post("/v1/mine/upload", files=[("files", ("f.png", data, "image/png"))],
                           data={"query": json.dumps({"positive_ids": [image_bundle.ids[0]], "k": 4,
                                                      "exclude_ids": [target]})})
    assert combined.status_code == 200
    ids = [c["image_id"] for c in combined.json()["candidates"]]
    assert len(ids) == 4 and target not in ids and image_bundle.ids[0] not in ids


def test_bad_uploads(image_bundle: Any, open_client: Make) -> None:
    client = open_client(image_bundle.path)
    good = png_bytes(image_bundle.image_root / image_bundle.ids[0])
    response = client.post("/v1/mine/upload", files=[("files", ("good.png", good, "image/png")),
                                                     ("files", ("garbage.png", b"this is not a PNG", "image/png"))])
    assert response.status_code == 422 and "garbage.png" in response.json()["detail"]
    response = client.post("/v1/mine/upload", files=[("files", ("empty.jpg", b"", "image/jpeg"))])
    assert response.status_code == 422 and "empty.jpg" in response.json()["detail"]
    response = client.post("/v1/mine/upload", files=[("files", ("cut.png", good[: len(good) // 2], "image/png"))])
    assert response.status_code == 422 and "cut.png" in response.json()["detail"]
    response = client.post("/v1/mine/upload", files=[("files", ("good.png", good, "image/png"))],
                           data={"query": "{not json"})
    assert response.status_code == 422
    response = client.post("/v1/mine/upload", files=[("files", ("good.png", good, "image/png"))],
                           data={"query": json.dumps({"k": 0})})
    assert response.status_code == 422
    response = client.post("/v1/mine/upload", data={"query": "{}"})
    assert response.status_code == 422


def test_byo_bundle_has_no_model(make_byo_bundle: Make, open_client: Make, image_bundle: Any) -> None:
    built = make_byo_bundle(n=40)
    client = open_client(built.path)
    response = client.post("/v1/mine", json={"texts": ["a foggy road"]})
    assert response.status_code == 422
    assert "precomputed embeddings" in response.json()["detail"] and "image ids" in response.json()["detail"]
    png = png_bytes(image_bundle.image_root / image_bundle.ids[0])
    response = client.post("/v1/mine/upload", files=[("files", ("a.png", png, "image/png"))])
    assert response.status_code == 422 and "precomputed embeddings" in response.json()["detail"]
    assert client.post("/v1/mine", json={"positive_ids": ["im0001"], "k": 3}).status_code == 200
    response = client.get("/v1/images/im0001")
    assert response.status_code == 404 and "no file" in response.json()["detail"]


def test_images(image_bundle: Any, open_client: Make) -> None:
    client = open_client(image_bundle.path)
    image_id = image_bundle.ids[3]
    response = client.get(f"/v1/images/{image_id}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-content-type-options"] == "nosniff"
    # Re-encoded from the decoded pixels: the same pixels, losslessly.
    with Image.open(io.BytesIO(response.content)) as served, Image.open(image_bundle.image_root / image_id) as orig:
        assert np.array_equal(np.asarray(served.convert("RGB")), np.asarray(orig.convert("RGB")))

    for size, edge in ((32, 24), (16, 16)):  # images are 24x16; thumbnails never upscale
        thumb = client.get(f"/v1/images/{image_id}", params={"size": size})
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(thumb.content)) as im:
            assert im.format == "JPEG" and max(im.size) == edge
    assert client.get(f"/v1/images/{image_id}", params={"size": 8}).status_code == 422
    assert client.get(f"/v1/images/{image_id}", params={"size": "big"}).status_code == 422

    missing = client.get("/v1/images/g0/nope.png")
    assert missing.status_code == 404 and missing.json()["unknown_ids"] == ["g0/nope.png"]
    (image_bundle.image_root / image_bundle.ids[4]).unlink()
    gone = client.get(f"/v1/images/{image_bundle.ids[4]}")
    assert gone.status_code == 404 and "gone" in gone.json()["detail"]


def test_images_outside_the_roots_are_forbidden(tmp_path: Path, open_client: Make, make_images: Make,
                                                fake_model: Any) -> None:
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    inner = make_images(inside, 2, seed=1)
    outer = make_images(outside, 1, seed=2, prefix="secret")
    os.symlink(outside / outer[0], inside / "link.png")
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "path", "time_of_day"])
        writer.writerow(["in-0", f"inside/{inner[0]}", "day"])
        writer.writerow(["in-1", f"inside/{inner[1]}", "day"])
        writer.writerow(["out", f"outside/{outer[0]}", "night"])
        writer.writerow(["escape", "inside/../outside/" + outer[0], "night"])
        writer.writerow(["link", "inside/link.png", "night"])
    bundle = tmp_path / "bundle"
    # Rows outside --image-root are refused at index time: a bundle only holds such rows when they
    # are kept from an earlier run whose declared root was wider (each run's root replaces it).
    run_index(read_manifest_source(manifest, image_root=tmp_path), bundle, fake_model, workers=0, progress=False,
              state_url=state_url(bundle))
    narrow = tmp_path / "inside.csv"
    narrow.write_text(f"image_id,path,time_of_day\nin-0,inside/{inner[0]},day\nin-1,inside/{inner[1]},day\n")
    run_index(read_manifest_source(narrow, image_root=inside), bundle, fake_model, workers=0, progress=False,
              state_url=state_url(bundle))
    client = open_client(bundle)
    assert client.get("/v1/images/in-0").status_code == 200
    for image_id in ("out", "escape", "link"):
        response = client.get(f"/v1/images/{image_id}")
        assert response.status_code == 403, image_id
        assert "outside" in response.json()["detail"]
        assert client.get(f"/v1/images/{image_id}", params={"size": 32}).status_code == 403


def test_health_metrics_docs(image_bundle: Any, open_client: Make) -> None:
    client = open_client(image_bundle.path)
    client.post("/v1/mine", json={"positive_ids": [image_bundle.ids[0]], "k": 2})
    health = client.get("/v1/health")
    assert health.status_code == 200
    body = health.json()
    assert body["ready"] is True and body["bundle"] == str(image_bundle.path)
    assert body["bundle_version"] == 1 and body["model"] == "fake/v1" and body["dim"] == 16
    assert body["model_loaded"] is False and body["switch_error"] is None
    assert body["counts"] == {"images": 30, "unlabeled": 30, "queued": 0, "labeled": 0, "rejected": 0}
    assert body["metadata_columns"] == ["sequence_id", "frame", "timestamp", "time_of_day"]
    assert body["index"]["type"] == "flat"

    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert 'edgemine_http_requests_total{method="POST",route="/v1/mine",status="200"}' in metrics.text
    assert "edgemine_mine_seconds_bucket" in metrics.text

    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    assert {"/v1/mine", "/v1/mine/upload", "/v1/batches", "/v1/labels", "/v1/health"} <= set(spec.json()["paths"])


def test_id_only_mining_never_loads_the_model(image_bundle: Any, open_client: Make, fake_embedder: Any) -> None:
    calls: list[tuple[str, str]] = []

    def counting(name: str, pretrained: str) -> Any:
        calls.append((name, pretrained))
        return fake_embedder

    client = open_client(image_bundle.path, loader=counting)
    for strategy in ("mean", "max", "rrf"):
        response = client.post("/v1/mine", json={"positive_ids": image_bundle.ids[:2], "strategy": strategy,
                                                 "negative_ids": [image_bundle.ids[3]], "k": 5})
        assert response.status_code == 200
    batch = client.post("/v1/batches", json={"name": "b", "items": [{"image_id": image_bundle.ids[9]}]})
    assert batch.status_code == 201
    assert client.get(f"/v1/images/{image_bundle.ids[0]}", params={"size": 16}).status_code == 200
    assert calls == [] and client.get("/v1/health").json()["model_loaded"] is False

    assert client.post("/v1/mine", json={"texts": ["snow"], "k": 3}).status_code == 200
    assert client.post("/v1/mine", json={"texts": ["rain"], "k": 3}).status_code == 200
    assert calls == [("fake", "none")]  # loaded once, on the first query that needs it
    assert client.get("/v1/health").json()["model_loaded"] is True


def test_unavailable_model_only_fails_queries_that_need_it(image_bundle: Any, open_client: Make) -> None:
    def broken(name: str, pretrained: str) -> Any:
        raise ModelUnavailable("weights for fake/none are not downloaded")

    client = open_client(image_bundle.path, loader=broken)
    assert client.post("/v1/mine", json={"positive_ids": [image_bundle.ids[0]]}).status_code == 200
    response = client.post("/v1/mine", json={"positive_ids": [image_bundle.ids[0]], "texts": ["x"]})
    assert response.status_code == 503 and "not downloaded" in response.json()["detail"]
    assert client.get("/v1/health").json()["model_loaded"] is False


def q(**fields: Any) -> dict[str, Any]:
    """A query with a valid positive id plus `fields`."""
    return {"positive_ids": ["POS"], **fields}


def f(**filters: Any) -> dict[str, Any]:
    return q(filters=filters)


FUZZ: list[Any] = [
    [], "string", 123, None, True,
    {"positive_ids": "POS"}, {"positive_ids": [None]}, {"positive_ids": [1]}, {"positive_ids": [["POS"]]},
    {"positive_ids": [""]}, {"positive_ids": ["   "]}, {"positive_ids": {"a": 1}}, {"positive_ids": [[[[[]]]]]},
    {"positive_ids": ["POS"] * 10_001}, {"positive_ids": ["ghost"] * 3},
    q(k=None), q(k="ten"), q(k=-5), q(k=1e12), q(k=10**30), q(k=1.5), q(k=[5]),
    q(offset=-1), q(offset=10**9), q(strategy=None), q(strategy=5),
    q(negative_weight=-1), q(negative_weight="heavy"), q(negative_weight=100),
    q(filters=[]), q(filters="frame=1"), f(frame=None), f(frame={"eq": None}), f(frame={}),
    f(frame={"between": [1, 2]}), f(frame={"eq": {"nested": [1]}}), f(frame=[[1]]), f(frame=[{"a": 1}]),
    f(frame={"in": "abc"}), f(frame={"eq": 1e19}), f(frame={"eq": True}), f(frame=10**30),
    f(timestamp={"gte": 1e20}), f(timestamp={"gte": "not-a-date"}), f(timestamp={"in": ["2024-01-01", "never"]}),
    f(nope=1), f(**{"": 1}), f(path="/etc/passwd"),
    q(exclude_ids=[None]), q(exclude_ids=5), q(include_states=["done"]), q(include_states="unlabeled"),
    q(max_per_group=0, group_by="sequence_id"), q(max_per_group=2), q(group_by="nope", max_per_group=1),
    q(group_by=5, max_per_group=1), q(dedup_threshold=0), q(dedup_threshold=1.5), q(min_score="high"),
    q(texts=[None]), q(texts="night"), q(negative_texts=[""]), q(negative_ids=["ghost"]),
    q(topk=5), q(filters={"frame": {"eq": 1}}, x={}),
    # json.dumps writes these as the non-standard NaN/Infinity tokens that Python's parser accepts.
    q(k=float("nan")), q(negative_weight=float("inf")), q(dedup_threshold=float("nan")), q(offset=float("-inf")),
    f(frame={"gt": float("nan")}), f(timestamp={"gt": float("inf")}),
]


def test_fuzz_never_500(image_bundle: Any, open_client: Make) -> None:
    client = open_client(image_bundle.path, raise_server_exceptions=False)
    positive = image_bundle.ids[0]
    png = (image_bundle.image_root / positive).read_bytes()
    assert len(FUZZ) >= 30
    for body in FUZZ:
        text = json.dumps(body).replace("POS", positive)
        response = client.post("/v1/mine", content=text, headers={"content-type": "application/json"})
        assert 400 <= response.status_code < 500, (body if len(text) < 300 else text[:300], response.text[:500])
        upload = client.post("/v1/mine/upload", data={"query": text}, files=[("files", ("x.png", png, "image/png"))])
        assert 400 <= upload.status_code < 500, (text[:300], upload.text[:500])
    for route, body in (("/v1/labels", {"image_ids": []}), ("/v1/labels", {"image_ids": [positive], "state": "done"}),
                        ("/v1/labels", {"image_ids": "x"}), ("/v1/labels", [positive]), ("/v1/labels", None),
                        ("/v1/batches", {"name": "", "items": [{"image_id": positive}]}),
                        ("/v1/batches", {"name": "x", "items": []}), ("/v1/batches", {"name": "x", "items": [{}]}),
                        ("/v1/batches", {"name": "x", "items": [{"image_id": ""}]}),
                        ("/v1/batches", {"name": "x", "items": [{"image_id": positive, "score": "high"}]}),
                        ("/v1/batches", {"name": "x", "items": [positive]}),
                        ("/v1/batches", {"name": "x", "items": [{"image_id": positive}], "query": []})):
        response = client.post(route, json=body)
        assert 400 <= response.status_code < 500, (route, body, response.text[:300])
    # Nothing above changed any state.
    assert client.get("/v1/health").json()["counts"]["unlabeled"] == 30
