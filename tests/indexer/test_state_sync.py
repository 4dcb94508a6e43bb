"""The images table follows the published version: rows written before the flip, only differences,
repaired on every run, orphans of a smaller rebuild removed and reported."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import edgemine.indexer.job as job
from edgemine.bundle import StateDB, load_current
from edgemine.bundle.layout import ModelInfo
from edgemine.indexer import IndexReport, ModelChoice, run_index, scan_directory

Make = Callable[..., list[str]]


def index(root: Path, bundle: Path, model: ModelChoice, **kwargs: Any) -> IndexReport:
    return run_index(scan_directory(root), bundle, model, progress=False, workers=0, batch_size=8, **kwargs)


def table_rows(bundle: Path) -> dict[str, tuple[str | None, int]]:
    with sqlite3.connect(bundle / "state.sqlite") as db:
        return {r[0]: (r[1], r[2]) for r in db.execute("SELECT image_id, path, vec_id FROM images")}


def published_rows(bundle: Path) -> dict[str, tuple[str | None, int]]:
    snap = load_current(bundle)
    return {i: (p, v) for i, p, v in zip(snap.image_ids, snap.catalog.column("path").to_pylist(),
                                         snap.catalog.column("vec_id").to_pylist(), strict=True)}


def audit_image_writes(bundle: Path) -> Callable[[], dict[str, int]]:
    """Count every insert/update/delete on the images table from now on (triggers in the file)."""
    with sqlite3.connect(bundle / "state.sqlite") as db:
        db.execute("CREATE TABLE audit (op TEXT NOT NULL)")
        for op in ("INSERT", "UPDATE", "DELETE"):
            db.execute(f"CREATE TRIGGER audit_{op} AFTER {op} ON images BEGIN "
                       f"INSERT INTO audit (op) VALUES ('{op}'); END")

    def counts() -> dict[str, int]:
        with sqlite3.connect(bundle / "state.sqlite") as db:
            found = dict(db.execute("SELECT op, COUNT(*) FROM audit GROUP BY op").fetchall())
        return {op: int(found.get(op, 0)) for op in ("INSERT", "UPDATE", "DELETE")}

    return counts


def crash_after_flip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next publish die right after CURRENT names the new version."""
    real = job.publish_assembled

    def publish_then_die(*args: Any, **kwargs: Any) -> Path:
        real(*args, **kwargs)
        raise KeyboardInterrupt("killed right after the flip")

    monkeypatch.setattr(job, "publish_assembled", publish_then_die)


def test_unchanged_rerun_writes_no_image_rows(tmp_path: Path, image_tree: tuple[Path, list[str]],
                                              fake_model: ModelChoice) -> None:
    root, _ = image_tree
    bundle = tmp_path / "bundle"
    index(root, bundle, fake_model)
    writes = audit_image_writes(bundle)
    report = index(root, bundle, fake_model)
    assert not report.published
    assert writes() == {"INSERT": 0, "UPDATE": 0, "DELETE": 0}
    assert (report.state_upserted, report.state_deleted) == (0, 0)


def test_rerun_writes_only_the_rows_that_changed(tmp_path: Path, image_tree: tuple[Path, list[str]],
                                                 fake_model: ModelChoice, make_images: Make) -> None:
    root, ids = image_tree
    bundle = tmp_path / "bundle"
    index(root, bundle, fake_model)
    StateDB(bundle / "state.sqlite").set_state(ids[:3], "labeled")
    writes = audit_image_writes(bundle)

    new = make_images(root, 1, seed=5, prefix="new")
    (root / ids[4]).unlink()
    report = index(root, bundle, fake_model, prune=True)
    assert report.published and (report.added, report.removed) == (1, 1)
    assert writes() == {"INSERT": 1, "UPDATE": 0, "DELETE": 1}
    assert (report.state_upserted, report.state_deleted) == (1, 1)
    assert table_rows(bundle) == published_rows(bundle) and new[0] in table_rows(bundle)
    assert StateDB(bundle / "state.sqlite").state_counts()["labeled"] == 3  # labels of survivors kept


def test_new_images_are_labelable_even_when_the_run_dies_right_after_the_flip(
        tmp_path: Path, image_tree: tuple[Path, list[str]], fake_model: ModelChoice, make_images: Make,
        monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = image_tree
    bundle = tmp_path / "bundle"
    index(root, bundle, fake_model)
    new = make_images(root, 3, seed=8, prefix="late")
    crash_after_flip(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        index(root, bundle, fake_model)
    assert load_current(bundle).version == 2 and set(new) <= set(load_current(bundle).image_ids)

    # The rows were written before the flip: what the service now mines can be labeled.
    assert StateDB(bundle / "state.sqlite").set_state(new, "labeled") == 3
    assert table_rows(bundle) == published_rows(bundle)


def test_crash_between_flip_and_sync_is_repaired_by_the_next_run(
        tmp_path: Path, image_tree: tuple[Path, list[str]], fake_model: ModelChoice,
        monkeypatch: pytest.MonkeyPatch) -> None:
    root, ids = image_tree
    bundle = tmp_path / "bundle"
    index(root, bundle, fake_model)
    for image_id in ids[:2]:
        (root / image_id).unlink()
    crash_after_flip(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        index(root, bundle, fake_model, prune=True)
    monkeypatch.undo()
    assert set(table_rows(bundle)) - set(published_rows(bundle)) == set(ids[:2])  # orphans left behind
    # ... and a row the published version has went missing too (the way the old code left it).
    with sqlite3.connect(bundle / "state.sqlite") as db:
        db.execute("DELETE FROM images WHERE image_id = ?", (ids[5],))

    report = index(root, bundle, fake_model)  # nothing to embed, nothing to publish
    assert not report.published and report.embedded_now == 0
    assert (report.state_upserted, report.state_deleted) == (1, 2)
    assert table_rows(bundle) == published_rows(bundle)
    assert StateDB(bundle / "state.sqlite").set_state([ids[5]], "labeled") == 1


def test_rebuild_with_a_smaller_source_removes_and_reports_the_orphans(
        tmp_path: Path, image_tree: tuple[Path, list[str]], fake_model: ModelChoice,
        fake_embedder: Any) -> None:
    root, ids = image_tree
    bundle = tmp_path / "bundle"
    index(root, bundle, fake_model)
    StateDB(bundle / "state.sqlite").set_state(ids[:4], "labeled")
    gone = ids[:2] + ids[6:9]
    for image_id in gone:
        (root / image_id).unlink()

    other = ModelChoice(ModelInfo(identity="fake/v2", name="fake2", pretrained="none"), lambda: fake_embedder)
    report = index(root, bundle, other, rebuild=True)
    assert report.published and report.removed == len(gone)
    assert load_current(bundle).manifest.counts.removed == len(gone)
    assert sorted(table_rows(bundle)) == sorted(set(ids) - set(gone))
    assert table_rows(bundle) == published_rows(bundle)
    assert StateDB(bundle / "state.sqlite").state_counts()["labeled"] == 2  # the surviving labeled ones


def test_metadata_changes_are_synced_and_timestamps_stored_in_iso_form(tmp_path: Path) -> None:
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    from edgemine.indexer import read_embeddings_source

    def write(stamp: dt.datetime) -> Path:
        vectors = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
        pq.write_table(pa.table({"image_id": [f"x{i}" for i in range(4)],
                                 "embedding": pa.array(vectors.tolist(), pa.list_(pa.float32())),
                                 "when": [stamp + dt.timedelta(minutes=i) for i in range(4)],
                                 "speed": [1.5, 2.0, None, 3.0]}), tmp_path / "e.parquet")
        return tmp_path / "e.parquet"

    model = ModelChoice(ModelInfo(identity="byo:x", name="x", pretrained="external"), None)
    run_index(read_embeddings_source(write(dt.datetime(2024, 3, 1))), tmp_path / "b", model, progress=False)
    with sqlite3.connect(tmp_path / "b" / "state.sqlite") as db:
        stored = db.execute("SELECT metadata FROM images WHERE image_id = 'x1'").fetchone()[0]
    assert stored == '{"speed": 2.0, "when": "2024-03-01T00:01:00"}'  # as the API shows it

    report = run_index(read_embeddings_source(write(dt.datetime(2024, 3, 2))), tmp_path / "b", model,
                       progress=False)
    assert report.state_upserted == 4
    with sqlite3.connect(tmp_path / "b" / "state.sqlite") as db:
        stored = db.execute("SELECT metadata FROM images WHERE image_id = 'x1'").fetchone()[0]
    assert stored == '{"speed": 2.0, "when": "2024-03-02T00:01:00"}'


def test_small_sync_chunks_give_the_same_table(tmp_path: Path, make_images: Make, fake_model: ModelChoice,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from edgemine.bundle import images_sync

    monkeypatch.setattr(images_sync, "CHUNK_ROWS", 4)
    root, bundle = tmp_path / "images", tmp_path / "bundle"
    ids = make_images(root, 15)
    index(root, bundle, fake_model)
    assert sorted(table_rows(bundle)) == sorted(ids)
    for image_id in ids[:9]:
        (root / image_id).unlink()
    report = index(root, bundle, fake_model, prune=True)
    assert report.state_deleted == 9 and table_rows(bundle) == published_rows(bundle)


def test_failures_are_cleared_once_indexed(tmp_path: Path, image_tree: tuple[Path, list[str]],
                                           fake_model: ModelChoice) -> None:
    root, ids = image_tree
    bundle = tmp_path / "bundle"
    good = (root / ids[3]).read_bytes()
    (root / ids[3]).write_bytes(b"not an image")
    index(root, bundle, fake_model)
    with sqlite3.connect(bundle / "state.sqlite") as db:
        assert [r[0] for r in db.execute("SELECT image_id FROM failures")] == [ids[3]]
    (root / ids[3]).write_bytes(good)
    Image.open(root / ids[3]).verify()
    index(root, bundle, fake_model)
    with sqlite3.connect(bundle / "state.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM failures").fetchone()[0] == 0


def test_unchanged_run_skips_the_comparison_only_while_the_table_is_known_in_step(
        tmp_path: Path, image_tree: tuple[Path, list[str]], fake_model: ModelChoice,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from edgemine.bundle import images_sync

    root, ids = image_tree
    bundle = tmp_path / "bundle"
    index(root, bundle, fake_model)

    def no_plan(*args: Any) -> Any:
        raise AssertionError("the images table was compared although it mirrors the served version")

    with monkeypatch.context() as patch:
        patch.setattr(images_sync, "plan_sync", no_plan)
        assert not index(root, bundle, fake_model).published

    with sqlite3.connect(bundle / "state.sqlite") as db:  # a row lost outside any indexer run
        db.execute("DELETE FROM images WHERE image_id = ?", (ids[7],))
    report = index(root, bundle, fake_model)
    assert (report.state_upserted, report.state_deleted) == (1, 0)
    assert table_rows(bundle) == published_rows(bundle)
