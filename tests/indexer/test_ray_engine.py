"""The Ray Data engine gives the local engine's results: ids, vectors, failures, bundle; it resumes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from edgemine.bundle import BundleError, StateDB, load_current
from edgemine.bundle.layout import BundlePaths, ModelInfo
from edgemine.indexer import IndexReport, ModelChoice, run_index, scan_directory
from edgemine.indexer.ray_engine import RayEngine
from edgemine.indexer.ray_staging import STAGING, read_staged, staging_dir


def corrupt_tree(root: Path, make_images: Callable[..., list[str]]) -> list[str]:
    """20 images, one truncated JPEG and one text file named .jpg; return the good ids."""
    ids = make_images(root, 20, size=(40, 30))
    good = root / ids[0]
    (root / "g0" / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0" + good.read_bytes()[4:60])
    (root / "g1" / "notes.jpg").write_text("not an image")
    return ids


def index(root: Path, bundle: Path, model: ModelChoice, engine: Any = None, **kw: Any) -> IndexReport:
    return run_index(scan_directory(root), bundle, model, batch_size=4, workers=0, progress=False,
                     engine=engine, **kw)


def reasons(report: IndexReport) -> dict[str, str | None]:
    return {str(f["image_id"]): f["reason"] for f in report.failed}


def test_ray_engine_gives_the_local_engines_ids_vectors_failures_and_bundle_on_gpu_actors(
        ray_local: Any, tmp_path: Path, make_images: Callable[..., list[str]], fake_model: ModelChoice) -> None:
    root = tmp_path / "src"
    ids = corrupt_tree(root, make_images)
    local = index(root, tmp_path / "local", fake_model)
    engine = RayEngine(actors=2, gpus_per_actor=0.5)  # the session's Ray has one logical GPU
    ray = index(root, tmp_path / "ray", fake_model, engine)
    # decode tasks and embedding actors stay separate operators (not fused: decoding overlaps)
    assert "MapBatches(decode_batch)->MapBatches(EmbedActor)" not in engine.stats_text, engine.stats_text
    assert "MapBatches(decode_batch)" in engine.stats_text and "MapBatches(EmbedActor)" in engine.stats_text

    assert reasons(ray) == reasons(local)
    assert set(reasons(ray)) == {"g0/truncated.jpg", "g1/notes.jpg"}
    assert (ray.added, ray.embedded_now, ray.published) == (local.added, local.embedded_now, True) == (20, 20, True)
    a, b = load_current(tmp_path / "local"), load_current(tmp_path / "ray")
    assert a.image_ids == b.image_ids and sorted(b.image_ids) == sorted(ids)
    np.testing.assert_allclose(b.embeddings, a.embeddings, atol=1e-6)
    assert b.catalog.equals(a.catalog)
    assert b.manifest.counts == a.manifest.counts
    failures = [json.loads(x) for x in (tmp_path / "ray" / "reports" / "failures.jsonl").read_text().splitlines()]
    assert {f["image_id"]: f["reason"] for f in failures} == reasons(local)
    assert not (tmp_path / "ray" / STAGING).exists()  # discarded once published


def test_ray_engine_reuses_staged_shards_of_an_interrupted_run(
        ray_local: Any, tmp_path: Path, make_images: Callable[..., list[str]], fake_model: ModelChoice,
        fake_embedder: Any) -> None:
    root, bundle = tmp_path / "src", tmp_path / "b"
    make_images(root, 12)
    crash_after = 2

    class Interrupted(RuntimeError):
        pass

    class Stop(RayEngine):
        """Killed after staging its 2nd shard, before the driver journals it."""

        def embed(self, job: Any, on_batch: Any, on_failures: Any) -> Any:
            def stop_after(items: Any, vecs: Any) -> None:
                self.batches = getattr(self, "batches", 0) + 1
                if self.batches >= crash_after:
                    raise Interrupted
                on_batch(items, vecs)
            return super().embed(job, stop_after, on_failures)

    with pytest.raises(Interrupted):
        index(root, bundle, fake_model, Stop(actors=1))
    folder = staging_dir(BundlePaths(bundle), fake_model.info.identity)
    staged = read_staged(folder, fake_embedder.dim)
    assert len(staged) == 8 and not (bundle / "CURRENT").exists()
    assert StateDB(bundle / "state.sqlite").journal_count() == 4  # the 2nd shard never reached it
    shard = sorted(folder.glob("shard-*.parquet"))[0]
    assert pq.read_table(shard).column_names == ["id", "fingerprint", "embedding", "error"]

    report = index(root, bundle, fake_model, RayEngine(actors=1))
    # 4 from the journal, 4 from the shard staged but not journaled; only 4 embedded again
    assert report.resumed_from_journal == 8 and report.embedded_now == 4 and report.added == 12
    snap = load_current(bundle)
    reference = type(fake_embedder)()
    for row, image_id in enumerate(snap.image_ids):
        with Image.open(root / image_id) as im:
            np.testing.assert_allclose(snap.embeddings[row], reference.embed_images([im])[0], atol=1e-6)


def test_ray_engine_without_the_pixel_split_is_refused(tmp_path: Path, image_tree: tuple[Path, list[str]]) -> None:
    class NoPixels:
        identity, dim = "nopix/v1", 4

    model = ModelChoice(ModelInfo(identity="nopix/v1", name="nopix", pretrained="none"), NoPixels)  # type: ignore[arg-type]
    root, _ = image_tree
    with pytest.raises(BundleError, match="no uint8 pixel step"):
        index(root, tmp_path / "b", model, RayEngine())


def test_nothing_imports_ray_without_engine_ray() -> None:
    code = ("import sys, edgemine.cli.main, edgemine.cli.index, edgemine.indexer.job, "
            "edgemine.indexer.ray_engine, edgemine.indexer.ray_ivf; "
            "print(sorted(m for m in sys.modules if m == 'ray'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
