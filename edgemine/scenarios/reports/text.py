"""What every report shares: number formats, the gate table's cells, one-line figures, atomic writes."""

from __future__ import annotations

from pathlib import Path

from edgemine.bundle.layout import write_atomic
from edgemine.scenarios.results import GateReport, Measurement, ScenarioGate

# Metric values are proportions (accuracy, recall, AP50, ...): three decimals tell 0.1 points apart.
DIGITS = 3
NONE = "-"


def value(x: float | None) -> str:
    """Return a metric value (or a drop) with three decimals, or "-" when there is none."""
    return NONE if x is None else f"{x:.{DIGITS}f}"


def with_interval(m: Measurement) -> str:
    """Return "0.912 [0.871, 0.941]" (the 95% interval), or the bare value when it has no interval."""
    if m.value is None:
        return NONE
    if m.low is None or m.high is None:
        return value(m.value)
    return f"{value(m.value)} [{value(m.low)}, {value(m.high)}]"


def p_text(p: float | None) -> str:
    """Return a p-value with four decimals ("<0.0001" below that), or "-"."""
    if p is None:
        return NONE
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def drop(s: ScenarioGate) -> str:
    """Return the drop (baseline minus candidate: positive means the candidate is worse)."""
    return value(s.drop)


def scored(s: ScenarioGate) -> int:
    """Return the number of images scored (both models are scored on the same locked members)."""
    return max(s.candidate.n, s.baseline.n)


TABLE_HEADER = ("scenario", "verdict", "n", "baseline {baseline} [95% interval]",
                "candidate {candidate} [95% interval]", "drop", "p (Holm)", "test")
AGGREGATE_NAME = "all labeled (not gated)"


def table(report: GateReport) -> tuple[list[str], list[list[str]]]:
    """Return the gate table as plain-text cells: (header, rows), the aggregate row last."""
    header = [h.format(baseline=report.baseline, candidate=report.candidate) for h in TABLE_HEADER]
    rows = [[s.name, s.verdict, str(scored(s)), with_interval(s.baseline), with_interval(s.candidate),
             drop(s), p_text(s.p_adjusted), s.test or NONE] for s in report.scenarios]
    cand, base = report.aggregate
    aggregate_drop = None if cand.value is None or base.value is None else base.value - cand.value
    rows.append([AGGREGATE_NAME, NONE, str(max(cand.n, base.n)), with_interval(base), with_interval(cand),
                 value(aggregate_drop), NONE, NONE])
    return header, rows


def figures(s: ScenarioGate, report: GateReport) -> str:
    """Return every figure behind one scenario's verdict, on a few lines (JUnit bodies, logs)."""
    regressed, fixed = s.discordant
    floor = NONE if s.gate.floor is None else value(s.gate.floor)
    return "\n".join([
        f"{s.name}: {s.verdict}: {s.reason}",
        f"metric {s.metric}: baseline {report.baseline} {with_interval(s.baseline)}, "
        f"candidate {report.candidate} {with_interval(s.candidate)} (95% intervals, {s.candidate.method})",
        f"n={scored(s)} scored images; drop {drop(s)} (max_drop {value(s.gate.max_drop)}, floor {floor})",
        f"test {s.test or NONE}: p={p_text(s.p_value)}, Holm-adjusted p={p_text(s.p_adjusted)} "
        f"(alpha {s.gate.alpha:g}); images regressed {regressed}, fixed {fixed}",
    ] + ([warn_line(s)] if s.verdict == "WARN" else []))


def warn_line(s: ScenarioGate) -> str:
    """Return the sentence for a WARN: the drop is not significant, and how many images would decide it."""
    head = f"{s.name}: drop {drop(s)} is not significant (Holm p={p_text(s.p_adjusted)}, n={scored(s)})"
    if s.decisive_n is None:
        return f"{head}; no estimate of how many images would decide it"
    return f"{head}; about {s.decisive_n} scored images would decide it"


def write_text(path: Path, text: str) -> None:
    """Write a UTF-8 report atomically, creating its folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text.encode("utf-8"))
