"""Markdown: the gate table (scenario, verdict, n, intervals, drop, Holm p, test), WARN lines, Evaluation."""

from __future__ import annotations

import re

from edgemine.scenarios.reports import render_evaluation_markdown, render_markdown
from edgemine.scenarios.results import Evaluation, GateReport
from tests.support.gate_reports import gate_report, scenario


def _rows(text: str) -> list[list[str]]:
    # split on the table's pipes, not on escaped ones (\\|) inside a cell
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])] for line in text.splitlines()
            if line.startswith("|")]


def test_markdown_table_has_every_figure_per_scenario_and_the_aggregate(mixed_report: GateReport) -> None:
    text = render_markdown(mixed_report)
    rows = _rows(text)
    assert rows[0] == ["scenario", "verdict", "n", "baseline v7 [95% interval]", "candidate v8 [95% interval]",
                       "drop", "p (Holm)", "test"]
    by_name = {row[0]: row for row in rows[2:]}
    assert set(by_name) == {"ped-night", "wet-road", "tunnel", "day", "fog", "all labeled (not gated)"}
    fail = by_name["ped-night"]
    assert fail[1] == "**FAIL**"
    assert fail[2] == "50"
    assert fail[3] == "0.900 [0.850, 0.950]" and fail[4] == "0.700 [0.650, 0.750]"
    assert fail[5] == "0.200" and fail[6] == "0.0040" and fail[7] == "mcnemar-exact"
    assert by_name["day"][1] == "PASS" and by_name["day"][5] == "-0.050"
    assert by_name["fog"][3] == "-" and by_name["fog"][6] == "-"
    aggregate = by_name["all labeled (not gated)"]
    assert aggregate[2] == "400" and aggregate[3].startswith("0.900") and aggregate[4].startswith("0.930")
    assert not any(ord(ch) > 0x2FFF for ch in text)  # no emoji markers


def test_markdown_says_how_many_images_would_decide_a_warning(mixed_report: GateReport) -> None:
    text = render_markdown(mixed_report)
    warn_lines = [line for line in text.splitlines() if "wet-road" in line and not line.startswith("|")]
    assert len(warn_lines) == 1
    assert "420" in warn_lines[0] and "not significant" in warn_lines[0]
    assert text.splitlines()[0] == "## edgemine gate: v8 against v7: **ERROR**"  # fog could not be evaluated


def test_markdown_escapes_table_breaking_and_html_characters() -> None:
    report = gate_report([scenario("ped-night", "ERROR", base=None, cand=None,
                                   reason="bad | pipe <script>alert(1)</script>\nnext [line](http://x)")])
    text = render_markdown(report)
    assert "<script>" not in text
    reason_lines = [line for line in text.splitlines() if "pipe" in line]
    assert len(reason_lines) == 1 and "\\|" in reason_lines[0] and "[line]\\(http" in reason_lines[0]


def test_markdown_renders_an_evaluation_table(evaluation: Evaluation) -> None:
    text = render_evaluation_markdown(evaluation)
    rows = _rows(text)
    assert rows[0] == ["", "name", "n", "members", "unlabeled", "metric", "value [95% interval]", "interval"]
    assert [row[1] for row in rows[2:]] == ["all labeled", "ped-night", "time_of_day=night",
                                            "time_of_day=&lt;day&gt;\\|x"]
    assert rows[3][2:7] == ["50", "60", "10", "recall", "0.700 [0.650, 0.750]"]
    assert rows[5][6] == "-"
    assert "v8" in text.splitlines()[0]
