"""Join bench_search runs of one size (peers split over runs to fit in memory) into one comparison.

Absolute latencies from different runs on a shared machine do not compare, so every row's p50/p99
is divided by edgemine-auto's p50 in the same run and scenario (edgemine-auto = 1.0); the first
run's edgemine and numpy rows stay as the reference, the other runs contribute their peers only.
A peer measured in several runs (e.g. rerun after an adapter fix) is taken from the last of them.

    python benchmarks/peer_merge.py runA/peers-A-1M.json runB/peers-B-1M.json --out results/peers-1M-all

Writes <out>.json, <out>.md (equal-recall table and sweep curves, relative latency) and <out>.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import peer_report

REFERENCE = "edgemine-auto"
OWN = ("edgemine-", "numpy")  # methods every run measures: kept from the first run only


def relative(res: dict[str, Any], keep_own: bool) -> list[dict[str, Any]]:
    """One run's rows with p50/p99 divided by edgemine-auto's p50 in the same scenario."""
    ref = {(r["examples"], r["excluded"]): r["p50_ms"] for r in res["results"] if r["method"] == REFERENCE}
    rows = []
    for r in res["results"]:
        if not keep_own and r["method"].startswith(OWN):
            continue
        base = ref.get((r["examples"], r["excluded"]))
        if not base:
            continue
        rows.append({**r, "p50_ms": round(r["p50_ms"] / base, 4), "p99_ms": round(r["p99_ms"] / base, 4),
                     "abs_p50_ms": r["p50_ms"], "run_reference_p50_ms": base})
    return rows


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs as one result set in relative latency units."""
    first = runs[0]
    if any(r["n"] != first["n"] or r["k"] != first["k"] for r in runs):
        raise SystemExit("runs differ in n or k: merge runs of one size only")
    last_run = {peer_report.split_method(r["method"])[0]: i for i, res in enumerate(runs) for r in res["results"]}
    results = [row for i, res in enumerate(runs) for row in relative(res, keep_own=i == 0)
               if (i == 0 and row["method"].startswith(OWN))
               or last_run[peer_report.split_method(row["method"])[0]] == i]
    peers = {name: info for res in runs for name, info in res.get("peers", {}).items()}
    return {**{k: v for k, v in first.items() if k not in ("results", "peers")}, "results": results,
            "peers": peers, "runs": [{"loadavg_start": r.get("loadavg_start"), "loadavg_end": r.get("loadavg_end"),
                                      "bandwidth": r.get("bandwidth"), "peak_rss_MB": r.get("peak_rss_MB"),
                                      "peers": sorted(r.get("peers", {}))} for r in runs],
            "latency_unit": "p50 / edgemine-auto p50 in the same run and scenario"}


def main() -> None:
    """Merge, then write the JSON, Markdown and plot."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="bench_search JSON files of one size (first: reference)")
    parser.add_argument("--out", type=Path, required=True, help="output path without suffix")
    args = parser.parse_args()
    runs = []
    for path in args.runs:
        data = json.loads(path.read_text())
        runs.extend(data if isinstance(data, list) else [data])
    res = merge(runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2))
    peer_report.plot(res, args.out.with_suffix(".png"), xlabel="p50 / edgemine-auto p50 (same run; log)")
    lines = [f"### n = {res['n']:,} x {res['d']}, k = {res['k']}: all peers, {len(runs)} runs joined", "",
             "Latencies are relative: each row's p50 (p99) divided by edgemine-auto's p50 in the same run and "
             "scenario, so edgemine-auto is 1 and 3 means three times slower. Runs: "
             + "; ".join(f"{', '.join(r['peers'])} (load {r['loadavg_start']} -> {r['loadavg_end']})"
                         for r in res["runs"]) + ".", ""]
    lines += [f"![recall vs relative p50 per scenario]({args.out.with_suffix('.png').name})", ""]
    lines += [*peer_report.equal_recall_table(res), "", *peer_report.curve_table(res)]
    lines += ["", "Command: `python benchmarks/peer_merge.py " + " ".join(str(p) for p in args.runs)
              + f" --out {args.out}`"]
    text = "\n".join(lines).replace("p50 ms", "p50 (rel.)").replace("p99 ms", "p99 (rel.)").replace(" ms)", " rel.)")
    args.out.with_suffix(".md").write_text(text.replace("recall@k / p50 ms", "recall@k / relative p50") + "\n")
    print(text)


if __name__ == "__main__":
    main()
