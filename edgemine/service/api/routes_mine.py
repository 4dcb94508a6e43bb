"""Mining endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from edgemine.service.api.deps import LoadedDep, SettingsDep
from edgemine.service.api.guard import GuardedRoute
from edgemine.service.api.metrics import observe_mine
from edgemine.service.api.responses import UnknownIdsError, errors
from edgemine.service.miner import Miner
from edgemine.service.query import MineQuery, MineResult
from edgemine.service.runtime import Runtime
from edgemine.service.uploads import Upload

router = APIRouter(prefix="/v1", tags=["mining"], route_class=GuardedRoute)


def mine_json(miner: Miner, query: MineQuery) -> tuple[bytes, float]:
    """Mine and serialize; return the JSON body (what MineResult.model_dump_json gives) and the miner's total ms."""
    result = miner.mine(query)
    return result.model_dump_json(by_alias=True).encode(), result.timings.total_ms


def _mine_current(runtime: Runtime, query: MineQuery) -> tuple[bytes, float]:
    # The newest version (loading it when CURRENT changed, as `get_loaded` would) on this thread.
    return mine_json(runtime.current().miner, query)


@router.post("/mine", response_model=MineResult, responses=errors(400, 404, 413, 422, not_found=UnknownIdsError))
async def mine(query: MineQuery, request: Request) -> Response:
    """Return the nearest eligible (by default unlabeled) candidates for the examples."""
    # One hop to a worker thread for the version check, the search and the encoding, and no
    # dependencies to solve (FastAPI's dependency machinery cost ~70 us per request here). The
    # result is ours and typed (candidates are built by Candidate.trusted): it is serialized once,
    # by pydantic, instead of being validated again as a response model and then encoded
    # (response_model stays for the docs).
    runtime: Runtime = request.app.state.runtime
    body, total_ms = await run_in_threadpool(_mine_current, runtime, query)
    observe_mine("ids" if not query.texts else "text", total_ms / 1e3)
    return Response(body, media_type="application/json")


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
    result = await run_in_threadpool(loaded.miner.mine, parsed, uploads)
    observe_mine("upload", result.timings.total_ms / 1e3)
    return result
