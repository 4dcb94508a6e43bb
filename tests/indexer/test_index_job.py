"""run_index over a directory with the fake embedder: first run, failures, incremental re-runs."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edgemine.bundle import FORMAT_VERSION, BundleError, ModelMismatch, StateDB, load_current
from edgemine.bundle.layout import ModelInfo
from edgemine.indexer import IndexReport, ModelChoice, SourceError, run_index, scan_directory


def index(root: Path, bundle: Path, model: ModelChoice, **kwargs: Any) -> IndexReport:
    kwargs.setdefault("workers", 0)
    kwargs.setdefault("batch_size", 4)
    return run_index(scan_directory(root), bundle, model, progress=False, **kwargs)


def counting_model(embedder: Any, identity: str = "fake/v1") -> tuple[ModelChoice, list[int]]:
    """A ModelChoice that records how often the model was loaded."""
    loads: list[int] = []

    def load() -> Any:
        loads.append(1)
        return embedder

    return ModelChoice(ModelInfo(identity=identity, name=identity.split("/")[0], pretrained="none"), load), loads


def expected_vector(embedder: Any, path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return embedder.embed_images([im.convert("RGB")])[0]


def vec_ids(bundle: Path) -> dict[str, int]:
    snap = load_current(bundle)
    return dict(zip(snap.image_ids, snap.catalog.column("vec_id").to_pylist(), strict=True))


def db_rows(bundle: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(bundle / "state.sqlite") as db:
        return db.execute(sql).fetchall()


@pytest.mark.parametrize("workers", [0, 2])
def test_first_run_publishes_version_1(tmp_path: Path, image_tree: tuple[Path, list[str]],
                                       fake_model: ModelChoice, fake_embedder: Any, workers: int) -> None:
    root, ids = image_tree
    bundle = tmp_path / "bundle"
    report = index(root, bundle, fake_model, workers=workers)

    assert (report.version, report.published) == (1, True)
    assert report.total_in_source == 12
    assert (report.added, report.updated, report.unchanged, report.removed) == (12, 0, 0, 0)
    assert (report.embedded_now, report.resumed_from_journal, report.failed) == (12, 0, [])

    snap = load_current(bundle)
    m = snap.manifest
    assert m.format_version == FORMAT_VERSION
    assert m.version == 1
    assert m.model.identity == "fake/v1"
    assert m.dim == 16
    assert m.metric == "inner_product" and m.normalized
    assert (m.counts.images, m.counts.added, m.counts.updated, m.counts.removed, m.counts.failed) == (12, 12, 0, 0, 0)
    assert m.next_vec_id == 12
    assert m.image_roots == [str(root.resolve())]
    assert m.metadata_columns == []
    assert (bundle / "CURRENT").read_text().strip() == "v000001"

    assert sorted(snap.image_ids) == sorted(ids)
    assert sorted(snap.catalog.column("vec_id").to_pylist()) == list(range(12))
    assert snap.embeddings.dtype == np.float32 and snap.embeddings.shape == (12, 16)
    reference = type(fake_embedder)()
    for row, image_id in enumerate(snap.image_ids):
        assert snap.catalog.column("path")[row].as_py() == str(root.resolve() / image_id)
        np.testing.assert_allclose(snap.embeddings[row], expected_vector(reference, root / image_id), atol=1e-6)

    faiss_index = snap.load_index()
    assert faiss_index.ntotal == 12
    _, hits = faiss_index.search(np.ascontiguousarray(snap.embeddings[3:4]), 1)
    assert hits[0, 0] == snap.catalog.column("vec_id")[3].as_py()

    assert db_rows(bundle, "SELECT COUNT(*), MIN(state), MAX(state) FROM images") == [(12, "unlabeled", "unlabeled")]
    assert StateDB(bundle / "state.sqlite").journal_count() == 0
    last = json.loads((bundle / "reports" / "last-index.json").read_text())
    assert last["version"] == 1 and last["added"] == 12
    assert report.report_path is not None and Path(report.report_path).is_file()
    assert (bundle / "reports" / "failures.jsonl").read_text() == ""


def write_bad_files(root: Path) -> dict[str, str]:
    """Write broken images; return id -> a fragment the failure reason must contain."""
    bad = root / "bad"
    bad.mkdir(parents=True)
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "text.jpg").write_text("this is not a jpeg, just some text\n" * 10)
    (bad / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    buf = root / "full.jpg"
    Image.fromarray(np.random.default_rng(5).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, quality=90)
    data = buf.read_bytes()
    buf.unlink()
    (bad / "truncated.jpg").write_bytes(data[: len(data) // 2])
    return {
        "bad/empty.jpg": "empty file",
        "bad/text.jpg": "not an image",
        "bad/corrupt.png": "",
        "bad/truncated.jpg": "truncated",
    }


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_files_are_reported_and_the_job_continues(tmp_path: Path, image_tree: tuple[Path, list[str]],
                                                      fake_model: ModelChoice, workers: int) -> None:
    root, ids = image_tree
    expected = write_bad_files(root)
    bundle = tmp_path / "bundle"
    report = index(root, bundle, fake_model, workers=workers)

    assert report.published and report.version == 1
    assert report.added == 12 and report.embedded_now == 12
    reasons = {f["image_id"]: f["reason"] for f in report.failed}
    assert set(reasons) == set(expected)
    for image_id, fragment in expected.items():
        assert reasons[image_id], image_id
        assert fragment in (reasons[image_id] or ""), (image_id, reasons[image_id])
    assert all(f["path"] == str(root.resolve() / f["image_id"]) for f in report.failed)

    lines = (bundle / "reports" / "failures.jsonl").read_text().splitlines()
    assert {json.loads(line)["image_id"]: json.loads(line)["reason"] for line in lines} == reasons
    assert json.loads((bundle / "reports" / "last-index.json").read_text())["failed"] == report.failed
    snap = load_current(bundle)
    assert sorted(snap.image_ids) == sorted(ids)
    assert snap.manifest.counts.failed == 4
    assert {r[0] for r in db_rows(bundle, "SELECT image_id FROM failures")} == set(expected)

    # Fix one broken file: it gets indexed and its failure is forgotten.
    Image.new("RGB", (20, 20), (200, 10, 10)).save(root / "bad" / "text.jpg", format="JPEG")
    again = index(root, bundle, fake_model, workers=workers)
    assert again.published and again.version == 2
    assert (again.added, again.unchanged, again.embedded_now) == (1, 12, 1)
    assert {f["image_id"] for f in again.failed} == set(expected) - {"bad/text.jpg"}
    assert "bad/text.jpg" in load_current(bundle).image_ids
    assert {r[0] for r in db_rows(bundle, "SELECT image_id FROM failures")} == set(expected) - {"bad/text.jpg"}


def test_nothing_indexable_is_an_error(tmp_path: Path, fake_model: ModelChoice) -> None:
    root = tmp_path / "images"
    write_bad_files(root)
    with pytest.raises(BundleError, match="nothing could be indexed"):
        index(root, tmp_path / "bundle", fake_model)
    assert not (tmp_path / "bundle" / "CURRENT").exists()


def test_unchanged_rerun_embeds_nothing_and_keeps_the_version(
        tmp_path: Path, image_tree: tuple[Path, list[str]], fake_model: ModelChoice, fake_embedder: Any) -> None:
    root, _ = image_tree
    bundle = tmp_path / "bundle"
    index(root, bundle, fake_model)
    before = vec_ids(bundle)
    model, loads = counting_model(type(fake_embedder)())

    report = index(root, bundle, model)
    assert (report.published, report.version) == (False, 1)
    assert (report.unchanged, report.added, report.updated, report.embedded_now) == (12, 0, 0, 0)
    assert loads == []  # the model is not even loaded
    assert (bundle / "CURRENT").read_text().strip() == "v000001"
    assert sorted(p.name for p in (bundle / "versions").iterdir()) == ["v000001"]
    assert vec_ids(bundle) == before


def test_added_and_changed_images_are_embedded_and_ids_stay_stable(
        tmp_path: Path, image_tree: tuple[Path, list[str]], fake_model: ModelChoice, fake_embedder: Any,
        make_images: Callable[..., list[str]]) -> None:
    root, ids = image_tree
    bundle = tmp_path / "bundle"
    index(root, bundle, fake_model)
    before = vec_ids(bundle)

    new_ids = make_images(root, 2, seed=99, prefix="new")
    changed = ids[5]
    Image.fromarray(np.full((16, 24, 3), 17, np.uint8)).save(root / changed)
    st = (root / changed).stat()
    os.utime(root / changed, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    embedder = type(fake_embedder)()
    model, _ = counting_model(embedder)

    report = index(root, bundle, model)
    assert report.published and report.version == 2
    assert (report.added, report.updated, report.unchanged, report.embedded_now) == (2, 1, 11, 3)
    assert embedder.batches == 1  # 3 images, batch size 4
    after = vec_ids(bundle)
    # Unchanged images keep their ids; the changed one gets a new id (its old one is tombstoned).
    assert {k: after[k] for k in before if k != changed} == {k: v for k, v in before.items() if k != changed}
    assert sorted(after[i] for i in [*new_ids, changed]) == [12, 13, 14]
    snap = load_current(bundle)
    assert snap.manifest.next_vec_id == 15
    assert snap.tombstones.tolist() == [before[changed]]
    assert (snap.manifest.counts.images, snap.manifest.counts.added, snap.manifest.counts.updated) == (14, 2, 1)
    reference = type(fake_embedder)()
    for image_id in [changed, *new_ids, ids[0]]:
        np.testing.assert_allclose(snap.embeddings[snap.row_by_id[image_id]],
                                   expected_vector(reference, root / image_id), atol=1e-6)
    assert len(db_rows(bundle, "SELECT image_id FROM images")) == 14


def test_touched_file_is_re_embedded(tmp_path: Path, image_tree: tuple[Path, list[str]],
                                     fake_model: ModelChoice, fake_embedder: Any) -> None:
    root, ids = image_tree
    bundle = tmp_path / "bundle"
    index(root, bundle, fake_model)
    before = vec_ids(bundle)
    st = (root / ids[2]).stat()
    os.utime(root / ids[2], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    report = index(root, bundle, fake_model)
    assert (report.updated, report.unchanged, report.embedded_now) == (1, 11, 1)
    assert report.published and report.version == 2
    after = vec_ids(bundle)
    # The touched image is a new row (new id, old id tombstoned); the others keep theirs.
    assert {k: v for k, v in after.items() if k != ids[2]} == {k: v for k, v in before.items() if k != ids[2]}
    assert after[ids[2]] == 12 and load_current(bundle).tombstones.tolist() == [before[ids[2]]]


def test_prune_semantics(tmp_path: Path, image_tree: tuple[Path, list[str]], fake_model: ModelChoice,
                         make_images: Callable[..., list[str]]) -> None:
    root, ids = image_tree
    bundle = tmp_path / "bundle"
    index(root, bundle, fake_model)
    before = vec_ids(bundle)
    gone = [ids[1], ids[7]]
    for image_id in gone:
        (root / image_id).unlink()

    kept = index(root, bundle, fake_model, prune=False)
    assert (kept.removed, kept.missing_from_source_kept, kept.embedded_now) == (0, 2, 0)
    assert (kept.published, kept.version) == (False, 1)  # nothing changed: no new version
    assert vec_ids(bundle) == before
    assert len(db_rows(bundle, "SELECT image_id FROM images")) == 12

    pruned = index(root, bundle, fake_model, prune=True)
    assert pruned.published
    assert (pruned.removed, pruned.missing_from_source_kept, pruned.embedded_now) == (2, 0, 0)
    snap = load_current(bundle)
    assert sorted(snap.image_ids) == sorted(set(ids) - set(gone))
    assert snap.manifest.counts.removed == 2 and snap.manifest.counts.images == 10
    assert vec_ids(bundle) == {k: v for k, v in before.items() if k not in gone}
    assert sorted(r[0] for r in db_rows(bundle, "SELECT image_id FROM images")) == sorted(set(ids) - set(gone))
    assert snap.load_index().ntotal == 10

    # A pruned image that comes back gets a new id: ids are never reused.
    make_images(root, 2)  # rewrites g1/img001.png (and g0/img000.png)
    back = index(root, bundle, fake_model)
    assert back.added == 1
    assert vec_ids(bundle)[ids[1]] > max(before.values())


def test_other_model_is_refused_unless_rebuild(tmp_path: Path, image_tree: tuple[Path, list[str]],
                                               fake_model: ModelChoice, fake_embedder: Any) -> None:
    root, _ = image_tree
    bundle = tmp_path / "bundle"
    index(root, bundle, fake_model)
    other_embedder = type(fake_embedder)()
    other_embedder.identity = "other/v2"
    other, loads = counting_model(other_embedder, "other/v2")

    with pytest.raises(ModelMismatch) as info:
        index(root, bundle, other)
    assert "'fake/v1'" in str(info.value) and "'other/v2'" in str(info.value)
    assert "--rebuild" in str(info.value)
    assert loads == []
    assert load_current(bundle).manifest.model.identity == "fake/v1"

    report = index(root, bundle, other, rebuild=True)
    assert report.published and report.version == 2
    assert report.embedded_now == 12
    snap = load_current(bundle)
    assert snap.manifest.model.identity == "other/v2"
    assert snap.manifest.counts.images == 12
    # and the rebuilt bundle is now the new model's: the old one is refused
    with pytest.raises(ModelMismatch):
        index(root, bundle, fake_model)


def test_missing_source_directory(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        scan_directory(tmp_path / "nope")


def test_indexed_file_that_breaks_keeps_its_vector_and_stays_reported(
        tmp_path: Path, image_tree: tuple[Path, list[str]], fake_model: ModelChoice, fake_embedder: Any) -> None:
    root, ids = image_tree
    bundle = tmp_path / "bundle"
    index(root, bundle, fake_model)
    good = load_current(bundle)
    old_vector = np.array(good.embeddings[good.row_by_id[ids[4]]])
    (root / ids[4]).write_bytes(b"overwritten by a broken copy")

    for _ in range(2):  # reported on every run until fixed, never silently "unchanged"
        report = index(root, bundle, fake_model)
        assert [f["image_id"] for f in report.failed] == [ids[4]]
        assert (report.unchanged, report.updated, report.published) == (11, 0, False)
        snap = load_current(bundle)
        np.testing.assert_array_equal(snap.embeddings[snap.row_by_id[ids[4]]], old_vector)

    Image.fromarray(np.full((16, 24, 3), 99, np.uint8)).save(root / ids[4])
    fixed = index(root, bundle, fake_model)
    assert (fixed.updated, fixed.failed, fixed.published) == (1, [], True)
    snap = load_current(bundle)
    np.testing.assert_allclose(snap.embeddings[snap.row_by_id[ids[4]]],
                               expected_vector(type(fake_embedder)(), root / ids[4]), atol=1e-6)
    # The fixed file is a changed image: a new row with a new id, its old id tombstoned.
    old_id = good.catalog.column("vec_id")[good.row_by_id[ids[4]]].as_py()
    assert vec_ids(bundle)[ids[4]] >= good.manifest.next_vec_id
    assert old_id in snap.tombstones.tolist()


def test_empty_source(tmp_path: Path, image_tree: tuple[Path, list[str]], fake_model: ModelChoice) -> None:
    root, ids = image_tree
    empty = tmp_path / "empty"
    empty.mkdir()
    bundle = tmp_path / "bundle"
    with pytest.raises(BundleError, match="nothing could be indexed"):
        index(empty, bundle, fake_model)
    index(root, bundle, fake_model)
    for image_id in ids:
        (root / image_id).unlink()
    report = index(root, bundle, fake_model, prune=True)
    assert (report.published, report.removed) == (True, 12)
    snap = load_current(bundle)
    assert snap.manifest.counts.images == 0 and snap.embeddings.shape == (0, 16)
    assert snap.load_index().ntotal == 0
