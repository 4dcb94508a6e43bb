"""The service on ANN bundles: the runtime's searcher, memory-mapped loading, HTTP vs exact mining."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from edgemine.bundle.snapshot import load_current
from edgemine.bundle.state import StateDB
from edgemine.search.searcher import Searcher
from edgemine.service import MineQuery
from edgemine.service.app import create_app
from edgemine.service.config import Settings
from edgemine.service.miner import Miner
from edgemine.service.row_states import RowStates
from edgemine.service.runtime import Runtime

N, D = 6000, 32


@pytest.fixture(scope="module")
def data(kit: Any) -> np.ndarray:
    return kit.clustered(N, D, clusters=48, spread=0.08, seed=11)


@pytest.fixture(scope="module")
def ivf_bundle(kit: Any, data: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return kit.index_bundle(tmp_path_factory.mktemp("svc") / "ivf", kit.ids_for(N), data, "IVF64,SQ8")


@pytest.fixture
def client(ivf_bundle: Any) -> Iterator[TestClient]:
    app = create_app(Settings(bundle=ivf_bundle.path))
    with TestClient(app) as test_client:
        yield test_client


def test_runtime_creates_a_searcher_over_a_memory_mapped_ivf_index(ivf_bundle: Any) -> None:
    import faiss

    loaded = Runtime(ivf_bundle.path).current()
    info = loaded.snapshot.manifest.index
    searcher = loaded.miner.searcher
    assert isinstance(searcher, Searcher) and not searcher.exact
    assert searcher.kind == "ivf" == info.type and searcher.params == info.search_params
    assert searcher.n == N and searcher.identity_ids and searcher.centroids is not None
    assert searcher.ivf.nlist == 64 and searcher.index.ntotal == N
    # Memory-mapped: the inverted lists are read from the file, not copied into memory.
    lists = faiss.downcast_InvertedLists(searcher.ivf.invlists)
    assert isinstance(lists, faiss.OnDiskInvertedLists)
    index = loaded.snapshot.load_index()
    assert isinstance(faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists),
                      faiss.OnDiskInvertedLists)


@pytest.mark.parametrize(("factory", "kind"), [("HNSW16,Flat", "hnsw"), ("flat", None), ("auto", None)])
def test_runtime_searcher_per_index_type(kit: Any, tmp_path: Path, factory: str, kind: str | None) -> None:
    X = kit.clustered(1500, 16, clusters=12, seed=2)
    bundle = kit.index_bundle(tmp_path / "b", kit.ids_for(1500), X, factory)
    miner = Runtime(bundle.path).current().miner
    if kind is None:
        assert miner.searcher is None
    else:
        assert miner.searcher is not None and miner.searcher.kind == kind
        assert miner.searcher.index.ntotal == 1500
    result = miner.mine(MineQuery(positive_ids=bundle.ids[:2], k=10))
    assert len(result.candidates) == 10


QUERIES: list[dict[str, Any]] = [
    {"positive_ids": ["im000003"], "k": 25},
    {"positive_ids": ["im000003", "im000100", "im002000"], "k": 30},
    {"positive_ids": ["im000003", "im000100"], "k": 20, "strategy": "mean"},
    {"positive_ids": ["im000010", "im000020"], "negative_ids": ["im000030"], "k": 20, "negative_weight": 0.4},
    {"positive_ids": ["im000050"], "k": 15, "filters": {"time_of_day": ["day", "night"], "shard": {"lt": 8}},
     "exclude_ids": ["im000051", "im000052", "no-such-image"]},
    {"positive_ids": ["im000050", "im004000"], "k": 10, "offset": 20},
    {"positive_ids": ["im000007"], "k": 20, "include_states": ["unlabeled", "labeled"]},
]


def test_http_mining_on_an_ivf_bundle_matches_the_exact_miner(client: TestClient, ivf_bundle: Any) -> None:
    labeled = [f"im{i:06d}" for i in range(0, N, 3)]
    response = client.post("/v1/labels", json={"image_ids": labeled, "state": "labeled"})
    assert response.status_code == 200, response.text
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    served = runtime.current()
    used: list[bool] = []
    real = served.miner.searcher.candidates

    def spy(*args: Any, **kwargs: Any) -> Any:
        rows = real(*args, **kwargs)
        used.append(rows is not None)
        return rows

    served.miner.searcher.candidates = spy
    snap = load_current(ivf_bundle.path)
    exact = Miner(snap, RowStates(snap.row_by_id, StateDB(ivf_bundle.path / "state.sqlite")), None, searcher=None)
    for query in QUERIES:
        response = client.post("/v1/mine", json=query)
        assert response.status_code == 200, response.text
        body = response.json()
        want = exact.mine(MineQuery(**query))
        got_ids = [c["image_id"] for c in body["candidates"]]
        assert got_ids == [c.image_id for c in want.candidates], query
        np.testing.assert_allclose([c["score"] for c in body["candidates"]],
                                   [c.score for c in want.candidates], atol=1e-5)
        assert [c["rank"] for c in body["candidates"]] == [c.rank for c in want.candidates]
        assert [c["nearest_example_id"] for c in body["candidates"]] == \
            [c.nearest_example_id for c in want.candidates]
        if "labeled" not in query.get("include_states", []):
            assert not set(got_ids) & set(labeled)
        assert body["next_offset"] == want.next_offset
    assert used and all(used), "every query should have been answered through the IVF index"


def test_service_switches_to_an_incremental_version(kit: Any, tmp_path: Path) -> None:
    n = 2000
    X = kit.clustered(n + 200, D, clusters=24, spread=0.15, seed=12)
    X[n:] = X[:200] + 1e-3  # new images that closely duplicate existing ones
    ids = kit.ids_for(n + 200)
    bundle = kit.index_bundle(tmp_path / "b", ids[:n], X[:n], "IVF32,SQ8")
    with TestClient(create_app(Settings(bundle=bundle.path))) as client:
        before = client.post("/v1/mine", json={"positive_ids": [ids[1]], "k": 5}).json()
        assert before["bundle_version"] == 1 and ids[n + 1] not in {c["image_id"] for c in before["candidates"]}
        kit.index_bundle(bundle.path, ids, X, "IVF32,SQ8")
        after = client.post("/v1/mine", json={"positive_ids": [ids[1]], "k": 5}).json()
        assert after["bundle_version"] == 2
        assert after["candidates"][0]["image_id"] == ids[n + 1]  # found through the updated index
        searcher = client.app.state.runtime.current().miner.searcher  # type: ignore[attr-defined]
        assert searcher is not None and searcher.n == n + 200 and searcher.index.ntotal == n + 200
        assert load_current(bundle.path).manifest.index.trained_on == n  # incremental, not retrained
