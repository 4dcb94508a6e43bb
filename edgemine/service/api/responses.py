"""The error bodies the API returns, declared per route so the OpenAPI document matches reality."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    """An error with a human-readable explanation."""

    detail: str


class NotFoundError(ErrorDetail):
    """Something named in the request does not exist."""

    unknown_ids: list[str] | None = Field(default=None, description="The image ids that are not in the bundle, "
                                                                    "when the request named images.")


class UnknownIdsError(ErrorDetail):
    """Image ids that are not in the bundle (the whole request fails)."""

    unknown_ids: list[str]


class ConflictError(ErrorDetail):
    """The request conflicts with the labeling state (e.g. every image is already queued)."""

    skipped: list[str] = Field(default_factory=list, description="Ids already queued or labeled (truncated).")


class ValidationErrorItem(BaseModel):
    """One invalid input, as FastAPI/pydantic report it."""

    loc: list[str | int]
    msg: str
    type: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class ValidationErrorBody(BaseModel):
    """Invalid input: a list of field errors, or one explanation (invalid query, filter or upload)."""

    detail: list[ValidationErrorItem] | str


class InternalError(ErrorDetail):
    """An unexpected server error; quote the request id (also in the X-Request-ID header) when reporting it."""

    request_id: str


_MODELS: dict[int, tuple[type[BaseModel], str]] = {
    400: (ErrorDetail, "The body could not be read (e.g. it is not UTF-8 text), or the Host header is not "
                       "an allowed host."),
    401: (ErrorDetail, "The service requires an API key (`Authorization: Bearer KEY`) and none or a wrong "
                       "one was given."),
    403: (ErrorDetail, "Not allowed (e.g. the file is outside the bundle's image roots)."),
    404: (ErrorDetail, "Not found."),
    409: (ConflictError, "Conflicts with the current labeling state."),
    413: (ErrorDetail, "The request or an uploaded file is too large."),
    415: (ErrorDetail, "The file is not an image this service serves (JPEG, PNG, WebP or BMP)."),
    422: (ValidationErrorBody, "Invalid input."),
    500: (InternalError, "Unexpected error (a bug): the response carries a request id."),
    503: (ErrorDetail, "The service cannot answer now (bundle or model unavailable, state not writable)."),
}


def errors(*codes: int, not_found: type[BaseModel] | None = None,
           keyed: bool = True) -> dict[int | str, dict[str, Any]]:
    """Return a `responses=` mapping declaring these error codes (plus 400, 500 and 503, always possible).

    Every request can meet the Host check (400); `keyed` routes also answer 401 when the service
    has an API key.

    `not_found` overrides the 404 body model (e.g. UnknownIdsError for routes that take image ids).
    """
    out: dict[int | str, dict[str, Any]] = {}
    for code in sorted({*codes, 400, 500, 503, *((401,) if keyed else ())}):
        model, description = _MODELS[code]
        if code == 404 and not_found is not None:
            model = not_found
        out[code] = {"model": model, "description": description}
    return out
