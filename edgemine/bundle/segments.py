"""Format-2 storage: immutable segments, small version directories, garbage collection.

A segment (segments/<name>/) holds the embeddings and catalog rows of the images one publish
added (and, for IVF indexes, the inverted lists of just those rows). It is written under
<name>.partial, flushed, then renamed: a name without the suffix is complete and never changes.
A version (versions/vNNNNNN/) lists the segments it serves and the vec_ids it no longer serves
(tombstones.npy); publishing one costs O(new rows), whatever the size of the bundle.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from edgemine import __version__
from edgemine.bundle.errors import BundleError
from edgemine.bundle.layout import (
    CATALOG,
    EMBEDDINGS,
    INDEX,
    MANIFEST,
    TOMBSTONES,
    BundlePaths,
    Manifest,
    SegmentRef,
    fsync_dir,
    write_atomic,
)
from edgemine.bundle.vectors import Stored

KEEP_VERSIONS = 2  # older versions may still be mapped by a running service for a moment
PARTIAL = ".partial"


def segments_dir(paths: BundlePaths) -> Path:
    """Return <bundle>/segments."""
    return paths.segments


def segment_dir(paths: BundlePaths, name: str) -> Path:
    """Return the directory of one segment."""
    return segments_dir(paths) / name


def next_segment_name(paths: BundlePaths) -> str:
    """Return an unused segment name (one more than any present, complete or not)."""
    top = -1
    if segments_dir(paths).is_dir():
        for entry in segments_dir(paths).iterdir():
            stem = entry.name.removesuffix(PARTIAL)
            if stem.startswith("s") and stem[1:].isdigit():
                top = max(top, int(stem[1:]))
    return f"s{top + 1:06d}"


def _fsync_file(path: Path) -> None:
    with path.open("rb") as fh:
        os.fsync(fh.fileno())


def _begin(paths: BundlePaths, name: str) -> Path:
    tmp = segment_dir(paths, name + PARTIAL)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def _finish(paths: BundlePaths, tmp: Path, name: str) -> None:
    for entry in tmp.iterdir():
        _fsync_file(entry)
    fsync_dir(tmp)
    final = segment_dir(paths, name)
    if final.exists():
        raise BundleError(f"segment {final} already exists: segments are never rewritten")
    tmp.rename(final)
    fsync_dir(segments_dir(paths))


def write_segment(paths: BundlePaths, catalog: pa.Table, blocks: Iterable[npt.NDArray[Any]], dim: int,
                  dtype: str = "float32", index: Any = None,
                  index_of: Callable[[Stored], Any] | None = None) -> SegmentRef:
    """Write a new segment from catalog rows (vec_ids contiguous, ascending) and their vector blocks.

    The vectors arrive in blocks and go straight to the memory-mapped file, so a segment of any
    size is written with one block in RAM. `index` (or `index_of(the mapped vectors)`, when it
    returns one) is stored as the segment's index.faiss.
    """
    import faiss

    vec_ids = catalog.column("vec_id").to_numpy()
    n = len(vec_ids)
    if n == 0 or not np.array_equal(vec_ids, np.arange(vec_ids[0], vec_ids[0] + n)):
        raise BundleError("a segment needs at least one row and contiguous ascending vec_ids")
    name = next_segment_name(paths)
    tmp = _begin(paths, name)
    out = np.lib.format.open_memmap(tmp / EMBEDDINGS, mode="w+", dtype=np.dtype(dtype), shape=(n, dim))
    filled = 0
    for block in blocks:
        out[filled:filled + len(block)] = block
        filled += len(block)
    if filled != n:
        raise BundleError(f"segment {name}: {filled} vectors for {n} catalog rows")
    out.flush()
    del out
    if index_of is not None:
        index = index_of(np.asarray(np.load(tmp / EMBEDDINGS, mmap_mode="r")))
    pq.write_table(catalog, tmp / CATALOG)
    if index is not None:
        faiss.write_index(index, str(tmp / INDEX))
    _finish(paths, tmp, name)
    return SegmentRef(name=name, rows=n, vec_id_start=int(vec_ids[0]), vec_id_end=int(vec_ids[0]) + n,
                      dtype="float16" if dtype == "float16" else "float32", has_index=index is not None)


def link_segment(paths: BundlePaths, version_dir: Path, vec_id_start: int, rows: int,
                 with_index: bool) -> SegmentRef:
    """Turn a format-1 version's files into a segment by hard links (no data is copied)."""
    name = next_segment_name(paths)
    tmp = _begin(paths, name)
    for file in (EMBEDDINGS, CATALOG, *((INDEX,) if with_index else ())):
        try:
            os.link(version_dir / file, tmp / file)
        except OSError:  # a filesystem without hard links: one copy, once
            shutil.copyfile(version_dir / file, tmp / file)
    _finish(paths, tmp, name)
    return SegmentRef(name=name, rows=rows, vec_id_start=vec_id_start, vec_id_end=vec_id_start + rows,
                      has_index=with_index)


def publish_manifest(paths: BundlePaths, manifest: Manifest, tombstones: npt.NDArray[np.int64],
                     index: Any = None, index_file: Path | None = None) -> Path:
    """Write a format-2 version directory (manifest, tombstones, index) and make it current.

    `index` is written as the version's index.faiss, or `index_file` hard-linked there.
    Readers follow CURRENT, replaced in one rename after every file is flushed.
    """
    import faiss

    for seg in manifest.segments:
        if not (segment_dir(paths, seg.name) / EMBEDDINGS).is_file():
            raise BundleError(f"version {manifest.version} names segment {seg.name}, which is missing")
    manifest = manifest.model_copy(update={"edgemine_version": __version__, "format_version": 2,
                                           "tombstones": len(tombstones)})
    paths.versions.mkdir(parents=True, exist_ok=True)
    final = paths.version_dir(manifest.version)
    tmp = final.with_name(final.name + PARTIAL)
    for stale in (tmp, final):  # leftovers of a crashed publish: CURRENT never named them
        if stale.exists():
            shutil.rmtree(stale)
    tmp.mkdir()
    if len(tombstones):
        with (tmp / TOMBSTONES).open("wb") as fh:
            np.save(fh, np.sort(np.asarray(tombstones, np.int64)))
    if index is not None:
        faiss.write_index(index, str(tmp / INDEX))
    elif index_file is not None:
        try:
            os.link(index_file, tmp / INDEX)
        except OSError:
            shutil.copyfile(index_file, tmp / INDEX)
    write_atomic(tmp / MANIFEST, manifest.model_dump_json(indent=2).encode())
    for entry in tmp.iterdir():
        _fsync_file(entry)
    tmp.rename(final)
    fsync_dir(paths.versions)
    write_atomic(paths.current, f"{final.name}\n".encode())
    collect_garbage(paths, manifest.version)
    return final


def _referenced(version_dir: Path) -> set[str]:
    try:
        data = json.loads((version_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return set()
    return {str(seg["name"]) for seg in data.get("segments", []) if isinstance(seg, dict)}


def collect_garbage(paths: BundlePaths, current: int) -> None:
    """Remove versions older than KEEP_VERSIONS, partial writes, and segments no kept version names."""
    keep: set[str] = set()
    for entry in paths.versions.iterdir():
        name = entry.name
        stale = name.startswith("v") and name[1:].isdigit() and int(name[1:]) <= current - KEEP_VERSIONS
        if name.endswith(PARTIAL) or stale:
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.is_dir():
            keep |= _referenced(entry)
    if segments_dir(paths).is_dir():
        for entry in segments_dir(paths).iterdir():
            if entry.name not in keep:
                shutil.rmtree(entry, ignore_errors=True)


def read_tombstones(version_dir: Path, manifest: Manifest) -> npt.NDArray[np.int64]:
    """Return the sorted vec_ids a format-2 version does not serve."""
    if manifest.tombstones == 0:
        return np.empty(0, np.int64)
    tomb = np.load(version_dir / TOMBSTONES)
    if tomb.ndim != 1 or len(tomb) != manifest.tombstones:
        raise BundleError(f"{version_dir / TOMBSTONES} holds {tomb.shape}, the manifest says {manifest.tombstones}")
    return np.asarray(tomb, np.int64)
