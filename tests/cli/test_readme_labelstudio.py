"""The README's "Annotating in Label Studio" section works as written: its commands run, its outputs are real."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from edgemine.bundle.layout import ModelInfo
from edgemine.cli.main import app
from edgemine.indexer import ModelChoice, read_embeddings_source, run_index
from edgemine.service.app import create_app
from edgemine.service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "labelstudio-1.23.2"
BYO = ModelChoice(ModelInfo(identity="byo:test", name="test", pretrained="external"), None)


def section() -> str:
    text = (ROOT / "README.md").read_text()
    assert "\n## Annotating in Label Studio\n" in text
    return text.split("\n## Annotating in Label Studio\n", 1)[1].split("\n## ", 1)[0]


def bash_lines() -> list[str]:
    """Every line of the section's bash blocks, comments included."""
    blocks = re.findall(r"```bash\n(.*?)```", section(), flags=re.DOTALL)
    return [line for block in blocks for line in block.splitlines()]


def command(prefix: str) -> tuple[list[str], int]:
    """The one command line starting with `prefix`, split as a shell would, and its index in bash_lines()."""
    lines = bash_lines()
    found = [i for i, line in enumerate(lines) if line.startswith(prefix)]
    assert len(found) == 1, f"expected one `{prefix}` line in the section, found {len(found)}"
    return shlex.split(lines[found[0]]), found[0]


@pytest.fixture
def demo_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with demo-data/bundle holding the ids of the batch annotated in Label Studio."""
    ids = [task["data"]["image_id"] for task in json.loads((FIXTURES / "edgemine-batch-export.json").read_text())]
    every = [*ids, "drive_002/frame_0003.jpg", "drive_012/frame_0023.jpg"]
    vectors = np.random.default_rng(1).standard_normal((len(every), 8)).astype(np.float32)
    source = tmp_path / "embeddings.parquet"
    pq.write_table(pa.table({"image_id": every, "embedding": pa.array(vectors.tolist(), pa.list_(pa.float32())),
                             "time_of_day": ["night"] * len(every)}), source)
    assert run_index(read_embeddings_source(source), tmp_path / "demo-data" / "bundle", BYO, progress=False).published
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(argv: list[str]) -> Any:
    assert argv[0] == "edgemine"
    return CliRunner().invoke(app, argv[1:])


def test_serve_command_allows_label_studio_origin(demo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    argv, _ = command("edgemine serve ")
    seen: dict[str, str] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *_, **__: seen.update(
        {k: v for k, v in os.environ.items() if k.startswith("EDGEMINE_")}))
    saved = dict(os.environ)
    try:
        result = run_cli(argv)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert result.exit_code == 0, result.output
    assert json.loads(seen["EDGEMINE_CORS_ORIGINS"]) == ["http://localhost:8080"]
    # and the pip line installs the Label Studio version the fixtures were made with
    pip, _ = command("python3 -m venv ls-venv")
    assert "label-studio==1.23.2" in pip and FIXTURES.name == "labelstudio-1.23.2"
    assert "--port" in pip and pip[pip.index("--port") + 1] == "8080"


def test_labeling_config_named_in_the_section_is_the_one_label_studio_ran_with() -> None:
    assert "docs/labelstudio/labeling-config.xml" in section()
    config = (ROOT / "docs" / "labelstudio" / "labeling-config.xml").read_text()
    assert config == (FIXTURES / "labeling-config.xml").read_text()
    assert '<Choices name="label"' in config and "edge_case" in config and "not_edge_case" in config


def test_our_batch_export_has_the_shape_label_studio_imported(demo_dir: Path) -> None:
    settings = Settings(bundle=demo_dir / "demo-data" / "bundle")
    with TestClient(create_app(settings)) as client:
        mined = client.post("/v1/mine", json={"positive_ids": ["drive_002/frame_0003.jpg"], "k": 20})
        assert mined.status_code == 200, mined.text
        batch = client.post("/v1/batches", json={"name": "night-crosswalk-1", "items": mined.json()["candidates"]})
        assert batch.status_code == 201, batch.text
        export = client.get(f"/v1/batches/{batch.json()['batch_id']}/export", params={"format": "labelstudio"})
    assert export.status_code == 200
    ours = export.json()
    accepted = json.loads((FIXTURES / "edgemine-batch-export.json").read_text())  # 20 of 20 imported
    assert ours and all(set(task) == set(accepted[0]) for task in ours)
    assert all(set(accepted[0]["meta"]) <= set(task["meta"]) for task in ours)
    assert all(task["data"]["image"].startswith("http://testserver/v1/images/") for task in ours)


def test_verdicts_import_command_prints_what_the_section_says(demo_dir: Path) -> None:
    argv, at = command("edgemine verdicts import ")
    export_name = argv[3]
    shutil.copy(FIXTURES / "export-JSON-with-skip.json", demo_dir / export_name)
    result = run_cli(argv)
    assert result.exit_code == 0, result.output
    printed = bash_lines()[at + 1]
    assert printed.startswith("# ")
    assert result.stdout.strip() == printed[2:]


def test_the_error_example_is_what_an_unmapped_choice_prints(demo_dir: Path) -> None:
    example = re.search(r"`(error: export\.json: .*?)`", section(), flags=re.DOTALL)
    assert example is not None
    tasks = json.loads((FIXTURES / "export-JSON.json").read_text())
    tasks[2]["annotations"][0]["result"][0]["value"]["choices"] = ["maybe"]
    (demo_dir / "export.json").write_text(json.dumps(tasks))
    result = run_cli(["edgemine", "verdicts", "import", "export.json", "--bundle", "demo-data/bundle"])
    assert result.exit_code == 2
    assert " ".join(result.stderr.split()).startswith(" ".join(example.group(1).split()))
