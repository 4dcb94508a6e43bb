"""Decode images in parallel workers while the model embeds the previous batch."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image
from tqdm import tqdm

from edgemine.indexer.decode import open_item_image
from edgemine.indexer.sources import SourceItem
from edgemine.models.base import Embedder
from edgemine.models.vectors import Vectors


class _ImageDataset:
    """A map-style dataset (all DataLoader needs: `__len__` and `__getitem__`; no torch at import)."""

    def __init__(self, items: Sequence[SourceItem], preprocess: Callable[[Image.Image], Any],
                 min_side: int | None):
        self.items = items
        self.preprocess = preprocess
        self.min_side = min_side

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int) -> tuple[int, Any, str | None]:
        item = self.items[idx]
        try:
            return idx, self.preprocess(open_item_image(item, self.min_side)), None
        except ValueError as exc:
            return idx, None, str(exc)
        except Exception as exc:
            return idx, None, f"{type(exc).__name__}: {exc}"


def _collate(samples: list[tuple[int, Any, str | None]]) -> tuple[list[int], Any, list[tuple[int, str]]]:
    import torch

    good = [(i, x) for i, x, err in samples if err is None]
    bad = [(i, err) for i, _, err in samples if err is not None]
    batch = torch.stack([x for _, x in good]) if good else None
    return [i for i, _ in good], batch, bad


@dataclass
class EmbedStats:
    """What one embedding pass did."""

    embedded: int = 0
    failed: int = 0
    resumed: int = 0  # vectors an engine found staged by an interrupted run (not embedded again)
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        """Return embedded images per second."""
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


def embed_items(
    items: Sequence[SourceItem],
    embedder: Embedder,
    *,
    batch_size: int,
    workers: int,
    on_batch: Callable[[list[SourceItem], Vectors], None],
    on_failures: Callable[[list[tuple[SourceItem, str]]], None],
    progress: bool = True,
) -> EmbedStats:
    """Embed `items`, calling `on_batch` after each batch (to journal it) and reporting failures."""
    stats = EmbedStats()
    if not items:
        return stats
    from torch.utils.data import DataLoader  # torch only once there is something to embed

    loader: DataLoader[tuple[int, Any, str | None]] = DataLoader(
        _ImageDataset(items, embedder.preprocess, getattr(embedder, "input_size", None)),  # type: ignore[arg-type]
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        prefetch_factor=4 if workers > 0 else None,
        persistent_workers=False,
    )
    start = time.perf_counter()
    with tqdm(total=len(items), unit="img", disable=not progress, dynamic_ncols=True,
              desc="embedding") as bar:
        for indices, batch, bad in loader:
            if bad:
                on_failures([(items[i], reason) for i, reason in bad])
                stats.failed += len(bad)
            if indices:
                vectors = embedder.embed_batch(batch)
                on_batch([items[i] for i in indices], vectors)
                stats.embedded += len(indices)
            bar.update(len(indices) + len(bad))
            bar.set_postfix(failed=stats.failed, refresh=False)
    stats.seconds = time.perf_counter() - start
    return stats
