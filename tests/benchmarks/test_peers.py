"""The benchmark's peer adapters agree with the numpy baseline and honour the exclusions."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import peers

N, D, K, M = 3000, 32, 10, 2
LIBRARIES = {
    "numpy": "numpy",
    "faiss-flat": "faiss",
    "hnswlib": "hnswlib",
    "qdrant-local": "qdrant_client",
    "qdrant-edge": "qdrant_edge",
    "milvus": "pymilvus",
    "usearch": "usearch",
    "lancedb": "lancedb",
}
# Peers with a search knob (efSearch / nprobes ...) that the benchmark sweeps.
TUNABLE = ("hnswlib", "qdrant-edge", "milvus", "usearch", "lancedb")


def _vectors(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Unit vectors in clusters (so neighbours are meaningful), float32."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((30, d))
    x = centres[rng.integers(0, 30, n)] + 0.6 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return _vectors(N, D)


@pytest.fixture(scope="module")
def baseline(vectors: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.Peer]:
    (peer,) = peers.make_peers(["numpy"])
    peer.build(vectors, tmp_path_factory.mktemp("numpy"))
    yield peer
    peer.close()


@pytest.fixture(scope="module", params=peers.PEER_NAMES)
def peer(
    request: pytest.FixtureRequest, vectors: np.ndarray, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[peers.Peer]:
    pytest.importorskip(LIBRARIES[request.param])
    (built,) = peers.make_peers([request.param])
    built.build(vectors, tmp_path_factory.mktemp(request.param.replace("-", "_")))
    yield built
    built.close()


@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.95])
def test_peer_matches_baseline_and_excludes(
    peer: peers.Peer, baseline: peers.Peer, vectors: np.ndarray, fraction: float
) -> None:
    rng = np.random.default_rng(int(fraction * 100))
    excluded = rng.random(N) < fraction
    example_rows = rng.choice(N, M, replace=False).astype(np.int64)
    examples = vectors[example_rows] + 0.05 * rng.standard_normal((M, D)).astype(np.float32)
    examples /= np.linalg.norm(examples, axis=1, keepdims=True)
    peer.set_excluded(excluded)
    baseline.set_excluded(excluded)

    got = peer.query(examples, K, example_rows)
    want = baseline.query(examples, K, example_rows)

    assert got.dtype == np.int64 and len(got) == K and len(set(got.tolist())) == K
    assert not excluded[got].any(), "returned an excluded row"
    assert not np.isin(got, example_rows).any(), "returned an example's own row"
    assert len(set(got.tolist()) & set(want.tolist())) / K >= 0.9
    scores = (vectors[got] @ examples.T).max(axis=1)
    assert np.all(np.diff(scores) <= 1e-5), "not best first"


def test_peer_reports_memory_and_notes(peer: peers.Peer) -> None:
    size = peer.memory_bytes()
    assert size is None or size > 0
    assert peer.name in peers.PEER_NAMES and peer.notes


def test_baseline_is_exact(baseline: peers.Peer, vectors: np.ndarray) -> None:
    excluded = np.zeros(N, bool)
    excluded[::2] = True
    baseline.set_excluded(excluded)
    examples = vectors[[1, 3]]
    got = baseline.query(examples, K, np.array([1, 3]))
    scores = (vectors @ examples.T).max(axis=1)
    scores[excluded] = -np.inf
    scores[[1, 3]] = -np.inf
    assert got.tolist() == np.argsort(-scores, kind="stable")[:K].tolist()


def test_fewer_allowed_rows_than_k(peer: peers.Peer, vectors: np.ndarray) -> None:
    excluded = np.ones(N, bool)
    excluded[[5, 6, 7]] = False
    peer.set_excluded(excluded)
    got = peer.query(vectors[[5, 100]], K, np.array([5, 100]))
    assert sorted(got.tolist()) == [6, 7]


def test_make_peers_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown peer"):
        peers.make_peers(["numpy", "weaviate"])


def test_missing_library_names_the_peer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "hnswlib", None)  # makes `import hnswlib` raise ImportError
    (peer,) = peers.make_peers(["hnswlib"])
    with pytest.raises(ImportError, match="peer 'hnswlib' needs"):
        peer.build(_vectors(10, 4), tmp_path)


def _query_case(vectors: np.ndarray, fraction: float, m: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random exclusion mask, m example rows and the (slightly perturbed) example vectors."""
    rng = np.random.default_rng(seed)
    excluded = rng.random(len(vectors)) < fraction
    rows = rng.choice(len(vectors), m, replace=False).astype(np.int64)
    examples = vectors[rows] + 0.05 * rng.standard_normal((m, vectors.shape[1])).astype(np.float32)
    return excluded, rows, examples / np.linalg.norm(examples, axis=1, keepdims=True)


@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.95])
def test_tunable_peer_is_exact_at_high_search_params(
    peer: peers.Peer, baseline: peers.Peer, vectors: np.ndarray, fraction: float
) -> None:
    if peer.name not in TUNABLE:
        pytest.skip("no search knob")
    assert peers.is_tunable(peer) and peer.recommended in peer.sweep_values()
    peer.set_param(max(N, *peer.sweep_values()))  # search effort beyond the collection size: exhaustive
    try:
        for seed in range(3):
            excluded, rows, examples = _query_case(vectors, fraction, 3, seed)
            peer.set_excluded(excluded)
            baseline.set_excluded(excluded)
            got, want = peer.query(examples, K, rows), baseline.query(examples, K, rows)
            assert got.tolist() == want.tolist()
    finally:
        peer.set_param(peer.recommended)


@pytest.mark.parametrize("fraction", [0.5, 0.95])
def test_peer_never_returns_an_excluded_row_even_at_the_lowest_search_params(
    peer: peers.Peer, vectors: np.ndarray, fraction: float
) -> None:
    if peers.is_tunable(peer):
        peer.set_param(min(peer.sweep_values()))
    try:
        for seed in range(5):
            excluded, rows, examples = _query_case(vectors, fraction, 1 + seed % 3, 10 + seed)
            peer.set_excluded(excluded)
            got = peer.query(examples, K, rows)
            assert len(got) == K
            assert not excluded[got].any() and not np.isin(got, rows).any()
    finally:
        if peers.is_tunable(peer):
            peer.set_param(peer.recommended)


def test_peer_ranks_by_the_best_example_not_the_average(peer: peers.Peer, vectors: np.ndarray) -> None:
    # Two examples from different clusters: the max rule takes the nearest rows of each, the mean
    # (or an average vector) would favour rows halfway between them.
    peer.set_excluded(np.zeros(N, bool))
    a = 0
    b = int(np.argmin(vectors @ vectors[a]))
    examples = vectors[[a, b]]
    if peers.is_tunable(peer):
        peer.set_param(max(N, *peer.sweep_values()))
    try:
        got = peer.query(examples, K, np.array([a, b]))
    finally:
        if peers.is_tunable(peer):
            peer.set_param(peer.recommended)
    best = (vectors @ examples.T).max(axis=1)
    best[[a, b]] = -np.inf
    assert got.tolist() == np.argsort(-best, kind="stable")[:K].tolist()
    near_a = (vectors[got] @ vectors[a]) > (vectors[got] @ vectors[b])
    assert near_a.any() and (~near_a).any(), "results come from both examples' neighbourhoods"


def test_sweep_methods_name_the_parameter(peer: peers.Peer, vectors: np.ndarray) -> None:
    methods = peers.peer_methods(peer, vectors, K)
    if peers.is_tunable(peer):
        assert list(methods) == [f"{peer.name}@{peer.param}={v}" for v in peer.sweep_values()]
    else:
        assert list(methods) == [peer.name]
    rows = np.array([1, 2])
    for run in methods.values():
        assert len(run(rows)) == K


def test_qdrant_edge_many_examples_keep_recall_on_its_hnsw_graph(baseline: peers.Peer, tmp_path: Path) -> None:
    """10 examples through a built HNSW graph (not the small-segment full scan) find the exact top 100."""
    pytest.importorskip("qdrant_edge")
    import peers_engines

    vectors = _vectors(N, D)
    # Thresholds of 1 KB: the segment is HNSW-indexed and searched through the graph even at 3000 rows,
    # as at 100k x 512 with Qdrant's defaults (where a single max-over-examples walk lost most of the recall).
    peer = peers_engines.QdrantEdgePeer(full_scan_threshold_kb=1, indexing_threshold_kb=1)
    peer.build(vectors, tmp_path)
    try:
        excluded = np.zeros(N, bool)
        peer.set_excluded(excluded)
        baseline.set_excluded(excluded)
        rng = np.random.default_rng(0)
        recalls = []
        for _ in range(5):
            rows = rng.choice(N, 10, replace=False).astype(np.int64)
            got, want = peer.query(vectors[rows], 100, rows), baseline.query(vectors[rows], 100, rows)
            assert len(got) == 100
            recalls.append(len(set(got.tolist()) & set(want.tolist())) / 100)
    finally:
        peer.close()
    assert np.mean(recalls) >= 0.95, recalls
