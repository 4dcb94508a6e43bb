"""The embedder interface shared by CLIP models and test fakes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from edgemine.models.vectors import Vectors


@runtime_checkable
class Embedder(Protocol):
    """Turns images and texts into L2-normalized float32 vectors of one model."""

    identity: str
    dim: int

    def preprocess(self, image: Image.Image) -> Any:
        """Turn one decoded RGB image into the model's input (run in loader workers)."""
        ...

    def embed_batch(self, batch: Any) -> Vectors:
        """Embed a batch built from `preprocess` outputs (stacked)."""
        ...

    def embed_images(self, images: Sequence[Image.Image]) -> Vectors:
        """Embed decoded images."""
        ...

    def embed_texts(self, texts: Sequence[str]) -> Vectors:
        """Embed text prompts."""
        ...


class ModelUnavailable(RuntimeError):
    """The requested model weights cannot be loaded (offline, unknown tag, bad file)."""


EmbedderFactory = Callable[[], Embedder]
