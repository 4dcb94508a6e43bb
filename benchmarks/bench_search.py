"""Search hot path at scale: edgemine (auto index and exact mode) against peers, same exclusions.

Data: synthetic CLIP-like vectors (benchmarks/synthetic.py) with a planted rare cluster.
Scenarios: 1, 10 and 50 examples; k results; 0%, 50% and 95% of the collection excluded
(labeled). Methods are timed interleaved, query set by query set, so that load from elsewhere
on the machine falls on all of them alike. Half of the query sets mine the rare cluster, half start from random frames.
Recall@k is against exact filtered ground truth (score = max cosine over the examples).
With --strategies max,probe, edgemine's `probe` strategy (a logistic regression fitted per query,
served through the ANN index) runs too: its recall is against the exact miner's probe ranking,
and the Markdown adds its p50 latency relative to `max` (edgemine-auto) per scenario.

Peers (benchmarks/peers.py) apply the same exclusions inside their own search; those with a search knob
(efSearch, nprobes, ...) run at their documented recommended value and a small sweep around it, each sweep
point a method `peer@param=value`, so they are compared at equal recall (benchmarks/peer_report.py).

    python benchmarks/bench_search.py --sizes 100k,1M --out bench-results/search

Writes <out>/<prefix>-<size>.json, .md and, with peers, a recall-vs-p50 plot per scenario (.png).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import clip_like

from edgemine.bundle.layout import ModelInfo
from edgemine.bundle.snapshot import load_current
from edgemine.bundle.state import StateDB
from edgemine.indexer.job import IndexOptions, ModelChoice, run_index
from edgemine.indexer.sources import Source, SourceItem
from edgemine.search.plan import parse_memory
from edgemine.service.miner import Miner
from edgemine.service.query import MineQuery
from edgemine.service.runtime import Runtime


def parse_size(text: str) -> int:
    """Parse 100k / 1M / 10M."""
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("km")) * scale)


def rss_bytes() -> int:
    """Return the current resident set size."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Return the peak resident set size of this process."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def exact_max(embeddings: np.ndarray, examples: np.ndarray, excluded: np.ndarray, k: int) -> np.ndarray:
    """Ground truth: top-k rows by max cosine over examples among rows not excluded."""
    score = (embeddings @ examples.T).max(axis=1)
    score[excluded] = -np.inf
    top = np.argpartition(-score, k)[:k]
    return top[np.argsort(-score[top])]


def bandwidth(embeddings: np.ndarray, repeats: int = 5) -> dict[str, float]:
    """Measure read bandwidth as the best time of one GEMV pass over the embeddings."""
    q = np.ones(embeddings.shape[1], np.float32)
    best = min(_timed(lambda: embeddings @ q) for _ in range(repeats))
    return {"gemv_pass_ms": round(best * 1e3, 2), "read_GBps": round(embeddings.nbytes / best / 1e9, 2)}


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def build_bundle(vectors: np.ndarray, bundle: Path, budget: int) -> tuple[float, dict[str, Any]]:
    """Index the vectors as precomputed embeddings; return seconds and the manifest's index info."""
    items = [SourceItem(f"img{i:08d}", None, f"v{i}") for i in range(len(vectors))]
    source = Source("embeddings", bundle, items, [], vectors)
    choice = ModelChoice(ModelInfo(identity="byo:bench", name="bench", pretrained="external"), None)
    start = time.perf_counter()
    run_index(source, bundle, choice, progress=False, options=IndexOptions("auto", budget))
    seconds = time.perf_counter() - start
    return seconds, load_current(bundle).manifest.index.model_dump()


def query_sets(n: int, rare: np.ndarray, m: int, count: int, seed: int) -> list[np.ndarray]:
    """Half the sets from the rare cluster, half random frames."""
    rng = np.random.default_rng(seed)
    sets = []
    for i in range(count):
        pool = rare if i % 2 == 0 and len(rare) >= m else np.arange(n)
        sets.append(np.sort(rng.choice(pool, m, replace=False)))
    return sets


def summarize(times: list[float], recalls: list[float]) -> dict[str, float]:
    """Return p50/p99 ms, queries/s and mean recall."""
    arr = np.array(times) * 1e3
    return {"p50_ms": round(float(np.percentile(arr, 50)), 3), "p99_ms": round(float(np.percentile(arr, 99)), 3),
            "qps": round(float(1e3 / arr.mean()), 2), "recall": round(float(np.mean(recalls)), 4),
            "queries": len(times)}


def run_size(n: int, args: argparse.Namespace, peers_mod: Any) -> dict[str, Any]:
    """Run every scenario at one collection size."""
    out: dict[str, Any] = {"n": n, "d": args.dim, "k": args.k, "cpus": os.cpu_count(),
                           "loadavg_start": round(os.getloadavg()[0], 2)}
    start = time.perf_counter()
    vectors, rare = clip_like(n, args.dim, seed=args.seed)
    out["generate_s"] = round(time.perf_counter() - start, 2)
    out["bandwidth"] = bandwidth(vectors)
    tmp = Path(tempfile.mkdtemp(prefix="edgemine-bench-", dir=args.tmp))
    rss0 = rss_bytes()
    bundle = args.reuse_bundle or args.bundle or tmp / "bundle"
    if args.reuse_bundle:
        build_s, index_info = 0.0, load_current(bundle).manifest.index.model_dump()
    elif args.bundle and (bundle / "state.sqlite").exists():
        # Reuse a bundle built from the same --seed/--sizes (1M runs split by peer to fit in memory):
        # every row back to unlabeled first.
        build_s, index_info = -1.0, load_current(bundle).manifest.index.model_dump()
        n_ids = len(load_current(bundle).image_ids)
        StateDB(bundle / "state.sqlite").set_state([f"img{i:08d}" for i in range(n_ids)], "unlabeled")
    else:
        build_s, index_info = build_bundle(vectors, bundle, parse_memory(args.memory_budget))
    runtime = Runtime(bundle)
    loaded = runtime.current()
    ann: Miner = loaded.miner
    if args.reuse_bundle:
        StateDB(bundle / "state.sqlite").set_state(list(loaded.snapshot.image_ids), "unlabeled")
        if ann.searcher is not None:  # the levels as the current code tunes them
            index_info["filtered"] = _tune_filtered(ann.searcher, vectors, args.seed)
    exact = Miner(loaded.snapshot, ann.states, None, searcher=None)
    ids = loaded.snapshot.image_ids
    out["edgemine"] = {"build_s": round(build_s, 2), "index": index_info,
                       "rss_after_load_MB": round((rss_bytes() - rss0) / 2**20, 1)}
    state = StateDB(bundle / "state.sqlite")
    peers = []
    for peer in peers_mod.make_peers(args.peers) if peers_mod else []:
        before = rss_bytes()
        t0 = time.perf_counter()
        peer.build(vectors, tmp / peer.name)
        mem = peer.memory_bytes()
        out.setdefault("peers", {})[peer.name] = {
            "build_s": round(time.perf_counter() - t0, 2), "notes": peer.notes,
            "bytes_per_vector": round((mem if mem else rss_bytes() - before) / n, 1),
            **peers_mod.sweep_info(peer)}
        print(json.dumps({"built": peer.name, **out["peers"][peer.name]}), flush=True)
        peers.append(peer)
    default_threads = faiss.omp_get_max_threads()
    ones = np.ones(args.dim, np.float32)
    rng = np.random.default_rng(args.seed + 1)
    order = rng.permutation(n)
    results: list[dict[str, Any]] = []
    labeled_so_far = 0
    for frac in args.excluded:
        target = int(frac * n)
        newly = order[labeled_so_far:target]
        if len(newly):
            state.set_state([ids[i] for i in newly], "labeled")
        labeled_so_far = max(labeled_so_far, target)
        excluded = np.zeros(n, bool)
        excluded[order[:labeled_so_far]] = True
        for peer in peers:
            peer.set_excluded(excluded)
        for m in args.examples:
            sets = query_sets(n, rare, m, args.query_sets, seed=args.seed + m)
            truth = []
            for rows in sets:
                mask = excluded.copy()
                mask[rows] = True
                truth.append(exact_max(vectors, vectors[rows], mask, args.k))
            methods: dict[str, Any] = {
                "edgemine-auto": lambda rows: _mine(ann, ids, rows, args.k),
                "edgemine-exact": lambda rows: _mine(exact, ids, rows, args.k),
            }
            truths = {name: truth for name in methods}
            if "probe" in args.strategies:
                methods["edgemine-probe"] = lambda rows: _mine(ann, ids, rows, args.k, "probe")
                # The probe's own ground truth: the same fitted probe, every eligible row scored exactly.
                truths["edgemine-probe"] = [np.asarray(_mine(exact, ids, rows, args.k, "probe")) for rows in sets]
            for peer in peers:  # one method per sweep value of a peer's search knob
                for name, method in peers_mod.peer_methods(peer, vectors, args.k).items():
                    methods[name] = method
                    truths[name] = truth
            for row in _measure(methods, truths, sets, args, default_threads, lambda: vectors @ ones):
                results.append({"method": row.pop("method"), "examples": m, "excluded": frac, **row})
                print(json.dumps(results[-1]), flush=True)
    for peer in peers:
        peer.close()
    faiss.omp_set_num_threads(default_threads)
    out["results"] = results
    out["peak_rss_MB"] = round(peak_rss_bytes() / 2**20, 1)
    out["loadavg_end"] = round(os.getloadavg()[0], 2)
    return out


def _measure(methods: dict[str, Any], truths: dict[str, Any], sets: list[np.ndarray],
             args: argparse.Namespace, default_threads: int, one_pass: Any) -> list[dict[str, Any]]:
    """Time every method on every query set, interleaved (set by set, in rotating order).

    Interleaving spreads any background load over all methods alike, so their ratios hold even on
    a shared machine; each method still stops after `seconds_per_scenario` (and >= 3 queries).
    One bandwidth pass (a GEMV over the float32 embeddings) is timed with every query set too:
    each row's `pass_p50_ms` is the floor measured under the same load as its latencies.
    """
    names = list(methods)

    def call(name: str, rows: np.ndarray) -> np.ndarray:
        # edgemine runs FAISS single-threaded, as the service does (its default); peers keep
        # their libraries' defaults.
        faiss.omp_set_num_threads(1 if name.startswith("edgemine") else default_threads)
        return np.asarray(methods[name](rows))

    for name in names:
        for rows in sets[:2]:  # warm-up: mapped pages and lazily built structures
            call(name, rows)
    times: dict[str, list[float]] = {name: [] for name in names}
    recalls: dict[str, list[float]] = {name: [] for name in names}
    spent = dict.fromkeys(names, 0.0)
    passes: list[float] = []
    for i, rows in enumerate(sets):
        passes.append(_timed(one_pass))
        for name in names[i % len(names):] + names[:i % len(names)]:
            if spent[name] > args.seconds_per_scenario and len(times[name]) >= 3:
                continue
            t0 = time.perf_counter()
            got = call(name, rows)
            took = time.perf_counter() - t0
            times[name].append(took)
            spent[name] += took
            recalls[name].append(len(np.intersect1d(got[: args.k], truths[name][i])) / args.k)
    floor = round(float(np.median(passes)) * 1e3, 3)
    return [{"method": name, **summarize(times[name], recalls[name]), "pass_p50_ms": floor} for name in names]


def _tune_filtered(searcher: Any, vectors: np.ndarray, seed: int) -> list[dict[str, Any]]:
    """Tune the exclusion levels of a reused bundle (its manifest's levels may be older or absent).

    Its training sample is redrawn as the build drew it (same seed, same size), so the example
    sets are held out as in a fresh build; the levels apply to this run's searcher only.
    """
    from edgemine.search.build import train_sample_size
    from edgemine.search.filtered import tune_filtered
    from edgemine.search.maintain import TUNE_QUERIES
    from edgemine.search.tune import held_out_rows

    n = len(vectors)
    size = train_sample_size(n, searcher.ivf.nlist if searcher.ivf is not None else None, TUNE_QUERIES)
    train = np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
    start = time.perf_counter()
    levels = tune_filtered(searcher, vectors, held_out_rows(n, train), k=100, seed=seed + 2)
    print(f"filtered tuning of the reused bundle: {time.perf_counter() - start:.1f} s", flush=True)
    return [{"excluded": lv.excluded, "params": lv.params, "met_target": lv.met_target,
             "recall": {str(m): r for m, r in lv.recall.items()},
             "by_examples": {str(m): p for m, p in lv.by_examples.items()}} for lv in levels]


def _mine(miner: Miner, ids: list[str], rows: np.ndarray, k: int, strategy: str = "max") -> list[int]:
    result = miner.mine(MineQuery(positive_ids=[ids[r] for r in rows], k=k, strategy=strategy))  # type: ignore[arg-type]
    return [int(c.image_id[3:]) for c in result.candidates]


def markdown(res: dict[str, Any]) -> str:
    """Render one size's results as a Markdown table."""
    base = {(r["examples"], r["excluded"]): r for r in res["results"] if r["method"] == "numpy"}
    lines = [f"### n = {res['n']:,} x {res['d']}, k = {res['k']}",
             "", f"Memory bandwidth: {res['bandwidth']['read_GBps']} GB/s (one pass over the "
             f"embeddings: {res['bandwidth']['gemv_pass_ms']} ms). edgemine index: "
             f"`{res['edgemine']['index']['factory']}`, params {res['edgemine']['index']['search_params']}, "
             f"build {res['edgemine']['build_s']} s, {res['edgemine']['index']['bytes_per_vector']} B/vector. "
             f"Tuned per exclusion level: {_levels(res['edgemine']['index'].get('filtered') or [])}. "
             f"Peak RSS {res['peak_rss_MB']} MB.", "",
             "`/ pass`: p50 over one bandwidth pass (GEMV over the embeddings) timed between the same "
             "queries (median).", "",
             "| method | examples | excluded | p50 ms | p99 ms | QPS | recall@k | vs numpy (p50) | p50 / pass |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in res["results"]:
        ref = base.get((r["examples"], r["excluded"]))
        ratio = f"{ref['p50_ms'] / r['p50_ms']:.1f}x" if ref else ""
        lines.append(f"| {r['method']} | {r['examples']} | {r['excluded']:.0%} | {r['p50_ms']} | {r['p99_ms']} | "
                     f"{r['qps']} | {r['recall']} | {ratio} | {_per_pass(r)} |")
    maxes = {(r["examples"], r["excluded"]): r for r in res["results"] if r["method"] == "edgemine-auto"}
    probes = [r for r in res["results"] if r["method"] == "edgemine-probe"]
    if probes:
        lines += ["", "`probe` (fit + ANN search + exact re-scoring) against `max` (edgemine-auto), p50:", "",
                  "| examples | excluded | max p50 ms | probe p50 ms | probe / max | probe recall@k (vs exact probe) |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in probes:
            m = maxes[(r["examples"], r["excluded"])]
            lines.append(f"| {r['examples']} | {r['excluded']:.0%} | {m['p50_ms']} | {r['p50_ms']} | "
                         f"{r['p50_ms'] / m['p50_ms']:.2f}x | {r['recall']} |")
    if res.get("peers"):
        lines += ["", "| peer | build s | bytes/vector | configuration |", "| --- | ---: | ---: | --- |"]
        for name, p in res["peers"].items():
            lines.append(f"| {name} | {p['build_s']} | {p['bytes_per_vector']} | {p['notes']} |")
    return "\n".join(lines) + "\n"


def _levels(levels: list[dict[str, Any]]) -> str:
    return "; ".join(f"{lv['excluded']:.0%} excluded: {lv['params']} recall {lv['recall']}"
                     f"{'' if lv['met_target'] else ' (target not met)'}" for lv in levels) or "none (1/p rule)"


def _per_pass(row: dict[str, Any]) -> str:
    floor = row.get("pass_p50_ms")
    return f"{row['p50_ms'] / floor:.1%}" if floor else ""


def main() -> None:
    """Parse arguments, run every size, write JSON and Markdown."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100k,1M", help="comma-separated; 10M for larger machines")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--examples", default="1,10,50")
    parser.add_argument("--excluded", default="0,0.5,0.95")
    parser.add_argument("--query-sets", type=int, default=20)
    parser.add_argument("--seconds-per-scenario", type=float, default=30.0, help="cap for slow methods")
    parser.add_argument("--peers", default="numpy,faiss-flat,hnswlib,qdrant-edge,milvus,usearch,lancedb",
                        help="'' for none; also qdrant-local (pure-Python brute force)")
    parser.add_argument("--prefix", default="search", help="output files <prefix>-<size>.{json,md,png}")
    parser.add_argument("--bundle", type=Path, default=None,
                        help="edgemine bundle to build once and reuse (same size and seed); build_s = -1 when reused")
    parser.add_argument("--memory-budget", default="4G")
    parser.add_argument("--strategies", default="max,probe", help="edgemine strategies: max, or max,probe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tmp", default=None, help="scratch directory (bundles, peer indexes)")
    parser.add_argument("--out", type=Path, default=Path("bench-results/search"))
    parser.add_argument("--reuse-bundle", type=Path, default=None,
                        help="an existing bench bundle of the same size and seed (no build; every row "
                             "reset to unlabeled; exclusion levels re-tuned in the run by the current code)")
    args = parser.parse_args()
    args.examples = [int(x) for x in args.examples.split(",")]
    args.excluded = [float(x) for x in args.excluded.split(",")]
    args.peers = [p for p in args.peers.split(",") if p]
    args.strategies = [s for s in args.strategies.split(",") if s]
    peers_mod = None
    if args.peers:
        import peers as peers_mod  # type: ignore[no-redef]
    args.out.mkdir(parents=True, exist_ok=True)
    for size in args.sizes.split(","):
        n = parse_size(size)
        res = run_size(n, args, peers_mod)
        stem = f"{args.prefix}-{size}"
        (args.out / f"{stem}.json").write_text(json.dumps(res, indent=2))
        table = markdown(res)
        if peers_mod:  # recall/latency curves of the swept peers, equal-recall table and plot
            import peer_report

            peer_report.plot(res, args.out / f"{stem}.png")
            table += peer_report.markdown(res, "python " + " ".join(sys.argv), f"{stem}.png")
        (args.out / f"{stem}.md").write_text(table)
        print(table, flush=True)


if __name__ == "__main__":
    main()
