"""state.sqlite is versioned: numbered migrations run once, in order, and old bundles are migrated."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from edgemine.bundle import BundleError, StateDB, migrations
from edgemine.bundle.layout import utc_now

EDGEMINE = Path(__file__).resolve().parents[2] / "edgemine"
UTC_TEXT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

# The schema and statements of state.py as of commit 2545083 (before migrations existed), copied
# verbatim: a database written by that code has user_version 0 but all its tables.
LEGACY_SCHEMA = """
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
LEGACY_NOW = "2026-11-28T10:00:00+00:00"  # what the old utc_now() wrote


def write_legacy_state(path: Path) -> None:
    """Write state.sqlite exactly as the pre-migration code did: 3 images, 1 batch, 3 events, a failure."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(LEGACY_SCHEMA)
    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        "INSERT INTO images (image_id, path, metadata, vec_id) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(image_id) DO UPDATE SET path = excluded.path, "
        "metadata = excluded.metadata, vec_id = excluded.vec_id",
        [("a", "/d/a.png", '{"t": "2024-03-01 00:00:00"}', 0), ("b", "/d/b.png", "{}", 1),
         ("c", None, "{}", 2)])
    db.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?)", ("b-1", "night", LEGACY_NOW, 1, '{"k": 2}'))
    db.executemany("INSERT INTO batch_items VALUES (?, ?, ?, ?, ?, ?)",
                   [("b-1", "a", 0, 0.9, "c", 0.8), ("b-1", "b", 1, 0.7, "c", 0.6)])
    db.executemany("UPDATE images SET state = ?, batch_id = COALESCE(?, batch_id), state_updated_at = ? "
                   "WHERE image_id = ?", [("queued", "b-1", LEGACY_NOW, "a"), ("queued", "b-1", LEGACY_NOW, "b")])
    db.executemany("INSERT INTO label_events (image_id, state, at) VALUES (?, ?, ?)",
                   [("a", "queued", LEGACY_NOW), ("b", "queued", LEGACY_NOW), ("b", "labeled", LEGACY_NOW)])
    db.execute("UPDATE images SET state = 'labeled' WHERE image_id = 'b'")
    db.execute("INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?)", ("x", "/d/x.png", "broken", LEGACY_NOW))
    db.execute("INSERT OR REPLACE INTO journal VALUES (?, ?, ?, ?)", ("d", "f", "fake/v1", b"\0" * 8))
    db.execute("COMMIT")
    db.close()


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def indexes_on_images(path: Path) -> set[tuple[str, ...]]:
    with sqlite3.connect(path) as db:
        names = [r[1] for r in db.execute("PRAGMA index_list(images)")]
        return {tuple(c[2] for c in db.execute(f"PRAGMA index_info({name!r})")) for name in names}


def test_fresh_database_is_created_at_the_latest_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    StateDB(path)
    assert user_version(path) == len(migrations.MIGRATIONS) == migrations.LATEST
    assert ("state",) in indexes_on_images(path)


def test_database_written_by_pre_migration_code_is_migrated_keeping_its_data(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    write_legacy_state(path)
    assert user_version(path) == 0

    db = StateDB(path)
    assert user_version(path) == migrations.LATEST
    assert ("state",) in indexes_on_images(path)
    assert db.state_counts() == {"unlabeled": 1, "queued": 1, "labeled": 1, "rejected": 0}
    head, events = db.label_events_since(0)
    assert head == 3 and events == [("a", "queued"), ("b", "queued"), ("b", "labeled")]
    assert db.known_ids(["a", "b", "c", "zz"]) == {"a", "b", "c"}
    assert db.journal_count() == 1
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT batch_id, name, bundle_version, query FROM batches").fetchall() == [
            ("b-1", "night", 1, '{"k": 2}')]
        assert raw.execute("SELECT image_id, position, score FROM batch_items ORDER BY position").fetchall() == [
            ("a", 0, 0.9), ("b", 1, 0.7)]
        # Old "+00:00" timestamps now read in the one format utc_now() writes.
        stamps = [r[0] for r in raw.execute(
            "SELECT created_at FROM batches UNION ALL SELECT at FROM label_events UNION ALL "
            "SELECT at FROM failures UNION ALL SELECT state_updated_at FROM images "
            "WHERE state_updated_at IS NOT NULL")]
    assert len(stamps) == 7 and all(UTC_TEXT.match(s) for s in stamps), stamps
    assert stamps[0] == "2026-11-28T10:00:00Z"

    # The migrated database keeps working for writes and is not migrated again.
    assert db.set_state(["c"], "labeled") == 1
    assert StateDB(path).state_counts() == {"unlabeled": 0, "queued": 1, "labeled": 2, "rejected": 0}
    assert user_version(path) == migrations.LATEST


def table_dump(path: Path, table: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()


def write_version_4_state(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Write a database as edgemine with 4 migrations left it, with rows in every table; return them."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("BEGIN IMMEDIATE")
    for step in migrations.MIGRATIONS[:4]:
        step(db)
    db.execute("PRAGMA user_version = 4")
    now = "2026-11-30T10:00:00Z"
    db.executemany("INSERT INTO images (image_id, path, metadata, vec_id, state, batch_id, state_updated_at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)",
                   [("a", "/d/a.png", '{"t": 1}', 0, "queued", "b-1", now), ("b", "/d/b.png", "{}", 1, "labeled",
                    "b-1", now), ("c", None, "{}", 2, "unlabeled", None, None)])
    db.executemany("INSERT INTO label_events (image_id, state, at) VALUES (?, ?, ?)",
                   [("a", "queued", now), ("b", "queued", now), ("b", "labeled", now)])
    db.execute("INSERT INTO batches (batch_id, name, created_at, bundle_version, query) "
               "VALUES ('b-1', 'night', ?, 3, '{\"k\": 2}')", (now,))
    db.executemany("INSERT INTO batch_items (batch_id, image_id, position, score, nearest_example_id, "
                   "nearest_example_similarity) VALUES (?, ?, ?, ?, ?, ?)",
                   [("b-1", "a", 0, 0.9, "c", 0.8), ("b-1", "b", 1, 0.7, "c", 0.6)])
    db.execute("INSERT INTO journal (image_id, fingerprint, model, vector) VALUES ('d', 'f', 'fake/v1', ?)",
               (b"\0" * 8,))
    db.execute("INSERT INTO failures (image_id, path, reason, at) VALUES ('x', '/d/x.png', 'broken', ?)", (now,))
    db.execute("INSERT INTO notes (key, value) VALUES ('images_version', '3')")
    db.execute("COMMIT")
    db.close()
    return {t: table_dump(path, t) for t in ("images", "label_events", "batches", "batch_items", "journal",
                                             "failures", "notes")}


def test_migration_5_from_version_4_keeps_every_row_and_allows_rejected(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    before = write_version_4_state(path)
    assert user_version(path) == 4
    with sqlite3.connect(path) as raw, pytest.raises(sqlite3.IntegrityError):
        raw.execute("UPDATE images SET state = 'rejected' WHERE image_id = 'c'")

    db = StateDB(path)
    assert user_version(path) == migrations.LATEST >= 5
    assert {t: table_dump(path, t) for t in before} == before
    assert ("state",) in indexes_on_images(path)
    assert db.state_counts() == {"unlabeled": 1, "queued": 1, "labeled": 1, "rejected": 0}
    with sqlite3.connect(path) as raw:
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        verdict_indexes = {r[1] for r in raw.execute("PRAGMA index_list(verdicts)")}
    assert {"queries", "verdicts", "images"} <= tables and "images_new" not in tables
    assert {"verdicts_by_image", "verdicts_by_query", "verdicts_by_session"} <= verdict_indexes
    assert db.set_state(["c"], "rejected") == 1  # the widened CHECK
    assert db.state_counts()["rejected"] == 1
    with pytest.raises(sqlite3.IntegrityError), db.write() as conn:
        conn.execute("INSERT INTO verdicts (image_id, verdict, at) VALUES ('c', 'maybe', 'now')")
    with pytest.raises(sqlite3.IntegrityError), db.write() as conn:
        conn.execute("UPDATE images SET state = 'lost' WHERE image_id = 'c'")


def test_pre_migration_database_goes_through_the_whole_chain_to_verdicts(tmp_path: Path) -> None:
    from edgemine.bundle.feedback import list_verdicts, record_verdicts

    path = tmp_path / "state.sqlite"
    write_legacy_state(path)
    db = StateDB(path)
    assert user_version(path) == migrations.LATEST
    assert db.known_ids(["a", "b", "c"]) == {"a", "b", "c"}
    assert db.label_events_since(0)[1] == [("a", "queued"), ("b", "queued"), ("b", "labeled")]
    assert table_dump(path, "batch_items")[0][:4] == ("b-1", "a", 0, 0.9)
    assert record_verdicts(db, [("c", "reject", None)]) == 1
    assert db.state_counts() == {"unlabeled": 0, "queued": 1, "labeled": 1, "rejected": 1}
    assert [v.image_id for v in list_verdicts(db)] == ["c"]


def test_newer_schema_than_this_code_knows_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    StateDB(path)
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {migrations.LATEST + 1}")
    with pytest.raises(BundleError, match="upgrade edgemine"):
        StateDB(path)


def test_a_failing_migration_rolls_back_and_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.sqlite"
    StateDB(path)
    calls: list[str] = []

    def add_table(db: sqlite3.Connection) -> None:
        calls.append("add")
        db.execute("CREATE TABLE extra (x INTEGER)")
        if len(calls) == 1:
            raise RuntimeError("power cut")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, add_table])
    monkeypatch.setattr(migrations, "LATEST", len(migrations.MIGRATIONS))
    with pytest.raises(RuntimeError, match="power cut"):
        StateDB(path)
    assert user_version(path) == migrations.LATEST - 1
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'extra'").fetchall() == []

    StateDB(path)  # retried, and run only once from then on
    StateDB(path)
    assert calls == ["add", "add"] and user_version(path) == migrations.LATEST


def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "state.sqlite")
    with pytest.raises(sqlite3.IntegrityError), db.write() as conn:
        conn.execute("INSERT INTO batch_items (batch_id, image_id, position) VALUES ('nope', 'a', 0)")
    with db.read() as conn:
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_every_insert_names_its_columns() -> None:
    # A positional INSERT breaks silently when a migration adds a column.
    positional = re.compile(r"INSERT\s+(?:OR\s+\w+\s+)?INTO\s+\w+\s+VALUES", re.IGNORECASE)
    offenders = [f"{path.relative_to(EDGEMINE.parent)}: {m.group(0)}"
                 for path in sorted(EDGEMINE.rglob("*.py")) for m in positional.finditer(path.read_text())]
    assert offenders == []


def test_utc_now_is_the_one_timestamp_format() -> None:
    assert UTC_TEXT.match(utc_now())


def write_version_5_state(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Write a database as edgemine with 5 migrations left it (images, events, a verdict); return its rows."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("BEGIN IMMEDIATE")
    for step in migrations.MIGRATIONS[:5]:
        step(db)
    db.execute("PRAGMA user_version = 5")
    now = "2026-12-01T10:00:00Z"
    db.executemany("INSERT INTO images (image_id, path, metadata, vec_id, state, batch_id, state_updated_at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)",
                   [("a", "/d/a.png", '{"t": 1}', 0, "rejected", None, now), ("b", "/d/b.png", "{}", 1, "labeled",
                    None, now), ("c", None, "{}", 2, "unlabeled", None, None)])
    db.executemany("INSERT INTO label_events (image_id, state, at) VALUES (?, ?, ?)",
                   [("a", "rejected", now), ("b", "labeled", now)])
    db.execute("INSERT INTO verdicts (image_id, verdict, at) VALUES ('a', 'reject', ?)", (now,))
    db.execute("INSERT INTO notes (key, value) VALUES ('images_version', '3')")
    db.execute("COMMIT")
    db.close()
    return {t: table_dump(path, t) for t in ("images", "label_events", "verdicts", "notes")}


def test_migration_6_from_version_5_adds_ground_truth_prediction_and_model_tables(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    before = write_version_5_state(path)
    assert user_version(path) == 5

    db = StateDB(path)
    assert user_version(path) == migrations.LATEST >= 6
    assert {t: table_dump(path, t) for t in before} == before
    with sqlite3.connect(path) as raw:
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"annotations", "predictions", "models", "coco_images", "coco_categories"} <= tables
    with db.write() as conn:
        conn.execute("INSERT INTO models (name, task, imported_at, source, hash, images) "
                     "VALUES ('v7', 'detection', 'now', 'p.jsonl', 'h', 1)")
        conn.execute("INSERT INTO predictions (model, image_id, record) VALUES ('v7', 'a', '{}')")
        conn.execute("INSERT INTO annotations (image_id, task, record, imported_at, source) "
                     "VALUES ('a', 'detection', '{}', 'now', 'gt.jsonl')")
    with pytest.raises(sqlite3.IntegrityError), db.write() as conn:  # a prediction needs its model
        conn.execute("INSERT INTO predictions (model, image_id, record) VALUES ('v9', 'a', '{}')")
    with pytest.raises(sqlite3.IntegrityError), db.write() as conn:
        conn.execute("INSERT INTO annotations (image_id, task, record, imported_at, source) "
                     "VALUES ('b', 'segmentation', '{}', 'now', 'gt.jsonl')")
    with db.write() as conn:  # dropping a model drops its predictions
        conn.execute("DELETE FROM models WHERE name = 'v7'")
    assert table_dump(path, "predictions") == []
