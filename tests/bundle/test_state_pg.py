"""The PostgreSQL state backend against a real server: schema, migrations, the StateDB API, faults."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from edgemine.bundle.errors import BundleError, StateReadOnly, StateUnavailable, UnknownImageIds
from edgemine.bundle.images_sync import apply_upserts, bring_in_step, synced_version
from edgemine.bundle.layout import BundlePaths
from edgemine.bundle.migrations_pg import PG_LATEST
from edgemine.bundle.state import StateDB, open_state
from tests.support.postgres import PgServer, free_port


def _pg_columns(url: str) -> dict[str, set[str]]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT table_name, column_name FROM information_schema.columns "
                            "WHERE table_schema = 'public'").fetchall()
    out: dict[str, set[str]] = {}
    for table, column in rows:
        out.setdefault(table, set()).add(column)
    return out


def test_pg_schema_has_the_tables_and_columns_of_the_latest_sqlite_schema(tmp_path: Path, pg_url: str) -> None:
    StateDB(tmp_path / "state.sqlite")
    with sqlite3.connect(tmp_path / "state.sqlite") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                           "AND name NOT LIKE 'sqlite_%'")]
        lite = {t: {r[1] for r in db.execute(f"PRAGMA table_info({t})")} for t in tables}
    pg = _pg_columns(pg_url)
    assert pg.pop("schema_version") == {"version"}
    pg["batches"].discard("rowid")  # SQLite's implicit rowid (insertion order), explicit in PostgreSQL
    pg["queries"].discard("rowid")
    assert pg == lite


def test_pg_migrations_run_on_an_empty_database_once_and_record_the_version(pg_server: PgServer) -> None:
    import psycopg

    url = pg_server.create_db(empty=True)
    open_state(BundlePaths(Path("unused")), url).close()
    open_state(BundlePaths(Path("unused")), url).close()  # a second open finds nothing to do
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(PG_LATEST,)]


def test_pg_concurrent_first_opens_all_succeed(pg_server: PgServer) -> None:
    url = pg_server.create_db(empty=True)
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            open_state(BundlePaths(Path("unused")), url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _pg_columns(url)["images"]


def test_pg_newer_schema_version_is_refused_with_upgrade_edgemine(pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = %s", (PG_LATEST + 1,))
    with pytest.raises(BundleError, match="upgrade edgemine"):
        open_state(BundlePaths(Path("unused")), pg_url)


def test_pg_read_only_store_reads_and_refuses_writes(pg_url: str) -> None:
    db = open_state(BundlePaths(Path("unused")), pg_url)
    apply_upserts(db, [("a", None, "{}", 0)])
    ro = open_state(BundlePaths(Path("unused")), pg_url, read_only=True)
    assert ro.state_counts()["unlabeled"] == 1
    with pytest.raises(StateReadOnly):
        ro.set_state(["a"], "labeled")


def test_unreachable_endpoint_names_host_port_database_and_never_the_password() -> None:
    port = free_port()
    with pytest.raises(StateUnavailable) as raised:
        open_state(BundlePaths(Path("unused")), f"postgresql://alice:s3cret@127.0.0.1:{port}/labels")
    assert f"127.0.0.1:{port}/labels" in str(raised.value)
    assert "s3cret" not in str(raised.value)


def test_state_url_of_another_scheme_is_refused() -> None:
    with pytest.raises(BundleError, match="postgresql://"):
        open_state(BundlePaths(Path("unused")), "mysql://host/db")


def test_pg_store_keeps_journal_states_events_and_failures_like_sqlite(pg_url: str) -> None:
    db = open_state(BundlePaths(Path("unused")), pg_url)
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    db.journal_add(["a", "b"], ["fa", "fb"], "m", vectors)
    db.journal_add(["a"], ["fa2"], "m", vectors[1:])  # replaces a's entry
    loaded = db.journal_load("m", 3)
    assert loaded["a"][0] == "fa2" and np.array_equal(loaded["a"][1], vectors[1])
    assert loaded["b"][0] == "fb" and np.array_equal(loaded["b"][1], vectors[1])
    assert db.journal_count() == 2
    db.journal_clear()
    assert db.journal_count() == 0

    apply_upserts(db, [("a", "/x/a.png", "{}", 0), ("b", "/x/b.png", "{}", 1), ("c", None, "{}", 2)])
    assert db.set_state(["a", "b"], "queued") == 2
    assert db.set_state(["a"], "labeled") == 1
    assert db.set_state(["a"], "queued") == 0  # labeled is final
    with pytest.raises(UnknownImageIds):
        db.set_state(["zz"], "labeled")
    head, events = db.label_events_since(0)
    assert events == [("a", "queued"), ("b", "queued"), ("a", "labeled")]
    assert db.label_events_since(head) == (head, [])
    assert db.state_counts() == {"unlabeled": 1, "queued": 1, "labeled": 1, "rejected": 0}
    assert db.known_ids(["a", "zz", "c"]) == {"a", "c"}

    db.record_failures([("c", None, "bad"), ("c", "/x/c.png", "worse")])
    db.clear_failures(["c"])
    with db.read() as conn:
        assert conn.execute("SELECT COUNT(*) FROM failures").fetchone()[0] == 0


def test_bring_in_step_fills_an_empty_pg_database_from_a_catalog_and_keeps_labels(pg_url: str) -> None:
    import pyarrow as pa

    db = open_state(BundlePaths(Path("unused")), pg_url)
    catalog = pa.table({"vec_id": [0, 1, 2], "image_id": ["b", "a", "c"], "path": ["/b", "/a", "/c"],
                        "fingerprint": ["", "", ""], "weather": ["sun", "rain", "fog"]})
    assert bring_in_step(db, 3, catalog) is True
    assert synced_version(db) == 3 and db.known_ids(["a", "b", "c"]) == {"a", "b", "c"}
    db.set_state(["a"], "labeled")
    assert bring_in_step(db, 3, catalog) is False  # already in step: nothing written
    assert bring_in_step(db, 2, catalog.slice(0, 2)) is False  # never back to an older version
    smaller = catalog.slice(1, 2)  # "b" removed in version 4
    assert bring_in_step(db, 4, smaller) is True
    assert db.known_ids(["a", "b", "c"]) == {"a", "c"} and db.state_counts()["labeled"] == 1


def test_pg_requests_fail_with_state_unavailable_while_the_server_is_down_then_recover(tmp_path: Path) -> None:
    from tests.support.postgres import running_server

    with running_server() as server:
        url = server.create_db()
        db = open_state(BundlePaths(tmp_path), url)
        apply_upserts(db, [("a", None, "{}", 0), ("b", None, "{}", 1)])
        db.set_state(["a"], "labeled")
        server.stop()
        with pytest.raises(StateUnavailable, match=r"127\.0\.0\.1:\d+/t"):
            db.set_state(["b"], "labeled")
        with pytest.raises(StateUnavailable):
            db.state_counts()
        server.start()
        assert db.set_state(["b"], "queued") == 1  # the same store works again, no reopen
        assert db.state_counts() == {"unlabeled": 0, "queued": 1, "labeled": 1, "rejected": 0}
        db.close()


def test_streamed_queries_use_one_server_side_cursor_and_keep_the_order(tmp_path: Path, pg_url: str) -> None:
    db = open_state(BundlePaths(tmp_path / "b"), pg_url)
    ids = [f"im{i:03d}" for i in range(10)]
    apply_upserts(db, [(i, None, "{}", n) for n, i in enumerate(reversed(ids))])
    seen: list[str] = []
    with db.read() as conn:
        for row in conn.stream("SELECT image_id FROM images ORDER BY image_id", (), batch_rows=3):
            if not seen:  # the rows come from a cursor held by the server, 3 per round trip
                cursors = conn.execute("SELECT count(*) FROM pg_cursors WHERE name LIKE 'edgemine_stream_%'")
                assert cursors.fetchone()[0] == 1
            seen.append(row[0])
    assert seen == ids


def test_plan_sync_on_postgres_streams_to_the_same_plan_as_sqlite(tmp_path: Path, pg_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import edgemine.bundle.state_pg as state_pg
    from edgemine.bundle.images_sync import plan_sync

    monkeypatch.setattr(state_pg, "STREAM_ROWS", 3)  # many round trips over 12 rows
    stored = [(f"im{i:03d}", f"p{i}", "{}", i) for i in range(12)]
    target = [row for row in stored if row[0] not in ("im002", "im007")]  # two removed
    target[3] = (target[3][0], "moved", "{}", target[3][3])  # one changed
    target.append(("im999", None, "{}", 99))  # one added
    plans = []
    for db in (open_state(BundlePaths(tmp_path / "pg"), pg_url), StateDB(tmp_path / "state.sqlite")):
        apply_upserts(db, stored)
        plans.append(plan_sync(db, sorted(target)))
    assert plans[0] == plans[1]
    assert plans[0].deletes == ["im002", "im007"] and [r[0] for r in plans[0].upserts] == ["im004", "im999"]
