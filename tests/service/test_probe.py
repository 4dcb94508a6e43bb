"""The `probe` strategy: a logistic regression per query, served through the ANN index."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edgemine.bundle.layout import ModelInfo
from edgemine.indexer import ModelChoice, read_embeddings_source, run_index
from edgemine.indexer.job import IndexOptions
from edgemine.service import MineQuery, Miner, QueryError
from edgemine.service.probe import BACKGROUND_ROWS, SEARCH_BREADTH, ProbeError, background_rows, fit_probe
from tests.support.state_backend import runtime_of, state_of, state_url

Make = Callable[..., Any]
BYO = ModelChoice(ModelInfo(identity="byo:probe-tests", name="probe-tests", pretrained="external"), None)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def toy_set(n: int = 2000, d: int = 16, members: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random unit vectors; `members` rows lean along the first axis u (and are otherwise random).

    Their nearest neighbours are mostly non-members (the random part dominates each pair's cosine),
    but u separates them linearly with a wide margin.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    member_rows = np.sort(rng.choice(n, members, replace=False))
    x[:, 0] = rng.normal(0.0, 0.1, n)
    x[member_rows, 0] += 3.0
    return unit(x), member_rows


def build(tmp_path: Path, vectors: np.ndarray, index: str = "auto", name: str = "b") -> tuple[Path, list[str]]:
    ids = [f"im{i:05d}" for i in range(len(vectors))]
    source = tmp_path / f"{name}.parquet"
    pq.write_table(pa.table({
        "image_id": ids,
        "embedding": pa.array(np.asarray(vectors, np.float32).tolist(), pa.list_(pa.float32())),
        "part": pa.array([i % 5 for i in range(len(vectors))], pa.int64()),
    }), source)
    run_index(read_embeddings_source(source), tmp_path / name, BYO, progress=False, options=IndexOptions(index),
              state_url=state_url(tmp_path / name))
    return tmp_path / name, ids


def ids_of(result: Any) -> list[str]:
    return [c.image_id for c in result.candidates]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_probe_ranks_the_members_of_a_known_separating_direction_first(tmp_path: Path, seed: int) -> None:
    vectors, members = toy_set(seed=seed)
    bundle, ids = build(tmp_path, vectors)
    miner = runtime_of(bundle).current().miner
    positives = [ids[r] for r in members[:8]]
    rest = {ids[r] for r in members[8:]}

    probe = miner.mine(MineQuery(positive_ids=positives, strategy="probe", k=len(rest)))
    nearest = miner.mine(MineQuery(positive_ids=positives, strategy="max", k=len(rest)))

    assert set(ids_of(probe)) == rest
    # The toy set is built so that similarity to the examples alone does not find them all.
    assert len(set(ids_of(nearest)) & rest) < 0.9 * len(rest)
    # The fitted weights point along the separating axis.
    allowed = np.ones(len(ids), bool)
    allowed[members[:8]] = False
    fitted = fit_probe(vectors[members[:8]], vectors[:0], vectors[background_rows(allowed, int(allowed.sum()), 1)])
    assert fitted.weights[0] / np.linalg.norm(fitted.weights) > 0.9


def test_probe_names_each_candidates_nearest_positive_example(tmp_path: Path) -> None:
    vectors, members = toy_set(seed=1)
    bundle, ids = build(tmp_path, vectors)
    miner = runtime_of(bundle).current().miner
    positives = [ids[r] for r in members[:4]]
    result = miner.mine(MineQuery(positive_ids=positives, negative_ids=[ids[0], ids[1]], strategy="probe", k=40))

    assert len(result.candidates) == 40 and result.strategy == "probe"
    row = {image_id: i for i, image_id in enumerate(ids)}
    pos = vectors[members[:4]].astype(np.float64)
    for c in result.candidates:
        sims = pos @ vectors[row[c.image_id]].astype(np.float64)
        assert c.nearest_example_id == positives[int(np.argmax(sims))]
        assert c.nearest_example_similarity == pytest.approx(float(sims.max()), abs=1e-5)
    scores = [c.score for c in result.candidates]
    assert scores == sorted(scores, reverse=True)


def test_fit_probe_matches_scikit_learns_balanced_logistic_regression() -> None:
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(3)
    x = unit(rng.standard_normal((700, 32)) + 2.0 * unit(rng.standard_normal((1, 32))))
    pos, neg, bg = x[:8] + 0.2 * unit(rng.standard_normal((8, 32))), x[8:20], x[20:]
    pos = unit(pos)

    probe = fit_probe(pos, neg, bg)

    # The documented objective: C=1, positives half the weight, negatives and background a quarter each.
    n = len(x)
    weights = np.concatenate([np.full(8, 0.5 / 8), np.full(12, 0.25 / 12), np.full(680, 0.25 / 680)]) * n
    reference = linear_model.LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(
        np.concatenate([pos, neg, bg]).astype(np.float64), np.r_[np.ones(8), np.zeros(692)], sample_weight=weights)
    want = reference.coef_[0]
    cosine = float(want @ probe.weights / np.linalg.norm(want) / np.linalg.norm(probe.weights))
    assert cosine > 0.999
    assert np.linalg.norm(probe.weights) == pytest.approx(np.linalg.norm(want), rel=0.02)
    assert probe.bias == pytest.approx(float(reference.intercept_[0]), abs=0.05)


def test_probe_through_the_ivf_index_equals_exact_probe(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    centres = unit(rng.standard_normal((48, 32)))
    vectors = unit(centres[rng.integers(0, 48, 6000)] + 0.08 * rng.standard_normal((6000, 32)))
    bundle, ids = build(tmp_path, vectors, index="IVF64,Flat")
    loaded = runtime_of(bundle).current()
    ann = loaded.miner
    assert ann.searcher is not None and ann.searcher.kind == "ivf"
    exact = Miner(loaded.snapshot, ann.states, None, searcher=None)
    used: list[bool] = []
    real = ann.searcher.candidates

    def spy(*args: Any, **kwargs: Any) -> Any:
        rows = real(*args, **kwargs)
        used.append(rows is not None)
        return rows

    ann.searcher.candidates = spy  # type: ignore[method-assign]
    queries = [
        MineQuery(positive_ids=[ids[3], ids[100]], strategy="probe", k=25),
        MineQuery(positive_ids=[ids[7]], negative_ids=[ids[8], ids[900]], strategy="probe", k=30),
        MineQuery(positive_ids=[ids[50], ids[4000]], strategy="probe", k=20, filters={"part": {"lt": 4}}),
    ]
    for query in queries:
        got, want = ann.mine(query), exact.mine(query)
        assert ids_of(got) == ids_of(want), query
        np.testing.assert_allclose([c.score for c in got.candidates], [c.score for c in want.candidates], atol=1e-5)
        assert [c.nearest_example_id for c in got.candidates] == [c.nearest_example_id for c in want.candidates]
    assert used and all(used), "every probe query should have been answered through the IVF index"


def test_probe_with_no_negatives_and_no_background_is_refused(tmp_path: Path, open_client: Make) -> None:
    vectors = unit(np.random.default_rng(0).standard_normal((3, 8)))
    bundle, ids = build(tmp_path, vectors)
    miner = runtime_of(bundle).current().miner
    with pytest.raises(QueryError, match="no negative examples and no background rows"):
        miner.mine(MineQuery(positive_ids=ids, strategy="probe"))
    # Exclusions remove the last background rows too.
    with pytest.raises(QueryError, match="no negative examples and no background rows"):
        miner.mine(MineQuery(positive_ids=ids[:1], exclude_ids=ids[1:], strategy="probe"))
    # A negative is enough to fit on.
    assert miner.mine(MineQuery(positive_ids=ids[:2], negative_ids=ids[2:], strategy="probe")).candidates == []

    client = open_client(bundle)
    response = client.post("/v1/mine", json={"positive_ids": ids, "strategy": "probe"})
    assert response.status_code == 422, response.text
    assert "probe" in response.json()["detail"] and "negative_ids" in response.json()["detail"]


def test_probe_cursor_pages_equal_one_page_even_after_queuing(tmp_path: Path) -> None:
    vectors, members = toy_set(n=1500, d=24, members=80, seed=2)
    bundle, ids = build(tmp_path, vectors)
    miner = runtime_of(bundle).current().miner
    query = MineQuery(positive_ids=[ids[r] for r in members[:5]], strategy="probe", k=30)
    whole = miner.mine(query.model_copy(update={"k": 60}))
    again = miner.mine(query.model_copy(update={"k": 60}))
    assert ids_of(whole) == ids_of(again), "the same query must fit the same probe"

    page1 = miner.mine(query)
    state_of(bundle).set_state(ids_of(page1), "queued")
    page2 = miner.mine(query.model_copy(update={"cursor": page1.next_cursor}))
    assert ids_of(page1) + ids_of(page2) == ids_of(whole)
    np.testing.assert_allclose([c.score for c in page2.candidates], [c.score for c in whole.candidates[30:]],
                               atol=1e-6)


def test_background_rows_are_allowed_distinct_and_seeded() -> None:
    allowed = np.zeros(50_000, bool)
    allowed[::3] = True
    count = int(allowed.sum())
    rows = background_rows(allowed, count, seed=7)
    assert len(rows) == BACKGROUND_ROWS == len(np.unique(rows)) and allowed[rows].all()
    assert np.array_equal(rows, background_rows(allowed, count, seed=7))
    assert not np.array_equal(rows, background_rows(allowed, count, seed=8))
    sparse = np.zeros(50_000, bool)
    sparse[:BACKGROUND_ROWS:2] = True  # fewer than the sample size: all of them
    assert np.array_equal(background_rows(sparse, int(sparse.sum()), seed=1), np.flatnonzero(sparse))
    rare = np.zeros(50_000, bool)
    rare[::20] = True  # a small fraction: drawn from the allowed rows directly
    got = background_rows(rare, int(rare.sum()), seed=1)
    assert len(got) == BACKGROUND_ROWS and rare[got].all()


def test_fit_probe_refuses_no_positives_and_nothing_to_contrast() -> None:
    x = unit(np.random.default_rng(0).standard_normal((4, 8)))
    with pytest.raises(ProbeError, match="at least one positive"):
        fit_probe(x[:0], x, x)
    with pytest.raises(ProbeError, match="no negative examples and no background rows"):
        fit_probe(x, x[:0], x[:0])
    only_negatives = fit_probe(x[:2], x[2:], x[:0])
    assert float(only_negatives.score(x[:2]).min()) > float(only_negatives.score(x[2:]).max())


def test_probe_searches_the_ivf_index_wider_than_max(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    vectors = unit(rng.standard_normal((1500, 16)))
    bundle, ids = build(tmp_path, vectors, index="IVF16,Flat")
    miner = runtime_of(bundle).current().miner
    assert miner.searcher is not None
    seen: list[float] = []
    real = miner.searcher._search_ivf

    def spy(*args: Any) -> Any:
        seen.append(args[2])  # the (scaled) probe count
        return real(*args)

    miner.searcher._search_ivf = spy  # type: ignore[method-assign]
    miner.mine(MineQuery(positive_ids=ids[:3], strategy="max", k=10))
    miner.mine(MineQuery(positive_ids=ids[:3], strategy="probe", k=10))
    assert seen[1] == pytest.approx(seen[0] * SEARCH_BREADTH) and SEARCH_BREADTH > 1
