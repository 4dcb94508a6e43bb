"""Assemble a new bundle version from the previous one and this run's vectors: O(new) or a compaction.

Images that did not change stay where they are (in their segment, with their vec_id): nothing of
them is read or written. New images, and images whose file, path or metadata changed, go to one
new segment with new vec_ids; the old vec_ids of changed and removed images become tombstones.
The new version directory lists the segments and the tombstones. When segments pile up, too many
rows are tombstoned, the index must be retrained, or on `compact`/`rebuild`, every served row is
rewritten into one segment instead (a compaction: O(all), amortized over the publishes before).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from edgemine.bundle.errors import BundleError
from edgemine.bundle.layout import INDEX, RESERVED_COLUMNS, BundlePaths, IndexInfo, Manifest, SegmentRef
from edgemine.bundle.segments import link_segment, publish_manifest, segment_dir, write_segment
from edgemine.bundle.snapshot import Snapshot
from edgemine.bundle.vectors import SegmentedVectors, Stored
from edgemine.models.vectors import Vectors
from edgemine.search.build import add_vectors, index_bytes
from edgemine.search.maintain import IndexBuilder, can_extend, make_index, plan_index
from edgemine.search.plan import IndexPlan

MAX_SEGMENTS = 8  # more segments than this after a publish: compact (each costs a file set and a merge)
MAX_TOMBSTONE_FRACTION = 0.25  # more stored rows than this not served: compact (wasted space and scans)
BLOCK = 65_536  # rows per block when vectors are copied into a segment


@dataclass
class Changes:
    """What a run changes in the served rows."""

    records: list[dict[str, object]] = field(default_factory=list)  # rows of the new segment
    vectors: list[Vectors | int] = field(default_factory=list)  # a new vector, or the previous row to copy
    tombstoned: list[int] = field(default_factory=list)  # previous vec_ids no longer served
    labeled: list[str] = field(default_factory=list)


@dataclass
class Assembled:
    """A version ready to publish (its segment already written), or the served one when nothing changed."""

    version: int
    catalog: pa.Table  # the rows it serves, in row order: what the images table must mirror
    labeled: list[str]
    manifest: Manifest | None = None  # None: nothing to publish
    tombstones: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    index: Any = None  # the version's index.faiss, or
    index_file: Path | None = None  # ... an existing file hard-linked as it
    compacted: bool = False
    new_rows: int | None = None  # incremental: the catalog's last rows are the new segment's


def _metadata(item_meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item_meta.items() if k not in RESERVED_COLUMNS and v is not None}


def collect_changes(items: list[Any], prev: Snapshot | None, vectors: dict[str, Vectors], *,
                    rebuild: bool, keep_prev_vectors: bool, report: Any) -> tuple[Changes, set[str]]:
    """Sort the source's items into new rows and rows that stay; return them and the ids that stay."""
    changes, stay = Changes(), set()
    rows = prev.row_by_id if prev is not None else {}
    prev_fp = prev.catalog.column("fingerprint").to_pylist() if prev is not None else []
    prev_path = prev.catalog.column("path").to_pylist() if prev is not None else []
    prev_vec = prev.catalog.column("vec_id").to_numpy() if prev is not None else np.empty(0, np.int64)
    meta_cols: dict[str, list[Any]] | None = None  # the previous metadata, read once when first needed
    for item in items:
        prow = rows.get(item.image_id)
        if item.image_id in vectors:
            source: Vectors | int = vectors[item.image_id]
            fingerprint = item.fingerprint
            if prow is not None and not rebuild:
                report.updated += 1
            else:
                report.added += 1
        elif prow is not None and keep_prev_vectors:
            source = prow
            # Keep the fingerprint this vector was made from: a changed file that failed to
            # decode must be retried (and reported) next run, not pass as unchanged.
            fingerprint = prev_fp[prow]
        else:
            continue  # failed and never indexed before: reported, not published
        record: dict[str, object] = {
            "vec_id": -1, "image_id": item.image_id, "path": item.path, "fingerprint": fingerprint,
            # a sidecar or table must not override our columns ("path" is common)
            **{k: v for k, v in item.metadata.items() if k not in RESERVED_COLUMNS}}
        if item.labeled:
            changes.labeled.append(item.image_id)
        if isinstance(source, int) and prev is not None and meta_cols is None:
            meta_cols = {c: prev.catalog.column(c).to_pylist() for c in prev.metadata_columns}
        if isinstance(source, int) and not rebuild and prev_path[source] == item.path and meta_cols is not None \
                and _metadata(item.metadata) == _metadata({c: col[source] for c, col in meta_cols.items()}):
            stay.add(item.image_id)  # unchanged: stays in its segment, costs nothing
            continue
        changes.records.append(record)
        changes.vectors.append(source)
        if prow is not None and not rebuild:
            changes.tombstoned.append(int(prev_vec[prow]))
    return changes, stay


def _new_table(records: list[dict[str, object]], first_vec_id: int) -> pa.Table | None:
    if not records:
        return None
    for offset, rec in enumerate(records):
        rec["vec_id"] = first_vec_id + offset
    # Not Table.from_pylist: it takes the columns of the first record only, and images differ in
    # which metadata they carry (sidecars, partial metadata tables).
    columns = list(dict.fromkeys(key for rec in records for key in rec))
    table = pa.table({c: [rec.get(c) for rec in records] for c in columns})
    return table.set_column(0, "vec_id", pa.array(table.column("vec_id").to_numpy(), pa.int64()))


def _concat(tables: list[pa.Table]) -> pa.Table:
    try:
        return pa.concat_tables(tables, promote_options="permissive").combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise BundleError(f"metadata no longer fits the bundle's column types ({exc}); the "
                          "embedded vectors are kept in the journal: fix the metadata or "
                          "use --rebuild") from exc


def _blocks(prev: Snapshot | None, prev_rows: npt.NDArray[np.int64], new: list[Vectors | int],
            dim: int) -> Iterator[npt.NDArray[Any]]:
    """Yield the vectors of kept previous rows (read from the mapped segments), then the new rows."""
    for first in range(0, len(prev_rows), BLOCK):
        assert prev is not None
        yield np.asarray(prev.embeddings[prev_rows[first:first + BLOCK]])
    for first in range(0, len(new), BLOCK):
        part = new[first:first + BLOCK]
        out = np.empty((len(part), dim), np.float32)
        copy = [i for i, v in enumerate(part) if isinstance(v, int)]
        for i, v in enumerate(part):
            if not isinstance(v, int):
                out[i] = v
        if copy:  # rows whose metadata changed: their vector is read from the mapped segment
            assert prev is not None
            out[copy] = prev.embeddings[np.array([part[i] for i in copy], np.int64)]
        yield out


def _is_ivf(plan: IndexPlan) -> bool:
    return plan.kind == "ivf"


def _template(prev: Snapshot) -> Any:
    """Return the previous version's trained IVF index, emptied (its quantizer and codec only)."""
    import faiss

    index = faiss.read_index(str(prev.dir / INDEX))
    if prev.manifest.format_version < 2 or index.ntotal:
        index.reset()
    return index


def _with_rows(template: Any, vectors: Stored, vec_ids: npt.NDArray[np.int64]) -> Any:
    import faiss

    index = faiss.clone_index(template)
    for first in range(0, len(vectors), BLOCK):
        add_vectors(index, np.asarray(vectors[first:first + BLOCK], np.float32), vec_ids[first:first + BLOCK])
    return index


def _bundle_dtype(prev: Snapshot | None) -> str:
    segs = prev.manifest.segments if prev is not None else []
    return segs[0].dtype if segs else "float32"


def _prev_layout_ok(prev: Snapshot, plan: IndexPlan) -> bool:
    """Return whether the previous version's files can be kept as they are (else: compact)."""
    if prev.manifest.format_version < 2:
        vec_ids = prev.catalog.column("vec_id").to_numpy()
        if len(vec_ids) and not np.array_equal(vec_ids, np.arange(vec_ids[0], vec_ids[0] + len(vec_ids))):
            return False  # a format-1 version with gaps cannot be a segment as it is
    if plan.exact:
        return True
    if _is_ivf(plan):
        return prev.manifest.format_version < 2 or all(s.has_index for s in prev.manifest.segments)
    return (prev.dir / INDEX).is_file()


def should_compact(prev: Snapshot, segments: int, tombstones: int, stored: int) -> bool:
    """Return whether this publish compacts: too many segments, or too many stored rows not served."""
    return segments > MAX_SEGMENTS or tombstones > MAX_TOMBSTONE_FRACTION * max(stored, 1)


def assemble(paths: BundlePaths, prev: Snapshot | None, changes: Changes, stay: set[str], *,
             base: Manifest, removed: list[str], rebuild: bool, force: bool, spec: str,
             memory_budget: int, build: IndexBuilder | None = None) -> Assembled:
    """Write the new version's segment (one, or a compacted one) and return what publishing it takes.

    `base` carries the manifest fields the job computed (model, counts, roots, times); `build`
    fills a newly trained index (the engine's: e.g. parallel Ray tasks), None in this process.
    """
    started = time.perf_counter()
    dim = base.dim
    tomb_new = np.array(changes.tombstoned, np.int64)
    if prev is not None and removed and not rebuild:
        tomb_new = np.concatenate([tomb_new, prev.catalog.column("vec_id").to_numpy()[prev.rows_of(removed)]])
    keep_rows = np.empty(0, np.int64)
    if prev is not None and not rebuild:
        keep_rows = np.flatnonzero(~np.isin(prev.catalog.column("vec_id").to_numpy(), tomb_new)).astype(np.int64)
    n = len(keep_rows) + len(changes.records)
    plan = plan_index(n, dim, spec, memory_budget)
    prev_info = prev.manifest.index if prev is not None and not rebuild else None
    extend = prev is not None and can_extend(prev_info, plan, n) and _prev_layout_ok(prev, plan)
    compact = force or rebuild or prev is None or not extend
    if not compact:
        assert prev is not None
        segments = len(prev.manifest.segments) or 1
        stored = sum(s.rows for s in prev.manifest.segments) or len(prev.catalog)
        compact = should_compact(prev, segments + bool(changes.records),
                                 len(prev.tombstones) + len(tomb_new), stored + len(changes.records))
    if compact:
        return _compacted(paths, prev, changes, keep_rows, base, plan, extend, started, build)
    assert prev is not None
    return _incremental(paths, prev, changes, keep_rows, tomb_new, base, plan, started)


def _incremental(paths: BundlePaths, prev: Snapshot, changes: Changes, keep_rows: npt.NDArray[np.int64],
                 tomb_new: npt.NDArray[np.int64], base: Manifest, plan: IndexPlan, started: float) -> Assembled:
    """Add one segment of the new rows; the previous segments stay as they are (O(new))."""
    import faiss

    ivf = _is_ivf(plan)
    template = _template(prev) if ivf else None
    segments: list[SegmentRef] = list(prev.manifest.segments)
    if prev.manifest.format_version < 2 and len(prev.catalog):  # convert: its files become segment 0
        first = int(prev.catalog.column("vec_id")[0].as_py())
        segments = [link_segment(paths, prev.dir, first, len(prev.catalog), with_index=ivf)]
    table = _new_table(changes.records, base.next_vec_id)
    index: Any = template
    index_file: Path | None = None
    if table is not None:
        vec_ids = table.column("vec_id").to_numpy()
        new_vectors = np.concatenate(list(_blocks(prev, np.empty(0, np.int64), changes.vectors, base.dim)))
        seg_index = _with_rows(template, new_vectors, vec_ids) if ivf else None
        segments.append(write_segment(paths, table, [new_vectors], base.dim, _bundle_dtype(prev), seg_index))
        if not ivf and not plan.exact:
            # HNSW: the graph is one structure: O(index) read, extend, write (not O(embeddings)).
            index = faiss.read_index(str(prev.dir / INDEX))
            add_vectors(index, new_vectors, vec_ids)
    elif not ivf and not plan.exact:
        index_file = prev.dir / INDEX
    if ivf and prev.manifest.format_version >= 2:
        index, index_file = None, prev.dir / INDEX  # the same trained empty index: a hard link
    kept = prev.catalog.take(pa.array(keep_rows, pa.int64()))
    catalog = _concat([kept, *([table] if table is not None else [])])
    tombstones = np.union1d(prev.tombstones, tomb_new).astype(np.int64)
    info = prev.manifest.index.model_copy(update={"build_seconds": round(time.perf_counter() - started, 3)})
    manifest = base.model_copy(update={"segments": segments, "index": info,
                                       "next_vec_id": base.next_vec_id + len(changes.records)})
    return Assembled(base.version, catalog, changes.labeled, manifest, tombstones, index, index_file,
                     new_rows=len(changes.records))


def _compacted(paths: BundlePaths, prev: Snapshot | None, changes: Changes, keep_rows: npt.NDArray[np.int64],
               base: Manifest, plan: IndexPlan, extend: bool, started: float,
               build: IndexBuilder | None = None) -> Assembled:
    """Rewrite every served row into one new segment, vec_ids renumbered 0..n-1 (O(all))."""
    tables = [] if prev is None or not len(keep_rows) else [prev.catalog.take(pa.array(keep_rows, pa.int64()))]
    new = _new_table(changes.records, 0)
    catalog = _concat([*tables, *([new] if new is not None else [])]) if tables or new is not None else None
    if catalog is None:
        manifest = base.model_copy(update={"segments": [], "next_vec_id": 0,
                                           "index": IndexInfo(type="flat", reason="empty bundle")})
        return Assembled(base.version, prev.catalog.slice(0, 0) if prev else pa.table({}), changes.labeled,
                         manifest, compacted=True)
    n = catalog.num_rows
    vec_ids = np.arange(n, dtype=np.int64)
    catalog = catalog.set_column(catalog.column_names.index("vec_id"), "vec_id", pa.array(vec_ids))
    ivf = _is_ivf(plan)
    template = _template(prev) if extend and ivf and prev is not None else None
    built: dict[str, Any] = {}

    def index_of(stored: Stored) -> Any:
        vectors = stored if stored.dtype == np.float32 else SegmentedVectors([stored])
        if plan.exact:
            built["info"] = IndexInfo(type="flat", factory="IDMap2,Flat", reason=plan.reason, trained_on=n)
            return None
        if template is not None and prev is not None:  # same trained quantizer: no retraining
            built["info"] = prev.manifest.index
            return _with_rows(template, stored, vec_ids)
        index, built["info"] = make_index(vectors, vec_ids, spec=plan.factory, build=build)  # type: ignore[arg-type]
        if ivf:
            return index
        built["index"] = index  # HNSW: the whole graph lives in the version directory
        return None

    seg = write_segment(paths, catalog, _blocks(prev, keep_rows, changes.vectors, base.dim), base.dim,
                        _bundle_dtype(prev), index_of=index_of)
    info: IndexInfo = built["info"].model_copy(update={"build_seconds": round(time.perf_counter() - started, 3)})
    index = built.get("index")
    if seg.has_index:
        import faiss

        index = faiss.read_index(str(segment_dir(paths, seg.name) / INDEX))
        info.bytes_per_vector = round(index_bytes(index) / max(n, 1), 2)
        index.reset()  # the version holds the trained, empty index
    manifest = base.model_copy(update={"segments": [seg], "index": info, "next_vec_id": n})
    return Assembled(base.version, catalog, changes.labeled, manifest, np.empty(0, np.int64), index,
                     compacted=True)


def publish_assembled(paths: BundlePaths, assembled: Assembled) -> Path:
    """Publish an assembled version: write its directory, then flip CURRENT to it."""
    assert assembled.manifest is not None
    return publish_manifest(paths, assembled.manifest, assembled.tombstones, index=assembled.index,
                            index_file=assembled.index_file)
