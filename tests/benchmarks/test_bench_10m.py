"""bench_10m.py in a small form (20k rows) writes the format-2 layout of the issue 11 contract."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_10m
import format2
import synthetic

from edgemine.bundle.layout import Manifest

N = 20_000


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("b10m")
    bench_10m.main(["--n", str(N), "--bundle", str(tmp / "bundle"), "--work", str(tmp / "work"),
                    "--out", str(tmp / "out"), "--factory", "IVF64_HNSW32,PQ64x4fs", "--train-size", "4000",
                    "--kmeans-iterations", "4", "--queries", "6", "--tune-queries", "4"])
    return tmp / "bundle", json.loads((tmp / "out" / "ten-million.json").read_text())


def test_small_bundle_has_the_format2_files_and_a_valid_manifest(built: tuple[Path, dict]) -> None:
    bundle, _ = built
    assert (bundle / "CURRENT").read_text() == "v000001\n"
    manifest = Manifest.model_validate_json((bundle / "versions/v000001/manifest.json").read_text())
    assert manifest.format_version == 2 and manifest.counts.images == N and manifest.next_vec_id == N
    (seg,) = manifest.segments
    assert (seg.name, seg.rows, seg.vec_id_start, seg.vec_id_end, seg.dtype, seg.has_index) == \
        ("s000001", N, 0, N, "float16", True)
    assert not (bundle / "segments/s000001.partial").exists()
    found = format2.check_layout(bundle)
    assert found["empty_index_ntotal"] == 0
    assert found["segments"] == [{"name": "s000001", "rows": N, "dtype": "float16", "index_ntotal": N,
                                  "ids_in_range": True}]


def test_small_bundle_stores_the_synthetic_vectors_and_their_catalog(built: tuple[Path, dict]) -> None:
    bundle, _ = built
    expected, _ = synthetic.clip_like(N, 512, seed=0)
    emb = np.load(bundle / "segments/s000001/embeddings.npy")
    assert emb.dtype == np.float16 and emb.shape == (N, 512)
    np.testing.assert_allclose(emb.astype(np.float32), expected, atol=1e-3)
    catalog = pq.read_table(bundle / "segments/s000001/catalog.parquet")
    assert catalog.column_names == ["vec_id", "image_id", "path", "fingerprint", "sequence_id", "frame", "camera"]
    assert catalog.column("vec_id").to_pylist() == list(range(N))
    assert catalog.column("path").null_count == N
    assert len(set(catalog.column("image_id").to_pylist())) == N
    assert catalog.column("image_id")[123].as_py() == "drive/seq000001/frame023.jpg"


def test_small_run_tunes_into_the_manifest_and_measures_recall(built: tuple[Path, dict]) -> None:
    bundle, result = built
    manifest = Manifest.model_validate_json((bundle / "versions/v000001/manifest.json").read_text())
    tuned = result["steps"]["tune"]
    assert manifest.index.search_params == tuned["0.0"]["chosen"]["params"]
    assert manifest.index.filtered[0].excluded == 0.5
    assert manifest.index.filtered[0].params == tuned["0.5"]["chosen"]["params"]
    assert set(result["searcher"]) == {"1ex_0pct", "10ex_0pct", "1ex_50pct", "10ex_50pct"}
    for measured in result["searcher"].values():
        assert measured["queries"] == 6 and 0.0 <= measured["recall"] <= 1.0
    if tuned["0.0"]["chosen"]["met"]:
        assert min(tuned["0.0"]["chosen"]["recall"].values()) >= 0.95
    assert result["files"]["segments/s000001/embeddings.npy"] == 128 + N * 512 * 2


def test_exact_truth_in_one_pass_equals_brute_force(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    emb = format2.EmbeddingsFile(tmp_path / "e.npy", 3000, 16, "float16")
    emb.write(0, x)
    emb.close()
    stored = np.load(tmp_path / "e.npy").astype(np.float32)
    sets = [np.array([5]), np.array([10, 11, 2999])]
    masks = [np.zeros(3000, bool), rng.random(3000) < 0.5]
    got = bench_10m.exact_truth(format2.EmbeddingsFile(tmp_path / "e.npy"), sets, masks, 7, block=256)
    for m, mask in enumerate(masks):
        for q, rows in enumerate(sets):
            score = (stored @ stored[rows].T).max(axis=1)
            score[mask] = -np.inf
            score[rows] = -np.inf
            assert set(got[m][q].tolist()) == set(np.argsort(-score)[:7].tolist())


def test_clip_like_blocks_streams_the_same_vectors_as_clip_like() -> None:
    n = 2 * synthetic.CHUNK + 500  # three blocks at the default block size
    whole, rare = synthetic.clip_like(n, 96, seed=5)
    blocks = synthetic.clip_like_blocks(n, 96, seed=5)
    assert np.array_equal(next(blocks)[1], rare)
    streamed = dict(blocks)
    assert sorted(streamed) == [0, synthetic.CHUNK, 2 * synthetic.CHUNK]
    # allclose, not equal: BLAS may round a product differently with the arrays' alignment
    np.testing.assert_allclose(np.concatenate([streamed[s] for s in sorted(streamed)]), whole, atol=1e-6)


def test_check_layout_rejects_a_version_index_that_is_not_empty(built: tuple[Path, dict], tmp_path: Path) -> None:
    import faiss

    bundle, _ = built
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(bundle, copy)
    filled = faiss.read_index(str(copy / "segments/s000001/index.faiss"))
    faiss.write_index(filled, str(copy / "versions/v000001/index.faiss"))
    with pytest.raises(AssertionError, match="version index holds 20000 vectors"):
        format2.check_layout(copy)
