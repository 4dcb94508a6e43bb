"""The real server (2 worker processes) and the real CLI, as subprocesses, over a BYO bundle."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from edgemine.service import MineQuery
from tests.support.live_server import child_env, serving
from tests.support.state_backend import runtime_of, state_env

Make = Callable[..., Any]


@pytest.fixture
def server(tmp_path: Path, make_byo_bundle: Make) -> Iterator[tuple[str, Any]]:
    built = make_byo_bundle(n=400, seed=17)
    metrics_dir = tmp_path / "metrics"  # both workers write here: the tests see which one answered
    metrics_dir.mkdir()
    with serving(built.path, tmp_path, workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}) as base:
        yield base, built


def mine(base: str, **query: Any) -> list[str]:
    # A fresh connection per request, so the kernel spreads them over both workers.
    response = httpx.post(f"{base}/v1/mine", json=query, timeout=30)
    assert response.status_code == 200, response.text
    return [c["image_id"] for c in response.json()["candidates"]]


def mines_per_worker(metrics_dir: Path) -> Counter[str]:
    """How many /v1/mine calls each worker process has served (from its Prometheus multiprocess file)."""
    served: Counter[str] = Counter()
    for path in metrics_dir.glob("histogram_*.db"):
        pid = path.stem.split("_", 1)[1]
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            if '"edgemine_mine_seconds_bucket"' in key:
                served[pid] += int(value)
    return served


def mine_on_every_worker(base: str, metrics_dir: Path, check: Callable[[list[str]], None], **query: Any) -> None:
    """Mine until each of the 2 workers has answered at least 3 times since now; check every answer."""
    start = mines_per_worker(metrics_dir)
    deadline = time.monotonic() + 60
    attempt = 0
    while time.monotonic() < deadline:
        check(mine(base, **query))
        done = mines_per_worker(metrics_dir) - start
        attempt += 1
        if attempt >= 8 and len(done) == 2 and min(done.values()) >= 3:
            return
    raise AssertionError(f"requests did not reach both workers: {mines_per_worker(metrics_dir)}")


def test_multi_worker_server_respects_labels_and_batches(server: tuple[str, Any]) -> None:
    base, built = server
    metrics_dir = built.path.parent / "metrics"
    health = httpx.get(f"{base}/v1/health").json()
    assert health["bundle_version"] == 1 and health["model"] == "byo:test" and health["counts"]["images"] == 400

    query = {"positive_ids": ["im0003", "im0150"], "k": 10, "strategy": "rrf"}
    first = mine(base, **query)
    assert len(first) == 10
    response = httpx.post(f"{base}/v1/labels", json={"image_ids": [first[0]], "state": "labeled"})
    assert response.status_code == 200 and response.json()["changed"] == 1

    def without_labeled(again: list[str]) -> None:
        assert first[0] not in again and again[:9] == first[1:] and len(again) == 10

    mine_on_every_worker(base, metrics_dir, without_labeled, **query)

    candidates = httpx.post(f"{base}/v1/mine", json=query).json()["candidates"]
    batch = httpx.post(f"{base}/v1/batches", json={"name": "e2e", "items": candidates[:3], "query": query})
    assert batch.status_code == 201, batch.text
    queued = {c["image_id"] for c in candidates[:3]}

    def without_queued(again: list[str]) -> None:
        assert not queued & set(again) and first[0] not in again and len(again) == 10

    mine_on_every_worker(base, metrics_dir, without_queued, **query)

    counts = httpx.get(f"{base}/v1/health").json()["counts"]
    assert counts == {"images": 400, "unlabeled": 396, "queued": 3, "labeled": 1, "rejected": 0}
    metrics = httpx.get(f"{base}/metrics")
    assert metrics.status_code == 200 and "edgemine_http_requests_total" in metrics.text
    assert httpx.post(f"{base}/v1/mine", json={"texts": ["a dog"]}).status_code == 422
    assert httpx.post(f"{base}/v1/mine", json={"positive_ids": ["ghost"]}).status_code == 404

    # The library over the same bundle and state agrees with the server.
    library = runtime_of(built.path).current().miner.mine(MineQuery(**query))
    assert [c.image_id for c in library.candidates] == mine(base, **query)


def test_multi_worker_server_shares_verdicts_rejects_and_use_verdicts(server: tuple[str, Any]) -> None:
    base, built = server
    metrics_dir = built.path.parent / "metrics"
    query = {"positive_ids": ["im0042"], "k": 10, "session_id": "e2e"}
    mined = httpx.post(f"{base}/v1/mine", json=query).json()
    first = [c["image_id"] for c in mined["candidates"]]
    verdicts = [{"image_id": first[0], "verdict": "reject", "query_id": mined["query_id"]},
                {"image_id": first[1], "verdict": "accept", "query_id": mined["query_id"]}]
    response = httpx.post(f"{base}/v1/verdicts", json={"verdicts": verdicts, "session_id": "e2e"})
    assert response.status_code == 200 and response.json()["states"] == {"rejected": 1, "unlabeled": 0}

    def without_rejected(again: list[str]) -> None:
        assert first[0] not in again and again[:9] == first[1:]

    mine_on_every_worker(base, metrics_dir, without_rejected, **query)

    # Every worker reads the session's verdicts from state.sqlite: use_verdicts equals the ids by hand.
    by_hand = mine(base, positive_ids=["im0042", first[1]], negative_ids=[first[0]], k=10)
    assert by_hand != first[1:]

    def same_as_by_hand(again: list[str]) -> None:
        assert again == by_hand

    mine_on_every_worker(base, metrics_dir, same_as_by_hand, **query, use_verdicts=True)
    for _ in range(6):  # fresh connections, spread over both workers
        listed = httpx.get(f"{base}/v1/verdicts", params={"session_id": "e2e"}).json()["verdicts"]
        assert [(v["image_id"], v["verdict"]) for v in listed] == [(first[0], "reject"), (first[1], "accept")]
        report = httpx.get(f"{base}/v1/yield", params={"session_id": "e2e"}).json()
        assert (report["overall"]["reviewed"], report["overall"]["accepted"]) == (2, 1)


def test_cli_mine_subprocess(tmp_path: Path, make_byo_bundle: Make) -> None:
    built = make_byo_bundle(n=200, seed=23)
    result = subprocess.run(
        [sys.executable, "-m", "edgemine.cli.main", "mine", "--bundle", str(built.path), "-p", "im0007", "-k", "5",
         "--format", "jsonl"], cwd=tmp_path, env=child_env(state_env(built.path)), capture_output=True, text=True,
        timeout=120)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(rows) == 5
    library = runtime_of(built.path).current().miner.mine(MineQuery(positive_ids=["im0007"], k=5))
    for row, cand in zip(rows, library.candidates, strict=True):
        assert row["image_id"] == cand.image_id and row["rank"] == cand.rank
        assert row["score"] == pytest.approx(cand.score, abs=1e-6)
        assert row["nearest_example_id"] == "im0007" and row["metadata"] == cand.metadata

    bad = subprocess.run(
        [sys.executable, "-m", "edgemine.cli.main", "mine", "--bundle", str(tmp_path / "missing"), "-p", "x"],
        cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "error:" in bad.stderr


def test_verdicts_survive_a_real_server_restart(tmp_path: Path, make_byo_bundle: Make) -> None:
    built = make_byo_bundle(n=120, seed=29)
    query = {"positive_ids": ["im0010"], "k": 5, "session_id": "restart"}
    with serving(built.path, tmp_path, workers=1, name="first") as base:
        mined = httpx.post(f"{base}/v1/mine", json=query).json()
        first = [c["image_id"] for c in mined["candidates"]]
        verdicts = [{"image_id": first[0], "verdict": "reject", "query_id": mined["query_id"]}]
        assert httpx.post(f"{base}/v1/verdicts", json={"verdicts": verdicts}).status_code == 200
    with serving(built.path, tmp_path, workers=1, name="second") as base:
        again = [c["image_id"] for c in httpx.post(f"{base}/v1/mine", json=query).json()["candidates"]]
        assert first[0] not in again and again[:4] == first[1:]  # still rejected after the restart
        listed = httpx.get(f"{base}/v1/verdicts", params={"query_id": mined["query_id"]}).json()["verdicts"]
        assert [(v["image_id"], v["verdict"]) for v in listed] == [(first[0], "reject")]
        assert httpx.get(f"{base}/v1/health").json()["counts"]["rejected"] == 1
