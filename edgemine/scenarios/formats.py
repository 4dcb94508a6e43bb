"""Parse ground-truth and prediction files (JSONL, COCO) into Records, refusing anything malformed.

JSONL, one line per image, exactly these fields (no others):

    {"image_id": "f1.jpg", "classification": {"label": "pedestrian"}}
    {"image_id": "f2.jpg", "detections": [{"label": "car", "box": [x, y, w, h]}]}

Predictions add `"score"` (a number in [0, 1]) to the classification and to every detection.
Boxes are COCO's `[x, y, w, h]` in pixels, (x, y) the top-left corner, w > 0 and h > 0. An empty
`detections` list means "nothing here" (ground truth) or "detected nothing" (predictions). One
file holds one task: all classification or all detection. Blank lines are skipped.

A file whose whole text is a JSON object with `images`/`annotations`/`categories` is COCO
instances JSON, a JSON list is COCO results JSON (edgemine.scenarios.coco). Every error is an
InputFileError naming the file, the line (for COCO: the JSON path, e.g. `annotations[3].bbox`)
and the field; a parse either returns every record or raises.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgemine.scenarios.errors import InputFileError
from edgemine.scenarios.records import Box, Detection, ImageRecord, Records, Task

Kind = Literal["annotations", "predictions"]
Where = tuple[int | None, str]  # (line, field) of a value, for error messages


@dataclass
class ParsedFile:
    """The records of one file, keyed as the file names them, with where things were found."""

    path: Path
    kind: Kind
    format: Literal["jsonl", "coco", "coco-results"]
    task: Task
    records: Records
    where: dict[str, Where]                    # image key -> its record's line / JSON path
    labels: dict[str, Where] = field(default_factory=dict)  # label -> its first use
    coco_images: dict[int, str] = field(default_factory=dict)      # COCO instances: id -> file_name
    coco_categories: dict[int, str] = field(default_factory=dict)  # COCO instances: id -> name

    @property
    def objects(self) -> int:
        """Return the number of detections (0 for classification)."""
        return sum(len(r.detections) for r in self.records.values())


def parse_annotations(path: Path) -> Records:
    """Parse a ground-truth file (JSONL or COCO instances JSON); keys are the image ids as written."""
    return read_file(path, "annotations").records


def parse_predictions(path: Path, *, coco_images: Path | None = None) -> Records:
    """Parse a predictions file (JSONL or COCO results JSON, whose ids `coco_images` resolves)."""
    mapping = None
    if coco_images is not None:
        ref = read_file(coco_images, "annotations")
        mapping = (ref.coco_images, ref.coco_categories)
    return read_file(path, "predictions", coco_mapping=mapping).records


def read_file(path: Path, kind: Kind, *,
              coco_mapping: tuple[dict[int, str], dict[int, str]] | None = None) -> ParsedFile:
    """Parse `path` as `kind`, detecting JSONL or COCO; `coco_mapping` resolves a COCO results list."""
    from edgemine.scenarios import coco  # a sibling module that needs the helpers below

    text = read_text(path)
    if not text.strip():
        raise InputFileError(path, "the file is empty: no records")
    whole = _whole_json(path, text)
    if _is_coco(whole):
        if kind == "predictions":
            raise InputFileError(path, "COCO instances JSON holds ground truth; predictions in COCO "
                                 "format are a results list ([{image_id, category_id, bbox, score}, ...])")
        return coco.parse_instances(path, whole)
    if isinstance(whole, list):
        if kind == "annotations":
            raise InputFileError(path, "a JSON list is COCO results (predictions); ground truth in COCO "
                                 "format is an instances object with images, annotations and categories")
        return coco.parse_results(path, whole, coco_mapping)
    return _parse_jsonl(path, text, kind)


def read_text(path: Path) -> str:
    """Return the file's UTF-8 text, or an InputFileError saying why it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except UnicodeDecodeError as exc:
        raise InputFileError(path, f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise InputFileError(path, f"cannot read it: {exc.strerror}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"key {key!r} appears twice in one object")
        seen.add(key)
    return dict(pairs)


def loads(text: str) -> Any:
    """json.loads refusing NaN/Infinity (not JSON) and repeated keys (json would keep the last silently)."""
    return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)


def _whole_json(path: Path, text: str) -> Any:
    """The file parsed as one JSON document, or None when it is not one (JSONL has several lines)."""
    try:
        return loads(text)
    except json.JSONDecodeError as exc:
        first = next(line for line in text.splitlines() if line.strip())
        try:
            json.loads(first)
        except ValueError:
            # Not JSONL either (its first line is no JSON value): a broken JSON document, e.g. a
            # pretty-printed COCO file. The document's own error position is the useful one.
            raise InputFileError(path, f"not valid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno) from None
        return None
    except ValueError as exc:  # a repeated key or NaN
        try:
            doc = json.loads(text)
        except ValueError:
            return None  # several JSON values: JSONL, whose lines report their own errors
        if isinstance(doc, list) or _is_coco(doc):
            raise InputFileError(path, f"not valid JSON: {exc}") from None
        return None  # a one-line JSONL file: its line reports the error


def _is_coco(doc: Any) -> bool:
    return isinstance(doc, dict) and bool({"images", "annotations", "categories"} & doc.keys())


def _parse_jsonl(path: Path, text: str, kind: Kind) -> ParsedFile:
    records: Records = {}
    where: dict[str, Where] = {}
    labels: dict[str, Where] = {}
    task: Task | None = None
    first_line = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = loads(raw)
        except ValueError as exc:
            raise InputFileError(path, f"not valid JSON: {exc}", line=number) from None
        record = jsonl_record(path, number, obj, kind)
        if record.image_id in records:
            raise InputFileError(path, f"image {record.image_id!r} appears twice in this file "
                                 f"(first on line {where[record.image_id][0]})", line=number, field="image_id")
        if task is None:
            task, first_line = record.task, number
        elif record.task != task:
            raise InputFileError(path, f"mixed tasks: line {first_line} is {task}, this line is {record.task}; "
                                 "one file holds one task", line=number, field=_TASK_FIELD[record.task])
        records[record.image_id] = record
        where[record.image_id] = (number, "image_id")
        if record.task == "classification" and record.label is not None:
            labels.setdefault(record.label, (number, "classification.label"))
        for i, det in enumerate(record.detections):
            labels.setdefault(det.label, (number, f"detections[{i}].label"))
    assert task is not None  # the text is not blank, so some line parsed or raised
    return ParsedFile(path, kind, "jsonl", task, records, where, labels)


_TASK_FIELD: dict[Task, str] = {"classification": "classification", "detection": "detections"}


def jsonl_record(path: Path, line: int, obj: Any, kind: Kind) -> ImageRecord:
    """Validate one JSONL object as a ground-truth or prediction record for one image."""
    if not isinstance(obj, dict):
        raise InputFileError(path, f"a line must be a JSON object, not {_type(obj)}", line=line)
    if "image_id" not in obj:
        raise InputFileError(path, "missing field", line=line, field="image_id")
    image_id = obj["image_id"]
    if not isinstance(image_id, str) or not image_id:
        raise InputFileError(path, f"must be a non-empty string, not {_show(image_id)}", line=line, field="image_id")
    tasks = [k for k in ("classification", "detections") if k in obj]
    if len(tasks) != 1:
        why = "has both" if tasks else "needs one of"
        raise InputFileError(path, f"a record {why} 'classification' and 'detections'", line=line,
                             field="classification" if not tasks else "detections")
    extra = sorted(set(obj) - {"image_id", tasks[0]})
    if extra:
        raise InputFileError(path, f"unexpected field (a record has image_id and {tasks[0]})", line=line,
                             field=extra[0])
    scored = kind == "predictions"
    if tasks[0] == "classification":
        body = obj["classification"]
        if not isinstance(body, dict):
            raise InputFileError(path, f"must be an object, not {_type(body)}", line=line, field="classification")
        _check_keys(path, line, "classification", body, {"label", "score"} if scored else {"label"})
        label = check_label(path, line, "classification.label", body["label"])
        score = check_score(path, line, "classification.score", body["score"]) if scored else None
        return ImageRecord(image_id, "classification", label=label, score=score)
    dets = obj["detections"]
    if not isinstance(dets, list):
        raise InputFileError(path, f"must be a list, not {_type(dets)}", line=line, field="detections")
    out = []
    for i, det in enumerate(dets):
        name = f"detections[{i}]"
        if not isinstance(det, dict):
            raise InputFileError(path, f"must be an object, not {_type(det)}", line=line, field=name)
        _check_keys(path, line, name, det, {"label", "box", "score"} if scored else {"label", "box"})
        out.append(Detection(check_label(path, line, f"{name}.label", det["label"]),
                             check_box(path, line, f"{name}.box", det["box"]),
                             check_score(path, line, f"{name}.score", det["score"]) if scored else None))
    return ImageRecord(image_id, "detection", detections=tuple(out))


def _check_keys(path: Path, line: int | None, name: str, obj: dict[str, Any], wanted: set[str]) -> None:
    missing = sorted(wanted - obj.keys())
    if missing:
        raise InputFileError(path, "missing field", line=line, field=f"{name}.{missing[0]}")
    extra = sorted(obj.keys() - wanted)
    if extra:
        raise InputFileError(path, f"unexpected field (expected {', '.join(sorted(wanted))})", line=line,
                             field=f"{name}.{extra[0]}")


def check_label(path: Path, line: int | None, name: str, value: Any) -> str:
    """Return a label: a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise InputFileError(path, f"a label must be a non-empty string, not {_show(value)}", line=line, field=name)
    return value


def number(path: Path, line: int | None, name: str, value: Any) -> float:
    """Return a finite JSON number as a float (booleans and strings are refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputFileError(path, f"must be a number, not {_show(value)}", line=line, field=name)
    return float(value)


def check_score(path: Path, line: int | None, name: str, value: Any) -> float:
    """Return a confidence score: a number in [0, 1]."""
    score = number(path, line, name, value)
    if not 0.0 <= score <= 1.0:
        raise InputFileError(path, f"a score must lie in [0, 1], not {_show(value)}", line=line, field=name)
    return score


def check_box(path: Path, line: int | None, name: str, value: Any) -> Box:
    """Return a COCO box [x, y, w, h]: four numbers, w > 0 and h > 0."""
    if not isinstance(value, list) or len(value) != 4:
        raise InputFileError(path, f"a box is [x, y, w, h] (4 numbers), not {_show(value)}", line=line, field=name)
    x, y, w, h = (number(path, line, f"{name}[{i}]", v) for i, v in enumerate(value))
    if w <= 0 or h <= 0:
        raise InputFileError(path, f"a box [x, y, w, h] needs w > 0 and h > 0, not {_show(value)}",
                             line=line, field=name)
    return (x, y, w, h)


def _type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
