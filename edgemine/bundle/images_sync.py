"""Keep state.sqlite's images table in step with a bundle version's catalog, writing only differences.

The indexer plans the difference between the table and the version it is about to serve, writes
new and changed rows before it publishes (so every served image has a row to label), publishes,
then deletes the rows the version no longer holds. Each step runs in transactions of at most
CHUNK_ROWS rows, so labeling calls are never held behind one long write. Every run plans against
the version it leaves published, so a run killed between the two steps is repaired by the next.
Labeling state (state, batch_id) is never touched here except through `label_from_source`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pyarrow as pa

from edgemine.bundle.layout import RESERVED_COLUMNS
from edgemine.bundle.state import StateDB, apply_state

CHUNK_ROWS = 5000  # rows per write transaction: ~tens of ms, short enough for labeling calls


class ImageRow(NamedTuple):
    """One images-table row as the catalog defines it (metadata as canonical JSON)."""

    image_id: str
    path: str | None
    metadata: str
    vec_id: int


@dataclass
class SyncPlan:
    """What makes the images table equal to a catalog: rows to upsert, ids to delete."""

    upserts: list[ImageRow] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)


def _jsonable(value: Any) -> Any:
    # The form the service returns metadata in (see edgemine.service.miner): ISO-8601 text.
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def encode_metadata(metadata: dict[str, Any]) -> str:
    """Return metadata as canonical JSON text (sorted keys, ISO dates), comparable as a string."""
    return json.dumps(metadata, default=_jsonable, sort_keys=True)


def catalog_rows(catalog: pa.Table) -> list[ImageRow]:
    """Return the images-table rows of a catalog, sorted by image id."""
    meta_cols = [c for c in catalog.column_names if c not in RESERVED_COLUMNS]
    metadata = catalog.select(meta_cols).to_pylist() if meta_cols else [{}] * catalog.num_rows
    rows = [ImageRow(str(i), p, encode_metadata(m), int(v)) for i, p, m, v in zip(
        catalog.column("image_id").to_pylist(), catalog.column("path").to_pylist(), metadata,
        catalog.column("vec_id").to_pylist(), strict=True)]
    rows.sort()
    return rows


def plan_sync(db: StateDB, target: Sequence[ImageRow]) -> SyncPlan:
    """Compare the images table with `target` (sorted by id) by id, path, metadata and vec_id."""
    plan = SyncPlan()
    wanted = iter(target)
    want = next(wanted, None)
    # A merge of two id-ordered streams: the table is never held in memory. SQLite orders TEXT
    # by UTF-8 bytes, which is code point order, as Python orders str.
    with db.read() as conn:
        stored: Iterator[tuple[str, str | None, str, int | None]] = conn.execute(
            "SELECT image_id, path, metadata, vec_id FROM images ORDER BY image_id")
        for image_id, path, metadata, vec_id in stored:
            while want is not None and want.image_id < image_id:
                plan.upserts.append(want)
                want = next(wanted, None)
            if want is not None and want.image_id == image_id:
                if (want.path, want.metadata, want.vec_id) != (path, metadata, vec_id):
                    plan.upserts.append(want)
                want = next(wanted, None)
            else:
                plan.deletes.append(image_id)
    while want is not None:
        plan.upserts.append(want)
        want = next(wanted, None)
    return plan


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), CHUNK_ROWS):
        yield items[start:start + CHUNK_ROWS]


def apply_upserts(db: StateDB, rows: Sequence[ImageRow]) -> int:
    """Insert new rows and update changed ones, keeping their labeling state; return the count."""
    for chunk in _chunks(rows):
        with db.write() as conn:
            conn.executemany(
                "INSERT INTO images (image_id, path, metadata, vec_id) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(image_id) DO UPDATE SET path = excluded.path, "
                "metadata = excluded.metadata, vec_id = excluded.vec_id", chunk)
    return len(rows)


def apply_deletes(db: StateDB, ids: Sequence[str]) -> int:
    """Delete the rows of images the served version no longer holds; return the count."""
    for chunk in _chunks(ids):
        with db.write() as conn:
            conn.executemany("DELETE FROM images WHERE image_id = ?", [(i,) for i in chunk])
    return len(ids)


def label_from_source(db: StateDB, ids: Sequence[str]) -> int:
    """Mark images the source says are labeled (unknown ids ignored); return how many changed."""
    changed = 0
    for chunk in _chunks(ids):
        with db.write() as conn:
            changed += apply_state(conn, chunk, "labeled", None, only_known=True)
    return changed
