"""JUnit XML for CI test reporters: one <testsuite> per scenario holding one <testcase>.

FAIL -> <failure>; INSUFFICIENT -> <skipped> (a <failure> with --strict); ERROR -> <error>;
WARN passes with a <system-out> note; PASS passes. Every testcase's <system-out> has the figures.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from edgemine.scenarios.reports.text import figures, write_text
from edgemine.scenarios.results import GateReport, ScenarioGate

# Characters XML 1.0 cannot hold at all (escaping does not help): C0 controls other than tab,
# newline and carriage return, lone surrogates, U+FFFE/U+FFFF. Replaced so the file still parses.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _outcome(s: ScenarioGate, strict: bool) -> tuple[str | None, str]:
    """Return (the child element marking the outcome or None for a pass, its type)."""
    if s.verdict == "FAIL":
        return "failure", "FAIL"
    if s.verdict == "ERROR":
        return "error", "ERROR"
    if s.verdict == "INSUFFICIENT":
        return ("failure" if strict else "skipped"), "INSUFFICIENT"
    return None, s.verdict


def _suite(s: ScenarioGate, report: GateReport) -> ET.Element:
    kind, verdict = _outcome(s, report.strict)
    suite = ET.Element("testsuite", {
        "name": _clean(s.name), "tests": "1", "time": "0",
        "failures": str(int(kind == "failure")), "errors": str(int(kind == "error")),
        "skipped": str(int(kind == "skipped"))})
    props = ET.SubElement(suite, "properties")
    for name, val in (("candidate", report.candidate), ("baseline", report.baseline), ("metric", s.metric),
                      ("verdict", s.verdict), ("lock_hash", s.lock_hash), ("seed", str(report.seed))):
        ET.SubElement(props, "property", {"name": name, "value": _clean(val)})
    case = ET.SubElement(suite, "testcase", {
        "classname": _clean(f"edgemine.gate.{s.name}"),
        "name": _clean(f"{s.name}: {s.metric} of {report.candidate} against {report.baseline}"), "time": "0"})
    body = _clean(figures(s, report))
    if kind is not None:
        outcome = ET.SubElement(case, kind, {"message": _clean(s.reason), "type": verdict})
        if kind != "skipped":
            outcome.text = body
    out = ET.SubElement(case, "system-out")
    out.text = body if s.verdict != "WARN" else f"WARN (passes): {body}"
    return suite


def render_junit(report: GateReport) -> str:
    """Return the JUnit XML document of a gate run (UTF-8 declared)."""
    suites = [_suite(s, report) for s in report.scenarios]
    root = ET.Element("testsuites", {
        "name": _clean(f"edgemine gate {report.candidate} against {report.baseline}"),
        "tests": str(len(suites)), "time": "0",
        **{key: str(sum(int(s.attrib[key]) for s in suites)) for key in ("failures", "errors", "skipped")}})
    root.extend(suites)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(report: GateReport, path: Path) -> None:
    """Write the JUnit XML report atomically."""
    write_text(path, render_junit(report))
