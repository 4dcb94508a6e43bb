"""`edgemine index --engine ray` as a real subprocess against a two-node Ray cluster on 127.0.0.1.

The driver runs from a folder unrelated to the bundle: the workers get only the items (paths of
the images) and the model's loader; the bundle is read and written by the driver alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from edgemine.bundle import load_current
from edgemine.bundle.layout import BundlePaths
from edgemine.cli.index import model_choice
from edgemine.cli.main import app
from edgemine.indexer import run_index, scan_directory
from edgemine.indexer.ray_staging import staging_dir
from tests.support.ray_cluster import TwoNodeCluster, two_nodes

TINY = ["--model", "edgemine-tiny", "--pretrained", "none"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[TwoNodeCluster]:
    with two_nodes(6390 + os.getpid() % 500) as running:
        yield running


def edgemine_index(src: Path, bundle: Path, cwd: Path, env: dict[str, str], *extra: str) -> list[str]:
    return [sys.executable, "-m", "edgemine.cli.main", "index", str(src), "--bundle", str(bundle), *TINY,
            "--batch-size", "4", "--no-progress", "--json", *extra]


def report_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_cli_indexes_through_a_two_node_cluster_like_the_local_engine(
        cluster: TwoNodeCluster, tmp_path: Path, make_images: Callable[..., list[str]]) -> None:
    src, elsewhere = tmp_path / "src", tmp_path / "elsewhere"
    elsewhere.mkdir()
    make_images(src, 16, size=(48, 40))
    (src / "g2" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
    env = {**cluster.env, "HF_HUB_OFFLINE": "1"}
    local = asdict(run_index(scan_directory(src), tmp_path / "local", model_choice("edgemine-tiny", "none", "cpu", 4),
                             batch_size=4, workers=0, progress=False))
    ray = report_of(subprocess.run(
        edgemine_index(src, tmp_path / "ray", elsewhere, env, "--engine", "ray", "--ray-address",
                       cluster.address, "--actors", "2"),
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300))
    assert sorted(os.listdir(elsewhere)) == []  # nothing written next to the driver
    assert ray["failed"] == local["failed"] and [f["image_id"] for f in ray["failed"]] == ["g2/broken.jpg"]
    assert (ray["added"], ray["embedded_now"]) == (local["added"], local["embedded_now"]) == (16, 16)
    a, b = load_current(tmp_path / "local"), load_current(tmp_path / "ray")
    assert a.image_ids == b.image_ids and b.catalog.equals(a.catalog)
    assert b.manifest.model == a.manifest.model and b.manifest.counts == a.manifest.counts
    np.testing.assert_allclose(b.embeddings, a.embeddings, atol=1e-5)


def test_sigkill_of_the_ray_driver_then_rerun_embeds_only_what_was_not_staged(
        cluster: TwoNodeCluster, tmp_path: Path, make_images: Callable[..., list[str]]) -> None:
    src, bundle, elsewhere = tmp_path / "src", tmp_path / "bundle", tmp_path / "elsewhere"
    elsewhere.mkdir()
    make_images(src, 24)
    env = {**cluster.env, "HF_HUB_OFFLINE": "1"}
    cmd = edgemine_index(src, bundle, elsewhere, env, "--engine", "ray", "--ray-address", cluster.address)
    folder = staging_dir(BundlePaths(bundle), "edgemine-tiny/none-seed0")
    proc = subprocess.Popen(cmd, cwd=elsewhere, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    shards: list[Path] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and len(shards) < 2:
            shards = sorted(folder.glob("shard-*.parquet")) if folder.is_dir() else []
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the driver was not killed mid-job: {err.decode()[-2000:]}"
    staged = {p.name for p in folder.glob("shard-*.parquet")}
    assert len(staged) >= 2 and not (bundle / "CURRENT").exists()

    report = report_of(subprocess.run(cmd, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300))
    assert report["resumed_from_journal"] >= 4 * len(staged)  # every staged shard was read back
    assert report["resumed_from_journal"] + report["embedded_now"] == 24
    assert report["published"] and report["added"] == 24 and report["failed"] == []
    assert load_current(bundle).manifest.counts.images == 24
    assert not folder.exists()


def test_ray_options_without_engine_ray_are_refused(tmp_path: Path, image_tree: tuple[Path, list[str]]) -> None:
    root, _ = image_tree
    result = CliRunner().invoke(app, ["index", str(root), "--bundle", str(tmp_path / "b"), *TINY, "--actors", "2"])
    assert result.exit_code == 2 and "need --engine ray" in result.output
    result = CliRunner().invoke(app, ["index", str(root), "--bundle", str(tmp_path / "b"), *TINY, "--engine", "spark"])
    assert result.exit_code == 2 and "--engine must be local or ray" in result.output
