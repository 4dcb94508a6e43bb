"""Indexing engines: what turns the pending items of a run into vectors (local or distributed).

The driver (`run_index`) decides what to embed and alone writes the bundle's state; an engine only
embeds `EmbedJob.items` and reports each finished batch and each failed file through the callbacks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from edgemine.bundle.layout import BundlePaths
from edgemine.indexer.pipeline import EmbedStats, embed_items
from edgemine.indexer.sources import SourceItem
from edgemine.models.base import Embedder
from edgemine.models.vectors import Vectors
from edgemine.search.maintain import IndexBuilder

OnBatch = Callable[[list[SourceItem], Vectors], None]
OnFailures = Callable[[list[tuple[SourceItem, str]]], None]


@dataclass(frozen=True)
class EmbedJob:
    """The items one run must embed, and how."""

    items: Sequence[SourceItem]
    embedder: Embedder  # already loaded on the driver
    load: Callable[[], Embedder]  # loads the same model elsewhere (a distributed engine's workers)
    model_identity: str
    paths: BundlePaths
    batch_size: int
    workers: int
    progress: bool


class IndexEngine(Protocol):
    """Embeds a run's pending items; `run_index` journals each batch and publishes."""

    name: str

    def embed(self, job: EmbedJob, on_batch: OnBatch, on_failures: OnFailures) -> EmbedStats:
        """Embed `job.items`, calling `on_batch` per finished batch and `on_failures` per failed files."""
        ...

    def discard_staged(self, paths: BundlePaths) -> None:
        """Forget anything staged for resuming, once the run's vectors are published."""
        ...

    def index_builder(self) -> IndexBuilder | None:
        """Return what builds a new index of the version (None: `build_index` in this process)."""
        ...


class LocalEngine:
    """This machine: decoding worker processes feed the model (`embed_items`)."""

    name = "local"

    def embed(self, job: EmbedJob, on_batch: OnBatch, on_failures: OnFailures) -> EmbedStats:
        """Embed in this process with `job.workers` decoding processes."""
        return embed_items(job.items, job.embedder, batch_size=job.batch_size, workers=job.workers,
                           on_batch=on_batch, on_failures=on_failures, progress=job.progress)

    def discard_staged(self, paths: BundlePaths) -> None:
        """Nothing to discard: the local engine resumes from the state's journal alone."""

    def index_builder(self) -> IndexBuilder | None:
        """Build indexes in this process."""
        return None
