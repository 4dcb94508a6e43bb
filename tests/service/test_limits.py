"""Bounded work per request: every documented limit is refused just past it and works just inside it."""

from __future__ import annotations

import io
import json
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edgemine.bundle import UnknownImageIds
from edgemine.service import MineQuery, QueryError, limits
from edgemine.service import scoring as scoring_mod
from edgemine.service.diversity import select_diverse
from edgemine.service.scoring import Examples, score_rows
from edgemine.service.uploads import Upload
from tests.support.state_backend import runtime_of

Make = Callable[..., Any]


def assert_refused(response: Any, *needles: str) -> None:
    """A 422 whose detail names the field and the limit."""
    assert response.status_code == 422, response.text[:500]
    text = response.text
    for needle in needles:
        assert needle in text, (needle, text[:500])
    assert len(response.content) < 20_000, "the error must not echo the whole input"


@pytest.fixture
def byo(make_byo_bundle: Make, open_client: Make) -> tuple[Any, Any]:
    built = make_byo_bundle(n=300, dim=8)
    return built, open_client(built.path)


def test_k_limit(byo: tuple[Any, Any]) -> None:
    built, client = byo
    ok = client.post("/v1/mine", json={"positive_ids": [built.ids[0]], "k": limits.MAX_K})
    assert ok.status_code == 200 and len(ok.json()["candidates"]) == 299
    assert_refused(client.post("/v1/mine", json={"positive_ids": [built.ids[0]], "k": limits.MAX_K + 1}),
                   '"k"', str(limits.MAX_K))


def test_offset_plus_k_limit(byo: tuple[Any, Any]) -> None:
    built, client = byo
    ok = client.post("/v1/mine", json={"positive_ids": [built.ids[0]], "k": 1000,
                                       "offset": limits.MAX_DEPTH - 1000})
    assert ok.status_code == 200 and ok.json()["candidates"] == []
    assert_refused(client.post("/v1/mine", json={"positive_ids": [built.ids[0]], "k": 1000,
                                                 "offset": limits.MAX_DEPTH - 999}),
                   "offset + k", str(limits.MAX_DEPTH))
    assert_refused(client.post("/v1/mine", json={"positive_ids": [built.ids[0]], "offset": 1_000_000}),
                   "offset", str(limits.MAX_DEPTH - 1))


def test_example_limit(byo: tuple[Any, Any]) -> None:
    built, client = byo
    half = limits.MAX_EXAMPLES // 2
    ok = client.post("/v1/mine", json={"positive_ids": built.ids[:half],
                                       "negative_ids": built.ids[half:limits.MAX_EXAMPLES], "k": 5})
    assert ok.status_code == 200 and len(ok.json()["candidates"]) == 5
    assert_refused(client.post("/v1/mine", json={"positive_ids": built.ids[:half],
                                                 "negative_ids": built.ids[half:limits.MAX_EXAMPLES + 1]}),
                   "positive_ids + negative_ids", str(limits.MAX_EXAMPLES))
    assert_refused(client.post("/v1/mine", json={"positive_ids": built.ids[:limits.MAX_EXAMPLES + 1]}),
                   "positive_ids", str(limits.MAX_EXAMPLES))


def test_text_limits(image_bundle: Any, open_client: Make) -> None:
    client = open_client(image_bundle.path)
    long_text = "x" * limits.MAX_TEXT_CHARS
    texts = [f"{i} {long_text}"[:limits.MAX_TEXT_CHARS] for i in range(limits.MAX_TEXTS)]
    ok = client.post("/v1/mine", json={"texts": texts[:-1], "negative_texts": texts[-1:], "k": 3})
    assert ok.status_code == 200 and len(ok.json()["candidates"]) == 3
    assert_refused(client.post("/v1/mine", json={"texts": [long_text + "y"]}),
                   "texts", str(limits.MAX_TEXT_CHARS))
    assert_refused(client.post("/v1/mine", json={"texts": texts, "negative_texts": ["one more"]}),
                   "texts + negative_texts", str(limits.MAX_TEXTS))


def test_id_length_limit(byo: tuple[Any, Any]) -> None:
    built, client = byo
    longest = "a" * limits.MAX_ID_CHARS
    inside = client.post("/v1/mine", json={"positive_ids": [built.ids[0]], "negative_ids": [longest]})
    assert inside.status_code == 404  # a valid request: that id just is not in the bundle
    assert len(inside.content) < 2 * limits.MAX_ID_CHARS
    assert_refused(client.post("/v1/mine", json={"positive_ids": [longest + "a"]}),
                   "positive_ids", str(limits.MAX_ID_CHARS))
    assert_refused(client.post("/v1/labels", json={"image_ids": [longest + "a"]}),
                   "image_ids", str(limits.MAX_ID_CHARS))


def test_exclude_ids_limit(byo: tuple[Any, Any]) -> None:
    built, client = byo
    many = [f"x{i}" for i in range(limits.MAX_EXCLUDE_IDS)]
    ok = client.post("/v1/mine", json={"positive_ids": [built.ids[0]], "exclude_ids": many, "k": 3})
    assert ok.status_code == 200 and len(ok.json()["candidates"]) == 3
    assert_refused(client.post("/v1/mine", json={"positive_ids": [built.ids[0]],
                                                 "exclude_ids": [*many, "one-more"]}),
                   "exclude_ids", str(limits.MAX_EXCLUDE_IDS))


def test_filter_limits(byo: tuple[Any, Any]) -> None:
    built, client = byo
    values = list(range(limits.MAX_FILTER_VALUES))
    ok = client.post("/v1/mine", json={"positive_ids": [built.ids[0]], "filters": {"frame": {"in": values}}})
    assert ok.status_code == 200
    assert_refused(client.post("/v1/mine", json={"positive_ids": [built.ids[0]],
                                                 "filters": {"frame": {"not_in": [*values, -1]}}}),
                   "not_in", str(limits.MAX_FILTER_VALUES))
    assert_refused(client.post("/v1/mine", json={"positive_ids": [built.ids[0]], "filters": [*values, -1]}),
                   "filters")
    many = {f"col{i}": "x" for i in range(limits.MAX_FILTERS + 1)}
    assert_refused(client.post("/v1/mine", json={"positive_ids": [built.ids[0]], "filters": many}),
                   "filters", str(limits.MAX_FILTERS))


def test_labels_and_batch_limits(byo: tuple[Any, Any]) -> None:
    built, client = byo
    ok = client.post("/v1/labels", json={"image_ids": built.ids[:10], "state": "labeled"})
    assert ok.status_code == 200 and ok.json()["changed"] == 10
    too_many = [f"x{i}" for i in range(limits.MAX_LABEL_IDS + 1)]
    assert_refused(client.post("/v1/labels", json={"image_ids": too_many}), "image_ids", str(limits.MAX_LABEL_IDS))
    items = [{"image_id": i} for i in too_many]
    assert_refused(client.post("/v1/batches", json={"name": "b", "items": items}),
                   "items", str(limits.MAX_BATCH_ITEMS))
    made = client.post("/v1/batches", json={"name": "b", "items": [{"image_id": built.ids[20]}]})
    assert made.status_code == 201


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 10), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def test_uploads_count_as_examples(image_bundle: Any, fake_embedder: Any) -> None:
    # The number of files per request is the body-size middleware's setting; each file is also
    # an example vector, counted against MAX_EXAMPLES with the ids and texts.
    miner = runtime_of(image_bundle.path, loader=lambda name, pretrained: fake_embedder).current().miner
    query = MineQuery(positive_ids=image_bundle.ids[:20], texts=[f"t{i}" for i in range(limits.MAX_TEXTS)], k=2)
    room = limits.MAX_EXAMPLES - 20 - limits.MAX_TEXTS
    png = _png()
    ok = miner.mine(query, [Upload(f"f{i}.png", png) for i in range(room)])
    assert len(ok.candidates) == 2
    with pytest.raises(QueryError, match=f"uploaded files have {limits.MAX_EXAMPLES + 1} examples; at most "
                                         f"{limits.MAX_EXAMPLES}"):
        miner.mine(query, [Upload(f"f{i}.png", png) for i in range(room + 1)])


def test_errors_do_not_echo_huge_input(byo: tuple[Any, Any]) -> None:
    _, client = byo
    huge = "z" * 1_000_000
    response = client.post("/v1/mine", json={"positive_ids": [huge]})
    assert_refused(response, "positive_ids")
    unknown = [f"{i:05d}" + "u" * (limits.MAX_ID_CHARS - 5) for i in range(300)]  # ~1.2 MB of JSON
    response = client.post("/v1/labels", json={"image_ids": unknown})
    assert response.status_code == 404
    body = response.json()
    assert 20 <= len(body["unknown_ids"]) <= limits.MAX_ECHOED_IDS
    assert all(len(i) < limits.ECHO_ID_CHARS + 40 for i in body["unknown_ids"])
    assert "280 more" in body["detail"] and len(body["detail"]) < 20 * (limits.ECHO_CHARS + 40)
    assert len(response.content) < limits.MAX_ECHOED_IDS * (limits.ECHO_ID_CHARS + 50)
    # The library keeps every id for callers that want them.
    err = UnknownImageIds(unknown)
    assert err.ids == sorted(unknown) and len(str(err)) < 21 * (limits.ECHO_CHARS + 40)


def test_score_memory_is_bounded_by_the_block(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    n, d, m = 12_000, 16, 120
    E = rng.standard_normal((n, d)).astype(np.float32)
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    P = E[rng.choice(n, m, replace=False)]
    N = E[rng.choice(n, 20, replace=False)]
    pos, neg = Examples(P, [str(i) for i in range(m)]), Examples(N, [str(i) for i in range(20)])
    eligible = rng.random(n) < 0.8
    full = n * m * 4  # bytes of the whole rows x examples similarity matrix
    for strategy in ("max", "rrf", "mean"):
        want_sims = E @ P.T
        monkeypatch.setattr(scoring_mod.limits, "SCORE_BLOCK_CELLS", 64 * 1024)
        tracemalloc.start()
        got = score_rows(E, pos, neg, strategy, 0.5, eligible, depth=500)  # type: ignore[arg-type]
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < full / 4, (strategy, peak, full)
        monkeypatch.setattr(scoring_mod.limits, "SCORE_BLOCK_CELLS", 1 << 40)
        whole = score_rows(E, pos, neg, strategy, 0.5, eligible, depth=500)  # type: ignore[arg-type]
        np.testing.assert_allclose(got.score, whole.score, atol=1e-5)
        np.testing.assert_array_equal(got.nearest, np.argmax(want_sims, axis=1))
        np.testing.assert_allclose(got.nearest_sim, want_sims.max(axis=1), atol=1e-5)


def _naive_diverse(order: np.ndarray, wanted: int, E: np.ndarray, groups: list[Any] | None,
                   cap: int | None, threshold: float | None) -> list[int]:
    taken: list[int] = []
    count: dict[Any, int] = {}
    for pos, row in enumerate(order.tolist()):
        if groups is not None and cap is not None and count.get(groups[row], 0) >= cap:
            continue
        if threshold is not None and any(float(E[row] @ E[order[t]]) >= threshold for t in taken):
            continue
        if groups is not None:
            count[groups[row]] = count.get(groups[row], 0) + 1
        taken.append(pos)
        if len(taken) >= wanted:
            break
    return taken


@pytest.mark.parametrize("groups", [False, True])
def test_dedup_matches_the_greedy_definition(groups: bool) -> None:
    rng = np.random.default_rng(8)
    bases = rng.standard_normal((150, 12))
    E = (np.repeat(bases, 4, axis=0) + 0.15 * rng.standard_normal((600, 12))).astype(np.float32)
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    order = rng.permutation(600).astype(np.int64)
    group_of = [f"g{i % 9}" for i in range(600)] if groups else None
    cap = 30 if groups else None
    for wanted in (1, 40, 120, 600):
        got = select_diverse(order, wanted, E, group_of, cap, 0.9)
        assert got == _naive_diverse(order, wanted, E, group_of, cap, 0.9)


def test_positives_that_cancel_are_422(make_byo_bundle: Make, open_client: Make) -> None:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((40, 8)).astype(np.float32)
    vectors[1] = -vectors[0]
    vectors[3] = -vectors[2]
    built = make_byo_bundle(vectors=vectors)
    miner = runtime_of(built.path).current().miner
    with pytest.raises(QueryError, match="cancel"):
        miner.mine(MineQuery(positive_ids=["im0000", "im0001"], strategy="mean"))
    with pytest.raises(QueryError, match="cancel"):
        miner.mine(MineQuery(positive_ids=["im0005"], negative_ids=["im0002", "im0003"], strategy="mean"))
    # max and rrf do not average: the same examples are fine there.
    assert len(miner.mine(MineQuery(positive_ids=["im0000", "im0001"], strategy="max", k=5)).candidates) == 5
    client = open_client(built.path)
    response = client.post("/v1/mine", json={"positive_ids": ["im0000", "im0001"], "strategy": "mean"})
    assert response.status_code == 422 and "cancel" in response.json()["detail"]


@pytest.mark.parametrize(("field", "value"), [("k", True), ("offset", False), ("max_per_group", True),
                                              ("k", 2.0), ("k", "5"), ("negative_weight", True),
                                              ("min_score", False), ("dedup_threshold", True)])
def test_numbers_are_strict(field: str, value: Any) -> None:
    body = {"positive_ids": ["a"], "group_by": "g", field: value}
    with pytest.raises(ValueError, match=field):
        MineQuery.model_validate_json(json.dumps(body))
    assert MineQuery.model_validate_json(json.dumps({**body, field: 1})).model_dump()[field] == 1


@pytest.mark.parametrize("field", ["score", "nearest_example_similarity"])
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_batch_scores_must_be_finite(byo: tuple[Any, Any], field: str, value: str) -> None:
    built, client = byo
    item = f'{{"image_id": "{built.ids[3]}", "{field}": {value}}}'
    body = f'{{"name": "b", "items": [{item}]}}'
    response = client.post("/v1/batches", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422 and field in response.text
    assert client.get("/v1/batches").json() == []
