"""Health, metrics and bundle information."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from edgemine.service.api.deps import LoadedDep, RuntimeDep, StateDep
from edgemine.service.api.guard import GuardedRoute
from edgemine.service.api.metrics import render
from edgemine.service.api.responses import errors

router = APIRouter(tags=["health"], route_class=GuardedRoute)


@router.get("/v1/health", responses=errors(keyed=False))
def health(runtime: RuntimeDep, loaded: LoadedDep, state: StateDep) -> dict[str, Any]:
    """Report readiness, version, counts, model, and whether labeling state is `writable`."""
    manifest = loaded.snapshot.manifest
    return {
        "ready": True,
        "bundle": str(runtime.paths.root),
        "bundle_version": manifest.version,
        "model": manifest.model.identity,
        "model_loaded": runtime.model_loaded,
        "dim": manifest.dim,
        "index": manifest.index.model_dump(),
        "counts": {"images": manifest.counts.images, **state.state_counts()},
        "metadata_columns": loaded.snapshot.metadata_columns,
        "switch_error": runtime.switch_error,
        "writable": state.writable,
    }


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    """Prometheus metrics."""
    body, media = render()
    return Response(body, media_type=media)
