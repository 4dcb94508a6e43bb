"""The functions Ray runs on its workers: decode to uint8 pixels (CPU tasks) and embed (actors).

Module-level so that workers import them from the installed package (nothing is pickled by value
except the model's loader and pixel step). Batches are dicts of numpy arrays ("numpy" format).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgemine.indexer.decode import open_item_image
from edgemine.indexer.sources import SourceItem
from edgemine.models.base import Embedder
from edgemine.models.pixels import PixelEmbedder, PixelStep

Batch = dict[str, Any]


def failure_reason(exc: Exception) -> str:
    """Return the reason reported for a file, worded as the local engine words it."""
    return str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"


def decode_batch(batch: Batch, pixel_step: PixelStep, min_side: int | None,
                 shape: tuple[int, int, int]) -> Batch:
    """Decode and resize each file of the batch; a file that fails only sets its own `error`."""
    n = len(batch["id"])
    pixels = np.zeros((n, *shape), np.uint8)
    errors = []
    for row in range(n):
        item = SourceItem(str(batch["id"][row]), str(batch["path"][row]), str(batch["fingerprint"][row]))
        try:
            out = pixel_step(open_item_image(item, min_side))
            if out.shape != shape:
                raise ValueError(f"the model's pixel step gave {out.shape}, not {shape}")
            pixels[row] = out
            errors.append("")
        except Exception as exc:  # per file: one bad file must not fail its block
            errors.append(failure_reason(exc))
    return {"id": batch["id"], "fingerprint": batch["fingerprint"], "pixels": pixels,
            "error": np.array(errors, dtype=object)}


class EmbedActor:
    """An actor of the embedding pool: loads the model once, embeds the decoded rows of each batch."""

    def __init__(self, load: Callable[[], Embedder]) -> None:
        embedder = load()
        if not isinstance(embedder, PixelEmbedder):
            raise TypeError(f"{type(embedder).__name__} cannot embed uint8 pixels (no embed_pixels)")
        self.embedder = embedder

    def __call__(self, batch: Batch) -> Batch:
        """Embed the rows without an error; failed rows keep their reason and a zero vector."""
        errors = np.asarray(batch["error"], dtype=object)
        ok = errors == ""
        embeddings = np.zeros((len(errors), self.embedder.dim), np.float32)
        if ok.any():
            embeddings[ok] = self.embedder.embed_pixels(np.asarray(batch["pixels"])[ok])
        return {"id": batch["id"], "fingerprint": batch["fingerprint"], "embedding": embeddings,
                "error": errors}
