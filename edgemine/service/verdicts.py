"""The verdict request and response models of `/v1/verdicts`, and the two calls behind them.

Kept apart from the routes (no FastAPI here) so that the Python API's local backend stores and
lists verdicts with the same models and the same paging as the service.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from edgemine.bundle.feedback import VerdictName, VerdictRecord, list_verdicts, store_verdicts
from edgemine.bundle.state import StateDB
from edgemine.service import limits
from edgemine.service.surrogates import CleanStr

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


def record(db: StateDB, request: VerdictsRequest) -> VerdictsRecorded:
    """Store a request's verdicts in one transaction (UnknownImageIds: nothing stored)."""
    done = store_verdicts(db, [(v.image_id, v.verdict, v.query_id) for v in request.verdicts],
                          request.reviewer, request.session_id)
    return VerdictsRecorded(recorded=done.recorded, states=StateChanges(rejected=done.rejected,
                                                                        unlabeled=done.unlabeled))


def page(db: StateDB, query_id: str | None = None, verdict: VerdictName | None = None,
         session_id: str | None = None, latest_only: bool = True, limit: int = 100,
         offset: int = 0) -> VerdictPage:
    """Return one page of stored verdicts, oldest first, and the offset of the next one."""
    rows = list_verdicts(db, query_id=query_id, verdict=verdict, session_id=session_id,
                         latest_only=latest_only, limit=limit + 1, offset=offset)
    more = len(rows) > limit  # one row more than asked says whether a next page exists
    return VerdictPage(verdicts=rows[:limit], next_offset=offset + limit if more else None)


__all__ = ["StateChanges", "VerdictIn", "VerdictPage", "VerdictsRecorded", "VerdictsRequest", "page", "record"]
