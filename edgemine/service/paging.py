"""Opaque paging cursors: where the previous page of a query ended, in (score desc, row) order."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from edgemine.service.query import MineQuery

CURSOR_VERSION = 1


class CursorError(ValueError):
    """A cursor is malformed or belongs to another query."""


@dataclass(frozen=True)
class Cursor:
    """The last candidate a page returned, and what is needed to continue after it.

    `seq` is the labeling event number the page saw: rows whose state changed since then are
    ranked as they were (so rrf ranks and diversity caps of the earlier pages are reproduced),
    but only rows eligible now are returned.
    """

    query: str  # digest of everything that shapes the ranking (not k, offset or cursor)
    version: int  # bundle version of the page (rows are renumbered across versions)
    seq: int
    rank: int  # candidates returned so far, up to and including this one
    score: float
    row: int
    image_id: str


def query_digest(query: MineQuery, upload_digests: Sequence[str] = ()) -> str:
    """Return a short digest of the query's ranking inputs (uploads by content).

    Session and parent query ids are provenance, not ranking inputs: with use_verdicts the digest
    is taken over the query with the session's verdicts already expanded into example ids.
    """
    shape = query.model_dump(mode="json", by_alias=True,
                             exclude={"k", "offset", "cursor", "session_id", "parent_query_id"})
    text = json.dumps([shape, list(upload_digests)], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def upload_digest(data: bytes) -> str:
    """Return the digest an uploaded file contributes to its query's digest."""
    return hashlib.sha256(data).hexdigest()[:24]


def encode_cursor(cursor: Cursor) -> str:
    """Return the opaque string form of `cursor` (URL-safe base64 of JSON)."""
    payload = [CURSOR_VERSION, *asdict(cursor).values()]
    raw = json.dumps(payload, separators=(",", ":")).encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(text: str, digest: str) -> Cursor:
    """Parse a cursor given back by a client; CursorError if malformed or from another query."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        payload = json.loads(raw.decode("utf-8", "surrogatepass"))
        version, query, bundle_version, seq, rank, score, row, image_id = payload
        types = (int, str, int, int, int, float, int, str)
        values = (version, query, bundle_version, seq, rank, score, row, image_id)
        if any(isinstance(v, bool) or not isinstance(v, t) for v, t in zip(values, types, strict=True)):
            raise ValueError("wrong field types")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise CursorError("malformed cursor: pass next_cursor of the previous page unchanged") from exc
    if version != CURSOR_VERSION:
        raise CursorError(f"cursor format {version} is not supported; start again without a cursor")
    if query != digest:
        raise CursorError("the cursor belongs to another query: examples, filters and options must "
                          "stay the same between pages (only k may change)")
    if rank < 1 or seq < 0 or not math.isfinite(score):
        raise CursorError("malformed cursor: pass next_cursor of the previous page unchanged")
    return Cursor(query, bundle_version, seq, rank, score, row, image_id)


def cursor_message(exc: CursorError, asked: MineQuery) -> str:
    """Explain a refused cursor; a use_verdicts query's examples change with every verdict."""
    if asked.use_verdicts and str(exc).startswith("the cursor belongs to another query"):
        # Its pages are ranked by the examples of the first page: new verdicts make a new ranking.
        return ("the session's verdicts changed since the first page (with use_verdicts they are "
                "examples too): mine again without a cursor, passing the ids already shown in exclude_ids")
    return str(exc)


def rows_before(score: np.ndarray, rows: np.ndarray, cursor: Cursor, cursor_row: int) -> np.ndarray:
    """Flag positions at or before the cursor in (score desc, row asc) order."""
    at = np.float32(cursor.score)
    flags: np.ndarray = (score > at) | ((score == at) & (rows <= cursor_row))
    flags &= np.isfinite(score)
    flags |= rows == cursor_row  # its score may differ in the last bit when recomputed
    return flags


def encode_after(scope: str, last: str) -> str:
    """Return an opaque cursor for a sorted list of strings: continue after `last` within `scope`.

    `scope` names what is paged (e.g. a lock's content hash), so a cursor of another list is refused.
    """
    raw = json.dumps([CURSOR_VERSION, scope, last], separators=(",", ":")).encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_after(text: str, scope: str) -> str:
    """Return the last item a cursor of `encode_after` names; CursorError if malformed or of another list."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        version, got_scope, last = json.loads(raw.decode("utf-8", "surrogatepass"))
        if not (isinstance(version, int) and isinstance(got_scope, str) and isinstance(last, str)):
            raise ValueError("wrong field types")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise CursorError("malformed cursor: pass next_cursor of the previous page unchanged") from exc
    if version != CURSOR_VERSION or got_scope != scope:
        raise CursorError("the cursor belongs to another list (e.g. the lock changed since): start again "
                          "without a cursor")
    return last
