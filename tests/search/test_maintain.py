"""Incremental index maintenance through run_index: reuse, changed and pruned vectors, retraining."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgemine.bundle.errors import BundleError
from edgemine.bundle.snapshot import load_current
from edgemine.bundle.state import StateDB
from edgemine.indexer import run_index, scan_directory
from edgemine.indexer.job import IndexOptions
from edgemine.models.vectors import l2_normalize
from edgemine.search import maintain
from edgemine.search.maintain import RETRAIN_AFTER_GROWTH
from edgemine.service import MineQuery

D = 32
SPEC = "IVF32,SQ8"


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count full index builds (train + add + tune) made by make_index."""
    calls: list[int] = []
    real = maintain.build_index

    def counting(vectors: Any, vec_ids: Any, plan: Any, seed: int = 0, hold_out: int = 0) -> Any:
        calls.append(len(vectors))
        return real(vectors, vec_ids, plan, seed=seed, hold_out=hold_out)

    monkeypatch.setattr(maintain, "build_index", counting)
    return calls


def check_index_matches_catalog(kit: Any, snap: Any) -> Any:
    """The stored index holds exactly the version's vec_ids (served or tombstoned), once each."""
    index = snap.load_index()
    vec_ids = np.sort(snap.catalog.column("vec_id").to_numpy())
    stored = kit.index_ids(index)
    assert len(vec_ids) == snap.manifest.counts.images
    # Format 2: tombstoned rows stay in their segment's lists; the searcher never selects them.
    assert index.ntotal == len(vec_ids) + len(snap.tombstones)
    np.testing.assert_array_equal(stored, np.union1d(vec_ids, snap.tombstones))
    return index


def finds_itself(kit: Any, snap: Any, rows: np.ndarray) -> float:
    """Fraction of `rows` whose own vector brings them back as ANN candidates (all rows eligible)."""
    searcher = kit.searcher_of(snap)
    E = np.asarray(snap.embeddings)
    everything = np.ones(len(E), bool)
    hits = 0
    for row in rows:
        cands = searcher.candidates(E[row][None], 10, everything)
        assert cands is not None
        hits += int(row in cands)
    return hits / len(rows)


def served_vec_ids_found(kit: Any, snap: Any, vectors: np.ndarray) -> set[int]:
    """vec_ids of the candidate rows the service's searcher returns for `vectors` (all rows eligible)."""
    searcher = kit.searcher_of(snap)
    cands = searcher.candidates(np.ascontiguousarray(vectors, np.float32), 10, np.ones(len(snap.catalog), bool))
    assert cands is not None
    return set(snap.catalog.column("vec_id").to_numpy()[cands].tolist())


def stale_hits(snap: Any, vec_ids: np.ndarray, old_vectors: np.ndarray) -> int:
    """How many of `vec_ids` the index still returns for their *old* vectors at near-1 similarity."""
    index = snap.load_index()
    if hasattr(index, "nprobe"):
        index.nprobe = 32
    dist, labels = index.search(np.ascontiguousarray(old_vectors, np.float32), 5)
    return int(sum(((labels[i] == v) & (dist[i] > 0.95)).any() for i, v in enumerate(vec_ids)))


def mine_recall(kit: Any, snap: Any, positives: list[str], k: int = 20) -> tuple[list[str], float]:
    miner = kit.miner_of(snap, kit.MaskStates(snap.manifest.counts.images))
    result = miner.mine(MineQuery(positive_ids=positives, k=k))
    E = np.asarray(snap.embeddings)
    rows = snap.rows_of(positives)
    eligible = np.ones(len(E), bool)
    eligible[rows] = False
    truth = kit.exact_max_topk(E, E[rows], eligible, k)
    got = [c.image_id for c in result.candidates]
    assert len(got) == k
    return got, len(np.intersect1d(snap.rows_of(got), truth)) / k


def test_incremental_runs_reuse_update_prune_and_retrain(kit: Any, tmp_path: Path, builds: list[int]) -> None:
    rng = np.random.default_rng(0)
    n0 = 4000
    X = kit.clustered(n0, D, clusters=40, spread=0.15, seed=1)
    ids = kit.ids_for(n0)
    bundle = tmp_path / "bundle"

    first = kit.index_bundle(bundle, ids, X, SPEC)
    assert first.report.published and builds == [n0]
    snap1 = load_current(bundle)
    info1 = snap1.manifest.index
    assert info1.trained_on == n0 and info1.train_size == n0 - maintain.TUNE_QUERIES and info1.search_params
    check_index_matches_catalog(kit, snap1)

    # Run 2: 10% new vectors (near-duplicates of the first 400) and 20 changed vectors.
    new_vectors = l2_normalize(X[:400] + 0.01 * rng.standard_normal((400, D)))
    changed = np.arange(100, 120)
    old_changed = X[changed].copy()
    X2 = np.concatenate([X, new_vectors])
    X2[changed] = l2_normalize(rng.standard_normal((len(changed), D)))
    ids2 = kit.ids_for(n0 + 400)
    second = kit.index_bundle(bundle, ids2, X2, SPEC)
    assert second.report.added == 400 and second.report.updated == len(changed)
    assert builds == [n0], "adding 10% must reuse the trained index, not rebuild it"
    snap2 = load_current(bundle)
    info2 = snap2.manifest.index
    assert snap2.version == 2
    assert info2.trained_on == n0 and info2.train_size == info1.train_size
    assert info2.search_params == info1.search_params and info2.factory == SPEC
    check_index_matches_catalog(kit, snap2)
    new_rows = snap2.rows_of(ids2[n0:])
    assert finds_itself(kit, snap2, new_rows[::8]) >= 0.95
    # Through the miner: an old vector's near-duplicate (a new id) is its best match.
    for j in (0, 7, 123):
        got, recall = mine_recall(kit, snap2, [ids2[j]])
        assert got[0] == ids2[n0 + j] and recall >= 0.9
    # Changed vectors: found at their new position, never at the old one.
    changed_rows = snap2.rows_of([ids2[i] for i in changed])
    np.testing.assert_allclose(np.asarray(snap2.embeddings)[changed_rows], X2[changed], atol=1e-6)
    assert finds_itself(kit, snap2, changed_rows) == 1.0
    changed_vec_ids = snap2.catalog.column("vec_id").to_numpy()[changed_rows]
    assert stale_hits(snap2, changed_vec_ids, old_changed) == 0
    # Format 2: a changed image got a new vec_id; the old one is tombstoned. Its vector is still in
    # its segment's lists (the check has teeth), but the searcher never returns it.
    old_vec_ids = snap1.catalog.column("vec_id").to_numpy()[snap1.rows_of([ids2[i] for i in changed])]
    assert set(old_vec_ids.tolist()) <= set(snap2.tombstones.tolist())
    assert stale_hits(snap2, old_vec_ids, old_changed) == len(changed)
    assert not served_vec_ids_found(kit, snap2, old_changed) & set(old_vec_ids.tolist())

    # Run 3: prune 100 ids (reuse: removal only).
    pruned = ids2[200:300]
    keep = [i for i in ids2 if i not in set(pruned)]
    keep_rows = [ids2.index(i) for i in keep]
    pruned_vec_ids = snap2.catalog.column("vec_id").to_numpy()[snap2.rows_of(pruned)]
    third = kit.index_bundle(bundle, keep, X2[keep_rows], SPEC, prune=True)
    assert third.report.removed == 100 and builds == [n0]
    snap3 = load_current(bundle)
    assert snap3.manifest.index.trained_on == n0
    check_index_matches_catalog(kit, snap3)
    assert np.isin(pruned_vec_ids, snap3.tombstones).all()
    assert not served_vec_ids_found(kit, snap3, X2[200:300]) & set(pruned_vec_ids.tolist())
    searcher = kit.searcher_of(snap3)
    assert searcher is not None and not searcher.identity_ids  # vec_ids have a gap now
    got, recall = mine_recall(kit, snap3, [keep[0], keep[500], keep[3000]])
    assert recall >= 0.9 and not set(got) & set(pruned)

    # Run 4: more images, no prune: the pruned ids do not come back.
    ids4 = [*keep, *kit.ids_for(50, start=9000)]
    X4 = np.concatenate([X2[keep_rows], kit.clustered(50, D, clusters=40, spread=0.15, seed=1)[:50]])
    kit.index_bundle(bundle, ids4, X4, SPEC)
    snap4 = load_current(bundle)
    assert builds == [n0] and not set(pruned) & set(snap4.image_ids)
    check_index_matches_catalog(kit, snap4)
    assert np.isin(pruned_vec_ids, snap4.tombstones).all()
    assert not served_vec_ids_found(kit, snap4, X2[200:300]) & set(pruned_vec_ids.tolist())

    # Run 5: growth beyond RETRAIN_AFTER_GROWTH of the trained size: retrain.
    extra = int(n0 * RETRAIN_AFTER_GROWTH) + 200
    X5 = np.concatenate([X4, kit.clustered(extra, D, clusters=40, spread=0.15, seed=7)])
    ids5 = [*ids4, *kit.ids_for(extra, start=20_000)]
    assert len(ids5) > n0 * (1 + RETRAIN_AFTER_GROWTH)
    kit.index_bundle(bundle, ids5, X5, SPEC)
    snap5 = load_current(bundle)
    info5 = snap5.manifest.index
    assert builds == [n0, len(ids5)]
    assert info5.trained_on == len(ids5) and info5.train_size == len(ids5) - maintain.TUNE_QUERIES
    assert info5.recall_at_k is not None and info5.recall_at_k >= 0.95
    check_index_matches_catalog(kit, snap5)
    assert finds_itself(kit, snap5, snap5.rows_of(ids5[-extra::40])) >= 0.95


def test_growth_just_within_the_limit_is_incremental(kit: Any, tmp_path: Path, builds: list[int]) -> None:
    n0 = 1000
    X = kit.clustered(int(n0 * (1 + RETRAIN_AFTER_GROWTH)) + 1, 16, clusters=16, seed=3)
    bundle = tmp_path / "b"
    kit.index_bundle(bundle, kit.ids_for(n0), X[:n0], "IVF16,Flat")
    limit = int(n0 * (1 + RETRAIN_AFTER_GROWTH))
    kit.index_bundle(bundle, kit.ids_for(limit), X[:limit], "IVF16,Flat")
    assert builds == [n0] and load_current(bundle).manifest.index.trained_on == n0
    kit.index_bundle(bundle, kit.ids_for(limit + 1), X[:limit + 1], "IVF16,Flat")
    assert builds == [n0, limit + 1] and load_current(bundle).manifest.index.trained_on == limit + 1


def test_hnsw_with_deletions_tombstones_then_compacts_and_stays_correct(kit: Any, tmp_path: Path,
                                                                         builds: list[int]) -> None:
    """HNSW cannot delete: format 2 tombstones removed/changed vectors (the graph is extended, O(index))
    until the tombstones pass MAX_TOMBSTONE_FRACTION; that publish compacts and rebuilds the graph."""
    rng = np.random.default_rng(4)
    n0 = 2500
    X = kit.clustered(n0 + 250, D, clusters=30, spread=0.15, seed=2)
    bundle = tmp_path / "hnsw"
    ids = kit.ids_for(n0 + 250)
    kit.index_bundle(bundle, ids[:n0], X[:n0], "HNSW16,Flat")
    assert builds == [n0]
    # Additions only: reused.
    kit.index_bundle(bundle, ids, X, "HNSW16,Flat")
    snap = load_current(bundle)
    assert builds == [n0] and snap.manifest.index.trained_on == n0 and snap.manifest.index.type == "hnsw"
    check_index_matches_catalog(kit, snap)
    assert finds_itself(kit, snap, snap.rows_of(ids[n0::10])) == 1.0
    # Changed vectors: new vec_ids added to the graph, the old ones tombstoned, never returned.
    changed = np.arange(10, 30)
    old = X[changed].copy()
    old_vec_ids = snap.catalog.column("vec_id").to_numpy()[snap.rows_of([ids[i] for i in changed])]
    X[changed] = l2_normalize(rng.standard_normal((len(changed), D)))
    report = kit.index_bundle(bundle, ids, X, "HNSW16,Flat").report
    snap = load_current(bundle)
    assert report.updated == len(changed) and builds == [n0]
    assert np.isin(old_vec_ids, snap.tombstones).all()
    check_index_matches_catalog(kit, snap)
    changed_rows = snap.rows_of([ids[i] for i in changed])
    assert finds_itself(kit, snap, changed_rows) == 1.0
    assert stale_hits(snap, snap.catalog.column("vec_id").to_numpy()[changed_rows], old) == 0
    assert not served_vec_ids_found(kit, snap, old) & set(old_vec_ids.tolist())
    got, recall = mine_recall(kit, snap, [ids[10], ids[11]])
    assert recall >= 0.9
    # Pruning 750 of 2750: tombstones would pass 25%: compacted, the graph rebuilt without them.
    keep = ids[:2000]
    report = kit.index_bundle(bundle, keep, X[:2000], "HNSW16,Flat", prune=True).report
    snap = load_current(bundle)
    assert report.compacted and builds == [n0, 2000] and len(snap.tombstones) == 0
    check_index_matches_catalog(kit, snap)
    got, recall = mine_recall(kit, snap, [ids[5]])
    assert recall >= 0.9 and all(g in set(keep) for g in got)


def test_invalid_factory_names_it_and_keeps_the_published_version(kit: Any, tmp_path: Path) -> None:
    X = kit.clustered(600, 16, clusters=8, seed=5)
    bundle = tmp_path / "b"
    kit.index_bundle(bundle, kit.ids_for(500), X[:500], "IVF8,Flat")
    with pytest.raises(BundleError, match=r"'IVF8,Bogus42'"):
        kit.index_bundle(bundle, kit.ids_for(600), X, "IVF8,Bogus42")
    snap = load_current(bundle)
    assert snap.version == 1 and snap.manifest.counts.images == 500
    fixed = kit.index_bundle(bundle, kit.ids_for(600), X, "IVF8,SQ8")
    assert fixed.report.published and fixed.report.added == 100
    snap = load_current(bundle)
    assert snap.version == 2 and snap.manifest.index.factory == "IVF8,SQ8"
    check_index_matches_catalog(kit, snap)


def test_invalid_factory_keeps_the_embedding_journal(tmp_path: Path, make_images: Any, fake_model: Any,
                                                     fake_embedder: Any) -> None:
    """Images embedded before the index step failed are not embedded again by the corrected run."""
    root = tmp_path / "images"
    make_images(root, 12, seed=1)
    bundle = tmp_path / "bundle"
    with pytest.raises(BundleError, match=r"'IVF4,NotACodec'"):
        run_index(scan_directory(root), bundle, fake_model, workers=0, progress=False,
                  options=IndexOptions("IVF4,NotACodec"))
    assert not (bundle / "CURRENT").exists()
    assert StateDB(bundle / "state.sqlite").journal_count() == 12
    batches = fake_embedder.batches
    report = run_index(scan_directory(root), bundle, fake_model, workers=0, progress=False,
                       options=IndexOptions("IVF4,Flat"))
    assert report.published and report.resumed_from_journal == 12 and report.embedded_now == 0
    assert fake_embedder.batches == batches
    assert load_current(bundle).manifest.index.factory == "IVF4,Flat"
