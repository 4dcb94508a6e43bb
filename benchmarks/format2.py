"""Write (and check) a format-2 bundle directly on disk, without the indexer (for bench_10m.py).

The layout is the one of /README "Bundle format 2" (issue 11 contract):

    <bundle>/CURRENT                               "v000001\\n"
    <bundle>/segments/<name>/embeddings.npy        rows x dim, float16 or float32
    <bundle>/segments/<name>/catalog.parquet       vec_id, image_id, path, fingerprint, metadata...
    <bundle>/segments/<name>/index.faiss           this segment's rows in the version's IVF
    <bundle>/versions/v000001/manifest.json        format_version 2, segments: [SegmentRef]
    <bundle>/versions/v000001/index.faiss          the trained, EMPTY index (ntotal 0)

A segment is written under `<name>.partial` and renamed when complete (immutable after).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from edgemine.bundle.layout import (
    CATALOG,
    EMBEDDINGS,
    INDEX,
    MANIFEST,
    SEGMENTS,
    BundlePaths,
    Manifest,
    fsync_dir,
    write_atomic,
)

FORMAT = 2


def partial_dir(bundle: Path, name: str) -> Path:
    """Return (created) the directory a segment is written into before it is renamed."""
    path = bundle / SEGMENTS / f"{name}.partial"
    path.mkdir(parents=True, exist_ok=True)
    return path


def finish_segment(bundle: Path, name: str) -> Path:
    """Rename `<name>.partial` to `<name>` (the segment is immutable from then on); return it."""
    final = bundle / SEGMENTS / name
    os.replace(bundle / SEGMENTS / f"{name}.partial", final)
    fsync_dir(final.parent)
    return final


class EmbeddingsFile:
    """A segment's embeddings.npy read and written by blocks of rows with plain file I/O.

    Not a memory map: pages written or read through a map count in the process's RSS (up to the
    whole 10 GB file), which would hide the memory the build itself needs.
    """

    def __init__(self, path: Path, rows: int | None = None, dim: int | None = None, dtype: str = "float16") -> None:
        if rows is not None:  # create: header (and file size) as np.save would write them
            assert dim is not None
            created = np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(dtype), shape=(rows, dim))
            del created  # nothing written through the map: only the header and the file's size
        header = np.load(path, mmap_mode="r")
        self.shape, self.dtype = header.shape, header.dtype
        self.offset = int(header.offset)
        self.row_bytes = int(self.shape[1] * self.dtype.itemsize)
        del header
        self.fd = os.open(path, os.O_RDWR if rows is not None else os.O_RDONLY)

    def __len__(self) -> int:
        return int(self.shape[0])

    def write(self, start: int, block: npt.NDArray[Any]) -> None:
        """Write rows start..start+len(block) (converted to the file's dtype)."""
        data = np.ascontiguousarray(block, self.dtype).tobytes()
        os.pwrite(self.fd, data, self.offset + start * self.row_bytes)

    def read(self, start: int, stop: int) -> npt.NDArray[np.float32]:
        """Return rows start..stop as float32."""
        stop = min(stop, len(self))
        data = os.pread(self.fd, (stop - start) * self.row_bytes, self.offset + start * self.row_bytes)
        return np.frombuffer(data, self.dtype).reshape(stop - start, self.shape[1]).astype(np.float32)

    def close(self) -> None:
        """Flush and close the file."""
        os.fsync(self.fd)
        os.close(self.fd)


class CatalogWriter:
    """Stream catalog.parquet in vec_id order, one block of rows at a time."""

    def __init__(self, segment: Path, metadata: dict[str, pa.DataType]) -> None:
        self.schema = pa.schema([("vec_id", pa.int64()), ("image_id", pa.string()), ("path", pa.string()),
                                 ("fingerprint", pa.string()), *metadata.items()])
        self.writer = pq.ParquetWriter(segment / CATALOG, self.schema)

    def write(self, columns: dict[str, Any]) -> None:
        """Append rows given as columns (every schema column; path may be all None)."""
        self.writer.write_table(pa.table({f.name: pa.array(columns[f.name], f.type) for f in self.schema},
                                         schema=self.schema))

    def close(self) -> None:
        """Finish the file."""
        self.writer.close()


def publish(bundle: Path, manifest: Manifest) -> Path:
    """Write versions/vNNNNNN/manifest.json, then point CURRENT at it; return the version dir."""
    paths = BundlePaths(bundle)
    version_dir = paths.version_dir(manifest.version)
    version_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(version_dir / MANIFEST, manifest.model_dump_json(indent=2).encode())
    write_atomic(paths.current, f"v{manifest.version:06d}\n".encode())
    return version_dir


def file_bytes(bundle: Path) -> dict[str, int]:
    """Return the size of every regular file under the bundle, by relative path."""
    return {str(p.relative_to(bundle)): p.stat().st_size for p in sorted(bundle.rglob("*")) if p.is_file()}


def check_layout(bundle: Path) -> dict[str, Any]:
    """Check a bundle against the format-2 contract; return what was found, raise AssertionError if not.

    Reads only headers and the indexes' list sizes (cheap at 10M rows): the manifest validates,
    CURRENT names it, each segment's embeddings/catalog/index agree with its SegmentRef, and the
    version's index is the same trained IVF with nothing in it.
    """
    import faiss

    paths = BundlePaths(bundle)
    version = paths.current_version()
    assert version is not None, f"{paths.current} missing"
    version_dir = paths.version_dir(version)
    manifest = Manifest.model_validate(json.loads((version_dir / MANIFEST).read_text()))
    assert manifest.format_version == FORMAT, manifest.format_version
    assert manifest.version == version
    empty = faiss.read_index(str(version_dir / INDEX))
    empty_ivf = faiss.extract_index_ivf(empty)
    assert empty.is_trained and empty.ntotal == 0, f"version index holds {empty.ntotal} vectors"
    found: dict[str, Any] = {"version": version, "empty_index_ntotal": int(empty.ntotal), "segments": []}
    start = 0
    for ref in manifest.segments:
        seg = bundle / SEGMENTS / ref.name
        assert ref.vec_id_start == start and ref.rows == ref.vec_id_end - ref.vec_id_start, ref
        emb = np.load(seg / EMBEDDINGS, mmap_mode="r")
        assert emb.shape == (ref.rows, manifest.dim) and emb.dtype == np.dtype(ref.dtype), (emb.shape, emb.dtype)
        meta = pq.read_metadata(seg / CATALOG)
        assert meta.num_rows == ref.rows, meta.num_rows
        ids = pq.read_table(seg / CATALOG, columns=["vec_id"]).column("vec_id").to_numpy()
        assert np.array_equal(ids, np.arange(ref.vec_id_start, ref.vec_id_end)), "catalog not in vec_id order"
        entry: dict[str, Any] = {"name": ref.name, "rows": ref.rows, "dtype": str(emb.dtype)}
        if ref.has_index:
            index = faiss.read_index(str(seg / INDEX), faiss.IO_FLAG_MMAP)
            ivf = faiss.extract_index_ivf(index)
            assert index.ntotal == ref.rows, f"{ref.name} index holds {index.ntotal} of {ref.rows} rows"
            assert ivf.nlist == empty_ivf.nlist and ivf.code_size == empty_ivf.code_size
            entry["index_ntotal"] = int(index.ntotal)
            entry["ids_in_range"] = _ids_in_range(ivf, ref.vec_id_start, ref.vec_id_end)
            assert entry["ids_in_range"], f"{ref.name} index holds ids outside its vec_id range"
        found["segments"].append(entry)
        start = ref.vec_id_end
    assert start == manifest.next_vec_id, (start, manifest.next_vec_id)
    assert sum(r.rows for r in manifest.segments) - manifest.tombstones == manifest.counts.images
    return found


def _ids_in_range(ivf: Any, lo: int, hi: int) -> bool:
    import faiss

    invlists = ivf.invlists
    for lst in range(ivf.nlist):
        size = invlists.list_size(lst)
        if size:
            ids: npt.NDArray[np.int64] = faiss.rev_swig_ptr(invlists.get_ids(lst), size).copy()
            if ids.min() < lo or ids.max() >= hi:
                return False
    return True
