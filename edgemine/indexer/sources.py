"""Read what to index: a directory of images, a manifest table, or precomputed embeddings."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from edgemine.bundle import objects
from edgemine.bundle.layout import real_path_inside
from edgemine.indexer.files import UNREADABLE, as_labeled, is_utf8, printable, probe_file, read_sidecar
from edgemine.models.vectors import Vectors, l2_normalize

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
# Column names a source may carry that are not user metadata.
SPECIAL_COLUMNS = frozenset({"image_id", "path", "labeled", "embedding"})
# Read as text whatever they look like: "007" must not become 7, nor "2024-05-01" a timestamp.
TEXT_COLUMNS = ("image_id", "path")


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
    error: str | None = None  # why the file cannot be used this run: reported, never opened


@dataclass
class Source:
    """Everything read from a source, ready for the indexer."""

    kind: Literal["directory", "manifest", "embeddings"]
    location: Path | str  # a str for an object-store prefix (s3://bucket/prefix/)
    items: list[SourceItem]
    image_roots: list[str]  # declared, never derived from the rows' paths; s3://bucket/prefix/ for objects
    vectors: Vectors | None = None  # only for precomputed embeddings, rows match items
    # Entries that cannot even be items (a file name that is not UTF-8): reported as failures only.
    rejected: list[SourceItem] = field(default_factory=list)


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


def read_table(path: Path) -> pa.Table:
    """Read a CSV, JSONL or Parquet file into an Arrow table; image_id and path are read as text."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            import pyarrow.csv as pacsv

            return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in TEXT_COLUMNS}))
        if suffix in (".jsonl", ".ndjson", ".json"):
            return _read_json(path)
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(f"cannot read {path}: {exc}") from exc
    raise SourceError(f"{path}: unsupported table format {suffix!r} (use .csv, .jsonl or .parquet)")


def _read_json(path: Path) -> pa.Table:
    import pyarrow.json as pajson

    schema = pa.schema([(c, pa.string()) for c in TEXT_COLUMNS])
    try:
        table = pajson.read_json(path, parse_options=pajson.ParseOptions(
            explicit_schema=schema, unexpected_field_behavior="infer"))
    except pa.ArrowInvalid as exc:
        if any(f"Column(/{c})" in str(exc) for c in TEXT_COLUMNS):
            raise SourceError(f"cannot read {path}: {exc}; image_id and path must be JSON strings "
                              '(write "007", not 7)') from exc
        raise
    # The explicit schema adds its columns even to files without them: drop those again, so that
    # a missing column is reported as missing.
    absent = [c for c in TEXT_COLUMNS if table.column(c).null_count == table.num_rows]
    return table.drop_columns(absent) if absent else table


def _require_ids(table: pa.Table, where: Path) -> list[str]:
    if "image_id" not in table.column_names:
        raise SourceError(f"{where} has no 'image_id' column (columns: {table.column_names})")
    column = table.column("image_id")
    kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)):
        raise SourceError(f"{where}: image_id must be text (or integers), not {column.type}")
    values = column.cast(pa.string()).to_pylist()
    empty = [row for row, value in enumerate(values, start=1) if value is None or not value.strip()]
    if empty:
        raise SourceError(f"{where}: {len(empty)} rows have an empty image_id (first: row {empty[0]} "
                          "of the table); every image needs an id")
    ids = [str(value) for value in values]
    dupes = [i for i, n in Counter(ids).items() if n > 1]
    if dupes:
        shown = ", ".join(repr(d) for d in sorted(dupes)[:10])
        raise SourceError(f"{where}: duplicate image_id values ({len(dupes)}): {shown}")
    return ids


def _labeled_column(table: pa.Table, where: Path) -> list[bool]:
    if "labeled" not in table.column_names:
        return [False] * table.num_rows
    try:
        return [as_labeled(value) for value in table.column("labeled").to_pylist()]
    except ValueError as exc:
        raise SourceError(f"{where}: {exc}") from exc


def _metadata_rows(table: pa.Table) -> list[dict[str, Any]]:
    keep = [c for c in table.column_names if c not in SPECIAL_COLUMNS]
    return table.select(keep).to_pylist() if keep else [{} for _ in range(table.num_rows)]


def _metadata_table(metadata_file: Path | None) -> tuple[dict[str, dict[str, Any]], dict[str, bool]]:
    if metadata_file is None:
        return {}, {}
    table = read_table(metadata_file)
    ids = _require_ids(table, metadata_file)
    return (dict(zip(ids, _metadata_rows(table), strict=True)),
            dict(zip(ids, _labeled_column(table, metadata_file), strict=True)))


def scan_directory(root: Path | str, metadata_file: Path | None = None) -> Source:
    """List images under `root` (recursive); ids are paths relative to root, the root is the image root.

    `root` may be an object-store prefix (`s3://bucket/prefix`, `gs://...`) or a `file://` URI.
    Metadata comes from an optional table keyed by image_id and from per-image JSON sidecars
    (`frame.jpg.json`), the sidecar winning. A file that cannot be used (not a regular file, a
    broken symlink, a bad sidecar, a name that is not UTF-8) is a failure of that image alone.
    """
    extra, labeled = _metadata_table(metadata_file)
    if objects.is_remote(str(root)):
        from edgemine.indexer.object_sources import scan_object_prefix

        return scan_object_prefix(str(root), extra, labeled)
    root = Path(_local(str(root))).expanduser().resolve()
    if not root.is_dir():
        raise SourceError(f"source directory {root} does not exist")
    items: list[SourceItem] = []
    rejected: list[SourceItem] = []

    def unreadable_dir(exc: OSError) -> None:
        where = printable(os.path.relpath(exc.filename, root)) if exc.filename else "?"
        rejected.append(SourceItem(where + "/", printable(str(exc.filename)), UNREADABLE,
                                   error=f"directory cannot be listed: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            path = Path(dirpath) / name
            image_id = path.relative_to(root).as_posix()
            if not is_utf8(str(path)):
                rejected.append(SourceItem(printable(image_id), printable(str(path)), UNREADABLE,
                                           error="file name is not valid UTF-8; rename the file"))
                continue
            fingerprint, error = probe_file(path)
            item = SourceItem(image_id, str(path), fingerprint, dict(extra.get(image_id, {})),
                              labeled.get(image_id, False), error)
            sidecar = path.with_name(name + ".json")
            if error is None and os.path.lexists(sidecar):
                try:
                    more, flag = read_sidecar(sidecar)
                except ValueError as exc:
                    item.error = str(exc)
                else:
                    item.metadata.update(more)
                    item.labeled = item.labeled if flag is None else flag
            items.append(item)
    return Source("directory", root, items, [str(root)], rejected=rejected)


def _local(path: str) -> str:
    try:
        return objects.local_path(path)
    except ValueError as exc:
        raise SourceError(str(exc)) from exc


def _declared_root(table_file: Path, image_root: Path | str | None) -> str:
    if image_root is None:
        return str(table_file.parent)
    if objects.is_remote(str(image_root)):
        try:
            return objects.as_root(str(image_root))  # a prefix, ending at a '/' boundary
        except ValueError as exc:
            raise SourceError(f"--image-root {image_root}: {exc}") from exc
    root = Path(os.path.realpath(Path(_local(str(image_root))).expanduser()))
    if not root.is_dir():
        raise SourceError(f"--image-root {image_root} is not a directory")
    return str(root)


def _check_inside(items: list[SourceItem], root: str, where: Path, declared: bool) -> None:
    """Refuse rows whose (symlink-resolved) path or object URI lies outside the declared image root."""
    outside = [i for i in items if i.path is not None and real_path_inside(i.path, [root]) is None]
    if not outside:
        return
    first = outside[0]
    more = f" (and {len(outside) - 1} more rows)" if len(outside) > 1 else ""
    if declared:
        fix = (f"lies outside --image-root {root}{more}; only files under the declared image root "
               "can be indexed")
    else:
        fix = (f"lies outside the folder of {where.name} ({root}){more}; pass --image-root DIR, "
               "a folder (or an s3://bucket/prefix) holding every image, to index files elsewhere")
    raise SourceError(f"{where}: image {first.image_id!r} has path {first.path}, which {fix}")


def _resolve(base: Path, raw: str, image_id: str, where: Path) -> str:
    if "\0" in raw:
        raise SourceError(f"{where}: image {image_id!r} has a path with a NUL byte")
    if objects.is_remote(raw):
        try:
            objects.split_uri(raw)
        except ValueError as exc:
            raise SourceError(f"{where}: image {image_id!r}: {exc}") from exc
        return raw  # checked against the image root like any path; stat'ed with the others
    raw = _local(raw)
    # realpath, not Path.resolve: it follows symlinks (the root check must see their targets)
    # and does not raise on a symlink loop (that file then fails alone).
    return os.path.realpath(base / raw)


def read_manifest_source(manifest: Path, image_root: Path | str | None = None) -> Source:
    """Read a manifest (image_id, path, metadata..., optional labeled); paths relative to it.

    A path may also be an object URI (`s3://bucket/key`, `gs://...`) or a `file://` URI. The image
    root is `image_root` when given (a folder, or a prefix such as `s3://bucket/frames`), else the
    manifest's folder; a path outside it is an error naming the row.
    """
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
    root = _declared_root(manifest, image_root)
    items = []
    for image_id, raw, meta, lab in zip(ids, raw_paths, metadata, labeled, strict=True):
        if not raw:
            raise SourceError(f"{manifest}: image {image_id!r} has an empty path")
        path = _resolve(manifest.parent, raw, image_id, manifest)
        fingerprint, error = ("", None) if objects.is_remote(path) else probe_file(path)
        items.append(SourceItem(image_id, path, fingerprint, meta, lab, error))
    _check_inside(items, root, manifest, image_root is not None)
    # After the root check: a row outside the root is refused before any request is made for it.
    from edgemine.indexer.object_sources import stat_object_items

    stat_object_items(items)
    return Source("manifest", manifest, items, [root])


def read_embeddings_source(path: Path, image_root: Path | str | None = None) -> Source:
    """Read precomputed embeddings: Parquet with image_id, embedding (list of floats), metadata.

    Optional paths (relative to the file) must lie under `image_root`, or under the file's folder
    when it is not given; without any path the bundle has no image root.
    """
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
    root = _declared_root(path, image_root)
    items = []
    for row, (image_id, meta, lab, raw) in enumerate(zip(
            ids, _metadata_rows(table), _labeled_column(table, path), raw_paths, strict=True)):
        resolved = _resolve(path.parent, raw, image_id, path) if raw else None
        digest = hashlib.sha1(vectors[row].tobytes()).hexdigest()[:16]
        items.append(SourceItem(image_id, resolved, f"vec:{digest}", meta, lab))
    _check_inside(items, root, path, image_root is not None)
    has_paths = image_root is not None or any(i.path for i in items)
    return Source("embeddings", path, items, [root] if has_paths else [], vectors)
