"""Review verdicts and mining yield in the Python API: building verdict requests, listing verdicts, the yield report.

The models are the service's own (`VerdictsRequest`, `VerdictRecord`, the bundle's `YieldReport`);
the client checks what the service would check, so both backends refuse the same input alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from edgemine.bundle.feedback import (
    VERDICTS,
    BatchYield,
    QueryYield,
    SessionYield,
    StrategyYield,
    VerdictName,
    VerdictRecord,
    YieldStats,
)
from edgemine.bundle.feedback import YieldReport as YieldReportModel
from edgemine.client._backend import Backend
from edgemine.client.errors import QueryError, validation_message
from edgemine.service import limits
from edgemine.service.verdicts import VerdictsRequest

# Ids shown in a verdict table in Jupyter; `list(verdicts)` has them all.
MAX_VERDICT_ROWS = 200


def check_name(field: str, value: str | None) -> None:
    """Raise QueryError unless `value` is None or 1..MAX_SESSION_CHARS characters (as the service checks)."""
    if value is not None and not 1 <= len(value) <= limits.MAX_SESSION_CHARS:
        raise QueryError(f"{field} must be 1..{limits.MAX_SESSION_CHARS} characters (got {len(value)})")


def verdicts_request(groups: Sequence[tuple[str, list[str], str | None]], query_id: str | None,
                     session_id: str | None, reviewer: str | None) -> VerdictsRequest | None:
    """Build the request for (verdict, ids, their result's query_id) groups; None when there are no ids."""
    given: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    for verdict, ids, source_query in groups:
        for image_id in dict.fromkeys(ids):  # an id twice in one list is one verdict
            if given.setdefault(image_id, verdict) != verdict:
                raise QueryError(f"image {image_id!r} is given both {given[image_id]} and {verdict}; "
                                 "give each image one verdict per call")
            rows.append({"image_id": image_id, "verdict": verdict, "query_id": query_id or source_query})
    if not rows:
        return None
    try:
        return VerdictsRequest.model_validate({"verdicts": rows, "reviewer": reviewer, "session_id": session_id})
    except ValidationError as exc:
        raise QueryError(validation_message(exc)) from exc


class Verdicts(list[VerdictRecord]):
    """Stored verdicts (the service's `VerdictRecord`s), oldest first; Jupyter shows them as a table."""

    @property
    def ids(self) -> list[str]:
        """The image ids, in verdict order."""
        return [v.image_id for v in self]

    def _repr_html_(self) -> str:
        from edgemine.client.render import render_table

        shown = self[:MAX_VERDICT_ROWS]
        title = f"{len(self)} verdicts" + (f" (first {len(shown)} shown)" if len(shown) < len(self) else "")
        return render_table([v.model_dump() for v in shown], title)


def fetch_verdicts(backend: Backend, query_id: str | None, verdict: str | None, session_id: str | None,
                   latest_only: bool) -> Verdicts:
    """Fetch every page of stored verdicts of a query and/or session."""
    check_name("query_id", query_id)
    check_name("session_id", session_id)
    if verdict is not None and verdict not in VERDICTS:
        raise QueryError(f"unknown verdict {verdict!r}; valid: {', '.join(VERDICTS)}")
    kind: VerdictName | None = next((v for v in VERDICTS if v == verdict), None)  # narrowed for the type
    out = Verdicts()
    offset: int | None = 0
    # Offsets page a list ordered by arrival; verdicts stored meanwhile may shift a latest_only list.
    while offset is not None:
        page = backend.verdicts(query_id, kind, session_id, latest_only, limits.MAX_VERDICTS_PAGE, offset)
        out.extend(page.verdicts)
        offset = page.next_offset
    return out


class YieldReport:
    """Mining yield per query, batch, strategy and session: the service's report (`.model`), shown as tables.

    Yield = accepted / reviewed (a skip is not reviewed), with a 95% Wilson interval.
    """

    def __init__(self, model: YieldReportModel) -> None:
        """Wrap the service's YieldReport model."""
        self.model = model

    @property
    def overall(self) -> YieldStats:
        """Counts and yield over every verdict (of the session asked for)."""
        return self.model.overall

    @property
    def queries(self) -> list[QueryYield]:
        """Yield per mining query (with its session and strategy)."""
        return self.model.queries

    @property
    def batches(self) -> list[BatchYield]:
        """Yield per annotation batch (its images' latest verdicts)."""
        return self.model.batches

    @property
    def strategies(self) -> list[StrategyYield]:
        """Yield per strategy (max, mean, rrf, probe)."""
        return self.model.strategies

    @property
    def sessions(self) -> list[SessionYield]:
        """Yield per review session, with its cumulative yield curve."""
        return self.model.sessions

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-ready data (what GET /v1/yield answers)."""
        return self.model.model_dump(mode="json")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, YieldReport) and other.model == self.model

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        o = self.model.overall
        rate = "n/a" if o.yield_rate is None else f"{o.yield_rate:.3f}"
        return (f"<YieldReport yield {rate}: {o.accepted} accepted of {o.reviewed} reviewed, "
                f"{len(self.model.queries)} queries, {len(self.model.sessions)} sessions>")

    def _repr_html_(self) -> str:
        from edgemine.client.render_yield import render_yield

        return render_yield(self.model)


__all__ = ["Verdicts", "YieldReport", "check_name", "fetch_verdicts", "verdicts_request"]
