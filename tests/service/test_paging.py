"""Cursor paging: the next page continues after the last candidate among the rows eligible now."""

from __future__ import annotations

import json
import re
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
from edgemine.service import MineQuery, MineResult, QueryError
from tests.support.state_backend import runtime_of, state_of, state_url

Make = Callable[..., Any]
POS = ["im0005", "im0017", "im0042"]
NEG = ["im0100"]


def ids(result: MineResult) -> list[str]:
    return [c.image_id for c in result.candidates]


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bases = rng.standard_normal((n // 4, dim))
    return (np.repeat(bases, 4, axis=0) + 0.3 * rng.standard_normal((n, dim))).astype(np.float32)


VARIANTS: dict[str, dict[str, Any]] = {
    "max": {"strategy": "max"},
    "mean": {"strategy": "mean"},
    "rrf": {"strategy": "rrf"},
    "max with negatives": {"strategy": "max", "negative_ids": NEG},
    "rrf with negatives": {"strategy": "rrf", "negative_ids": NEG},
    "max_per_group": {"strategy": "max", "group_by": "sequence_id", "max_per_group": 5},
    "dedup": {"strategy": "max", "dedup_threshold": 0.8},
    "rrf dedup and groups": {"strategy": "rrf", "dedup_threshold": 0.9, "group_by": "sequence_id",
                             "max_per_group": 6},
}


@pytest.mark.parametrize("variant", list(VARIANTS), ids=list(VARIANTS))
def test_queuing_page_one_skips_nothing(make_byo_bundle: Make, variant: str) -> None:
    built = make_byo_bundle(vectors=clustered(400, 16, seed=4))
    miner = runtime_of(built.path).current().miner
    k = 25
    query = MineQuery(positive_ids=POS, **VARIANTS[variant])
    uninterrupted = miner.mine(query.model_copy(update={"k": 2 * k}))
    assert len(uninterrupted.candidates) == 2 * k
    if "max_per_group" in VARIANTS[variant] or "dedup_threshold" in VARIANTS[variant]:
        plain = MineQuery(positive_ids=POS, strategy=query.strategy, k=2 * k)
        assert ids(miner.mine(plain)) != ids(uninterrupted), "the rule should change the ranking"

    page1 = miner.mine(query.model_copy(update={"k": k}))
    assert ids(page1) == ids(uninterrupted)[:k] and page1.next_cursor
    state_of(built.path).set_state(ids(page1), "queued")
    page2 = miner.mine(query.model_copy(update={"k": k, "cursor": page1.next_cursor}))

    assert ids(page2) == ids(uninterrupted)[k:]
    assert [c.rank for c in page2.candidates] == list(range(k + 1, 2 * k + 1))
    for got, want in zip(page2.candidates, uninterrupted.candidates[k:], strict=True):
        assert got.score == pytest.approx(want.score, abs=1e-6) or variant.startswith("rrf")
        assert got.nearest_example_id == want.nearest_example_id


def test_offset_after_queuing_is_best_effort(make_byo_bundle: Make) -> None:
    # The documented weakness that cursors fix: offset counts rows that are no longer eligible.
    built = make_byo_bundle(n=200, seed=3)
    miner = runtime_of(built.path).current().miner
    uninterrupted = miner.mine(MineQuery(positive_ids=POS, k=30))
    page1 = miner.mine(MineQuery(positive_ids=POS, k=10))
    state_of(built.path).set_state(ids(page1), "queued")
    by_offset = miner.mine(MineQuery(positive_ids=POS, k=10, offset=10))
    assert ids(by_offset) == ids(uninterrupted)[20:30]
    by_cursor = miner.mine(MineQuery(positive_ids=POS, k=10, cursor=page1.next_cursor))
    assert ids(by_cursor) == ids(uninterrupted)[10:20]


@pytest.mark.parametrize("strategy", ["max", "rrf"])
def test_cursor_chain_visits_every_eligible_row_once(make_byo_bundle: Make, strategy: str) -> None:
    built = make_byo_bundle(n=230, seed=6)
    miner = runtime_of(built.path).current().miner
    everything = miner.mine(MineQuery(positive_ids=POS, k=1000, strategy=strategy))
    assert len(everything.candidates) == 227 and everything.next_cursor is None
    seen: list[str] = []
    cursor = None
    for _ in range(20):
        page = miner.mine(MineQuery(positive_ids=POS, k=40, strategy=strategy, cursor=cursor))
        seen += ids(page)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ids(everything)


def test_cursor_with_min_score_stops(make_byo_bundle: Make) -> None:
    built = make_byo_bundle(n=200, seed=7)
    miner = runtime_of(built.path).current().miner
    full = miner.mine(MineQuery(positive_ids=POS, k=60))
    threshold = (full.candidates[14].score + full.candidates[15].score) / 2
    page1 = miner.mine(MineQuery(positive_ids=POS, k=10, min_score=threshold))
    page2 = miner.mine(MineQuery(positive_ids=POS, k=10, min_score=threshold, cursor=page1.next_cursor))
    assert ids(page1) + ids(page2) == ids(full)[:15]
    assert page2.next_cursor is None and page2.next_offset is None


def test_cursor_of_another_query_is_refused(make_byo_bundle: Make, open_client: Make) -> None:
    built = make_byo_bundle(n=100, seed=1)
    miner = runtime_of(built.path).current().miner
    page1 = miner.mine(MineQuery(positive_ids=POS, k=5))
    assert page1.next_cursor
    for other in ({"positive_ids": POS[:2]}, {"positive_ids": POS, "strategy": "rrf"},
                  {"positive_ids": POS, "filters": {"time_of_day": "night"}},
                  {"positive_ids": POS, "exclude_ids": ["im0001"]}):
        with pytest.raises(QueryError, match="another query"):
            miner.mine(MineQuery(k=5, cursor=page1.next_cursor, **other))
    # k may change between pages: it does not change the ranking.
    assert len(miner.mine(MineQuery(positive_ids=POS, k=7, cursor=page1.next_cursor)).candidates) == 7
    client = open_client(built.path)
    ok = client.post("/v1/mine", json={"positive_ids": POS, "k": 5})
    cursor = ok.json()["next_cursor"]
    response = client.post("/v1/mine", json={"positive_ids": POS[:1], "cursor": cursor})
    assert response.status_code == 422 and "another query" in response.json()["detail"]
    for bad in ("not-a-cursor", "", "eyJ4IjogMX0", cursor[:-4]):
        response = client.post("/v1/mine", json={"positive_ids": POS, "cursor": bad})
        assert response.status_code == 422 and "cursor" in response.text, (bad, response.text)
    response = client.post("/v1/mine", json={"positive_ids": POS, "cursor": cursor, "offset": 5})
    assert response.status_code == 422 and "cursor or offset" in response.text
    page2 = client.post("/v1/mine", json={"positive_ids": POS, "k": 5, "cursor": cursor})
    assert page2.status_code == 200
    assert [c["rank"] for c in page2.json()["candidates"]] == [6, 7, 8, 9, 10]


def test_cursor_on_an_ann_bundle(tmp_path: Path) -> None:
    vectors = clustered(4000, 16, seed=9)
    image_ids = [f"im{i:04d}" for i in range(len(vectors))]
    source = tmp_path / "emb.parquet"
    pq.write_table(pa.table({
        "image_id": image_ids,
        "embedding": pa.array(vectors.tolist(), pa.list_(pa.float32())),
        "sequence_id": [f"s{i % 40}" for i in range(len(vectors))],
    }), source)
    model = ModelChoice(ModelInfo(identity="byo:test", name="test", pretrained="external"), None)
    run_index(read_embeddings_source(source), tmp_path / "b", model, progress=False,
              options=IndexOptions("IVF16,Flat"), state_url=state_url(tmp_path / "b"))
    runtime = runtime_of(tmp_path / "b")
    miner = runtime.current().miner
    assert miner.searcher is not None and not miner.searcher.exact
    query = MineQuery(positive_ids=POS, k=30)
    page1 = miner.mine(query)
    state_of(tmp_path / "b").set_state(ids(page1), "queued")
    page2 = miner.mine(query.model_copy(update={"cursor": page1.next_cursor}))
    assert len(page2.candidates) == 30 and not set(ids(page1)) & set(ids(page2))
    last = page1.candidates[-1].score
    assert all(c.score <= last for c in page2.candidates)
    assert [c.rank for c in page2.candidates] == list(range(31, 61))


def test_cli_mine_pages_by_cursor(make_byo_bundle: Make) -> None:
    from typer.testing import CliRunner

    from edgemine.cli.main import app as cli

    built = make_byo_bundle(n=60, seed=2)
    runner = CliRunner()
    args = ["mine", "--bundle", str(built.path), "-p", "im0001", "-k", "4", "--format", "jsonl"]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    cursor = re.search(r"next page: --cursor (\S+)", first.output)
    assert cursor is not None
    second = runner.invoke(cli, [*args, "--cursor", cursor.group(1)])
    assert second.exit_code == 0, second.output
    ranks = [json.loads(line)["rank"] for line in second.stdout.splitlines()]
    assert ranks == [5, 6, 7, 8]
    other = runner.invoke(cli, ["mine", "--bundle", str(built.path), "-p", "im0002", "--cursor", cursor.group(1)])
    assert other.exit_code == 2 and "another query" in other.output


def test_provenance_fields_do_not_break_a_cursor() -> None:
    from edgemine.service.paging import query_digest
    from edgemine.service.query import MineQuery

    base = MineQuery(positive_ids=["a"], k=5)
    moved = MineQuery(positive_ids=["a"], k=5, session_id="s-2", parent_query_id="q-123")
    # The next page of a query may name the page it came from (the review page does): same ranking.
    assert query_digest(base) == query_digest(moved)
    assert query_digest(base) != query_digest(MineQuery(positive_ids=["b"], k=5))
