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
    "qdrant": "qdrant_client",
    "lancedb": "lancedb",
}


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
        peers.make_peers(["numpy", "milvus"])


def test_missing_library_names_the_peer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "hnswlib", None)  # makes `import hnswlib` raise ImportError
    (peer,) = peers.make_peers(["hnswlib"])
    with pytest.raises(ImportError, match="peer 'hnswlib' needs"):
        peer.build(_vectors(10, 4), tmp_path)
