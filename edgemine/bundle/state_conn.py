"""The one SQL dialect the state modules write, and the connection type both backends yield.

Modules that keep state write plain SQL against what `StateDB.read()`/`write()` yield: a
sqlite3 connection (embedded default) or a PostgreSQL connection adapter (edgemine.bundle.state_pg)
with the same `execute`/`executemany` surface. The SQL is the dialect both understand:

- `?` placeholders (translated to `%s` for psycopg), column lists on every INSERT;
- upserts as `INSERT ... ON CONFLICT (key) DO UPDATE SET col = excluded.col` / `DO NOTHING`
  (never `INSERT OR REPLACE/IGNORE`);
- `CREATE TEMP TABLE IF NOT EXISTS` + `DELETE FROM` for per-transaction scratch tables;
- no `lastrowid` (use `RETURNING`), no GROUP_CONCAT, no JSON functions; aggregates that may be
  NUMERIC in PostgreSQL (SUM, AVG) are converted by the caller (`int(...)`/`float(...)`);
- compare columns with parameters of their own type (PostgreSQL does not coerce text to int);
- `rowid` (insertion order) exists only on batches and queries (an explicit column in PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol


class StateCursor(Protocol):
    """What a state query returns: rows as tuples."""

    def fetchone(self) -> Any:
        """Return the next row, or None."""
        ...

    def fetchall(self) -> list[Any]:
        """Return the remaining rows."""
        ...

    def __iter__(self) -> Iterator[Any]:
        """Iterate over the remaining rows."""
        ...


class StateConn(Protocol):
    """A connection inside one state transaction (sqlite3.Connection satisfies it)."""

    def execute(self, sql: str, parameters: Any = (), /) -> StateCursor:
        """Run one statement."""
        ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any:
        """Run one statement for each parameter row."""
        ...


def to_format_style(sql: str) -> str:
    """Return `sql` with `?` placeholders as `%s` and literal `%` doubled (psycopg's paramstyle).

    Quoted strings and identifiers are copied as they are (a `?` inside a literal is no placeholder).
    """
    out: list[str] = []
    quote: str | None = None
    for char in sql:
        if quote is not None:
            out.append("%%" if char == "%" else char)
            if char == quote:
                quote = None
        elif char in ("'", '"'):
            quote = char
            out.append(char)
        elif char == "?":
            out.append("%s")
        elif char == "%":
            out.append("%%")
        else:
            out.append(char)
    return "".join(out)


def stream_rows(conn: StateConn, sql: str, parameters: Sequence[Any] = ()) -> Iterator[Any]:
    """Yield a query's rows without holding them all: a sqlite3 cursor streams already, PostgreSQL
    uses a server-side cursor (`PgConn.stream`)."""
    stream = getattr(conn, "stream", None)
    if stream is not None:
        yield from stream(sql, parameters)
    else:
        yield from conn.execute(sql, parameters)
