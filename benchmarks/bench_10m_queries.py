"""Query sets, exact ground truth and Miner-like timed queries for bench_10m.py."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt
from synthetic import FRAMES_PER_SEQUENCE

from edgemine.search.searcher import Searcher


def query_sets(n: int, train_rows: npt.NDArray[np.int64], count: int, examples: int,
               seed: int) -> list[npt.NDArray[np.int64]]:
    """Return `count` example-row sets: frames of one random sequence, none in the training sample."""
    rng = np.random.default_rng(seed)
    in_train = set(train_rows.tolist())
    n_seq = max(1, n // FRAMES_PER_SEQUENCE)
    sets: list[npt.NDArray[np.int64]] = []
    while len(sets) < count:
        seq = int(rng.integers(n_seq))
        frames = np.sort(rng.choice(FRAMES_PER_SEQUENCE, examples, replace=False))
        rows = np.minimum(n - 1, seq * FRAMES_PER_SEQUENCE + frames).astype(np.int64)
        if not in_train.intersection(rows.tolist()):
            sets.append(rows)
    return sets


def excluded_mask(n: int, fraction: float, seed: int) -> npt.NDArray[np.bool_]:
    """Return the rows excluded at this level (a seeded random `fraction` of them)."""
    if fraction == 0:
        return np.zeros(n, bool)
    return np.random.default_rng([seed, int(fraction * 1000)]).random(n) < fraction


def exact_truth(emb: Any, sets: list[npt.NDArray[np.int64]], masks: list[npt.NDArray[np.bool_]],
                k: int, block: int = 65_536) -> list[list[npt.NDArray[np.int64]]]:
    """Exact top-k rows (max cosine over each set's examples, examples and masked rows excluded).

    One pass over the (float16) embeddings, every set and every mask at once; [mask][set] -> rows.
    """
    all_rows = np.unique(np.concatenate(sets))
    examples = np.concatenate([emb.read(int(r), int(r) + 1) for r in all_rows])
    cols = [np.searchsorted(all_rows, s) for s in sets]
    best = [[(np.full(0, -np.inf, np.float32), np.empty(0, np.int64)) for _ in sets] for _ in masks]
    for start in range(0, len(emb), block):
        sims = emb.read(start, start + block) @ examples.T
        rows = np.arange(start, start + len(sims))
        for q, (s_rows, c) in enumerate(zip(sets, cols, strict=True)):
            score = sims[:, c].max(axis=1)
            own = s_rows[(s_rows >= start) & (s_rows < start + len(sims))] - start
            score[own] = -np.inf
            for m, mask in enumerate(masks):
                sc = np.where(mask[start:start + len(sims)], -np.inf, score)
                kept_s, kept_r = best[m][q]
                if len(kept_s) >= k and sc.max() <= kept_s.min():
                    continue
                s = np.concatenate([kept_s, sc])
                r = np.concatenate([kept_r, rows])
                top = np.argpartition(-s, min(k, len(s) - 1))[:k]
                best[m][q] = (s[top], r[top])
    return [[r for _s, r in level] for level in best]


class ExactFallback(RuntimeError):
    """The searcher deferred to exact search (no ANN measurement possible at these settings)."""


def mine_rows(searcher: Searcher, emb: Any, rows: npt.NDArray[np.int64], eligible: npt.NDArray[np.bool_],
              count: int, k: int) -> npt.NDArray[np.int64]:
    """Top-k eligible rows for the examples `rows`, as Miner.mine finds them with the "max" strategy."""
    examples = np.asarray(emb[rows], np.float32)
    cands = searcher.candidates(examples, k, eligible, count, keep=k)
    if cands is None:  # the miner would search the eligible rows exactly
        raise ExactFallback("the searcher deferred to exact search: not an ANN measurement")
    cands = np.sort(cands)
    scores = (np.asarray(emb[cands], np.float32) @ examples.T).max(axis=1)
    return cands[np.argsort(-scores, kind="stable")[:k]]


def run_sets(searcher: Searcher, emb: Any, sets: list[npt.NDArray[np.int64]], truth: list[npt.NDArray[np.int64]],
             excluded: npt.NDArray[np.bool_], k: int) -> dict[str, Any]:
    """Return recall@k and latency over query sets (wall and this thread's CPU time)."""
    recalls, wall, cpu = [], [], []
    for rows, gt in zip(sets, truth, strict=True):
        eligible = ~excluded
        eligible[rows] = False
        count = int(eligible.sum())
        t0, c0 = time.perf_counter(), time.thread_time()
        got = mine_rows(searcher, emb, rows, eligible, count, k)
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.thread_time() - c0) * 1e3)
        recalls.append(len(np.intersect1d(got, gt)) / len(gt))
    return {"recall": round(float(np.mean(recalls)), 4), "min_recall": round(float(np.min(recalls)), 3),
            "p50_ms": round(float(np.percentile(wall, 50)), 3), "p99_ms": round(float(np.percentile(wall, 99)), 3),
            "cpu_p50_ms": round(float(np.percentile(cpu, 50)), 3), "queries": len(sets)}
