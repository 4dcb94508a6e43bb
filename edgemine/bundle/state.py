"""state.sqlite: the bundle's mutable database (images, labeling state, batches, indexer journal).

Published versions are immutable files; everything that changes between versions (labeling
state, annotation batches, the indexer's not-yet-published work) lives here, so it survives
re-indexing and restarts and every service worker sees a change on its next query.

Concurrency: the database is in WAL mode. Writes run in short `write()` transactions
(BEGIN IMMEDIATE); reads run in `read()` transactions that never take the write lock, so a
health check or a query never waits behind the indexer or a large batch. The schema is versioned
(edgemine.bundle.migrations) and migrated when a writable StateDB opens the file.

The images table mirrors the published catalog. The indexer writes a new version's rows before
it publishes the version (edgemine.bundle.images_sync), so an image that is not yet published
can already be labeled or queued by id; it is then excluded from mining as soon as its version
is served. That is the accepted cost of never having a served image without a row.

Backends: this SQLite file is the embedded default; `open_state(paths, url)` with a
postgresql:// URL returns a PgStateDB (edgemine.bundle.state_pg) with the same API, for several
service hosts sharing one state. The SQL every module writes is the portable dialect of
edgemine.bundle.state_conn.

Read-only: when this process may not write the file or its directory (a non-root container
user on a bundle owned by another user), the database opens read-only: reads work, `writable`
is False and every write raises StateReadOnly (the service answers 503).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal
from urllib.parse import quote

import numpy as np

from edgemine.bundle.errors import BundleError, StateBusy, StateReadOnly, UnknownImageIds
from edgemine.bundle.layout import BundlePaths, utc_now
from edgemine.bundle.migrations import LATEST, check_known, migrate, schema_version
from edgemine.bundle.state_conn import StateConn
from edgemine.models.vectors import Vectors

LabelState = Literal["unlabeled", "queued", "labeled", "rejected"]
# Appended only: a state's position is its code in the service's per-row state arrays.
# "rejected": a reviewer's latest verdict was reject (edgemine.bundle.feedback); excluded from
# mining by default like queued and labeled images.
LABEL_STATES: tuple[LabelState, ...] = ("unlabeled", "queued", "labeled", "rejected")
# Primary result codes (extended codes carry them in the low byte).
_BUSY, _LOCKED, _READONLY, _CANTOPEN = 5, 6, 8, 14


def state_writable(path: Path) -> bool:
    """Return whether this process may write `path` and create its -wal/-shm files beside it."""
    if path.exists() and not os.access(path, os.W_OK):
        return False
    return os.access(path.parent, os.W_OK)


class StateDB:
    """Access to state.sqlite; a connection per write, one cached reader per thread."""

    # Whether several hosts share this state (then a service brings the images table in step
    # with the version it serves itself; see edgemine.service.runtime).
    shared = False

    def __init__(self, path: Path, *, read_only: bool = False, busy_timeout: float = 30.0) -> None:
        """Open (creating and migrating when writable) the state database at `path`.

        Args:
            path: the state.sqlite file.
            read_only: never write, even where the file is writable.
            busy_timeout: seconds a write waits for another writer before StateBusy.
        """
        self.path = Path(path)
        self.where = str(self.path)
        self.busy_timeout = busy_timeout
        self.writable = not read_only and state_writable(self.path)
        # Read the file as immutable: only where even reading normally fails (see _read_only).
        self.immutable = False
        self._local = threading.local()
        try:
            if self.writable:
                self._open_writable()
            if not self.writable:
                self._open_read_only()
        except sqlite3.Error as exc:
            raise BundleError(f"cannot open the state database {self.path}: {exc}") from exc

    def _connect(self, mode: str, immutable: bool = False, busy_timeout: float | None = None) -> sqlite3.Connection:
        uri = f"file:{quote(str(self.path.absolute()))}?mode={mode}" + ("&immutable=1" if immutable else "")
        wait = self.busy_timeout if busy_timeout is None else busy_timeout
        db = sqlite3.connect(uri, uri=True, timeout=wait, isolation_level=None)
        db.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    def _open_writable(self) -> None:
        db = self._connect("rwc")
        try:
            db.execute("PRAGMA journal_mode=WAL")
            migrate(db, self.path)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != _READONLY:
                raise
            self.writable = False  # the permission probe could not tell (e.g. foreign -wal file)
        finally:
            db.close()

    def _open_read_only(self) -> None:
        if not self.path.is_file():
            raise BundleError(f"the state database {self.path} does not exist")
        db = self._read_only()
        try:
            version = schema_version(db)
        finally:
            db.close()
        check_known(version, self.path)
        if version < LATEST:
            raise BundleError(
                f"{self.path} has state schema version {version}, this edgemine needs {LATEST}, and "
                "it is read-only here so it cannot be migrated: open the bundle once with write "
                "access (any `edgemine index` or `edgemine labels import` run migrates it)")

    def _read_only(self) -> sqlite3.Connection:
        if not self.immutable:
            db = self._connect("ro")
            try:
                db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
                return db
            except sqlite3.OperationalError as exc:
                db.close()
                if exc.sqlite_errorcode & 0xFF not in (_READONLY, _CANTOPEN):
                    raise
            # A WAL database needs its -shm index beside it, which a read-only directory without
            # one (the last writer removed it on close) cannot get: read the file as it stands.
            # Then changes made by other processes are seen once checkpointed into the file.
            self.immutable = True
        return self._connect("ro", immutable=True)

    def _translate(self, exc: sqlite3.OperationalError, waited: float | None = None) -> BundleError | None:
        code = exc.sqlite_errorcode & 0xFF
        if code == _READONLY:
            self.writable = False  # health reports it from now on
            return self._read_only_error(str(exc))
        if code in (_BUSY, _LOCKED):
            waited = self.busy_timeout if waited is None else waited
            return StateBusy(f"the state database {self.path} is busy: another writer held it for "
                             f"more than {waited:g} s; retry")
        return None

    def _read_only_error(self, why: str = "") -> StateReadOnly:
        reason = f" ({why})" if why else ""
        return StateReadOnly(
            f"the state database {self.path} is read-only for this process{reason}: labeling state "
            "cannot change; give the service user write access to the bundle directory and "
            "state.sqlite, then restart")

    @contextlib.contextmanager
    def write(self, busy_timeout: float | None = None) -> Iterator[StateConn]:
        """Yield a connection inside one write transaction (committed on success).

        `busy_timeout`: seconds to wait for another writer (default: the database's), then StateBusy.
        """
        if not self.writable:
            raise self._read_only_error()
        try:
            db = self._connect("rw", busy_timeout=busy_timeout)
            try:
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            finally:
                db.close()
        except sqlite3.OperationalError as exc:
            translated = self._translate(exc, busy_timeout)
            if translated is None:
                raise
            raise translated from exc

    connect = write  # the name callers used before reads and writes were told apart

    @contextlib.contextmanager
    def read(self) -> Iterator[StateConn]:
        """Yield a connection inside one read transaction: a consistent view, no write lock."""
        try:
            db = self._reader()
            outer = not db.in_transaction  # a read inside a read shares its transaction
            try:
                if outer:
                    db.execute("BEGIN")
                yield db
            finally:
                if outer and db.in_transaction:
                    db.execute("COMMIT")
                if outer and not self.writable:
                    db.close()
        except sqlite3.OperationalError as exc:
            translated = self._translate(exc)
            if translated is None:
                raise
            raise translated from exc

    def sync_lock(self) -> contextlib.AbstractContextManager[None]:
        """Hold the images-sync lock: nothing to hold for a file only one indexer writes."""
        return contextlib.nullcontext()

    def close(self) -> None:
        """Close this thread's cached reader (others close with their threads)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            conn.close()

    def _reader(self) -> sqlite3.Connection:
        if not self.writable:
            # Not cached: a fresh connection sees -wal/-shm files that appeared since.
            return self._read_only()
        # One long-lived connection per thread: queries on the mining hot path must not pay for
        # connecting. sqlite3 connections may not cross threads.
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect("rw")
            self._local.conn = conn
        return conn

    # -- indexer journal: embedded but not yet published --------------------------------------

    def journal_add(self, ids: Sequence[str], fingerprints: Sequence[str], model: str,
                    vectors: Vectors) -> None:
        """Record a finished batch of vectors so a killed job does not embed them again."""
        rows = [(i, f, model, np.ascontiguousarray(v, np.float32).tobytes())
                for i, f, v in zip(ids, fingerprints, vectors, strict=True)]
        with self.write() as db:
            db.executemany("INSERT INTO journal (image_id, fingerprint, model, vector) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (image_id) DO UPDATE SET fingerprint = excluded.fingerprint, "
                           "model = excluded.model, vector = excluded.vector", rows)

    def journal_load(self, model: str, dim: int) -> dict[str, tuple[str, Vectors]]:
        """Return journaled vectors of `model` by image id, with their fingerprints."""
        with self.read() as db:
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
        with self.read() as db:
            return int(db.execute("SELECT COUNT(*) FROM journal").fetchone()[0])

    def journal_clear(self) -> None:
        """Drop the journal once its vectors are published."""
        with self.write() as db:
            db.execute("DELETE FROM journal")

    def record_failures(self, failures: Iterable[tuple[str, str | None, str]]) -> None:
        """Remember files that could not be used (id, path, reason)."""
        now = utc_now()
        with self.write() as db:
            db.executemany("INSERT INTO failures (image_id, path, reason, at) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (image_id) DO UPDATE SET path = excluded.path, "
                           "reason = excluded.reason, at = excluded.at", [(i, p, r, now) for i, p, r in failures])

    def clear_failures(self, ids: Iterable[str]) -> None:
        """Forget failures of files that have since been indexed."""
        with self.read() as db:
            failed = {r[0] for r in db.execute("SELECT image_id FROM failures")}
        # Only the few that failed before: a first run passes every id it indexed.
        done = [(i,) for i in ids if i in failed]
        if done:
            with self.write() as db:
                db.executemany("DELETE FROM failures WHERE image_id = ?", done)

    def known_ids(self, ids: Iterable[str]) -> set[str]:
        """Return which of `ids` exist in the images table."""
        wanted = list(dict.fromkeys(ids))
        found: set[str] = set()
        with self.read() as db:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(r[0] for r in db.execute(
                    f"SELECT image_id FROM images WHERE image_id IN ({marks})", chunk))
        return found

    # -- labeling state -----------------------------------------------------------------------

    def set_state(self, ids: Sequence[str], state: LabelState, batch_id: str | None = None) -> int:
        """Set the labeling state of known images; raises UnknownImageIds naming unknown ones."""
        with self.write() as db:
            return apply_state(db, ids, state, batch_id, only_known=False)

    def label_events_since(self, seq: int) -> tuple[int, list[tuple[str, str]]]:
        """Return the newest event number and the (image_id, state) changes after `seq`."""
        with self.read() as db:
            rows = db.execute(
                "SELECT seq, image_id, state FROM label_events WHERE seq > ? ORDER BY seq", (seq,)
            ).fetchall()
        if not rows:
            return seq, []
        return int(rows[-1][0]), [(r[1], r[2]) for r in rows]

    def non_unlabeled(self) -> tuple[int, list[tuple[str, str]]]:
        """Return the newest event number and every image that is not unlabeled."""
        with self.read() as db:
            head = db.execute("SELECT COALESCE(MAX(seq), 0) FROM label_events").fetchone()[0]
            rows = db.execute(
                "SELECT image_id, state FROM images WHERE state != 'unlabeled'").fetchall()
        return int(head), [(r[0], r[1]) for r in rows]

    def state_counts(self) -> dict[str, int]:
        """Return how many images are in each labeling state."""
        with self.read() as db:
            rows = db.execute("SELECT state, COUNT(*) FROM images GROUP BY state").fetchall()
        counts: dict[str, int] = dict.fromkeys(LABEL_STATES, 0)
        counts.update({r[0]: int(r[1]) for r in rows})
        return counts


def apply_state(db: StateConn, ids: Sequence[str], state: LabelState,
                batch_id: str | None, only_known: bool) -> int:
    """Set states inside an open transaction and log one event per changed image."""
    if state not in LABEL_STATES:
        raise ValueError(f"unknown state {state!r}; valid: {', '.join(LABEL_STATES)}")
    ids = list(dict.fromkeys(ids))
    if not ids:
        return 0
    db.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (image_id TEXT PRIMARY KEY)")
    db.execute("DELETE FROM wanted")
    db.executemany("INSERT INTO wanted (image_id) VALUES (?)", [(i,) for i in ids])
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


def open_state(paths: BundlePaths, url: str | None = None, *, read_only: bool = False) -> StateDB:
    """Open the bundle's state: state.sqlite in the bundle, or the PostgreSQL database at `url`.

    Raises StateUnavailable (naming host:port/database) when the database cannot be reached.
    """
    if not url:
        return StateDB(paths.state_db, read_only=read_only)
    if not url.startswith(("postgresql://", "postgres://")):
        raise BundleError("a state URL must start with postgresql:// (or postgres://); "
                          "leave it unset to keep state.sqlite in the bundle")
    from edgemine.bundle.state_pg import PgStateDB  # psycopg only where a URL asks for it

    return PgStateDB(url, read_only=read_only)
