"""A request id per request: returned in `X-Request-ID` on every response and logged with 500s."""

from __future__ import annotations

import re
import uuid

from fastapi import FastAPI, Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
# A caller's (or proxy's) own id is kept only if it is short and plain: it is echoed and logged.
_ACCEPTED = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_SCOPE_KEY = "edgemine.request_id"


def request_id(request: Request) -> str:
    """Return the id of this request ("-" outside the middleware, e.g. in a bare test app)."""
    return str(request.scope.get(_SCOPE_KEY, "-"))


class RequestIdMiddleware:
    """Pure ASGI middleware: tag the scope with an id and add it to the response headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Assign the id, then pass the request on with a `send` that adds the header."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(HEADER.lower().encode(), b"").decode("latin-1")
        rid = incoming if _ACCEPTED.fullmatch(incoming) else uuid.uuid4().hex
        scope[_SCOPE_KEY] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if HEADER not in headers:
                    headers.append(HEADER, rid)
            await send(message)

        await self.app(scope, receive, send_with_id)


def install_request_ids(app: FastAPI) -> None:
    """Give every request an id (see `request_id`); the 500 handler reports and logs it."""
    app.add_middleware(RequestIdMiddleware)
