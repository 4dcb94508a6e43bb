"""`edgemine gate`: exit codes, the summary, the reports and --mine-flips, over hand-built GateReports.

The gate library itself (load_locked, run_gate) is replaced here; tests/cli/test_gate_e2e.py runs
the real thing end to end.
"""

from __future__ import annotations

import json
import re
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner, Result

import edgemine.cli.gate as gate_cli
from edgemine.cli.main import app
from edgemine.scenarios.errors import LockError, UnknownModel
from edgemine.scenarios.results import Flip, GateReport
from edgemine.service.limits import MAX_EXAMPLES
from tests.support.gate_reports import gate_report, mixed_report, scenario


def _run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, report: GateReport | Exception, *args: str) -> Result:
    """Run `edgemine gate` with compute_report answering `report` (or raising it)."""
    def compute(*_a: Any, **_k: Any) -> GateReport:
        if isinstance(report, Exception):
            raise report
        return report

    monkeypatch.setattr(gate_cli, "compute_report", compute)
    monkeypatch.setattr(gate_cli, "bundle_thumbnails", lambda bundle: lambda image_id: None)
    return CliRunner().invoke(app, ["gate", "--candidate", "v8", "--baseline", "v7",
                                    "--bundle", str(tmp_path / "bundle"), *args])


def _report_args(tmp_path: Path) -> list[str]:
    out = tmp_path / "out"
    return ["--junit", str(out / "gate.xml"), "--markdown", str(out / "gate.md"), "--html", str(out / "gate.html"),
            "--json", str(out / "gate.json")]


def _written(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "out").iterdir())


def test_gate_passing_exits_0_with_a_summary_and_every_report(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    report = gate_report([scenario("day", "PASS"), scenario("wet-road", "WARN", decisive_n=300),
                          scenario("tunnel", "INSUFFICIENT", n=10)])
    result = _run(monkeypatch, tmp_path, report, *_report_args(tmp_path))
    assert result.exit_code == 0, result.output
    assert "result: PASS" in result.stdout
    assert [line.split()[0] for line in result.stdout.splitlines()[1:4]] == ["PASS", "WARN", "INSUFFICIENT"]
    assert _written(tmp_path) == ["gate.html", "gate.json", "gate.md", "gate.xml"]
    assert json.loads((tmp_path / "out" / "gate.json").read_text())["status"] == "pass"


def test_gate_regression_exits_1_naming_the_scenario_and_still_writes_reports(monkeypatch: pytest.MonkeyPatch,
                                                                              tmp_path: Path) -> None:
    report = gate_report([scenario("day", "PASS"), scenario("ped-night", "FAIL", base=0.9, cand=0.6,
                                                            reason="recall dropped 0.300")])
    result = _run(monkeypatch, tmp_path, report, *_report_args(tmp_path))
    assert result.exit_code == 1, result.output
    assert "result: FAIL: 1 scenario(s) regressed: ped-night" in result.stdout
    assert _written(tmp_path) == ["gate.html", "gate.json", "gate.md", "gate.xml"]
    failures = ET.parse(tmp_path / "out" / "gate.xml").getroot().findall("testsuite/testcase/failure")
    assert len(failures) == 1 and failures[0].attrib["message"] == "recall dropped 0.300"


def test_gate_strict_makes_insufficient_a_regression(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    report = gate_report([scenario("tunnel", "INSUFFICIENT", n=10)], strict=True)
    result = _run(monkeypatch, tmp_path, report, "--strict")
    assert result.exit_code == 1 and "regressed: tunnel" in result.stdout


def test_gate_error_verdict_exits_2_with_reports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result = _run(monkeypatch, tmp_path, mixed_report(), *_report_args(tmp_path))
    assert result.exit_code == 2, result.output
    assert "result: ERROR: could not evaluate fog" in result.stdout
    assert _written(tmp_path) == ["gate.html", "gate.json", "gate.md", "gate.xml"]


@pytest.mark.parametrize("error", [
    LockError("scenario ped-night: lock is stale; run `edgemine scenario refresh ped-night`"),
    UnknownModel("v8", ["v7"]),
])
def test_gate_missing_lock_or_model_exits_2_with_one_line_and_no_report(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: Exception) -> None:
    result = _run(monkeypatch, tmp_path, error, *_report_args(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {error}"
    assert not (tmp_path / "out").exists()


def test_gate_with_no_scenarios_or_no_folder_exits_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[dict[str, Any]] = []
    lock = types.ModuleType("edgemine.scenarios.lock")
    lock.load_locked = lambda folder, state: []  # type: ignore[attr-defined]
    gate = types.ModuleType("edgemine.scenarios.gate")
    gate.run_gate = lambda *a, **k: calls.append(k)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "edgemine.scenarios.lock", lock)
    monkeypatch.setitem(sys.modules, "edgemine.scenarios.gate", gate)
    monkeypatch.setattr(gate_cli, "bundle_state", lambda bundle, url: object())
    folder = tmp_path / "scenarios"
    args = ["gate", "--candidate", "v8", "--baseline", "v7", "--scenarios", str(folder)]
    missing = CliRunner().invoke(app, args)
    assert missing.exit_code == 2 and "scenarios folder" in missing.stderr and "--scenarios" in missing.stderr
    folder.mkdir()
    empty = CliRunner().invoke(app, args)
    assert empty.exit_code == 2 and "no scenarios in" in empty.stderr
    assert calls == []


def test_gate_passes_strict_and_seed_to_run_gate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def run_gate(state: object, candidate: str, baseline: str, scenarios: list[str], **kw: Any) -> GateReport:
        seen.update(candidate=candidate, baseline=baseline, scenarios=scenarios, **kw)
        return gate_report([scenario("day", "PASS")])

    monkeypatch.setattr(gate_cli, "load_locked", lambda folder, state: ["locked"])
    monkeypatch.setattr(gate_cli, "run_gate", run_gate)
    monkeypatch.setattr(gate_cli, "bundle_state", lambda bundle, url: object())
    (tmp_path / "scenarios").mkdir()
    result = CliRunner().invoke(app, ["gate", "--candidate", "v8", "--baseline", "v7", "--strict", "--seed", "7",
                                      "--scenarios", str(tmp_path / "scenarios")])
    assert result.exit_code == 0, result.output
    assert seen == {"candidate": "v8", "baseline": "v7", "scenarios": ["locked"], "strict": True, "seed": 7}


def test_gate_without_a_state_database_exits_2(tmp_path: Path) -> None:
    (tmp_path / "scenarios").mkdir()
    result = CliRunner().invoke(app, ["gate", "--candidate", "v8", "--baseline", "v7",
                                      "--bundle", str(tmp_path), "--scenarios", str(tmp_path / "scenarios")])
    assert result.exit_code == 2 and "has no state.sqlite" in result.stderr


def test_mine_flips_prints_the_regressed_flips_of_failed_scenarios_as_a_mine_body(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    report = gate_report([
        scenario("ped-night", "FAIL", flips=[Flip("r1", "regressed"), Flip("f1", "fixed"), Flip("r2", "regressed")]),
        scenario("wet-road", "WARN", flips=[Flip("w1", "regressed")]),  # not failed: not mined
        scenario("rain", "FAIL", flips=[Flip("r2", "regressed"), Flip("r3", "regressed")]),
    ])
    result = _run(monkeypatch, tmp_path, report, "--mine-flips", "-")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"positive_ids": ["r1", "r2", "r3"]}  # stdout holds only the body
    assert "result: FAIL" in result.stderr


def test_mine_flips_to_a_file_is_capped_at_the_services_example_limit(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    flips = [Flip(f"img-{i:04d}", "regressed") for i in range(MAX_EXAMPLES + 40)]
    out = tmp_path / "mine.json"
    result = _run(monkeypatch, tmp_path, gate_report([scenario("ped-night", "FAIL", flips=flips)]),
                  "--mine-flips", str(out))
    assert result.exit_code == 1
    body = json.loads(out.read_text())
    assert body == {"positive_ids": [f.image_id for f in flips[:MAX_EXAMPLES]]}
    assert f"{MAX_EXAMPLES + 40} regressed flips" in result.stderr
    assert "result: FAIL" in result.stdout


def test_mine_flips_without_a_failure_writes_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    out = tmp_path / "mine.json"
    result = _run(monkeypatch, tmp_path, gate_report([scenario("day", "PASS")]), "--mine-flips", str(out))
    assert result.exit_code == 0 and not out.exists()
    assert "no failed scenario has regressed flips" in result.stderr


def test_gate_report_that_cannot_be_written_exits_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = _run(monkeypatch, tmp_path, gate_report([scenario("day", "PASS")]),
                  "--junit", str(blocker / "gate.xml"))
    assert result.exit_code == 2 and "cannot write the report" in result.stderr


def test_ci_workflow_example_runs_the_gate_with_options_that_exist() -> None:
    workflow = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "ci" / "edgemine-gate.yml").read_text())
    scripts = [step.get("run", "") for step in workflow["jobs"]["gate"]["steps"]]
    gate_script = next(s for s in scripts if "edgemine gate" in s).replace("\\\n", " ")
    used = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", gate_script))
    command: Any = typer.main.get_command(app).commands["gate"]  # type: ignore[attr-defined]
    known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    assert {"--candidate", "--baseline", "--junit", "--markdown"} <= used <= known
    assert any("GITHUB_STEP_SUMMARY" in s and "gate.md" in s for s in scripts)
