"""Tune search parameters at build time to a target recall, and measure what they cost.

Queries are stored vectors that were not in the training sample (the build leaves enough rows
out), each excluded from its own results, as in mining (an example never comes back as its own
candidate). Only an index too small to leave any row out is tuned on training rows, and then
records 0 held-out queries. Ground truth is exact inner-product search over the stored float32
embeddings.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from edgemine.bundle.vectors import Embeddings
from edgemine.models.vectors import Vectors
from edgemine.search.searcher import MAX_EF, MIN_DEPTH, Searcher

# Re-scoring gathers rows at random, a byte of it dearer than a byte of a streamed list scan.
GATHER_WEIGHT = 2.0

IVF_GRID = [4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]
HNSW_GRID = [64, 96, 128, 192, 256, 384, 512, 768, 1024]
RERANK_GRID = [1.5, 3.0, 6.0, 12.0]


@dataclass
class TuneResult:
    """Chosen parameters and what they measured."""

    params: dict[str, float] = field(default_factory=dict)
    recall: float = 1.0
    k: int = 100
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    queries: int = 0
    met_target: bool = True
    held_out_queries: int = 0  # queries outside `exclude_rows` (all of them unless none were left)


def exact_topk(embeddings: Embeddings, queries: Vectors, qrows: npt.NDArray[np.int64], k: int) -> npt.NDArray[np.int64]:
    """Return exact top-k rows per query, excluding the query's own row."""
    sims = np.asarray(embeddings @ queries.T, np.float32)
    sims[qrows, np.arange(len(qrows))] = -np.inf
    top = np.argpartition(-sims, k, axis=0)[:k].T
    return top


def search_one(searcher: Searcher, embeddings: Embeddings, query: Vectors, own_row: int, k: int,
               eligible: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Search one query as the miner does: candidates, then exact re-scoring of them."""
    cands = searcher.candidates(query[None, :], k + 1, eligible)
    if cands is None:
        cands = np.flatnonzero(eligible)
    cands = cands[cands != own_row]
    scores = np.asarray(embeddings[np.sort(cands)] @ query, np.float32)
    order = np.argsort(-scores)[:k]
    return np.sort(cands)[order]


def measure(searcher: Searcher, embeddings: Embeddings, queries: Vectors, qrows: npt.NDArray[np.int64],
            truth: npt.NDArray[np.int64], k: int) -> tuple[float, list[float]]:
    """Return mean recall@k and per-query latencies (ms) with everything eligible."""
    eligible = np.ones(searcher.n, bool)
    recalls, times = [], []
    for q, row, gt in zip(queries, qrows, truth, strict=True):
        start = time.perf_counter()
        got = search_one(searcher, embeddings, q, int(row), k, eligible)
        times.append((time.perf_counter() - start) * 1e3)
        recalls.append(len(np.intersect1d(got, gt)) / k)
    return float(np.mean(recalls)), times


def held_out_rows(n: int, exclude_rows: npt.NDArray[np.int64] | None) -> npt.NDArray[np.int64]:
    """Return the rows outside `exclude_rows` (the training sample), or every row if none is left."""
    pool = np.setdiff1d(np.arange(n), exclude_rows if exclude_rows is not None else [])
    return pool if len(pool) else np.arange(n)


def tune(searcher: Searcher, embeddings: Embeddings, *, k: int = 100, target: float = 0.95,
         n_queries: int = 200, exclude_rows: npt.NDArray[np.int64] | None = None, seed: int = 1) -> TuneResult:
    """Pick the cheapest parameters reaching `target` recall@k (or the best found, flagged).

    Queries are drawn from the rows not in `exclude_rows` (the training sample); only when it
    covers every row are they drawn from it, and `held_out_queries` is then 0.
    """
    if searcher.exact:
        return TuneResult(k=k)
    rng = np.random.default_rng(seed)
    pool = held_out_rows(searcher.n, exclude_rows)
    held_out = exclude_rows is None or len(np.unique(exclude_rows)) < searcher.n
    qrows = np.sort(rng.choice(pool, min(n_queries, len(pool)), replace=False))
    queries = np.ascontiguousarray(embeddings[qrows], np.float32)
    k = min(k, searcher.n - 1)
    truth = exact_topk(embeddings, queries, qrows, k)
    grid = IVF_GRID if searcher.kind == "ivf" else HNSW_GRID
    key = "nprobe" if searcher.kind == "ivf" else "efSearch"
    nlist = searcher.ivf.nlist if searcher.ivf is not None else None
    if nlist is not None:
        # Beyond nlist/2 the searcher goes exact; a tiny nlist (< 8) still gets one setting.
        grid = [v for v in grid if v <= nlist // 2] or [max(1, nlist // 2)]
    best: TuneResult | None = None
    d = int(queries.shape[1])
    for rerank in RERANK_GRID:
        for value in grid:
            searcher.params = {key: float(value), "rerank_factor": rerank}
            recall, times = measure(searcher, embeddings, queries, qrows, truth, k)
            result = TuneResult(dict(searcher.params), recall, k, float(np.percentile(times, 50)),
                                float(np.percentile(times, 99)), len(qrows), recall >= target,
                                len(qrows) if held_out else 0)
            if best is None or _better(result, best, searcher, k, d):
                best = result
            if recall >= target:
                break
    assert best is not None
    searcher.params = dict(best.params)
    return best


def work_bytes(searcher: Searcher, params: dict[str, float], k: int, d: int) -> float:
    """Estimate the bytes one query reads under `params`: index codes scanned plus rows re-scored.

    Tuning compares settings by this, not by measured time: timings are noise on a shared
    machine, and a choice by them made two builds of the same data (CI's and a local one) tune
    differently.
    """
    faiss: Any = importlib.import_module("faiss")
    fetch = max(k + 1, MIN_DEPTH) * params.get("rerank_factor", 1.0)
    rescored = fetch * d * 4 * GATHER_WEIGHT
    if searcher.ivf is not None:
        ivf = searcher.ivf
        return float(params["nprobe"] / ivf.nlist * ivf.ntotal * ivf.code_size + rescored)
    index = faiss.downcast_index(searcher.index)
    inner = faiss.downcast_index(index.index) if hasattr(index, "index") else index
    graph = getattr(inner, "hnsw", None)
    degree = graph.nb_neighbors(0) if graph is not None else 32
    storage = faiss.downcast_index(inner.storage) if hasattr(inner, "storage") else inner
    code = float(getattr(storage, "code_size", d * 4))
    ef = min(MAX_EF, max(fetch, params.get("efSearch", 0.0)))
    return float(ef * degree * code + rescored)


def _better(new: TuneResult, old: TuneResult, searcher: Searcher, k: int, d: int) -> bool:
    if new.met_target != old.met_target:
        return new.met_target
    if new.met_target:  # the least work, a tie to the first found (smaller pool)
        return work_bytes(searcher, new.params, k, d) < work_bytes(searcher, old.params, k, d)
    return new.recall > old.recall
