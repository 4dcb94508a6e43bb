"""Serving images (full size or thumbnails): decoded pixels only, never from outside the bundle's image roots."""

from __future__ import annotations

import threading
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError

from edgemine.bundle import objects
from edgemine.bundle.errors import UnknownImageIds
from edgemine.bundle.image_source import ImageOutsideRoots, indexed_image
from edgemine.bundle.state import LABEL_STATES
from edgemine.models.images import NotAnImage, reencode_image
from edgemine.service.api.deps import LoadedDep, SettingsDep
from edgemine.service.api.guard import GuardedRoute
from edgemine.service.api.responses import NotFoundError, errors
from edgemine.service.browse import ImagePage, browse
from edgemine.service.query import FilterValue

_FILTERS = TypeAdapter(dict[str, FilterValue])

router = APIRouter(prefix="/v1", tags=["images"], route_class=GuardedRoute)
IMAGE_MEDIA = {"image/*": {"schema": {"type": "string", "format": "binary"}}}
StateName = Literal["unlabeled", "queued", "labeled", "rejected"]


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
    return browse(loaded.snapshot, loaded.miner.states, parsed, list(state or LABEL_STATES),
                  contains, offset, limit, settings.public_url)



_NOSNIFF = {"X-Content-Type-Options": "nosniff"}
# A grid asks for dozens of thumbnails at once: decode a few at a time per worker, so that
# memory stays bounded by (slots x pixel limit) rather than by the thread pool's size.
_DECODE_SLOTS = threading.BoundedSemaphore(4)


@router.get("/images/{image_id:path}", response_model=None, response_class=Response,
            responses={200: {"content": IMAGE_MEDIA, "description": "The image's pixels, re-encoded (JPEG or PNG)."},
                       **errors(403, 404, 415, 422, not_found=NotFoundError)})
def image(image_id: str, loaded: LoadedDep, settings: SettingsDep,
          size: int | None = Query(default=None, ge=16, le=4096, description="Thumbnail edge.")) -> Response:
    """Serve an indexed image by id: its decoded pixels re-encoded (full size bounded, or a JPEG thumbnail)."""
    snap = loaded.snapshot
    row = snap.row_by_id.get(image_id)
    if row is None:
        raise UnknownImageIds([image_id])
    raw = snap.catalog.column("path")[row].as_py()
    if not raw:
        raise HTTPException(404, detail=f"image {image_id!r} has no file (precomputed embedding)", headers=_NOSNIFF)
    edge = min(size, settings.thumbnail_max) if size else settings.full_image_max_edge
    try:
        # Only what decodes as an image is served, and only its pixels: never a file's raw bytes.
        # An object's bytes are read inside the slots too: memory stays bounded by
        # (slots x max_object_bytes) whatever the number of threads.
        with _DECODE_SLOTS:
            source = indexed_image(raw, snap.manifest.image_roots, settings.max_object_bytes)
            body, media_type = reencode_image(source, edge, max_pixels=settings.max_image_pixels,
                                              thumbnail=bool(size))
    except ImageOutsideRoots as exc:
        raise HTTPException(403, detail=f"image {image_id!r} is outside the bundle's image roots",
                            headers=_NOSNIFF) from exc
    except objects.ObjectNotFound as exc:
        raise HTTPException(404, detail=f"file of image {image_id!r} is gone: {exc}", headers=_NOSNIFF) from exc
    except objects.ObjectAccessDenied as exc:
        raise HTTPException(403, detail=f"image {image_id!r} cannot be read: {exc}", headers=_NOSNIFF) from exc
    except objects.ObjectTooLarge as exc:
        raise HTTPException(422, detail=f"image {image_id!r} is not served: {exc}", headers=_NOSNIFF) from exc
    except objects.ObjectStoreError as exc:  # unreachable endpoint (named), or the store failed
        raise HTTPException(503, detail=f"image {image_id!r} cannot be read now: {exc}", headers=_NOSNIFF) from exc
    except NotAnImage as exc:
        raise HTTPException(415, detail=f"file of image {image_id!r} is not served: {exc}", headers=_NOSNIFF) from exc
    except ValueError as exc:
        raise HTTPException(422, detail=f"image {image_id!r} cannot be decoded: {exc}", headers=_NOSNIFF) from exc
    return Response(body, media_type=media_type,
                    headers={"Cache-Control": "private, max-age=3600", **_NOSNIFF})
