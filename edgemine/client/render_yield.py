"""HTML for a yield report in notebooks: a summary line, small tables and each session's cumulative yield curve.

Same rules as `render`: inline CSS, inline SVG (no script, no other host), every text escaped.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from edgemine.bundle.feedback import SessionYield, YieldReport, YieldStats
from edgemine.client.render import page_html, table_html

# Rows per table and curves drawn: a long history stays a glance; `.model` has everything.
MAX_ROWS = 50
MAX_CURVES = 6
_W, _H, _PAD = 240, 90, 18
_STATS = ("reviewed", "accepted", "rejected", "skipped", "yield_rate", "ci_low", "ci_high")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _rate(stats: YieldStats) -> str:
    if stats.yield_rate is None:
        return f"nothing reviewed yet ({stats.skipped} skipped)"
    return (f"yield {stats.yield_rate:.3f} (95% interval {stats.ci_low:.3f}-{stats.ci_high:.3f}): "
            f"{stats.accepted} accepted of {stats.reviewed} reviewed, {stats.skipped} skipped")


def _rows(items: Sequence[Any], keys: Sequence[str]) -> list[dict[str, Any]]:
    return [{k: getattr(item, k) for k in (*keys, *_STATS)} for item in items[:MAX_ROWS]]


def _section(title: str, items: Sequence[Any], keys: Sequence[str]) -> str:
    if not items:
        return ""
    more = f" (first {MAX_ROWS} of {len(items)})" if len(items) > MAX_ROWS else ""
    return f"<h4>{_e(title)}{_e(more)}</h4>{table_html(_rows(items, keys))}"


def curve_svg(session: SessionYield) -> str:
    """Return the session's cumulative yield (y: 0..1) against verdicts given (x) as a small inline SVG."""
    points = [p for p in session.curve if p.yield_rate is not None]
    last = session.curve[-1].verdicts if session.curve else 0
    coords = " ".join(
        f"{_PAD + (_W - 2 * _PAD) * (p.verdicts / max(last, 1)):.1f},"
        f"{_H - _PAD - (_H - 2 * _PAD) * (p.yield_rate or 0.0):.1f}" for p in points)
    line = f'<polyline points="{coords}" fill="none" stroke="#2f6fd6" stroke-width="1.5"/>' if points else ""
    top, bottom = _PAD, _H - _PAD
    return (f'<svg width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" role="img" '
            f'aria-label="cumulative yield of session {_e(session.session_id)}">'
            f"<title>{_e(session.session_id)}: {_e(_rate(session))}</title>"
            f'<line x1="{_PAD}" y1="{bottom}" x2="{_W - _PAD}" y2="{bottom}" stroke="#8a93a6"/>'
            f'<line x1="{_PAD}" y1="{top}" x2="{_PAD}" y2="{bottom}" stroke="#8a93a6"/>'
            f'<text x="2" y="{top + 4}" font-size="9">1</text><text x="2" y="{bottom + 3}" font-size="9">0</text>'
            f'<text x="{_W - _PAD}" y="{_H - 4}" font-size="9" text-anchor="end">{last} verdicts</text>'
            f"{line}</svg>")


def render_yield(report: YieldReport) -> str:
    """Return a yield report as self-contained HTML: overall yield, curves per session, tables per part."""
    curves = "".join(
        f'<figure style="display:inline-block;margin:0 10px 6px 0"><figcaption>session '
        f"{_e(s.session_id)}</figcaption>{curve_svg(s)}</figure>" for s in report.sessions[:MAX_CURVES])
    body = (f'<h4>Mining yield</h4><div class="em-sum">{_e(_rate(report.overall))}</div>{curves}'
            + _section("By session", report.sessions, ("session_id",))
            + _section("By strategy", report.strategies, ("strategy",))
            + _section("By query", report.queries, ("query_id", "session_id", "strategy", "created_at"))
            + _section("By batch", report.batches, ("batch_id", "name", "created_at")))
    return page_html(body)


__all__ = ["curve_svg", "render_yield"]
