"""A request id per request: returned in `X-Request-ID` on every response and logged with 500s."""

from __future__ import annotations

import re
import uuid

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
# A caller's (or proxy's) own id is kept only if it is short and plain: it is echoed and logged.
_ACCEPTED = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_SCOPE_KEY = "edgemine.request_id"
_KEY = HEADER.lower().encode()


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
        incoming = ""
        for key, value in scope.get("headers") or ():
            if key == _KEY:  # ASGI servers give header names in lower case
                incoming = value.decode("latin-1")
        rid = incoming if _ACCEPTED.fullmatch(incoming) else uuid.uuid4().hex
        scope[_SCOPE_KEY] = rid
        raw = rid.encode("latin-1")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Plain list work rather than MutableHeaders: this runs on every response.
                headers = list(message.get("headers") or ())
                if not any(key.lower() == _KEY for key, _ in headers):
                    headers.append((_KEY, raw))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


def install_request_ids(app: FastAPI) -> None:
    """Give every request an id (see `request_id`); the 500 handler reports and logs it."""
    app.add_middleware(RequestIdMiddleware)
