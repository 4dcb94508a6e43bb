"""The embedder's uint8 pixel split gives the vectors of its one-step preprocessing."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from edgemine.models import load_clip
from edgemine.models.pixels import PixelEmbedder, supports_pixels


def _images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(3)
    return [Image.fromarray(rng.integers(0, 255, (30 + 9 * i, 70 - 5 * i, 3), dtype=np.uint8)) for i in range(n)]


def _clip() -> Any:
    return load_clip("edgemine-tiny", "none", device="cpu", batch_size=4)


@pytest.mark.parametrize("make", [_clip, None], ids=["clip", "fake"])
def test_pixels_then_embed_pixels_equals_preprocess_then_embed_batch(
        make: Callable[[], Any] | None, fake_embedder: Any) -> None:
    embedder = make() if make is not None else fake_embedder
    assert supports_pixels(embedder) and isinstance(embedder, PixelEmbedder)
    images = _images(5)
    pixels = np.stack([embedder.to_pixels(im) for im in images])
    assert pixels.dtype == np.uint8 and pixels.ndim == 4 and pixels.shape[-1] == 3
    one_step = embedder.embed_batch(torch.stack([embedder.preprocess(im) for im in images]))
    np.testing.assert_allclose(embedder.embed_pixels(pixels), one_step, atol=1e-6)
    # The pixel step travels to decode tasks on other machines: it must pickle without the model.
    step = pickle.loads(pickle.dumps(embedder.pixel_step()))
    np.testing.assert_array_equal(step(images[0]), pixels[0])
    assert len(pickle.dumps(embedder.pixel_step())) < 10_000
