"""Run a scenario's `members.query` (a /v1/mine body) on the miner: the `Resolver` of scenario locks.

A scenario is a slice of the whole bundle, labeled images included (they are the ones with
ground truth), so the query's `include_states` is replaced by every state. Its `k` may exceed
MAX_K: pages are fetched with cursors up to `k`, at most MAX_SCENARIO_MEMBERS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from edgemine.scenarios.lock import Resolver
from edgemine.service import limits
from edgemine.service.miner import Miner
from edgemine.service.query import MineQuery

# Members a scenario query may resolve to: as deep as cursor paging ranks (limits.MAX_DEPTH).
MAX_SCENARIO_MEMBERS = limits.MAX_DEPTH
ALL_STATES = ["unlabeled", "queued", "labeled", "rejected"]
_DEFAULT_K: int = MineQuery.model_fields["k"].default


def scenario_query(body: dict[str, Any]) -> tuple[MineQuery, int]:
    """Validate a scenario's query; return it (k cut to one page) and the number of members wanted.

    Raises ValueError naming the field (as `members.query.FIELD`).
    """
    body = dict(body)
    k = body.pop("k", _DEFAULT_K)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_SCENARIO_MEMBERS:
        raise ValueError(f"members.query.k: must be an integer from 1 to {MAX_SCENARIO_MEMBERS} "
                         f"(MAX_SCENARIO_MEMBERS), not {k!r}")
    for paging in ("cursor", "offset"):
        if body.get(paging):
            raise ValueError(f"members.query.{paging}: a scenario query starts from the top; remove {paging}")
        body.pop(paging, None)
    body["include_states"] = ALL_STATES
    try:
        query = MineQuery.model_validate({**body, "k": min(k, limits.MAX_K)})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"members.query{'.' + where if where else ''}: "
                         f"{str(first['msg']).removeprefix('Value error, ')}") from exc
    return query, k


def resolve_query(miner: Miner, body: dict[str, Any]) -> list[str]:
    """Return the ids the query ranks, best first, paging with cursors up to its `k`."""
    query, wanted = scenario_query(body)
    ids: list[str] = []
    cursor: str | None = None
    while len(ids) < wanted:
        page = miner.mine(query.model_copy(update={"k": min(limits.MAX_K, wanted - len(ids)), "cursor": cursor}))
        ids += [c.image_id for c in page.candidates]
        cursor = page.next_cursor
        if cursor is None or not page.candidates:
            break
    return ids


def miner_resolver(miner: Callable[[], Miner]) -> Resolver:
    """Return a Resolver running queries on the miner `miner()` returns (the current bundle version)."""
    return lambda body: resolve_query(miner(), body)
