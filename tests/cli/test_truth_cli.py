"""`edgemine annotations import`, `predictions import`, `models list` on a bundle of precomputed vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from edgemine.bundle import StateDB
from edgemine.bundle.layout import ModelInfo
from edgemine.cli.main import app
from edgemine.indexer import ModelChoice, read_embeddings_source, run_index
from edgemine.scenarios.store import list_models, load_truth

IDS = [f"cam/f{i:03d}.jpg" for i in range(20)]


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A published bundle of 20 random vectors with a time_of_day column."""
    vectors = np.random.default_rng(5).standard_normal((len(IDS), 8)).astype(np.float32)
    pq.write_table(pa.table({"image_id": IDS, "embedding": pa.array(vectors.tolist(), pa.list_(pa.float32())),
                             "time_of_day": ["night" if i % 2 else "day" for i in range(len(IDS))]}),
                   tmp_path / "emb.parquet")
    model = ModelChoice(ModelInfo(identity="byo:test", name="test", pretrained="external"), None)
    assert run_index(read_embeddings_source(tmp_path / "emb.parquet"), tmp_path / "bundle", model,
                     progress=False).published
    return tmp_path / "bundle"


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_annotations_then_two_models_import_and_list(tmp_path: Path, bundle: Path) -> None:
    gt = write_jsonl(tmp_path / "gt.jsonl", [
        {"image_id": IDS[0], "detections": [{"label": "pedestrian", "box": [10, 20, 30, 40]},
                                            {"label": "car", "box": [0, 0, 5, 5]}]},
        {"image_id": IDS[1], "detections": []}])
    result = invoke("annotations", "import", str(gt), "--bundle", str(bundle))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == ("imported ground truth: 2 images (detection, 2 objects), labels: car, pedestrian "
                                     "from gt.jsonl; 2 images newly marked labeled")
    assert StateDB(bundle / "state.sqlite").state_counts()["labeled"] == 2

    for name, score in (("v7", 0.6), ("v8", 0.9)):
        preds = write_jsonl(tmp_path / f"{name}.jsonl", [
            {"image_id": IDS[0], "detections": [{"label": "pedestrian", "box": [11, 20, 30, 40], "score": score}]}])
        out = invoke("predictions", "import", str(preds), "--model", name, "--bundle", str(bundle))
        assert out.exit_code == 0, out.output
        assert out.stdout.strip() == (f"imported predictions of model {name!r}: 1 images (detection, 1 objects), "
                                      f"labels: pedestrian from {name}.jsonl")

    listed = invoke("models", "list", "--bundle", str(bundle))
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["model", "images", "task", "source", "imported_at", "hash"]
    hashes = {m.name: m.hash[:12] for m in list_models(StateDB(bundle / "state.sqlite"))}
    assert [[*line.split()[:4], line.split()[5]] for line in lines[1:]] == [
        ["v7", "1", "detection", "v7.jsonl", hashes["v7"]], ["v8", "1", "detection", "v8.jsonl", hashes["v8"]]]


def test_bad_files_exit_2_with_one_line_naming_file_line_and_field_and_store_nothing(
        tmp_path: Path, bundle: Path) -> None:
    bad = tmp_path / "gt.jsonl"
    bad.write_text(json.dumps({"image_id": IDS[0], "classification": {"label": "car"}}) + "\n"
                   + json.dumps({"image_id": IDS[1], "classification": {"label": "car", "colour": "red"}}) + "\n")
    result = invoke("annotations", "import", str(bad), "--bundle", str(bundle))
    assert result.exit_code == 2
    assert result.stderr == f"error: {bad}, line 2 (field 'classification.colour'): unexpected field (expected label)\n"
    assert load_truth(StateDB(bundle / "state.sqlite")) == {}

    unknown = write_jsonl(tmp_path / "u.jsonl", [{"image_id": "nope.jpg", "classification": {"label": "car"}}])
    result = invoke("annotations", "import", str(unknown), "--bundle", str(bundle))
    assert result.exit_code == 2 and "unknown image ids: 'nope.jpg'" in result.stderr
    assert "Traceback" not in result.output
    assert StateDB(bundle / "state.sqlite").state_counts()["labeled"] == 0

    preds = write_jsonl(tmp_path / "p.jsonl", [{"image_id": IDS[0], "classification": {"label": "car", "score": 0.5}}])
    result = invoke("predictions", "import", str(preds), "--model", "v7", "--bundle", str(bundle))
    assert result.exit_code == 2 and "no ground truth yet" in result.stderr


def test_models_list_on_a_bundle_without_predictions_says_how_to_import(bundle: Path, tmp_path: Path) -> None:
    result = invoke("models", "list", "--bundle", str(bundle))
    assert result.exit_code == 0 and "edgemine predictions import FILE --model NAME" in result.stdout
    missing = invoke("models", "list", "--bundle", str(tmp_path / "nowhere"))
    assert missing.exit_code == 2 and "no state.sqlite" in missing.stderr


def test_coco_ground_truth_then_coco_results(tmp_path: Path, bundle: Path) -> None:
    instances = {"images": [{"id": 5, "file_name": IDS[3]}, {"id": 6, "file_name": IDS[4].removesuffix(".jpg")}],
                 "annotations": [{"id": 1, "image_id": 5, "category_id": 1, "bbox": [1, 2, 3, 4]}],
                 "categories": [{"id": 1, "name": "pedestrian"}]}
    (tmp_path / "instances.json").write_text(json.dumps(instances))
    (tmp_path / "results.json").write_text(json.dumps(
        [{"image_id": 6, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.3}]))
    result = invoke("annotations", "import", str(tmp_path / "instances.json"), "--bundle", str(bundle))
    assert result.exit_code == 2 and repr(IDS[4].removesuffix(".jpg")) in result.stderr  # "cam/f004" is not an id
    instances["images"][1]["file_name"] = IDS[4]
    (tmp_path / "instances.json").write_text(json.dumps(instances))
    assert invoke("annotations", "import", str(tmp_path / "instances.json"), "--bundle", str(bundle)).exit_code == 0
    result = invoke("predictions", "import", str(tmp_path / "results.json"), "--model", "det",
                    "--coco-images", str(tmp_path / "instances.json"), "--bundle", str(bundle))
    assert result.exit_code == 0, result.output
    assert "1 images (detection, 1 objects)" in result.stdout


def test_a_running_service_stops_mining_images_once_their_ground_truth_is_imported(
        tmp_path: Path, bundle: Path) -> None:
    from fastapi.testclient import TestClient

    from edgemine.service.app import create_app
    from edgemine.service.config import Settings

    with TestClient(create_app(Settings(bundle=bundle))) as client:
        def mined() -> list[str]:
            response = client.post("/v1/mine", json={"positive_ids": [IDS[0]], "k": 5})
            assert response.status_code == 200, response.text
            return [c["image_id"] for c in response.json()["candidates"]]

        first = mined()
        gt = write_jsonl(tmp_path / "gt.jsonl",
                         [{"image_id": i, "classification": {"label": "car"}} for i in first[:2]])
        assert invoke("annotations", "import", str(gt), "--bundle", str(bundle)).exit_code == 0
        after = mined()
        assert not set(first[:2]) & set(after) and after[:3] == first[2:5]
