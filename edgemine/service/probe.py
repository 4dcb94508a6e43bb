"""The `probe` strategy: a linear classifier fitted per query, served as a query vector.

A class-balanced, L2-regularized logistic regression separates the query's positives from its
negatives plus a seeded random sample of background rows. Its score w.x + b is an inner product,
so the ANN index finds the best rows for the direction w/|w| like any query vector, and those
candidates are then re-scored exactly.

Weights: the positive class and the negative class carry half the loss each; inside the negative
class, reviewed negatives and background rows carry half each when both exist (rejects are the
few hard negatives next to the positives; weighted per row they would be diluted ~1:50 by the
background). L2 strength 1/n (n = training rows) is scikit-learn's LogisticRegression(C=1) with
class-balanced sample weights. The fit is Nesterov-accelerated gradient descent on centred data
(centring removes the common direction of CLIP-like embeddings, so a few dozen steps converge);
it costs ~2 GEMVs of n x d per step, never a d x d matrix, so it stays within milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgemine.bundle.vectors import Embeddings
from edgemine.models.vectors import Vectors

# Background rows drawn per query: enough to describe the collection; the fit streams them twice
# per step, and at 512 x d float32 they stay in cache (1000 rows measured ~2.5x slower per fit).
BACKGROUND_ROWS = 512
# The probe's direction is unlike the data (a difference of classes, not an image), so its best
# rows spread over more IVF lists / HNSW neighbourhoods: the index searches it this much wider
# than its tuned nprobe / efSearch. Measured at 100k (IVF1024,SQ8, random example sets): recall
# of the exact probe's top 100 went from 0.83 (10 examples) / 0.71 (50) at 1x to 0.92 / 0.96 at
# 4x, for ~1 ms (one query vector, where max searches one per example).
SEARCH_BREADTH = 4.0
MAX_STEPS = 30
POWER_STEPS = 8
# Stop when the gradient is this small relative to its first value (the ranking has settled).
TOLERANCE = 1e-3


class ProbeError(ValueError):
    """A probe cannot be fitted (nothing to contrast the positives with)."""


@dataclass(frozen=True)
class Probe:
    """A fitted linear score: score(x) = x . weights + bias."""

    weights: npt.NDArray[np.float32]
    bias: float
    steps: int

    @property
    def direction(self) -> Vectors:
        """Return w/|w| as a 1 x d row: the query vector the ANN index searches with."""
        norm = float(np.linalg.norm(self.weights))
        unit = self.weights / norm if norm > 0 else self.weights
        return np.asarray(unit, np.float32)[None, :]

    def score(self, embeddings: Embeddings) -> npt.NDArray[np.float32]:
        """Return the probe's logit for each row."""
        return np.asarray(embeddings @ self.weights + np.float32(self.bias), np.float32)


def background_rows(allowed: npt.NDArray[np.bool_], count: int, seed: int,
                    size: int = BACKGROUND_ROWS) -> npt.NDArray[np.int64]:
    """Return up to `size` distinct rows among `allowed` (`count` of them), sorted, drawn by `seed`.

    The same query (seed) on the same bundle version draws the same rows, so every page of a
    cursor walk ranks by the same probe.
    """
    if count <= size:
        return np.flatnonzero(allowed).astype(np.int64)
    rng = np.random.default_rng(seed)
    if count >= len(allowed) // 4:
        # Mostly allowed: draw row numbers and keep the allowed ones (no pass over all rows).
        draw = rng.integers(0, len(allowed), 4 * size)
        draw = draw[allowed[draw]]
        _, first = np.unique(draw, return_index=True)
        picked = draw[np.sort(first)][:size]
        if len(picked) == size:
            return np.sort(picked).astype(np.int64)
    return np.sort(rng.choice(np.flatnonzero(allowed), size, replace=False)).astype(np.int64)


def fit_probe(positives: Vectors, negatives: Vectors, background: Vectors) -> Probe:
    """Fit the class-balanced L2 logistic regression of positives vs negatives + background."""
    if len(positives) == 0:
        raise ProbeError("strategy 'probe' needs at least one positive example")
    if len(negatives) == 0 and len(background) == 0:
        raise ProbeError(
            "strategy 'probe' needs something to contrast the positives with, and this query has no "
            "negative examples and no background rows (every row the query allows is an example): "
            "give negative_ids, or use strategy 'max'")
    # float32 throughout: the fit is ~2 GEMVs per step, and halving the bytes halves its time.
    x = np.concatenate([positives, negatives, background]).astype(np.float32)
    y = np.zeros(len(x), np.float32)
    y[:len(positives)] = 1.0
    c = np.empty(len(x), np.float32)
    c[:len(positives)] = 0.5 / len(positives)
    neg_share = 0.25 if len(negatives) and len(background) else 0.5
    if len(negatives):
        c[len(positives):len(positives) + len(negatives)] = neg_share / len(negatives)
    if len(background):
        c[len(positives) + len(negatives):] = (0.5 - neg_share if len(negatives) else 0.5) / len(background)
    lam = np.float32(1.0 / len(x))
    centre = c @ x
    xc = x - centre
    # Centred (sum c x = 0), the curvature bound 0.25 [x 1]^T C [x 1] + lam is block-diagonal:
    # w and b each get the step of their own block.
    step = np.float32(1.0 / _lipschitz(xc, c, float(lam)))
    step_b = np.float32(4.0)
    w = np.zeros(x.shape[1], np.float32)
    b = np.float32(0.0)
    w_prev, b_prev = w, b
    first = None
    steps = 0
    for steps in range(1, MAX_STEPS + 1):
        # Nesterov momentum: gradient at the extrapolated point.
        mom = (steps - 1) / (steps + 2)
        vw, vb = w + mom * (w - w_prev), b + mom * (b - b_prev)
        p = _sigmoid(xc @ vw + vb)
        r = c * (p - y)
        gw, gb = r @ xc + lam * vw, r.sum()
        size = float(np.sqrt(gw @ gw + gb * gb))
        first = size if first is None else first
        w_prev, b_prev = w, b
        w, b = vw - step * gw, vb - step_b * gb
        if size <= TOLERANCE * first:
            break
    # Back to uncentred inputs: w.(x - centre) + b = w.x + (b - w.centre).
    return Probe(w.astype(np.float32), float(b - w @ centre), steps)


def _lipschitz(xc: npt.NDArray[np.float32], c: npt.NDArray[np.float32], lam: float) -> float:
    """Bound the curvature in w: 0.25 * top eigenvalue of x^T C x (power iteration) + lam."""
    v = np.full(xc.shape[1], 1.0 / np.sqrt(xc.shape[1]), np.float32)
    top = 0.0
    for _ in range(POWER_STEPS):
        u = (c * (xc @ v)) @ xc
        top = float(np.linalg.norm(u))
        if top == 0:
            break
        v = u / top
    # The 1.2 margin covers an estimate a few power steps short of the top eigenvalue.
    return 0.25 * 1.2 * top + float(lam)


def _sigmoid(z: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    out: npt.NDArray[np.float32] = 0.5 * (1.0 + np.tanh(0.5 * z))
    return out


__all__ = ["BACKGROUND_ROWS", "SEARCH_BREADTH", "Probe", "ProbeError", "background_rows", "fit_probe"]
