"""Produce the index of a new bundle version: reuse and update the previous one, or rebuild."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgemine.bundle.errors import BundleError
from edgemine.bundle.layout import FilteredTuning, IndexInfo
from edgemine.bundle.vectors import Embeddings
from edgemine.search.build import BuildStats, add_vectors, build_index, index_bytes, ivf_of
from edgemine.search.filtered import tune_filtered
from edgemine.search.plan import DEFAULT_MEMORY_BUDGET, IndexPlan, choose_index
from edgemine.search.searcher import Searcher
from edgemine.search.tune import held_out_rows, tune

# Retrain when more than this fraction of the index was added after training: the coarse
# quantizer then no longer reflects the data (recorded data drifts over time).
RETRAIN_AFTER_GROWTH = 0.5
TARGET_RECALL = 0.95
TUNE_K = 100
TUNE_QUERIES = 200  # rows kept out of the training sample to measure recall on

# Builds a (re)trained index: `build_index`'s signature (vectors, vec_ids, plan, seed, hold_out).
IndexBuilder = Callable[..., tuple[Any, BuildStats]]


def _incremental_ok(prev: IndexInfo | None, plan: IndexPlan, n: int, removed: int) -> bool:
    if prev is None or prev.factory != plan.factory or plan.exact:
        return False
    if plan.kind == "hnsw" and removed:
        return False  # HNSW cannot delete: documented rebuild
    return prev.trained_on > 0 and n <= prev.trained_on * (1 + RETRAIN_AFTER_GROWTH)


def plan_index(n: int, d: int, spec: str = "auto", memory_budget: int = DEFAULT_MEMORY_BUDGET) -> IndexPlan:
    """Return the index plan for n x d vectors; raises BundleError for an invalid factory string."""
    import faiss

    plan = choose_index(n, d, memory_budget, spec)
    try:
        faiss.index_factory(d, "Flat" if plan.exact else plan.factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise BundleError(f"invalid --index {spec!r} for dimension {d}: {exc}") from exc
    return plan


def can_extend(prev: IndexInfo | None, plan: IndexPlan, n: int) -> bool:
    """Return whether a format-2 publish may add to the previous index instead of rebuilding it.

    Removed rows are tombstoned (excluded at search time), so HNSW extends too; an IVF retrains
    (a full rebuild) once RETRAIN_AFTER_GROWTH of it was added since training.
    """
    if prev is None:
        return False
    if plan.exact:
        return prev.type == "flat"
    return prev.factory == plan.factory and prev.trained_on > 0 and n <= prev.trained_on * (1 + RETRAIN_AFTER_GROWTH)


def make_index(embeddings: Embeddings, vec_ids: npt.NDArray[np.int64], *, spec: str = "auto",
               memory_budget: int = DEFAULT_MEMORY_BUDGET, prev_info: IndexInfo | None = None,
               prev_index_path: Path | None = None, changed_vec_ids: npt.NDArray[np.int64] | None = None,
               removed_vec_ids: npt.NDArray[np.int64] | None = None, new_rows: npt.NDArray[np.int64] | None = None,
               seed: int = 0, build: IndexBuilder | None = None) -> tuple[Any, IndexInfo]:
    """Return the index for a version and its manifest info (tuned when (re)built).

    Args:
        embeddings: the version's unit vectors, in catalog row order.
        vec_ids: stable ids per row.
        spec: "auto", "flat", or a FAISS factory string.
        memory_budget: bytes for index + embeddings, used by "auto".
        prev_info / prev_index_path: the previous version's index, reused when compatible.
        changed_vec_ids: ids whose vectors changed (removed then re-added on reuse).
        removed_vec_ids: ids no longer in the version.
        new_rows: rows to add on reuse (new and changed images).
        seed: sampling seed for training and tuning.
        build: what trains and fills a new index (default `build_index`, this process); the
            tuning that follows is the same whichever builds it.
    """
    import faiss

    started = time.perf_counter()
    n, d = embeddings.shape
    plan = choose_index(n, d, memory_budget, spec)
    try:
        faiss.index_factory(d, "Flat" if plan.exact else plan.factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise BundleError(f"invalid --index {spec!r} for dimension {d}: {exc}") from exc
    removed = np.concatenate([a for a in (removed_vec_ids, changed_vec_ids) if a is not None] or
                             [np.empty(0, np.int64)]).astype(np.int64)
    if (prev_index_path is not None and new_rows is not None
            and _incremental_ok(prev_info, plan, n, len(removed)) and prev_index_path.is_file()):
        assert prev_info is not None
        index = faiss.read_index(str(prev_index_path))
        if len(removed):
            index.remove_ids(faiss.IDSelectorBatch(removed))
        add_vectors(index, np.asarray(embeddings[new_rows]), vec_ids[new_rows])
        info = prev_info.model_copy(update={
            "build_seconds": round(time.perf_counter() - started, 3),
            "bytes_per_vector": round(index_bytes(index) / max(n, 1), 2)})
        return index, info
    index, stats = (build or build_index)(embeddings, vec_ids, plan, seed=seed,
                                          hold_out=0 if plan.exact else TUNE_QUERIES)
    info = IndexInfo(type=plan.kind, factory="IDMap2,Flat" if plan.exact else plan.factory,
                     reason=plan.reason, nlist=plan.nlist or (ivf_of(index).nlist if ivf_of(index) else None),
                     train_size=stats.train_size, trained_on=n)
    if not plan.exact:
        searcher = Searcher(index, plan.kind, {}, vec_ids)
        result = tune(searcher, embeddings, k=min(TUNE_K, max(1, n - 1)), target=TARGET_RECALL,
                      n_queries=TUNE_QUERIES, exclude_rows=stats.train_rows, seed=seed + 1)
        info.search_params, info.held_out_queries = result.params, result.held_out_queries
        info.tuned_k, info.recall_at_k, info.target_recall = result.k, round(result.recall, 4), TARGET_RECALL
        info.p50_ms, info.p99_ms = round(result.p50_ms, 3), round(result.p99_ms, 3)
        levels = tune_filtered(searcher, embeddings, held_out_rows(n, stats.train_rows), k=result.k,
                               target=TARGET_RECALL, seed=seed + 2)
        info.filtered = [FilteredTuning(excluded=lv.excluded, params=lv.params, met_target=lv.met_target,
                                        recall={str(m): r for m, r in lv.recall.items()},
                                        by_examples={str(m): p for m, p in lv.by_examples.items()})
                         for lv in levels]
    info.build_seconds = round(time.perf_counter() - started, 3)
    info.bytes_per_vector = round(index_bytes(index) / max(n, 1), 2)
    return index, info
