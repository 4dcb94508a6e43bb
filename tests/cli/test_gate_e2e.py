"""The issue's "done when" test: the real `edgemine gate` in a subprocess, on a real bundle.

A bundle of precomputed embeddings with tiny images; ground truth and two models' predictions
where the candidate (v8) is better overall but worse on one scenario ("night"): the gate exits 1
naming it and writes JUnit/Markdown/HTML/JSON; an equal candidate exits 0; a missing predictions
file or an unknown model exits 2; so does a stale lock.

NEEDS PARTS A, B AND C OF ISSUE 9 (annotations/predictions import, metrics and run_gate, scenario
files and locks): skipped, saying so, until they are merged; it must run (not skip) after that.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.support.live_server import child_env

N = 120
NIGHT = [f"f{i:03d}" for i in range(0, 40)]    # v7 right on all, v8 wrong on the first 14: FAIL
DAY = [f"f{i:03d}" for i in range(40, 80)]     # v7 wrong on 20, v8 right on all: PASS
REGRESSED = NIGHT[:14]


def edgemine(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the console script as CI would (`python -m edgemine.cli.main`), capturing its output."""
    return subprocess.run([sys.executable, "-m", "edgemine.cli.main", *args], cwd=cwd, env=child_env(),
                          capture_output=True, text=True, timeout=300)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def truth_label(i: int) -> str:
    return "pedestrian" if i % 2 == 0 else "car"


def other(label: str) -> str:
    return "car" if label == "pedestrian" else "pedestrian"


def write_jsonl(path: Path, labels: dict[str, str], *, score: float | None = None) -> Path:
    with path.open("w") as fh:
        for image_id, label in labels.items():
            cls: dict[str, object] = {"label": label} | ({"score": score} if score is not None else {})
            fh.write(json.dumps({"image_id": image_id, "classification": cls}) + "\n")
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle, its ground truth, v7/v8 (and an exact copy of v7) imported, two locked scenarios."""
    root = tmp_path_factory.mktemp("gate-e2e")
    data = root / "data"
    (data / "imgs").mkdir(parents=True)
    rng = np.random.default_rng(5)
    ids = [f"f{i:03d}" for i in range(N)]
    for image_id in ids:
        Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(data / "imgs" / f"{image_id}.png")
    vectors = rng.standard_normal((N, 8)).astype(np.float32)
    pq.write_table(pa.table({
        "image_id": ids, "path": [f"imgs/{i}.png" for i in ids],
        "embedding": pa.array([list(map(float, v)) for v in vectors], pa.list_(pa.float32())),
        "time_of_day": ["night" if i in NIGHT else "day" for i in ids]}), data / "emb.parquet")
    bundle = str(root / "bundle")
    ok(edgemine("index", "--embeddings", str(data / "emb.parquet"), "--embedding-model", "test",
                "--bundle", bundle, "--no-progress", cwd=root))

    truth = {image_id: truth_label(i) for i, image_id in enumerate(ids)}
    v7 = {i: (other(t) if (40 <= int(i[1:]) < 60 or 80 <= int(i[1:]) < 100) else t) for i, t in truth.items()}
    v8 = {i: (other(t) if i in REGRESSED else t) for i, t in truth.items()}
    assert sum(v8[i] == truth[i] for i in ids) > sum(v7[i] == truth[i] for i in ids)  # v8 better overall
    ok(edgemine("annotations", "import", str(write_jsonl(data / "truth.jsonl", truth)), "--bundle", bundle,
                cwd=root))
    for model, labels in (("v7", v7), ("v8", v8), ("v7-copy", v7)):
        ok(edgemine("predictions", "import", str(write_jsonl(data / f"{model}.jsonl", labels, score=0.9)),
                    "--model", model, "--bundle", bundle, cwd=root))

    scenarios = root / "scenarios"
    scenarios.mkdir()
    for name, members in (("night", NIGHT), ("day", DAY)):
        (scenarios / f"{name}.yaml").write_text(
            f"name: {name}\nmembers:\n  ids: [{', '.join(members)}]\nmetric: {{name: accuracy}}\n"
            "gate: {min_n: 30, max_drop: 0.02, alpha: 0.05}\n")
        ok(edgemine("scenario", "refresh", name, "--bundle", bundle, "--scenarios", str(scenarios), cwd=root))
        assert (scenarios / f"{name}.lock.json").is_file()
    return root


def gate(project: Path, candidate: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return edgemine("gate", "--candidate", candidate, "--baseline", "v7", "--bundle", str(project / "bundle"),
                    "--scenarios", str(project / "scenarios"), *extra, cwd=project)


def test_gate_fails_the_scenario_the_better_model_regressed_on_and_writes_every_report(project: Path) -> None:
    out = project / "reports-v8"
    result = gate(project, "v8", "--junit", str(out / "gate.xml"), "--markdown", str(out / "gate.md"),
                  "--html", str(out / "gate.html"), "--json", str(out / "gate.json"),
                  "--mine-flips", str(out / "mine.json"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "result: FAIL: 1 scenario(s) regressed: night" in result.stdout
    verdicts = {line.split()[1]: line.split()[0] for line in result.stdout.splitlines()
                if line.startswith("  ") and "aggregate" not in line}
    assert verdicts == {"night": "FAIL", "day": "PASS"}

    suites = {s.attrib["name"]: s for s in ET.parse(out / "gate.xml").getroot().findall("testsuite")}
    assert suites["night"].find("testcase/failure") is not None
    assert suites["day"].find("testcase/failure") is None
    markdown = (out / "gate.md").read_text()
    assert "| night | **FAIL** | 40 | 1.000" in markdown and "| day | PASS | 40 |" in markdown
    html = (out / "gate.html").read_text()
    # the night regressions, and the 20 images v8 fixed in "day", each as an embedded thumbnail
    assert html.count('<figure class="regressed"><img src="data:image/jpeg;base64,') == len(REGRESSED)
    assert html.count('<figure class="fixed"><img src="data:image/jpeg;base64,') == 20
    for image_id in REGRESSED:
        assert f'alt="{image_id}"' in html
    report = json.loads((out / "gate.json").read_text())
    assert report["status"] == "fail"
    night = next(s for s in report["scenarios"] if s["name"] == "night")
    assert night["discordant"] == [14, 0] and night["candidate"]["value"] == pytest.approx(26 / 40)
    assert sorted(f["image_id"] for f in night["flips"] if f["direction"] == "regressed") == REGRESSED
    assert {"ground_truth", "predictions:v8", "predictions:v7"} <= set(report["hashes"])
    assert report["aggregate"][0]["value"] > report["aggregate"][1]["value"]  # better overall
    assert sorted(json.loads((out / "mine.json").read_text())["positive_ids"]) == REGRESSED


def test_gate_of_an_equal_candidate_passes(project: Path) -> None:
    result = gate(project, "v7-copy", "--junit", str(project / "equal.xml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "result: PASS" in result.stdout
    root = ET.parse(project / "equal.xml").getroot()
    assert (root.attrib["tests"], root.attrib["failures"], root.attrib["errors"]) == ("2", "0", "0")


def test_missing_predictions_exit_2(project: Path) -> None:
    missing = edgemine("predictions", "import", str(project / "data" / "v9.jsonl"), "--model", "v9",
                       "--bundle", str(project / "bundle"), cwd=project)
    assert missing.returncode == 2 and "v9.jsonl" in missing.stderr
    result = gate(project, "v9", "--junit", str(project / "v9.xml"))
    assert result.returncode == 2
    assert "v9" in result.stderr and "predictions import" in result.stderr
    assert not (project / "v9.xml").exists()


def test_stale_lock_exits_2_asking_for_a_refresh(project: Path, tmp_path: Path) -> None:
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    for path in (project / "scenarios").iterdir():
        (scenarios / path.name).write_bytes(path.read_bytes())
    yaml = scenarios / "night.yaml"
    # its members edited (the lock covers the members block), not refreshed
    yaml.write_text(yaml.read_text().replace("metric:", "  exclude: [f039]\nmetric:"))
    result = edgemine("gate", "--candidate", "v8", "--baseline", "v7", "--bundle", str(project / "bundle"),
                      "--scenarios", str(scenarios), cwd=project)
    assert result.returncode == 2
    assert "edgemine scenario refresh night" in result.stderr
