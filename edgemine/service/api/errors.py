"""Translate domain exceptions into HTTP responses at the edge."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from edgemine.bundle.errors import BundleError, UnknownImageIds
from edgemine.models.base import ModelUnavailable
from edgemine.service.batches import UnknownBatch
from edgemine.service.filters import FilterError
from edgemine.service.limits import ECHO_ID_CHARS, MAX_ECHOED_IDS, clip_echo, shorten
from edgemine.service.miner import QueryError

log = logging.getLogger("edgemine.service")


def _finite(value: Any) -> Any:
    # Python's JSON parser accepts NaN/Infinity; echoing them back in an error is not valid JSON.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that map library errors to status codes."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Errors carry the offending input: cut it, or a 50 MB list comes straight back.
        errors = [{**e, "input": clip_echo(e.get("input")), "loc": clip_echo(list(e.get("loc", ())))}
                  if isinstance(e, dict) else e for e in exc.errors()]
        return JSONResponse({"detail": _finite(jsonable_encoder(errors))}, status_code=422)

    @app.exception_handler(UnknownImageIds)
    async def unknown_ids(_: Request, exc: UnknownImageIds) -> JSONResponse:
        # At most MAX_ECHOED_IDS ids, each cut short: the detail says how many there were.
        shown = [shorten(i, ECHO_ID_CHARS) for i in exc.ids[:MAX_ECHOED_IDS]]
        return JSONResponse({"detail": str(exc), "unknown_ids": shown}, status_code=404)

    @app.exception_handler(UnknownBatch)
    async def unknown_batch(_: Request, exc: UnknownBatch) -> JSONResponse:
        return JSONResponse({"detail": f"unknown batch id {exc.args[0]!r}"}, status_code=404)

    @app.exception_handler(QueryError)
    @app.exception_handler(FilterError)
    async def bad_query(_: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(ModelUnavailable)
    @app.exception_handler(BundleError)
    async def unavailable(_: Request, exc: RuntimeError) -> JSONResponse:
        log.error("service unavailable: %s", exc)
        return JSONResponse({"detail": str(exc)}, status_code=503)
