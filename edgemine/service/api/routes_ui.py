"""The review page: one static HTML page (plain JS modules, no build step) over the public HTTP API."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

router = APIRouter(include_in_schema=False)


def static_dir() -> Path:
    """Return the directory holding the page's assets (shipped as package data)."""
    # `edgemine.service.static` is a plain data directory (no __init__.py): a namespace package,
    # whose files() is a MultiplexedPath; joining a child gives a real filesystem path.
    index = files("edgemine.service.static").joinpath("index.html")
    return Path(str(index)).parent


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    """Serve the review page."""
    return FileResponse(static_dir() / "index.html", media_type="text/html",
                        headers={"Cache-Control": "no-cache"})


# The page's scripts and styles; a mount is never part of the OpenAPI schema.
router.mount("/static", StaticFiles(directory=static_dir()), name="static")
