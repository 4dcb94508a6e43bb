"""Cost growth with collection size: build time, bytes/vector, query latency and recall.

The same drive-like bundle as benchmarks/bench_service.py (auto index, metadata, half the rows
labeled) at each size; queries are 10 frames of one scene, k=100, labeled rows excluded, run
in process through `Miner.mine` (FAISS and BLAS single-threaded, as the service runs them).
Recall@k is against exact ground truth over the bundle's own stored embeddings (max cosine over
the examples, labeled rows and the examples excluded).

    python benchmarks/bench_growth.py --sizes 100k,1M,3M --out benchmarks/results/DATE

Bundles are cached in --tmp (shared with bench_service.py). Writes <out>/cost-growth.json and .md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_search import parse_size
from bench_service import EXAMPLES, bundle_for, queries

BLOCK = 65_536


def dir_bytes(path: Path) -> int:
    """Return the bytes of the regular files under `path`."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def version_bytes(bundle: Path, version: Path) -> int:
    """Return the bytes one version serves: its own files and the segments its manifest lists."""
    # Format-2 versions hold manifests and the trained index; the rows live in shared segments.
    manifest = json.loads((version / "manifest.json").read_text())
    segments = [bundle / "segments" / seg["name"] for seg in manifest.get("segments", [])]
    return dir_bytes(version) + sum(dir_bytes(seg) for seg in segments)


def ground_truth(embeddings: np.ndarray, example_rows: list[np.ndarray], excluded: np.ndarray,
                 k: int) -> list[np.ndarray]:
    """Top-k rows by max cosine over each query's examples, in one pass over the embeddings."""
    all_rows = np.concatenate(example_rows)
    examples = np.asarray(embeddings[np.sort(all_rows)], np.float32)
    order = np.argsort(np.argsort(all_rows))  # position of each query's example in `examples`
    cols = np.split(order, np.cumsum([len(r) for r in example_rows])[:-1])
    best: list[tuple[np.ndarray, np.ndarray]] = [(np.empty(0, np.float32), np.empty(0, np.int64))] * len(cols)
    for start in range(0, len(embeddings), BLOCK):
        sims = np.asarray(embeddings[start:start + BLOCK], np.float32) @ examples.T
        for q, c in enumerate(cols):
            score = sims[:, c].max(axis=1)
            score[excluded[start:start + len(score)]] = -np.inf
            rows = np.arange(start, start + len(score))
            s = np.concatenate([best[q][0], score])
            r = np.concatenate([best[q][1], rows])
            top = np.argpartition(-s, min(k, len(s) - 1))[:k]
            best[q] = (s[top], r[top])
    return [r[np.argsort(-s)] for s, r in best]


def measure(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """Build (or reuse) the bundle of n vectors, then time and check queries against exact truth."""
    import faiss
    from threadpoolctl import threadpool_limits

    from edgemine.service.query import MineQuery
    from edgemine.service.row_states import STATE_CODE
    from edgemine.service.runtime import Runtime

    bundle, info = bundle_for(n, args.tmp, args.memory_budget)
    faiss.omp_set_num_threads(1)
    threadpool_limits(1, user_api="blas")
    runtime = Runtime(bundle)
    loaded = runtime.current()
    snap, miner = loaded.snapshot, loaded.miner
    ids = snap.image_ids
    row_by_id = snap.row_by_id
    bodies = queries(ids, args.queries, args.k, seed=7)
    parsed = [MineQuery.model_validate_json(b) for b in bodies]
    example_rows = [np.array([row_by_id[i] for i in q.positive_ids]) for q in parsed]
    excluded = miner.states.codes != STATE_CODE["unlabeled"]  # labeled (and queued) rows
    t0 = time.perf_counter()
    for rows in example_rows:
        excluded[rows] = True  # the miner never returns its own examples
    truths = ground_truth(snap.embeddings, example_rows, excluded, args.k)
    truth_s = time.perf_counter() - t0
    for q in parsed[:3]:
        miner.mine(q)
    times, cpu, recalls = [], [], []
    for q, truth in zip(parsed, truths, strict=True):
        t, c = time.perf_counter(), time.thread_time()
        result = miner.mine(q)
        times.append((time.perf_counter() - t) * 1e3)
        cpu.append((time.thread_time() - c) * 1e3)  # BLAS and FAISS run on this thread
        got = [row_by_id[c.image_id] for c in result.candidates]
        recalls.append(len(np.intersect1d(got, truth)) / args.k)
    version = bundle / "versions" / (bundle / "CURRENT").read_text().strip()
    index = info["index"]
    return {
        "n": n, "build_s": info["build_s"], "index": index["factory"], "search_params": index["search_params"],
        "index_bytes_per_vector": index["bytes_per_vector"],
        "bundle_bytes_per_vector": round(version_bytes(bundle, version) / n, 1),
        "p50_ms": round(float(np.percentile(times, 50)), 3), "p99_ms": round(float(np.percentile(times, 99)), 3),
        "cpu_p50_ms": round(float(np.percentile(cpu, 50)), 3),
        "recall_at_k": round(float(np.mean(recalls)), 4), "min_recall": round(float(np.min(recalls)), 4),
        "queries": len(times), "ground_truth_s": round(truth_s, 1),
    }


def exponent(rows: list[dict[str, Any]], key: str) -> float | None:
    """Growth exponent b of key ~ n^b between the smallest and largest size."""
    a, b = rows[0], rows[-1]
    if a[key] <= 0 or b[key] <= 0 or a["n"] == b["n"]:
        return None
    return round(math.log(b[key] / a[key]) / math.log(b["n"] / a["n"]), 2)


def markdown(res: dict[str, Any]) -> str:
    """Render the table and the growth exponents."""
    rows = res["rows"]
    lines = [f"### Cost growth: drive-like bundles, {EXAMPLES} examples of one scene, k = {res['k']}, "
             f"50% labeled (excluded), memory budget {res['memory_budget']}", "",
             f"Machine: {res['cpus']} CPUs shared with other jobs (load average {res['loadavg']} when the "
             "queries ran; the queries of all sizes ran in this one process, one size after the other). "
             "CPU ms is the query's CPU time (robust to waiting for a core). " + res["note"], "",
             "| vectors | index | build s | index B/vector | bundle B/vector | p50 ms | p99 ms | CPU p50 ms "
             "| recall@k | min recall |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['n']:,} | `{r['index']}` {r['search_params']} | {r['build_s']} | "
                     f"{r['index_bytes_per_vector']} | {r['bundle_bytes_per_vector']} | {r['p50_ms']} | "
                     f"{r['p99_ms']} | {r['cpu_p50_ms']} | {r['recall_at_k']} | {r['min_recall']} |")
    if len(rows) > 1:
        lines += ["", f"Growth from {rows[0]['n']:,} to {rows[-1]['n']:,} vectors, as the exponent b in "
                      "cost ~ n^b: " + ", ".join(f"{key} {exponent(rows, key)}" for key in
                                                 ("build_s", "bundle_bytes_per_vector", "p50_ms", "p99_ms",
                                                  "cpu_p50_ms"))]
    lines += ["", f"Command: `{res['command']}`"]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Measure every size, write JSON and Markdown."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100k,1M")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--memory-budget", default="4G")
    parser.add_argument("--note", default="", help="a sentence for the report (e.g. how the builds ran)")
    parser.add_argument("--tmp", type=Path, default=Path("/tmp/edgemine-bench"))
    parser.add_argument("--out", type=Path, default=Path("bench-results/growth"))
    args = parser.parse_args()
    args.tmp.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"k": args.k, "memory_budget": args.memory_budget, "cpus": os.cpu_count(), "note": args.note,
                           "loadavg": round(os.getloadavg()[0], 1), "date": time.strftime("%Y-%m-%d", time.gmtime()),
                           "command": " ".join(["python", *sys.argv]), "rows": []}
    for size in args.sizes.split(","):
        row = measure(parse_size(size), args)
        row["peak_rss_MB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        res["rows"].append(row)
        print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cost-growth.json").write_text(json.dumps(res, indent=2))
    table = markdown(res)
    (args.out / "cost-growth.md").write_text(table)
    print(table, flush=True)


if __name__ == "__main__":
    main()
