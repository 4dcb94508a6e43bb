"""Mining endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from edgemine.service.api.deps import LoadedDep, SettingsDep
from edgemine.service.api.guard import GuardedRoute
from edgemine.service.api.metrics import MINE_SECONDS
from edgemine.service.api.responses import UnknownIdsError, errors
from edgemine.service.miner import Upload
from edgemine.service.query import MineQuery, MineResult

router = APIRouter(prefix="/v1", tags=["mining"], route_class=GuardedRoute)


@router.post("/mine", response_model=MineResult, responses=errors(400, 404, 413, 422, not_found=UnknownIdsError))
def mine(query: MineQuery, loaded: LoadedDep) -> MineResult:
    """Return the nearest eligible (by default unlabeled) candidates for the examples."""
    result = loaded.miner.mine(query)
    MINE_SECONDS.labels(kind="ids" if not query.texts else "text").observe(result.timings.total_ms / 1e3)
    return result


@router.post("/mine/upload", response_model=MineResult,
             responses=errors(400, 404, 413, 422, not_found=UnknownIdsError))
async def mine_upload(
    loaded: LoadedDep,
    settings: SettingsDep,
    files: Annotated[list[UploadFile], File(description="Example images (positives).")],
    query: Annotated[str, Form(description="A MineQuery as JSON (positive_ids may be empty).")] = "{}",
) -> MineResult:
    """Mine from uploaded example images, optionally combined with a JSON query."""
    try:
        parsed = MineQuery.model_validate_json(query)
    except ValidationError as exc:
        # Through the app's validation handler, which also copes with NaN/Infinity in the input.
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from exc
    if len(files) > settings.max_upload_files:
        raise HTTPException(413, detail=f"{len(files)} files uploaded; at most {settings.max_upload_files} "
                                        "per request")
    limit = settings.max_upload_file_bytes
    uploads: list[Upload] = []
    for upload in files:
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise HTTPException(413, detail=f"uploaded file {upload.filename!r} is larger than {limit} bytes")
        uploads.append(Upload(upload.filename or f"file{len(uploads)}", data, settings.max_upload_pixels))
    from starlette.concurrency import run_in_threadpool

    result = await run_in_threadpool(loaded.miner.mine, parsed, uploads)
    MINE_SECONDS.labels(kind="upload").observe(result.timings.total_ms / 1e3)
    return result
