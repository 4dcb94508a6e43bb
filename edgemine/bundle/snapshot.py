"""Read and write published, immutable bundle versions."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from edgemine import __version__
from edgemine.bundle.errors import BundleError, UnknownImageIds
from edgemine.bundle.layout import (
    CATALOG,
    EMBEDDINGS,
    INDEX,
    MANIFEST,
    RESERVED_COLUMNS,
    BundlePaths,
    Manifest,
    fsync_dir,
    read_manifest,
    write_atomic,
)
from edgemine.models.vectors import Vectors

KEEP_VERSIONS = 2  # older versions may still be mapped by a running service for a moment


@dataclass
class Snapshot:
    """One published bundle version: manifest, catalog, embeddings (memory-mapped), index."""

    paths: BundlePaths
    manifest: Manifest
    catalog: pa.Table
    embeddings: Vectors
    _row_by_id: dict[str, int] = field(default_factory=dict, repr=False)

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
        """Load the FAISS index (memory-mapped where the index type allows)."""
        import faiss

        path = self.dir / INDEX
        try:
            return faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError:
            return faiss.read_index(str(path))


def load_version(paths: BundlePaths, version: int) -> Snapshot:
    """Load a published version; raises BundleError when its files are missing or inconsistent."""
    vdir = paths.version_dir(version)
    manifest = read_manifest(vdir)
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
                    embeddings: Vectors, index: Any) -> Path:
    """Write a complete version to a temporary directory, then publish it atomically.

    Readers follow CURRENT, which is replaced in one rename after every file is flushed, so they
    see either the previous version or this one, never a partial write.
    """
    import faiss

    manifest = manifest.model_copy(update={"edgemine_version": __version__})
    paths.versions.mkdir(parents=True, exist_ok=True)
    final = paths.version_dir(manifest.version)
    tmp = final.with_name(final.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    if final.exists():
        # A version dir without CURRENT pointing at it is the leftover of a crashed publish.
        shutil.rmtree(final)
    tmp.mkdir()
    with (tmp / EMBEDDINGS).open("wb") as fh:
        np.save(fh, np.ascontiguousarray(embeddings, dtype=np.float32))
        fh.flush()
    pq.write_table(catalog, tmp / CATALOG)
    faiss.write_index(index, str(tmp / INDEX))
    write_atomic(tmp / MANIFEST, manifest.model_dump_json(indent=2).encode())
    for name in (EMBEDDINGS, CATALOG, INDEX):
        with (tmp / name).open("rb") as fh:
            os.fsync(fh.fileno())
    tmp.rename(final)
    fsync_dir(paths.versions)
    write_atomic(paths.current, f"{final.name}\n".encode())
    _collect_garbage(paths, manifest.version)
    return final


def _collect_garbage(paths: BundlePaths, current: int) -> None:
    for entry in paths.versions.iterdir():
        name = entry.name
        stale = name.startswith("v") and name[1:].isdigit() and int(name[1:]) <= current - KEEP_VERSIONS
        if name.endswith(".partial") or stale:
            shutil.rmtree(entry, ignore_errors=True)


def check_writable(paths: BundlePaths) -> None:
    """Fail early if the bundle directory cannot be created or written."""
    try:
        paths.root.mkdir(parents=True, exist_ok=True)
        probe = paths.root / ".write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BundleError(f"cannot write bundle directory {paths.root}: {exc}") from exc
