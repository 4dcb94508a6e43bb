"""The interface both backends implement: the service's own request and response models in and out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from edgemine.bundle.feedback import VerdictName, YieldReport
from edgemine.service.batches import Batch as BatchModel
from edgemine.service.batches import BatchCreate, ExportFormat
from edgemine.service.browse import ImagePage
from edgemine.service.query import FilterValue, MineQuery, MineResult
from edgemine.service.uploads import Upload
from edgemine.service.verdicts import VerdictPage, VerdictsRecorded, VerdictsRequest

LabelState = str  # "unlabeled" | "queued" | "labeled" (checked by the backend)


class Backend(Protocol):
    """Where a `Client` sends its calls: a local bundle (`LocalBackend`) or a service (`HttpBackend`).

    Every method raises the API's typed errors (edgemine.client.errors), never transport errors.
    """

    def mine(self, query: MineQuery, uploads: Sequence[Upload] = ()) -> MineResult:
        """Mine candidates for `query` (and uploaded example images)."""
        ...

    def create_batch(self, request: BatchCreate) -> BatchModel:
        """Queue images as a named batch; return it with its items."""
        ...

    def list_batches(self) -> list[BatchModel]:
        """Return all batches, newest first, without items."""
        ...

    def get_batch(self, batch_id: str) -> BatchModel:
        """Return one batch with its items."""
        ...

    def delete_batch(self, batch_id: str) -> int:
        """Delete a batch; return how many of its queued images went back to unlabeled."""
        ...

    def export_batch(self, batch_id: str, fmt: ExportFormat) -> str:
        """Return a batch rendered as JSONL, CSV or Label Studio JSON."""
        ...

    def set_state(self, image_ids: Sequence[str], state: LabelState) -> int:
        """Set the labeling state of images; return how many changed."""
        ...

    def record_verdicts(self, request: VerdictsRequest) -> VerdictsRecorded:
        """Store review verdicts, all or nothing (UnknownImageIds names unknown images)."""
        ...

    def verdicts(self, query_id: str | None, verdict: VerdictName | None, session_id: str | None,
                 latest_only: bool, limit: int, offset: int) -> VerdictPage:
        """Return one page of stored verdicts, oldest first."""
        ...

    def yield_report(self, session_id: str | None) -> YieldReport:
        """Return the yield per query, batch, strategy and session (or of one session)."""
        ...

    def images(self, filters: dict[str, FilterValue], states: Sequence[str], contains: str,
               offset: int, limit: int) -> ImagePage:
        """Browse images with metadata filters, states and an id substring."""
        ...

    def thumbnail(self, image_id: str, size: int) -> bytes:
        """Return a JPEG thumbnail of an image, at most `size` pixels on a side."""
        ...

    def health(self) -> dict[str, Any]:
        """Return the bundle's health report (version, counts, model, writable...)."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...
