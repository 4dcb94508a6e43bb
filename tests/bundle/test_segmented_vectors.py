"""SegmentedVectors: several stored matrices (float32/float16) minus tombstoned rows, read as one."""

from __future__ import annotations

import numpy as np
import pytest

from edgemine.bundle.vectors import SegmentedVectors
from edgemine.search.exact import max_and_argmax


def make(seed: int = 0) -> tuple[SegmentedVectors, np.ndarray]:
    """Three parts (one float16), rows 3 and 17 not served; returns the view and the dense truth."""
    rng = np.random.default_rng(seed)
    parts = [rng.standard_normal((n, 8)).astype(np.float32) for n in (10, 7, 12)]
    parts[1] = parts[1].astype(np.float16)
    dense = np.concatenate([p.astype(np.float32) for p in parts])
    live = np.array([r for r in range(len(dense)) if r not in (3, 17)], np.int64)
    return SegmentedVectors(parts, live), dense[live]


def test_rows_slices_masks_and_products_match_the_dense_matrix() -> None:
    view, dense = make()
    assert view.shape == dense.shape and len(view) == 27 and view.dtype == np.float32
    rows = np.array([0, 26, 9, 15, 3, 3])
    np.testing.assert_array_equal(view[rows], dense[rows])
    np.testing.assert_array_equal(view[5], dense[5])
    np.testing.assert_array_equal(view[-1], dense[-1])
    np.testing.assert_array_equal(view[4:20:3], dense[4:20:3])
    mask = np.arange(27) % 4 == 0
    np.testing.assert_array_equal(view[mask], dense[mask])
    q = np.random.default_rng(1).standard_normal((8, 3)).astype(np.float32)
    np.testing.assert_allclose(view @ q, dense @ q, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(view), dense)
    with pytest.raises(IndexError):
        view[np.array([27])]


def test_exact_kernel_over_segments_matches_the_dense_kernel() -> None:
    view, dense = make(2)
    for m in (1, 4):
        queries = np.random.default_rng(m).standard_normal((m, 8)).astype(np.float32)
        best, arg = max_and_argmax(view, queries)
        want_best, want_arg = max_and_argmax(dense, queries)
        np.testing.assert_allclose(best, want_best, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(arg, want_arg)
