"""The exact kernel (one blocked pass over the embeddings for all examples) against numpy brute force."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgemine.search import exact
from edgemine.service.scoring import Examples, score_rows


def _reference(E: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sims = np.asarray(E, np.float64) @ np.asarray(V, np.float64).T
    return sims.max(axis=1), sims.argmax(axis=1)


@pytest.mark.parametrize("m", [1, 3, 10, 50])
@pytest.mark.parametrize("parallel", [False, True])
def test_blocked_max_and_argmax_equal_numpy_brute_force(kit: Any, m: int, parallel: bool) -> None:
    """Rows not a multiple of the block, more rows than the parallel threshold: same max, same argmax."""
    n = exact.PARALLEL_MIN_ROWS + 1234
    E = kit.clustered(n, 24, clusters=40, seed=m)
    V = kit.clustered(m, 24, clusters=4, seed=100 + m)
    best, arg = exact.max_and_argmax(E, V, parallel=parallel)
    ref_best, ref_arg = _reference(E, V)
    np.testing.assert_allclose(best, ref_best, atol=1e-5)
    sims = np.asarray(E, np.float64) @ np.asarray(V, np.float64).T
    # argmax may differ only where two examples tie (within float32 rounding).
    chosen = sims[np.arange(n), arg]
    assert np.all(chosen >= ref_best - 1e-5)
    assert np.mean(arg == ref_arg) > 0.999


def test_blocks_cover_every_row_once_when_rows_are_fewer_than_a_block(kit: Any) -> None:
    E = kit.clustered(7, 512, clusters=3, seed=1)
    V = kit.clustered(2, 512, clusters=2, seed=2)
    best, arg = exact.max_and_argmax(E, V)
    ref_best, ref_arg = _reference(E, V)
    np.testing.assert_allclose(best, ref_best, atol=1e-5)
    assert arg.tolist() == ref_arg.tolist()


def test_float16_copy_is_scored_exactly_up_to_its_rounding(kit: Any) -> None:
    """A float16 copy gives the exact scores of the rounded rows (and ~1e-3 of the float32 ones)."""
    E = kit.clustered(20_000, 64, clusters=30, seed=3)
    V = kit.clustered(10, 64, clusters=5, seed=4)
    E16 = E.astype(np.float16)
    best, _ = exact.max_and_argmax(E16, V)
    np.testing.assert_allclose(best, _reference(E16.astype(np.float32), V)[0], atol=1e-5)
    assert np.max(np.abs(best - _reference(E, V)[0])) < 5e-3


def test_query_vectors_of_the_wrong_shape_are_refused(kit: Any) -> None:
    E = kit.clustered(100, 16, clusters=3, seed=5)
    with pytest.raises(ValueError, match="16"):
        exact.max_and_argmax(E, np.ones((2, 8), np.float32))
    with pytest.raises(ValueError, match="non-empty"):
        exact.max_and_argmax(E, np.ones((0, 16), np.float32))


def test_exact_max_strategy_scores_equal_numpy(kit: Any) -> None:
    """The miner's exact scoring ("max", with negatives) runs on the kernel and matches numpy."""
    n = exact.PARALLEL_MIN_ROWS + 10
    E = kit.clustered(n, 32, clusters=50, seed=6)
    P, N = E[:10], E[10:13]
    eligible = np.ones(n, bool)
    eligible[::3] = False
    got = score_rows(E, Examples(P, [f"p{i}" for i in range(10)]), Examples(N, ["n0", "n1", "n2"]),
                     "max", 0.5, eligible, depth=100)
    sp, sn = np.asarray(E, np.float64) @ P.T.astype(np.float64), np.asarray(E, np.float64) @ N.T.astype(np.float64)
    want = np.where(eligible, sp.max(axis=1) - 0.5 * sn.max(axis=1), -np.inf)
    np.testing.assert_allclose(got.score, want, atol=1e-5)
    np.testing.assert_allclose(got.nearest_sim, sp.max(axis=1), atol=1e-5)


def _openblas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    # numpy's own OpenBLAS (scipy, when imported by other tests, loads a second one the scope leaves alone)
    return [i["num_threads"] for i in threadpool_info()
            if "scipy_openblas" in i["filepath"] and "numpy" in i["filepath"]]


def test_single_threaded_blas_scopes_nest_and_restore_the_thread_count() -> None:
    """Inside any scope numpy's BLAS runs on one thread; the last scope to leave restores the count."""
    from edgemine.search.blas import _setter, single_threaded_blas

    if _setter() is None:
        pytest.skip("numpy's BLAS is not OpenBLAS >= 0.3.27 here: the scope changes nothing")
    before = _openblas_threads()
    with single_threaded_blas():
        assert _openblas_threads() == [1]
        with single_threaded_blas():
            assert _openblas_threads() == [1]
        assert _openblas_threads() == [1]
    assert _openblas_threads() == before
    E = np.ones((exact.PARALLEL_MIN_ROWS + 5, 8), np.float32)
    exact.max_and_argmax(E, np.ones((3, 8), np.float32))
    assert _openblas_threads() == before
