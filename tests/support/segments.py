"""Helpers for format-2 bundle tests: file stamps of segments, and a bundle rewritten in the format-1 layout."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import faiss
import numpy as np

from edgemine.bundle.snapshot import load_current


def file_stamps(root: Path) -> dict[str, tuple[int, int, int]]:
    """(inode, mtime_ns, size) of every file under root/segments, by relative path."""
    out = {}
    for path in sorted((root / "segments").rglob("*")):
        if path.is_file():
            st = path.stat()
            out[str(path.relative_to(root))] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return out


def segment_names(root: Path) -> list[str]:
    """Names of the segment directories on disk."""
    return sorted(p.name for p in (root / "segments").iterdir())


def to_format_1(bundle: Path) -> None:
    """Rewrite a one-segment format-2 bundle in the format-1 layout (files in the version dir)."""
    snap = load_current(bundle)
    assert len(snap.manifest.segments) == 1 and not len(snap.tombstones)
    seg_dir = bundle / "segments" / snap.manifest.segments[0].name
    for name in ("embeddings.npy", "catalog.parquet"):
        shutil.copyfile(seg_dir / name, snap.dir / name)
    if (seg_dir / "index.faiss").is_file():  # IVF: the whole index, as format 1 stored it
        shutil.copyfile(seg_dir / "index.faiss", snap.dir / "index.faiss")
    else:  # format 1 always stored an index: an exact one for flat bundles
        exact = faiss.IndexIDMap2(faiss.IndexFlatIP(snap.manifest.dim))
        exact.add_with_ids(np.ascontiguousarray(snap.embeddings, np.float32),
                           snap.catalog.column("vec_id").to_numpy())
        faiss.write_index(exact, str(snap.dir / "index.faiss"))
    manifest = json.loads((snap.dir / "manifest.json").read_text())
    manifest.update(format_version=1, segments=[], tombstones=0)
    (snap.dir / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(bundle / "segments")
    for version in (bundle / "versions").iterdir():  # older versions would name the removed segment
        if version != snap.dir:
            shutil.rmtree(version)
    os.sync()
