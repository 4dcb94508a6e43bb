"""Staged results of the Ray engine: Parquet shards in the bundle, written and read by the driver only.

A shard holds one streamed output block: id, fingerprint, embedding, error ("" when embedded).
Each is written to a temporary name and renamed, so a driver killed mid-write leaves no half shard;
a re-run reads them back and embeds only what no shard holds (same id and fingerprint).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from edgemine.bundle.layout import BundlePaths
from edgemine.models.vectors import Vectors

STAGING = "staging"  # <bundle>/staging/<model key>/shard-*.parquet
_TMP_SUFFIX = ".partial"


def staging_root(paths: BundlePaths) -> Path:
    """Return the bundle's staging folder (all models)."""
    return paths.root / STAGING


def staging_dir(paths: BundlePaths, model_identity: str) -> Path:
    """Return the staging folder of one model: shards of another model never mix in."""
    key = hashlib.sha256(model_identity.encode()).hexdigest()[:16]
    return staging_root(paths) / key


def write_shard(folder: Path, ids: Sequence[str], fingerprints: Sequence[str],
                embeddings: Vectors, errors: Sequence[str]) -> Path:
    """Write one shard atomically (temporary name, fsync, rename); return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    n, dim = embeddings.shape
    flat = pa.array(np.ascontiguousarray(embeddings, np.float32).reshape(-1))
    table = pa.table({
        "id": pa.array(list(ids), pa.string()),
        "fingerprint": pa.array(list(fingerprints), pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
        "error": pa.array(list(errors), pa.string()),
    })
    assert table.num_rows == n
    name = f"shard-{time.time_ns():020d}-{os.getpid()}.parquet"
    tmp = folder / (name + _TMP_SUFFIX)
    pq.write_table(table, tmp)
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    final = folder / name
    os.replace(tmp, final)
    return final


def read_staged(folder: Path, dim: int) -> dict[str, tuple[str, npt.NDArray[np.float32]]]:
    """Return the embedded rows of every complete shard by id: (fingerprint, vector); later shards win.

    Rows with an error are not returned (a failed file is tried again, as the local engine does);
    leftovers of an interrupted write are deleted.
    """
    out: dict[str, tuple[str, npt.NDArray[np.float32]]] = {}
    if not folder.is_dir():
        return out
    for leftover in folder.glob("*" + _TMP_SUFFIX):
        leftover.unlink(missing_ok=True)
    for shard in sorted(folder.glob("shard-*.parquet")):
        table = pq.read_table(shard)
        emb = table.column("embedding").combine_chunks()
        if emb.type.list_size != dim:
            continue  # another dimension: not this model's vectors
        vectors = emb.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32)
        for row, (image_id, fingerprint, error) in enumerate(zip(
                table.column("id").to_pylist(), table.column("fingerprint").to_pylist(),
                table.column("error").to_pylist(), strict=True)):
            if not error:
                out[image_id] = (fingerprint, vectors[row])
    return out


def discard(paths: BundlePaths) -> None:
    """Delete every staged shard of the bundle (their vectors are published)."""
    shutil.rmtree(staging_root(paths), ignore_errors=True)
