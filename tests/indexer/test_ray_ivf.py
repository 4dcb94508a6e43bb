"""Large IVF indexes filled in parallel Ray tasks equal a single-process build (ids, lists, tuning)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgemine.indexer.ray_engine import RayEngine
from edgemine.indexer.ray_ivf import RAY_IVF_MIN_ROWS, RayIvfBuilder, build_ivf_sharded
from edgemine.models.vectors import l2_normalize
from edgemine.search.build import build_index
from edgemine.search.maintain import make_index
from edgemine.search.plan import IndexPlan, choose_index


def clustered(n: int, d: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((20, d))
    return l2_normalize((centers[rng.integers(0, 20, n)] + 0.3 * rng.standard_normal((n, d))).astype(np.float32))


def top_k(index: Any, queries: np.ndarray, k: int = 10, nprobe: int = 4) -> np.ndarray:
    import faiss

    faiss.extract_index_ivf(index).nprobe = nprobe
    return index.search(queries, k)[1]  # type: ignore[no-any-return]


@pytest.mark.parametrize("factory", ["IVF32,Flat", "IVF32,SQ8"])
def test_sharded_ivf_fill_returns_the_single_process_top_k(ray_local: Any, factory: str) -> None:
    vectors = clustered(3000)
    vec_ids = np.arange(3000, dtype=np.int64) * 3 + 7  # stable ids, not row numbers
    plan = IndexPlan(factory, "ivf", 32, "forced")
    single, _ = build_index(vectors, vec_ids, plan, seed=0, hold_out=200)
    sharded, stats = build_ivf_sharded(vectors, vec_ids, plan, ray=ray_local, shards=3, seed=0, hold_out=200)
    assert stats.extra["shards"] == 3 and sharded.ntotal == single.ntotal == 3000
    queries = vectors[::97]
    np.testing.assert_array_equal(top_k(sharded, queries), top_k(single, queries))


def test_make_index_with_the_ray_builder_tunes_like_a_single_process_build(ray_local: Any) -> None:
    vectors = clustered(4000, seed=1)
    vec_ids = np.arange(4000, dtype=np.int64)
    single, info = make_index(vectors, vec_ids, spec="IVF32,Flat")
    sharded, sharded_info = make_index(vectors, vec_ids, spec="IVF32,Flat", build=RayIvfBuilder(ivf_min_rows=0))
    assert sharded_info.search_params == info.search_params
    assert sharded_info.recall_at_k == info.recall_at_k and sharded_info.train_size == info.train_size
    np.testing.assert_array_equal(top_k(sharded, vectors[:50]), top_k(single, vectors[:50]))


def test_ray_builder_leaves_small_and_non_ivf_builds_in_process() -> None:
    # No Ray needed (and none started): below the threshold, or flat/HNSW, it is build_index.
    builder = RayEngine().index_builder()
    assert isinstance(builder, RayIvfBuilder) and builder.ivf_min_rows == RAY_IVF_MIN_ROWS
    vectors = clustered(600)
    for plan in (IndexPlan("IVF8,Flat", "ivf", 8, "forced"), choose_index(600, 32, 2**30, "HNSW16,Flat")):
        index, _ = builder(vectors, np.arange(600, dtype=np.int64), plan)
        assert index.ntotal == 600
