"""The compiled exact kernel: max and argmax over a few examples of E . v, eight rows per pass.

Imported only by `edgemine.search.exact` on the first exact call: importing numba costs about a
second and a compiled function is loaded from numba's cache (next to this file, or in the user's
cache directory when this one is read-only), so importing edgemine never pays for it. Where
neither is writable (set NUMBA_CACHE_DIR), the kernel compiles in every process (~2 s on the first
exact call) and a warning says so.

Why compiled: for m = 10 examples numpy's GEMM is compute-bound on a tall, skinny product
(about 3x one memory pass at 1M x 512). Here eight rows are scored together against one example:
each example value loaded feeds eight independent FMA chains (LLVM vectorizes each over d), the
eight rows (16 KiB at d = 512) and the examples stay in L1/L2, and every row is read from memory
once for all examples. `nogil`, not `parallel`: numba's own threading layers do not tolerate
concurrent calls from several Python threads (the service mines on a thread pool), so the row
ranges are split over edgemine's own threads (exact.py), each range one call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

log = logging.getLogger("edgemine.search")

# reassoc lets LLVM vectorize the sums over d, contract fuses the multiply-adds (FMA). Left out on
# purpose: nnan/ninf (numba's fastmath=True), so that a NaN or infinite score is not assumed away.
FASTMATH = {"reassoc", "contract"}


def _compiled(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """njit with numba's on-disk cache, or without it (and a warning) where no cache dir is writable."""
    def wrap(function: Callable[..., Any]) -> Any:
        try:
            return njit(nogil=True, fastmath=FASTMATH, cache=True, **options)(function)
        except RuntimeError as err:  # numba: "cannot cache function ...: no locator available for file ..."
            if "no locator available" not in str(err):
                raise
            log.warning("numba cannot cache %s (%s): it compiles in every process; set NUMBA_CACHE_DIR "
                        "to a writable directory", function.__name__, err)
            return njit(nogil=True, fastmath=FASTMATH, cache=False, **options)(function)
    return wrap


@_compiled(inline="always")
def _keep(best: Any, arg: Any, row: int, score: Any, example: int) -> None:  # pragma: no cover - compiled
    if example == 0 or score > best[row]:
        best[row] = score
        arg[row] = example


@_compiled()
def scan_rows(emb: Any, vec: Any, start: int, stop: int, best: Any, arg: Any) -> None:  # pragma: no cover - compiled
    """Fill best[i], arg[i] = max_j, argmax_j of emb[i] . vec[j] for the rows start <= i < stop."""
    d = emb.shape[1]
    m = vec.shape[0]
    i = start
    while i + 8 <= stop:
        for e in range(m):
            s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.float32(0.0)
            for j in range(d):
                p = vec[e, j]
                s0 += emb[i, j] * p
                s1 += emb[i + 1, j] * p
                s2 += emb[i + 2, j] * p
                s3 += emb[i + 3, j] * p
                s4 += emb[i + 4, j] * p
                s5 += emb[i + 5, j] * p
                s6 += emb[i + 6, j] * p
                s7 += emb[i + 7, j] * p
            _keep(best, arg, i, s0, e)
            _keep(best, arg, i + 1, s1, e)
            _keep(best, arg, i + 2, s2, e)
            _keep(best, arg, i + 3, s3, e)
            _keep(best, arg, i + 4, s4, e)
            _keep(best, arg, i + 5, s5, e)
            _keep(best, arg, i + 6, s6, e)
            _keep(best, arg, i + 7, s7, e)
        i += 8
    while i < stop:  # the last < 8 rows of the range
        for e in range(m):
            s = np.float32(0.0)
            for j in range(d):
                s += emb[i, j] * vec[e, j]
            _keep(best, arg, i, s, e)
        i += 1
