"""The README's scenario walkthrough on the demo: the figures it quotes are what the commands print."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgemine.cli import demo as demo_cli
from edgemine.cli.main import app
from edgemine.indexer import ModelChoice

README = Path(__file__).resolve().parents[2] / "README.md"


def walkthrough_table() -> dict[str, tuple[int, str, str]]:
    """Rows of the README's walkthrough table: name -> (n, v7 cell, v8 cell)."""
    section = README.read_text().split("### Walkthrough: a slice the aggregate hides", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([a-z -]+) \| (\d+) \| ([0-9.\[\], ]+) \| ([0-9.\[\], ]+) \|$", section, re.M)
    return {name: (int(n), v7.strip(), v8.strip()) for name, n, v7, v8 in rows}


def cell(row: dict[str, object]) -> str:
    m = row["measurement"]
    assert isinstance(m, dict)
    return f"{m['value']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"


def test_readme_walkthrough_figures_and_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    fake_model: ModelChoice) -> None:
    # the ground truth and the simulated predictions do not depend on the embedding model
    monkeypatch.setattr(demo_cli, "_pick_model", lambda *a: fake_model)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["demo", "--ground-truth", "--no-serve"]).exit_code == 0
    where = ["--scenarios", "demo-data/data/scenarios", "--bundle", "demo-data/bundle"]
    assert runner.invoke(app, ["scenario", "refresh", *where]).exit_code == 0
    table = walkthrough_table()
    assert set(table) == {"all labeled", "ped-crosswalk-night", "pedestrians-day", "wet-road-reflection"}
    for column, model in ((1, "v7"), (2, "v8")):
        result = runner.invoke(app, ["evaluate", "--model", model, "--json", f"{model}.json", *where])
        assert result.exit_code == 0, result.output
        rows = {r["name"]: r for r in json.loads(Path(f"{model}.json").read_text())["rows"]}
        for name, expected in table.items():
            if name == "wet-road-reflection":  # members partly from a mining query: they follow the weights
                continue
            assert (rows[name]["measurement"]["n"], cell(rows[name])) == (expected[0], expected[column]), name
    gate = runner.invoke(app, ["gate", "--candidate", "v8", "--baseline", "v7", *where, "--markdown", "gate.md",
                               "--html", "gate.html", "--junit", "gate.xml"])
    assert gate.exit_code == 1, gate.output
    quoted = re.search(r"`(FAIL\s+ped-crosswalk-night recall .*?)`", README.read_text(), re.S)
    assert quoted is not None
    assert " ".join(quoted.group(1).split()) in " ".join(gate.output.split())
    assert all(Path(name).is_file() for name in ("gate.md", "gate.html", "gate.xml"))
    assert runner.invoke(app, ["gate", "--candidate", "v7", "--baseline", "v7", *where]).exit_code == 0
    assert runner.invoke(app, ["gate", "--candidate", "v9", "--baseline", "v7", *where]).exit_code == 2
