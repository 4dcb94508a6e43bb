"""The README's "Python" snippet runs verbatim against a live `edgemine serve` on a small demo bundle."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from edgemine.cli.main import app
from edgemine.client import LocalBackend

README = Path(__file__).resolve().parents[2] / "README.md"
README_URL = "http://127.0.0.1:8000"
README_CONNECT = 'edgemine.connect("http://127.0.0.1:8000", api_key=None)'


def python_snippet() -> str:
    """The first ```python block of the README's `## Python` section."""
    section = README.read_text().split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, "the README's Python section has no python code block"
    return str(blocks[0])


@dataclass
class DemoBundle:
    """A demo bundle (60 frames, edgemine-tiny with random weights), as the client conftest's `server` wants."""

    path: Path


@pytest.fixture
def api_bundle(tmp_path: Path) -> DemoBundle:
    """Overrides the client conftest's bundle, so that its `server` fixture serves a demo bundle."""
    demo = tmp_path / "demo-data"
    result = CliRunner().invoke(app, ["demo", "--no-serve", "--dir", str(demo), "--scenes", "60",
                                      "--model", "edgemine-tiny", "--pretrained", "none", "--workers", "0"])
    assert result.exit_code == 0, result.output
    return DemoBundle(demo / "bundle")


@contextmanager
def run_snippet(code: str, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Execute the snippet in `cwd`; yield its variables; close its client afterwards."""
    monkeypatch.chdir(cwd)  # the snippet writes tasks.json into the working directory
    namespace: dict[str, Any] = {"__name__": "readme_snippet"}
    try:
        exec(compile(code, str(README), "exec"), namespace)
        yield namespace
    finally:
        if "em" in namespace:
            namespace["em"].close()


def check_effects(ns: dict[str, Any], cwd: Path) -> None:
    """What the snippet did: mined like the failures, queued and exported them, marked them labeled."""
    assert ns["failures"], "the demo has no night-crosswalk frame to start from"
    res, batch = ns["res"], ns["batch"]
    assert 0 < len(res) <= 50 and res.ids == [c.image_id for c in res.candidates]
    assert all(c.metadata["time_of_day"] == "night" for c in res.candidates)
    assert batch.name == "night-crosswalk-1" and batch.ids == res.ids
    tasks = json.loads((cwd / "tasks.json").read_text())
    assert [t["data"]["image_id"] for t in tasks] == res.ids
    assert all(item.state == "labeled" for item in batch.refresh().items)


def test_readme_python_snippet_runs_verbatim_against_a_live_service(
        server: str, api_bundle: DemoBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = python_snippet()
    # The only change: the service's port (8000 may be taken here; the test's server has its own).
    assert code.count(README_URL) == 1
    with run_snippet(code.replace(README_URL, server), tmp_path, monkeypatch) as ns:
        check_effects(ns, tmp_path)
        assert ns["em"].backend.url == server  # it did go over HTTP
        labeled = len(ns["res"])
    health = httpx.get(f"{server}/v1/health", timeout=10).json()
    assert health["counts"]["queued"] == 0 and health["counts"]["labeled"] >= labeled


def test_readme_python_snippet_runs_on_a_local_bundle_too(
        api_bundle: DemoBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = python_snippet()
    assert code.count(README_CONNECT) == 1  # the comment's alternative: edgemine.open(bundle)
    local = code.replace(README_CONNECT, f"edgemine.open({str(api_bundle.path)!r})")
    with run_snippet(local, tmp_path, monkeypatch) as ns:
        check_effects(ns, tmp_path)
        assert isinstance(ns["em"].backend, LocalBackend)
