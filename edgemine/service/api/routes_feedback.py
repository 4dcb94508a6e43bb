"""Review verdicts and mining yield."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from edgemine.bundle.feedback import YieldReport, yield_report
from edgemine.service import limits
from edgemine.service.api.deps import StateDep
from edgemine.service.api.guard import GuardedRoute
from edgemine.service.api.responses import UnknownIdsError, errors
from edgemine.service.verdicts import VerdictPage, VerdictsRecorded, VerdictsRequest, page, record

router = APIRouter(prefix="/v1", tags=["feedback"], route_class=GuardedRoute)


@router.post("/verdicts", response_model=VerdictsRecorded,
             responses=errors(404, 413, 422, not_found=UnknownIdsError))
def post_verdicts(request: VerdictsRequest, state: StateDep) -> VerdictsRecorded:
    """Store accept / reject / skip verdicts; a reject excludes an unlabeled image from later mining.

    A later accept or skip brings a rejected image back. Queued and labeled images keep their
    state. Unknown image ids fail the whole request with 404 (nothing is stored).
    """
    return record(state, request)


@router.get("/verdicts", response_model=VerdictPage, responses=errors(422))
def get_verdicts(
    state: StateDep,
    query_id: Annotated[str | None, Query(max_length=limits.MAX_SESSION_CHARS)] = None,
    verdict: Literal["accept", "reject", "skip"] | None = None,
    session_id: Annotated[str | None, Query(max_length=limits.MAX_SESSION_CHARS)] = None,
    latest_only: Annotated[bool, Query(description="Only each image's latest verdict (within the query "
                                                   "or session asked for); false: the whole history.")] = True,
    limit: Annotated[int, Query(ge=1, le=limits.MAX_VERDICTS_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=limits.MAX_VERDICTS_OFFSET)] = 0,
) -> VerdictPage:
    """List stored verdicts, oldest first, of a query and/or session, optionally of one kind."""
    return page(state, query_id=query_id, verdict=verdict, session_id=session_id, latest_only=latest_only,
                limit=limit, offset=offset)


@router.get("/yield", response_model=YieldReport, responses=errors(422))
def get_yield(state: StateDep,
              session_id: Annotated[str | None, Query(max_length=limits.MAX_SESSION_CHARS)] = None) -> YieldReport:
    """Yield (accepted / reviewed, 95% Wilson interval) per query, batch, strategy and session."""
    return yield_report(state, session_id=session_id)
