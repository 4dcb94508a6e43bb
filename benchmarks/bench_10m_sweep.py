"""Sweep nprobe x rerank_factor beyond bench_10m.py's tuning grid on its evaluation sets (recall vs cost).

    python benchmarks/bench_10m_sweep.py --bundle /work/big/bundle-10m --work /work/big/bench-10m-work \\
        --queries 30 --tune-queries 10 --rerank 48,96 --nprobe 8,16 --out benchmarks/results/DATE/ten-million-sweep.json

Measures only (no tuning is stored): what a larger re-ranking pool buys where the tuned grid
missed the recall target. Same query sets, truth and Searcher path as bench_10m.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_10m
from bench_10m_miner import eval_sets_and_truth
from bench_10m_queries import excluded_mask, run_sets


def main(argv: list[str] | None = None) -> int:
    """Measure every (nprobe, rerank_factor) at 0% and 50% excluded; write the rows as JSON."""
    from threadpoolctl import threadpool_limits

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--tune-queries", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rerank", default="48,96")
    ap.add_argument("--nprobe", default="8,16")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    state = bench_10m.load_state(args.bundle)
    n = int(state["n"])
    sets, truths = eval_sets_and_truth(n, args.work, args.tune_queries, args.queries, args.seed)
    searcher, emb = bench_10m.open_searcher(args.bundle, n)
    rows = []
    with threadpool_limits(1, user_api="blas"):
        for m, fraction in enumerate(bench_10m.EXCLUDED):
            mask = excluded_mask(n, fraction, args.seed + 1)
            for rerank in [float(v) for v in args.rerank.split(",")]:
                for nprobe in [float(v) for v in args.nprobe.split(",")]:
                    params = {"nprobe": nprobe, "rerank_factor": rerank}
                    searcher.params, searcher.filtered = dict(params), [(1 - fraction, dict(params))] if m else []
                    for ex, ex_sets in sets.items():
                        row = {"excluded": fraction, "examples": ex, **params,
                               **run_sets(searcher, emb, ex_sets, truths[m][ex], mask, bench_10m.K)}
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    args.out.write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "rows": rows,
                                    "loadavg": bench_10m.uptime()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
