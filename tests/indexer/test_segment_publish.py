"""Format-2 publishes: O(new) segments, tombstones, compaction, format-1 conversion, killed publishes."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgemine.bundle.snapshot import load_current
from edgemine.indexer import publish as publish_mod
from edgemine.indexer import run_index, scan_directory
from edgemine.indexer.job import IndexOptions
from edgemine.search.maintain import can_extend
from tests.support.segments import file_stamps, segment_names, to_format_1
from tests.support.vec_bundle import BYO, build_vec_bundle


def vectors(n: int, seed: int = 0, dim: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim))


def ids_of(n: int, start: int = 0) -> list[str]:
    return [f"im{i:04d}" for i in range(start, start + n)]


def index_rows(bundle: Path) -> set[str]:
    with sqlite3.connect(bundle / "state.sqlite") as db:
        return {r[0] for r in db.execute("SELECT image_id FROM images")}


def reindex(bundle: Path, ids: list[str], vecs: np.ndarray, **kw: Any) -> Any:
    """Index via the BYO source with optional IndexOptions (index spec, compact)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from edgemine.indexer import read_embeddings_source, run_index

    n = len(list(bundle.parent.glob("src-*.parquet")))
    source = bundle.parent / f"src-{n}.parquet"
    pq.write_table(pa.table({"image_id": ids, "embedding": pa.array(np.asarray(vecs, np.float32).tolist(),
                                                                       pa.list_(pa.float32()))}), source)
    options = IndexOptions(kw.pop("index", "flat"), compact=kw.pop("compact", False))
    return run_index(read_embeddings_source(source), bundle, BYO, progress=False, options=options, **kw)


def test_publishing_two_new_images_writes_one_segment_and_leaves_old_files_untouched(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    ids, X = ids_of(20), vectors(22)
    build_vec_bundle(bundle, ids, X[:20])
    before = file_stamps(bundle)
    assert segment_names(bundle) == ["s000000"]

    built = build_vec_bundle(bundle, ids_of(22), X)
    snap = load_current(bundle)
    assert segment_names(bundle) == ["s000000", "s000001"]
    assert [s.name for s in snap.manifest.segments] == ["s000000", "s000001"]
    assert [s.rows for s in snap.manifest.segments] == [20, 2]
    after = file_stamps(bundle)
    assert {k: after[k] for k in before} == before  # same inodes, mtimes, sizes
    # The new version directory is small: a manifest (flat bundles need no index, nothing tombstoned).
    assert sorted(p.name for p in snap.dir.iterdir()) == ["manifest.json"]
    assert snap.image_ids == ids_of(22)
    np.testing.assert_allclose(np.asarray(snap.embeddings), built.vectors / np.linalg.norm(
        built.vectors, axis=1, keepdims=True), atol=1e-6)
    assert index_rows(bundle) == set(ids_of(22))


def test_changed_image_gets_a_new_vec_id_and_its_old_one_is_tombstoned(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    ids, X = ids_of(10), vectors(10)
    reindex(bundle, ids, X)
    first = load_current(bundle)
    old_id = int(first.catalog.column("vec_id")[first.row_by_id["im0003"]].as_py())
    X2 = X.copy()
    X2[3] = vectors(1, seed=9)[0]
    report = reindex(bundle, ids, X2)
    assert (report.updated, report.added) == (1, 0)
    snap = load_current(bundle)
    assert snap.tombstones.tolist() == [old_id]
    assert snap.catalog.column("vec_id")[snap.row_by_id["im0003"]].as_py() == 10
    assert snap.image_ids.count("im0003") == 1 and len(snap.catalog) == 10  # tombstoned row invisible
    np.testing.assert_allclose(snap.embeddings[snap.row_by_id["im0003"]], X2[3] / np.linalg.norm(X2[3]), atol=1e-6)
    assert (snap.dir / "tombstones.npy").is_file() and snap.manifest.tombstones == 1


def test_prune_writes_tombstones_not_a_new_matrix(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    ids, X = ids_of(20), vectors(20)
    reindex(bundle, ids, X)
    before = file_stamps(bundle)
    gone = load_current(bundle).catalog.column("vec_id").to_numpy()[[4, 5]]
    report = reindex(bundle, ids[:4] + ids[6:], np.delete(X, [4, 5], axis=0), prune=True)
    assert report.removed == 2 and not report.compacted
    snap = load_current(bundle)
    assert snap.tombstones.tolist() == sorted(gone.tolist())
    assert file_stamps(bundle) == before  # no segment written: only the version directory
    assert "im0004" not in snap.row_by_id and len(snap.embeddings) == 18
    assert index_rows(bundle) == set(snap.image_ids)


def test_compaction_after_many_publishes_keeps_the_same_top_k(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publish_mod, "MAX_SEGMENTS", 3)
    bundle = tmp_path / "b"
    X = vectors(60, seed=1)
    reindex(bundle, ids_of(30), X[:30])
    reindex(bundle, ids_of(40), X[:40])
    X[5] = vectors(1, seed=7)[0]  # a changed image: tombstone
    reindex(bundle, ids_of(50), X[:50])
    before = load_current(bundle)
    assert len(before.manifest.segments) == 3 and len(before.tombstones) == 1
    queries = np.asarray(before.embeddings[[0, 7, 33, 45]])

    def top_ids(snap: Any, among: set[str]) -> list[list[str]]:
        sims = np.asarray(snap.embeddings @ queries.T).T
        rows = np.array([i in among for i in snap.image_ids])
        sims[:, ~rows] = -np.inf
        return [[snap.image_ids[r] for r in np.argsort(-row, kind="stable")[:10]] for row in sims]

    report = reindex(bundle, ids_of(60), X[:60])  # a fourth segment would pass MAX_SEGMENTS
    after = load_current(bundle)
    assert report.compacted and len(after.manifest.segments) == 1 and not len(after.tombstones)
    assert after.catalog.column("vec_id").to_pylist() == list(range(60))  # renumbered
    assert set(after.image_ids) == set(ids_of(60)) and index_rows(bundle) == set(ids_of(60))
    # Among the images both versions serve, the same images rank the same.
    assert top_ids(after, set(ids_of(50))) == top_ids(before, set(ids_of(50)))
    # Forced compaction of an unchanged source: published, same top-k.
    forced = reindex(bundle, ids_of(60), X[:60], compact=True)
    assert forced.published and forced.compacted
    assert top_ids(load_current(bundle), set(ids_of(60))) == top_ids(after, set(ids_of(60)))
    # Old segments are collected once no kept version names them.
    assert len(segment_names(bundle)) <= 2


@pytest.mark.parametrize("spec", ["flat", "IVF4,Flat"])
def test_format_1_bundle_loads_and_converts_on_the_next_index_run(tmp_path: Path, spec: str) -> None:
    bundle = tmp_path / "b"
    X = vectors(40, seed=2)
    reindex(bundle, ids_of(40), X, index=spec)
    to_format_1(bundle)
    old = load_current(bundle)
    assert old.manifest.format_version == 1 and not (bundle / "segments").exists()
    assert old.image_ids == ids_of(40) and old.load_index().ntotal == 40
    inodes = {n: (old.dir / n).stat().st_ino for n in ("embeddings.npy", "catalog.parquet")}

    report = reindex(bundle, ids_of(42), vectors(42, seed=2), index=spec)
    assert report.published and report.added == 2 and not report.compacted
    snap = load_current(bundle)
    assert snap.manifest.format_version == 2 and [s.rows for s in snap.manifest.segments] == [40, 2]
    first = bundle / "segments" / snap.manifest.segments[0].name
    # Converted by hard links, not rewritten.
    assert {n: (first / n).stat().st_ino for n in inodes} == inodes
    assert snap.image_ids == ids_of(42) and index_rows(bundle) == set(ids_of(42))
    if spec != "flat":
        assert all(s.has_index for s in snap.manifest.segments)
        assert snap.load_index().ntotal == 42


def test_killed_publish_leaves_the_previous_version_and_no_half_segment_referenced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "b"
    X = vectors(30, seed=3)
    reindex(bundle, ids_of(20), X[:20])

    def die(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    # Killed while writing the segment: a .partial directory, never referenced.
    with monkeypatch.context() as m:
        m.setattr("edgemine.bundle.segments._finish", die)  # files written, never renamed
        with pytest.raises(OSError, match="disk full"):
            reindex(bundle, ids_of(25), X[:25])
    assert (bundle / "segments" / "s000001.partial").is_dir()
    snap = load_current(bundle)
    assert snap.version == 1 and snap.image_ids == ids_of(20)
    # Killed after the segment, before the flip: complete but unreferenced.
    with monkeypatch.context() as m:
        m.setattr(publish_mod, "publish_manifest", die)
        with pytest.raises(OSError, match="disk full"):
            reindex(bundle, ids_of(25), X[:25])
    snap = load_current(bundle)
    assert snap.version == 1 and [s.name for s in snap.manifest.segments] == ["s000000"]
    assert len(snap.embeddings) == 20
    # The next run publishes and collects what the killed ones left.
    report = reindex(bundle, ids_of(25), X[:25])
    snap = load_current(bundle)
    assert report.published and snap.version == 2 and snap.image_ids == ids_of(25)
    assert segment_names(bundle) == sorted(s.name for s in snap.manifest.segments)
    assert index_rows(bundle) == set(ids_of(25))


def test_ivf_growth_past_the_retrain_limit_compacts_and_retrains(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    X = vectors(400, seed=4, dim=16)
    reindex(bundle, ids_of(200), X[:200], index="IVF4,Flat")
    small = reindex(bundle, ids_of(260), X[:260], index="IVF4,Flat")
    assert not small.compacted
    info = load_current(bundle).manifest.index
    grown = reindex(bundle, ids_of(400), X, index="IVF4,Flat")  # 400 > 200 * 1.5
    snap = load_current(bundle)
    assert grown.compacted and snap.manifest.index.trained_on == 400 and info.trained_on == 200
    assert len(snap.manifest.segments) == 1 and snap.load_index().ntotal == 400
    assert not can_extend(info, publish_mod.plan_index(400, 16, "IVF4,Flat"), 400)


def test_a_first_publish_is_not_reported_as_a_compaction(tmp_path: Path, make_images: Any, fake_model: Any) -> None:
    make_images(tmp_path / "src", 3)
    report = run_index(scan_directory(tmp_path / "src"), tmp_path / "b", fake_model, workers=0, progress=False)
    assert report.published and report.version == 1 and not report.compacted
