"""Exact max-over-examples kernels against the memory-bandwidth floor (issue 12, "exact at the floor").

Scores n x d float32 rows against m examples (max and argmax per row), the work of edgemine's
exact mode, and times each kernel interleaved, round by round, with one GEMV pass over the same
rows (the bandwidth floor measured under the same load):

- `edgemine`: `edgemine.search.exact.max_and_argmax`, the shipped kernel (numba, eight rows per pass
  over an example, nogil, row ranges split over edgemine's own threads);
- `numpy-blocked`: edgemine's previous float32 path, kept here (cache-sized blocks, `V @ block.T` on
  one BLAS thread per core, the same thread split) -- the path float16 copies still take;
- `numpy-gemm`: one whole `E @ V.T` then max/argmax (what a user would write);
- `numba-rows1`: a compiled loop with numba's own `parallel=True` (fastmath=True), one row per pass
  over an example vector (the first prototype);
- `numba-rows8`: the shipped eight-row kernel (each loaded example value feeds eight FMAs, eight
  independent accumulator chains) with its row blocks spread by numba's `parallel=True` instead of
  edgemine's threads.

    python benchmarks/bench_exact_kernel.py --rows 1000000 --examples 10 --rounds 5 --out bench-results/exact

Writes <out>/exact-kernel.json and .md. Compare ratios within one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edgemine.search import exact
from edgemine.search.blas import single_threaded_blas

Kernel = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def numpy_gemm(emb: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One whole GEMM, then the reductions."""
    sims = emb @ vectors.T
    return sims.max(axis=1), sims.argmax(axis=1)


def _scan_blocked(emb: np.ndarray, right: np.ndarray, start: int, stop: int, block: int,
                  best: np.ndarray, arg: np.ndarray) -> None:
    """Rows [start, stop) in cache-sized blocks: one short, wide GEMM per block, then its max/argmax."""
    sims = np.empty((len(right), block), np.float32)
    for first in range(start, stop, block):
        last = min(stop, first + block)
        view = sims[:, : last - first]
        np.matmul(right, emb[first:last].T, out=view)
        view.argmax(axis=0, out=arg[first:last])
        np.max(view, axis=0, out=best[first:last])


def numpy_blocked(emb: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """edgemine's float32 path before the compiled kernel (still its float16 path)."""
    n, d = emb.shape
    best, arg = np.empty(n, np.float32), np.empty(n, np.int64)
    block = exact.block_rows(d)
    with single_threaded_blas():
        exact._scan_parallel(n, block, lambda start, stop: _scan_blocked(emb, vectors, start, stop, block, best, arg))
    return best, arg


def numba_kernels() -> dict[str, Kernel]:
    """numba's parallel=True prototypes (rows1, rows8)."""
    from numba import njit, prange

    from edgemine.search.exact_kernel import scan_rows

    @njit(parallel=True, fastmath=True, cache=False)  # type: ignore[misc]
    def rows1(emb: Any, vec: Any, best: Any, arg: Any) -> None:  # pragma: no cover - compiled
        n, d = emb.shape
        m = vec.shape[0]
        for b in prange((n + 255) // 256):
            for i in range(b * 256, min(n, b * 256 + 256)):
                top = np.float32(-np.inf)
                at = 0
                for e in range(m):
                    s = np.float32(0.0)
                    for j in range(d):
                        s += emb[i, j] * vec[e, j]
                    if s > top:
                        top = s
                        at = e
                best[i] = top
                arg[i] = at

    @njit(parallel=True, cache=False)  # type: ignore[misc]
    def rows8(emb: Any, vec: Any, best: Any, arg: Any) -> None:  # pragma: no cover - compiled
        # The shipped eight-row kernel, its 256-row blocks spread by numba's own threads instead.
        n = emb.shape[0]
        for b in prange((n + 255) // 256):
            scan_rows(emb, vec, b * 256, min(n, b * 256 + 256), best, arg)

    def wrap(kernel: Any) -> Kernel:
        def run(emb: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            best = np.empty(len(emb), np.float32)
            arg = np.empty(len(emb), np.int64)
            kernel(emb, vectors, best, arg)
            return best, arg
        return run

    return {"numba-rows1": wrap(rows1), "numba-rows8": wrap(rows8)}


def main() -> None:
    """Time every kernel and the GEMV pass, round by round; check each against numpy."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--examples", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench-results/exact"))
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((args.rows, args.dim), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    vectors = np.ascontiguousarray(emb[rng.choice(args.rows, args.examples, replace=False)])
    ones = np.ones(args.dim, np.float32)
    kernels: dict[str, Kernel] = {"edgemine": exact.max_and_argmax, "numpy-blocked": numpy_blocked,
                                  "numpy-gemm": numpy_gemm, **numba_kernels()}
    check = min(args.rows, 20_000)
    ref = emb[:check] @ vectors.T
    compile_s: dict[str, float] = {}
    for name, kernel in kernels.items():  # warm-up (and numba's compilation), then a correctness check
        t0 = time.perf_counter()
        best, arg = kernel(emb[:check], vectors)
        compile_s[name] = round(time.perf_counter() - t0, 3)
        if not np.allclose(best, ref.max(axis=1), atol=1e-4) or (arg != ref.argmax(axis=1)).mean() > 1e-3:
            raise SystemExit(f"{name} disagrees with numpy")
    times: dict[str, list[float]] = {name: [] for name in ["gemv-pass", *kernels]}
    ratios: dict[str, list[float]] = {name: [] for name in kernels}
    for r in range(args.rounds):
        names = list(kernels)
        names = names[r % len(names):] + names[: r % len(names)]
        t0 = time.perf_counter()
        emb @ ones
        floor = time.perf_counter() - t0
        times["gemv-pass"].append(floor)
        for name in names:
            t0 = time.perf_counter()
            kernels[name](emb, vectors)
            spent = time.perf_counter() - t0
            times[name].append(spent)
            ratios[name].append(spent / floor)
    pass_ms = float(np.median(times["gemv-pass"]) * 1e3)
    result: dict[str, Any] = {
        "rows": args.rows, "dim": args.dim, "examples": args.examples, "rounds": args.rounds,
        "cpus": os.cpu_count(), "loadavg_start": round(load_start, 2), "loadavg": round(os.getloadavg()[0], 2),
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "gemv_pass_ms": round(pass_ms, 2), "gb_per_s": round(emb.nbytes / pass_ms / 1e6, 2),
        "kernels": {name: {"p50_ms": round(float(np.median(times[name])) * 1e3, 2),
                           "ratio_to_pass_p50": round(float(np.median(ratios[name])), 3),
                           "first_call_s": compile_s[name]} for name in kernels},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "exact-kernel.json").write_text(json.dumps(result, indent=2))
    lines = [f"### exact max over {args.examples} examples, {args.rows:,} x {args.dim} float32",
             "", f"GEMV pass p50 {result['gemv_pass_ms']} ms ({result['gb_per_s']} GB/s), "
             f"load average {result['loadavg_start']} at the start, {result['loadavg']} at the end, "
             f"{args.rounds} interleaved rounds.", "", f"`{result['command']}`", "",
             "| kernel | p50 ms | p50 of (time / GEMV pass in the same round) | first call s (compile) |",
             "| --- | ---: | ---: | ---: |"]
    lines += [f"| {name} | {row['p50_ms']} | {row['ratio_to_pass_p50']}x | {row['first_call_s']} |"
              for name, row in result["kernels"].items()]
    (args.out / "exact-kernel.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
