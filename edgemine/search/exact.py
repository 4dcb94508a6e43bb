"""Exact search kernel: every stored row against a few query vectors in one pass over memory.

Scoring 1M x 512 float32 rows against m examples reads 2 GB and does m GFLOP: for a handful of
examples the pass is bound by memory bandwidth, not arithmetic, as long as each row is read
from memory once. One big `E @ V.T` does read it once, but a tall, skinny GEMM runs far below
the CPU's peak (numpy's OpenBLAS packs the whole operand; measured 3x the bandwidth floor at
m = 10). Here the rows go in blocks small enough to stay in the core's L2 cache: each block is
read from memory once, multiplied by all examples (`V @ block.T`: a short, wide GEMM whose
output is m x block and also cache-resident) and reduced to a max and an argmax per row before
the next block. The blocks are split over the cores (numpy releases the GIL inside the GEMM),
so that every core's share of the memory bandwidth is used.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt

from edgemine.bundle.vectors import Embeddings, SegmentedVectors
from edgemine.models.vectors import Vectors
from edgemine.search.blas import single_threaded_blas

# Bytes of embeddings per block (64 rows at d = 512): fits L2 with the GEMM's packed copy and the
# m x block similarities. Measured at 1M x 512, 10 examples: 128 KiB 2.4x one GEMV pass, 64 KiB
# 4.8x, 256 KiB 3.2x, 1 MiB 3.3x (benchmarks/results/2026-12-01/search-core-notes.md).
BLOCK_BYTES = 128 * 1024
# Fewer rows than this run on the calling thread: handing work to the pool costs more.
PARALLEL_MIN_ROWS = 65_536
_pool: ThreadPoolExecutor | None = None


def _workers() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_workers(), thread_name_prefix="edgemine-exact")
    return _pool


def block_rows(d: int, itemsize: int = 4) -> int:
    """Return how many rows of dimension `d` make one cache-sized block (a multiple of 16)."""
    return max(16, BLOCK_BYTES // max(1, d * itemsize) // 16 * 16)


def _scan(embeddings: npt.NDArray[np.float32] | npt.NDArray[np.float16], right: Vectors, start: int, stop: int,
          block: int, best: npt.NDArray[np.float32], arg: npt.NDArray[np.int64]) -> None:
    """Fill best/arg for rows [start, stop): max and argmax over columns of right^T . E_block^T."""
    sims = np.empty((len(right), block), np.float32)
    for first in range(start, stop, block):
        last = min(stop, first + block)
        view = sims[:, : last - first]
        chunk = embeddings[first:last]
        if chunk.dtype != np.float32:
            chunk = chunk.astype(np.float32)  # a float16 copy: converted block by block, in cache
        np.matmul(right, chunk.T, out=view)
        view.argmax(axis=0, out=arg[first:last])
        np.max(view, axis=0, out=best[first:last])


def max_and_argmax(embeddings: Embeddings | npt.NDArray[np.float16], vectors: Vectors,
                   parallel: bool = True, max_cells: int | None = None,
                   ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Return max_j and argmax_j of E . v_j for every row of E (exact, one pass over E).

    The row ranges run on our own threads, each block's GEMM on one BLAS thread (search/blas.py).

    `embeddings` may be float32 or a float16 copy (half the bytes to read; scores then carry the
    float16 rounding of the rows, about 1e-3). With `parallel`, row ranges run on a thread pool.
    `max_cells` caps the similarity cells held at once over all threads (a caller's memory bound:
    the block is m x rows per thread, so many examples shrink the block).
    """
    if isinstance(embeddings, SegmentedVectors):
        # Segment by segment (each a mapped matrix), then the served rows (tombstones left out).
        found = [max_and_argmax(part, vectors, parallel, max_cells) for part in embeddings.parts]
        best_all = np.concatenate([f[0] for f in found])
        arg_all = np.concatenate([f[1] for f in found])
        return embeddings.select(best_all), embeddings.select(arg_all)
    emb: npt.NDArray[np.float32] | npt.NDArray[np.float16] = np.asarray(embeddings)  # type: ignore[assignment]
    n, d = emb.shape
    right = np.ascontiguousarray(vectors, np.float32)
    if right.ndim != 2 or right.shape[1] != d or len(right) == 0:
        raise ValueError(f"need a non-empty m x {d} matrix of query vectors, got shape {right.shape}")
    best = np.empty(n, np.float32)
    arg = np.empty(n, np.int64)
    block = block_rows(d, emb.dtype.itemsize)
    if max_cells is not None:
        block = max(1, min(block, max_cells // (len(right) * (_workers() if parallel else 1))))
    if len(right) == 1 and emb.dtype == np.float32:
        # One example: a GEMV is already one memory-bound pass (OpenBLAS threads it over the cores).
        np.matmul(emb, right[0], out=best)
        arg[:] = 0
        return best, arg
    with single_threaded_blas():
        if n < PARALLEL_MIN_ROWS or not parallel:
            _scan(emb, right, 0, n, block, best, arg)
            return best, arg
        _scan_parallel(emb, right, block, best, arg)
    return best, arg


def _scan_parallel(emb: npt.NDArray[np.float32] | npt.NDArray[np.float16], right: Vectors, block: int,
                   best: npt.NDArray[np.float32], arg: npt.NDArray[np.int64]) -> None:
    n = len(emb)
    workers = _workers()
    # Contiguous, block-aligned ranges: one per worker, so every core streams its own rows.
    cuts = [min(n, (n * i // workers) // block * block) for i in range(workers)] + [n]
    futures = [_executor().submit(_scan, emb, right, cuts[i], cuts[i + 1], block, best, arg)
               for i in range(workers) if cuts[i] < cuts[i + 1]]
    for future in futures:
        future.result()
