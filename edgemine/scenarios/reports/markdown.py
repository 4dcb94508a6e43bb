"""Markdown for a CI step summary or a PR comment: the gate table, notes per verdict; an Evaluation table."""

from __future__ import annotations

import re

from edgemine.scenarios.reports.text import AGGREGATE_NAME, NONE, table, warn_line, with_interval
from edgemine.scenarios.results import Evaluation, GateReport

# Escaped so a value can neither break the table (|, newlines) nor inject markup or HTML
# (GitHub renders inline HTML in step summaries and comments).
_SPECIAL = re.compile(r"([\\`*|])")


def escape(text: str) -> str:
    """Return `text` safe inside a Markdown table cell or line: no table breaks, no markup, no HTML."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # "](" is escaped rather than every bracket: no inline link, and "0.912 [0.871, 0.941]" stays readable
    return _SPECIAL.sub(r"\\\1", " ".join(text.split())).replace("](", "]\\(")


def _marker(verdict: str) -> str:
    # emoji-free: what is not a pass stands out in bold (verdicts are fixed words: nothing to escape)
    return verdict if verdict in ("PASS", NONE) else f"**{verdict}**"


def _table(header: list[str], rows: list[list[str]], verdict_column: int | None = None) -> list[str]:
    def cell(i: int, text: str) -> str:
        return _marker(text) if i == verdict_column else escape(text)

    lines = ["| " + " | ".join(escape(h) for h in header) + " |",
             "|" + "|".join("---:" if 2 <= i < len(header) - 1 else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(cell(i, c) for i, c in enumerate(row)) + " |" for row in rows]
    return lines


def render_markdown(report: GateReport) -> str:
    """Return the gate run as Markdown: status heading, the table with the aggregate, a note per non-pass."""
    status = report.status.upper()
    header, rows = table(report)
    lines = [f"## edgemine gate: {escape(report.candidate)} against {escape(report.baseline)}: **{status}**", ""]
    lines += _table(header, rows, verdict_column=1)
    notes = []
    for s in report.scenarios:
        if s.verdict == "WARN":
            notes.append(f"- WARN {escape(warn_line(s))}")
        elif s.verdict in ("FAIL", "ERROR", "INSUFFICIENT"):
            notes.append(f"- {s.verdict} {escape(s.name)}: {escape(s.reason)}")
    if notes:
        lines += ["", *notes]
    strict = "; INSUFFICIENT fails (--strict)" if report.strict else ""
    lines += ["", f"Scenarios are scored on their locked images; p: one-sided, Holm-adjusted across the "
                  f"{len(report.scenarios)} scenarios; drop = baseline - candidate; seed {report.seed}{strict}. "
                  f"The row '{AGGREGATE_NAME}' is shown for context only."]
    return "\n".join(lines) + "\n"


def render_evaluation_markdown(evaluation: Evaluation) -> str:
    """Return an evaluation (one model on the aggregate, the scenarios, the slices) as a Markdown table."""
    header = ["", "name", "n", "members", "unlabeled", "metric", "value [95% interval]", "interval"]
    rows = [[row.kind, row.name, str(row.measurement.n), str(row.members), str(row.unlabeled),
             row.measurement.metric, with_interval(row.measurement),
             row.measurement.method if row.measurement.value is not None else NONE] for row in evaluation.rows]
    lines = [f"## edgemine evaluate: {escape(evaluation.model)}", "", *_table(header, rows), "",
             "Only images with ground truth are scored (n); slices are listed worst first."]
    return "\n".join(lines) + "\n"


__all__ = ["escape", "render_evaluation_markdown", "render_markdown"]
