"""Review feedback in state.sqlite: the mining queries asked, the verdicts given, and their yield.

Every mining call stores its query (`record_query`); a reviewer's accept / reject / skip on a
candidate is a verdict (`record_verdicts`), kept with its time, reviewer, session and the query
that produced the candidate. History is kept: an image's latest verdict wins everywhere.

A verdict also moves the image's labeling state, so that every service worker's row states
(which follow label_events) see it on their next query: `reject` moves an unlabeled image to
`rejected` (excluded from mining unless `include_states` names it); a later `accept` or `skip`
moves a rejected image back to `unlabeled`. Queued and labeled images keep their state.

Yield = accepted / reviewed, where reviewed counts accept and reject verdicts (a skip is no
judgement); each figure comes with a 95% Wilson score interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from edgemine.bundle.errors import UnknownImageIds
from edgemine.bundle.layout import utc_now
from edgemine.bundle.state import StateDB
from edgemine.bundle.state_conn import StateConn

VerdictName = Literal["accept", "reject", "skip"]
VERDICTS: tuple[VerdictName, ...] = ("accept", "reject", "skip")
# Two-sided 95% normal quantile, for the Wilson interval.
Z95 = 1.959963984540054
# A session's yield curve has at most this many points (evenly spaced, the last one always kept).
MAX_CURVE_POINTS = 500
_NO_LIMIT = 2**62  # LIMIT without a limit: SQLite needs one before OFFSET, PostgreSQL refuses -1
_COLUMNS = "seq, image_id, verdict, query_id, session_id, reviewer, source, at"


class VerdictRecord(BaseModel):
    """One stored verdict."""

    seq: int = Field(description="Order of arrival (later wins).")
    image_id: str
    verdict: VerdictName
    query_id: str | None
    session_id: str | None
    reviewer: str | None
    source: str = Field(description="Where it came from: api, labelstudio, ...")
    at: str = Field(description="When it was stored (UTC).")


@dataclass(frozen=True)
class RecordedVerdicts:
    """What a call to store verdicts did."""

    recorded: int
    rejected: int  # images moved from unlabeled to rejected
    unlabeled: int  # images moved from rejected back to unlabeled


class YieldStats(BaseModel):
    """Review counts (latest verdict per image) and the yield with its 95% Wilson interval."""

    reviewed: int = Field(description="Images whose latest verdict is accept or reject.")
    accepted: int
    rejected: int
    skipped: int = Field(description="Images whose latest verdict is skip (not counted as reviewed).")
    yield_rate: float | None = Field(description="accepted / reviewed; null when nothing was reviewed.")
    ci_low: float | None = Field(description="Lower end of the 95% Wilson score interval.")
    ci_high: float | None = Field(description="Upper end of the 95% Wilson score interval.")


class QueryYield(YieldStats):
    """Yield of the candidates of one mining query."""

    query_id: str
    session_id: str | None
    strategy: str | None = Field(description="null when the query was not stored (e.g. read-only state).")
    created_at: str | None


class BatchYield(YieldStats):
    """Yield of the images of one annotation batch (their latest verdicts, from any query)."""

    batch_id: str
    name: str
    created_at: str


class StrategyYield(YieldStats):
    """Yield of every stored query of one strategy."""

    strategy: str


class CurvePoint(BaseModel):
    """The session's cumulative yield after its first `verdicts` verdicts."""

    verdicts: int
    at: str
    reviewed: int
    accepted: int
    yield_rate: float | None


class SessionYield(YieldStats):
    """Yield of one review session and its cumulative yield curve (in verdict order)."""

    session_id: str
    curve: list[CurvePoint] = Field(description=f"At most {MAX_CURVE_POINTS} points, evenly spaced; "
                                                "the last is the session's current yield.")


class YieldReport(BaseModel):
    """Mining yield overall, per query, per batch, per strategy and per session."""

    overall: YieldStats
    queries: list[QueryYield]
    batches: list[BatchYield]
    strategies: list[StrategyYield]
    sessions: list[SessionYield]


# -- writing ------------------------------------------------------------------------------------


def record_query(db: StateDB, query_id: str, session_id: str | None, parent_query_id: str | None,
                 bundle_version: int | None, strategy: str, query_json: str,
                 busy_timeout: float | None = None) -> None:
    """Store a mining query (its JSON as received) so verdicts can point back to it.

    `busy_timeout`: how long to wait for another writer before StateBusy (default: the database's).
    """
    with db.write(busy_timeout) as conn:
        conn.execute("INSERT INTO queries (query_id, session_id, parent_query_id, created_at, bundle_version, "
                     "strategy, query) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (query_id, session_id, parent_query_id, utc_now(), bundle_version, strategy, query_json))


def record_verdicts(db: StateDB, verdicts: Sequence[tuple[str, str, str | None]], reviewer: str | None = None,
                    session_id: str | None = None, source: str = "api") -> int:
    """Store (image_id, verdict, query_id) verdicts in one transaction; return how many.

    Raises UnknownImageIds naming ids not in the bundle (nothing is stored) and ValueError for
    a verdict other than accept, reject or skip.
    """
    return store_verdicts(db, verdicts, reviewer, session_id, source).recorded


def store_verdicts(db: StateDB, verdicts: Sequence[tuple[str, str, str | None]], reviewer: str | None = None,
                   session_id: str | None = None, source: str = "api") -> RecordedVerdicts:
    """Like record_verdicts, also saying how many images changed labeling state."""
    with db.write() as conn:
        return apply_verdicts(conn, verdicts, reviewer, session_id, source)


def apply_verdicts(conn: StateConn, verdicts: Sequence[tuple[str, str, str | None]],
                   reviewer: str | None, session_id: str | None, source: str = "api") -> RecordedVerdicts:
    """Store verdicts inside an open write transaction (to combine with other writes atomically)."""
    bad = sorted({v for _, v, _ in verdicts if v not in VERDICTS})
    if bad:
        raise ValueError(f"unknown verdict {', '.join(map(repr, bad))}; valid: {', '.join(VERDICTS)}")
    if not verdicts:
        return RecordedVerdicts(0, 0, 0)
    final = {image_id: verdict for image_id, verdict, _ in verdicts}  # the last one in the call wins
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS verdict_final (image_id TEXT PRIMARY KEY, verdict TEXT NOT NULL)")
    conn.execute("DELETE FROM verdict_final")
    conn.executemany("INSERT INTO verdict_final (image_id, verdict) VALUES (?, ?)", list(final.items()))
    unknown = [r[0] for r in conn.execute(
        "SELECT image_id FROM verdict_final WHERE image_id NOT IN (SELECT image_id FROM images)")]
    if unknown:
        raise UnknownImageIds(unknown)
    now = utc_now()
    conn.executemany(
        "INSERT INTO verdicts (image_id, verdict, query_id, session_id, reviewer, source, at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(image_id, verdict, query_id, session_id, reviewer, source, now)
         for image_id, verdict, query_id in verdicts])
    to_rejected = [r[0] for r in conn.execute(
        "SELECT f.image_id FROM verdict_final f JOIN images i ON i.image_id = f.image_id "
        "WHERE f.verdict = 'reject' AND i.state = 'unlabeled'")]
    to_unlabeled = [r[0] for r in conn.execute(
        "SELECT f.image_id FROM verdict_final f JOIN images i ON i.image_id = f.image_id "
        "WHERE f.verdict IN ('accept', 'skip') AND i.state = 'rejected'")]
    changes = [(i, "rejected") for i in to_rejected] + [(i, "unlabeled") for i in to_unlabeled]
    conn.executemany("UPDATE images SET state = ?, state_updated_at = ? WHERE image_id = ?",
                     [(state, now, i) for i, state in changes])
    # A label event per change: every worker's row states follow the event log.
    conn.executemany("INSERT INTO label_events (image_id, state, at) VALUES (?, ?, ?)",
                     [(i, state, now) for i, state in changes])
    return RecordedVerdicts(len(verdicts), len(to_rejected), len(to_unlabeled))


# -- reading ------------------------------------------------------------------------------------


def _scope(query_id: str | None, session_id: str | None, alias: str) -> tuple[str, list[str]]:
    """Return a WHERE fragment (and its parameters) for verdicts of a query and/or a session."""
    parts: list[str] = []
    params: list[str] = []
    if query_id is not None:
        parts.append(f"{alias}.query_id = ?")
        params.append(query_id)
    if session_id is not None:
        # A verdict sent without a session still belongs to the session of its query.
        parts.append(f"({alias}.session_id = ? OR {alias}.query_id IN "
                     "(SELECT query_id FROM queries WHERE session_id = ?))")
        params += [session_id, session_id]
    return " AND ".join(parts) or "1 = 1", params


def list_verdicts(db: StateDB, query_id: str | None = None, verdict: str | None = None,
                  session_id: str | None = None, latest_only: bool = True, limit: int | None = None,
                  offset: int = 0) -> list[VerdictRecord]:
    """Return verdicts oldest first, of a query and/or session, optionally of one verdict kind.

    With `latest_only`, each image's latest verdict within the query/session is taken first and
    then filtered by `verdict` (so verdict="reject" lists images rejected now, not ever).
    """
    where, params = _scope(query_id, session_id, "v")
    sql = f"SELECT {_COLUMNS} FROM verdicts v WHERE {where}"
    args: list[object] = list(params)
    if latest_only:
        inner, inner_params = _scope(query_id, session_id, "w")
        sql += f" AND v.seq = (SELECT MAX(w.seq) FROM verdicts w WHERE w.image_id = v.image_id AND {inner})"
        args += inner_params
    if verdict is not None:
        sql += " AND v.verdict = ?"
        args.append(verdict)
    sql += " ORDER BY v.seq LIMIT ? OFFSET ?"
    args += [_NO_LIMIT if limit is None else limit, offset]
    with db.read() as conn:
        rows = conn.execute(sql, args).fetchall()
    return [VerdictRecord(seq=r[0], image_id=r[1], verdict=r[2], query_id=r[3], session_id=r[4],
                          reviewer=r[5], source=r[6], at=r[7]) for r in rows]


def session_verdicts(db: StateDB, session_id: str) -> tuple[list[str], list[str]]:
    """Return the session's (accepted ids, rejected ids) by latest verdict, in verdict order."""
    latest = list_verdicts(db, session_id=session_id, latest_only=True)
    return ([v.image_id for v in latest if v.verdict == "accept"],
            [v.image_id for v in latest if v.verdict == "reject"])


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float] | None:
    """Return the Wilson score interval of successes / trials (None when there are no trials)."""
    if trials <= 0:
        return None
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _stats(latest: dict[str, str]) -> dict[str, Any]:
    accepted = sum(v == "accept" for v in latest.values())
    rejected = sum(v == "reject" for v in latest.values())
    reviewed = accepted + rejected
    interval = wilson_interval(accepted, reviewed)
    return {"reviewed": reviewed, "accepted": accepted, "rejected": rejected,
            "skipped": len(latest) - reviewed, "yield_rate": accepted / reviewed if reviewed else None,
            "ci_low": interval[0] if interval else None, "ci_high": interval[1] if interval else None}


@dataclass(frozen=True)
class _Row:
    seq: int
    image_id: str
    verdict: str
    query_id: str | None
    session_id: str | None
    strategy: str | None
    at: str


def _latest(rows: Iterable[_Row]) -> dict[str, str]:
    latest: dict[str, str] = {}
    for row in rows:  # in seq order: later verdicts overwrite earlier ones
        latest[row.image_id] = row.verdict
    return latest


def _curve(rows: list[_Row]) -> list[CurvePoint]:
    latest: dict[str, str] = {}
    accepted = rejected = 0
    points: list[tuple[int, str, int, int]] = []  # plain tuples: a long session has many
    for n, row in enumerate(rows, start=1):
        before = latest.get(row.image_id)
        accepted += (row.verdict == "accept") - (before == "accept")
        rejected += (row.verdict == "reject") - (before == "reject")
        latest[row.image_id] = row.verdict
        points.append((n, row.at, accepted + rejected, accepted))
    if len(points) > MAX_CURVE_POINTS:
        step = len(points) / MAX_CURVE_POINTS
        points = [points[min(len(points) - 1, math.ceil((i + 1) * step) - 1)] for i in range(MAX_CURVE_POINTS)]
    return [CurvePoint(verdicts=n, at=at, reviewed=reviewed, accepted=acc,
                       yield_rate=acc / reviewed if reviewed else None) for n, at, reviewed, acc in points]


def yield_report(db: StateDB, session_id: str | None = None) -> YieldReport:
    """Return the yield of every query, batch, strategy and session (or of one session's verdicts)."""
    where, params = _scope(None, session_id, "v")
    with db.read() as conn:
        rows = [_Row(*r) for r in conn.execute(
            "SELECT v.seq, v.image_id, v.verdict, v.query_id, COALESCE(v.session_id, q.session_id), "
            f"q.strategy, v.at FROM verdicts v LEFT JOIN queries q ON q.query_id = v.query_id WHERE {where} "
            "ORDER BY v.seq", params)]
        query_ids = sorted({r.query_id for r in rows if r.query_id is not None})
        queries: dict[str, tuple[str | None, str, str]] = {}
        for start in range(0, len(query_ids), 500):
            chunk = query_ids[start:start + 500]
            queries.update({r[0]: (r[1], r[2], r[3]) for r in conn.execute(
                "SELECT query_id, session_id, strategy, created_at FROM queries "
                f"WHERE query_id IN ({','.join('?' * len(chunk))})", chunk)})
        batch_rows = conn.execute(
            "SELECT b.batch_id, b.name, b.created_at, i.image_id FROM batches b "
            "JOIN batch_items i ON i.batch_id = b.batch_id ORDER BY b.created_at, b.batch_id").fetchall()

    latest = _latest(rows)
    by_query: dict[str, list[_Row]] = {}
    by_strategy: dict[str, list[_Row]] = {}
    by_session: dict[str, list[_Row]] = {}
    for row in rows:
        if row.query_id is not None:
            by_query.setdefault(row.query_id, []).append(row)
        if row.strategy is not None:
            by_strategy.setdefault(row.strategy, []).append(row)
        if row.session_id is not None:
            by_session.setdefault(row.session_id, []).append(row)
    batches: dict[str, tuple[str, str, dict[str, str]]] = {}
    for batch_id, name, created_at, image_id in batch_rows:
        items = batches.setdefault(batch_id, (name, created_at, {}))[2]
        if image_id in latest:
            items[image_id] = latest[image_id]

    query_out = []
    for qid, group in by_query.items():
        session, strategy, created = queries.get(qid, (group[0].session_id, None, None))
        query_out.append(QueryYield(query_id=qid, session_id=session, strategy=strategy, created_at=created,
                                    **_stats(_latest(group))))
    return YieldReport(
        overall=YieldStats(**_stats(latest)),
        queries=query_out,
        batches=[BatchYield(batch_id=b, name=name, created_at=created, **_stats(items))
                 for b, (name, created, items) in batches.items() if items],
        strategies=[StrategyYield(strategy=s, **_stats(_latest(group))) for s, group in sorted(by_strategy.items())],
        sessions=[SessionYield(session_id=s, curve=_curve(group), **_stats(_latest(group)))
                  for s, group in by_session.items()],
    )


__all__ = [
    "MAX_CURVE_POINTS",
    "VERDICTS",
    "BatchYield",
    "CurvePoint",
    "QueryYield",
    "RecordedVerdicts",
    "SessionYield",
    "StrategyYield",
    "VerdictName",
    "VerdictRecord",
    "YieldReport",
    "YieldStats",
    "apply_verdicts",
    "list_verdicts",
    "record_query",
    "record_verdicts",
    "session_verdicts",
    "store_verdicts",
    "wilson_interval",
    "yield_report",
]
