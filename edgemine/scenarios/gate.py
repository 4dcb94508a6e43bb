"""`edgemine gate`: the candidate against the baseline on every locked scenario, with honest statistics.

Per scenario, on the same scored images (locked members with ground truth), in this order:
ERROR when it cannot be evaluated (no member has ground truth, one model has no prediction on any
of them, the metric is undefined there); INSUFFICIENT when n < min_n; FAIL when the candidate is
below `floor`, or the drop (baseline - candidate) exceeds `max_drop` and its Holm-adjusted one-sided
p-value is below `alpha`; WARN for such a drop that is not significant (with `decisive_n`); PASS.
The test is the exact McNemar test on per-image outcomes for accuracy/recall, the seeded paired
bootstrap over images for ap50/f1/precision. Holm adjusts across the scenarios that were tested
(not ERROR, not INSUFFICIENT). The core (`gate_records`) works on Records; `run_gate` reads the bundle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from edgemine.bundle.state import StateDB
from edgemine.scenarios import store
from edgemine.scenarios.errors import NotEvaluable
from edgemine.scenarios.evaluate import aggregate_metric
from edgemine.scenarios.metrics import measure_data, outcome_array, per_image, scored_ids, statistic
from edgemine.scenarios.records import Records
from edgemine.scenarios.results import Flip, GateReport, LockedScenario, Measurement, ScenarioGate
from edgemine.scenarios.spec import MetricSpec
from edgemine.scenarios.stats import (
    decisive_n_bootstrap,
    decisive_n_mcnemar,
    holm,
    mcnemar_one_sided,
    paired_bootstrap,
)

BOOTSTRAP_TESTED = frozenset({"ap50", "f1", "precision"})
EPS = 1e-12  # float slack: a drop of exactly max_drop (0.99 - 0.97) is not "more than" max_drop


def paired_test(metric: MetricSpec) -> str:
    """Return the paired test the gate uses for this metric."""
    return "paired-bootstrap" if metric.name in BOOTSTRAP_TESTED else "mcnemar-exact"


@dataclass(frozen=True)
class _Scored:
    """A scenario's figures before the Holm step decides its verdict."""

    gate: ScenarioGate
    tested: bool = False      # in the Holm family
    std_error: float = 0.0    # paired bootstrap: the drop's standard error (for decisive_n)


def _blank(metric: MetricSpec, n: int) -> Measurement:
    return Measurement(metric.name, None, None, None, n, "bootstrap" if metric.name in BOOTSTRAP_TESTED else "wilson")


def _error(scenario: LockedScenario, n: int, reason: str) -> _Scored:
    metric = scenario.metric
    blank = _blank(metric, n)
    return _Scored(ScenarioGate(scenario.name, "ERROR", reason, metric.name, blank, blank, None, None, None,
                                paired_test(metric), gate=scenario.gate, lock_hash=scenario.lock_hash))


def _score(scenario: LockedScenario, truth: Records, cand: tuple[str, Records], base: tuple[str, Records],
           seed: int) -> _Scored:
    """Measure both models on the scenario and run its paired test (no verdict beyond ERROR/INSUFFICIENT yet)."""
    metric, ids = scenario.metric, scored_ids(truth, scenario.member_ids)
    if not ids:
        return _error(scenario, 0, f"none of its {len(set(scenario.member_ids))} locked images has ground truth; "
                                   f"label them (edgemine scenario label-gap {scenario.name})")
    for model, preds in (cand, base):
        if not any(i in preds for i in ids):
            return _error(scenario, len(ids), f"model {model!r} has no prediction for any of its {len(ids)} "
                                              f"scored images; import them (edgemine predictions import)")
    try:
        cand_data, base_data = (per_image(metric, truth, preds, ids) for preds in (cand[1], base[1]))
    except NotEvaluable as exc:
        return _error(scenario, len(ids), str(exc))
    cand_m, base_m = (measure_data(metric, data, seed=seed) for data in (cand_data, base_data))
    if cand_m.value is None or base_m.value is None:
        return _error(scenario, len(ids), f"{metric.name} is undefined on its {len(ids)} scored images "
                                          f"(nothing of classes {cand_data.classes} to count)")
    cand_ok, base_ok = outcome_array(metric, cand_data), outcome_array(metric, base_data)
    regressed = [i for i, c, b in zip(ids, cand_ok, base_ok, strict=True) if b and not c]
    fixed = [i for i, c, b in zip(ids, cand_ok, base_ok, strict=True) if c and not b]
    flips = [Flip(i, "regressed") for i in regressed] + [Flip(i, "fixed") for i in fixed]
    std_error = 0.0
    if metric.name in BOOTSTRAP_TESTED:
        boot = paired_bootstrap(statistic(metric, cand_data), statistic(metric, base_data), len(ids), seed=seed)
        p_value, std_error = boot.p_value, boot.std_error
    else:
        p_value = mcnemar_one_sided(len(regressed), len(fixed))
    drop = base_m.value - cand_m.value
    insufficient = len(ids) < scenario.gate.min_n
    gate = ScenarioGate(
        scenario.name, "INSUFFICIENT" if insufficient else "PASS",
        f"only {len(ids)} scored images, fewer than min_n {scenario.gate.min_n}; label more "
        f"(edgemine scenario label-gap {scenario.name})" if insufficient else "",
        metric.name, cand_m, base_m, drop, p_value, None, paired_test(metric), (len(regressed), len(fixed)),
        flips=flips, gate=scenario.gate, lock_hash=scenario.lock_hash)
    return _Scored(gate, tested=not insufficient, std_error=std_error)


def _decide(scored: _Scored, p_adjusted: float, level: float, names: tuple[str, str]) -> ScenarioGate:
    """Return the scenario's verdict (FAIL/WARN/PASS) given its Holm-adjusted p-value.

    `level` is the raw p-value this scenario needed under Holm (alpha / its multiplier), for decisive_n.
    """
    g = scored.gate
    cand, base, spec = g.candidate.value, g.baseline.value, g.gate
    assert cand is not None and base is not None and g.drop is not None and g.p_value is not None
    figures = f"{g.metric} {names[0]} {cand:.3f} vs {names[1]} {base:.3f} (n={g.candidate.n})"
    if spec.floor is not None and cand < spec.floor - EPS:
        return replace(g, verdict="FAIL", p_adjusted=p_adjusted,
                       reason=f"{figures}: below the floor {spec.floor:.3f}")
    if g.drop > spec.max_drop + EPS and p_adjusted < spec.alpha:
        return replace(g, verdict="FAIL", p_adjusted=p_adjusted,
                       reason=f"{figures}: drop {g.drop:.3f} > max_drop {spec.max_drop:.3f}, significant "
                              f"({g.test}, Holm-adjusted p={p_adjusted:.4g} < alpha {spec.alpha:g})")
    if g.drop > spec.max_drop + EPS:
        n = g.candidate.n
        decisive = (decisive_n_bootstrap(g.drop, scored.std_error, n, level) if g.test == "paired-bootstrap"
                    else decisive_n_mcnemar(*g.discordant, n, level))
        hint = (f"about {decisive} images at this rate would decide it" if decisive is not None
                else "no realistic number of images decides it at this rate")
        return replace(g, verdict="WARN", p_adjusted=p_adjusted, decisive_n=decisive,
                       reason=f"{figures}: drop {g.drop:.3f} > max_drop {spec.max_drop:.3f} but not significant "
                              f"(Holm-adjusted p={p_adjusted:.4g} >= alpha {spec.alpha:g}); {hint}")
    return replace(g, verdict="PASS", p_adjusted=p_adjusted,
                   reason=f"{figures}: drop {g.drop:.3f} within max_drop {spec.max_drop:.3f}"
                   if g.drop > 0 else f"{figures}: no drop")


def _aggregate(truth: Records, cand: Records, base: Records, scenarios: Sequence[LockedScenario],
               seed: int) -> tuple[Measurement, Measurement]:
    ids = sorted(truth)
    try:
        metric = aggregate_metric(truth, scenarios)
        if not ids:
            return _blank(metric, 0), _blank(metric, 0)
        return (measure_data(metric, per_image(metric, truth, cand, ids), seed=seed),
                measure_data(metric, per_image(metric, truth, base, ids), seed=seed))
    except NotEvaluable:  # e.g. mixed tasks: scenarios still decide; the aggregate is only context
        return _blank(MetricSpec(), len(ids)), _blank(MetricSpec(), len(ids))


def gate_records(candidate: str, baseline: str, truth: Records, candidate_preds: Records, baseline_preds: Records,
                 scenarios: Sequence[LockedScenario], *, strict: bool = False, seed: int = 0,
                 hashes: Mapping[str, str] | None = None) -> GateReport:
    """Return the GateReport of the candidate against the baseline on every scenario (see the module doc)."""
    scored = [_score(s, truth, (candidate, candidate_preds), (baseline, baseline_preds), seed) for s in scenarios]
    family = [k for k, s in enumerate(scored) if s.tested]
    raw = [1.0 if (p := scored[k].gate.p_value) is None else p for k in family]
    adjusted = holm(raw)
    # Holm compares the r-th smallest p with alpha / (m - r): the raw level each scenario needed.
    multiplier = {family[j]: len(family) - rank for rank, j in enumerate(np.argsort(raw, kind="stable"))}
    decided = {k: _decide(scored[k], adjusted[j], scored[k].gate.gate.alpha / multiplier[k], (candidate, baseline))
               for j, k in enumerate(family)}
    gates = [decided.get(k, s.gate) for k, s in enumerate(scored)]
    return GateReport(candidate=candidate, baseline=baseline, strict=strict, scenarios=gates,
                      aggregate=_aggregate(truth, candidate_preds, baseline_preds, scenarios, seed),
                      hashes=dict(hashes or {}), seed=seed)


def run_gate(state: StateDB, candidate: str, baseline: str, scenarios: Sequence[LockedScenario], *,
             strict: bool = False, seed: int = 0) -> GateReport:
    """Gate the candidate's stored predictions against the baseline's on the locked scenarios."""
    # Imported here so the gate core stays importable without the store (part A) in partial checkouts.

    truth = store.load_truth(state)
    cand = store.load_predictions(state, candidate)   # UnknownModel propagates: the CLI exits 2
    base = store.load_predictions(state, baseline)
    hashes = {"ground_truth": store.truth_hash(state),
              f"predictions:{candidate}": store.predictions_hash(state, candidate),
              f"predictions:{baseline}": store.predictions_hash(state, baseline)}
    hashes.update({f"lock:{s.name}": s.lock_hash for s in scenarios})
    return gate_records(candidate, baseline, truth, cand, base, scenarios, strict=strict, seed=seed, hashes=hashes)
