"""`edgemine yield`: how many mined candidates reviewers accepted, per query, batch, strategy and session."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from edgemine.bundle.feedback import YieldReport, YieldStats, yield_report
from edgemine.cli.common import StateUrl, bundle_state, domain_errors, text_table

COLUMNS = ("reviewed", "accepted", "rejected", "skipped", "yield", "95% interval")


def yield_(
    bundle: Annotated[Path, typer.Option(help="Bundle directory.")] = Path("bundle"),
    session: Annotated[str | None, typer.Option(help="Only this review session's verdicts.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON (as GET /v1/yield).")] = False,
    state_url: StateUrl = None,
) -> None:
    """Print the mining yield (accepted / reviewed, with a 95% Wilson interval) from stored verdicts."""
    with domain_errors():
        report = yield_report(bundle_state(bundle, state_url), session_id=session)
    typer.echo(report.model_dump_json(indent=2) if as_json else format_report(report))


def _figures(stats: YieldStats) -> list[str]:
    if stats.yield_rate is None or stats.ci_low is None or stats.ci_high is None:
        rate, interval = "-", "-"
    else:
        rate, interval = f"{stats.yield_rate:.1%}", f"{stats.ci_low:.1%}-{stats.ci_high:.1%}"
    return [str(stats.reviewed), str(stats.accepted), str(stats.rejected), str(stats.skipped), rate, interval]


def _table(title: str, first: str, rows: Sequence[tuple[str, YieldStats]]) -> list[str]:
    return text_table(title, [[first, *COLUMNS], *([name, *_figures(stats)] for name, stats in rows)])


def format_report(report: YieldReport) -> str:
    """Return the report as plain-text tables (one per grouping) and each session's yield curve."""
    if report.overall.reviewed + report.overall.skipped == 0:
        return "no verdicts yet (POST /v1/verdicts, the review page, or `edgemine verdicts import`)"
    lines = _table("overall", "", [("all", report.overall)])
    for title, first, rows in (
            ("per strategy", "strategy", [(s.strategy, s) for s in report.strategies]),
            ("per session", "session", [(s.session_id, s) for s in report.sessions]),
            ("per query", "query", [(f"{q.query_id} ({q.strategy or '?'})", q) for q in report.queries]),
            ("per batch", "batch", [(f"{b.batch_id} {b.name}", b) for b in report.batches])):
        if rows:
            lines += ["", *_table(title, first, rows)]
    for session in report.sessions:
        points = [f"{p.reviewed}:{p.yield_rate:.0%}" for p in session.curve[-10:] if p.yield_rate is not None]
        if points:
            lines += ["", f"session {session.session_id} cumulative yield (reviewed:yield, last 10): "
                          + " ".join(points)]
    return "\n".join(lines)
