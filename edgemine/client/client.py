"""The Client: one typed API over a local bundle (`edgemine.open`) or a service (`edgemine.connect`)."""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import TypeAdapter, ValidationError

from edgemine.client._backend import Backend
from edgemine.client.errors import QueryError
from edgemine.client.errors import validation_message as _validation_message
from edgemine.client.results import Batch, MiningResult
from edgemine.client.review import Verdicts, YieldReport, verdicts_request
from edgemine.service import limits
from edgemine.service.batches import BatchCreate, BatchItemIn
from edgemine.service.browse import ImagePage
from edgemine.service.query import Candidate, FilterValue, MineQuery, MineResult
from edgemine.service.uploads import Upload

UploadLike = str | os.PathLike[str] | bytes | tuple[str, bytes]
IdsLike = MiningResult | Batch | MineResult | Iterable[str]
_FILTERS = TypeAdapter(dict[str, FilterValue])


class Client:
    """Mine, queue, export and label: the same methods and results over a local bundle or HTTP.

    Use `edgemine.open(bundle_dir)` or `edgemine.connect(url)` rather than building one; close it
    (or use it as a context manager) to release the backend's connections.
    """

    def __init__(self, backend: Backend, session_id: str | None = None) -> None:
        """Wrap a backend (`LocalBackend` or `HttpBackend`).

        `session_id` names a review session: it is the default `session_id` of every query mined
        and every verdict sent through this client (see `review` and `MineQuery.use_verdicts`).
        """
        self._backend = backend
        self.session_id = session_id

    @property
    def backend(self) -> Backend:
        """The backend the calls go to."""
        return self._backend

    def mine(self, *, uploads: Sequence[UploadLike] = (), **query: Any) -> MiningResult:
        """Mine candidates: keyword arguments are `MineQuery` fields (positive_ids, texts, k, filters, ...).

        `uploads` are example images (paths, bytes, or (name, bytes) pairs) used as positives.
        The client's `session_id` is used unless the query names one; with `use_verdicts=True` the
        session's accepted images join the positives and its rejected ones the negatives.
        Raises QueryError for a query the service would refuse, UnknownImageIds for unknown examples.
        """
        if self.session_id is not None and query.get("session_id") is None:
            query = {**query, "session_id": self.session_id}
        try:
            parsed = MineQuery.model_validate(query)
        except ValidationError as exc:
            raise QueryError(_validation_message(exc)) from exc
        return self._mine_query(parsed, [_upload(u, i) for i, u in enumerate(uploads)])

    def mine_query(self, query: MineQuery, uploads: Sequence[UploadLike] = ()) -> MiningResult:
        """Mine with a ready `MineQuery` (the service's own model; the client's session_id fills in a missing one)."""
        if self.session_id is not None and query.session_id is None:
            query = query.model_copy(update={"session_id": self.session_id})
        return self._mine_query(query, [_upload(u, i) for i, u in enumerate(uploads)])

    def _mine_query(self, query: MineQuery, uploads: Sequence[Upload]) -> MiningResult:
        return MiningResult(self, query, self._backend.mine(query, uploads), uploads)

    def queue(self, items: IdsLike, name: str, query: MineQuery | dict[str, Any] | None = None) -> Batch:
        """Queue images as a named annotation batch; they are no longer mined (unless asked for).

        `items` is a mining result (its candidates are queued with their score and nearest example,
        and its query is kept as provenance), a batch, or image ids. Raises UnknownImageIds (nothing
        queued) for unknown ids, and BatchConflict when every image is already queued or labeled.
        """
        result = items.result if isinstance(items, MiningResult) else items
        if query is None and isinstance(items, MiningResult):
            query = items.query
        provenance = query.model_dump(mode="json", by_alias=True) if isinstance(query, MineQuery) else query or {}
        try:
            if isinstance(result, MineResult):
                rows = [BatchItemIn(image_id=c.image_id, score=c.score, nearest_example_id=c.nearest_example_id,
                                    nearest_example_similarity=c.nearest_example_similarity)
                        for c in result.candidates]
            else:
                rows = [BatchItemIn(image_id=i) for i in _ids(items)]
            if not rows:
                raise QueryError("nothing to queue: no candidates or ids were given")
            request = BatchCreate(name=name, items=rows, query=provenance)
        except ValidationError as exc:
            raise QueryError(_validation_message(exc)) from exc
        return Batch(self, self._backend.create_batch(request))

    def batches(self) -> list[Batch]:
        """Return all batches, newest first (their items are fetched on first use)."""
        return [Batch(self, b) for b in self._backend.list_batches()]

    def batch(self, batch_id: str) -> Batch:
        """Return one batch with its items; raises UnknownBatch for an unknown id."""
        return Batch(self, self._backend.get_batch(batch_id))

    def delete_batch(self, batch: str | Batch) -> int:
        """Delete a batch; its still-queued images go back to unlabeled (returned: how many)."""
        return self._backend.delete_batch(batch.batch_id if isinstance(batch, Batch) else batch)

    def label(self, ids: IdsLike, state: str = "labeled") -> int:
        """Set the labeling state ("labeled", "queued" or "unlabeled") of images; return how many changed.

        `ids` is image ids, a batch or a mining result. Unknown ids fail the whole call (UnknownImageIds).
        """
        if state not in ("labeled", "queued", "unlabeled"):
            raise QueryError(f"unknown labeling state {state!r}; valid: labeled, queued, unlabeled")
        wanted = _ids(ids)
        if not wanted:
            return 0
        if len(wanted) > limits.MAX_LABEL_IDS:  # the service's limit, kept by the local backend too
            raise QueryError(f"{len(wanted)} ids to label; at most {limits.MAX_LABEL_IDS} per call")
        return self._backend.set_state(wanted, state)

    def review(self, accept: IdsLike = (), reject: IdsLike = (), skip: IdsLike = (), *,
               query_id: str | None = None, session_id: str | None = None, reviewer: str | None = None) -> int:
        """Store review verdicts on images; return how many were stored (0 when none were given).

        `accept`, `reject` and `skip` each take image ids, candidates, a batch or a mining result.
        A verdict points back to `query_id` if given, else to the query of the mining result its
        ids came from. A reject takes an unlabeled image out of later mining; a later accept or
        skip brings it back. `session_id` defaults to the client's. Unknown ids fail the whole call
        (UnknownImageIds, nothing stored); an id given two different verdicts is a QueryError.
        """
        groups = [(name, _ids(ids), _query_id_of(ids)) for name, ids in
                  (("accept", accept), ("reject", reject), ("skip", skip))]
        request = verdicts_request(groups, query_id, session_id or self.session_id, reviewer)
        return 0 if request is None else self._backend.record_verdicts(request).recorded

    def verdicts(self, query_id: str | None = None, verdict: str | None = None, session_id: str | None = None,
                 latest_only: bool = True) -> Verdicts:
        """Return stored verdicts, oldest first, of a query and/or a session, optionally of one kind.

        With `latest_only` (the default) each image's latest verdict (within the query or session
        asked for) is kept, then filtered by `verdict`. Every page is fetched; a list shown in
        Jupyter as a table.
        """
        from edgemine.client.review import fetch_verdicts

        return fetch_verdicts(self._backend, query_id, verdict, session_id, latest_only)

    def yield_report(self, session_id: str | None = None) -> YieldReport:
        """Return the mining yield (accepted / reviewed, 95% interval) per query, batch, strategy and session.

        `session_id` limits it to one session's verdicts. Shown in Jupyter as small tables with each
        session's cumulative yield curve.
        """
        from edgemine.client.review import check_name

        check_name("session_id", session_id)
        return YieldReport(self._backend.yield_report(session_id))

    def images(self, filters: dict[str, Any] | None = None, state: str | Sequence[str] | None = None,
               contains: str = "", offset: int = 0, limit: int = 100) -> ImagePage:
        """Browse images in catalog order with mining's metadata filters, labeling states and an id substring."""
        states = ["unlabeled", "queued", "labeled"] if state is None else [state] if isinstance(state, str) \
            else list(state)
        unknown = [s for s in states if s not in ("unlabeled", "queued", "labeled")]
        if unknown:
            raise QueryError(f"unknown labeling state {unknown[0]!r}; valid: unlabeled, queued, labeled")
        try:
            parsed = _FILTERS.validate_python(filters or {})
        except ValidationError as exc:
            raise QueryError(f"filters: {_validation_message(exc)}") from exc
        if offset < 0 or not 1 <= limit <= 1000:
            raise QueryError(f"offset must be >= 0 and limit 1..1000 (got offset={offset}, limit={limit})")
        return self._backend.images(parsed, states, contains, offset, limit)

    def thumbnail(self, image_id: str, size: int = 128) -> bytes:
        """Return a JPEG thumbnail of an image, at most `size` pixels on a side (16..4096)."""
        if not 16 <= size <= 4096:
            raise QueryError(f"thumbnail size must be 16..4096 (got {size})")
        return self._backend.thumbnail(image_id, size)

    def health(self) -> dict[str, Any]:
        """Return the bundle's health: version, counts per state, model, metadata columns, writable.

        A plain dict, shown in Jupyter as a table.
        """
        from edgemine.client.render import Report

        return Report(self._backend.health(), "edgemine health")

    def close(self) -> None:
        """Release the backend's connections."""
        self._backend.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<edgemine.Client over {self._backend!r}>"


def open(bundle_dir: str | os.PathLike[str], *, public_url: str = "", session_id: str | None = None,
         state_url: str | None = None) -> Client:
    """Open a local bundle directory and return a Client that mines it in this process.

    (`edgemine.open` shadows the builtin `open` only as an attribute of the `edgemine` package.)
    `public_url` is put in front of image links (`/v1/images/...`) in results and exports;
    `session_id` is the client's review session (see Client); `state_url` is a postgresql://
    state database shared with services (default: `EDGEMINE_STATE_URL` when set, else the
    bundle's state.sqlite), so labels set here are respected by every service host and back.
    """
    from edgemine.client._local import LocalBackend

    url = state_url or os.environ.get("EDGEMINE_STATE_URL") or None
    return Client(LocalBackend(bundle_dir, public_url=public_url, state_url=url), session_id=session_id)


def connect(url: str, api_key: str | None = None, *, timeout: float = 30.0, retries: int = 3,
            backoff: float = 0.5, session_id: str | None = None) -> Client:
    """Return a Client for an edgemine service at `url` (e.g. "http://127.0.0.1:8000").

    `api_key` is sent as a Bearer token. Each request may take `timeout` seconds to connect and
    per read; a 503 or a refused connection is retried `retries` times after `backoff` seconds,
    doubling (see HttpBackend). `session_id` is the client's review session (see Client).
    """
    from edgemine.client._http import HttpBackend

    return Client(HttpBackend(url, api_key, timeout=timeout, retries=retries, backoff=backoff),
                  session_id=session_id)


def _ids(items: IdsLike) -> list[str]:
    if isinstance(items, MiningResult | Batch):
        return list(items.ids)
    if isinstance(items, MineResult):
        return [c.image_id for c in items.candidates]
    if isinstance(items, str):  # one id, not its characters
        return [items]
    out = []
    for item in items:
        if isinstance(item, Candidate):
            out.append(item.image_id)
        elif isinstance(item, str):
            out.append(item)
        else:  # an int or a path is a mistake, not an id to convert
            raise TypeError(f"image ids are strings (or candidates); got {type(item).__name__} {item!r}")
    return out


def _query_id_of(items: IdsLike) -> str | None:
    if isinstance(items, MiningResult):
        return items.query_id
    return items.query_id if isinstance(items, MineResult) else None


def _upload(item: UploadLike, index: int) -> Upload:
    if isinstance(item, bytes):
        return Upload(f"upload{index}", item)
    if isinstance(item, tuple):
        return Upload(item[0], item[1])
    path = Path(item)
    with builtins.open(path, "rb") as fh:
        return Upload(path.name, fh.read())


__all__ = ["Client", "connect", "open"]
