"""The exact kernel (one blocked pass over the embeddings for all examples) against numpy brute force."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
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


# --- the compiled kernel (float32, m >= 2): search/exact_kernel.py, numba ---------------------------------------


def _assert_matches_reference(E: np.ndarray, V: np.ndarray, best: np.ndarray, arg: np.ndarray) -> None:
    """Scores within 1e-5 of float64; argmax equal except where the top two examples are within 1e-5."""
    sims = np.asarray(E, np.float64) @ np.asarray(V, np.float64).T
    ref_best, ref_arg = sims.max(axis=1), sims.argmax(axis=1)
    np.testing.assert_allclose(best, ref_best, rtol=0, atol=1e-5)
    top2 = np.sort(sims, axis=1)[:, -2:] if sims.shape[1] > 1 else np.c_[np.full(len(sims), -np.inf), sims]
    clear = top2[:, 1] - top2[:, 0] > 1e-5
    assert np.array_equal(arg[clear], ref_arg[clear])
    # where it is not clear, the chosen example still scores the maximum (within the same 1e-5)
    assert np.all(sims[np.arange(len(sims)), arg] >= ref_best - 1e-5)


@pytest.mark.parametrize("m", [2, 10, 50])
@pytest.mark.parametrize("parallel", [False, True])
def test_compiled_kernel_equals_float64_reference_at_clip_dimension(kit: Any, m: int, parallel: bool) -> None:
    """d = 512, rows neither a multiple of the kernel's 8-row step nor of a range: max within 1e-5, same argmax."""
    n = exact.PARALLEL_MIN_ROWS + 13
    E = kit.clustered(n, 512, clusters=60, seed=20 + m)
    V = kit.clustered(m, 512, clusters=5, seed=40 + m)
    best, arg = exact.max_and_argmax(E, V, parallel=parallel)
    assert best.dtype == np.float32 and arg.dtype == np.int64
    _assert_matches_reference(E, V, best, arg)


def test_compiled_kernel_scores_a_read_only_memory_map(kit: Any, tmp_path: Any) -> None:
    """Served embeddings are a read-only memory map (another compiled signature): same results."""
    E = kit.clustered(1003, 96, clusters=20, seed=7)
    V = kit.clustered(4, 96, clusters=3, seed=8)
    np.save(tmp_path / "e.npy", E)
    mapped = np.load(tmp_path / "e.npy", mmap_mode="r")
    best, arg = exact.max_and_argmax(mapped, V)
    _assert_matches_reference(E, V, best, arg)


def test_row_ranges_split_over_threads_give_the_same_result_as_one_call(kit: Any) -> None:
    """Aligned ranges (as max_and_argmax splits them): bit-identical to one call; any split: within rounding."""
    from edgemine.search.exact_kernel import scan_rows

    n = 20_011
    E = kit.clustered(n, 128, clusters=30, seed=9)
    V = kit.clustered(10, 128, clusters=4, seed=10)
    one_best, one_arg = np.empty(n, np.float32), np.empty(n, np.int64)
    scan_rows(E, V, 0, n, one_best, one_arg)
    _assert_matches_reference(E, V, one_best, one_arg)
    for align in (exact.KERNEL_ALIGN, 1):
        best, arg = np.full(n, np.nan, np.float32), np.full(n, -1, np.int64)
        exact._scan_parallel(n, align, lambda start, stop, best=best, arg=arg: scan_rows(E, V, start, stop, best, arg),
                             exact.KERNEL_PIECES)
        assert not np.isnan(best).any() and (arg >= 0).all()  # every row written
        if align == exact.KERNEL_ALIGN:
            assert np.array_equal(best, one_best) and np.array_equal(arg, one_arg)
        else:  # a range may start mid-group: those rows are summed by the one-row loop
            _assert_matches_reference(E, V, best, arg)


def test_concurrent_exact_calls_from_four_python_threads_are_each_correct(kit: Any) -> None:
    """The service mines on a thread pool: four threads at once, each call split over edgemine's exact pool."""
    from concurrent.futures import ThreadPoolExecutor  # the service's kind of pool

    n = exact.PARALLEL_MIN_ROWS + 777
    E = kit.clustered(n, 64, clusters=40, seed=11)
    queries = [kit.clustered(m, 64, clusters=3, seed=50 + m) for m in (2, 5, 10, 17)]

    def run(V: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        return [exact.max_and_argmax(E, V) for _ in range(3)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, queries))
    for V, rounds in zip(queries, results, strict=True):
        for best, arg in rounds:
            _assert_matches_reference(E, V, best, arg)
            assert np.array_equal(best, rounds[0][0]) and np.array_equal(arg, rounds[0][1])


def test_numba_is_imported_by_the_first_float32_exact_call_not_by_importing_edgemine() -> None:
    """numba costs ~1 s to import: importing edgemine (CLI, service) must not pay it; the exact kernel does."""
    import textwrap

    code = textwrap.dedent("""
        import sys
        import numpy as np
        import edgemine.bundle, edgemine.models, edgemine.search, edgemine.indexer, edgemine.cli.main
        import edgemine.service.app
        from edgemine.search import exact
        print("after import:", "numba" in sys.modules)
        exact.max_and_argmax(np.ones((10, 4), np.float16), np.ones((3, 4), np.float32))
        exact.max_and_argmax(np.ones((10, 4), np.float32), np.ones((1, 4), np.float32))
        print("after float16 and one example:", "numba" in sys.modules)
        exact.max_and_argmax(np.ones((10, 4), np.float32), np.ones((3, 4), np.float32))
        print("after float32:", "numba" in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[:3] == ["after import: False", "after float16 and one example: False",
                                             "after float32: True"], result.stdout


_RO_CHECK = """
import logging, sys
import numpy as np
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(levelname)s %(message)s")
from edgemine.search import exact
assert exact.__file__.startswith(sys.argv[1]), exact.__file__
E = np.random.default_rng(0).standard_normal((300, 32)).astype(np.float32)
best, arg = exact.max_and_argmax(E, E[:3])
ref = E.astype(np.float64) @ E[:3].T.astype(np.float64)
print("correct:", bool(np.abs(best - ref.max(axis=1)).max() < 1e-5 and (arg == ref.argmax(axis=1)).all()))
"""


def _run_read_only_install(tmp_path: Path, cache_home: Path) -> subprocess.CompletedProcess[str]:
    """Copy the package to a directory mounted read-only (a private mount namespace) and score there."""
    install = tmp_path / "site"
    shutil.copytree(Path(exact.__file__).parents[1], install / "edgemine",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "PYTHONPATH"))}
    env.update(PYTHONPATH=str(install), XDG_CACHE_HOME=str(cache_home), HOME=str(install),
               PYTHONDONTWRITEBYTECODE="1")
    mount = f"mount --bind {install} {install} && mount -o remount,ro,bind {install}"
    script = f"{mount} && exec {shlex.quote(sys.executable)} -c {shlex.quote(_RO_CHECK)} {install}"
    return subprocess.run(["unshare", "--mount", "--", "sh", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="a read-only bind mount needs root and unshare (CI runs as root)")
def test_read_only_install_caches_the_kernel_in_the_user_cache_dir_or_compiles_with_a_warning(tmp_path: Path) -> None:
    """numba's cache next to a read-only install falls back to the user's cache; with neither, a warning."""
    writable = _run_read_only_install(tmp_path / "a", tmp_path / "cache")
    assert writable.returncode == 0, writable.stderr[-3000:]
    assert "correct: True" in writable.stdout and "WARNING" not in writable.stdout, writable.stdout
    assert list((tmp_path / "cache" / "numba").rglob("exact_kernel.scan_rows-*.nbi"))
    nowhere = _run_read_only_install(tmp_path / "b", tmp_path / "b" / "site" / "cache")  # inside the mount
    assert nowhere.returncode == 0, nowhere.stderr[-3000:]
    assert "correct: True" in nowhere.stdout and "NUMBA_CACHE_DIR" in nowhere.stdout, nowhere.stdout


def test_warm_up_compiles_the_kernel_for_writable_and_read_only_rows() -> None:
    """The service warms the kernel at startup, for in-memory and mapped (read-only) rows alike."""
    from edgemine.search import exact
    from edgemine.search.exact_kernel import scan_rows

    exact.warm_up()
    readonly = {sig[0].mutable for sig in scan_rows.signatures}
    assert readonly == {True, False}
