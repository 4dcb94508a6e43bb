"""The one place vectors are normalized: every embedding in edgemine passes through here."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


def l2_normalize(vectors: npt.ArrayLike) -> Vectors:
    """Return float32 rows scaled to unit L2 norm; all-zero rows are rejected."""
    arr = np.array(vectors, dtype=np.float32, copy=True, ndmin=2)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D array of vectors, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("vectors contain NaN or infinite values")
    # float64 norms: float32 squares underflow for tiny (but valid) vectors.
    norms = np.linalg.norm(arr.astype(np.float64), axis=1, keepdims=True)
    if np.any(norms == 0):
        bad = np.flatnonzero(norms[:, 0] == 0)[:5].tolist()
        raise ValueError(f"cannot normalize all-zero vectors (rows {bad})")
    out: Vectors = (arr / norms).astype(np.float32)
    return out
