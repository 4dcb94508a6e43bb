"""Statistics cross-checked against independent computations (scipy, a hand-computed Holm table)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from edgemine.scenarios.stats import (
    bootstrap_interval,
    decisive_n_bootstrap,
    decisive_n_mcnemar,
    holm,
    mcnemar_one_sided,
    paired_bootstrap,
    paired_bootstrap_p,
    wilson,
)


@pytest.mark.parametrize(("k", "n"), [(0, 1), (1, 1), (0, 30), (7, 30), (29, 30), (30, 30), (512, 1000), (3, 5000)])
@pytest.mark.parametrize("conf", [0.95, 0.9])
def test_wilson_equals_scipy(k: int, n: int, conf: float) -> None:
    expected = binomtest(k, n).proportion_ci(confidence_level=conf, method="wilson")
    assert wilson(k, n, conf) == pytest.approx((expected.low, expected.high), abs=1e-12)


def test_wilson_refuses_empty_or_impossible_counts() -> None:
    with pytest.raises(ValueError, match="n > 0"):
        wilson(0, 0)
    with pytest.raises(ValueError, match="k <= n"):
        wilson(5, 4)


@pytest.mark.parametrize(("regressed", "fixed"), [(0, 0), (1, 0), (0, 5), (5, 0), (7, 3), (3, 7), (20, 8), (60, 40),
                                                   (250, 200)])
def test_mcnemar_equals_scipy_one_sided_binomial(regressed: int, fixed: int) -> None:
    n = regressed + fixed
    expected = 1.0 if n == 0 else binomtest(regressed, n, 0.5, alternative="greater").pvalue
    assert mcnemar_one_sided(regressed, fixed) == pytest.approx(expected, rel=1e-10)


def test_holm_matches_a_hand_computed_table() -> None:
    # sorted: 0.01*4=0.04, 0.02*3=0.06, 0.03*2=0.06 (monotone), 0.5*1=0.5; back in input order.
    assert holm([0.03, 0.5, 0.01, 0.02]) == pytest.approx([0.06, 0.5, 0.04, 0.06])
    # caps at 1 and keeps monotonicity: 0.4*3=1.2 -> 1, then 1.
    assert holm([0.4, 0.45, 0.9]) == pytest.approx([1.0, 1.0, 1.0])
    assert holm([0.2]) == [0.2]
    assert holm([]) == []


def test_holm_equals_a_brute_force_reference() -> None:
    rng = np.random.default_rng(4)
    for _ in range(50):
        p = rng.random(int(rng.integers(1, 9))) ** 3
        m = len(p)
        order = np.argsort(p)
        reference = np.empty(m)
        for rank, i in enumerate(order):
            reference[i] = min(1.0, max((m - r) * p[order[r]] for r in range(rank + 1)))
        assert holm(list(p)) == pytest.approx(list(reference))


def _mean(values: np.ndarray):  # type: ignore[no-untyped-def]
    return lambda weights: weights @ values / weights.sum(axis=1)


def test_bootstrap_interval_is_seeded_and_covers_the_mean() -> None:
    values = np.random.default_rng(0).random(200)
    first = bootstrap_interval(_mean(values), 200, seed=3)
    assert first == bootstrap_interval(_mean(values), 200, seed=3)
    assert first != bootstrap_interval(_mean(values), 200, seed=4)
    assert first is not None and first[0] < values.mean() < first[1]
    # close to the normal-theory interval of a mean
    half = 1.96 * values.std(ddof=1) / np.sqrt(200)
    assert first[1] - first[0] == pytest.approx(2 * half, rel=0.15)


def test_bootstrap_interval_is_none_when_the_statistic_is_never_defined() -> None:
    assert bootstrap_interval(lambda w: np.full(len(w), np.nan), 10) is None


def test_paired_bootstrap_p_is_small_for_a_real_drop_and_large_for_none() -> None:
    rng = np.random.default_rng(1)
    base = rng.random(300)
    worse = base - 0.1 + rng.normal(0, 0.05, 300)
    assert paired_bootstrap_p(_mean(worse), _mean(base), 300, seed=0) < 0.01
    assert paired_bootstrap_p(_mean(base), _mean(base), 300, seed=0) == 1.0
    assert paired_bootstrap_p(_mean(base + 0.1), _mean(base), 300, seed=0) > 0.99
    # same seed, same figure
    assert paired_bootstrap(_mean(worse), _mean(base), 300, seed=7) == paired_bootstrap(_mean(worse), _mean(base),
                                                                                     300, seed=7)


def test_decisive_n_mcnemar_is_the_smallest_size_that_decides_at_the_observed_rates() -> None:
    # 6 regressed vs 2 fixed in 40 images: p = 0.145, not significant.
    size = decisive_n_mcnemar(6, 2, 40, 0.05)
    assert size is not None and size > 40
    scaled = mcnemar_one_sided(round(6 * size / 40), round(2 * size / 40))
    assert scaled < 0.05
    before = mcnemar_one_sided(round(6 * (size - 1) / 40), round(2 * (size - 1) / 40))
    assert before >= 0.05
    assert decisive_n_mcnemar(2, 6, 40, 0.05) is None  # more fixes than regressions: no size decides a drop
    assert decisive_n_mcnemar(20, 0, 40, 0.05) == 40   # already significant


def test_decisive_n_bootstrap_scales_with_the_squared_z_ratio() -> None:
    # drop 0.02, se 0.02 at n=100: needs (1.645)^2 = 2.7 times the images.
    assert decisive_n_bootstrap(0.02, 0.02, 100, 0.05) == 271
    assert decisive_n_bootstrap(0.0, 0.02, 100, 0.05) is None
