"""Read what to index: a directory of images, a manifest table, or precomputed embeddings."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from edgemine.models.vectors import Vectors, l2_normalize

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
# Column names a source may carry that are not user metadata.
SPECIAL_COLUMNS = frozenset({"image_id", "path", "labeled", "embedding"})


class SourceError(ValueError):
    """The source cannot be read (missing path, bad table, duplicate ids, ...)."""


@dataclass
class SourceItem:
    """One image to index."""

    image_id: str
    path: str | None
    fingerprint: str
    metadata: dict[str, Any] = field(default_factory=dict)
    labeled: bool = False


@dataclass
class Source:
    """Everything read from a source, ready for the indexer."""

    kind: Literal["directory", "manifest", "embeddings"]
    location: Path
    items: list[SourceItem]
    image_roots: list[str]
    vectors: Vectors | None = None  # only for precomputed embeddings, rows match items


def check_metadata(items: list[SourceItem]) -> None:
    """Fail before any embedding if a metadata column mixes types that cannot share a column."""
    columns = dict.fromkeys(key for item in items for key in item.metadata)
    for column in columns:
        values = [item.metadata.get(column) for item in items]
        try:
            pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            kinds = sorted({type(v).__name__ for v in values if v is not None})
            raise SourceError(
                f"metadata column {column!r} mixes types ({', '.join(kinds)}): {exc}; "
                "make it one type in every sidecar/table row"
            ) from exc


def _file_fingerprint(path: Path) -> str:
    # Size + mtime: detects changed files without reading millions of them on each re-run.
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def read_table(path: Path) -> pa.Table:
    """Read a CSV, JSONL or Parquet file into an Arrow table (types inferred)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            import pyarrow.csv as pacsv

            return pacsv.read_csv(path)
        if suffix in (".jsonl", ".ndjson", ".json"):
            import pyarrow.json as pajson

            return pajson.read_json(path)
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(f"cannot read {path}: {exc}") from exc
    raise SourceError(f"{path}: unsupported table format {suffix!r} (use .csv, .jsonl or .parquet)")


def _require_ids(table: pa.Table, where: Path) -> list[str]:
    if "image_id" not in table.column_names:
        raise SourceError(f"{where} has no 'image_id' column (columns: {table.column_names})")
    column = table.column("image_id")
    if column.null_count:
        raise SourceError(f"{where}: {column.null_count} rows have an empty image_id")
    ids = [str(x) for x in column.cast(pa.string()).to_pylist()]
    dupes = [i for i, n in Counter(ids).items() if n > 1]
    if dupes:
        shown = ", ".join(repr(d) for d in sorted(dupes)[:10])
        raise SourceError(f"{where}: duplicate image_id values ({len(dupes)}): {shown}")
    return ids


def _labeled_column(table: pa.Table, where: Path) -> list[bool]:
    if "labeled" not in table.column_names:
        return [False] * table.num_rows
    truth = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False,
             "": False, "none": False}
    out = []
    for value in table.column("labeled").to_pylist():
        key = str(value).strip().lower() if value is not None else ""
        if key not in truth:
            raise SourceError(f"{where}: 'labeled' must be a boolean, got {value!r}")
        out.append(truth[key])
    return out


def _metadata_rows(table: pa.Table) -> list[dict[str, Any]]:
    keep = [c for c in table.column_names if c not in SPECIAL_COLUMNS]
    return table.select(keep).to_pylist() if keep else [{} for _ in range(table.num_rows)]


def scan_directory(root: Path, metadata_file: Path | None = None) -> Source:
    """List images under `root` (recursive); ids are paths relative to root.

    Metadata comes from an optional table keyed by image_id and from per-image JSON sidecars
    (`frame.jpg.json`), the sidecar winning.
    """
    root = root.expanduser().resolve()
    if not root.is_dir():
        raise SourceError(f"source directory {root} does not exist")
    extra: dict[str, dict[str, Any]] = {}
    labeled: dict[str, bool] = {}
    if metadata_file is not None:
        table = read_table(metadata_file)
        ids = _require_ids(table, metadata_file)
        extra = dict(zip(ids, _metadata_rows(table), strict=True))
        labeled = dict(zip(ids, _labeled_column(table, metadata_file), strict=True))
    items: list[SourceItem] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            path = Path(dirpath) / name
            image_id = path.relative_to(root).as_posix()
            metadata = dict(extra.get(image_id, {}))
            sidecar = path.with_name(name + ".json")
            if sidecar.is_file():
                try:
                    metadata.update(json.loads(sidecar.read_text()))
                except (ValueError, OSError) as exc:
                    raise SourceError(f"sidecar {sidecar} is not valid JSON: {exc}") from exc
            items.append(SourceItem(image_id, str(path), _file_fingerprint(path), metadata,
                                    labeled.get(image_id, False)))
    return Source("directory", root, items, [str(root)])


def read_manifest_source(manifest: Path, image_root: Path | None = None) -> Source:
    """Read a manifest (image_id, path, metadata..., optional labeled); paths relative to it."""
    manifest = manifest.expanduser().resolve()
    if not manifest.is_file():
        raise SourceError(f"manifest {manifest} does not exist")
    table = read_table(manifest)
    ids = _require_ids(table, manifest)
    if "path" not in table.column_names:
        raise SourceError(f"{manifest} has no 'path' column (columns: {table.column_names})")
    raw_paths = table.column("path").cast(pa.string()).to_pylist()
    labeled = _labeled_column(table, manifest)
    metadata = _metadata_rows(table)
    items = []
    for image_id, raw, meta, lab in zip(ids, raw_paths, metadata, labeled, strict=True):
        if not raw:
            raise SourceError(f"{manifest}: image {image_id!r} has an empty path")
        path = (manifest.parent / raw).resolve()
        fingerprint = _file_fingerprint(path) if path.is_file() else "missing"
        items.append(SourceItem(image_id, str(path), fingerprint, meta, lab))
    roots = [str(image_root.expanduser().resolve())] if image_root else [
        os.path.commonpath([os.path.dirname(i.path) for i in items if i.path]) if items else
        str(manifest.parent)]
    return Source("manifest", manifest, items, roots)


def read_embeddings_source(path: Path) -> Source:
    """Read precomputed embeddings: Parquet with image_id, embedding (list of floats), metadata."""
    path = path.expanduser().resolve()
    if not path.is_file():
        raise SourceError(f"embeddings file {path} does not exist")
    table = read_table(path)
    ids = _require_ids(table, path)
    if "embedding" not in table.column_names:
        raise SourceError(f"{path} has no 'embedding' column (columns: {table.column_names})")
    column = table.column("embedding").combine_chunks()
    if not pa.types.is_list(column.type) and not pa.types.is_fixed_size_list(column.type) \
            and not pa.types.is_large_list(column.type):
        raise SourceError(f"{path}: 'embedding' must be a list of floats, got {column.type}")
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    if column.null_count or len(set(lengths.tolist())) > 1:
        raise SourceError(f"{path}: embeddings must all have the same length and none be empty "
                          f"(lengths seen: {sorted(set(lengths.tolist()))[:5]})")
    dim = int(lengths[0]) if len(lengths) else 0
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    try:
        vectors = l2_normalize(flat.reshape(len(ids), dim))
    except ValueError as exc:
        raise SourceError(f"{path}: {exc}") from exc
    raw_paths = (table.column("path").cast(pa.string()).to_pylist()
                 if "path" in table.column_names else [None] * len(ids))
    items = []
    for row, (image_id, meta, lab, raw) in enumerate(zip(
            ids, _metadata_rows(table), _labeled_column(table, path), raw_paths, strict=True)):
        resolved = str((path.parent / raw).resolve()) if raw else None
        digest = hashlib.sha1(vectors[row].tobytes()).hexdigest()[:16]
        items.append(SourceItem(image_id, resolved, f"vec:{digest}", meta, lab))
    paths_known = [os.path.dirname(i.path) for i in items if i.path]
    roots = [os.path.commonpath(paths_known)] if paths_known else []
    return Source("embeddings", path, items, roots, vectors)
