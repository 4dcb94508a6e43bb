"""Score every row of a bundle against several examples (exact search, one GEMM per query).

Let E be the stored unit vectors, P the positive examples and N the negatives (unit rows).
With S = E P^T and T = E N^T (cosine similarities) and w the negative weight:

- mean: score = E . mean(P)/|mean(P)| - w * E . mean(N)/|mean(N)|
- max:  score = max_j S_ij - w * max_k T_ik
- rrf:  score = sum_j 1/(60 + r_j(i)) - w * sum_k 1/(60 + r'_k(i)), where r_j(i) is the 1-based
        rank of row i among *eligible* rows by similarity to example j, counted only within the
        top `depth` rows of each example (rows outside every list get 0 from it).
- probe: score = E . v + b, the logit of a logistic regression fitted to P vs N + background
        (service/probe.py); w does not apply (the negatives are training data).

The example a row is "closest to" is argmax_j S_ij whatever the strategy.

S and T are never held whole: for max and nearest, rows go in cache-sized blocks, all examples
at once, in one pass over E (search/exact.py); for rrf, examples go in blocks of at most
`limits.SCORE_BLOCK_CELLS` similarities. Memory is O(rows x block), not O(rows x examples).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from edgemine.bundle.vectors import Embeddings
from edgemine.models.vectors import Vectors, l2_normalize
from edgemine.search.exact import max_and_argmax
from edgemine.service import limits
from edgemine.service.probe import Probe

RRF_K = 60.0
FloatArray = npt.NDArray[np.float32]
# A mean shorter than this (the mean of unit vectors is at most 1 long) has no direction left:
# the examples cancel out, e.g. an image and its negation, and normalizing it would amplify noise.
MIN_MEAN_NORM = 1e-6


class CancellingExamples(ValueError):
    """The examples of a "mean" query average to (almost) the zero vector."""


@dataclass(frozen=True)
class Examples:
    """Query examples as unit vectors with a label each (image id, "text:...", "upload:...")."""

    vectors: Vectors
    labels: list[str]

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.vectors):
            raise ValueError("one label per example vector")


@dataclass
class Scores:
    """Per-row scores (-inf where not eligible) and the nearest positive example per row."""

    score: FloatArray
    nearest: npt.NDArray[np.int64]
    nearest_sim: FloatArray


def similarities(embeddings: Embeddings, vectors: Vectors) -> FloatArray:
    """Return E @ V^T as float32 (all examples in one matrix product; use for few columns)."""
    if len(vectors) == 0:
        return np.empty((len(embeddings), 0), np.float32)
    return np.asarray(embeddings @ np.ascontiguousarray(vectors, np.float32).T, np.float32)


def mean_direction(vectors: Vectors, role: str) -> Vectors:
    """Return the normalized mean of `vectors` as a 1 x d row; CancellingExamples if it vanishes."""
    mean = np.asarray(vectors, np.float64).mean(axis=0, keepdims=True)
    norm = float(np.linalg.norm(mean))
    if not norm >= MIN_MEAN_NORM:
        raise CancellingExamples(
            f"the {len(vectors)} {role} examples cancel out: their mean has length {norm:.2g}, so "
            "strategy 'mean' has no direction to search; use strategy 'max' or 'rrf', or other examples")
    return l2_normalize(mean)


def _max_and_argmax(embeddings: Embeddings, vectors: Vectors) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Return max_j and argmax_j of E V^T per row: one blocked pass over E (search/exact.py)."""
    return max_and_argmax(embeddings, vectors, max_cells=limits.SCORE_BLOCK_CELLS)


def _rrf(embeddings: Embeddings, vectors: Vectors, eligible: npt.NDArray[np.bool_], depth: int) -> FloatArray:
    out = np.zeros(len(embeddings), np.float32)
    rows = np.flatnonzero(eligible)
    depth = min(depth, len(rows))
    if depth == 0:
        return out
    # Examples in blocks: each block's similarities are rows x block cells, never rows x examples.
    step = max(1, limits.SCORE_BLOCK_CELLS // max(len(embeddings), 1))
    for first in range(0, len(vectors), step):
        sims = similarities(embeddings, vectors[first:first + step])
        for j in range(sims.shape[1]):
            col = sims[rows, j]
            top = np.argpartition(-col, depth - 1)[:depth] if depth < len(rows) else np.arange(len(rows))
            # Stable order: by similarity, then by row, so equal scores rank the same every time.
            order = top[np.lexsort((rows[top], -col[top]))]
            out[rows[order]] += 1.0 / (RRF_K + np.arange(1, len(order) + 1, dtype=np.float32))
        del sims
    return out


def score_rows(embeddings: Embeddings, positives: Examples, negatives: Examples | None,
               strategy: Literal["mean", "max", "rrf", "probe"], negative_weight: float,
               eligible: npt.NDArray[np.bool_], depth: int, probe: Probe | None = None) -> Scores:
    """Score all rows by `strategy` (probe: by the fitted `probe`); ineligible rows get -inf."""
    nearest_sim, nearest = _max_and_argmax(embeddings, positives.vectors)
    has_neg = negatives is not None and len(negatives.vectors) > 0 and negative_weight > 0
    if strategy == "mean":
        centre = mean_direction(positives.vectors, "positive")
        score = similarities(embeddings, centre)[:, 0]
        if has_neg:
            assert negatives is not None
            neg_centre = mean_direction(negatives.vectors, "negative")
            score = score - negative_weight * similarities(embeddings, neg_centre)[:, 0]
    elif strategy == "max":
        score = nearest_sim.copy()
        if has_neg:
            assert negatives is not None
            score -= negative_weight * _max_and_argmax(embeddings, negatives.vectors)[0]
    elif strategy == "rrf":
        score = _rrf(embeddings, positives.vectors, eligible, depth)
        if has_neg:
            assert negatives is not None
            score -= negative_weight * _rrf(embeddings, negatives.vectors, eligible, depth)
    elif strategy == "probe":
        if probe is None:
            raise ValueError("strategy 'probe' needs a fitted probe")
        score = probe.score(embeddings)
    else:  # pragma: no cover - guarded by the query model
        raise ValueError(f"unknown strategy {strategy!r}")
    score = np.where(eligible, score, -np.inf).astype(np.float32)
    return Scores(score, nearest.astype(np.int64), nearest_sim.astype(np.float32))


def ranked_rows(score: FloatArray, count: int) -> npt.NDArray[np.int64]:
    """Return up to `count` finite-scored rows, best first (ties by row number)."""
    finite = np.flatnonzero(np.isfinite(score))
    count = min(count, len(finite))
    if count == 0:
        return np.empty(0, np.int64)
    vals = score[finite]
    if count < len(finite):
        part = np.argpartition(-vals, count - 1)[:count]
        # argpartition may split a tie at the boundary arbitrarily: pull in every tied row.
        cutoff = vals[part].min()
        part = np.flatnonzero(vals >= cutoff)
    else:
        part = np.arange(len(finite))
    order = part[np.lexsort((finite[part], -vals[part]))][:count]
    return finite[order].astype(np.int64)
