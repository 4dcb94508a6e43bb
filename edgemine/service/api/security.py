"""Request guards, as pure ASGI middlewares: allowed Host, optional API key, bounded request bodies.

They run before routing and before any body is read, so a refused request never reaches a route.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgemine.service.config import Settings

# Read tokens let <img> tags and download links (which cannot send headers) fetch images and
# exports; they are derived from the key, expire, and never contain it.
READ_TOKEN_TTL_S = 3600
_READ_TOKEN_PATHS = re.compile(r"^/v1/images/.+|^/v1/batches/[^/]+/export$")
_OPEN_PATHS = frozenset({"/v1/health"})
_SEEN_HOSTS = 64  # allowed Host header values a HostCheckMiddleware remembers


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def host_of(header: str) -> str | None:
    """Return the host name of a Host header ("[::1]:8000" -> "::1"), lower case; None if malformed."""
    header = header.strip().lower()
    if header.startswith("["):
        end = header.find("]")
        rest = header[end + 1:]
        if end < 0 or (rest and not re.fullmatch(r":\d{1,5}", rest)):
            return None
        return header[1:end]
    name, _, port = header.partition(":")
    if not name or (port and not port.isdigit()) or ":" in port:
        return None
    return name


def host_allowed(host: str, allowed: list[str]) -> bool:
    """Whether `host` matches one of `allowed` (`*` any, `*.example.com` subdomains)."""
    for pattern in allowed:
        pattern = pattern.lower().strip("[]")
        if pattern == "*" or host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
            return True
    return False


class HostCheckMiddleware:
    """Refuse requests whose Host header is not an allowed host (a DNS rebinding defence), with 400."""

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        self.allowed = list(allowed_hosts)
        self.any = "*" in self.allowed
        # Host headers seen and allowed: a client sends the same one on every request. Bounded,
        # as the header is the client's; refused ones are not kept.
        self.seen: set[str] = set()

    def _allows(self, header: str) -> bool:
        if header in self.seen:
            return True
        host = host_of(header)
        if host is None or not host_allowed(host, self.allowed):
            return False
        if len(self.seen) < _SEEN_HOSTS:
            self.seen.add(header)
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.any or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = _header(scope, b"host")
        if header is None or not self._allows(header):
            shown = (header or "")[:100]
            await _send_json(send, 400, {"detail": (
                f"Host {shown!r} is not served here (allowed: {', '.join(self.allowed)}); to serve it, start "
                "the service with --allowed-host NAME or EDGEMINE_ALLOWED_HOSTS=NAME1,NAME2")})
            return
        await self.app(scope, receive, send)


def issue_read_token(key: str, now: float | None = None, ttl: int = READ_TOKEN_TTL_S) -> str:
    """Return a token `<expiry>.<hmac>` that authorizes GETs of images and exports until expiry."""
    expiry = int(now if now is not None else time.time()) + ttl
    return f"{expiry}.{_sign(key, expiry)}"


def verify_read_token(key: str, token: str, now: float | None = None) -> bool:
    """Whether `token` was issued with `key` and has not expired."""
    expiry, _, sig = token.partition(".")
    if not expiry.isdigit() or len(expiry) > 12 or int(expiry) < (now if now is not None else time.time()):
        return False
    return hmac.compare_digest(sig.encode(), _sign(key, int(expiry)).encode())


def _sign(key: str, expiry: int) -> str:
    return hmac.new(key.encode(), f"edgemine-read:{expiry}".encode(), hashlib.sha256).hexdigest()


def _query_token(scope: Scope) -> str | None:
    from urllib.parse import parse_qs

    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[-1] if values else None


class ApiKeyMiddleware:
    """Require `Authorization: Bearer <key>` on /v1 (except /v1/health); 401 with WWW-Authenticate otherwise."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self.key = key.encode()

    def _authorized(self, scope: Scope) -> tuple[bool, str]:
        auth = _header(scope, b"authorization")
        if auth is not None:
            scheme, _, given = auth.partition(" ")
            if scheme.lower() != "bearer" or not given.strip():
                return False, "malformed Authorization header: send `Authorization: Bearer <API key>`"
            # Constant time: the comparison must not tell how much of a guess was right.
            if hmac.compare_digest(given.strip().encode(), self.key):
                return True, ""
            return False, "wrong API key"
        token = _query_token(scope)
        if token is not None and scope["method"] in ("GET", "HEAD") and _READ_TOKEN_PATHS.match(scope["path"]):
            if verify_read_token(self.key.decode(), token):
                return True, ""
            return False, "expired or invalid read token: get a new one from GET /v1/read-token"
        return False, "this service needs an API key: send `Authorization: Bearer <API key>`"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        # Preflights carry no credentials by design (CORS answers them).
        if (scope["type"] != "http" or not (path == "/v1" or path.startswith("/v1/"))
                or path in _OPEN_PATHS or scope["method"] == "OPTIONS"):
            await self.app(scope, receive, send)
            return
        ok, why = self._authorized(scope)
        if not ok:
            await _send_json(send, 401, {"detail": why}, {"WWW-Authenticate": 'Bearer realm="edgemine"'})
            return
        await self.app(scope, receive, send)


class BodyTooLarge(HTTPException):
    """A request body went over its limit while being read (raised from `receive`)."""

    def __init__(self, detail: str) -> None:
        super().__init__(413, detail=detail)


class BodyLimitMiddleware:
    """Bound request bodies before they are read or spooled: 413 on a large Content-Length, or mid-stream."""

    def __init__(self, app: ASGIApp, json_max: int, multipart_max: int) -> None:
        self.app = app
        self.json_max = json_max
        self.multipart_max = multipart_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        multipart = (_header(scope, b"content-type") or "").lower().startswith("multipart/")
        limit = self.multipart_max if multipart else self.json_max
        what = "multipart upload" if multipart else "request body"
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                await _send_json(send, 400, {"detail": f"invalid Content-Length header {length[:40]!r}"})
                return
            if int(length) > limit:
                await _send_json(send, 413, {"detail": f"{what} of {int(length)} bytes is over the limit of "
                                                       f"{limit} bytes"})
                return
        seen = 0
        started = False

        async def counted() -> Message:
            # Chunked bodies (no Content-Length) are counted as they arrive.
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(f"{what} is over the limit of {limit} bytes")
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge as exc:
            # Normally FastAPI's HTTPException handler answers it; this covers readers outside a route.
            if started:
                raise
            await _send_json(send, 413, {"detail": exc.detail})


class ReadToken(BaseModel):
    """A token for `?token=` on image and export URLs (which cannot carry a header)."""

    token: str | None
    expires_in: int | None


token_router = APIRouter(prefix="/v1", tags=["auth"])


@token_router.get("/read-token", response_model=ReadToken)
def read_token(request: Request) -> ReadToken:
    """Return a short-lived token for image and export URLs (null when the service has no API key)."""
    settings: Settings = request.app.state.settings
    if settings.api_key is None:
        return ReadToken(token=None, expires_in=None)
    return ReadToken(token=issue_read_token(settings.api_key.get_secret_value()), expires_in=READ_TOKEN_TTL_S)


def install_security(app: FastAPI, settings: Settings) -> None:
    """Add the guards (outermost first: Host, API key, body size) and the read-token route."""
    app.include_router(token_router)
    app.add_middleware(BodyLimitMiddleware, json_max=settings.max_json_body_bytes,
                       multipart_max=settings.max_upload_body_bytes)
    if settings.api_key is not None:
        app.add_middleware(ApiKeyMiddleware, key=settings.api_key.get_secret_value())
    app.add_middleware(HostCheckMiddleware, allowed_hosts=settings.allowed_hosts)
