"""Measure a bench_10m.py bundle through edgemine itself: load_current + Miner in process, then HTTP.

    python benchmarks/bench_10m_miner.py --bundle /work/big/bundle-10m --work /work/big/bench-10m-work \\
        --result benchmarks/results/DATE/ten-million.json

Needs an edgemine that reads bundle format 2 (--source-root: the tree `edgemine serve` runs from;
default this repository). Uses bench_10m.py's evaluation query sets and the exact ground truth it
stored in --work (truth.npz), so recall is against the same exact top-100. 0% excluded: nothing
labeled; 50% excluded: the same seeded half of the rows as bench_10m.py, set "labeled" in the
bundle's state.sqlite (created here; left labeled afterwards), so the Miner excludes them as it
excludes labeled images. In process: Runtime(bundle).current().miner.mine, FAISS and BLAS
single-threaded as the service runs them. HTTP: one `edgemine serve` worker on 127.0.0.1, one
kept-alive client, POST /v1/mine, client-side p50/p99 next to the server's own total.
Adds "miner" and "http" to the result JSON and rewrites its Markdown.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests.support; edgemine from PYTHONPATH first
import bench_10m
from bench_10m_queries import excluded_mask, query_sets
from bench_10m_report import write_report
from bench_service import Client
from synthetic import FRAMES_PER_SEQUENCE

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = (1, 10)


def eval_sets_and_truth(n: int, work: Path, tune: int, count: int,
                        seed: int) -> tuple[dict[int, list[Any]], list[dict[int, list[Any]]]]:
    """Return bench_10m.py's evaluation sets and their stored exact truth per exclusion level."""
    train_rows = np.load(work / "train_rows.npy")
    tune_sets = {ex: query_sets(n, train_rows, tune, ex, seed + 100 + ex) for ex in EXAMPLES}
    eval_sets = {ex: query_sets(n, train_rows, count, ex, seed + 200 + ex) for ex in EXAMPLES}
    saved = np.load(work / "truth.npz")
    truths = []
    for m in range(len(bench_10m.EXCLUDED)):
        q, per_ex = 0, {}
        for ex in EXAMPLES:  # stored in bench_10m.py's order: per ex, its tuning sets then its evaluation sets
            q += len(tune_sets[ex])
            per_ex[ex] = [saved[f"m{m}_q{q + i}"] for i in range(len(eval_sets[ex]))]
            q += len(eval_sets[ex])
        truths.append(per_ex)
    return eval_sets, truths


def image_id_of(row: int) -> str:
    """Return the image_id bench_10m.py gave a row (no 10M-entry table needed)."""
    return f"drive/seq{row // FRAMES_PER_SEQUENCE:06d}/frame{row % FRAMES_PER_SEQUENCE:03d}.jpg"


def row_of(image_id: str) -> int:
    """Return the row of an image_id made by image_id_of."""
    seq, frame = image_id.removeprefix("drive/seq").removesuffix(".jpg").split("/frame")
    return int(seq) * FRAMES_PER_SEQUENCE + int(frame)


def body(rows: npt.NDArray[np.int64], k: int) -> bytes:
    """Return a /v1/mine request body for example rows."""
    return json.dumps({"positive_ids": [image_id_of(int(r)) for r in rows], "k": k}).encode()


def in_process(bundle: Path, sets: dict[int, list[Any]], truth: dict[int, list[Any]], k: int) -> dict[str, Any]:
    """Time Miner.mine over the sets (after a warm-up) and measure recall@k against the truth."""
    import faiss
    from threadpoolctl import threadpool_limits

    from edgemine.service.query import MineQuery
    from edgemine.service.runtime import Runtime

    faiss.omp_set_num_threads(1)
    t0 = time.perf_counter()
    loaded = Runtime(bundle).current()
    load_s = time.perf_counter() - t0
    out: dict[str, Any] = {"load_s": round(load_s, 1)}
    with threadpool_limits(1, user_api="blas"):
        for ex in EXAMPLES:
            parsed = [MineQuery.model_validate_json(body(rows, k)) for rows in sets[ex]]
            for q in parsed[:3]:
                loaded.miner.mine(q)
            wall, cpu, recalls, totals = [], [], [], []
            for q, gt in zip(parsed, truth[ex], strict=True):
                t, c = time.perf_counter(), time.thread_time()
                result = loaded.miner.mine(q)
                wall.append((time.perf_counter() - t) * 1e3)
                cpu.append((time.thread_time() - c) * 1e3)
                totals.append(result.timings.total_ms)
                got = [row_of(cand.image_id) for cand in result.candidates]
                recalls.append(len(np.intersect1d(got, gt)) / len(gt))
            out[str(ex)] = {"recall": round(float(np.mean(recalls)), 4), "min_recall": round(float(np.min(recalls)), 3),
                            "p50_ms": round(float(np.percentile(wall, 50)), 3),
                            "p99_ms": round(float(np.percentile(wall, 99)), 3),
                            "cpu_p50_ms": round(float(np.percentile(cpu, 50)), 3),
                            "miner_total_p50_ms": round(float(np.median(totals)), 3), "queries": len(parsed)}
    return out


def label(bundle: Path, mask: npt.NDArray[np.bool_]) -> float:
    """Insert the masked rows into state.sqlite's images table as "labeled"; return seconds.

    A bulk insert (no label events; StateDB.set_state took ~0.3 ms a row here, 25 min for 5M).
    Only these rows are registered (an indexer-built bundle registers every image): the Miner's
    row states read only the images that are not unlabeled.
    """
    from edgemine.bundle.images_sync import encode_metadata
    from edgemine.bundle.layout import BundlePaths, utc_now
    from edgemine.bundle.state import StateDB

    t0 = time.perf_counter()
    db = StateDB(BundlePaths(bundle).state_db)
    chosen, now = np.flatnonzero(mask), utc_now()
    for start in range(0, len(chosen), 200_000):
        rows = [int(r) for r in chosen[start:start + 200_000]]
        meta = [encode_metadata({"sequence_id": f"seq{r // FRAMES_PER_SEQUENCE:06d}",
                                 "frame": r % FRAMES_PER_SEQUENCE, "camera": "front"}) for r in rows]
        with db.write() as conn:
            conn.executemany("INSERT INTO images (image_id, path, metadata, vec_id, state, state_updated_at) "
                             "VALUES (?, NULL, ?, ?, 'labeled', ?)",
                             [(image_id_of(r), m, r, now) for r, m in zip(rows, meta, strict=True)])
    return round(time.perf_counter() - t0, 1)


def over_http(bundle: Path, root: Path, sets: dict[int, list[Any]], truth: dict[int, list[Any]],
              k: int) -> dict[str, Any]:
    """Start one `edgemine serve` worker from `root`; time /v1/mine client-side; measure recall."""
    from tests.support.live_server import serving

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as logs:
        t0 = time.perf_counter()
        with serving(bundle, Path(logs), workers=1, env={"PYTHONPATH": str(root)}, name="ten-million",
                     ready_timeout=900) as base:
            out["startup_s"] = round(time.perf_counter() - t0, 1)
            client = Client(base, keep_alive=True)
            for ex in EXAMPLES:
                bodies = [body(rows, k) for rows in sets[ex]]
                for b in bodies[:3]:
                    client.mine(b)
                client_ms, server_ms, recalls = [], [], []
                for b, gt in zip(bodies, truth[ex], strict=True):
                    assert client.conn is not None
                    t = time.perf_counter()
                    client.conn.request("POST", "/v1/mine", b, {"Content-Type": "application/json"})
                    response = client.conn.getresponse()
                    raw = response.read()
                    client_ms.append((time.perf_counter() - t) * 1e3)
                    if response.status != 200:
                        raise RuntimeError(f"HTTP {response.status}: {raw[:300]!r}")
                    data = json.loads(raw)
                    server_ms.append(float(data["timings"]["total_ms"]))
                    got = [row_of(c["image_id"]) for c in data["candidates"]]
                    recalls.append(len(np.intersect1d(got, gt)) / len(gt))
                out[str(ex)] = {"p50_ms": round(float(np.percentile(client_ms, 50)), 3),
                                "p99_ms": round(float(np.percentile(client_ms, 99)), 3),
                                "server_total_p50_ms": round(float(np.median(server_ms)), 3),
                                "recall": round(float(np.mean(recalls)), 4),
                                "min_recall": round(float(np.min(recalls)), 3), "queries": len(bodies)}
    return out


def main(argv: list[str] | None = None) -> int:
    """Measure in process at 0% and 50% excluded, then over HTTP at 50%; update the result files."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True, help="bench_10m.py's --work (train_rows.npy, truth.npz)")
    ap.add_argument("--result", type=Path, required=True, help="bench_10m.py's result JSON, updated in place")
    ap.add_argument("--queries", type=int, default=40, help="as given to bench_10m.py")
    ap.add_argument("--tune-queries", type=int, default=20, help="as given to bench_10m.py")
    ap.add_argument("--seed", type=int, default=0, help="as given to bench_10m.py")
    ap.add_argument("--source-root", type=Path, default=ROOT, help="tree `edgemine serve` runs from")
    ap.add_argument("--no-http", action="store_true")
    ap.add_argument("--levels", default="0,50", help="exclusion levels (percent) to measure in process")
    args = ap.parse_args(argv)
    result = json.loads(args.result.read_text())
    n, k = result["n"], result["k"]
    sets, truths = eval_sets_and_truth(n, args.work, args.tune_queries, args.queries, args.seed)
    if (args.bundle / "state.sqlite").exists():
        raise SystemExit(f"{args.bundle}/state.sqlite exists: this script labels rows; start from a fresh state")
    miner: dict[str, Any] = {}
    from edgemine.bundle.layout import BundlePaths
    from edgemine.bundle.state import StateDB

    StateDB(BundlePaths(args.bundle).state_db)  # the service needs one; nothing labeled yet
    levels = {int(v) for v in args.levels.split(",")}
    for m, fraction in enumerate(bench_10m.EXCLUDED):
        if int(fraction * 100) not in levels:
            continue
        mask = excluded_mask(n, fraction, args.seed + 1)
        if mask.any():
            result["label_s"] = label(args.bundle, mask)
        measured = in_process(args.bundle, sets, truths[m], k)
        result[f"miner_load_s_{int(fraction * 100)}pct"] = measured.pop("load_s")
        for ex, row in measured.items():
            miner[f"{ex}ex_{int(fraction * 100)}pct"] = row
            print(f"miner {ex} examples, {fraction:.0%} excluded: {row}", flush=True)
        gc.collect()
    result["miner"] = miner
    result["miner_uptime"] = os.popen("uptime").read().strip()
    if not args.no_http:
        # The state now excludes the highest level measured in process (none: 0%).
        m = max([i for i, f in enumerate(bench_10m.EXCLUDED) if int(f * 100) in levels], default=0)
        http = over_http(args.bundle, args.source_root, sets, truths[m], k)
        pct = int(bench_10m.EXCLUDED[m] * 100)
        result["http"] = {f"{ex}ex_{pct}pct": http[ex] for ex in ("1", "10")}
        result["http_startup_s"] = http["startup_s"]
        result["http_uptime"] = os.popen("uptime").read().strip()
    result["miner_command"] = " ".join(["python", *sys.argv])
    write_report(args.result.parent, args.result.stem, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
