"""`edgemine evaluate`: tables per scenario and aggregate, slices worst first, JSON, clear errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edgemine.bundle import StateDB
from edgemine.cli import evaluate as cli_evaluate
from edgemine.cli.main import app
from edgemine.scenarios.evaluate import evaluate_records
from edgemine.scenarios.records import ImageRecord
from edgemine.scenarios.results import Evaluation, LockedScenario
from edgemine.scenarios.spec import GateSpec, MetricSpec
from tests.support.byo_bundle import byo_bundle

IDS = [f"im{i:03d}" for i in range(40)]
TRUTH = {i: ImageRecord(i, "classification", label="ped") for i in IDS}
PREDS = {i: ImageRecord(i, "classification", label="car" if k < 8 else "ped", score=0.9) for k, i in enumerate(IDS)}
NIGHT = LockedScenario("night", MetricSpec(name="accuracy"), GateSpec(), tuple(IDS[:20]), "lock-night")


@pytest.fixture
def state_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with a state database (the library calls are stubbed: this tests the CLI edge)."""
    StateDB(tmp_path / "state.sqlite")
    monkeypatch.chdir(tmp_path)  # no ./scenarios folder here
    return tmp_path


def _stub(monkeypatch: pytest.MonkeyPatch, calls: list[dict[str, Any]]) -> None:
    def fake(state: StateDB, model: str, scenarios: Sequence[LockedScenario], *, slice_by: Sequence[str] = (),
             seed: int = 0, metric: MetricSpec | None = None) -> Evaluation:
        calls.append({"model": model, "scenarios": [s.name for s in scenarios], "slice_by": list(slice_by),
                      "seed": seed})
        metadata = {c: {i: "night" if k < 20 else "day" for k, i in enumerate(IDS)} for c in slice_by}
        return evaluate_records(model, TRUTH, PREDS, scenarios, metadata=metadata, seed=seed,
                                hashes={"ground_truth": "h"})
    monkeypatch.setattr(cli_evaluate.evaluation, "evaluate", fake)
    monkeypatch.setattr(cli_evaluate, "load_scenarios", lambda folder, state: [NIGHT])


def test_evaluate_prints_aggregate_scenarios_and_slices_worst_first(state_bundle: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    _stub(monkeypatch, calls)
    (state_bundle / "scen").mkdir()
    out = state_bundle / "eval.json"
    result = CliRunner().invoke(app, ["evaluate", "--model", "v8", "--slice-by", "time_of_day", "--scenarios",
                                      str(state_bundle / "scen"), "--json", str(out), "--seed", "3",
                                      "--bundle", str(state_bundle)])
    assert result.exit_code == 0, result.output
    assert calls == [{"model": "v8", "scenarios": ["night"], "slice_by": ["time_of_day"], "seed": 3}]
    lines = result.output.splitlines()
    titles = [line for line in lines if line.endswith(":")]
    assert titles == ["all labeled images:", "scenarios:", "metadata slices, worst first:"]
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("  ") and line.split()[0] != "n"}
    assert rows["all"][:5] == ["labeled", "40", "accuracy", "0.800", rows["all"][4]]
    assert rows["night"][:4] == ["20", "accuracy", "0.600", rows["night"][3]] and rows["night"][4] == "wilson"
    order = [line.split()[0] for line in lines if line.startswith("  time_of_day=")]
    assert order == ["time_of_day=night", "time_of_day=day"]
    written = json.loads(out.read_text())
    assert written["model"] == "v8" and [r["name"] for r in written["rows"]][:2] == ["all labeled", "night"]


def test_evaluate_without_scenarios_folder_scores_the_aggregate_only(state_bundle: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    _stub(monkeypatch, calls)
    result = CliRunner().invoke(app, ["evaluate", "--model", "v8", "--bundle", str(state_bundle)])
    assert result.exit_code == 0, result.output
    assert calls[0]["scenarios"] == [] and "scenarios:" not in result.output


def test_evaluate_errors_are_one_clear_line(state_bundle: Path, tmp_path: Path) -> None:
    missing = CliRunner().invoke(app, ["evaluate", "--model", "v8", "--bundle", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "has no state.sqlite" in missing.output
    no_folder = CliRunner().invoke(app, ["evaluate", "--model", "v8", "--scenarios", str(tmp_path / "none"),
                                         "--bundle", str(state_bundle)])
    assert no_folder.exit_code == 2 and "scenarios folder" in no_folder.output


def test_evaluate_end_to_end_on_imported_truth_and_predictions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgemine.scenarios import store

    bundle = byo_bundle(tmp_path, IDS, ["night" if k < 20 else "day" for k in range(40)])
    truth = tmp_path / "truth.jsonl"
    truth.write_text("".join(json.dumps({"image_id": i, "detections": [{"label": "ped", "box": [5, 5, 10, 20]}]})
                             + "\n" for i in IDS))
    preds = tmp_path / "v8.jsonl"
    preds.write_text("".join(json.dumps({"image_id": i, "detections": [
        {"label": "ped", "box": [5, 5, 10, 20] if k >= 10 else [50, 50, 5, 5], "score": 0.8}]}) + "\n"
        for k, i in enumerate(IDS)))
    state = StateDB(bundle / "state.sqlite")
    store.import_annotations(state, truth)
    store.import_predictions(state, preds, "v8")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(app, ["evaluate", "--model", "v8", "--slice-by", "time_of_day", "--json", str(out),
                                      "--bundle", str(bundle)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert [(r["name"], r["measurement"]["value"]) for r in rows] == [
        ("all labeled", 0.75), ("time_of_day=night", 0.5), ("time_of_day=day", 1.0)]
    assert rows[0]["measurement"]["metric"] == "recall"
    assert set(json.loads(out.read_text())["hashes"]) == {"ground_truth", "predictions:v8"}


def test_evaluate_metric_options_are_checked(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "state.sqlite").touch()
    bad = CliRunner().invoke(app, ["evaluate", "--model", "v8", "--metric", "iou", "--bundle", str(bundle)])
    assert bad.exit_code == 2 and "--metric" in bad.output
    orphan = CliRunner().invoke(app, ["evaluate", "--model", "v8", "--classes", "ped", "--bundle", str(bundle)])
    assert orphan.exit_code == 2 and "--classes needs --metric" in orphan.output
