"""A scenario's members.query on the miner: every labeling state, pages past MAX_K, field-named errors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from edgemine.service import limits
from edgemine.service.scenario_query import MAX_SCENARIO_MEMBERS, resolve_query, scenario_query
from tests.service.conftest import BuiltBundle
from tests.support.state_backend import runtime_of, state_of


def top_by_cosine(bundle: BuiltBundle, positive: str, k: int) -> list[str]:
    """The k images most similar to `positive` (itself excluded), computed here with numpy."""
    vectors = bundle.embeddings()
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    row = bundle.row()
    sims = vectors @ vectors[row[positive]]
    ids = bundle.catalog_ids()
    order = [ids[i] for i in np.argsort(-sims) if ids[i] != positive]
    return order[:k]


def test_pages_past_max_k_with_cursors_and_covers_labeled_images(make_byo_bundle: Callable[..., BuiltBundle]) -> None:
    bundle = make_byo_bundle(n=2600, dim=16, seed=4)
    wanted = limits.MAX_K * 2 + 300
    expected = top_by_cosine(bundle, bundle.ids[0], wanted)
    # Labeled and queued images are members too: the query's include_states is replaced by every state.
    state_of(bundle.path).set_state(expected[:50], "labeled")
    state_of(bundle.path).set_state(expected[50:60], "queued")
    miner = runtime_of(bundle.path).current().miner
    ids = resolve_query(miner, {"positive_ids": [bundle.ids[0]], "k": wanted, "include_states": ["unlabeled"]})
    assert len(ids) == wanted == len(set(ids))
    assert set(ids) == set(expected)
    assert ids[:limits.MAX_K] == expected[:limits.MAX_K]


def test_a_short_result_stops_paging(make_byo_bundle: Callable[..., BuiltBundle]) -> None:
    bundle = make_byo_bundle(n=300, dim=16, seed=5)
    miner = runtime_of(bundle.path).current().miner
    ids = resolve_query(miner, {"positive_ids": [bundle.ids[0]], "k": 5000})
    assert sorted(ids) == sorted(bundle.ids[1:])


@pytest.mark.parametrize(("body", "field"), [
    ({"positive_ids": ["a"], "k": MAX_SCENARIO_MEMBERS + 1}, "members.query.k"),
    ({"positive_ids": ["a"], "k": True}, "members.query.k"),
    ({"positive_ids": ["a"], "cursor": "abc"}, "members.query.cursor"),
    ({"positive_ids": ["a"], "offset": 10}, "members.query.offset"),
    ({"positive_ids": ["a"], "strategy": "best"}, "members.query.strategy"),
    ({"positive_ids": ["a"], "typo": 1}, "members.query.typo"),
])
def test_invalid_queries_name_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        scenario_query(body)
