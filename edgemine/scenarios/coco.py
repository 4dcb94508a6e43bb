"""COCO instances JSON (ground truth) and COCO results JSON (predictions) into Records.

Instances: every entry of `images` becomes one detection record keyed by its `file_name` (an
image without annotations is an image with nothing to detect); `annotations[].bbox` is the box,
`categories[].name` (via `category_id`) the label. The store maps a `file_name` to a bundle
image id (edgemine.scenarios.store.resolve_names). Crowd annotations (`iscrowd: 1`) are refused:
COCO evaluation ignores them, and a silent drop would change the ground truth.

Results: a list of `{image_id, category_id, bbox, score}` whose integer ids are those of an
instances file (`coco_mapping`: image id -> name, category id -> label). COCO files carry no
line structure worth naming, so errors name the JSON path (`annotations[3].bbox`) as the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgemine.scenarios.errors import InputFileError
from edgemine.scenarios.formats import ParsedFile, Where, check_box, check_label, check_score
from edgemine.scenarios.records import Detection, ImageRecord, Records

# Keys COCO tools write beside the ones we read; anything else is refused (a typo or another format).
_ANNOTATION_KEYS = {"id", "image_id", "category_id", "bbox", "area", "segmentation", "iscrowd", "attributes"}
_RESULT_KEYS = _ANNOTATION_KEYS | {"score"}


def parse_instances(path: Path, doc: dict[str, Any]) -> ParsedFile:
    """Validate a COCO instances document; one detection record per image, keyed by file_name."""
    images = _list(path, doc, "images")
    annotations = _list(path, doc, "annotations")
    categories = _list(path, doc, "categories")
    names: dict[int, str] = {}
    for i, cat in enumerate(categories):
        where = f"categories[{i}]"
        _need(path, where, cat, ("id", "name"))
        cid = _int_id(path, f"{where}.id", cat["id"])
        if cid in names:
            raise InputFileError(path, f"category id {cid} appears twice", field=f"{where}.id")
        name = check_label(path, None, f"{where}.name", cat["name"])
        if name in names.values():
            raise InputFileError(path, f"category name {name!r} appears twice", field=f"{where}.name")
        names[cid] = name
    files: dict[int, str] = {}
    found: dict[str, Where] = {}
    for i, image in enumerate(images):
        where = f"images[{i}]"
        _need(path, where, image, ("id", "file_name"))
        iid = _int_id(path, f"{where}.id", image["id"])
        if iid in files:
            raise InputFileError(path, f"image id {iid} appears twice", field=f"{where}.id")
        name = image["file_name"]
        if not isinstance(name, str) or not name:
            raise InputFileError(path, "must be a non-empty string", field=f"{where}.file_name")
        if name in found:
            raise InputFileError(path, f"image {name!r} appears twice (also {found[name][1]})",
                                 field=f"{where}.file_name")
        files[iid] = name
        found[name] = (None, f"{where}.file_name")
    dets: dict[str, list[Detection]] = {name: [] for name in files.values()}
    labels: dict[str, Where] = {}
    for i, ann in enumerate(annotations):
        where = f"annotations[{i}]"
        det, iid = _detection(path, where, ann, _ANNOTATION_KEYS, files, names, scored=False)
        dets[files[iid]].append(det)
        labels.setdefault(det.label, (None, f"{where}.category_id"))
    records: Records = {name: ImageRecord(name, "detection", detections=tuple(d)) for name, d in dets.items()}
    if not records:
        raise InputFileError(path, "no images: a COCO instances file lists its images", field="images")
    return ParsedFile(path, "annotations", "coco", "detection", records, found, labels,
                      coco_images=files, coco_categories=names)


def parse_results(path: Path, doc: list[Any],
                  mapping: tuple[dict[int, str], dict[int, str]] | None) -> ParsedFile:
    """Validate a COCO results list; detections grouped per image, keyed by the mapping's names."""
    if mapping is None:
        raise InputFileError(path, "COCO results name images and categories by number: import the ground "
                             "truth as COCO instances JSON first (its ids are kept), or pass --coco-images "
                             "with the instances file these results refer to")
    files, names = mapping
    if not doc:
        raise InputFileError(path, "the results list is empty: no records")
    dets: dict[str, list[Detection]] = {}
    found: dict[str, Where] = {}
    labels: dict[str, Where] = {}
    for i, item in enumerate(doc):
        where = f"[{i}]"
        det, iid = _detection(path, where, item, _RESULT_KEYS, files, names, scored=True)
        dets.setdefault(files[iid], []).append(det)
        found.setdefault(files[iid], (None, f"{where}.image_id"))
        labels.setdefault(det.label, (None, f"{where}.category_id"))
    records: Records = {name: ImageRecord(name, "detection", detections=tuple(d)) for name, d in dets.items()}
    return ParsedFile(path, "predictions", "coco-results", "detection", records, found, labels)


def _detection(path: Path, where: str, ann: Any, allowed: set[str], files: dict[int, str],
               names: dict[int, str], scored: bool) -> tuple[Detection, int]:
    required = ("image_id", "category_id", "bbox") + (("score",) if scored else ())
    _need(path, where, ann, required)
    extra = sorted(set(ann) - allowed)
    if extra:
        raise InputFileError(path, "unexpected field", field=f"{where}.{extra[0]}")
    if "iscrowd" in ann and ann["iscrowd"] not in (0, False):
        raise InputFileError(path, "crowd annotations (iscrowd: 1) are not supported", field=f"{where}.iscrowd")
    iid = _int_id(path, f"{where}.image_id", ann["image_id"])
    if iid not in files:
        raise InputFileError(path, f"image id {iid} is not among the COCO images", field=f"{where}.image_id")
    cid = _int_id(path, f"{where}.category_id", ann["category_id"])
    if cid not in names:
        raise InputFileError(path, f"category id {cid} is not among the COCO categories "
                             f"({', '.join(str(c) for c in sorted(names))})", field=f"{where}.category_id")
    box = check_box(path, None, f"{where}.bbox", ann["bbox"])
    score = check_score(path, None, f"{where}.score", ann["score"]) if scored else None
    return Detection(names[cid], box, score), iid


def _list(path: Path, doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key)
    if not isinstance(value, list):
        raise InputFileError(path, "a COCO instances file needs images, annotations and categories lists",
                             field=key)
    return value


def _need(path: Path, where: str, obj: Any, keys: tuple[str, ...]) -> None:
    if not isinstance(obj, dict):
        raise InputFileError(path, "must be an object", field=where)
    for key in keys:
        if key not in obj:
            raise InputFileError(path, "missing field", field=f"{where}.{key}")


def _int_id(path: Path, name: str, value: Any) -> int:
    # 64-bit: the ids of the instances file imported as ground truth are kept in SQLite.
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
        raise InputFileError(path, f"a COCO id is a 64-bit integer, not {value!r}"[:120], field=name)
    return value
