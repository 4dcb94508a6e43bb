"""Ground truth and model predictions in the bundle's state database: import, load, hash.

Semantics:
- `import_annotations` replaces the ground truth of the images in the file (others keep theirs)
  and marks those images labeled (one label event each, as `edgemine labels import` does), so a
  running service stops mining them on its next query. One bundle holds one task: a file of the
  other task is refused unless it replaces every image's ground truth.
- `import_predictions` replaces the model's whole prediction set: images absent from the new
  file have no prediction any more ("predicted nothing" for metrics).
- Both are all or nothing: the whole file is validated, every image id checked against the
  bundle (UnknownImageIds lists the unknown ones), and only then written in one transaction.
- The ground truth's label set is every label in the stored ground truth. A predictions file
  may only use labels of that set (a label outside it is a typo or a different label scheme,
  and would silently score as wrong), so ground truth is imported before predictions.
- COCO `file_name` -> bundle image id: the file name as written if the bundle has that id,
  else the file name without its extension (`frames/a.jpg` -> `frames/a`); otherwise unknown.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edgemine.bundle.errors import UnknownImageIds
from edgemine.bundle.layout import utc_now
from edgemine.bundle.state import StateDB, apply_state
from edgemine.bundle.state_conn import StateConn
from edgemine.scenarios.errors import InputFileError, ScenarioError, UnknownModel
from edgemine.scenarios.formats import Kind, ParsedFile, read_file
from edgemine.scenarios.records import Detection, ImageRecord, Records, Task
from edgemine.scenarios.spec import NAME_PATTERN

_CHUNK = 500  # ids per IN (...) query: well under SQLite's variable limit


@dataclass(frozen=True)
class ImportReport:
    """What one import stored."""

    kind: Kind
    source: str                      # the file's name
    format: str                      # "jsonl", "coco" or "coco-results"
    task: Task
    images: int                      # image records stored
    objects: int                     # detections stored (0 for classification)
    labels: tuple[str, ...]          # labels used in the file, sorted
    model: str | None = None         # predictions: the model name
    replaced: int = 0                # records of these images (annotations) / of the model (predictions) before
    newly_labeled: int = 0           # annotations: images whose state became labeled
    hash: str = ""                   # annotations: truth_hash after; predictions: predictions_hash

    def summary(self) -> str:
        """Return the one-line summary the CLI prints."""
        what = "ground truth" if self.kind == "annotations" else f"predictions of model {self.model!r}"
        objects = f", {self.objects} objects" if self.task == "detection" else ""
        shown = ", ".join(self.labels[:10]) + (f", ... ({len(self.labels)})" if len(self.labels) > 10 else "")
        tail = (f"; {self.newly_labeled} images newly marked labeled" if self.kind == "annotations"
                else f"; replaced {self.replaced} earlier records" if self.replaced else "")
        return (f"imported {what}: {self.images} images ({self.task}{objects}), labels: {shown or 'none'} "
                f"from {self.source}{tail}")


@dataclass(frozen=True)
class ModelInfo:
    """A model whose predictions are stored."""

    name: str
    images: int
    imported_at: str
    source: str
    hash: str
    task: str = ""


def import_annotations(state: StateDB, path: Path) -> ImportReport:
    """Store a ground-truth file (JSONL or COCO instances); its images become labeled. All or nothing."""
    parsed = read_file(path, "annotations")
    records = _bundle_ids(state, parsed)
    rows = [(i, r.task, encode_record(r)) for i, r in sorted(records.items())]
    now = utc_now()
    with state.write() as db:
        _refuse_unknown(db, records)
        other = db.execute("SELECT task, COUNT(*) FROM annotations WHERE task != ? AND image_id NOT IN "
                           "(SELECT image_id FROM wanted) GROUP BY task", (parsed.task,)).fetchall()
        if other:
            line, _ = next(iter(parsed.where.values()))
            raise InputFileError(path, f"this file is {parsed.task} but the bundle's ground truth is "
                                 f"{other[0][0]} ({other[0][1]} other images): one bundle holds one task",
                                 line=line, field="detections" if parsed.task == "detection" else "classification")
        replaced = db.execute("SELECT COUNT(*) FROM annotations WHERE image_id IN "
                              "(SELECT image_id FROM wanted)").fetchone()[0]
        db.executemany("INSERT INTO annotations (image_id, task, record, imported_at, source) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT(image_id) DO UPDATE SET task = excluded.task, record = excluded.record, "
                       "imported_at = excluded.imported_at, source = excluded.source",
                       [(i, task, text, now, Path(path).name) for i, task, text in rows])
        if parsed.format == "coco":
            _keep_coco_ids(db, parsed, records)
        newly = apply_state(db, list(records), "labeled", None, only_known=False)
        digest = _digest(db.execute("SELECT image_id, record FROM annotations ORDER BY image_id"))
    return ImportReport("annotations", Path(path).name, parsed.format, parsed.task, len(records),
                        parsed.objects, tuple(sorted(parsed.labels)), replaced=int(replaced),
                        newly_labeled=newly, hash=digest)


def import_predictions(state: StateDB, path: Path, model: str, *,
                       coco_images: Path | None = None) -> ImportReport:
    """Replace `model`'s predictions with a file's (JSONL or COCO results). All or nothing.

    COCO results resolve their numeric ids through `coco_images` (an instances file) or else the
    ids kept from the last COCO ground-truth import.
    """
    if not re.match(NAME_PATTERN, model):
        raise ScenarioError(f"invalid model name {model!r}: letters, digits, '.', '_' and '-', starting "
                            "with a letter or digit, at most 100 characters")
    mapping = _coco_mapping(state, coco_images)
    parsed = read_file(path, "predictions", coco_mapping=mapping)
    records = parsed.records if coco_images is None else _bundle_ids(state, parsed)
    _check_against_truth(state, parsed)
    rows = [(model, i, encode_record(r)) for i, r in sorted(records.items())]
    digest = _digest((i, text) for _, i, text in rows)
    with state.write() as db:
        _refuse_unknown(db, records)
        before = db.execute("SELECT images FROM models WHERE name = ?", (model,)).fetchone()
        db.execute("DELETE FROM models WHERE name = ?", (model,))  # cascades to its predictions
        db.execute("INSERT INTO models (name, task, imported_at, source, hash, images) VALUES (?, ?, ?, ?, ?, ?)",
                   (model, parsed.task, utc_now(), Path(path).name, digest, len(rows)))
        db.executemany("INSERT INTO predictions (model, image_id, record) VALUES (?, ?, ?)", rows)
    return ImportReport("predictions", Path(path).name, parsed.format, parsed.task, len(records),
                        parsed.objects, tuple(sorted(parsed.labels)), model=model,
                        replaced=int(before[0]) if before else 0, hash=digest)


def load_truth(state: StateDB, ids: Iterable[str] | None = None) -> Records:
    """Return the ground truth of `ids` (default: every image that has some); ids without it are absent."""
    with state.read() as db:
        rows = _select(db, "SELECT image_id, record FROM annotations", "image_id", ids)
        return {i: decode_record(i, text) for i, text in rows}


def load_predictions(state: StateDB, model: str, ids: Iterable[str] | None = None) -> Records:
    """Return `model`'s predictions for `ids` (default: all); raises UnknownModel."""
    with state.read() as db:
        if db.execute("SELECT 1 FROM models WHERE name = ?", (model,)).fetchone() is None:
            raise UnknownModel(model, [r[0] for r in db.execute("SELECT name FROM models ORDER BY name")])
        rows = _select(db, "SELECT image_id, record FROM predictions WHERE model = ?", "image_id", ids, (model,))
        return {i: decode_record(i, text) for i, text in rows}


def list_models(state: StateDB) -> list[ModelInfo]:
    """Return the models with stored predictions, by name."""
    with state.read() as db:
        rows = db.execute("SELECT name, images, imported_at, source, hash, task FROM models ORDER BY name").fetchall()
    return [ModelInfo(str(n), int(k), str(at), str(src), str(h), str(t)) for n, k, at, src, h, t in rows]


def truth_hash(state: StateDB) -> str:
    """Return the sha256 of the stored ground truth in canonical form (same content, same hash)."""
    with state.read() as db:
        return _digest(db.execute("SELECT image_id, record FROM annotations ORDER BY image_id"))


def predictions_hash(state: StateDB, model: str) -> str:
    """Return the sha256 of `model`'s stored predictions in canonical form; raises UnknownModel."""
    with state.read() as db:
        if db.execute("SELECT 1 FROM models WHERE name = ?", (model,)).fetchone() is None:
            raise UnknownModel(model, [r[0] for r in db.execute("SELECT name FROM models ORDER BY name")])
        return _digest(db.execute("SELECT image_id, record FROM predictions WHERE model = ? ORDER BY image_id",
                                  (model,)))


def truth_labels(state: StateDB) -> list[str]:
    """Return the ground truth's label set, sorted."""
    return sorted({label for r in load_truth(state).values() for label in _labels(r)})


def load_metadata(state: StateDB, column: str) -> dict[str, str]:
    """Return image_id -> str(value) of metadata `column` for images that have it; ScenarioError if none does."""
    out: dict[str, str] = {}
    columns: set[str] = set()
    with state.read() as db:
        for image_id, text in db.execute("SELECT image_id, metadata FROM images"):
            meta = json.loads(text or "{}")
            columns.update(meta)
            value = meta.get(column)
            if value is not None:
                out[image_id] = value if isinstance(value, str) else json.dumps(value)
    if not out:
        known = ", ".join(sorted(columns)) or "none"
        raise ScenarioError(f"no image has a value in metadata column {column!r} (columns: {known})")
    return out


def encode_record(record: ImageRecord) -> str:
    """Return the canonical JSON of a record as stored (and hashed): sorted keys, no spaces."""
    body: dict[str, object] = {"task": record.task}
    if record.task == "classification":
        body["label"] = record.label
        if record.score is not None:
            body["score"] = record.score
    else:
        body["detections"] = [{"label": d.label, "box": list(d.box)} | ({} if d.score is None else {"score": d.score})
                              for d in record.detections]
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def decode_record(image_id: str, text: str) -> ImageRecord:
    """Return the ImageRecord stored as `text` by encode_record."""
    body = json.loads(text)
    if body["task"] == "classification":
        return ImageRecord(image_id, "classification", label=body["label"], score=body.get("score"))
    dets = tuple(Detection(d["label"], (d["box"][0], d["box"][1], d["box"][2], d["box"][3]), d.get("score"))
                 for d in body["detections"])
    return ImageRecord(image_id, "detection", detections=dets)


def resolve_names(state: StateDB, names: Iterable[str]) -> dict[str, str]:
    """Map COCO file names to bundle image ids (as written, else without extension); UnknownImageIds if none."""
    names = list(names)
    candidates = {n: [n, *([_drop_extension(n)] if _drop_extension(n) != n else [])] for n in names}
    known = state.known_ids(c for cs in candidates.values() for c in cs)
    out: dict[str, str] = {}
    unknown = []
    for name, cs in candidates.items():
        hit = next((c for c in cs if c in known), None)
        if hit is None:
            unknown.append(name)
        else:
            out[name] = hit
    if unknown:
        raise UnknownImageIds(unknown)
    return out


def _drop_extension(name: str) -> str:
    stem, ext = posixpath.splitext(name)
    return stem if ext and stem and not stem.endswith("/") else name


def _bundle_ids(state: StateDB, parsed: ParsedFile) -> Records:
    """Key COCO records by bundle image id (JSONL ids are bundle ids as written)."""
    if parsed.format == "jsonl":
        return parsed.records
    ids = resolve_names(state, parsed.records)
    seen: dict[str, str] = {}
    for name, image_id in ids.items():
        if image_id in seen:
            raise InputFileError(parsed.path, f"images {seen[image_id]!r} and {name!r} are both bundle image "
                                 f"{image_id!r}", field=parsed.where[name][1])
        seen[image_id] = name
    return {ids[n]: dataclasses.replace(r, image_id=ids[n]) for n, r in parsed.records.items()}


def _refuse_unknown(db: StateConn, records: Records) -> None:
    """Inside the write: fill temp table `wanted` with the ids; raise UnknownImageIds for any not in the bundle."""
    db.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (image_id TEXT PRIMARY KEY)")
    db.execute("DELETE FROM wanted")
    db.executemany("INSERT INTO wanted (image_id) VALUES (?)", [(i,) for i in records])
    unknown = [r[0] for r in db.execute(
        "SELECT image_id FROM wanted WHERE image_id NOT IN (SELECT image_id FROM images)")]
    if unknown:
        raise UnknownImageIds(unknown)


def _check_against_truth(state: StateDB, parsed: ParsedFile) -> None:
    truth = load_truth(state)
    if not truth:
        raise ScenarioError(f"{parsed.path}: the bundle has no ground truth yet; import it first "
                            "(edgemine annotations import FILE): predictions are checked against its labels")
    tasks = {r.task for r in truth.values()}
    if parsed.task not in tasks:
        line, _ = next(iter(parsed.where.values()))
        raise InputFileError(parsed.path, f"these predictions are {parsed.task} but the ground truth is "
                             f"{'/'.join(sorted(tasks))}", line=line,
                             field="detections" if parsed.task == "detection" else "classification")
    known = {label for r in truth.values() for label in _labels(r)}
    unknown = sorted(set(parsed.labels) - known)
    if unknown:
        line, field = parsed.labels[unknown[0]]
        raise InputFileError(parsed.path, f"label {unknown[0]!r} is not in the ground truth's label set "
                             f"({', '.join(sorted(known))}); unknown labels in this file: {', '.join(unknown)}",
                             line=line, field=field)


def _labels(record: ImageRecord) -> Iterator[str]:
    if record.label is not None:
        yield record.label
    yield from (d.label for d in record.detections)


def _coco_mapping(state: StateDB, coco_images: Path | None) -> tuple[dict[int, str], dict[int, str]] | None:
    if coco_images is not None:
        ref = read_file(coco_images, "annotations")
        if ref.format != "coco":
            raise InputFileError(coco_images, "--coco-images must be a COCO instances file")
        return ref.coco_images, ref.coco_categories
    with state.read() as db:
        images = dict(db.execute("SELECT coco_id, image_id FROM coco_images").fetchall())
        names = dict(db.execute("SELECT category_id, name FROM coco_categories").fetchall())
    return (images, names) if images else None


def _keep_coco_ids(db: StateConn, parsed: ParsedFile, records: Records) -> None:
    """Keep the COCO ids of this import (replacing any earlier ones) for later COCO results files."""
    by_name = {r_name: r.image_id for r_name, r in zip(parsed.records, records.values(), strict=True)}
    db.execute("DELETE FROM coco_images")
    db.execute("DELETE FROM coco_categories")
    db.executemany("INSERT INTO coco_images (coco_id, image_id) VALUES (?, ?)",
                   [(cid, by_name[name]) for cid, name in parsed.coco_images.items()])
    db.executemany("INSERT INTO coco_categories (category_id, name) VALUES (?, ?)",
                   list(parsed.coco_categories.items()))


def _select(db: StateConn, sql: str, column: str, ids: Iterable[str] | None,
            params: tuple[object, ...] = ()) -> list[tuple[str, str]]:
    if ids is None:
        return [(r[0], r[1]) for r in db.execute(sql, params)]
    wanted = list(dict.fromkeys(ids))
    joiner = " AND " if " WHERE " in sql else " WHERE "
    out: list[tuple[str, str]] = []
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start:start + _CHUNK]
        out.extend((r[0], r[1]) for r in db.execute(
            f"{sql}{joiner}{column} IN ({','.join('?' * len(chunk))})", (*params, *chunk)))
    return out


def _digest(rows: Iterable[tuple[str, str]]) -> str:
    sha = hashlib.sha256()
    for image_id, text in rows:
        sha.update(f"{image_id}\t{text}\n".encode())
    return sha.hexdigest()
