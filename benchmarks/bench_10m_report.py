"""Write bench_10m.py's result (<out>/<name>.{json,md}) and the cost-growth table with its 10M row.

    python benchmarks/bench_10m_report.py --growth benchmarks/results/2026-12-01/cost-growth.json \
        --ten-million benchmarks/results/2026-12-02/ten-million.json --out benchmarks/results/2026-12-02
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path
from typing import Any

GROWTH_KEYS = ("build_s", "index_bytes_per_vector", "bundle_bytes_per_vector", "p50_ms", "p99_ms", "cpu_p50_ms",
               "recall_at_k")


def _mb(b: int) -> str:
    return f"{b / 1e6:,.1f}"


def markdown(r: dict[str, Any]) -> str:
    """Return the Markdown summary of one bench_10m result."""
    n = r["n"]
    lines = [f"### {n:,} x {r['dim']} format-2 bundle: float16 embeddings, `{r['factory']}` ({r['date']})", "",
             f"Command: `{r['command']}`", "",
             f"Machine: {r['cpus']} CPUs shared with other jobs; load while measuring: `{r['measure_uptime']}`.",
             f"Index choice: {r['reason']} (search/plan.py choose_index). Trained on a uniform sample of "
             f"{r['train_size']:,} rows.", "",
             "| build step | s | peak RSS MB (process) | load avg at end |", "| --- | ---: | ---: | ---: |"]
    for name, s in r["steps"].items():
        lines.append(f"| {name} | {s['seconds']} | {s['peak_rss_MB']} | {s.get('loadavg_end', '')} |")
    lines += ["", f"Build (generate + train + add): {r['build_s']} s.", "",
              "| file | MB | bytes/vector |", "| --- | ---: | ---: |"]
    total = 0
    for path, size in r["files"].items():
        total += size
        lines.append(f"| `{path}` | {_mb(size)} | {size / n:,.2f} |")
    lines += [f"| **total** | {_mb(total)} | {total / n:,.2f} |", "",
              "Queries (k = 100, examples excluded from results; 50% excluded = a seeded random half of the "
              "rows) through `edgemine.search.Searcher` as the Miner uses it: candidates for all examples "
              "in one call, exact max-cosine re-scoring with the float16 embeddings; FAISS and BLAS "
              "single-threaded. Recall@100 against an exact blocked pass over all rows. Tuned: "
              f"{r['manifest_index']['search_params']}; at 50% excluded "
              f"{r['manifest_index']['filtered'][0]['params'] if r['manifest_index']['filtered'] else '-'}.", "",
              "| path | examples | excluded | p50 ms | p99 ms | CPU p50 ms | recall@100 | min recall | queries |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for path_name in ("searcher", "miner", "http"):
        for key, m in r.get(path_name, {}).items():
            ex, pct = key.split("_")
            lines.append(f"| {path_name} | {ex.removesuffix('ex')} | {pct.removesuffix('pct')}% | {m['p50_ms']} | "
                         f"{m['p99_ms']} | {m.get('cpu_p50_ms', '')} | {m.get('recall', '')} | "
                         f"{m.get('min_recall', '')} | {m['queries']} |")
    lines += ["", *r.get("notes", [])]
    return "\n".join(lines) + "\n"


def write_report(out: Path, name: str, result: dict[str, Any]) -> None:
    """Write <out>/<name>.json and <out>/<name>.md."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown(result))


def ten_million_row(r: dict[str, Any]) -> dict[str, Any]:
    """Return bench_10m's result as a cost-growth row (10 examples, 50% excluded, like bench_growth)."""
    n, files = r["n"], r["files"]
    m = r.get("miner", {}).get("10ex_50pct") or r["searcher"]["10ex_50pct"]
    index_bytes = sum(size for path, size in files.items() if path.endswith("index.faiss"))
    served = sum(size for path, size in files.items() if not path.startswith("bench-"))  # not the bench state
    return {"n": n, "build_s": r["build_s"], "index": r["factory"],
            "search_params": r["manifest_index"]["search_params"],
            "index_bytes_per_vector": round(index_bytes / n, 1), "bundle_bytes_per_vector": round(served / n, 1),
            "p50_ms": m["p50_ms"], "p99_ms": m["p99_ms"], "cpu_p50_ms": m["cpu_p50_ms"],
            "recall_at_k": m["recall"], "min_recall": m["min_recall"], "queries": m["queries"],
            "path": "miner" if r.get("miner", {}).get("10ex_50pct") else "searcher",
            "source": f"bench_10m.py, {r['date']}"}


def exponent(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
    """Return b in cost ~ n^b between two rows."""
    if a[key] <= 0 or b[key] <= 0 or a["n"] == b["n"]:
        return None
    return round(math.log(b[key] / a[key]) / math.log(b["n"] / a["n"]), 2)


def growth(previous: dict[str, Any], ten: dict[str, Any]) -> dict[str, Any]:
    """Return the cost-growth table: the earlier run's rows (labelled as such) plus the 10M row."""
    rows = [{**row, "path": "miner", "source": f"bench_growth.py, {previous.get('date', '2026-12-01')} run"}
            for row in previous["rows"] if row["n"] in (100_000, 1_000_000)]
    rows.append(ten_million_row(ten))
    pairs = list(itertools.pairwise(rows))
    return {"k": previous["k"], "rows": rows, "earlier_run": {"command": previous["command"], "note": previous["note"],
                                                               "loadavg": previous["loadavg"]},
            "ten_million_command": ten["command"], "ten_million_uptime": ten["measure_uptime"],
            "exponents": {f"{a['n']:,} -> {b['n']:,}": {k: exponent(a, b, k) for k in GROWTH_KEYS} for a, b in pairs}}


def growth_markdown(g: dict[str, Any]) -> str:
    """Render the cost-growth table and the growth exponents."""
    lines = [f"### Cost growth: 100k, 1M, 10M drive-like vectors, 10 examples of one sequence, k = {g['k']}, "
             "50% excluded", "",
             "| vectors | measured by | index | embeddings | build s | index B/vector | bundle B/vector | p50 ms | "
             "p99 ms | CPU p50 ms | recall@k | min recall |",
             "| ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in g["rows"]:
        # The 10M bundle stores float16 rows; bench_growth's bundles float32 (format 1 before
        # 2026-12-02, format 2 since: the rows in segments).
        emb = "float16" if r["n"] >= 10_000_000 else "float32"
        lines.append(f"| {r['n']:,} | {r['source']} ({r['path']}) | `{r['index']}` {r['search_params']} | {emb} | "
                     f"{r['build_s']} | {r['index_bytes_per_vector']} | {r['bundle_bytes_per_vector']} | "
                     f"{r['p50_ms']} | {r['p99_ms']} | {r['cpu_p50_ms']} | {r['recall_at_k']} | {r['min_recall']} |")
    lines += ["", "Growth as the exponent b in cost ~ n^b between consecutive sizes:", "",
              "| sizes | " + " | ".join(GROWTH_KEYS) + " |", "| --- |" + " ---: |" * len(GROWTH_KEYS)]
    for pair, exps in g["exponents"].items():
        lines.append(f"| {pair} | " + " | ".join(str(exps[k]) for k in GROWTH_KEYS) + " |")
    lines += ["", f"Earlier rows: `{g['earlier_run']['command'].split(' --note')[0]}` (load average "
                  f"{g['earlier_run']['loadavg']}; {g['earlier_run']['note']})",
              f"10M row: `{g['ten_million_command']}`; load while measuring: `{g['ten_million_uptime']}`.", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write <out>/cost-growth.{json,md} from an earlier bench_growth result and a bench_10m result."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--growth", type=Path, required=True, help="an earlier cost-growth.json (100k, 1M rows)")
    ap.add_argument("--ten-million", type=Path, required=True, help="bench_10m.py's JSON")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--note", action="append", default=[], help="a sentence for the report (repeatable)")
    args = ap.parse_args(argv)
    g = growth(json.loads(args.growth.read_text()), json.loads(args.ten_million.read_text()))
    g["notes"] = args.note
    g["command"] = " ".join(["python", *sys.argv])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cost-growth.json").write_text(json.dumps(g, indent=2) + "\n")
    (args.out / "cost-growth.md").write_text(growth_markdown(g) + "".join(f"\n{n}\n" for n in args.note))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
