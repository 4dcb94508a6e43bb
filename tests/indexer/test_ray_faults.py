"""Ray retries a worker that dies mid-batch; a file that kills its worker on every try is reported."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgemine.bundle import load_current
from edgemine.bundle.layout import ModelInfo
from edgemine.indexer import ModelChoice, run_index, scan_directory
from edgemine.indexer.ray_engine import LOST_REASON, RayEngine
from edgemine.models.pixels import Pixels, PixelStep, ResizePixelStep

POISON_SIZE = (13, 11)


def model_of(fake_embedder: Any, dies_once: Path | None = None, poison: bool = False) -> ModelChoice:
    """A fake model whose actor dies on its first batch, or whose pixel step kills its worker.

    Local classes: cloudpickle ships them by value, so the Ray workers need not import this module.
    """

    class PoisonPixelStep(ResizePixelStep):
        """Kills the decoding worker on images of POISON_SIZE (a decoder crash), on every try."""

        def __call__(self, image: Image.Image) -> Pixels:
            if image.size == POISON_SIZE:
                os._exit(1)
            return super().__call__(image)

    class FaultyEmbedder(type(fake_embedder)):  # type: ignore[misc]
        def pixel_step(self) -> PixelStep:
            return PoisonPixelStep((8, 8)) if poison else ResizePixelStep((8, 8))

        def embed_pixels(self, pixels: Pixels) -> Any:
            if dies_once is not None and not dies_once.exists():
                dies_once.write_text("died once")
                os._exit(1)  # as an OOM kill would, mid-batch
            return super().embed_pixels(pixels)

    return ModelChoice(ModelInfo(identity="fake/v1", name="fake", pretrained="none"), FaultyEmbedder)


def test_an_actor_killed_mid_batch_is_restarted_and_nothing_is_lost(
        ray_local: Any, tmp_path: Path, make_images: Callable[..., list[str]], fake_embedder: Any) -> None:
    root = tmp_path / "src"
    ids = make_images(root, 10)
    marker = tmp_path / "died"
    report = run_index(scan_directory(root), tmp_path / "b", model_of(fake_embedder, dies_once=marker),
                       batch_size=4, workers=0, progress=False, engine=RayEngine(actors=1))
    assert marker.exists()  # an actor did die mid-batch
    assert (report.embedded_now, report.failed, report.added) == (10, [], 10)
    snap = load_current(tmp_path / "b")
    assert sorted(snap.image_ids) == sorted(ids)
    reference = type(fake_embedder)()
    for row, image_id in enumerate(snap.image_ids):
        with Image.open(root / image_id) as im:
            np.testing.assert_allclose(snap.embeddings[row], reference.embed_images([im])[0], atol=1e-6)


def test_a_file_that_kills_its_worker_on_every_try_is_reported_alone(
        ray_local: Any, tmp_path: Path, make_images: Callable[..., list[str]], fake_embedder: Any) -> None:
    root = tmp_path / "src"
    ids = make_images(root, 7)
    Image.new("RGB", POISON_SIZE, (200, 10, 10)).save(root / "g1" / "poison.png")
    report = run_index(scan_directory(root), tmp_path / "b", model_of(fake_embedder, poison=True),
                       batch_size=4, workers=0, progress=False, engine=RayEngine(actors=1))
    assert report.failed == [{"image_id": "g1/poison.png", "path": str(root / "g1" / "poison.png"),
                              "reason": LOST_REASON}]
    assert report.embedded_now == 7 and sorted(load_current(tmp_path / "b").image_ids) == sorted(ids)
