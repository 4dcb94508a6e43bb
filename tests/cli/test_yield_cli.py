"""`edgemine yield`: the yield report of stored verdicts, as tables or JSON."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from edgemine.bundle import StateDB
from edgemine.bundle.feedback import record_query, record_verdicts, wilson_interval, yield_report
from edgemine.cli.main import app
from edgemine.indexer import ModelChoice, run_index, scan_directory


def make_bundle(tmp_path: Path, image_tree: tuple[Path, list[str]], fake_model: ModelChoice) -> tuple[Path, list[str]]:
    root, ids = image_tree
    out = tmp_path / "bundle"
    run_index(scan_directory(root), out, fake_model, workers=0, progress=False)
    return out, ids


def test_yield_prints_tables_and_json(tmp_path: Path, image_tree: tuple[Path, list[str]],
                                      fake_model: ModelChoice) -> None:
    bundle, ids = make_bundle(tmp_path, image_tree, fake_model)
    runner = CliRunner()
    empty = runner.invoke(app, ["yield", "--bundle", str(bundle)])
    assert empty.exit_code == 0 and "no verdicts yet" in empty.output

    db = StateDB(bundle / "state.sqlite")
    record_query(db, "q-1", "s1", None, 1, "rrf", "{}")
    record_verdicts(db, [(ids[0], "accept", "q-1"), (ids[1], "reject", "q-1"), (ids[2], "reject", "q-1"),
                         (ids[3], "skip", "q-1")], session_id="s1")
    result = runner.invoke(app, ["yield", "--bundle", str(bundle)])
    assert result.exit_code == 0, result.output
    low, high = wilson_interval(1, 3)  # type: ignore[misc]
    figures = ["3", "1", "2", "1", "33.3%", f"{low:.1%}-{high:.1%}"]  # 6.1%-79.2%
    rows = {line.strip().split("  ")[0]: line.split()[-6:] for line in result.output.splitlines()
            if line.startswith("  ")}
    assert rows["all"] == rows["rrf"] == rows["s1"] == rows["q-1 (rrf)"] == figures, result.output
    assert rows["strategy"] == ["accepted", "rejected", "skipped", "yield", "95%", "interval"]
    assert "session s1 cumulative yield (reviewed:yield, last 10): 1:100% 2:50% 3:33% 3:33%" in result.output

    as_json = runner.invoke(app, ["yield", "--bundle", str(bundle), "--json", "--session", "s1"])
    assert as_json.exit_code == 0
    assert json.loads(as_json.output) == yield_report(db, session_id="s1").model_dump(mode="json")


def test_yield_on_a_folder_without_state_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["yield", "--bundle", str(tmp_path)])
    assert result.exit_code == 2 and "has no state.sqlite" in result.output
