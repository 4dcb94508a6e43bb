"""The HTTP backend: the same calls against a running `edgemine serve`, over one reused httpx client."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast
from urllib.parse import quote, unquote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from edgemine.bundle.feedback import VerdictName, YieldReport
from edgemine.client.errors import (
    AuthenticationError,
    BatchConflict,
    EdgemineError,
    ImageUnavailable,
    QueryError,
    ServiceUnavailable,
    UnknownBatch,
    UnknownImageIds,
)
from edgemine.service.batches import Batch as BatchModel
from edgemine.service.batches import BatchCreate, ExportFormat
from edgemine.service.browse import ImagePage
from edgemine.service.query import FilterValue, MineQuery, MineResult
from edgemine.service.uploads import Upload
from edgemine.service.verdicts import VerdictPage, VerdictsRecorded, VerdictsRequest

T = TypeVar("T")
_FILTERS = TypeAdapter(dict[str, FilterValue])
# A Retry-After from the server is honoured up to this many seconds per wait.
MAX_RETRY_AFTER_S = 30.0


class HttpBackend:
    """Talks to an edgemine service: connection reuse, timeouts, retries with backoff on 503.

    A 503 (and a connection that could not be opened) is retried `retries` times, waiting
    `backoff * 2**attempt` seconds (or the server's Retry-After) in between, then raises
    `ServiceUnavailable`. Every call retries those: the service answers 503 before it changes
    anything, or after the change rolled back. A timeout or a connection cut mid-answer may come
    after the work was done, so only calls that are safe to repeat retry those (not creating a
    batch: it would be created twice).
    """

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 30.0, retries: int = 3,
                 backoff: float = 0.5, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """Prepare a connection pool to `url` (nothing is sent until the first call).

        Args:
            url: the service's base URL, e.g. http://127.0.0.1:8000.
            api_key: sent as `Authorization: Bearer <key>` when the service needs one.
            timeout: seconds for connecting, and for each read or write.
            retries: how many times a 503 or a failed connection is retried.
            backoff: the first wait between retries, in seconds (doubles each retry).
            transport: an httpx transport (tests pass an ASGI or mock transport).
            sleep: how to wait between retries (tests pass a recorder).
        """
        if retries < 0 or backoff < 0 or timeout <= 0:
            raise ValueError("retries and backoff must be >= 0 and timeout > 0")
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout),
                                  transport=transport)

    def __repr__(self) -> str:
        return f"HttpBackend({self.url!r})"

    def _request(self, method: str, path: str, *, idempotent: bool = True, **kwargs: Any) -> httpx.Response:
        """Send a request, retrying 503s and failed connections; raise the typed error of a failure."""
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                # A refused connection never reached the server; a timeout or a cut read may have.
                retry = idempotent or isinstance(exc, httpx.ConnectError)
                if not retry or attempt >= self.retries:
                    raise ServiceUnavailable(f"{method} {self.url}{path} failed: {type(exc).__name__}: {exc}") from exc
                self._sleep(self._wait(attempt, None))
                attempt += 1
                continue
            if response.status_code == 503 and attempt < self.retries:
                self._sleep(self._wait(attempt, response.headers.get("Retry-After")))
                attempt += 1
                continue
            if response.is_success:
                return response
            raise _error_of(response, path)

    def _wait(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None and retry_after.strip().isdigit():
            return min(float(retry_after), MAX_RETRY_AFTER_S)
        return float(self.backoff * 2 ** attempt)

    def mine(self, query: MineQuery, uploads: Sequence[Upload] = ()) -> MineResult:
        """Mine candidates for `query` (POST /v1/mine, or /v1/mine/upload with example images)."""
        if not uploads:
            response = self._request("POST", "/v1/mine", json=query.model_dump(mode="json", by_alias=True))
        else:
            files = [("files", (up.name, up.data, "application/octet-stream")) for up in uploads]
            response = self._request("POST", "/v1/mine/upload", files=files,
                                     data={"query": query.model_dump_json(by_alias=True)})
        return _parse(response, MineResult)

    def create_batch(self, request: BatchCreate) -> BatchModel:
        """Queue images as a named batch (POST /v1/batches); return it with its items."""
        response = self._request("POST", "/v1/batches", idempotent=False, json=request.model_dump(mode="json"))
        return _parse(response, BatchModel)

    def list_batches(self) -> list[BatchModel]:
        """Return all batches, newest first, without items."""
        return _parse(self._request("GET", "/v1/batches"), list[BatchModel])

    def get_batch(self, batch_id: str) -> BatchModel:
        """Return one batch with its items."""
        return _parse(self._request("GET", _batch_path(batch_id)), BatchModel)

    def delete_batch(self, batch_id: str) -> int:
        """Delete a batch (DELETE /v1/batches/{id}); return how many queued images went back to unlabeled."""
        return _parse(self._request("DELETE", _batch_path(batch_id)), _Deleted).released

    def export_batch(self, batch_id: str, fmt: ExportFormat) -> str:
        """Return a batch rendered as JSONL, CSV or Label Studio JSON (absolute image links)."""
        return self._request("GET", f"{_batch_path(batch_id)}/export", params={"format": fmt}).text

    def set_state(self, image_ids: Sequence[str], state: str) -> int:
        """Set the labeling state of images (POST /v1/labels); return how many changed."""
        response = self._request("POST", "/v1/labels", json={"image_ids": list(image_ids), "state": state})
        return _parse(response, _Labeled).changed

    def record_verdicts(self, request: VerdictsRequest) -> VerdictsRecorded:
        """Store review verdicts (POST /v1/verdicts), all or nothing.

        Not retried after a timeout: a repeat would store the verdicts twice in the history.
        """
        response = self._request("POST", "/v1/verdicts", idempotent=False,
                                 json=request.model_dump(mode="json", exclude_none=True))
        return _parse(response, VerdictsRecorded)

    def verdicts(self, query_id: str | None, verdict: VerdictName | None, session_id: str | None,
                 latest_only: bool, limit: int, offset: int) -> VerdictPage:
        """Return one page of stored verdicts (GET /v1/verdicts), oldest first."""
        params: dict[str, Any] = {"latest_only": latest_only, "limit": limit, "offset": offset}
        params.update({k: v for k, v in (("query_id", query_id), ("verdict", verdict), ("session_id", session_id))
                       if v is not None})
        return _parse(self._request("GET", "/v1/verdicts", params=params), VerdictPage)

    def yield_report(self, session_id: str | None) -> YieldReport:
        """Return the yield report (GET /v1/yield)."""
        params = {} if session_id is None else {"session_id": session_id}
        return _parse(self._request("GET", "/v1/yield", params=params), YieldReport)

    def images(self, filters: dict[str, FilterValue], states: Sequence[str], contains: str,
               offset: int, limit: int) -> ImagePage:
        """Browse images (GET /v1/images)."""
        params: dict[str, Any] = {"filters": _FILTERS.dump_json(filters, by_alias=True).decode(),
                                  "state": list(states), "contains": contains, "offset": offset, "limit": limit}
        return _parse(self._request("GET", "/v1/images", params=params), ImagePage)

    def thumbnail(self, image_id: str, size: int) -> bytes:
        """Return a JPEG thumbnail of an image (GET /v1/images/{id}?size=)."""
        path = f"/v1/images/{quote(image_id, safe='/')}"
        return self._request("GET", path, params={"size": size}).content

    def health(self) -> dict[str, Any]:
        """Return the service's health report (GET /v1/health)."""
        return _parse(self._request("GET", "/v1/health"), dict[str, Any])

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()


class _Deleted(BaseModel):
    """What DELETE /v1/batches/{id} answers (the service's BatchDeleted)."""

    released: int


class _Labeled(BaseModel):
    """What POST /v1/labels answers (the service's LabelResponse)."""

    changed: int


@functools.cache
def _adapter(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)  # building one costs more than a small validation: once per type


def _parse(response: httpx.Response, kind: type[T]) -> T:
    """Validate a success body as `kind`; a body that is not one (a proxy's page...) is an EdgemineError."""
    try:
        value: T = _adapter(cast(Any, kind)).validate_json(response.content)
        return value
    except ValidationError as exc:
        raise EdgemineError(
            f"{response.request.method} {response.request.url.path} answered {response.status_code} with a body "
            f"that is not {getattr(kind, '__name__', kind)}: {exc.errors(include_url=False)[:1]}",
            status=response.status_code) from exc


def _batch_path(batch_id: str) -> str:
    return f"/v1/batches/{quote(batch_id, safe='')}"


def _detail(body: Any) -> str:
    """Return the error body's detail as one line (validation errors: `loc: msg; ...`)."""
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, list):
        parts = []
        for err in detail:
            if isinstance(err, dict):
                loc = ".".join(str(p) for p in err.get("loc", []) if p != "body")
                parts.append(f"{loc}: {err.get('msg', '')}" if loc else str(err.get("msg", "")))
            else:
                parts.append(str(err))
        return "; ".join(parts)
    return str(detail)


def _error_of(response: httpx.Response, path: str) -> Exception:
    """Return the typed error of a failed response."""
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:500] or response.reason_phrase}
    status = response.status_code
    detail = _detail(body)
    request_id = (body.get("request_id") if isinstance(body, dict) else None) or response.headers.get("X-Request-ID")
    meta: dict[str, Any] = {"status": status, "request_id": request_id}
    if status == 401:
        return AuthenticationError(f"the service refused the request: {detail}", **meta)
    if status == 404 and isinstance(body, dict) and "unknown_ids" in body:
        return UnknownImageIds([str(i) for i in body["unknown_ids"]])
    if status == 404 and path.startswith("/v1/batches/"):
        return UnknownBatch(unquote(path.split("/")[3]))
    if status == 409:
        skipped = body.get("skipped", []) if isinstance(body, dict) else []
        return BatchConflict(detail, [str(i) for i in skipped], **meta)
    if status in (413, 422) and not path.startswith("/v1/images/"):
        return QueryError(detail)
    if status in (403, 404, 415, 422) and path.startswith("/v1/images/"):
        return ImageUnavailable(detail, **meta)
    if status == 503:
        return ServiceUnavailable(f"the service is unavailable: {detail}", **meta)
    where = f" (request id {request_id})" if request_id else ""
    return EdgemineError(f"{response.request.method} {path} answered {status}: {detail}{where}", **meta)


__all__ = ["HttpBackend"]
