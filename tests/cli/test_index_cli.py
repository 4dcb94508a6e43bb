"""`edgemine index`: clear one-line errors, exit codes, the lock, and a real (tiny) model run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edgemine.bundle import BundleError, load_current
from edgemine.cli.main import app
from edgemine.indexer import ModelChoice, run_index, scan_directory


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, list(args), env=env)


def assert_one_line_error(result: Any, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    err = result.stderr.strip()
    assert err.startswith("error: "), err
    assert len(err.splitlines()) == 1, err
    assert fragment in err, err
    assert "Traceback" not in result.output


def test_missing_source_path(tmp_path: Path) -> None:
    for missing in (tmp_path / "nope", tmp_path / "nope.csv"):
        result = invoke("index", str(missing), "--bundle", str(tmp_path / "b"), "--pretrained", "none")
        assert_one_line_error(result, "does not exist")
        assert str(missing.name) in result.stderr
    assert not (tmp_path / "b" / "CURRENT").exists()


def test_source_that_is_neither_directory_nor_table(tmp_path: Path) -> None:
    odd = tmp_path / "notes.txt"
    odd.write_text("hi")
    assert_one_line_error(invoke("index", str(odd), "--bundle", str(tmp_path / "b")), "neither a directory")


def test_exactly_one_source(tmp_path: Path, image_tree: tuple[Path, list[str]]) -> None:
    root, _ = image_tree
    emb = tmp_path / "e.parquet"
    emb.write_bytes(b"")
    assert_one_line_error(invoke("index", "--bundle", str(tmp_path / "b")), "exactly one of SOURCE or --embeddings")
    assert_one_line_error(invoke("index", str(root), "--embeddings", str(emb), "--bundle", str(tmp_path / "b")),
                          "exactly one of SOURCE or --embeddings")


def test_unknown_model_and_tag(tmp_path: Path, image_tree: tuple[Path, list[str]]) -> None:
    root, _ = image_tree
    assert_one_line_error(invoke("index", str(root), "--bundle", str(tmp_path / "b"), "--model", "nope-model"),
                          "unknown model 'nope-model'")
    assert_one_line_error(invoke("index", str(root), "--bundle", str(tmp_path / "b"), "--pretrained", "bogus_tag"),
                          "unknown pretrained tag 'bogus_tag'")


def test_uncached_default_weights_offline_fail_fast(tmp_path: Path, image_tree: tuple[Path, list[str]],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from edgemine.models import weights

    monkeypatch.setattr(weights, "_cached_tag_file", lambda cfg: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root, _ = image_tree
    started = time.monotonic()
    result = invoke("index", str(root), "--bundle", str(tmp_path / "b"), "--model", "ViT-B-32")
    assert time.monotonic() - started < 10
    assert_one_line_error(result, "'laion2b_s34b_b79k'")
    assert "--pretrained /path/to/ViT-B-32" in result.stderr


def test_lock_refuses_a_second_indexer(tmp_path: Path, image_tree: tuple[Path, list[str]],
                                       fake_model: ModelChoice) -> None:
    root, _ = image_tree
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    # The indexer takes a POSIX record lock (per process), so the holder must be another process.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
         "fcntl.lockf(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(120)",
         str(bundle / ".indexer.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(BundleError, match="another indexer"):
            run_index(scan_directory(root), bundle, fake_model, workers=0, progress=False)
        result = invoke("index", str(root), "--bundle", str(bundle), "--model", "edgemine-tiny",
                        "--pretrained", "none", "--workers", "0", "--no-progress")
        assert_one_line_error(result, "another indexer")
    finally:
        holder.kill()
        holder.wait()
    assert not (bundle / "CURRENT").exists()
    # released when the holder died: the next run proceeds
    assert run_index(scan_directory(root), bundle, fake_model, workers=0, progress=False).version == 1


def test_index_with_the_tiny_model(tmp_path: Path, image_tree: tuple[Path, list[str]]) -> None:
    root, ids = image_tree
    bundle = tmp_path / "bundle"
    args = ["index", str(root), "--bundle", str(bundle), "--model", "edgemine-tiny", "--pretrained", "none",
            "--workers", "0", "--batch-size", "5", "--no-progress"]
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["published"] and report["version"] == 1
    assert report["added"] == report["embedded_now"] == len(ids)
    manifest = load_current(bundle).manifest
    assert manifest.model.identity == "edgemine-tiny/none-seed0"
    assert (manifest.model.name, manifest.model.pretrained) == ("edgemine-tiny", "none")
    assert manifest.dim == 64

    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert "nothing changed, kept version 1" in again.stdout
    assert "unchanged (skipped): 12" in again.stdout

    other = invoke("index", str(root), "--bundle", str(bundle), "--model", "ViT-B-32", "--pretrained", "none")
    assert_one_line_error(other, "--rebuild")
