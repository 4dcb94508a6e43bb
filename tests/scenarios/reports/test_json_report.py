"""The JSON report: report.to_json() with the hashes and status, written atomically."""

from __future__ import annotations

import json
from pathlib import Path

from edgemine.scenarios.reports import write_json
from edgemine.scenarios.results import Evaluation, GateReport


def test_json_report_holds_every_figure_hashes_and_status(tmp_path: Path, mixed_report: GateReport) -> None:
    out = tmp_path / "out" / "gate.json"
    write_json(mixed_report, out)
    data = json.loads(out.read_text())
    assert data["candidate"] == "v8" and data["baseline"] == "v7" and data["seed"] == 3
    assert data["aggregate"][0]["value"] == 0.93 and data["scenarios"][0]["p_adjusted"] == 0.004
    assert data["scenarios"][0]["gate"] == {"min_n": 30, "max_drop": 0.02, "alpha": 0.05, "floor": None}
    assert data["status"] == "error"  # the fog scenario could not be evaluated
    assert data["hashes"]["ground_truth"] == "gt-hash"
    assert data["scenarios"][0]["lock_hash"] == "lock-ped-night"
    assert data["scenarios"][0]["flips"][1] == {"image_id": "night/r1.png", "direction": "regressed"}
    assert [p.name for p in out.parent.iterdir()] == ["gate.json"]


def test_json_report_of_an_evaluation(tmp_path: Path, evaluation: Evaluation) -> None:
    write_json(evaluation, tmp_path / "eval.json")
    data = json.loads((tmp_path / "eval.json").read_text())
    assert data["model"] == "v8" and data["rows"][1]["measurement"]["value"] == 0.7
    assert data["hashes"] == {"ground_truth": "gt", "predictions:v8": "p8"}
