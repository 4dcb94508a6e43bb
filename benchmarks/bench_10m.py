"""Build a 10M x 512 format-2 bundle (float16 embeddings, IVF-PQ) directly on disk, and measure it.

    nice -n 5 python benchmarks/bench_10m.py --n 10M --bundle /work/big/bundle-10m \\
        --work /work/big/bench-10m-work --out benchmarks/results/DATE

Steps, each timed with the process's peak RSS (resumable: a finished step is recorded in
<bundle>/bench-10m-build.json and skipped when the script runs again):
1. generate: drive-like unit vectors (benchmarks/synthetic.py, streamed in blocks) written as
   float16 into segments/s000001/embeddings.npy, with catalog.parquet (vec_id, image_id, path=None,
   fingerprint, sequence_id, frame, camera); a uniform random training sample kept as float32.
2. train: the index `search/plan.py choose_index` picks for n x d in --memory-budget (10M x 512,
   4G: IVF16384_HNSW32,PQ64x4fs); coarse centroids by the library's spherical k-means on the sample,
   then FAISS trains the PQ codec. The trained, empty index is versions/v000001/index.faiss.
3. add: every row (float16 -> float32 per block) into a copy; written as the segment's index.faiss.
4. truth: exact top-k for all query sets and both exclusion levels in ONE blocked pass.
5. tune: smallest nprobe / rerank_factor reaching --target recall@k on the tuning query sets
   (1 and 10 examples), at 0% and at 50% excluded (the latter stored as IndexInfo.filtered).
6. publish: manifest.json (format_version 2, one SegmentRef float16 has_index=True) and CURRENT.
7. measure: held-out evaluation sets (not the tuning ones) through edgemine.search.Searcher as
   the Miner uses it (candidates for all examples in one call, exact max-cosine re-scoring of
   them with the float16 embeddings), FAISS and BLAS single-threaded as the service runs them.
Queries are k=100; 1 example = one frame, 10 examples = 10 frames of one sequence (as
bench_service.py); examples never in the training sample and never returned; 50% excluded = a
seeded random half of the rows (as labeled rows are). Writes <out>/ten-million.{json,md}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import format2
from bench_10m_queries import ExactFallback, exact_truth, excluded_mask, mine_rows, query_sets, run_sets
from bench_search import parse_size
from synthetic import FRAMES_PER_SEQUENCE, clip_like_blocks

import edgemine
import edgemine.search.kmeans as kmeans_module
from edgemine.bundle.layout import (
    INDEX,
    SEGMENTS,
    Counts,
    FilteredTuning,
    IndexInfo,
    Manifest,
    ModelInfo,
    SegmentRef,
    utc_now,
)
from edgemine.search.plan import choose_index, parse_memory
from edgemine.search.searcher import Searcher

SEGMENT = "s000001"
VERSION = 1
BLOCK = 100_000
K = 100
IVF_GRID = [8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]
# 4-bit PQ distances are coarse: a pool of 1.5 x k re-ranked never reached 0.95 in trials (200k).
RERANK_GRID = [3.0, 6.0, 12.0, 24.0]
EXCLUDED = (0.0, 0.5)
MODEL = ModelInfo(identity="byo:bench", name="bench", pretrained="external")  # as bench_service.py
STATE = "bench-10m-build.json"


def peak_rss_mb() -> float:
    """Return this process's peak resident set size so far, in MB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def load_state(bundle: Path) -> dict[str, Any]:
    """Return the steps already done (bench-10m-build.json), or an empty record."""
    path = bundle / STATE
    return dict(json.loads(path.read_text())) if path.is_file() else {"steps": {}}


def save_state(bundle: Path, state: dict[str, Any]) -> None:
    """Record the steps done so far."""
    (bundle / STATE).write_text(json.dumps(state, indent=2))


def generate(bundle: Path, work: Path, n: int, d: int, train_size: int, seed: int) -> dict[str, Any]:
    """Stream the vectors into the segment (float16) and its catalog; keep the training sample."""
    seg = format2.partial_dir(bundle, SEGMENT)
    emb = format2.EmbeddingsFile(seg / "embeddings.npy", n, d, "float16")
    catalog = format2.CatalogWriter(seg, {"sequence_id": pa.string(), "frame": pa.int64(),
                                          "camera": pa.string()})
    train_rows = np.sort(np.random.default_rng(seed + 7).choice(n, train_size, replace=False))
    sample = np.empty((train_size, d), np.float32)
    blocks = clip_like_blocks(n, d, seed, BLOCK)
    next(blocks)  # the rare rows: not used here
    for start, block in blocks:
        stop = start + len(block)
        emb.write(start, block)
        lo, hi = np.searchsorted(train_rows, [start, stop])
        sample[lo:hi] = block[train_rows[lo:hi] - start]
        rows = np.arange(start, stop)
        seq, frame = rows // FRAMES_PER_SEQUENCE, rows % FRAMES_PER_SEQUENCE
        seq_ids = [f"seq{s:06d}" for s in seq]
        image_ids = [f"drive/{s}/frame{f:03d}.jpg" for s, f in zip(seq_ids, frame, strict=True)]
        catalog.write({"vec_id": rows, "image_id": image_ids,
                       "path": [None] * len(rows),
                       # as read_embeddings_source fingerprints precomputed vectors
                       "fingerprint": [f"vec:{hashlib.sha1(v.tobytes()).hexdigest()[:16]}" for v in block],
                       "sequence_id": seq_ids, "frame": frame, "camera": ["front"] * len(rows)})
    catalog.close()
    emb.close()
    np.save(work / "train.npy", sample)
    np.save(work / "train_rows.npy", train_rows)
    return {"rows": n, "train_size": train_size}


def train(bundle: Path, work: Path, n: int, d: int, factory: str, nlist: int, iterations: int,
          seed: int) -> dict[str, Any]:
    """Train the coarse quantizer (spherical k-means) and the codec; write the empty index."""
    import faiss

    sample = np.load(work / "train.npy")
    # The library's assign() multiplies CHUNK rows by all centroids at once: 65536 x 16384 floats
    # is 4.3 GB; smaller chunks keep this step's RSS near 1 GB at the same speed.
    kmeans_module.CHUNK = 8192
    t0 = time.perf_counter()
    centroids = kmeans_module.spherical_kmeans(sample, nlist, iterations=iterations, seed=seed)
    kmeans_s = time.perf_counter() - t0
    index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    ivf.quantizer.add(centroids)  # pre-filled quantizer: FAISS then trains only the codec
    t1 = time.perf_counter()
    index.train(sample)
    version_dir = bundle / "versions" / f"v{VERSION:06d}"
    version_dir.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(version_dir / INDEX))
    return {"kmeans_s": round(kmeans_s, 1), "codec_train_s": round(time.perf_counter() - t1, 1),
            "kmeans_iterations": iterations, "nlist": nlist}


def add(bundle: Path, n: int) -> dict[str, Any]:
    """Add every row (vec_id = row) to a copy of the trained index; write the segment's index."""
    import faiss

    seg = bundle / SEGMENTS / f"{SEGMENT}.partial"
    index = faiss.read_index(str(bundle / "versions" / f"v{VERSION:06d}" / INDEX))
    emb = format2.EmbeddingsFile(seg / "embeddings.npy")
    for start in range(0, n, BLOCK):
        block = emb.read(start, start + BLOCK)
        index.add_with_ids(block, np.arange(start, start + len(block), dtype=np.int64))
    faiss.write_index(index, str(seg / INDEX))
    format2.finish_segment(bundle, SEGMENT)
    return {"ntotal": int(index.ntotal)}


def tune_level(searcher: Searcher, emb: Any, sets: dict[int, list[npt.NDArray[np.int64]]],
               truth: dict[int, list[npt.NDArray[np.int64]]], excluded: npt.NDArray[np.bool_], level: float,
               target: float, k: int) -> dict[str, Any]:
    """Return the cheapest (CPU p50) nprobe / rerank_factor whose recall@k meets `target` for every
    number of examples at this exclusion level (or the best recall found, flagged), with all trials."""
    assert searcher.ivf is not None
    grid = [v for v in IVF_GRID if v <= searcher.ivf.nlist // 2]
    trials, best = [], None
    for rerank in RERANK_GRID:
        history: list[float] = []
        for nprobe in grid:
            params = {"nprobe": float(nprobe), "rerank_factor": rerank}
            if level == 0:
                searcher.params = params
            else:  # as IndexInfo.filtered is read: params tuned where (1 - level) of the rows are eligible
                searcher.filtered = [(1 - level, params)]
            try:
                by_ex = {str(ex): run_sets(searcher, emb, sets[ex], truth[ex], excluded, k) for ex in sets}
            except ExactFallback:  # nprobe beyond nlist / 2 at this level: not an ANN setting
                break
            recall = min(r["recall"] for r in by_ex.values())
            cost = sum(r["cpu_p50_ms"] for r in by_ex.values())
            trial = {"params": params, "recall": {ex: r["recall"] for ex, r in by_ex.items()},
                     "cpu_p50_ms": {ex: r["cpu_p50_ms"] for ex, r in by_ex.items()},
                     "p50_ms": {ex: r["p50_ms"] for ex, r in by_ex.items()}, "met": recall >= target}
            trials.append(trial)
            print(f"tune excluded={level}: {trial}", flush=True)
            key = (trial["met"], -cost if trial["met"] else recall)
            if best is None or key > best[0]:
                best = (key, trial)
            if recall >= target:
                break
            history.append(recall)
            # More lists do not help once the re-ranking pool is what limits recall: next factor.
            if len(history) >= 3 and history[-1] < history[-3] + 0.005:
                break
    assert best is not None
    chosen = best[1]
    if level == 0:
        searcher.params = dict(chosen["params"])
    else:
        searcher.filtered = [(1 - level, dict(chosen["params"]))]
    return {"chosen": chosen, "trials": trials}


def open_searcher(bundle: Path, n: int, index_info: IndexInfo | None = None) -> tuple[Searcher, Any]:
    """Return a Searcher over the segment's index (FAISS single-threaded) and the float16 embeddings."""
    import faiss

    faiss.omp_set_num_threads(1)  # as the service runs it
    seg = bundle / SEGMENTS / SEGMENT
    index = faiss.read_index(str(seg / INDEX))
    params = index_info.search_params if index_info else {"nprobe": 16.0, "rerank_factor": 1.5}
    filtered = [(1 - f.excluded, f.params) for f in index_info.filtered] if index_info else []
    searcher = Searcher(index, "ivf", dict(params), np.arange(n, dtype=np.int64), filtered)
    return searcher, np.load(seg / "embeddings.npy", mmap_mode="r")


def loadavg() -> float:
    """Return the 1-minute load average."""
    return round(os.getloadavg()[0], 2)


def uptime() -> str:
    """Return `uptime`'s line (machine load at this moment)."""
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def step(state: dict[str, Any], bundle: Path, name: str, fn: Any, *args: Any) -> dict[str, Any]:
    """Run one build step unless recorded as done; record its time, peak RSS and load."""
    done: dict[str, Any] = state["steps"].get(name, {})
    if done:
        print(f"{name}: done before ({done.get('seconds')} s), skipped", flush=True)
        return done
    print(f"{name}: {utc_now()} {uptime()}", flush=True)
    t0 = time.perf_counter()
    out = fn(*args)
    record = {**out, "seconds": round(time.perf_counter() - t0, 1), "peak_rss_MB": peak_rss_mb(),
              "finished": utc_now(), "loadavg_end": loadavg()}
    state["steps"][name] = record
    save_state(bundle, state)
    print(f"{name}: {record}", flush=True)
    return record


def main(argv: list[str] | None = None) -> int:
    """Build (or resume) the bundle, tune, publish, measure; write <out>/ten-million.{json,md}."""
    from bench_10m_report import write_report
    from threadpoolctl import threadpool_limits

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", default="10M", help="vectors (e.g. 10M, 20k)")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--bundle", type=Path, required=True, help="bundle directory (big: outside the repo)")
    ap.add_argument("--work", type=Path, required=True, help="scratch for the training sample (deleted after)")
    ap.add_argument("--out", type=Path, required=True, help="where ten-million.{json,md} go")
    ap.add_argument("--memory-budget", default="4G", help="choose_index's budget (default 4G)")
    ap.add_argument("--factory", default="auto", help="FAISS factory; default: choose_index's pick")
    ap.add_argument("--train-size", default="262144", help="uniform training sample (rows)")
    ap.add_argument("--kmeans-iterations", type=int, default=8)
    ap.add_argument("--queries", type=int, default=40, help="evaluation sets per number of examples")
    ap.add_argument("--tune-queries", type=int, default=20, help="tuning sets per number of examples")
    ap.add_argument("--target", type=float, default=0.95, help="recall@100 to tune for")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="ten-million", help="result file stem")
    args = ap.parse_args(argv)
    n, d = parse_size(args.n), args.dim
    args.bundle.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    plan = choose_index(n, d, parse_memory(args.memory_budget), args.factory)
    assert plan.nlist is not None and plan.kind == "ivf", f"bench_10m builds IVF indexes, not {plan.factory}"
    train_size = min(n, parse_size(args.train_size))
    state = load_state(args.bundle)
    state.setdefault("started", utc_now())
    state.update({"n": n, "dim": d, "factory": plan.factory, "reason": plan.reason,
                  "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])})
    t_build = time.perf_counter()
    step(state, args.bundle, "generate", generate, args.bundle, args.work, n, d, train_size, args.seed)
    step(state, args.bundle, "train", train, args.bundle, args.work, n, d, plan.factory, plan.nlist,
         args.kmeans_iterations, args.seed)
    step(state, args.bundle, "add", add, args.bundle, n)
    (args.work / "train.npy").unlink(missing_ok=True)  # only the train step reads it
    train_rows = np.load(args.work / "train_rows.npy")
    examples = (1, 10)
    tune_sets = {ex: query_sets(n, train_rows, args.tune_queries, ex, args.seed + 100 + ex) for ex in examples}
    eval_sets = {ex: query_sets(n, train_rows, args.queries, ex, args.seed + 200 + ex) for ex in examples}
    masks = [excluded_mask(n, f, args.seed + 1) for f in EXCLUDED]
    all_sets = [s for ex in examples for s in tune_sets[ex] + eval_sets[ex]]
    searcher, emb = open_searcher(args.bundle, n)
    truth_file = args.work / "truth.npz"

    def truth_step() -> dict[str, Any]:
        flat = exact_truth(format2.EmbeddingsFile(args.bundle / SEGMENTS / SEGMENT / "embeddings.npy"),
                           all_sets, masks, K)
        np.savez(truth_file, **{f"m{m}_q{q}": r for m, level in enumerate(flat) for q, r in enumerate(level)})  # type: ignore[arg-type]
        return {"query_sets": len(all_sets), "levels": list(EXCLUDED), "examples": int(sum(map(len, all_sets)))}

    step(state, args.bundle, "truth", truth_step)
    saved = np.load(truth_file)
    flat_truth = [[saved[f"m{m}_q{q}"] for q in range(len(all_sets))] for m in range(len(masks))]

    def split(level: int) -> tuple[dict[int, list[Any]], dict[int, list[Any]]]:
        it = iter(flat_truth[level])
        tune_t, eval_t = {}, {}
        for ex in examples:
            tune_t[ex] = [next(it) for _ in tune_sets[ex]]
            eval_t[ex] = [next(it) for _ in eval_sets[ex]]
        return tune_t, eval_t

    with threadpool_limits(1, user_api="blas"):  # the service runs BLAS single-threaded too
        for q in tune_sets[10][:5]:  # warm-up: index pages, candidate rows
            mine_rows(searcher, emb, q, np.ones(n, bool), n, K)

        def tune_step() -> dict[str, Any]:
            return {str(f): tune_level(searcher, emb, tune_sets, split(m)[0], masks[m], f, args.target, K)
                    for m, f in enumerate(EXCLUDED)}

        tuned = step(state, args.bundle, "tune", tune_step)
        build_s = round(sum(state["steps"][s]["seconds"] for s in ("generate", "train", "add")), 1)
        info = IndexInfo(type="ivf", factory=plan.factory, reason=plan.reason, nlist=plan.nlist,
                         search_params=tuned["0.0"]["chosen"]["params"], train_size=train_size, trained_on=n,
                         build_seconds=build_s,
                         bytes_per_vector=round((args.bundle / SEGMENTS / SEGMENT / INDEX).stat().st_size / n, 2),
                         tuned_k=K, recall_at_k=min(tuned["0.0"]["chosen"]["recall"].values()),
                         held_out_queries=sum(len(s) for s in tune_sets.values()), target_recall=args.target,
                         p50_ms=max(tuned["0.0"]["chosen"]["p50_ms"].values()),
                         filtered=[FilteredTuning(excluded=0.5, params=tuned["0.5"]["chosen"]["params"],
                                                  recall=tuned["0.5"]["chosen"]["recall"],
                                                  met_target=tuned["0.5"]["chosen"]["met"])])
        now = utc_now()
        manifest = Manifest(format_version=format2.FORMAT, version=VERSION, model=MODEL, dim=d, index=info,
                            counts=Counts(images=n, added=n), next_vec_id=n,
                            segments=[SegmentRef(name=SEGMENT, rows=n, vec_id_start=0, vec_id_end=n,
                                                 dtype="float16", has_index=True)],
                            metadata_columns=["sequence_id", "frame", "camera"], created_at=now, updated_at=now,
                            edgemine_version=edgemine.__version__)
        format2.publish(args.bundle, manifest)
        layout = format2.check_layout(args.bundle)
        searcher.params = dict(info.search_params)
        searcher.filtered = [(1 - f.excluded, f.params) for f in info.filtered]
        load = uptime()
        measured = {}
        for m, f in enumerate(EXCLUDED):
            eval_t = split(m)[1]
            for ex in examples:
                measured[f"{ex}ex_{int(f * 100)}pct"] = run_sets(searcher, emb, eval_sets[ex], eval_t[ex], masks[m], K)
                print(f"measured {ex} examples, {f:.0%} excluded: {measured[f'{ex}ex_{int(f * 100)}pct']}",
                      flush=True)
    result = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "command": state["command"], "n": n, "dim": d,
              "k": K, "factory": plan.factory, "reason": plan.reason, "train_size": train_size,
              "build_s": build_s, "build_wall_s_this_run": round(time.perf_counter() - t_build, 1),
              "steps": state["steps"], "files": format2.file_bytes(args.bundle), "layout_check": layout,
              "manifest_index": info.model_dump(), "measure_uptime": load, "measure_peak_rss_MB": peak_rss_mb(),
              "searcher": measured, "cpus": os.cpu_count(),
              "threads": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
    write_report(args.out, args.name, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
