"""`edgemine demo`: a port already in use is reported before anything is generated or indexed."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgemine.bundle.state import StateDB
from edgemine.cli import demo as demo_cli
from edgemine.cli.main import app
from edgemine.indexer import ModelChoice
from edgemine.scenarios import store


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another process-like listener holds for the test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_demo_with_a_busy_port_fails_before_indexing_and_suggests_another(tmp_path: Path, busy_port: int) -> None:
    demo_dir = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--dir", str(demo_dir), "--port", str(busy_port),
                                      "--pretrained", "none", "--scenes", "10"])
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert f"port {busy_port}" in err and "already in use" in err
    suggested = int(err.rsplit("--port", 1)[1].split()[0])
    assert suggested != busy_port
    with socket.socket() as probe:  # the suggestion is a port that is free now
        probe.bind(("127.0.0.1", suggested))
    assert not demo_dir.exists()  # nothing generated, nothing indexed


def test_demo_port_must_be_a_valid_port(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--dir", str(tmp_path / "demo"), "--port", "70000"])
    assert result.exit_code == 2
    assert "65535" in result.output  # click names the valid range
    assert not (tmp_path / "demo").exists()


def test_demo_with_ground_truth_imports_truth_and_both_models_and_prints_the_gate_commands(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_model: ModelChoice) -> None:
    monkeypatch.setattr(demo_cli, "_pick_model", lambda *a: fake_model)
    demo_dir = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--dir", str(demo_dir), "--no-serve", "--scenes", "40",
                                      "--ground-truth"])
    assert result.exit_code == 0, result.output
    data, state = demo_dir / "data", StateDB(demo_dir / "bundle" / "state.sqlite")
    frames = sum(1 for _ in (data / "ground_truth.jsonl").open())
    assert len(store.load_truth(state)) == frames > 0
    assert [(m.name, m.images, m.source) for m in store.list_models(state)] == [
        ("v7", frames, "predictions-v7.jsonl"), ("v8", frames, "predictions-v8.jsonl")]
    assert state.state_counts().get("labeled") == frames
    where = f"--scenarios {data / 'scenarios'} --bundle {demo_dir / 'bundle'}"
    for command in (f"edgemine scenario refresh {where}",
                    f"edgemine evaluate --model v8 --slice-by time_of_day {where}",
                    "edgemine gate --candidate v8 --baseline v7"):
        assert command in result.stdout
    assert sorted(p.name for p in (data / "scenarios").glob("*.yaml")) == [
        "ped-crosswalk-night.yaml", "pedestrians-day.yaml", "wet-road-reflection.yaml"]
    assert "edgemine annotations import" not in result.stdout


def test_demo_without_ground_truth_imports_nothing_and_prints_the_import_commands(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_model: ModelChoice) -> None:
    # importing ground truth marks every frame labeled, and mining skips labeled frames: by
    # default the demo leaves its frames unlabeled for mining and says how to import later
    monkeypatch.setattr(demo_cli, "_pick_model", lambda *a: fake_model)
    demo_dir = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--dir", str(demo_dir), "--no-serve", "--scenes", "20"])
    assert result.exit_code == 0, result.output
    data, bundle = demo_dir / "data", demo_dir / "bundle"
    state = StateDB(bundle / "state.sqlite")
    assert store.load_truth(state) == {} and store.list_models(state) == []
    steps = result.stdout.split("scenario regression tests")[1].strip().splitlines()
    assert [line.strip() for line in steps if "import" in line] == [
        f"edgemine annotations import {data / 'ground_truth.jsonl'} --bundle {bundle}",
        f"edgemine predictions import {data / 'predictions-v7.jsonl'} --model v7 --bundle {bundle}",
        f"edgemine predictions import {data / 'predictions-v8.jsonl'} --model v8 --bundle {bundle}"]
    assert "edgemine gate --candidate v8 --baseline v7" in steps[-1]


def test_demo_regenerates_a_data_folder_made_before_it_shipped_ground_truth(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_model: ModelChoice) -> None:
    monkeypatch.setattr(demo_cli, "_pick_model", lambda *a: fake_model)
    demo_dir = tmp_path / "demo"
    args = ["demo", "--dir", str(demo_dir), "--no-serve", "--scenes", "20"]
    assert CliRunner().invoke(app, args).exit_code == 0
    (demo_dir / "data" / "ground_truth.jsonl").unlink()  # as an older edgemine left it
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "generating 20 synthetic frames" in result.stderr
    assert (demo_dir / "data" / "ground_truth.jsonl").is_file()
