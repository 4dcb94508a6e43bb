"""The embedder's input split in two: uint8 pixels (CPU, anywhere) and the model's tensor step.

A distributed engine decodes and resizes images in CPU tasks and ships uint8 pixels (4x smaller
than float32) to the model; the model normalises them. `PixelEmbedder` is the optional half of the
embedder interface that makes this possible; `to_pixels` + `embed_pixels` give the same vectors
as `preprocess` + `embed_batch` (up to float rounding).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from PIL import Image

from edgemine.models.base import Embedder
from edgemine.models.vectors import Vectors

Pixels = npt.NDArray[np.uint8]
PixelStep = Callable[[Image.Image], Pixels]


@runtime_checkable
class PixelEmbedder(Embedder, Protocol):
    """An embedder whose preprocessing splits into a uint8 pixel step and a tensor step."""

    def pixel_step(self) -> PixelStep:
        """Return a picklable function: decoded RGB image -> uint8 H x W x C input pixels."""
        ...

    def to_pixels(self, image: Image.Image) -> Pixels:
        """Resize/crop one decoded image to the model's uint8 H x W x C input pixels."""
        ...

    def embed_pixels(self, pixels: Pixels) -> Vectors:
        """Embed a batch of uint8 pixels (N x H x W x C) from `to_pixels`."""
        ...


def as_pixels(image: Image.Image) -> Pixels:
    """Return an RGB image's pixels as a C-contiguous uint8 H x W x 3 array."""
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


class ComposedPixelStep:
    """The PIL-side prefix of a torchvision Compose (resize, crop...) followed by `as_pixels`."""

    def __init__(self, transforms: list[Callable[[Image.Image], Image.Image]]) -> None:
        self.transforms = transforms

    def __call__(self, image: Image.Image) -> Pixels:
        """Apply the PIL transforms, then return uint8 pixels."""
        for transform in self.transforms:
            image = transform(image)
        return as_pixels(image)


def supports_pixels(embedder: object) -> bool:
    """Return True when `embedder` implements the uint8 pixel split."""
    return isinstance(embedder, PixelEmbedder)


class ResizePixelStep:
    """A pixel step that only resizes to a fixed (width, height): for small embedders and fakes."""

    def __init__(self, size: tuple[int, int], resample: Image.Resampling = Image.Resampling.BILINEAR) -> None:
        self.size = size
        self.resample = resample

    def __call__(self, image: Image.Image) -> Pixels:
        """Resize to `size` and return uint8 pixels."""
        return as_pixels(image.convert("RGB").resize(self.size, self.resample))
