"""Annotation batches and labeling state."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from edgemine.service import limits
from edgemine.service.api.deps import LoadedDep, SettingsDep, StateDep
from edgemine.service.api.guard import GuardedRoute
from edgemine.service.api.responses import UnknownIdsError, errors
from edgemine.service.batches import (
    Batch,
    BatchCreate,
    BatchDeleted,
    ExportFormat,
    create_batch,
    delete_batch,
    export_batch,
    get_batch,
    list_batches,
)

router = APIRouter(prefix="/v1", tags=["labeling"], route_class=GuardedRoute)
EXPORT_MEDIA = {"application/x-ndjson": {"schema": {"type": "string"}}, "text/csv": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}


class LabelRequest(BaseModel):
    """Set the labeling state of images."""

    model_config = ConfigDict(extra="forbid")

    image_ids: list[Annotated[str, Field(max_length=limits.MAX_ID_CHARS)]] = Field(
        min_length=1, max_length=limits.MAX_LABEL_IDS)
    state: Literal["labeled", "queued", "unlabeled"] = "labeled"


class LabelResponse(BaseModel):
    """How many images changed state."""

    changed: int
    state: str


@router.post("/batches", response_model=Batch, status_code=201,
             responses=errors(400, 404, 409, 413, 422, not_found=UnknownIdsError))
def create(request: BatchCreate, loaded: LoadedDep, state: StateDep, settings: SettingsDep) -> Batch:
    """Queue candidates as a named annotation batch; they are excluded from later mining.

    Ids already queued or labeled are skipped (listed in `skipped`); when that is every id,
    nothing is created and the answer is 409.
    """
    batch = create_batch(state, loaded.snapshot, request)
    return get_batch(state, loaded.snapshot, batch.batch_id, settings.public_url).model_copy(
        update={"skipped": batch.skipped})


@router.get("/batches", response_model=list[Batch], responses=errors())
def list_all(state: StateDep) -> list[Batch]:
    """List annotation batches, newest first."""
    return list_batches(state)


@router.get("/batches/{batch_id}", response_model=Batch, responses=errors(404, 422))
def get_one(batch_id: str, loaded: LoadedDep, state: StateDep, settings: SettingsDep) -> Batch:
    """Return a batch with its items and their current state."""
    return get_batch(state, loaded.snapshot, batch_id, settings.public_url)


@router.delete("/batches/{batch_id}", response_model=BatchDeleted, responses=errors(404, 422))
def delete(batch_id: str, state: StateDep) -> BatchDeleted:
    """Delete a batch; its images that are still queued go back to unlabeled, labeled ones stay labeled."""
    return delete_batch(state, batch_id)


@router.get("/batches/{batch_id}/export", response_class=Response,
            responses={200: {"content": EXPORT_MEDIA, "description": "The export file."}, **errors(404, 422)})
def export(batch_id: str, request: Request, loaded: LoadedDep, state: StateDep, settings: SettingsDep,
           format: ExportFormat = "jsonl") -> Response:
    """Export a batch as JSONL, CSV or a Label Studio task import file (absolute image URLs)."""
    # Labeling tools fetch images from elsewhere: links must be absolute, so without a configured
    # public URL use the address this request reached us at.
    base = settings.public_url or str(request.base_url)
    batch = get_batch(state, loaded.snapshot, batch_id, base)
    body, media = export_batch(batch, format)
    suffix = {"jsonl": "jsonl", "csv": "csv", "labelstudio": "labelstudio.json"}[format]
    return Response(body, media_type=media, headers={
        "Content-Disposition": f'attachment; filename="{batch_id}.{suffix}"'})


@router.post("/labels", response_model=LabelResponse,
             responses=errors(400, 404, 413, 422, not_found=UnknownIdsError))
def set_labels(request: LabelRequest, state: StateDep) -> LabelResponse:
    """Mark images labeled (or queued/unlabeled); unknown ids fail the whole request with 404."""
    return LabelResponse(changed=state.set_state(request.image_ids, request.state), state=request.state)
