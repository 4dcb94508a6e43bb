"""StateDB reads never wait for a writer; a read-only state.sqlite reads fine and refuses writes clearly."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgemine.bundle import BundleError, StateDB
from edgemine.bundle import state as state_module
from edgemine.bundle.errors import StateBusy, StateReadOnly


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "state.sqlite"
    db = StateDB(path)
    with db.write() as conn:
        conn.executemany("INSERT INTO images (image_id, vec_id) VALUES (?, ?)", [(f"i{n}", n) for n in range(5)])
    db.set_state(["i0"], "labeled")
    return path


@pytest.fixture
def held_write_lock(db_path: Path) -> Iterator[sqlite3.Connection]:
    """Another process's writer in the middle of a long transaction (the indexer, a big batch)."""
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE images SET state = 'queued' WHERE image_id = 'i1'")
    other.execute("INSERT INTO label_events (image_id, state, at) VALUES ('i1', 'queued', 'now')")
    yield other
    other.execute("ROLLBACK")
    other.close()


def test_reads_do_not_wait_for_a_held_write_transaction(db_path: Path,
                                                        held_write_lock: sqlite3.Connection) -> None:
    # A short busy timeout: if a read needed the write lock it would fail here instead of waiting.
    db = StateDB(db_path, busy_timeout=0.05)
    assert db.state_counts() == {"unlabeled": 4, "queued": 0, "labeled": 1, "rejected": 0}
    assert db.label_events_since(0) == (1, [("i0", "labeled")])
    assert db.non_unlabeled() == (1, [("i0", "labeled")])
    assert db.known_ids(["i1", "nope"]) == {"i1"}
    assert db.journal_count() == 0


def test_a_write_behind_a_held_lock_fails_as_busy_not_as_a_database_error(
        db_path: Path, held_write_lock: sqlite3.Connection) -> None:
    db = StateDB(db_path, busy_timeout=0.05)
    with pytest.raises(StateBusy, match="busy"):
        db.set_state(["i2"], "labeled")
    assert issubclass(StateBusy, BundleError)  # the service answers 503


def test_read_only_state_reads_and_refuses_every_write(db_path: Path) -> None:
    db = StateDB(db_path, read_only=True)
    assert db.writable is False
    assert db.state_counts() == {"unlabeled": 4, "queued": 0, "labeled": 1, "rejected": 0}
    assert db.known_ids(["i3"]) == {"i3"}
    for write in (lambda: db.set_state(["i3"], "labeled"), db.journal_clear,
                  lambda: db.record_failures([("x", None, "broken")])):
        with pytest.raises(StateReadOnly, match="read-only") as info:
            write()
        assert str(db_path) in str(info.value)
    assert StateDB(db_path).state_counts()["labeled"] == 1  # nothing was written


def test_unwritable_file_is_detected_as_read_only(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What a non-root service user sees for a root-owned bundle: the file and directory are not
    # writable for it (tests run as root, where chmod would not stop anything).
    assert StateDB(db_path).writable is True
    monkeypatch.setattr(state_module, "state_writable", lambda path: False)
    db = StateDB(db_path)
    assert db.writable is False
    assert db.state_counts()["labeled"] == 1
    with pytest.raises(StateReadOnly):
        db.set_state(["i3"], "labeled")


def test_read_only_state_with_an_old_schema_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE images (image_id TEXT PRIMARY KEY)")
    with pytest.raises(BundleError, match=r"read-only.*migrat"):
        StateDB(path, read_only=True)


def test_missing_read_only_state_is_a_bundle_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"state\.sqlite"):
        StateDB(tmp_path / "state.sqlite", read_only=True)


def test_file_that_is_not_a_database_is_a_bundle_error(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(BundleError, match=r"state\.sqlite"):
        StateDB(path)
