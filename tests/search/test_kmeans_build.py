"""Spherical k-means, training on a random sample, and stable ids through build_index."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgemine.models.vectors import l2_normalize
from edgemine.search import build as build_mod
from edgemine.search.build import build_index, train_sample_size
from edgemine.search.kmeans import assign, spherical_kmeans
from edgemine.search.plan import choose_index
from edgemine.search.searcher import Searcher


def test_centroids_are_unit_and_seeded(kit: Any) -> None:
    X = kit.clustered(3000, d=24, clusters=10, seed=1)
    a = spherical_kmeans(X, 16, seed=3)
    b = spherical_kmeans(X, 16, seed=3)
    c = spherical_kmeans(X, 16, seed=4)
    assert a.shape == (16, 24) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_centroids_find_the_clusters(kit: Any) -> None:
    rng = np.random.default_rng(5)
    centres = l2_normalize(rng.standard_normal((8, 32)))
    X = l2_normalize(centres[rng.integers(0, 8, 4000)] + 0.05 * rng.standard_normal((4000, 32)))
    cents = spherical_kmeans(X, 32, seed=0)
    # Every true cluster has a centroid on it; every centroid sits on some cluster.
    sims = centres @ cents.T
    assert sims.max(axis=1).min() > 0.97
    assert sims.max(axis=0).min() > 0.9


def test_empty_clusters_are_reseeded() -> None:
    # Three distinct points, many copies: initial centroids repeat, so some clusters start empty.
    rng = np.random.default_rng(0)
    points = l2_normalize(rng.standard_normal((3, 8)))
    sample = np.repeat(points, [200, 50, 10], axis=0)
    cents = spherical_kmeans(sample, 6, iterations=8, seed=2)
    assert cents.shape == (6, 8) and np.all(np.isfinite(cents))
    np.testing.assert_allclose(np.linalg.norm(cents, axis=1), 1.0, atol=1e-5)
    # Each point ends up with a centroid on it (a re-seeded centroid is a sample row).
    assert (points @ cents.T).max(axis=1).min() > 0.9999


def test_too_few_training_vectors() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        spherical_kmeans(np.eye(8, dtype=np.float32), 16)


def test_assign_returns_the_best_lists(kit: Any) -> None:
    X = kit.clustered(500, d=16, clusters=5, seed=2)
    cents = spherical_kmeans(X, 12, seed=0)
    ct = np.ascontiguousarray(cents.T)
    ids, sims = assign(X, ct, nprobe=3)
    full = X @ cents.T
    best3 = np.sort(np.argsort(-full, axis=1)[:, :3], axis=1)
    np.testing.assert_array_equal(np.sort(ids, axis=1), best3)
    np.testing.assert_allclose(sims, np.take_along_axis(full, ids, axis=1), atol=1e-5)
    np.testing.assert_array_equal(assign(X, ct)[0][:, 0], full.argmax(axis=1))


def test_training_uses_a_random_sample_not_the_first_rows(kit: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Recorded data is ordered in time: train on the first rows and the last ones have no lists."""
    rng = np.random.default_rng(9)
    n, d = 8000, 16
    a, b = l2_normalize(rng.standard_normal((2, d)))
    first = l2_normalize(a + 0.15 * rng.standard_normal((n // 2, d)))
    second = l2_normalize(b + 0.15 * rng.standard_normal((n // 2, d)))
    X = np.concatenate([first, second])
    sampled: list[np.ndarray] = []
    real_kmeans = build_mod.spherical_kmeans

    def spy(sample: np.ndarray, k: int, **kw: Any) -> np.ndarray:
        sampled.append(np.array(sample))
        return real_kmeans(sample, k, **kw)

    monkeypatch.setattr(build_mod, "train_sample_size", lambda n, nlist, hold_out=0: 1000)
    monkeypatch.setattr(build_mod, "spherical_kmeans", spy)
    index, stats = build_index(X, np.arange(n, dtype=np.int64), choose_index(n, d, forced="IVF16,SQ8"))
    assert stats.train_size == 1000 and len(sampled) == 1 and len(sampled[0]) == 1000
    from_first = int(((sampled[0] @ a) > (sampled[0] @ b)).sum())
    assert 350 < from_first < 650  # a random sample of both halves, not the first 1000 rows
    cents = index.quantizer.reconstruct_n(0, 16)
    assert (cents @ a).max() > 0.9 and (cents @ b).max() > 0.9
    on_a = int(((cents @ a) > (cents @ b)).sum())
    assert 3 <= on_a <= 13
    # The SQ8 codec was trained on both halves too: vectors of either half find themselves.
    index.nprobe = 4
    for start in (0, n // 2):
        rows = np.arange(start, start + n // 2, 100)
        _, labels = index.search(X[rows], 1)
        assert np.mean(labels[:, 0] == rows) >= 0.95


def test_train_sample_size() -> None:
    assert train_sample_size(10_000, 64) == 10_000
    assert train_sample_size(10**6, 64) == 20_000
    assert train_sample_size(10**7, 4096) == 64 * 4096
    assert train_sample_size(500_000, None) == 100_000
    # leaving rows out for tuning queries, but never below one row per list nor 256 rows
    assert train_sample_size(10_000, 64, hold_out=200) == 9_800
    assert train_sample_size(60_000, 1024, hold_out=200) == 59_800
    assert train_sample_size(10**6, 64, hold_out=200) == 20_000
    assert train_sample_size(300, 8, hold_out=200) == 256
    assert train_sample_size(5_000, 4096, hold_out=2_000) == 4096


@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat", "IVF16,SQ8", "IVF16,PQ8x4fs", "IVF16_HNSW16,SQ8",
                                     "HNSW16,Flat"])
def test_build_keeps_stable_ids(kit: Any, factory: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Search returns vec_ids (not row numbers) when ids are not 0..n-1, across add chunks."""
    monkeypatch.setattr(build_mod, "ADD_CHUNK", 700)
    n, d = 3000, 16
    X = kit.clustered(n, d=d, clusters=30, spread=0.05, seed=4)
    vec_ids = (np.arange(n, dtype=np.int64) * 7 + 1000)[np.random.default_rng(0).permutation(n)]
    plan = choose_index(n, d, forced=factory)
    index, stats = build_index(X, vec_ids, plan, seed=1)
    assert index.ntotal == n
    np.testing.assert_array_equal(kit.index_ids(index), np.sort(vec_ids))
    if hasattr(index, "nprobe"):
        index.nprobe = 16
    queries = np.arange(0, n, 50)
    _, labels = index.search(X[queries], 5)
    assert np.isin(labels, vec_ids).all()
    # A vector's nearest neighbour is itself (4-bit PQ only gets near it: the id must still map
    # to a row close to the query, which a scrambled id would not).
    row_of = {int(v): r for r, v in enumerate(vec_ids)}
    top_rows = np.array([row_of[int(v)] for v in labels[:, 0]])
    if "PQ" in factory:
        assert np.mean(np.sum(X[top_rows] * X[queries], axis=1)) > 0.95
    else:
        np.testing.assert_array_equal(labels[:, 0], vec_ids[queries])
    assert stats.train_size == (0 if plan.exact or plan.kind == "hnsw" else n)
    # The searcher maps ids back to rows.
    if not plan.exact:
        searcher = Searcher(index, plan.kind, {"nprobe": 4, "efSearch": 64, "rerank_factor": 12.0}, vec_ids)
        assert not searcher.identity_ids
        eligible = np.ones(n, bool)
        eligible[queries] = False
        rows = searcher.candidates(X[queries[:1]], 10, eligible)
        assert rows is not None and len(rows) >= 10 and eligible[rows].all()
        best = rows[np.argmax(X[rows] @ X[queries[0]])]
        truth = np.flatnonzero(eligible)[np.argmax(X[eligible] @ X[queries[0]])]
        assert best == truth
