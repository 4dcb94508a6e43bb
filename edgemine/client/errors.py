"""The typed errors of the Python API: the same classes whichever backend (local bundle or HTTP) raised them.

`UnknownImageIds`, `QueryError` and `UnknownBatch` are the library's own classes (re-exported), so
`except edgemine.UnknownImageIds` catches an unknown id from a local bundle and a 404 from a
service alike; the rest derive from `EdgemineError`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

from edgemine.bundle.errors import UnknownImageIds
from edgemine.service.batches import UnknownBatch
from edgemine.service.miner import QueryError


class EdgemineError(Exception):
    """Base class of the API's own errors; `status` and `request_id` are set when a service answered."""

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.request_id = request_id


class ServiceUnavailable(EdgemineError):
    """The service cannot answer (503 after the retries, connection refused) or the bundle cannot be used."""


class AuthenticationError(EdgemineError):
    """The service needs an API key, or refused the one given (401)."""


class BatchConflict(EdgemineError):
    """Every image of a new batch is already queued or labeled: no batch was created (409)."""

    def __init__(self, message: str, skipped: Sequence[str] = (), *, status: int | None = None,
                 request_id: str | None = None) -> None:
        super().__init__(message, status=status, request_id=request_id)
        self.skipped = list(skipped)


class ImageUnavailable(EdgemineError):
    """An image is known but cannot be served: no file, outside the image roots, gone, or not decodable."""


def validation_message(exc: ValidationError) -> str:
    """Return a pydantic error as one line: `field: message; ...`."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)


__all__ = ["AuthenticationError", "BatchConflict", "EdgemineError", "ImageUnavailable", "QueryError",
           "ServiceUnavailable", "UnknownBatch", "UnknownImageIds"]
