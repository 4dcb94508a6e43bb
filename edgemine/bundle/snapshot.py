"""Read and write published, immutable bundle versions."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from edgemine.bundle.errors import BundleError, UnknownImageIds
from edgemine.bundle.layout import (
    CATALOG,
    EMBEDDINGS,
    INDEX,
    RESERVED_COLUMNS,
    BundlePaths,
    Manifest,
    read_manifest,
)
from edgemine.bundle.segments import (
    KEEP_VERSIONS,
    publish_manifest,
    read_tombstones,
    segment_dir,
    write_segment,
)
from edgemine.bundle.vectors import Embeddings, SegmentedVectors

MERGE_LISTS = True  # several segments' IVF lists: merged into RAM (False: mapped and stacked)

__all__ = ["KEEP_VERSIONS", "Snapshot", "check_writable", "load_current", "load_version", "publish_version"]


@dataclass
class Snapshot:
    """One published bundle version: manifest, catalog, embeddings (memory-mapped), index."""

    paths: BundlePaths
    manifest: Manifest
    catalog: pa.Table  # served rows only (format 2: tombstoned rows are left out)
    embeddings: Embeddings  # row r = catalog row r; a plain ndarray for one float32 segment
    tombstones: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64), repr=False)

    @property
    def version(self) -> int:
        """Return the published version number."""
        return self.manifest.version

    @property
    def dir(self) -> Path:
        """Return this version's directory."""
        return self.paths.version_dir(self.version)

    @cached_property
    def image_ids(self) -> list[str]:
        """Return image ids in row order."""
        return [str(x) for x in self.catalog.column("image_id").to_pylist()]

    @cached_property
    def row_by_id(self) -> dict[str, int]:
        """Return a map image id -> row."""
        return {image_id: row for row, image_id in enumerate(self.image_ids)}

    def rows_of(self, ids: list[str]) -> np.ndarray:
        """Return the rows of `ids`; raises UnknownImageIds naming every unknown one."""
        index = self.row_by_id
        missing = [i for i in ids if i not in index]
        if missing:
            raise UnknownImageIds(missing)
        return np.array([index[i] for i in ids], dtype=np.int64)

    @property
    def metadata_columns(self) -> list[str]:
        """Return the user metadata columns."""
        return [c for c in self.catalog.column_names if c not in RESERVED_COLUMNS]

    def record(self, row: int) -> dict[str, Any]:
        """Return one catalog row as a dict."""
        return {k: v[0] for k, v in self.catalog.slice(row, 1).to_pydict().items()}

    def load_index(self) -> Any:
        """Load the FAISS index (memory-mapped where the index type allows).

        Format 2 with per-segment IVF lists: one segment's index is mapped as is; several are
        merged into the version's trained empty index in RAM (merge_from; mapped and stacked
        with HStackInvertedLists for an IVF kind that cannot merge).
        Tombstoned ids stay in the lists: the searcher never selects them. An exact (flat)
        version stores no index: one is built from the embeddings on demand (the service
        searches flat bundles with numpy instead).
        """
        import faiss

        if self.manifest.format_version < 2:
            return _read_index(self.dir / INDEX)
        with_lists = [seg for seg in self.manifest.segments if seg.has_index]
        if with_lists:
            if len(with_lists) == 1 and len(self.manifest.segments) == 1:
                return _read_index(segment_dir(self.paths, with_lists[0].name) / INDEX)
            index: Any = faiss.read_index(str(self.dir / INDEX))
            ivf = faiss.extract_index_ivf(index)
            merged = MERGE_LISTS
            try:
                # Copied into RAM: searching merged lists measured 1.4-3x faster than stacking
                # the mapped ones (benchmarks/results/2026-12-02/segment-lists.md).
                for seg in with_lists if merged else ():
                    part = faiss.read_index(str(segment_dir(self.paths, seg.name) / INDEX))
                    ivf.merge_from(faiss.extract_index_ivf(part), 0)
            except RuntimeError:  # an IVF kind without merge_from
                merged = False
            if not merged:  # stack the mapped lists instead
                index = faiss.read_index(str(self.dir / INDEX))
                ivf = faiss.extract_index_ivf(index)
                index.referenced_objects = _stack(ivf, [segment_dir(self.paths, seg.name) / INDEX
                                                        for seg in with_lists])
            index.ntotal = ivf.ntotal  # a wrapper (pre-transform) counts separately
            return index
        if (self.dir / INDEX).is_file():
            return _read_index(self.dir / INDEX)
        exact = faiss.IndexIDMap2(faiss.IndexFlatIP(self.manifest.dim))
        if len(self.catalog):
            exact.add_with_ids(np.ascontiguousarray(self.embeddings[np.arange(len(self.catalog))], np.float32),
                               self.catalog.column("vec_id").to_numpy().astype(np.int64))
        return exact


def _stack(ivf: Any, files: list[Path]) -> list[Any]:
    """Serve the mapped lists of `files` through `ivf` (HStackInvertedLists); return what must stay alive."""
    import faiss

    fx: Any = faiss  # the stubs lack the vector and stacking classes
    parts = [_read_index(path) for path in files]
    lists = fx.InvertedListsPtrVector()
    for part in parts:
        lists.push_back(faiss.extract_index_ivf(part).invlists)
    stacked = fx.HStackInvertedLists(lists.size(), lists.data())
    ivf.replace_invlists(stacked, False)
    ivf.ntotal = sum(int(part.ntotal) for part in parts)
    return [parts, lists, stacked]


def _read_index(path: Path) -> Any:
    import faiss

    try:
        return faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError:
        return faiss.read_index(str(path))


def load_version(paths: BundlePaths, version: int) -> Snapshot:
    """Load a published version (format 1 or 2); raises BundleError when its files are missing or inconsistent."""
    vdir = paths.version_dir(version)
    manifest = read_manifest(vdir)
    if manifest.format_version >= 2:
        return _load_segmented(paths, vdir, manifest)
    try:
        # One chunk per column: `take` on a many-chunk table costs milliseconds per query.
        catalog = pq.read_table(vdir / CATALOG).combine_chunks()
        # A plain ndarray view of the map: numpy's memmap subclass slows every matmul down.
        embeddings = np.asarray(np.load(vdir / EMBEDDINGS, mmap_mode="r"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"bundle version {vdir} is corrupt: {exc}") from exc
    n = manifest.counts.images
    if catalog.num_rows != n or embeddings.shape != (n, manifest.dim):
        raise BundleError(
            f"bundle version {vdir} is inconsistent: manifest says {n} x {manifest.dim}, "
            f"catalog has {catalog.num_rows} rows, embeddings are {embeddings.shape}"
        )
    if not (vdir / INDEX).is_file():
        raise BundleError(f"bundle version {vdir} has no {INDEX}")
    return Snapshot(paths, manifest, catalog, embeddings)


def _load_segmented(paths: BundlePaths, vdir: Path, manifest: Manifest) -> Snapshot:
    """Load a format-2 version: its segments' catalogs (served rows only) and mapped embeddings."""
    tables, parts = [], []
    try:
        tombstones = read_tombstones(vdir, manifest)
        for seg in manifest.segments:
            sdir = segment_dir(paths, seg.name)
            table = pq.read_table(sdir / CATALOG)
            part = np.asarray(np.load(sdir / EMBEDDINGS, mmap_mode="r"))
            if table.num_rows != seg.rows or part.shape != (seg.rows, manifest.dim) \
                    or part.dtype != np.dtype(seg.dtype):
                raise BundleError(f"segment {sdir} is inconsistent: the manifest says {seg.rows} x "
                                  f"{manifest.dim} {seg.dtype}, catalog has {table.num_rows} rows, "
                                  f"embeddings are {part.shape} {part.dtype}")
            tables.append(table)
            parts.append(part)
        catalog = (pa.concat_tables(tables, promote_options="permissive") if tables
                   else _empty_catalog()).combine_chunks()
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise BundleError(f"bundle version {vdir} is corrupt: {exc}") from exc
    live = None
    if len(tombstones):
        served = ~np.isin(catalog.column("vec_id").to_numpy(), tombstones)
        live = np.flatnonzero(served).astype(np.int64)
        catalog = catalog.filter(pa.array(served)).combine_chunks()
    if catalog.num_rows != manifest.counts.images:
        raise BundleError(f"bundle version {vdir} is inconsistent: manifest says {manifest.counts.images} "
                          f"images, its segments serve {catalog.num_rows}")
    embeddings: Embeddings
    if len(parts) == 1 and live is None and parts[0].dtype == np.float32:
        embeddings = parts[0]  # the common case stays a plain ndarray: no cost on the hot path
    elif not parts:
        embeddings = np.empty((0, manifest.dim), np.float32)
    else:
        embeddings = SegmentedVectors(parts, live)
    return Snapshot(paths, manifest, catalog, embeddings, tombstones=tombstones)


def _empty_catalog() -> pa.Table:
    return pa.table({"vec_id": pa.array([], pa.int64()), "image_id": pa.array([], pa.string()),
                     "path": pa.array([], pa.string()), "fingerprint": pa.array([], pa.string())})


def load_current(root: Path) -> Snapshot:
    """Load the currently published version of the bundle at `root`."""
    paths = BundlePaths(root)
    if not paths.root.is_dir():
        raise BundleError(f"bundle directory {paths.root} does not exist")
    version = paths.current_version()
    if version is None:
        raise BundleError(
            f"{paths.root} has no published version yet (no CURRENT file): run `edgemine index`"
        )
    return load_version(paths, version)


def publish_version(paths: BundlePaths, manifest: Manifest, catalog: pa.Table,
                    embeddings: Embeddings, index: Any) -> Path:
    """Publish a whole version as one new segment (format 2): a first build, a rebuild, a compaction.

    Rows must be in vec_id order with contiguous vec_ids. An IVF index keeps its lists in the
    segment and the version holds the trained empty index; other indexes live in the version;
    `index` None stores none (exact search from the embeddings).
    """
    import faiss

    ivf = faiss.extract_index_ivf(index) if index is not None and _is_ivf(index) else None
    n, dim = len(catalog), manifest.dim
    segments = []
    if n:
        blocks = (np.asarray(embeddings[first:first + 65_536]) for first in range(0, n, 65_536))
        segments.append(write_segment(paths, catalog, blocks, dim, index=index if ivf is not None else None))
    version_index = index
    if ivf is not None:
        version_index = faiss.clone_index(index)
        version_index.reset()
    return publish_manifest(paths, manifest.model_copy(update={"segments": segments}),
                            np.empty(0, np.int64), index=version_index)


def _is_ivf(index: Any) -> bool:
    import faiss

    try:
        faiss.extract_index_ivf(index)
    except RuntimeError:
        return False
    return True


def check_writable(paths: BundlePaths) -> None:
    """Fail early if the bundle directory cannot be created or written."""
    try:
        paths.root.mkdir(parents=True, exist_ok=True)
        probe = paths.root / ".write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BundleError(f"cannot write bundle directory {paths.root}: {exc}") from exc
