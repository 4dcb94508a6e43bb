"""Exact search kernel: every stored row against a few query vectors in one pass over memory.

Scoring 1M x 512 float32 rows against m examples reads 2 GB and does m GFLOP: for a handful of
examples the pass should be bound by memory bandwidth, as long as each row is read from memory
once. One big `E @ V.T` does read it once, but a tall, skinny GEMM runs far below the CPU's peak
(numpy's OpenBLAS packs the whole operand; measured 3x the bandwidth floor at m = 10).

float32 rows go through a compiled kernel (search/exact_kernel.py, numba, imported on the first
call): eight rows at a time against every example, so each row is read once and each loaded
example value feeds eight FMA chains. A float16 copy (numba has no float16 arithmetic) goes in
blocks small enough to stay in the core's L2 cache: each block converted to float32, multiplied by
all examples (`V @ block.T`, m x block, cache-resident) and reduced before the next block. Either
way the row ranges are split over edgemine's own threads (the kernel releases the GIL, numpy
inside the GEMM), so that every core's share of the memory bandwidth is used.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

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
# Range boundaries for the compiled kernel: multiples of its eight-row step.
KERNEL_ALIGN = 64
# Row ranges per worker thread for the compiled kernel (no per-range buffer, so small ranges are free).
KERNEL_PIECES = 8
_pool: ThreadPoolExecutor | None = None
_kernel: Any = None


def _workers() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_workers(), thread_name_prefix="edgemine-exact")
    return _pool


def _compiled() -> Any:
    """Return the compiled kernel, importing numba on first use (never at edgemine's import)."""
    global _kernel
    if _kernel is None:
        from edgemine.search.exact_kernel import scan_rows

        _kernel = scan_rows
    return _kernel


def warm_up() -> None:
    """Load (or compile) the exact kernel for writable and read-only rows, off any request's path."""
    rows = np.zeros((64, 8), np.float32)
    examples = np.ones((2, 8), np.float32)
    max_and_argmax(rows, examples, parallel=False)
    rows.setflags(write=False)  # mapped bundle files are read-only: numba compiles that type apart
    max_and_argmax(rows, examples, parallel=False)


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

    float32 rows with m >= 2 go through the compiled kernel (scores summed in float32 in another
    order than numpy's, within ~1e-6 of float64 for unit vectors); one example is a GEMV.
    `embeddings` may also be a float16 copy (half the bytes to read; scores then carry the float16
    rounding of the rows, about 1e-3), scored in cache-sized blocks, each block's GEMM on one BLAS
    thread (search/blas.py). With `parallel`, row ranges run on a thread pool. `max_cells` caps the
    similarity cells held at once over all threads on the blocked path (a caller's memory bound: the
    block is m x rows per thread, so many examples shrink the block); the compiled kernel holds none.
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
    if emb.dtype == np.float32:
        if len(right) == 1:
            # One example: a GEMV is already one memory-bound pass (OpenBLAS threads it over the cores).
            np.matmul(emb, right[0], out=best)
            arg[:] = 0
            return best, arg
        kernel = _compiled()
        if n < PARALLEL_MIN_ROWS or not parallel:
            kernel(emb, right, 0, n, best, arg)
        else:
            _scan_parallel(n, KERNEL_ALIGN, lambda start, stop: kernel(emb, right, start, stop, best, arg),
                           KERNEL_PIECES)
        return best, arg
    with single_threaded_blas():
        if n < PARALLEL_MIN_ROWS or not parallel:
            _scan(emb, right, 0, n, block, best, arg)
        else:
            _scan_parallel(n, block, lambda start, stop: _scan(emb, right, start, stop, block, best, arg))
    return best, arg


def _scan_parallel(n: int, align: int, scan: Callable[[int, int], None], pieces_per_worker: int = 1) -> None:
    """Run scan(start, stop) over contiguous, `align`-aligned row ranges on the worker threads."""
    pieces = _workers() * pieces_per_worker
    # Contiguous ranges, so every core streams its own rows; several per worker let a core that
    # runs ahead (the machine is shared) take the next range instead of waiting for the slowest.
    cuts = [min(n, (n * i // pieces) // align * align) for i in range(pieces)] + [n]
    futures = [_executor().submit(scan, cuts[i], cuts[i + 1]) for i in range(pieces) if cuts[i] < cuts[i + 1]]
    for future in futures:
        future.result()
