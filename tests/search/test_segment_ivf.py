"""IVF lists kept per segment (format 2): stacked at load, they answer like one index built at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from edgemine.bundle import snapshot
from edgemine.bundle.snapshot import load_current
from edgemine.search.build import add_vectors, ivf_of
from edgemine.search.searcher import Searcher

SPEC = "IVF16,Flat"
D = 16


@pytest.mark.parametrize("merge", [True, False], ids=["merged", "stacked"])
def test_per_segment_lists_give_the_same_top_k_as_one_index_built_at_once(
        kit: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, merge: bool) -> None:
    monkeypatch.setattr(snapshot, "MERGE_LISTS", merge)
    X = kit.clustered(2600, D, clusters=16, seed=11)
    ids = kit.ids_for(2600)
    bundle = tmp_path / "b"
    kit.index_bundle(bundle, ids[:2000], X[:2000], SPEC)
    kit.index_bundle(bundle, ids[:2300], X[:2300], SPEC)
    X[7] = kit.clustered(1, D, clusters=1, seed=99)[0]  # a changed image: its old vec_id tombstoned
    kit.index_bundle(bundle, ids, X, SPEC)
    snap = load_current(bundle)
    assert len(snap.manifest.segments) == 3 and all(s.has_index for s in snap.manifest.segments)
    assert len(snap.tombstones) == 1
    version_index = faiss.read_index(str(snap.dir / "index.faiss"))
    assert version_index.ntotal == 0  # the trained, empty index; the lists live in the segments

    stacked = snap.load_index()
    # One index built at once from the same trained quantizer and every stored row.
    whole = faiss.clone_index(version_index)
    for seg in snap.manifest.segments:
        part = np.load(bundle / "segments" / seg.name / "embeddings.npy")
        add_vectors(whole, part, np.arange(seg.vec_id_start, seg.vec_id_end, dtype=np.int64))
    assert stacked.ntotal == whole.ntotal == 2601
    queries = np.ascontiguousarray(np.asarray(snap.embeddings)[::97], np.float32)
    ivf_of(stacked).nprobe = ivf_of(whole).nprobe = 4
    d1, l1 = stacked.search(queries, 20)
    d2, l2 = whole.search(queries, 20)
    np.testing.assert_array_equal(l1, l2)
    np.testing.assert_allclose(d1, d2, rtol=1e-6)

    # Through the service's searcher: same candidates, and the tombstoned vec_id never comes back.
    vec_ids = snap.catalog.column("vec_id").to_numpy()
    params = dict(snap.manifest.index.search_params)
    eligible = np.ones(len(vec_ids), bool)
    got = Searcher(stacked, "ivf", params, vec_ids).candidates(queries, 50, eligible)
    want = Searcher(whole, "ivf", params, vec_ids).candidates(queries, 50, eligible)
    assert got is not None and want is not None
    np.testing.assert_array_equal(np.sort(got), np.sort(want))
    old_vector = np.load(bundle / "segments" / snap.manifest.segments[0].name / "embeddings.npy")[7:8]
    rows = Searcher(stacked, "ivf", params, vec_ids).candidates(np.ascontiguousarray(old_vector), 10, eligible)
    assert rows is not None and not np.isin(vec_ids[rows], snap.tombstones).any()
    _, raw = stacked.search(np.ascontiguousarray(old_vector), 1)
    assert raw[0, 0] in snap.tombstones  # the raw lists still hold it: the exclusion has teeth
