"""Prometheus metrics (multiprocess-aware when PROMETHEUS_MULTIPROC_DIR is set)."""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("edgemine_http_requests_total", "HTTP requests", ["method", "route", "status"])
MINE_SECONDS = Histogram("edgemine_mine_seconds", "Mining latency (library call)", ["kind"],
                         buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))
# `labels()` takes a lock and builds a key on every call (~10 us): children are looked up once.
# Each cache holds what the metric itself holds for its label values, no more.
_REQUEST_CHILDREN: dict[tuple[str, str, str], Any] = {}
_MINE_CHILDREN: dict[str, Any] = {}


def count_request(method: str, route: str, status: str) -> None:
    """Count one request in edgemine_http_requests_total."""
    key = (method, route, status)
    child = _REQUEST_CHILDREN.get(key)
    if child is None:
        child = _REQUEST_CHILDREN.setdefault(key, REQUESTS.labels(method, route, status))
    child.inc()


def observe_mine(kind: str, seconds: float) -> None:
    """Record one mining call's latency in edgemine_mine_seconds."""
    child = _MINE_CHILDREN.get(kind)
    if child is None:
        child = _MINE_CHILDREN.setdefault(kind, MINE_SECONDS.labels(kind=kind))
    child.observe(seconds)


class RequestCounter:
    """Pure ASGI middleware counting requests by method, route template and status.

    Pure ASGI rather than `@app.middleware("http")`: BaseHTTPMiddleware wraps every request in a
    task group and memory streams, which cost more than some searches.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; count it once its status is known (500 when the app raised)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # The router stores the matched route in this same scope.
            route = scope.get("route")
            count_request(scope["method"], getattr(route, "path", "unmatched"), str(status))


def render() -> tuple[bytes, str]:
    """Return the metrics exposition for all worker processes."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
