"""A killed indexing job resumes from its journal; readers never see a partial version."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edgemine.bundle import StateDB, load_current
from edgemine.bundle.layout import ModelInfo
from edgemine.indexer import ModelChoice, run_index, scan_directory


class Crash(RuntimeError):
    pass


def crashing_model(fake_embedder: Any, after_batches: int) -> ModelChoice:
    base = type(fake_embedder)

    class CrashingEmbedder(base):  # type: ignore[misc, valid-type]
        def embed_batch(self, batch: Any) -> Any:
            if self.batches >= after_batches:
                raise Crash(f"simulated crash in batch {self.batches + 1}")
            return super().embed_batch(batch)

    embedder = CrashingEmbedder()
    return ModelChoice(ModelInfo(identity="fake/v1", name="fake", pretrained="none"), lambda: embedder)


def journal_ids(bundle: Path) -> set[str]:
    with sqlite3.connect(bundle / "state.sqlite") as db:
        return {r[0] for r in db.execute("SELECT image_id FROM journal")}


@pytest.mark.parametrize("workers", [0, 2])
def test_crash_on_first_run_then_resume(tmp_path: Path, image_tree: tuple[Path, list[str]],
                                        fake_model: ModelChoice, fake_embedder: Any, workers: int) -> None:
    root, ids = image_tree
    bundle = tmp_path / "bundle"
    with pytest.raises(Crash):
        run_index(scan_directory(root), bundle, crashing_model(fake_embedder, 2), batch_size=4,
                  workers=workers, progress=False)
    assert not (bundle / "CURRENT").exists()
    assert not (bundle / "versions").exists() or not any((bundle / "versions").iterdir())
    journaled = journal_ids(bundle)
    assert len(journaled) == 8  # two batches of four committed before the crash

    report = run_index(scan_directory(root), bundle, fake_model, batch_size=4, workers=workers,
                       progress=False)
    assert report.resumed_from_journal == 8
    assert report.embedded_now == 4
    assert fake_embedder.batches == 1
    assert report.published and report.version == 1 and report.added == 12
    assert StateDB(bundle / "state.sqlite").journal_count() == 0  # cleared once published
    snap = load_current(bundle)
    assert sorted(snap.image_ids) == sorted(ids)
    reference = type(fake_embedder)()
    for row, image_id in enumerate(snap.image_ids):
        with Image.open(root / image_id) as im:
            np.testing.assert_allclose(snap.embeddings[row], reference.embed_images([im])[0], atol=1e-6)


def test_crash_while_updating_keeps_the_old_version(tmp_path: Path, image_tree: tuple[Path, list[str]],
                                                    fake_model: ModelChoice, fake_embedder: Any,
                                                    make_images: Callable[..., list[str]]) -> None:
    root, ids = image_tree
    bundle = tmp_path / "bundle"
    run_index(scan_directory(root), bundle, fake_model, batch_size=4, workers=0, progress=False)
    new_ids = make_images(root, 10, seed=3, prefix="new")

    with pytest.raises(Crash):
        run_index(scan_directory(root), bundle, crashing_model(fake_embedder, 1), batch_size=4,
                  workers=0, progress=False)
    assert (bundle / "CURRENT").read_text().strip() == "v000001"
    old = load_current(bundle)
    assert sorted(old.image_ids) == sorted(ids)
    assert sorted(p.name for p in (bundle / "versions").iterdir()) == ["v000001"]
    assert len(journal_ids(bundle)) == 4

    # Changing a journaled file invalidates its journal entry (fingerprint differs).
    stale = sorted(journal_ids(bundle))[0]
    st = (root / stale).stat()
    os.utime(root / stale, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

    report = run_index(scan_directory(root), bundle, fake_model, batch_size=4, workers=0, progress=False)
    assert report.resumed_from_journal == 3
    assert report.embedded_now == 7
    assert (report.added, report.unchanged, report.version) == (10, 12, 2)
    assert sorted(load_current(bundle).image_ids) == sorted(ids + new_ids)


def test_sigkill_mid_run_then_resume(tmp_path: Path, make_images: Callable[..., list[str]]) -> None:
    src, bundle = tmp_path / "src", tmp_path / "bundle"
    make_images(src, 64)
    cmd = [sys.executable, "-m", "edgemine.cli.main", "index", str(src), "--bundle", str(bundle),
           "--model", "ViT-B-32", "--pretrained", "none", "--batch-size", "8", "--workers", "1",
           "--no-progress", "--json"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    db_path = bundle / "state.sqlite"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    rows = 0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if db_path.exists():
                try:
                    with sqlite3.connect(f"file:{db_path}?mode=rw", uri=True, timeout=1) as db:
                        rows = db.execute("SELECT COUNT(*) FROM journal").fetchone()[0]
                except sqlite3.OperationalError:
                    rows = 0  # schema not created yet
                if rows >= 16:
                    break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            # Only the main process, as `kill -9 PID` does: its decode worker outlives it for a
            # few seconds and must not block the resuming run (it once held the lock).
            os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    assert rows >= 16, f"journal reached only {rows} rows (rc={proc.returncode}): {err.decode()[-2000:]}"
    assert proc.returncode == -signal.SIGKILL, "the indexer finished before it could be killed"
    assert not (bundle / "CURRENT").exists()

    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the orphaned worker, if still there
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["resumed_from_journal"] >= 16
    assert report["resumed_from_journal"] + report["embedded_now"] == 64
    assert report["published"] and report["version"] == 1 and report["added"] == 64
    snap = load_current(bundle)
    assert snap.manifest.model.identity == "ViT-B-32/none-seed0"
    assert snap.manifest.dim == 512 and snap.manifest.counts.images == 64
    np.testing.assert_allclose(np.linalg.norm(snap.embeddings, axis=1), 1.0, atol=1e-5)
