"""The statistics behind evaluation and the gate: intervals, paired tests and multiple-testing control.

Everything resamples *images* (the unit that was sampled), never objects: the objects of one image
are not independent. Bootstrap statistics are functions of a weights matrix `W` (resamples x images,
each row the multiplicity of every image in one resample drawn with replacement), so a metric such as
AP50 is recomputed on a resample without copying records. Every random draw comes from a seeded
`numpy.random.Generator`, so the same seed gives the same figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

Statistic = Callable[[np.ndarray], np.ndarray]
"""Maps a (resamples x images) weights matrix to one value per row (NaN where undefined)."""

RESAMPLES = 1000
_CHUNK = 250  # resamples per block: bounds memory at ~CHUNK x images floats
DECISIVE_CAP = 10_000_000  # decisive_n beyond this is reported as None ("no realistic size decides it")


def _z(conf: float) -> float:
    if not 0.0 < conf < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {conf}")
    return float(NormalDist().inv_cdf(0.5 + conf / 2))


def wilson(k: int, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Return the Wilson score interval of the proportion k / n at confidence `conf`."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"wilson needs 0 <= k <= n and n > 0, got k={k}, n={n}")
    z = _z(conf)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_one_sided(regressed: int, fixed: int) -> float:
    """Return the exact one-sided McNemar p-value (H1: the candidate is worse).

    Under H0 each discordant image is equally likely to be regressed or fixed, so the p-value is
    P(X >= regressed) for X ~ Binomial(regressed + fixed, 1/2), computed with exact integers.
    """
    if regressed < 0 or fixed < 0:
        raise ValueError(f"discordant counts must be >= 0, got {regressed}, {fixed}")
    n = regressed + fixed
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(regressed, n + 1))
    return min(1.0, tail / (1 << n))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Return Holm step-down adjusted p-values, in the input order (family-wise error control)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        # The k-th smallest p is multiplied by (m - k); the running max keeps the adjustment monotone.
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def resample_weights(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Return a (resamples x n) matrix of image multiplicities: each row is one bootstrap resample."""
    # n draws with replacement per row, counted per image (much faster than rng.multinomial for large n).
    draws = rng.integers(0, n, size=(resamples, n)) + (np.arange(resamples) * n)[:, None]
    counts = np.bincount(draws.ravel(), minlength=resamples * n).reshape(resamples, n)
    return counts.astype(np.float64)


def _replicates(statistics: Sequence[Statistic], n: int, resamples: int, seed: int) -> list[np.ndarray]:
    """Evaluate every statistic on the same seeded resamples (paired when there are several)."""
    if n <= 0:
        raise ValueError("bootstrap needs at least one image")
    rng = np.random.default_rng(seed)
    out: list[list[np.ndarray]] = [[] for _ in statistics]
    done = 0
    while done < resamples:
        block = resample_weights(n, min(_CHUNK, resamples - done), rng)
        for slot, statistic in zip(out, statistics, strict=True):
            slot.append(np.asarray(statistic(block), dtype=np.float64))
        done += len(block)
    return [np.concatenate(slot) for slot in out]


def bootstrap_interval(statistic: Statistic, n: int, *, conf: float = 0.95, resamples: int = RESAMPLES,
                       seed: int = 0) -> tuple[float, float] | None:
    """Return the seeded percentile bootstrap interval of a statistic over n images (None if never defined)."""
    _z(conf)
    reps = _replicates([statistic], n, resamples, seed)[0]
    reps = reps[~np.isnan(reps)]
    if reps.size == 0:
        return None
    tail = (1 - conf) / 2 * 100
    low, high = np.percentile(reps, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedBootstrap:
    """A paired bootstrap of the drop baseline - candidate: its one-sided p-value and standard error."""

    p_value: float
    std_error: float
    resamples: int  # resamples where both statistics were defined


def paired_bootstrap(candidate: Statistic, baseline: Statistic, n: int, *, resamples: int = RESAMPLES,
                     seed: int = 0) -> PairedBootstrap:
    """Bootstrap the drop (baseline - candidate) on shared image resamples; see `paired_bootstrap_p`."""
    cand, base = _replicates([candidate, baseline], n, resamples, seed)
    drops = base - cand
    drops = drops[~np.isnan(drops)]
    if drops.size == 0:
        return PairedBootstrap(1.0, 0.0, 0)
    # One-sided p for H1 "the candidate is worse": the share of resamples where it is not worse,
    # with the +1 that keeps a bootstrap p-value away from an impossible 0.
    p = (1 + int(np.count_nonzero(drops <= 0))) / (drops.size + 1)
    return PairedBootstrap(p, float(drops.std(ddof=1)) if drops.size > 1 else 0.0, int(drops.size))


def paired_bootstrap_p(candidate: Statistic, baseline: Statistic, n: int, *, resamples: int = RESAMPLES,
                       seed: int = 0) -> float:
    """Return the seeded paired bootstrap one-sided p-value that the candidate's metric is below the baseline's."""
    return paired_bootstrap(candidate, baseline, n, resamples=resamples, seed=seed).p_value


def decisive_n_mcnemar(regressed: int, fixed: int, n: int, alpha: float) -> int | None:
    """Return about how many images at the observed discordance rates would make McNemar's p < alpha.

    Both discordant counts are scaled with the number of images (regressed * N / n, fixed * N / n,
    rounded) and the smallest N >= n whose exact p-value is below `alpha` is found by doubling,
    then bisection. None when regressions do not outnumber fixes (no size decides a drop then).
    """
    if n <= 0 or regressed <= fixed:
        return None

    def significant(size: int) -> bool:
        return mcnemar_one_sided(round(regressed * size / n), round(fixed * size / n)) < alpha

    if significant(n):
        return n
    low, high = n, 2 * n
    while not significant(high):
        if high > DECISIVE_CAP:
            return None
        low, high = high, 2 * high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if significant(mid) else (mid, high)
    return high


def decisive_n_bootstrap(drop: float, std_error: float, n: int, alpha: float) -> int | None:
    """Return about how many images would make a bootstrap drop significant at alpha (normal approximation).

    The standard error of a mean over images shrinks as 1/sqrt(N), so the drop reaches the one-sided
    z-quantile at N = n * (z(1 - alpha) * se / drop)^2.
    """
    if n <= 0 or drop <= 0 or std_error <= 0:
        return None
    z = NormalDist().inv_cdf(1 - alpha)
    size = math.ceil(n * (z * std_error / drop) ** 2)
    return None if size > DECISIVE_CAP else max(size, n)
