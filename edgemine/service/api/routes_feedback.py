"""Review verdicts and mining yield."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from edgemine.bundle.feedback import (
    VerdictName,
    VerdictRecord,
    YieldReport,
    list_verdicts,
    store_verdicts,
    yield_report,
)
from edgemine.service import limits
from edgemine.service.api.deps import StateDep
from edgemine.service.api.guard import GuardedRoute
from edgemine.service.api.responses import UnknownIdsError, errors
from edgemine.service.surrogates import CleanStr

router = APIRouter(prefix="/v1", tags=["feedback"], route_class=GuardedRoute)
Name = Annotated[CleanStr, Field(min_length=1, max_length=limits.MAX_SESSION_CHARS)]


class VerdictIn(BaseModel):
    """A reviewer's verdict on one candidate."""

    model_config = ConfigDict(extra="forbid")

    image_id: CleanStr = Field(min_length=1, max_length=limits.MAX_ID_CHARS)
    verdict: VerdictName
    query_id: Name | None = Field(default=None, description="The mining query that produced the candidate.")


class VerdictsRequest(BaseModel):
    """Verdicts to store, in the order they were given (a later verdict on an image wins)."""

    model_config = ConfigDict(extra="forbid")

    verdicts: list[VerdictIn] = Field(min_length=1, max_length=limits.MAX_VERDICTS)
    reviewer: Name | None = None
    session_id: Name | None = Field(default=None, description="The review session (see MineQuery.use_verdicts).")


class StateChanges(BaseModel):
    """Images whose labeling state the verdicts changed."""

    rejected: int = Field(description="Unlabeled images now rejected (excluded from mining).")
    unlabeled: int = Field(description="Rejected images back to unlabeled (a later accept or skip).")


class VerdictsRecorded(BaseModel):
    """How many verdicts were stored and what they did to labeling state."""

    recorded: int
    states: StateChanges


class VerdictPage(BaseModel):
    """A page of stored verdicts, oldest first."""

    verdicts: list[VerdictRecord]
    next_offset: int | None = Field(description="offset of the next page; null when this is the last.")


@router.post("/verdicts", response_model=VerdictsRecorded,
             responses=errors(404, 413, 422, not_found=UnknownIdsError))
def post_verdicts(request: VerdictsRequest, state: StateDep) -> VerdictsRecorded:
    """Store accept / reject / skip verdicts; a reject excludes an unlabeled image from later mining.

    A later accept or skip brings a rejected image back. Queued and labeled images keep their
    state. Unknown image ids fail the whole request with 404 (nothing is stored).
    """
    done = store_verdicts(state, [(v.image_id, v.verdict, v.query_id) for v in request.verdicts],
                          request.reviewer, request.session_id)
    return VerdictsRecorded(recorded=done.recorded,
                            states=StateChanges(rejected=done.rejected, unlabeled=done.unlabeled))


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
    rows = list_verdicts(state, query_id=query_id, verdict=verdict, session_id=session_id,
                         latest_only=latest_only, limit=limit + 1, offset=offset)
    more = len(rows) > limit
    return VerdictPage(verdicts=rows[:limit], next_offset=offset + limit if more else None)


@router.get("/yield", response_model=YieldReport, responses=errors(422))
def get_yield(state: StateDep,
              session_id: Annotated[str | None, Query(max_length=limits.MAX_SESSION_CHARS)] = None) -> YieldReport:
    """Yield (accepted / reviewed, 95% Wilson interval) per query, batch, strategy and session."""
    return yield_report(state, session_id=session_id)
