"""The in-process backend: mines a bundle directory with the service's own library, no server."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from edgemine.bundle.errors import BundleError
from edgemine.bundle.feedback import VerdictName, YieldReport, yield_report
from edgemine.bundle.image_source import ImageOutsideRoots, indexed_image
from edgemine.bundle.objects import ObjectNotFound, ObjectStoreError
from edgemine.bundle.state import LABEL_STATES, LabelState, StateDB
from edgemine.client.errors import BatchConflict, ImageUnavailable, QueryError, ServiceUnavailable
from edgemine.models.base import ModelUnavailable
from edgemine.models.images import DEFAULT_MAX_PIXELS, NotAnImage, reencode_image
from edgemine.service import batches as _batches
from edgemine.service.batches import Batch as BatchModel
from edgemine.service.batches import BatchCreate, ExportFormat
from edgemine.service.browse import ImagePage, browse
from edgemine.service.filters import FilterError
from edgemine.service.query import FilterValue, MineQuery, MineResult
from edgemine.service.runtime import EmbedderLoader, Runtime
from edgemine.service.uploads import Upload
from edgemine.service.verdicts import VerdictPage, VerdictsRecorded, VerdictsRequest
from edgemine.service.verdicts import page as verdict_page
from edgemine.service.verdicts import record as record_verdicts

T = TypeVar("T")
# The service's defaults (edgemine.service.config.Settings): a local thumbnail is the same image.
THUMBNAIL_MAX = 1024


@contextmanager
def _translated() -> Iterator[None]:
    """Map library errors to the API's: the same classes the HTTP backend raises for the same cause."""
    try:
        yield
    except FilterError as exc:  # the service answers 422 for both
        raise QueryError(str(exc)) from exc
    except (BundleError, ModelUnavailable) as exc:  # the service answers 503
        raise ServiceUnavailable(str(exc)) from exc


class LocalBackend:
    """Runs every call in this process on `bundle_dir`, through the same library the service uses.

    A newly published bundle version is picked up on the next call, as the service does. The
    model (for text and upload queries) is loaded on first use.
    """

    def __init__(self, bundle_dir: str | os.PathLike[str], *, public_url: str = "",
                 loader: EmbedderLoader | None = None, state_url: str | None = None) -> None:
        """Open the bundle.

        Args:
            bundle_dir: the bundle directory (holds CURRENT, versions/ and state.sqlite).
            public_url: base URL put in front of image links (`/v1/images/...`); exports use it.
            loader: how to load the bundle's model (tests pass a fake); CLIP by default.
            state_url: a postgresql:// state database shared with services (default: the
                bundle's state.sqlite).
        """
        self.public_url = public_url
        with _translated():
            kwargs: dict[str, Any] = {"loader": loader} if loader is not None else {}
            self.runtime = Runtime(Path(bundle_dir), public_url=public_url, state_url=state_url, **kwargs)

    def __repr__(self) -> str:
        return f"LocalBackend({str(self.runtime.paths.root)!r})"

    @property
    def _state(self) -> StateDB:
        if self.runtime.state is None:  # Runtime refuses a bundle without one; kept for the type
            raise ServiceUnavailable(f"bundle {self.runtime.paths.root} has no state.sqlite")
        return self.runtime.state

    def _call(self, fn: Callable[[], T]) -> T:
        with _translated():
            return fn()

    def mine(self, query: MineQuery, uploads: Sequence[Upload] = ()) -> MineResult:
        """Mine candidates for `query` (and uploaded example images)."""
        return self._call(lambda: self.runtime.current().miner.mine(query, uploads))

    def create_batch(self, request: BatchCreate) -> BatchModel:
        """Queue images as a named batch; return it with its items."""

        def create() -> BatchModel:
            snapshot = self.runtime.current().snapshot
            try:
                batch = _batches.create_batch(self._state, snapshot, request)
            except _batches.NothingToQueue as exc:  # every image already queued or labeled
                raise BatchConflict(str(exc), exc.ids) from exc
            return _batches.get_batch(self._state, snapshot, batch.batch_id, self.public_url).model_copy(
                update={"skipped": batch.skipped})

        return self._call(create)

    def list_batches(self) -> list[BatchModel]:
        """Return all batches, newest first, without items."""
        return self._call(lambda: _batches.list_batches(self._state))

    def get_batch(self, batch_id: str) -> BatchModel:
        """Return one batch with its items."""
        return self._call(lambda: _batches.get_batch(self._state, self.runtime.current().snapshot, batch_id,
                                                     self.public_url))

    def delete_batch(self, batch_id: str) -> int:
        """Delete a batch; return how many of its queued images went back to unlabeled."""
        return self._call(lambda: int(_batches.delete_batch(self._state, batch_id).released))

    def export_batch(self, batch_id: str, fmt: ExportFormat) -> str:
        """Return a batch rendered as JSONL, CSV or Label Studio JSON (image links use `public_url`)."""
        text, _ = self._call(lambda: _batches.export_batch(self.get_batch(batch_id), fmt))
        return text

    def set_state(self, image_ids: Sequence[str], state: str) -> int:
        """Set the labeling state of images; return how many changed (UnknownImageIds if any id is unknown)."""
        if state not in LABEL_STATES:
            raise QueryError(f"unknown labeling state {state!r}; valid: {', '.join(LABEL_STATES)}")
        checked: LabelState = state  # narrowed by the check above
        return self._call(lambda: self._state.set_state(list(image_ids), checked))

    def record_verdicts(self, request: VerdictsRequest) -> VerdictsRecorded:
        """Store review verdicts, all or nothing (UnknownImageIds names unknown images)."""
        return self._call(lambda: record_verdicts(self._state, request))

    def verdicts(self, query_id: str | None, verdict: VerdictName | None, session_id: str | None,
                 latest_only: bool, limit: int, offset: int) -> VerdictPage:
        """Return one page of stored verdicts, oldest first (as GET /v1/verdicts pages them)."""
        return self._call(lambda: verdict_page(self._state, query_id, verdict, session_id, latest_only, limit,
                                               offset))

    def yield_report(self, session_id: str | None) -> YieldReport:
        """Return the yield per query, batch, strategy and session (or of one session)."""
        return self._call(lambda: yield_report(self._state, session_id=session_id))

    def images(self, filters: dict[str, FilterValue], states: Sequence[str], contains: str,
               offset: int, limit: int) -> ImagePage:
        """Browse images with metadata filters, states and an id substring."""
        loaded = self.runtime.current()
        return self._call(lambda: browse(loaded.snapshot, loaded.miner.states, filters, list(states), contains,
                                         offset, limit, self.public_url))

    def thumbnail(self, image_id: str, size: int) -> bytes:
        """Return a JPEG thumbnail of an image: the same checks and encoding as the service's."""
        from edgemine.bundle.errors import UnknownImageIds

        snap = self.runtime.current().snapshot
        row = snap.row_by_id.get(image_id)
        if row is None:
            raise UnknownImageIds([image_id])
        raw = snap.catalog.column("path")[row].as_py()
        if not raw:
            raise ImageUnavailable(f"image {image_id!r} has no file (precomputed embedding)")
        try:
            source = indexed_image(raw, snap.manifest.image_roots)
        except ImageOutsideRoots as exc:
            raise ImageUnavailable(f"image {image_id!r} is outside the bundle's image roots") from exc
        except ObjectNotFound as exc:
            raise ImageUnavailable(f"file of image {image_id!r} is gone: {exc}") from exc
        except ObjectStoreError as exc:  # denied, too large, store unreachable (named)
            raise ImageUnavailable(f"image {image_id!r} cannot be read: {exc}") from exc
        try:
            body, _ = reencode_image(source, min(size, THUMBNAIL_MAX), max_pixels=DEFAULT_MAX_PIXELS, thumbnail=True)
        except NotAnImage as exc:
            raise ImageUnavailable(f"file of image {image_id!r} is not served: {exc}") from exc
        except ValueError as exc:
            raise ImageUnavailable(f"image {image_id!r} cannot be decoded: {exc}") from exc
        return body

    def health(self) -> dict[str, Any]:
        """Return the bundle's health report, as `GET /v1/health` does."""
        with _translated():
            loaded = self.runtime.current()
            manifest = loaded.snapshot.manifest
            state = self._state
            return {
                "ready": True,
                "bundle": str(self.runtime.paths.root),
                "bundle_version": manifest.version,
                "model": manifest.model.identity,
                "model_loaded": self.runtime.model_loaded,
                "dim": manifest.dim,
                "index": manifest.index.model_dump(),
                "counts": {"images": manifest.counts.images, **state.state_counts()},
                "metadata_columns": loaded.snapshot.metadata_columns,
                "switch_error": self.runtime.switch_error,
                "writable": state.writable,
            }

    def close(self) -> None:
        """Nothing to release: SQLite readers close with their threads."""


__all__ = ["LocalBackend"]
