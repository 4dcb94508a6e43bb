"""The mining library against an independent brute-force reference of the documented maths."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from edgemine.bundle import UnknownImageIds
from edgemine.service import MineQuery, Miner, QueryError
from tests.support.state_backend import runtime_of, state_of

Make = Callable[..., Any]

POS = ["im0005", "im0017", "im0042"]
NEG = ["im0100", "im0200"]


def miner_for(bundle: Any, embedder: Any = None) -> Miner:
    loader = (lambda name, pretrained: embedder) if embedder is not None else None
    return runtime_of(bundle.path, **({"loader": loader} if loader else {})).current().miner


def rows_of(built: Any, ids: list[str]) -> list[int]:
    row = built.row()
    return [row[i] for i in ids]


def base_eligible(built: Any, *, excluded: list[str]) -> np.ndarray:
    mask = np.ones(len(built.ids), bool)
    mask[rows_of(built, excluded)] = False
    return mask


@pytest.mark.parametrize("strategy", ["mean", "max", "rrf"])
@pytest.mark.parametrize("with_negatives", [False, True])
@pytest.mark.parametrize("with_rules", [False, True])
def test_mine_matches_brute_force(make_byo_bundle: Make, reference: Make, check: Make, strategy: str,
                                  with_negatives: bool, with_rules: bool) -> None:
    built = make_byo_bundle(n=300, seed=11)
    E = built.embeddings()
    meta = built.meta
    db = state_of(built.path)
    labeled = [f"im{i:04d}" for i in range(0, 300, 9)]
    queued = [f"im{i:04d}" for i in range(4, 300, 23)]
    db.set_state(labeled, "labeled")
    db.set_state(queued, "queued")
    negatives = NEG if with_negatives else []
    exclude = ["im0010", "im0011", "im0123", "nope-not-in-bundle"] if with_rules else []
    filters: dict[str, Any] = {"time_of_day": ["night", "dusk"], "frame": {"gte": 20, "lt": 280}} if with_rules else {}

    result = miner_for(built).mine(MineQuery(positive_ids=POS, negative_ids=negatives, strategy=strategy,
                                             negative_weight=0.7, k=25, filters=filters, exclude_ids=exclude))

    eligible = base_eligible(built, excluded=[*labeled, *queued, *POS, *negatives,
                                              *[e for e in exclude if e in built.row()]])
    if with_rules:
        eligible &= np.array([t in ("night", "dusk") for t in meta["time_of_day"]])
        eligible &= np.array([20 <= f < 280 for f in meta["frame"]])
    row = built.row()
    expected = reference(E, built.ids, pos=E[[row[i] for i in POS]], pos_labels=POS,
                         neg=E[[row[i] for i in negatives]] if negatives else None, strategy=strategy,
                         negative_weight=0.7, eligible=eligible, k=25)
    assert len(expected) == 25
    check(result.candidates, expected)
    assert [c.rank for c in result.candidates] == list(range(1, 26))
    assert result.eligible == int(eligible.sum())
    assert result.strategy == strategy and result.bundle_version == 1 and result.model == "byo:test"
    returned = {c.image_id for c in result.candidates}
    assert not returned & {*labeled, *queued, *POS, *negatives, *exclude}
    assert all(c.state == "unlabeled" for c in result.candidates)
    if with_rules:
        for c in result.candidates:
            assert c.metadata["time_of_day"] in ("night", "dusk") and 20 <= c.metadata["frame"] < 280


def test_rrf_counts_ranks_only_within_depth(make_byo_bundle: Make, reference: Make, check: Make) -> None:
    # 1500 rows > the 1000-row rank depth, so rows outside an example's list get nothing from it.
    built = make_byo_bundle(n=1500, seed=5)
    E = built.embeddings()
    row = built.row()
    result = miner_for(built).mine(MineQuery(positive_ids=POS, negative_ids=NEG, strategy="rrf", k=40))
    eligible = base_eligible(built, excluded=[*POS, *NEG])
    expected = reference(E, built.ids, pos=E[[row[i] for i in POS]], pos_labels=POS,
                         neg=E[[row[i] for i in NEG]], strategy="rrf", eligible=eligible, k=40, depth=1000)
    check(result.candidates, expected)


def test_exactly_k_when_most_of_the_collection_is_labeled(make_byo_bundle: Make, reference: Make,
                                                          check: Make) -> None:
    built = make_byo_bundle(n=300, seed=2)
    E = built.embeddings()
    unlabeled = [f"im{i:04d}" for i in range(7, 300, 20)]  # 15 of 300 = 5% stay unlabeled
    labeled = [i for i in built.ids if i not in unlabeled]
    state_of(built.path).set_state(labeled, "labeled")
    miner = miner_for(built)
    positive = ["im0000"]  # labeled itself: a failure example may well be labeled

    for strategy in ("mean", "max", "rrf"):
        for k in (1, 10, 15):
            result = miner.mine(MineQuery(positive_ids=positive, k=k, strategy=strategy))
            assert len(result.candidates) == k, (strategy, k)
            assert {c.image_id for c in result.candidates} <= set(unlabeled)
            eligible = np.isin(np.array(built.ids), unlabeled)
            check(result.candidates, reference(E, built.ids, pos=E[[0]], pos_labels=positive,
                                               strategy=strategy, eligible=eligible, k=k))
        # More asked than eligible: all 15 come back and there is no next page.
        result = miner.mine(MineQuery(positive_ids=positive, k=50, strategy=strategy))
        assert sorted(c.image_id for c in result.candidates) == sorted(unlabeled)
        assert result.eligible == 15 and result.next_offset is None

    # The query's own ids and exclude_ids reduce the eligible set, and only then is k cut short.
    result = miner.mine(MineQuery(positive_ids=[unlabeled[0]], negative_ids=[unlabeled[1]],
                                  exclude_ids=unlabeled[2:4], k=12))
    assert len(result.candidates) == 11
    assert {c.image_id for c in result.candidates} == set(unlabeled[4:])
    result = miner.mine(MineQuery(positive_ids=[unlabeled[0]], exclude_ids=unlabeled[2:4], k=12))
    assert len(result.candidates) == 12


def test_include_states_brings_labeled_back(make_byo_bundle: Make) -> None:
    built = make_byo_bundle(n=120, seed=4)
    db = state_of(built.path)
    db.set_state(built.ids[:100], "labeled")
    db.set_state(built.ids[100:110], "queued")
    miner = miner_for(built)
    everything = miner.mine(MineQuery(positive_ids=["im0001"], k=200,
                                      include_states=["unlabeled", "queued", "labeled"]))
    assert len(everything.candidates) == 119
    states = Counter(c.state for c in everything.candidates)
    assert states == {"labeled": 99, "queued": 10, "unlabeled": 10}
    queued_only = miner.mine(MineQuery(positive_ids=["im0001"], k=200, include_states=["queued"]))
    assert sorted(c.image_id for c in queued_only.candidates) == built.ids[100:110]
    assert miner.mine(MineQuery(positive_ids=["im0001"], k=5, include_states=[])).candidates == []


def test_min_score_and_paging(make_byo_bundle: Make, reference: Make, check: Make) -> None:
    built = make_byo_bundle(n=300, seed=8)
    E = built.embeddings()
    row = built.row()
    miner = miner_for(built)
    eligible = base_eligible(built, excluded=POS)
    full = reference(E, built.ids, pos=E[[row[i] for i in POS]], pos_labels=POS, eligible=eligible, k=60)

    threshold = (full[7].score + full[8].score) / 2
    result = miner.mine(MineQuery(positive_ids=POS, k=50, min_score=threshold))
    check(result.candidates, full[:8])
    assert all(c.score >= threshold for c in result.candidates)
    assert result.eligible == 8 and result.next_offset is None

    page1 = miner.mine(MineQuery(positive_ids=POS, k=10))
    page2 = miner.mine(MineQuery(positive_ids=POS, k=10, offset=page1.next_offset or 0))
    assert page1.next_offset == 10 and page2.offset == 10 and page2.next_offset == 20
    assert not {c.image_id for c in page1.candidates} & {c.image_id for c in page2.candidates}
    check([*page1.candidates, *page2.candidates], full[:20])
    assert [c.rank for c in page2.candidates] == list(range(11, 21))
    last = miner.mine(MineQuery(positive_ids=POS, k=10, offset=295))
    assert len(last.candidates) == 2 and last.next_offset is None  # 297 eligible in all


def test_max_per_group(make_byo_bundle: Make, reference: Make, check: Make) -> None:
    built = make_byo_bundle(n=240, seed=9)
    E = built.embeddings()
    row = built.row()
    groups = built.meta["sequence_id"]  # 12 sequences of 20 frames
    miner = miner_for(built)
    eligible = base_eligible(built, excluded=POS)
    pos = E[[row[i] for i in POS]]

    result = miner.mine(MineQuery(positive_ids=POS, k=20, group_by="sequence_id", max_per_group=2))
    check(result.candidates, reference(E, built.ids, pos=pos, pos_labels=POS, eligible=eligible, k=20,
                                       groups=groups, max_per_group=2))
    assert max(Counter(c.metadata["sequence_id"] for c in result.candidates).values()) <= 2

    page2 = miner.mine(MineQuery(positive_ids=POS, k=10, offset=10, group_by="sequence_id", max_per_group=2))
    assert [c.image_id for c in page2.candidates] == [c.image_id for c in result.candidates[10:]]

    # Only 12 x 2 = 24 can satisfy the cap: asking for 30 gives those 24, not more.
    capped = miner.mine(MineQuery(positive_ids=POS, k=30, group_by="sequence_id", max_per_group=2))
    assert len(capped.candidates) == 24
    check(capped.candidates, reference(E, built.ids, pos=pos, pos_labels=POS, eligible=eligible, k=30,
                                       groups=groups, max_per_group=2))


def test_dedup_threshold(make_byo_bundle: Make, reference: Make, check: Make) -> None:
    rng = np.random.default_rng(21)
    bases = rng.standard_normal((60, 16))
    bases /= np.linalg.norm(bases, axis=1, keepdims=True)
    vectors = np.repeat(bases, 5, axis=0) + 0.02 * rng.standard_normal((300, 16))  # 5 near-copies each
    built = make_byo_bundle(vectors=vectors.astype(np.float32))
    E = built.embeddings()
    row = built.row()
    positives = ["im0003", "im0151"]
    miner = miner_for(built)

    plain = miner.mine(MineQuery(positive_ids=positives, k=20))
    sims = E[rows_of(built, [c.image_id for c in plain.candidates])]
    assert (np.triu(sims @ sims.T, 1) >= 0.95).any(), "the data should hold near-duplicates"

    result = miner.mine(MineQuery(positive_ids=positives, k=20, dedup_threshold=0.95))
    assert len(result.candidates) == 20
    got = E[rows_of(built, [c.image_id for c in result.candidates])]
    assert (np.triu(got @ got.T, 1) < 0.95).all()
    eligible = base_eligible(built, excluded=positives)
    check(result.candidates, reference(E, built.ids, pos=E[[row[i] for i in positives]], pos_labels=positives,
                                       eligible=eligible, k=20, dedup=0.95))
    # At most one per cluster of near-copies survives, so 60 clusters bound the result.
    many = miner.mine(MineQuery(positive_ids=positives, k=100, dedup_threshold=0.95))
    assert len(many.candidates) <= 60


def test_nearest_example_is_the_argmax_example(make_byo_bundle: Make) -> None:
    built = make_byo_bundle(n=200, seed=13)
    E = built.embeddings()
    row = built.row()
    positives = ["im0001", "im0050", "im0099", "im0150"]
    for strategy in ("mean", "max", "rrf"):
        result = miner_for(built).mine(MineQuery(positive_ids=positives, strategy=strategy, k=30))
        for c in result.candidates:
            sims = {p: float(E[row[c.image_id]] @ E[row[p]]) for p in positives}
            best = max(sims, key=lambda p: sims[p])
            assert c.nearest_example_id == best
            assert c.nearest_example_similarity == pytest.approx(sims[best], abs=1e-5)
    # With a single example under "max", the score is the similarity to it.
    single = miner_for(built).mine(MineQuery(positive_ids=["im0001"], k=5))
    for c in single.candidates:
        assert c.score == pytest.approx(c.nearest_example_similarity, abs=1e-6)
        assert c.nearest_example_id == "im0001"


def test_text_queries_label_examples(image_bundle: Any, fake_embedder: Any, reference: Make, check: Make) -> None:
    built = image_bundle
    E = built.embeddings()
    row = built.row()
    positive_id = built.ids[4]
    texts = ["a rainy night", "glare from the sun"]
    neg_texts = ["an empty road"]
    miner = miner_for(built, fake_embedder)
    for strategy in ("mean", "max", "rrf"):
        result = miner.mine(MineQuery(positive_ids=[positive_id], texts=texts, negative_texts=neg_texts,
                                      strategy=strategy, k=10))
        pos = np.concatenate([E[[row[positive_id]]], fake_embedder.embed_texts(texts)])
        eligible = base_eligible(built, excluded=[positive_id])
        labels = [positive_id, *[f"text:{t}" for t in texts]]
        check(result.candidates, reference(E, built.ids, pos=pos, pos_labels=labels, strategy=strategy,
                                           neg=fake_embedder.embed_texts(neg_texts), eligible=eligible, k=10))
    text_only = miner.mine(MineQuery(texts=["a rainy night"], k=29))
    assert len(text_only.candidates) == 29  # nothing excluded: text examples are not rows
    assert {c.nearest_example_id for c in text_only.candidates} == {"text:a rainy night"}


def test_query_errors(make_byo_bundle: Make) -> None:
    built = make_byo_bundle(n=50)
    miner = miner_for(built)
    with pytest.raises(UnknownImageIds) as err:
        miner.mine(MineQuery(positive_ids=["im0001", "ghost-a"], negative_ids=["ghost-b"]))
    assert err.value.ids == ["ghost-a", "ghost-b"]
    with pytest.raises(QueryError, match="empty query"):
        miner.mine(MineQuery(negative_ids=["im0001"]))
    with pytest.raises(QueryError, match="precomputed embeddings"):
        miner.mine(MineQuery(texts=["a cat"]))
    with pytest.raises(QueryError, match="group_by"):
        miner.mine(MineQuery(positive_ids=["im0001"], group_by="nope", max_per_group=1))


def test_total_ms_covers_the_whole_call_including_storing_the_query(make_byo_bundle: Make,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake clock: every reading is one second later. Storing the query reads it 10 times, so a
    # total that covers the store is at least 10 s; timings are never compared with real time.
    from edgemine.service import miner as miner_module

    built = make_byo_bundle(n=40)
    miner = miner_for(built)
    ticks = iter(range(10**6))
    monkeypatch.setattr(miner_module.time, "perf_counter", lambda: float(next(ticks)))
    stored: list[str] = []

    def slow_record(*args: Any, **_: Any) -> None:
        for _ in range(10):
            miner_module.time.perf_counter()
        stored.append(args[1])

    monkeypatch.setattr(miner_module, "record_query", slow_record)
    result = miner.mine(MineQuery(positive_ids=built.ids[:2], k=3))
    assert stored == [result.query_id]
    assert result.timings.total_ms >= 10_000 + result.timings.search_ms
