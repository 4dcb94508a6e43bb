"""Translate domain exceptions into HTTP responses at the edge; no handler can fail to encode."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.utils import is_body_allowed_for_status_code
from starlette.exceptions import HTTPException
from starlette.responses import Response

from edgemine.bundle.errors import BundleError, StateUnavailable, UnknownImageIds, UnstorableText
from edgemine.models.base import ModelUnavailable
from edgemine.scenarios.errors import (
    InputFileError,
    LockError,
    NotEvaluable,
    ScenarioError,
    UnknownModel,
    UnknownScenario,
)
from edgemine.service.api.request_ids import HEADER, request_id
from edgemine.service.api.safe_json import MAX_ITEMS, SafeJSONResponse, safe_json
from edgemine.service.batches import NothingToQueue, UnknownBatch
from edgemine.service.filters import FilterError
from edgemine.service.limits import ECHO_CHARS, ECHO_ID_CHARS, MAX_ECHOED_IDS, shorten
from edgemine.service.miner import QueryError
from edgemine.service.paging import CursorError
from edgemine.service.scenario_views import ScenarioExists

log = logging.getLogger("edgemine.service")


def validation_detail(errors: list[Any]) -> list[Any]:
    """Return pydantic's error list, cut to MAX_ITEMS entries (the last one says how many were left out).

    Each error's echoed `input` is cut harder than other values (ECHO_CHARS per string, 10 items
    per list): a rejected 64-prompt list must not come back as 64 KB.
    """
    errors = [{**e, "input": safe_json(e["input"], max_text=ECHO_CHARS, max_items=10)}
              if isinstance(e, dict) and "input" in e else e for e in errors]
    if len(errors) <= MAX_ITEMS:
        return errors
    kept = errors[: MAX_ITEMS - 1]
    return [*kept, {"loc": [], "type": "truncated",
                    "msg": f"... and {len(errors) - len(kept)} more errors"}]


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that map library errors to status codes, and a JSON 500 catch-all."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> Response:
        # Echoed inputs may hold NaN, lone surrogates or megabytes: SafeJSONResponse copes with all.
        return SafeJSONResponse({"detail": validation_detail(list(exc.errors()))}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:
        if not is_body_allowed_for_status_code(exc.status_code):
            return Response(status_code=exc.status_code, headers=exc.headers)
        return SafeJSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(UnknownImageIds)
    async def unknown_ids(_: Request, exc: UnknownImageIds) -> Response:
        # At most MAX_ECHOED_IDS ids, each cut short: the detail says how many there were.
        shown = [shorten(i, ECHO_ID_CHARS) for i in exc.ids[:MAX_ECHOED_IDS]]
        return SafeJSONResponse({"detail": str(exc), "unknown_ids": shown}, status_code=404)

    @app.exception_handler(UnknownBatch)
    async def unknown_batch(_: Request, exc: UnknownBatch) -> Response:
        return SafeJSONResponse({"detail": f"unknown batch id {exc.args[0]!r}"}, status_code=404)

    @app.exception_handler(NothingToQueue)
    async def nothing_to_queue(_: Request, exc: NothingToQueue) -> Response:
        return SafeJSONResponse({"detail": str(exc), "skipped": exc.ids[:MAX_ITEMS]}, status_code=409)

    @app.exception_handler(QueryError)
    @app.exception_handler(FilterError)
    @app.exception_handler(UnstorableText)
    async def bad_query(_: Request, exc: ValueError) -> Response:
        return SafeJSONResponse({"detail": str(exc)}, status_code=422)

    # Scenario errors (more specific handlers win over BundleError's 503 below).
    @app.exception_handler(UnknownScenario)
    @app.exception_handler(UnknownModel)
    async def unknown_name(_: Request, exc: ScenarioError) -> Response:
        return SafeJSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(LockError)
    @app.exception_handler(NotEvaluable)
    @app.exception_handler(ScenarioExists)
    async def scenario_conflict(_: Request, exc: ScenarioError) -> Response:
        return SafeJSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(InputFileError)
    @app.exception_handler(ScenarioError)
    @app.exception_handler(CursorError)
    async def bad_scenario_input(_: Request, exc: Exception) -> Response:
        # A broken scenario file, members resolving to nothing, a request over a limit, a stale cursor.
        return SafeJSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(StateUnavailable)
    async def state_unavailable(_: Request, exc: StateUnavailable) -> Response:
        # The shared state database is down or unreachable: nothing was stored; the same request
        # succeeds again once it is back (no restart needed).
        log.error("state database unavailable: %s", exc)
        return SafeJSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(ModelUnavailable)
    @app.exception_handler(BundleError)
    async def unavailable(_: Request, exc: RuntimeError) -> Response:
        log.error("service unavailable: %s", exc)
        return SafeJSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        # Starlette calls this outermost (after every middleware), then re-raises for the server's log.
        rid = request_id(request)
        rid = uuid.uuid4().hex if rid == "-" else rid
        log.error("internal error, request id %s: %s %s", rid, request.method, request.url.path, exc_info=exc)
        return SafeJSONResponse({"detail": "internal error", "request_id": rid}, status_code=500,
                                headers={HEADER: rid})
