"""Run numpy's BLAS single-threaded while the hot path's small matrix products run.

The hot path's matrix products are small (10 examples x 4096 centroids, a few thousand candidate
rows) or already split over the cores by our own threads (search/exact.py). OpenBLAS would still
hand each of them to a second thread and wait for it: on a busy machine that wait costs 10-100x
the product itself (profiled: 105 ms of a 200 ms query in a 5 MFLOP centroid product).

OpenBLAS's thread count is process-wide (`openblas_set_num_threads_local` turned out to set the
global count too), so the scope is counted: the first thread to enter sets one BLAS thread, the
last to leave restores the previous count. A large product elsewhere in the process that runs
meanwhile (a "mean" query's pass) runs on one BLAS thread; results are the same. Where numpy's
BLAS is not OpenBLAS >= 0.3.27 these helpers change nothing.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import numpy as np


@cache
def _setter() -> Any:
    """Return OpenBLAS's `openblas_set_num_threads_local` from numpy's bundled library, or None."""
    pattern = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "libscipy_openblas*.so")
    for path in sorted(glob.glob(pattern)):
        func = getattr(ctypes.CDLL(path), "openblas_set_num_threads_local", None)
        if func is not None:
            func.restype = ctypes.c_int
            func.argtypes = [ctypes.c_int]
            return func
    return None


def set_blas_threads(count: int) -> int | None:
    """Set numpy's OpenBLAS thread count (process-wide); return the previous one (None: not OpenBLAS)."""
    func = _setter()
    return None if func is None else int(func(count))


_lock = threading.Lock()
_depth = 0
_saved: int | None = None


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Within the block (and while any thread is in one), numpy's BLAS uses one thread per call."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = set_blas_threads(1)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                set_blas_threads(_saved)
