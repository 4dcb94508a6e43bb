"""Ground truth and predictions in state.sqlite: all-or-nothing imports, replacement, loading, hashes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edgemine.bundle import StateDB, UnknownImageIds
from edgemine.scenarios.errors import InputFileError, ScenarioError, UnknownModel
from edgemine.scenarios.records import Detection, ImageRecord
from edgemine.scenarios.store import (
    import_annotations,
    import_predictions,
    list_models,
    load_metadata,
    load_predictions,
    load_truth,
    predictions_hash,
    truth_hash,
)

IDS = [f"frames/f{i:02d}.jpg" for i in range(10)]


@pytest.fixture
def state(tmp_path: Path) -> StateDB:
    db = StateDB(tmp_path / "state.sqlite")
    with db.write() as conn:
        conn.executemany("INSERT INTO images (image_id, path, metadata, vec_id) VALUES (?, ?, ?, ?)",
                         [(i, None, json.dumps({"time_of_day": "night" if n % 2 else "day", "speed": n * 1.5}
                                               if n < 8 else {}), n) for n, i in enumerate(IDS)])
    return db


def jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def gt_row(image_id: str, *labels: str) -> dict[str, Any]:
    return {"image_id": image_id, "detections": [{"label": lab, "box": [i, i, 2, 3]} for i, lab in enumerate(labels)]}


def pred_row(image_id: str, *labels: str, score: float = 0.8) -> dict[str, Any]:
    return {"image_id": image_id,
            "detections": [{"label": lab, "box": [i, i, 2, 3], "score": score} for i, lab in enumerate(labels)]}


def labeled(state: StateDB) -> list[str]:
    with state.read() as conn:
        return sorted(r[0] for r in conn.execute("SELECT image_id FROM images WHERE state = 'labeled'"))


def tables(state: StateDB) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(state.path) as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
                for t in ("annotations", "predictions", "models", "images", "label_events", "coco_images")}


@pytest.fixture
def truth(tmp_path: Path, state: StateDB) -> Path:
    path = jsonl(tmp_path / "gt.jsonl", [gt_row(IDS[0], "pedestrian", "car"), gt_row(IDS[1], "car"), gt_row(IDS[2])])
    import_annotations(state, path)
    return path


def test_importing_annotations_stores_records_and_marks_images_labeled_with_events(
        tmp_path: Path, state: StateDB) -> None:
    path = jsonl(tmp_path / "gt.jsonl", [gt_row(IDS[0], "pedestrian", "car"), gt_row(IDS[1], "car"), gt_row(IDS[2])])
    report = import_annotations(state, path)
    assert (report.images, report.objects, report.labels, report.task, report.newly_labeled) == (
        3, 3, ("car", "pedestrian"), "detection", 3)
    assert report.summary() == ("imported ground truth: 3 images (detection, 3 objects), labels: car, pedestrian "
                                "from gt.jsonl; 3 images newly marked labeled")
    assert labeled(state) == sorted(IDS[:3])
    assert state.label_events_since(0)[1] == [(i, "labeled") for i in sorted(IDS[:3])]
    assert load_truth(state) == {
        IDS[0]: ImageRecord(IDS[0], "detection", detections=(Detection("pedestrian", (0.0, 0.0, 2.0, 3.0)),
                                                             Detection("car", (1.0, 1.0, 2.0, 3.0)))),
        IDS[1]: ImageRecord(IDS[1], "detection", detections=(Detection("car", (0.0, 0.0, 2.0, 3.0)),)),
        IDS[2]: ImageRecord(IDS[2], "detection"),
    }
    assert load_truth(state, [IDS[1], IDS[5], "nope"]) == {IDS[1]: load_truth(state)[IDS[1]]}


def test_unknown_image_ids_are_listed_and_nothing_is_imported(tmp_path: Path, state: StateDB, truth: Path) -> None:
    before = tables(state)
    path = jsonl(tmp_path / "more.jsonl", [gt_row(IDS[3], "car"), gt_row("ghost/1.jpg"), gt_row("ghost/2.jpg")])
    with pytest.raises(UnknownImageIds) as info:
        import_annotations(state, path)
    assert info.value.ids == ["ghost/1.jpg", "ghost/2.jpg"]
    preds = jsonl(tmp_path / "p.jsonl", [pred_row(IDS[0], "car"), pred_row("ghost/3.jpg", "car")])
    with pytest.raises(UnknownImageIds, match=r"ghost/3\.jpg"):
        import_predictions(state, preds, "v7")
    assert tables(state) == before


def test_a_malformed_line_anywhere_leaves_the_database_untouched(tmp_path: Path, state: StateDB, truth: Path) -> None:
    before = tables(state)
    path = tmp_path / "gt2.jsonl"
    path.write_text(json.dumps(gt_row(IDS[3], "car")) + "\n" + json.dumps(gt_row(IDS[4], "car")).replace("3]", "-3]"))
    with pytest.raises(InputFileError) as info:
        import_annotations(state, path)
    assert (info.value.line, info.value.field) == (2, "detections[0].box")
    assert tables(state) == before


def test_reimporting_annotations_replaces_only_the_images_in_the_file(tmp_path: Path, state: StateDB,
                                                                      truth: Path) -> None:
    first = truth_hash(state)
    again = import_annotations(state, truth)
    assert again.replaced == 3 and again.newly_labeled == 0 and truth_hash(state) == first  # same content, same hash
    report = import_annotations(state, jsonl(tmp_path / "fix.jsonl", [gt_row(IDS[1], "pedestrian"),
                                                                      gt_row(IDS[4], "car")]))
    assert (report.replaced, report.newly_labeled) == (1, 1)
    stored = load_truth(state)
    assert sorted(stored) == sorted([IDS[0], IDS[1], IDS[2], IDS[4]])
    assert [d.label for d in stored[IDS[1]].detections] == ["pedestrian"]
    assert [d.label for d in stored[IDS[0]].detections] == ["pedestrian", "car"]  # untouched
    assert truth_hash(state) != first


def test_one_bundle_holds_one_task(tmp_path: Path, state: StateDB, truth: Path) -> None:
    path = jsonl(tmp_path / "cls.jsonl", [{"image_id": IDS[5], "classification": {"label": "car"}}])
    with pytest.raises(InputFileError, match="one bundle holds one task") as info:
        import_annotations(state, path)
    assert info.value.line == 1
    # Replacing every image's ground truth with the other task is allowed.
    every = jsonl(tmp_path / "all.jsonl", [{"image_id": i, "classification": {"label": "car"}} for i in IDS[:3]])
    assert import_annotations(state, every).task == "classification"


def test_predictions_of_several_models_live_side_by_side_and_reimport_replaces_the_model(
        tmp_path: Path, state: StateDB, truth: Path) -> None:
    v7 = import_predictions(state, jsonl(tmp_path / "v7.jsonl", [pred_row(IDS[0], "car"), pred_row(IDS[1])]), "v7")
    v8 = import_predictions(state, jsonl(tmp_path / "v8.jsonl", [pred_row(IDS[0], "pedestrian", "car", score=0.3),
                                                                 pred_row(IDS[5], "car")]), "v8")
    assert (v7.images, v7.objects, v7.replaced, v8.images, v8.objects) == (2, 1, 0, 2, 3)
    assert [(m.name, m.images, m.source, m.task) for m in list_models(state)] == [
        ("v7", 2, "v7.jsonl", "detection"), ("v8", 2, "v8.jsonl", "detection")]
    assert load_predictions(state, "v8", [IDS[0]]) == {IDS[0]: ImageRecord(IDS[0], "detection", detections=(
        Detection("pedestrian", (0.0, 0.0, 2.0, 3.0), 0.3), Detection("car", (1.0, 1.0, 2.0, 3.0), 0.3)))}
    assert list_models(state)[0].hash == predictions_hash(state, "v7") == v7.hash

    again = import_predictions(state, jsonl(tmp_path / "v7b.jsonl", [pred_row(IDS[2], "car")]), "v7")
    assert again.replaced == 2
    assert sorted(load_predictions(state, "v7")) == [IDS[2]]  # the whole model replaced
    assert sorted(load_predictions(state, "v8")) == sorted([IDS[0], IDS[5]])  # the other model untouched
    # Re-importing identical content gives the identical hash.
    import_predictions(state, tmp_path / "v8.jsonl", "v8")
    assert predictions_hash(state, "v8") == v8.hash


def test_unknown_model_names_the_models_that_exist(tmp_path: Path, state: StateDB, truth: Path) -> None:
    with pytest.raises(UnknownModel, match="none imported yet"):
        load_predictions(state, "v9")
    import_predictions(state, jsonl(tmp_path / "v7.jsonl", [pred_row(IDS[0], "car")]), "v7")
    with pytest.raises(UnknownModel, match=r"'v9'.*v7") as info:
        predictions_hash(state, "v9")
    assert info.value.known == ["v7"]


def test_prediction_labels_outside_the_ground_truth_label_set_are_refused(
        tmp_path: Path, state: StateDB, truth: Path) -> None:
    path = jsonl(tmp_path / "p.jsonl", [pred_row(IDS[0], "car"), pred_row(IDS[1], "car", "Pedestrian", "bus")])
    with pytest.raises(InputFileError) as info:
        import_predictions(state, path, "v7")
    assert (info.value.line, info.value.field) == (2, "detections[1].label")
    assert "'Pedestrian' is not in the ground truth's label set (car, pedestrian)" in info.value.reason
    assert "Pedestrian, bus" in info.value.reason
    assert list_models(state) == []


def test_predictions_need_ground_truth_of_the_same_task(tmp_path: Path, state: StateDB) -> None:
    preds = jsonl(tmp_path / "p.jsonl", [{"image_id": IDS[0], "classification": {"label": "car", "score": 0.9}}])
    with pytest.raises(ScenarioError, match="no ground truth yet"):
        import_predictions(state, preds, "v7")
    import_annotations(state, jsonl(tmp_path / "gt.jsonl", [gt_row(IDS[0], "car")]))
    with pytest.raises(InputFileError, match="classification but the ground truth is detection"):
        import_predictions(state, preds, "v7")
    with pytest.raises(ScenarioError, match="invalid model name"):
        import_predictions(state, tmp_path / "gt.jsonl", "../v7")


def coco_doc() -> dict[str, Any]:
    return {"images": [{"id": 1, "file_name": "frames/f00.jpg"}, {"id": 2, "file_name": "frames/f01.png"},
                       {"id": 3, "file_name": "frames/f02.jpg"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]},
                            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [2, 2, 4, 4]}],
            "categories": [{"id": 1, "name": "pedestrian"}, {"id": 2, "name": "car"}]}


def test_coco_file_names_map_to_bundle_ids_as_written_or_without_extension(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "state.sqlite")
    with db.write() as conn:  # ids with and without extension
        conn.executemany("INSERT INTO images (image_id, vec_id) VALUES (?, ?)",
                         [("frames/f00.jpg", 0), ("frames/f01", 1), ("frames/f02.jpg", 2)])
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco_doc()))
    report = import_annotations(db, path)
    assert (report.format, report.images, report.objects) == ("coco", 3, 2)
    assert sorted(load_truth(db)) == ["frames/f00.jpg", "frames/f01", "frames/f02.jpg"]
    assert load_truth(db)["frames/f01"].detections == (Detection("car", (2.0, 2.0, 4.0, 4.0)),)
    assert labeled(db) == ["frames/f00.jpg", "frames/f01", "frames/f02.jpg"]

    # Results JSON: numeric ids resolve through the ids kept from that import ...
    results = [{"image_id": 2, "category_id": 2, "bbox": [2, 2, 4, 4], "score": 0.7},
               {"image_id": 3, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.2}]
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert import_predictions(db, tmp_path / "results.json", "det-a").images == 2
    assert load_predictions(db, "det-a")["frames/f01"].detections == (Detection("car", (2.0, 2.0, 4.0, 4.0), 0.7),)
    # ... or through an instances file given explicitly.
    assert import_predictions(db, tmp_path / "results.json", "det-b", coco_images=path).hash == \
        predictions_hash(db, "det-a")


def test_coco_file_names_not_in_the_bundle_are_listed(tmp_path: Path, state: StateDB) -> None:
    doc = coco_doc()
    doc["images"].append({"id": 4, "file_name": "elsewhere/x.jpg"})
    (tmp_path / "instances.json").write_text(json.dumps(doc))
    with pytest.raises(UnknownImageIds) as info:
        import_annotations(state, tmp_path / "instances.json")
    assert info.value.ids == ["elsewhere/x.jpg", "frames/f01.png"]  # IDS are all .jpg
    assert load_truth(state) == {} and labeled(state) == []


def test_load_metadata_returns_text_values_for_images_having_the_column(state: StateDB) -> None:
    tod = load_metadata(state, "time_of_day")
    assert len(tod) == 8 and tod[IDS[1]] == "night" and tod[IDS[0]] == "day" and IDS[9] not in tod
    assert load_metadata(state, "speed")[IDS[3]] == "4.5"
    with pytest.raises(ScenarioError, match=r"'weather'.*columns: speed, time_of_day"):
        load_metadata(state, "weather")
