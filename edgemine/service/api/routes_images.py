"""Serving images (full size or thumbnails), never from outside the bundle's image roots."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse, Response
from pydantic import TypeAdapter, ValidationError

from edgemine.bundle.errors import UnknownImageIds
from edgemine.indexer.pipeline import decode_image
from edgemine.service.api.deps import LoadedDep, SettingsDep
from edgemine.service.api.guard import GuardedRoute
from edgemine.service.api.responses import NotFoundError, errors
from edgemine.service.browse import ImagePage, browse
from edgemine.service.query import FilterValue

_FILTERS = TypeAdapter(dict[str, FilterValue])

router = APIRouter(prefix="/v1", tags=["images"], route_class=GuardedRoute)
IMAGE_MEDIA = {"image/*": {"schema": {"type": "string", "format": "binary"}}}
StateName = Literal["unlabeled", "queued", "labeled"]


@router.get("/images", response_model=ImagePage, responses=errors(422))
def list_images(
    loaded: LoadedDep,
    settings: SettingsDep,
    filters: Annotated[str, Query(description='Metadata filters as JSON, e.g. {"time_of_day": "night"}.')] = "{}",
    state: Annotated[list[StateName] | None, Query(description="Labeling states to list (default: all).")] = None,
    contains: Annotated[str, Query(max_length=500, description="Substring of the image id.")] = "",
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ImagePage:
    """Browse images with the same metadata filters as mining."""
    try:
        parsed = _FILTERS.validate_json(filters)
    except ValidationError as exc:
        raise HTTPException(422, detail=f"filters must be a JSON object of column conditions: {exc}") from exc
    return browse(loaded.snapshot, loaded.miner.states, parsed, list(state or ["unlabeled", "queued", "labeled"]),
                  contains, offset, limit, settings.public_url)


def _inside(path: Path, roots: list[str]) -> bool:
    real = os.path.realpath(path)
    return any(os.path.commonpath([real, os.path.realpath(r)]) == os.path.realpath(r) for r in roots)


@router.get("/images/{image_id:path}", response_model=None, response_class=Response,
            responses={200: {"content": IMAGE_MEDIA, "description": "The image file, or a JPEG thumbnail."},
                       **errors(403, 404, 422, not_found=NotFoundError)})
def image(image_id: str, loaded: LoadedDep, settings: SettingsDep,
          size: int | None = Query(default=None, ge=16, le=4096, description="Thumbnail edge.")) -> Response:
    """Serve an indexed image by id, optionally as a JPEG thumbnail."""
    snap = loaded.snapshot
    row = snap.row_by_id.get(image_id)
    if row is None:
        raise UnknownImageIds([image_id])
    raw = snap.catalog.column("path")[row].as_py()
    if not raw:
        raise HTTPException(404, detail=f"image {image_id!r} has no file (precomputed embedding)")
    path = Path(raw)
    if not _inside(path, snap.manifest.image_roots):
        raise HTTPException(403, detail=f"image {image_id!r} is outside the bundle's image roots")
    if not path.is_file():
        raise HTTPException(404, detail=f"file of image {image_id!r} is gone: {path}")
    if size is None:
        return FileResponse(path)
    try:
        im = decode_image(str(path))
    except ValueError as exc:
        raise HTTPException(422, detail=f"image {image_id!r} cannot be decoded: {exc}") from exc
    edge = min(size, settings.thumbnail_max)
    im.thumbnail((edge, edge))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return Response(buf.getvalue(), media_type="image/jpeg",
                    headers={"Cache-Control": "public, max-age=3600"})
