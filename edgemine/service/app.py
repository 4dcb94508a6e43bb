"""The FastAPI application: created by a factory, heavy state loaded in the lifespan."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from edgemine import __version__
from edgemine.service.api import (
    routes_feedback,
    routes_health,
    routes_images,
    routes_labels,
    routes_mine,
    routes_scenarios,
    routes_ui,
)
from edgemine.service.api.docs import install_offline_docs
from edgemine.service.api.errors import install_error_handlers
from edgemine.service.api.metrics import RequestCounter
from edgemine.service.api.request_ids import install_request_ids
from edgemine.service.api.security import install_security
from edgemine.service.config import Settings
from edgemine.service.runtime import EmbedderLoader, Runtime

log = logging.getLogger("edgemine.service")


def create_app(settings: Settings | None = None, *, loader: EmbedderLoader | None = None) -> FastAPI:
    """Build the service app.

    Args:
        settings: service settings; read from the environment (EDGEMINE_*) when omitted.
        loader: how to load the bundle's model for text/upload queries (tests pass a fake).
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from threadpoolctl import threadpool_limits

        from edgemine.search.exact import warm_up
        from edgemine.search.searcher import set_search_threads

        set_search_threads(settings.faiss_threads)  # applied per search: OpenMP counts are per thread
        # The exact kernel (numba) loads in ~1-2 s: in the background, not in the first query.
        threading.Thread(target=warm_up, name="edgemine-warm-up", daemon=True).start()
        threadpool_limits(settings.blas_threads, user_api="blas")  # process-wide, for this worker
        kwargs = {"loader": loader} if loader is not None else {}
        app.state.runtime = Runtime(settings.bundle, expected_model=settings.expected_model,
                                    public_url=settings.public_url, state_url=settings.state_url_text, **kwargs)
        snap = app.state.runtime.current().snapshot
        log.info("serving %s version %d (%d images, model %s)", settings.bundle, snap.version,
                 snap.manifest.counts.images, snap.manifest.model.identity)
        yield
        if app.state.runtime.state is not None:
            app.state.runtime.state.close()  # a PostgreSQL store's pooled connections

    app = FastAPI(title="edgemine", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Mine unlabeled recorded images that look like your model's failures.")
    install_offline_docs(app)  # /docs and /redoc without a CDN
    app.state.settings = settings
    install_security(app, settings)  # before CORS, so that CORS wraps (and answers preflights for) it
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["*"], allow_headers=["*"])

    app.add_middleware(RequestCounter)

    install_error_handlers(app)
    install_request_ids(app)
    for module in (routes_mine, routes_labels, routes_feedback, routes_images, routes_scenarios, routes_health,
                   routes_ui):
        app.include_router(module.router)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and multi-worker serving (settings from EDGEMINE_*)."""
    return create_app()
