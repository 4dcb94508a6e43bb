"""State on PostgreSQL (`--state postgresql://...`): one database shared by several service hosts.

`PgStateDB` is a StateDB whose `read()`/`write()` yield an adapter over a psycopg connection that
takes the same SQL as sqlite3 (edgemine.bundle.state_conn), so every module's queries run on both
backends. Semantics follow the SQLite backend:

- Writes are serialized by a transaction-level advisory lock (SQLite's BEGIN IMMEDIATE): label
  events then get their sequence numbers in commit order, so a process polling `seq > last`
  (edgemine.service.row_states) never skips an event committed late. A writer waits at most the
  busy timeout (`lock_timeout`), then StateBusy.
- Reads are REPEATABLE READ READ ONLY transactions: one consistent view, never blocked by writers.
- Connections are pooled (idle ones reused, thread-safe); a pooled connection found dead (the
  server restarted) is dropped with every other idle one and the transaction is retried once on a
  fresh connection, so service requests succeed again as soon as the server is back.
- The server unreachable (at open or at any query) raises StateUnavailable naming the endpoint
  (host:port/database, never the password); the service answers 503.

psycopg is an optional dependency (`pip install 'edgemine[postgres]'`), imported only here.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any

from edgemine.bundle.errors import BundleError, StateBusy, StateReadOnly, StateUnavailable, UnstorableText
from edgemine.bundle.migrations_pg import (
    PG_LATEST,
    SYNC_KEY,
    WRITE_KEY,
    pg_check_known,
    pg_migrate,
    pg_schema_version,
)
from edgemine.bundle.state import StateDB
from edgemine.bundle.state_conn import StateCursor, to_format_style

IDLE_CONNECTIONS = 16  # kept open for reuse; more may be open while requests run in parallel
STREAM_ROWS = 10_000  # rows per round trip of a streamed query (PgConn.stream)
_STREAMS = itertools.count()  # distinct server-side cursor names within a transaction
CONNECT_TIMEOUT = 5  # seconds, unless the URL says otherwise: an unreachable host must not hang requests


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise BundleError("a postgresql:// state URL needs psycopg: pip install 'edgemine[postgres]'") from exc
    return psycopg


def describe_url(url: str) -> str:
    """Return `host:port/database` of a PostgreSQL URL (never its password)."""
    try:
        params = _psycopg().conninfo.conninfo_to_dict(url)
    except Exception as exc:  # a malformed URL: name no part of it, it may hold a password
        raise BundleError(f"not a valid PostgreSQL state URL ({type(exc).__name__})") from None
    host = str(params.get("host") or "localhost")
    return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or params.get('user') or ''}"


@lru_cache(maxsize=1024)
def _sql(sql: str) -> str:
    return to_format_style(sql)


class PgConn:
    """A psycopg connection inside one transaction, taking sqlite3-style SQL."""

    def __init__(self, conn: Any, store: PgStateDB) -> None:
        self._conn = conn
        self._store = store

    def execute(self, sql: str, parameters: Any = (), /) -> StateCursor:
        """Run one statement (`?` placeholders)."""
        try:
            cursor: StateCursor = self._conn.execute(_sql(sql), tuple(parameters))
            return cursor
        except _psycopg().Error as exc:
            raise self._store.translate(exc) from exc

    def stream(self, sql: str, parameters: Any = (), /, batch_rows: int | None = None) -> Iterator[Any]:
        """Yield a query's rows through a server-side cursor, `batch_rows` at a time (not all fetched at once)."""
        try:
            # A named cursor lives on the server inside this transaction: memory stays bounded by
            # one batch, as iterating a sqlite3 cursor is (psycopg's default cursor fetches all).
            with self._conn.cursor(name=f"edgemine_stream_{next(_STREAMS)}") as cursor:
                cursor.itersize = batch_rows or STREAM_ROWS
                cursor.execute(_sql(sql), tuple(parameters))
                yield from cursor
        except _psycopg().Error as exc:
            raise self._store.translate(exc) from exc

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any:
        """Run one statement for each parameter row."""
        rows = [tuple(p) for p in parameters]
        if not rows:
            return None
        try:
            with self._conn.cursor() as cursor:
                cursor.executemany(_sql(sql), rows)
        except _psycopg().Error as exc:
            raise self._store.translate(exc) from exc
        return None


class _Pool:
    """Idle connections for reuse, safe across threads."""

    def __init__(self, store: PgStateDB) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._idle: list[Any] = []

    def get(self) -> tuple[Any, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), False
        return self._store.connect_new(), True

    def put(self, conn: Any) -> None:
        status = conn.info.transaction_status
        if conn.closed or status != _psycopg().pq.TransactionStatus.IDLE:
            conn.close()
            return
        with self._lock:
            if len(self._idle) < IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        conn.close()

    def clear(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class PgStateDB(StateDB):
    """The state store on a PostgreSQL database (same public API as the SQLite StateDB)."""

    shared = True

    def __init__(self, url: str, *, read_only: bool = False, busy_timeout: float = 30.0) -> None:
        """Connect to `url`, creating and migrating the schema unless `read_only`."""
        self.url = url
        self.where = describe_url(url)
        self.busy_timeout = busy_timeout
        self.writable = not read_only
        self.immutable = False
        self._local = threading.local()
        self._pool = _Pool(self)
        conn = self.connect_new()
        try:
            if self.writable:
                version = pg_migrate(conn, self.where)
            else:
                version = pg_schema_version(conn)
                pg_check_known(version, self.where)
                if version < PG_LATEST:
                    raise BundleError(
                        f"the state database {self.where} has schema version {version}, this edgemine "
                        f"needs {PG_LATEST}, and --read-only was asked: open it once without it to migrate")
        except _psycopg().Error as exc:
            conn.close()
            raise self.translate(exc) from exc
        except BaseException:
            conn.close()
            raise
        self._pool.put(conn)

    def connect_new(self) -> Any:
        """Open a new autocommit connection, or raise StateUnavailable naming the endpoint."""
        psycopg = _psycopg()
        extra: dict[str, Any] = {"autocommit": True, "application_name": "edgemine"}
        if "connect_timeout" not in self.url:
            extra["connect_timeout"] = CONNECT_TIMEOUT
        try:
            return psycopg.connect(self.url, **extra)
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise StateUnavailable(f"cannot reach the state database {self.where}: {reason}") from exc

    def translate(self, exc: Exception) -> Exception:
        """Return the domain error for a psycopg error (the error itself when none applies)."""
        errors = _psycopg().errors
        if isinstance(exc, errors.DataError) and "NUL" in str(exc):
            return UnstorableText("text containing a NUL character (\\u0000) cannot be stored or looked up in the "
                                  "PostgreSQL state database: remove it")
        if isinstance(exc, errors.LockNotAvailable):
            return StateBusy(f"the state database {self.where} is busy: another writer held it for "
                             f"more than {self.busy_timeout:g} s; retry")
        if isinstance(exc, errors.ReadOnlySqlTransaction):
            self.writable = False
            return self._read_only_error(str(exc).strip())
        if isinstance(exc, _psycopg().OperationalError | _psycopg().InterfaceError):
            self._pool.clear()  # a lost connection: the idle ones went with the server
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return StateUnavailable(f"the state database {self.where} is unavailable: {first}; retry")
        return exc

    def _read_only_error(self, why: str = "") -> StateReadOnly:
        reason = f" ({why})" if why else ""
        return StateReadOnly(f"the state database {self.where} is read-only for this process{reason}: "
                             "labeling state cannot change")

    def _begin(self, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> Any:
        psycopg = _psycopg()
        for _ in range(2):
            conn, fresh = self._pool.get()
            try:
                for sql, params in statements:
                    conn.execute(sql, params)
                return conn
            except psycopg.Error as exc:
                with contextlib.suppress(psycopg.Error):
                    conn.close()
                lost = isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and \
                    not isinstance(exc, psycopg.errors.LockNotAvailable)
                if fresh or not lost:
                    raise self.translate(exc) from exc
                self._pool.clear()  # the server restarted: retry once on a new connection
        raise AssertionError("unreachable")  # pragma: no cover

    def _end(self, conn: Any, commit: bool) -> None:
        psycopg = _psycopg()
        try:
            conn.execute("COMMIT" if commit else "ROLLBACK")
        except psycopg.Error as exc:
            with contextlib.suppress(psycopg.Error):
                conn.close()
            if commit:
                raise self.translate(exc) from exc
            return  # a failed rollback: the body's own error is what the caller sees
        self._pool.put(conn)

    @contextlib.contextmanager
    def write(self, busy_timeout: float | None = None) -> Iterator[Any]:
        """Yield a connection inside one write transaction (committed on success), one writer at a time."""
        if not self.writable:
            raise self._read_only_error()
        wait = self.busy_timeout if busy_timeout is None else busy_timeout
        conn = self._begin([("BEGIN", ()), (f"SET LOCAL lock_timeout = {max(1, int(wait * 1000))}", ()),
                            ("SELECT pg_advisory_xact_lock(%s)", (WRITE_KEY,))])
        ok = False
        try:
            yield PgConn(conn, self)
            ok = True
        finally:
            self._end(conn, commit=ok)

    connect = write

    @contextlib.contextmanager
    def read(self) -> Iterator[Any]:
        """Yield a connection inside one read transaction: a consistent view, never blocked by writers."""
        outer: PgConn | None = getattr(self._local, "conn", None)
        if outer is not None:  # a read inside a read shares its transaction
            yield outer
            return
        conn = self._begin([("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", ())])
        self._local.conn = adapter = PgConn(conn, self)
        ok = False
        try:
            yield adapter
            ok = True
        finally:
            self._local.conn = None
            self._end(conn, commit=ok)

    @contextlib.contextmanager
    def sync_lock(self) -> Iterator[None]:
        """Hold the images-sync lock (one process at a time brings the images table in step)."""
        conn = self.connect_new()
        try:
            try:
                conn.execute("SELECT pg_advisory_lock(%s)", (SYNC_KEY,))
            except _psycopg().Error as exc:
                raise self.translate(exc) from exc
            yield
        finally:
            with contextlib.suppress(_psycopg().Error):
                conn.close()  # ends the session, which releases its advisory lock

    def close(self) -> None:
        """Close the idle connections."""
        self._pool.clear()
