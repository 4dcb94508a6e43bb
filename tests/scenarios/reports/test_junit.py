"""JUnit XML: one <testsuite> per scenario, verdicts mapped to failure / skipped / error, valid XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from edgemine.scenarios.reports import write_junit
from edgemine.scenarios.results import GateReport
from tests.support.gate_reports import gate_report, scenario


def _suites(path: Path) -> dict[str, ET.Element]:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    return {suite.attrib["name"]: suite for suite in root.findall("testsuite")}


def test_junit_has_one_suite_per_scenario_with_the_verdict_mapped(tmp_path: Path, mixed_report: GateReport) -> None:
    out = tmp_path / "reports" / "gate.xml"  # a missing folder is created
    write_junit(mixed_report, out)
    root = ET.parse(out).getroot()
    assert (root.attrib["tests"], root.attrib["failures"], root.attrib["errors"], root.attrib["skipped"]) == \
        ("5", "1", "1", "1")
    suites = _suites(out)
    assert list(suites) == ["ped-night", "wet-road", "tunnel", "day", "fog"]
    for suite in suites.values():
        assert len(suite.findall("testcase")) == 1
    fail = suites["ped-night"].find("testcase/failure")
    assert fail is not None and "dropped 0.200" in fail.attrib["message"]
    assert fail.text is not None and "0.900" in fail.text and "0.700" in fail.text and "0.0040" in fail.text
    assert suites["tunnel"].find("testcase/skipped") is not None
    assert suites["tunnel"].find("testcase/failure") is None
    error = suites["fog"].find("testcase/error")
    assert error is not None and "no member of fog has ground truth" in error.attrib["message"]
    warn = suites["wet-road"].find("testcase")
    assert warn is not None and warn.find("failure") is None and warn.find("skipped") is None
    note = warn.find("system-out")
    assert note is not None and note.text is not None and "420" in note.text and "WARN" in note.text
    assert suites["day"].find("testcase/failure") is None


def test_junit_strict_turns_insufficient_into_a_failure(tmp_path: Path) -> None:
    report = gate_report([scenario("tunnel", "INSUFFICIENT", n=12, reason="12 scored images < min_n 30")],
                         strict=True)
    write_junit(report, tmp_path / "gate.xml")
    case = _suites(tmp_path / "gate.xml")["tunnel"].find("testcase")
    assert case is not None and case.find("skipped") is None
    failure = case.find("failure")
    assert failure is not None and "min_n 30" in failure.attrib["message"]


def test_junit_escapes_markup_and_drops_characters_xml_cannot_hold(tmp_path: Path) -> None:
    nasty = 'a <b>&"quoted"</b> \x01\x1b reason ]]> end'
    report = gate_report([scenario("ped-night", "FAIL", reason=nasty)])
    write_junit(report, tmp_path / "gate.xml")
    text = (tmp_path / "gate.xml").read_text(encoding="utf-8")
    assert "\x01" not in text and "\x1b" not in text
    failure = _suites(tmp_path / "gate.xml")["ped-night"].find("testcase/failure")
    assert failure is not None
    assert failure.attrib["message"].startswith('a <b>&"quoted"</b> ') and "]]> end" in failure.attrib["message"]


def test_junit_is_written_atomically_over_an_old_report(tmp_path: Path, mixed_report: GateReport) -> None:
    out = tmp_path / "gate.xml"
    out.write_text("old")
    write_junit(mixed_report, out)
    assert ET.parse(out).getroot().tag == "testsuites"
    assert [p.name for p in tmp_path.iterdir()] == ["gate.xml"]  # no temporary file left behind
