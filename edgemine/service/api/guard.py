"""A route class that refuses text which is not valid Unicode before any endpoint runs.

Python's JSON parser (used by FastAPI for bodies) turns a lone `"\\ud800"` escape into a str that
cannot be encoded as UTF-8: stored in SQLite or echoed in a response it fails far from the cause.
Every router of the API uses `GuardedRoute`, so the check covers every route in one place.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response, params
from fastapi.dependencies.utils import get_flat_params
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from edgemine.service.surrogates import Path, find_lone_surrogate, has_lone_surrogate, may_hold_surrogate_escape

MESSAGE = "text holds a lone UTF-16 surrogate (e.g. \\ud800 without its pair): not valid Unicode"


def _error(loc: Path) -> RequestValidationError:
    return RequestValidationError([{"type": "unicode_surrogate", "loc": loc, "msg": MESSAGE, "input": None}])


def _decoded_json(text: bytes | str) -> Any:
    """Parse text that may be JSON; None when it is not (its own parser reports that later)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def check_text(loc: Path, text: str) -> None:
    """Refuse a decoded value with a lone surrogate, or JSON text whose decoding would hold one."""
    if has_lone_surrogate(text):
        raise _error(loc)
    # Query values such as `filters` are JSON; plain text like `\ud800` that is not JSON stays text.
    if may_hold_surrogate_escape(text):
        where = find_lone_surrogate(_decoded_json(text), loc)
        if where is not None:
            raise _error(where)


async def check_request(request: Request, json_body: bool, query_names: frozenset[str]) -> None:
    """Raise RequestValidationError (422) if a path or declared query parameter or the JSON body
    holds a lone surrogate; `json_body` says whether the route reads a JSON body at all."""
    for name, value in request.path_params.items():
        if isinstance(value, str) and has_lone_surrogate(value):
            raise _error(("path", name))
    for name, value in request.query_params.multi_items():
        if name in query_names:  # undeclared parameters are ignored by the route, so by the check too
            check_text(("query", name), value)
    if not json_body:
        return
    body = await request.body()  # cached on the request: the endpoint's parser reads the same bytes
    if body and may_hold_surrogate_escape(body):
        where = find_lone_surrogate(_decoded_json(body), ("body",))
        if where is not None:
            raise _error(where)


class GuardedRoute(APIRoute):
    """An APIRoute that runs `check_request` before parsing parameters and calling the endpoint."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler with the Unicode check."""
        handler = super().get_route_handler()
        # Form bodies are decoded as UTF-8 text (no escapes) and their JSON fields are parsed by
        # pydantic, whose parser refuses lone surrogates itself; reading them here would also
        # bypass the form limits. Routes without a body never read one.
        json_body = self.body_field is not None and not isinstance(self.body_field.field_info, params.Form)
        query_names = frozenset(p.alias for p in get_flat_params(self.dependant)
                                if isinstance(p.field_info, params.Query))

        async def guarded(request: Request) -> Response:
            await check_request(request, json_body, query_names)
            return await handler(request)

        return guarded
