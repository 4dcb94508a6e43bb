"""Parsing ground truth and predictions (JSONL, COCO): every malformed input names file, line and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edgemine.scenarios.errors import InputFileError
from edgemine.scenarios.formats import parse_annotations, parse_predictions, read_file
from edgemine.scenarios.records import Detection, ImageRecord


def jsonl(path: Path, *rows: Any) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def det(label: str, box: list[Any], score: Any = None) -> dict[str, Any]:
    return {"label": label, "box": box} | ({} if score is None else {"score": score})


def coco_instances() -> dict[str, Any]:
    return {
        "info": {"description": "tiny"},
        "images": [{"id": 1, "file_name": "a.png", "width": 24, "height": 16},
                   {"id": 2, "file_name": "sub/b.png", "width": 24, "height": 16},
                   {"id": 7, "file_name": "c.png"}],
        "annotations": [{"id": 10, "image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0},
                        {"id": 11, "image_id": 1, "category_id": 5, "bbox": [0.5, 0, 2, 2.5]},
                        {"id": 12, "image_id": 2, "category_id": 3, "bbox": [4, 4, 1, 1]}],
        "categories": [{"id": 3, "name": "pedestrian", "supercategory": "person"}, {"id": 5, "name": "car"}],
    }


def test_jsonl_classification_and_detection_ground_truth_parse_into_records(tmp_path: Path) -> None:
    cls = parse_annotations(jsonl(tmp_path / "c.jsonl", {"image_id": "a", "classification": {"label": "cat"}}, "",
                                  {"image_id": "b", "classification": {"label": "dog"}}))
    assert cls == {"a": ImageRecord("a", "classification", label="cat"),
                   "b": ImageRecord("b", "classification", label="dog")}
    dets = parse_annotations(jsonl(tmp_path / "d.jsonl", {"image_id": "a", "detections": [det("car", [1, 2, 3.5, 4])]},
                                   {"image_id": "b", "detections": []}))
    assert dets == {"a": ImageRecord("a", "detection", detections=(Detection("car", (1.0, 2.0, 3.5, 4.0)),)),
                    "b": ImageRecord("b", "detection", detections=())}


def test_jsonl_predictions_carry_scores(tmp_path: Path) -> None:
    preds = parse_predictions(jsonl(tmp_path / "p.jsonl",
                                    {"image_id": "a", "detections": [det("car", [0, 0, 1, 1], 0.25)]},
                                    {"image_id": "b", "detections": [det("car", [0, 0, 1, 1], 1)]}))
    assert preds["a"].detections[0].score == 0.25 and preds["b"].detections[0].score == 1.0
    cls = parse_predictions(jsonl(tmp_path / "c.jsonl",
                                  {"image_id": "a", "classification": {"label": "x", "score": 0}}))
    assert cls["a"] == ImageRecord("a", "classification", label="x", score=0.0)


OK_DET = {"image_id": "a", "detections": [det("car", [0, 0, 1, 1])]}

# (lines of the file, the line named, the field named, words of the message)
BAD_ANNOTATIONS = [
    pytest.param([OK_DET, '{"image_id": "b", "detections": [}'], 2, None, "not valid JSON", id="bad-json-line"),
    pytest.param([{"image_id": "a", "detections": [det("car", [0, 0, -1, 1])]}], 1, "detections[0].box",
                 "w > 0 and h > 0", id="negative-width"),
    pytest.param([OK_DET, {"image_id": "b", "detections": [det("car", [0, 0, 1, 0])]}], 2, "detections[0].box",
                 "w > 0 and h > 0", id="zero-height"),
    pytest.param([{"image_id": "a", "detections": [det("car", [0, 0, 1])]}], 1, "detections[0].box",
                 "4 numbers", id="box-of-three"),
    pytest.param([{"image_id": "a", "detections": [det("car", [0, "0", 1, 1])]}], 1, "detections[0].box[1]",
                 "must be a number", id="string-coordinate"),
    pytest.param([{"image_id": "a", "detections": [det("car", [0, True, 1, 1])]}], 1, "detections[0].box[1]",
                 "must be a number", id="boolean-coordinate"),
    pytest.param(['{"image_id": "a", "detections": [{"label": "car", "box": [0, 0, NaN, 1]}]}'], 1, None,
                 "not valid JSON", id="nan"),
    pytest.param(['{"image_id": "a", "image_id": "b", "detections": []}'], 1, None, "'image_id' appears twice",
                 id="repeated-key"),
    pytest.param([{"detections": []}], 1, "image_id", "missing field", id="missing-image-id"),
    pytest.param([{"image_id": 7, "detections": []}], 1, "image_id", "non-empty string", id="numeric-image-id"),
    pytest.param([{"image_id": "a"}], 1, "classification", "needs one of", id="no-task"),
    pytest.param([{"image_id": "a", "detections": [], "classification": {"label": "x"}}], 1, "detections",
                 "has both", id="both-tasks"),
    pytest.param([{"image_id": "a", "detections": [], "weather": "rain"}], 1, "weather", "unexpected field",
                 id="extra-record-field"),
    pytest.param([{"image_id": "a", "detections": [{"label": "car", "box": [0, 0, 1, 1], "score": 0.5}]}], 1,
                 "detections[0].score", "unexpected field", id="score-in-ground-truth"),
    pytest.param([{"image_id": "a", "detections": [{"box": [0, 0, 1, 1]}]}], 1, "detections[0].label",
                 "missing field", id="missing-label"),
    pytest.param([{"image_id": "a", "classification": {"label": ""}}], 1, "classification.label",
                 "non-empty string", id="empty-label"),
    pytest.param([{"image_id": "a", "classification": "cat"}], 1, "classification", "must be an object",
                 id="classification-not-object"),
    pytest.param([{"image_id": "a", "detections": {"label": "car"}}], 1, "detections", "must be a list",
                 id="detections-not-list"),
    pytest.param([OK_DET, {"image_id": "b", "detections": []}, OK_DET], 3, "image_id",
                 "appears twice in this file (first on line 1)", id="duplicate-image"),
    pytest.param([OK_DET, {"image_id": "b", "classification": {"label": "car"}}], 2, "classification",
                 "mixed tasks", id="mixed-tasks"),
]


@pytest.mark.parametrize(("lines", "line", "field", "words"), BAD_ANNOTATIONS)
def test_malformed_ground_truth_is_refused_naming_file_line_and_field(
        tmp_path: Path, lines: list[Any], line: int | None, field: str | None, words: str) -> None:
    path = jsonl(tmp_path / "gt.jsonl", *lines)
    with pytest.raises(InputFileError) as info:
        parse_annotations(path)
    err = info.value
    assert (err.path, err.line, err.field) == (str(path), line, field)
    assert words in err.reason
    assert str(err).startswith(f"{path}, line {line}")


BAD_PREDICTIONS = [
    pytest.param({"image_id": "a", "detections": [det("car", [0, 0, 1, 1])]}, "detections[0].score",
                 "missing field", id="missing-score"),
    pytest.param({"image_id": "a", "detections": [det("car", [0, 0, 1, 1], 1.5)]}, "detections[0].score",
                 "[0, 1]", id="score-above-one"),
    pytest.param({"image_id": "a", "detections": [det("car", [0, 0, 1, 1], -0.1)]}, "detections[0].score",
                 "[0, 1]", id="negative-score"),
    pytest.param({"image_id": "a", "detections": [det("car", [0, 0, 1, 1], "0.5")]}, "detections[0].score",
                 "must be a number", id="string-score"),
    pytest.param({"image_id": "a", "classification": {"label": "cat"}}, "classification.score", "missing field",
                 id="classification-without-score"),
    pytest.param({"image_id": "a", "classification": {"label": "cat", "score": 0.5, "rank": 1}},
                 "classification.rank", "unexpected field", id="classification-extra-field"),
]


@pytest.mark.parametrize(("row", "field", "words"), BAD_PREDICTIONS)
def test_malformed_predictions_are_refused_naming_file_line_and_field(
        tmp_path: Path, row: dict[str, Any], field: str, words: str) -> None:
    path = jsonl(tmp_path / "p.jsonl", {"image_id": "z", "detections": []} if "detections" in row else
                 {"image_id": "z", "classification": {"label": "cat", "score": 0.9}}, row)
    with pytest.raises(InputFileError) as info:
        parse_predictions(path)
    assert (info.value.line, info.value.field) == (2, field)
    assert words in info.value.reason


def test_empty_missing_and_non_utf8_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n  \n")
    (tmp_path / "latin1.jsonl").write_bytes(b'{"image_id": "caf\xe9", "detections": []}\n')
    for name, words in (("empty.jsonl", "empty"), ("missing.jsonl", "no such file"), ("latin1.jsonl", "UTF-8")):
        with pytest.raises(InputFileError, match=words) as info:
            parse_annotations(tmp_path / name)
        assert info.value.path == str(tmp_path / name)


def test_coco_instances_become_one_detection_record_per_image_keyed_by_file_name(tmp_path: Path) -> None:
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco_instances(), indent=2))
    parsed = read_file(path, "annotations")
    assert parsed.format == "coco" and parsed.task == "detection"
    assert parsed.records == {
        "a.png": ImageRecord("a.png", "detection", detections=(Detection("pedestrian", (1.0, 2.0, 3.0, 4.0)),
                                                               Detection("car", (0.5, 0.0, 2.0, 2.5)))),
        "sub/b.png": ImageRecord("sub/b.png", "detection", detections=(Detection("pedestrian", (4.0, 4.0, 1.0, 1.0)),)),
        "c.png": ImageRecord("c.png", "detection"),  # listed without annotations: nothing to detect
    }
    assert parsed.coco_images == {1: "a.png", 2: "sub/b.png", 7: "c.png"}
    assert parsed.coco_categories == {3: "pedestrian", 5: "car"}


def test_coco_results_resolve_ids_through_the_instances_file(tmp_path: Path) -> None:
    (tmp_path / "instances.json").write_text(json.dumps(coco_instances()))
    results = [{"image_id": 2, "category_id": 5, "bbox": [1, 1, 2, 2], "score": 0.9},
               {"image_id": 2, "category_id": 3, "bbox": [4, 4, 1, 1], "score": 0.4},
               {"image_id": 7, "category_id": 3, "bbox": [0, 0, 3, 3], "score": 0.1}]
    (tmp_path / "results.json").write_text(json.dumps(results))
    preds = parse_predictions(tmp_path / "results.json", coco_images=tmp_path / "instances.json")
    assert preds == {
        "sub/b.png": ImageRecord("sub/b.png", "detection", detections=(
            Detection("car", (1.0, 1.0, 2.0, 2.0), 0.9), Detection("pedestrian", (4.0, 4.0, 1.0, 1.0), 0.4))),
        "c.png": ImageRecord("c.png", "detection", detections=(Detection("pedestrian", (0.0, 0.0, 3.0, 3.0), 0.1),)),
    }
    with pytest.raises(InputFileError, match="--coco-images"):
        parse_predictions(tmp_path / "results.json")


def _break(doc: dict[str, Any], change: str) -> dict[str, Any]:
    if change == "negative-bbox":
        doc["annotations"][1]["bbox"] = [0, 0, -2, 2]
    elif change == "crowd":
        doc["annotations"][2]["iscrowd"] = 1
    elif change == "unknown-category":
        doc["annotations"][0]["category_id"] = 9
    elif change == "unknown-image":
        doc["annotations"][0]["image_id"] = 99
    elif change == "duplicate-file-name":
        doc["images"][2]["file_name"] = "a.png"
    elif change == "string-id":
        doc["images"][0]["id"] = "1"
    elif change == "extra-annotation-field":
        doc["annotations"][0]["colour"] = "red"
    elif change == "no-categories":
        del doc["categories"]
    return doc


@pytest.mark.parametrize(("change", "field", "words"), [
    ("negative-bbox", "annotations[1].bbox", "w > 0"),
    ("crowd", "annotations[2].iscrowd", "not supported"),
    ("unknown-category", "annotations[0].category_id", "not among the COCO categories"),
    ("unknown-image", "annotations[0].image_id", "not among the COCO images"),
    ("duplicate-file-name", "images[2].file_name", "appears twice"),
    ("string-id", "images[0].id", "integer"),
    ("extra-annotation-field", "annotations[0].colour", "unexpected field"),
    ("no-categories", "categories", "needs images, annotations and categories"),
])
def test_malformed_coco_instances_name_the_json_path(tmp_path: Path, change: str, field: str, words: str) -> None:
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(_break(coco_instances(), change)))
    with pytest.raises(InputFileError) as info:
        parse_annotations(path)
    assert (info.value.path, info.value.field) == (str(path), field) and words in info.value.reason


def test_coco_results_without_score_or_with_score_out_of_range_are_refused(tmp_path: Path) -> None:
    (tmp_path / "instances.json").write_text(json.dumps(coco_instances()))
    for item, field in (({"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1]}, "[1].score"),
                        ({"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 2}, "[1].score")):
        ok = {"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.5}
        (tmp_path / "results.json").write_text(json.dumps([ok, item]))
        with pytest.raises(InputFileError) as info:
            parse_predictions(tmp_path / "results.json", coco_images=tmp_path / "instances.json")
        assert info.value.field == field


def test_coco_instances_are_not_predictions_and_results_are_not_ground_truth(tmp_path: Path) -> None:
    (tmp_path / "instances.json").write_text(json.dumps(coco_instances()))
    with pytest.raises(InputFileError, match="results list"):
        parse_predictions(tmp_path / "instances.json")
    (tmp_path / "results.json").write_text("[]")
    with pytest.raises(InputFileError, match="COCO results"):
        parse_annotations(tmp_path / "results.json")


def test_a_broken_pretty_printed_json_document_names_the_line_of_its_error(tmp_path: Path) -> None:
    path = tmp_path / "instances.json"
    text = json.dumps(coco_instances(), indent=2).replace('"bbox": [\n        4,', '"bbox": [\n        4,,', 1)
    path.write_text(text)
    with pytest.raises(InputFileError, match="not valid JSON") as info:
        parse_annotations(path)
    assert info.value.line == text[:text.index(",,")].count("\n") + 1
    path.write_text(json.dumps(coco_instances(), indent=2).replace('"id": 12,', '"id": 12, "id": 13,'))
    with pytest.raises(InputFileError, match="'id' appears twice"):
        parse_annotations(path)
