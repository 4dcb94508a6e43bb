"""Annotation batches: queue candidates under a name and export them for labeling tools."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgemine.bundle.errors import UnknownImageIds
from edgemine.bundle.layout import utc_now
from edgemine.bundle.snapshot import Snapshot
from edgemine.bundle.state import StateDB, apply_state
from edgemine.service import limits
from edgemine.service.miner import image_url
from edgemine.service.surrogates import CleanJSON, CleanStr, scrub

ExportFormat = Literal["jsonl", "csv", "labelstudio"]


class BatchItemIn(BaseModel):
    """A candidate to queue, with the provenance the mining call returned."""

    model_config = ConfigDict(extra="ignore")

    image_id: CleanStr = Field(min_length=1, max_length=limits.MAX_ID_CHARS)
    score: float | None = Field(default=None, allow_inf_nan=False)
    nearest_example_id: CleanStr | None = None
    nearest_example_similarity: float | None = Field(default=None, allow_inf_nan=False)


class BatchCreate(BaseModel):
    """A request to queue images as a named annotation batch."""

    model_config = ConfigDict(extra="forbid")

    name: CleanStr = Field(min_length=1, max_length=200)
    items: list[BatchItemIn] = Field(min_length=1, max_length=limits.MAX_BATCH_ITEMS)
    query: CleanJSON = Field(default_factory=dict, description="The mining query, for provenance.")


class BatchItem(BatchItemIn):
    """A queued image in a batch."""

    position: int
    state: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    image_url: str = ""


class Batch(BaseModel):
    """An annotation batch."""

    batch_id: str
    name: str
    created_at: str
    bundle_version: int | None
    query: dict[str, Any]
    size: int
    items: list[BatchItem] | None = None
    skipped: list[str] = Field(default_factory=list, description="Ids already queued or labeled.")


class BatchDeleted(BaseModel):
    """A deleted batch and how many of its images went back to unlabeled."""

    batch_id: str
    released: int = Field(description="Queued images of the batch that are unlabeled again.")


class NothingToQueue(ValueError):
    """Every image of a new batch is already queued or labeled: no empty batch is created."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = list(ids)
        shown = ", ".join(repr(i) for i in self.ids[:10])
        more = f" and {len(self.ids) - 10} more" if len(self.ids) > 10 else ""
        super().__init__(f"all {len(self.ids)} images are already queued or labeled, no batch created: "
                         f"{shown}{more}")


def create_batch(db: StateDB, snapshot: Snapshot, request: BatchCreate) -> Batch:
    """Queue the items (unknown ids abort the whole batch); already queued/labeled ones are skipped.

    Raises NothingToQueue (and creates nothing) when every item is already queued or labeled.
    """
    ids = [item.image_id for item in request.items]
    known = db.known_ids(ids)
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise UnknownImageIds(unknown)
    batch_id = f"b-{uuid.uuid4().hex[:12]}"
    now = utc_now()
    with db.write() as conn:
        taken: set[str] = set()
        for start in range(0, len(ids), 900):  # SQLite caps bound parameters per statement
            chunk = ids[start:start + 900]
            taken |= {r[0] for r in conn.execute(
                "SELECT image_id FROM images WHERE state != 'unlabeled' AND image_id IN "
                f"({','.join('?' * len(chunk))})", chunk)}
        fresh = [item for item in dict((i.image_id, i) for i in request.items).values()
                 if item.image_id not in taken]
        if not fresh:
            raise NothingToQueue(sorted(taken))
        conn.execute("INSERT INTO batches (batch_id, name, created_at, bundle_version, query) "
                     "VALUES (?, ?, ?, ?, ?)",
                     (batch_id, request.name, now, snapshot.version, json.dumps(request.query)))
        conn.executemany(
            "INSERT INTO batch_items (batch_id, image_id, position, score, nearest_example_id, "
            "nearest_example_similarity) VALUES (?, ?, ?, ?, ?, ?)",
            [(batch_id, item.image_id, pos, item.score, item.nearest_example_id,
              item.nearest_example_similarity) for pos, item in enumerate(fresh)])
        apply_state(conn, [item.image_id for item in fresh], "queued", batch_id, only_known=True)
    batch = get_batch(db, snapshot, batch_id)
    batch.skipped = sorted(taken)
    return batch


def list_batches(db: StateDB) -> list[Batch]:
    """Return all batches, newest first, without their items."""
    with db.read() as conn:
        rows = conn.execute(
            "SELECT b.batch_id, b.name, b.created_at, b.bundle_version, b.query, "
            "(SELECT COUNT(*) FROM batch_items i WHERE i.batch_id = b.batch_id) "
            "FROM batches b ORDER BY b.created_at DESC, b.rowid DESC").fetchall()
    return [Batch(batch_id=r[0], name=scrub(r[1]), created_at=r[2], bundle_version=r[3],
                  query=_stored_query(r[4]), size=r[5]) for r in rows]


def _stored_query(text: str) -> dict[str, Any]:
    # Versions before the Unicode check stored lone surrogates as JSON escapes (json.dumps writes
    # them as "\ud800"): decoding them back would make every response that lists the batch fail.
    value = scrub(json.loads(text))
    return value if isinstance(value, dict) else {"query": value}


class UnknownBatch(KeyError):
    """No batch has this id."""


def get_batch(db: StateDB, snapshot: Snapshot, batch_id: str, base_url: str = "") -> Batch:
    """Return a batch with its items, their current state and metadata."""
    with db.read() as conn:
        head = conn.execute("SELECT batch_id, name, created_at, bundle_version, query FROM batches "
                            "WHERE batch_id = ?", (batch_id,)).fetchone()
        if head is None:
            raise UnknownBatch(batch_id)
        rows = conn.execute(
            "SELECT i.image_id, i.position, i.score, i.nearest_example_id, i.nearest_example_similarity, "
            "COALESCE(m.state, 'removed'), COALESCE(m.metadata, '{}') FROM batch_items i "
            "LEFT JOIN images m ON m.image_id = i.image_id WHERE i.batch_id = ? ORDER BY i.position",
            (batch_id,)).fetchall()
    items = [BatchItem(image_id=r[0], position=r[1], score=r[2], nearest_example_id=scrub(r[3]),
                       nearest_example_similarity=r[4], state=r[5], metadata=json.loads(r[6]),
                       image_url=image_url(r[0], base_url)) for r in rows]
    return Batch(batch_id=head[0], name=scrub(head[1]), created_at=head[2], bundle_version=head[3],
                 query=_stored_query(head[4]), size=len(items), items=items)


def delete_batch(db: StateDB, batch_id: str) -> BatchDeleted:
    """Delete a batch; its images still queued by it go back to unlabeled (labeled ones stay labeled)."""
    with db.connect() as conn:
        if conn.execute("SELECT 1 FROM batches WHERE batch_id = ?", (batch_id,)).fetchone() is None:
            raise UnknownBatch(batch_id)
        # Only images this batch queued: one unqueued and re-queued by a later batch belongs to that one.
        queued = [r[0] for r in conn.execute(
            "SELECT image_id FROM images WHERE batch_id = ? AND state = 'queued'", (batch_id,))]
        released = apply_state(conn, queued, "unlabeled", None, only_known=True)
        conn.execute("UPDATE images SET batch_id = NULL WHERE batch_id = ?", (batch_id,))
        conn.execute("DELETE FROM batch_items WHERE batch_id = ?", (batch_id,))
        conn.execute("DELETE FROM batches WHERE batch_id = ?", (batch_id,))
    return BatchDeleted(batch_id=batch_id, released=released)


def export_batch(batch: Batch, fmt: ExportFormat) -> tuple[str, str]:
    """Render a batch as (text, media type) in JSONL, CSV or Label Studio task import JSON."""
    items: Sequence[BatchItem] = batch.items or []
    provenance = {"batch_id": batch.batch_id, "batch_name": batch.name, "query": batch.query}
    if fmt == "jsonl":
        lines = [json.dumps({**item.model_dump(), **provenance}, default=str) for item in items]
        return "".join(line + "\n" for line in lines), "application/x-ndjson"
    if fmt == "csv":
        meta_keys = sorted({k for item in items for k in item.metadata})
        out = io.StringIO()
        writer = csv.writer(out)
        head = ["image_id", "image_url", "position", "score", "nearest_example_id",
                "nearest_example_similarity", "state", "batch_id", "batch_name", "query"]
        writer.writerow(head + meta_keys)
        query = json.dumps(batch.query, default=str)
        for item in items:
            writer.writerow([item.image_id, item.image_url, item.position, item.score,
                             item.nearest_example_id, item.nearest_example_similarity, item.state,
                             batch.batch_id, batch.name, query]
                            + [item.metadata.get(k) for k in meta_keys])
        return out.getvalue(), "text/csv"
    if fmt == "labelstudio":
        tasks = [{
            "data": {"image": item.image_url, "image_id": item.image_id, **item.metadata},
            "meta": {**provenance, "score": item.score,
                     "nearest_example_id": item.nearest_example_id,
                     "nearest_example_similarity": item.nearest_example_similarity},
        } for item in items]
        return json.dumps(tasks, indent=2, default=str), "application/json"
    raise ValueError(f"unknown export format {fmt!r}; valid: jsonl, csv, labelstudio")
