"""GateReport / Evaluation objects built by hand, for the report and `edgemine gate` tests (they compute nothing)."""

from __future__ import annotations

from typing import Any

from edgemine.scenarios.results import (
    Evaluation,
    Flip,
    GateReport,
    Measurement,
    ScenarioGate,
    SliceRow,
    Verdict,
)
from edgemine.scenarios.spec import GateSpec


def measurement(value: float | None, n: int, metric: str = "recall", spread: float = 0.05) -> Measurement:
    """A Measurement with a symmetric interval (or none when value is None)."""
    if value is None:
        return Measurement(metric, None, None, None, n, "wilson")
    return Measurement(metric, value, max(0.0, value - spread), min(1.0, value + spread), n, "wilson")


def scenario(name: str, verdict: Verdict, *, base: float | None = 0.9, cand: float | None = 0.9, n: int = 50,
             p: float | None = 0.5, p_adj: float | None = 0.5, reason: str = "", flips: list[Flip] | None = None,
             decisive_n: int | None = None, **extra: Any) -> ScenarioGate:
    """One scenario's gate decision with consistent figures."""
    drop = None if base is None or cand is None else base - cand
    return ScenarioGate(name=name, verdict=verdict, reason=reason or f"{name} is {verdict}", metric="recall",
                        candidate=measurement(cand, n), baseline=measurement(base, n), drop=drop, p_value=p,
                        p_adjusted=p_adj, test="mcnemar-exact", discordant=(3, 1), decisive_n=decisive_n,
                        flips=flips or [], gate=GateSpec(min_n=30, max_drop=0.02), lock_hash=f"lock-{name}",
                        **extra)


def gate_report(scenarios: list[ScenarioGate], *, strict: bool = False) -> GateReport:
    """A report of v8 (candidate) against v7 (baseline) with hashes."""
    return GateReport(candidate="v8", baseline="v7", strict=strict, scenarios=scenarios,
                      aggregate=(measurement(0.93, 400), measurement(0.90, 400)),
                      hashes={"ground_truth": "gt-hash", "predictions:v8": "p8", "predictions:v7": "p7",
                              "lock:" + (scenarios[0].name if scenarios else "x"): "lock-hash"}, seed=3)


def mixed_report() -> GateReport:
    """One scenario of each verdict; the FAIL has regressed and fixed flips."""
    flips = [Flip("fixed/a.png", "fixed"), Flip("night/r1.png", "regressed"), Flip("night/r2.png", "regressed")]
    return gate_report([
        scenario("ped-night", "FAIL", base=0.9, cand=0.7, p=0.001, p_adj=0.004, flips=flips,
                 reason="recall dropped 0.200 (> max_drop 0.020), significant (Holm p=0.0040)"),
        scenario("wet-road", "WARN", base=0.85, cand=0.82, p=0.2, p_adj=0.4, decisive_n=420,
                 reason="recall dropped 0.030, not significant"),
        scenario("tunnel", "INSUFFICIENT", n=12, p=None, p_adj=None, reason="12 scored images < min_n 30"),
        scenario("day", "PASS", base=0.9, cand=0.95, p=1.0, p_adj=1.0),
        scenario("fog", "ERROR", base=None, cand=None, n=0, p=None, p_adj=None,
                 reason="no member of fog has ground truth"),
    ])


def evaluation() -> Evaluation:
    """An evaluation of v8: aggregate, one scenario, two metadata slices."""
    return Evaluation(model="v8", rows=[
        SliceRow("aggregate", "all labeled", measurement(0.93, 400), 420, 20),
        SliceRow("scenario", "ped-night", measurement(0.7, 50), 60, 10),
        SliceRow("slice", "time_of_day=night", measurement(0.8, 120), 130, 10),
        SliceRow("slice", "time_of_day=<day>|x", measurement(None, 0), 3, 3),
    ], hashes={"ground_truth": "gt", "predictions:v8": "p8"})
