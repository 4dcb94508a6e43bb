"""state.sqlite: the bundle's mutable database (images, labeling state, batches, indexer journal).

Published versions are immutable files; everything that changes between versions (labeling
state, annotation batches, the indexer's not-yet-published work) lives here, so it survives
re-indexing and restarts and every service worker sees a change on its next query.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgemine.bundle.errors import UnknownImageIds
from edgemine.bundle.layout import utc_now
from edgemine.models.vectors import Vectors

LabelState = Literal["unlabeled", "queued", "labeled"]
LABEL_STATES: tuple[LabelState, ...] = ("unlabeled", "queued", "labeled")

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    image_id TEXT PRIMARY KEY,
    path TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    vec_id INTEGER,
    state TEXT NOT NULL DEFAULT 'unlabeled' CHECK (state IN ('unlabeled', 'queued', 'labeled')),
    batch_id TEXT,
    state_updated_at TEXT
);
CREATE TABLE IF NOT EXISTS label_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id TEXT NOT NULL,
    state TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    bundle_version INTEGER,
    query TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS batch_items (
    batch_id TEXT NOT NULL REFERENCES batches(batch_id),
    image_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    score REAL,
    nearest_example_id TEXT,
    nearest_example_similarity REAL,
    PRIMARY KEY (batch_id, image_id)
);
CREATE TABLE IF NOT EXISTS journal (
    image_id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    model TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    image_id TEXT PRIMARY KEY,
    path TEXT,
    reason TEXT NOT NULL,
    at TEXT NOT NULL
);
"""


class StateDB:
    """Access to state.sqlite; opens a short-lived connection per operation (thread/process safe)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        finally:
            db.close()

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """Yield a connection inside one transaction (committed on success)."""
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    def _reader(self) -> sqlite3.Connection:
        # One long-lived autocommit connection per thread: queries on the mining hot path must
        # not pay for connecting or for taking the write lock.
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=True)
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    # -- indexer journal: embedded but not yet published --------------------------------------

    def journal_add(self, ids: Sequence[str], fingerprints: Sequence[str], model: str,
                    vectors: Vectors) -> None:
        """Record a finished batch of vectors so a killed job does not embed them again."""
        rows = [(i, f, model, np.ascontiguousarray(v, np.float32).tobytes())
                for i, f, v in zip(ids, fingerprints, vectors, strict=True)]
        with self.connect() as db:
            db.executemany("INSERT OR REPLACE INTO journal VALUES (?, ?, ?, ?)", rows)

    def journal_load(self, model: str, dim: int) -> dict[str, tuple[str, Vectors]]:
        """Return journaled vectors of `model` by image id, with their fingerprints."""
        with self.connect() as db:
            rows = db.execute(
                "SELECT image_id, fingerprint, vector FROM journal WHERE model = ?", (model,)
            ).fetchall()
        out: dict[str, tuple[str, Vectors]] = {}
        for image_id, fingerprint, blob in rows:
            vec = np.frombuffer(blob, dtype=np.float32)
            if vec.shape[0] == dim:
                out[image_id] = (fingerprint, vec)
        return out

    def journal_count(self) -> int:
        """Return how many vectors wait in the journal."""
        with self.connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM journal").fetchone()[0])

    def journal_clear(self) -> None:
        """Drop the journal once its vectors are published."""
        with self.connect() as db:
            db.execute("DELETE FROM journal")

    def record_failures(self, failures: Iterable[tuple[str, str | None, str]]) -> None:
        """Remember files that could not be used (id, path, reason)."""
        now = utc_now()
        with self.connect() as db:
            db.executemany("INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?)",
                           [(i, p, r, now) for i, p, r in failures])

    def clear_failures(self, ids: Iterable[str]) -> None:
        """Forget failures of files that have since been indexed."""
        with self.connect() as db:
            db.executemany("DELETE FROM failures WHERE image_id = ?", [(i,) for i in ids])

    # -- catalog mirror, synced at publish ------------------------------------------------------

    def sync_images(self, rows: Iterable[tuple[str, str | None, dict[str, Any], int]],
                    removed: Iterable[str], labeled: Iterable[str]) -> None:
        """Mirror a published version's images (id, path, metadata, vec_id) and their labels."""
        with self.connect() as db:
            db.executemany(
                "INSERT INTO images (image_id, path, metadata, vec_id) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(image_id) DO UPDATE SET path = excluded.path, "
                "metadata = excluded.metadata, vec_id = excluded.vec_id",
                [(i, p, json.dumps(m, default=str), v) for i, p, m, v in rows],
            )
            db.executemany("DELETE FROM images WHERE image_id = ?", [(i,) for i in removed])
            apply_state(db, list(labeled), "labeled", None, only_known=True)

    def known_ids(self, ids: Iterable[str]) -> set[str]:
        """Return which of `ids` exist in the images table."""
        wanted = list(dict.fromkeys(ids))
        found: set[str] = set()
        with self.connect() as db:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(r[0] for r in db.execute(
                    f"SELECT image_id FROM images WHERE image_id IN ({marks})", chunk))
        return found

    # -- labeling state -----------------------------------------------------------------------

    def set_state(self, ids: Sequence[str], state: LabelState, batch_id: str | None = None) -> int:
        """Set the labeling state of known images; raises UnknownImageIds naming unknown ones."""
        with self.connect() as db:
            return apply_state(db, ids, state, batch_id, only_known=False)

    def label_events_since(self, seq: int) -> tuple[int, list[tuple[str, str]]]:
        """Return the newest event number and the (image_id, state) changes after `seq`."""
        rows = self._reader().execute(
            "SELECT seq, image_id, state FROM label_events WHERE seq > ? ORDER BY seq", (seq,)
        ).fetchall()
        if not rows:
            return seq, []
        return int(rows[-1][0]), [(r[1], r[2]) for r in rows]

    def non_unlabeled(self) -> tuple[int, list[tuple[str, str]]]:
        """Return the newest event number and every image that is queued or labeled."""
        with self.connect() as db:
            head = db.execute("SELECT COALESCE(MAX(seq), 0) FROM label_events").fetchone()[0]
            rows = db.execute(
                "SELECT image_id, state FROM images WHERE state != 'unlabeled'").fetchall()
        return int(head), [(r[0], r[1]) for r in rows]

    def state_counts(self) -> dict[str, int]:
        """Return how many images are in each labeling state."""
        with self.connect() as db:
            rows = db.execute("SELECT state, COUNT(*) FROM images GROUP BY state").fetchall()
        counts: dict[str, int] = dict.fromkeys(LABEL_STATES, 0)
        counts.update({r[0]: int(r[1]) for r in rows})
        return counts


def apply_state(db: sqlite3.Connection, ids: Sequence[str], state: LabelState,
                batch_id: str | None, only_known: bool) -> int:
    """Set states inside an open transaction and log one event per changed image."""
    if state not in LABEL_STATES:
        raise ValueError(f"unknown state {state!r}; valid: {', '.join(LABEL_STATES)}")
    ids = list(dict.fromkeys(ids))
    if not ids:
        return 0
    db.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (image_id TEXT PRIMARY KEY)")
    db.execute("DELETE FROM wanted")
    db.executemany("INSERT INTO wanted VALUES (?)", [(i,) for i in ids])
    if not only_known:
        unknown = [r[0] for r in db.execute(
            "SELECT image_id FROM wanted WHERE image_id NOT IN (SELECT image_id FROM images)")]
        if unknown:
            raise UnknownImageIds(unknown)
    now = utc_now()
    # Labeled is final: queueing an already-labeled image must not demote it.
    guard = "AND state != 'labeled'" if state == "queued" else ""
    changed = [r[0] for r in db.execute(
        f"SELECT image_id FROM images WHERE image_id IN (SELECT image_id FROM wanted) "
        f"AND state != ? {guard}", (state,))]
    db.executemany(
        "UPDATE images SET state = ?, batch_id = COALESCE(?, batch_id), state_updated_at = ? "
        "WHERE image_id = ?", [(state, batch_id, now, i) for i in changed])
    db.executemany("INSERT INTO label_events (image_id, state, at) VALUES (?, ?, ?)",
                   [(i, state, now) for i in changed])
    return len(changed)
