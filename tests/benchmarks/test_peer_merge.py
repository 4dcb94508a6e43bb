"""Joining benchmark runs: latencies relative to edgemine-auto in the same run, the last run of a peer wins."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import peer_merge  # noqa: E402


def run(rows: list[tuple[str, float, float]], peers: list[str], load: float) -> dict[str, Any]:
    return {"n": 1000, "d": 8, "k": 10, "loadavg_start": load, "loadavg_end": load,
            "peers": {p: {"build_s": 1.0, "notes": p, "bytes_per_vector": 1.0} for p in peers},
            "results": [{"method": m, "examples": 10, "excluded": 0.5, "p50_ms": p50, "p99_ms": p50 * 2,
                         "qps": 1.0, "recall": recall, "queries": 3} for m, p50, recall in rows]}


def test_runs_join_in_units_of_their_own_edgemine_auto_and_a_rerun_peer_replaces_the_first(tmp_path: Path) -> None:
    a = run([("edgemine-auto", 2.0, 1.0), ("numpy", 20.0, 1.0), ("hnswlib@ef=64", 1.0, 0.9),
             ("qdrant-edge@hnsw_ef=100", 4.0, 0.2)], ["numpy", "hnswlib", "qdrant-edge"], 1.0)
    b = run([("edgemine-auto", 8.0, 1.0), ("numpy", 70.0, 1.0), ("qdrant-edge@hnsw_ef=100", 4.0, 0.97),
             ("milvus@ef=100", 16.0, 0.99)], ["numpy", "qdrant-edge", "milvus"], 9.0)
    merged = peer_merge.merge([a, b])
    got = {r["method"]: (r["p50_ms"], r["recall"]) for r in merged["results"]}
    assert got == {"edgemine-auto": (1.0, 1.0), "numpy": (10.0, 1.0), "hnswlib@ef=64": (0.5, 0.9),
                   "qdrant-edge@hnsw_ef=100": (0.5, 0.97), "milvus@ef=100": (2.0, 0.99)}
    assert {r["method"]: r["abs_p50_ms"] for r in merged["results"]}["milvus@ef=100"] == 16.0
    paths = []
    for name, res in (("a", a), ("b", b)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(res))
    out = tmp_path / "joined"
    subprocess.run([sys.executable, str(BENCH / "peer_merge.py"), *map(str, paths), "--out", str(out)],
                   check=True, capture_output=True)
    text = out.with_suffix(".md").read_text()
    assert "| 10 | 50% | milvus | ef=100 | 2.0 | 4.0 | 0.99 | 2x |" in text
    assert out.with_suffix(".png").stat().st_size > 0
