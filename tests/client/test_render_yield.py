"""The notebook HTML of a yield report: tables and inline SVG curves, self-contained and escaped."""

from __future__ import annotations

import re

from edgemine.bundle.feedback import (
    BatchYield,
    CurvePoint,
    QueryYield,
    SessionYield,
    StrategyYield,
    YieldReport,
    YieldStats,
)
from edgemine.client.render_yield import MAX_CURVES, MAX_ROWS, render_yield
from edgemine.client.review import YieldReport as YieldView

from .test_render import EVIL, assert_self_contained, parse

SVG_TAGS = frozenset({"svg", "title", "line", "text", "polyline"})
STATS = {"reviewed": 4, "accepted": 3, "rejected": 1, "skipped": 1, "yield_rate": 0.75, "ci_low": 0.3,
         "ci_high": 0.95}
NONE = {"reviewed": 0, "accepted": 0, "rejected": 0, "skipped": 2, "yield_rate": None, "ci_low": None,
        "ci_high": None}


def session(session_id: str, curve: list[tuple[int, int, int]]) -> SessionYield:
    points = [CurvePoint(verdicts=n, at="2026-12-01T00:00:00Z", reviewed=r, accepted=a,
                         yield_rate=a / r if r else None) for n, r, a in curve]
    return SessionYield(session_id=session_id, curve=points, **STATS)


def report(sessions: list[SessionYield], queries: int = 1) -> YieldReport:
    return YieldReport(
        overall=YieldStats(**STATS),
        queries=[QueryYield(query_id=f"{EVIL}{i}", session_id=EVIL, strategy="probe", created_at="t", **STATS)
                 for i in range(queries)],
        batches=[BatchYield(batch_id="b-1", name=EVIL, created_at="t", **STATS)],
        strategies=[StrategyYield(strategy="probe", **STATS)],
        sessions=sessions)


def test_yield_report_html_is_self_contained_escaped_and_has_a_curve_per_session() -> None:
    page = render_yield(report([session(EVIL, [(1, 0, 0), (2, 1, 1), (3, 2, 1), (4, 2, 2), (5, 4, 3)])]))
    assert_self_contained(page, SVG_TAGS)
    assert "<script" not in page.lower() and "&lt;script&gt;" in page
    assert "yield 0.750 (95% interval 0.300-0.950): 3 accepted of 4 reviewed, 1 skipped" in page
    for title in ("By session", "By strategy", "By query", "By batch"):
        assert f"<h4>{title}</h4>" in page
    points = re.findall(r'<polyline points="([^"]+)"', page)
    assert len(points) == 1
    xy = [tuple(map(float, p.split(","))) for p in points[0].split()]
    assert len(xy) == 4  # the first point has nothing reviewed: no yield to draw
    assert [x for x, _ in xy] == sorted(x for x, _ in xy)  # left to right in verdict order
    assert xy[1][1] > xy[0][1]  # 1.0 -> 0.5: the curve goes down (SVG y grows downwards)


def test_nothing_reviewed_and_long_reports_are_bounded() -> None:
    many = [session(f"s{i}", [(1, 0, 0)]) for i in range(MAX_CURVES + 3)]
    page = render_yield(report(many, queries=MAX_ROWS + 5))
    assert_self_contained(page, SVG_TAGS)
    assert len(re.findall("<svg", page)) == MAX_CURVES
    assert "polyline" not in page  # no point has a yield yet
    assert f"By query (first {MAX_ROWS} of {MAX_ROWS + 5})" in page
    empty = YieldReport(overall=YieldStats(**NONE), queries=[], batches=[], strategies=[], sessions=[])
    assert "nothing reviewed yet (2 skipped)" in render_yield(empty)
    assert {tag for tag, _ in parse(render_yield(empty)).tags} <= {"div", "style", "h4"}


def test_yield_view_wraps_the_model_and_renders_it() -> None:
    model = report([session("s1", [(1, 1, 1)])])
    view = YieldView(model)
    assert view.overall is model.overall and view.sessions == model.sessions and view == YieldView(model)
    assert view._repr_html_() == render_yield(model)
    assert repr(view) == "<YieldReport yield 0.750: 3 accepted of 4 reviewed, 1 queries, 1 sessions>"
