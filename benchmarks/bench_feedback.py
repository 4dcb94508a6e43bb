"""Does review feedback pay off? Simulated mining sessions on a real labeled image set.

Data: scikit-learn's bundled handwritten digits (1,797 real 8x8 scans, 10 classes), either as
raw-pixel vectors indexed into a BYO bundle (`--vectors pixels`, the default), or as PNG images
(upscaled to 64x64) embedded by the real indexer with the bundled `edgemine-tiny` model with
random weights (`--vectors images`; no weights can be downloaded here, so these embeddings are
random features, a much weaker space than CLIP's). Bundles are built in a temporary directory.

A session: pick a target digit, start from 5 of its images as positives, and mine `--per-round`
(20) candidates a round for `--rounds` (5) rounds. A simulated reviewer accepts true members of the
target class and rejects the rest. Each method runs its own session through `Miner.mine`:

- max:              the 5 starting examples only; reviewed images excluded (exclude_ids).
- max+negatives:    strategy max with every accepted image added to positive_ids and every
                    rejected one to negative_ids (negative_weight 0.5, the default).
- probe+feedback:   strategy probe with the same positive_ids / negative_ids.

Reported: cumulative yield (accepted / reviewed) after each round, averaged over every target
class x seed, with a 95% interval (normal approximation over sessions), and the paired difference
probe+feedback - max per round with its own 95% interval.

    python benchmarks/bench_feedback.py --out benchmarks/results/2026-12-01
    python benchmarks/bench_feedback.py --vectors images --out benchmarks/results/2026-12-01

Writes <out>/feedback.json, feedback.md and feedback.png (feedback-images.* for --vectors images).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from edgemine.bundle.layout import ModelInfo
from edgemine.indexer import ModelChoice, read_embeddings_source, run_index
from edgemine.service.miner import Miner
from edgemine.service.query import MineQuery
from edgemine.service.runtime import Runtime

METHODS = ("max", "max+negatives", "probe+feedback")
BYO = ModelChoice(ModelInfo(identity="byo:digits-pixels", name="digits-pixels", pretrained="external"), None)
Z95 = 1.96


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """Return scikit-learn's bundled digits as (pixel vectors [1797 x 64], class labels)."""
    from sklearn.datasets import load_digits as sk_load_digits

    digits = sk_load_digits()
    return np.asarray(digits.data, np.float32), np.asarray(digits.target, np.int64)


def build_miner(vectors: np.ndarray, workdir: Path) -> tuple[Miner, list[str]]:
    """Index the vectors as precomputed embeddings (the indexer L2-normalizes them); return a miner."""
    ids = [f"digit{i:04d}" for i in range(len(vectors))]
    source = workdir / "digits.parquet"
    pq.write_table(pa.table({
        "image_id": ids,
        "embedding": pa.array(np.asarray(vectors, np.float32).tolist(), pa.list_(pa.float32())),
    }), source)
    run_index(read_embeddings_source(source), workdir / "bundle", BYO, progress=False)
    return Runtime(workdir / "bundle").current().miner, ids


def build_image_miner(images: np.ndarray, workdir: Path) -> tuple[Miner, list[str]]:
    """Write the scans as 64x64 PNGs, index them with edgemine-tiny (random weights); return a miner."""
    from PIL import Image

    from edgemine.cli.index import model_choice
    from edgemine.indexer import scan_directory

    root = workdir / "images"
    root.mkdir()
    for i, pixels in enumerate(images):
        gray = np.asarray(pixels.reshape(8, 8) * (255.0 / 16.0), np.uint8)
        Image.fromarray(gray).resize((64, 64), Image.Resampling.NEAREST).convert("RGB").save(root / f"{i:04d}.png")
    choice = model_choice("edgemine-tiny", "none", "cpu", 256)
    run_index(scan_directory(root), workdir / "bundle", choice, workers=0, progress=False)
    miner = Runtime(workdir / "bundle").current().miner
    # Row order is the indexer's; ids name the files, so map back to the scan numbers.
    ids = [""] * len(images)
    for image_id in miner.snapshot.image_ids:
        ids[int(Path(image_id).stem)] = image_id
    return miner, ids


def run_session(miner: Miner, ids: list[str], labels: np.ndarray, target: int, seed: int, method: str,
                start: int, rounds: int, per_round: int) -> dict[str, Any]:
    """Simulate one reviewer session; return per-round cumulative yield and what was reviewed."""
    rng = np.random.default_rng([seed, target])
    members = np.flatnonzero(labels == target)
    examples = [ids[r] for r in rng.choice(members, start, replace=False)]
    row = {image_id: i for i, image_id in enumerate(ids)}
    accepted: list[str] = []
    rejected: list[str] = []
    yields: list[float] = []
    seconds: list[float] = []
    for _ in range(rounds):
        if method == "max":
            query = MineQuery(positive_ids=examples, exclude_ids=accepted + rejected, k=per_round, strategy="max")
        else:
            query = MineQuery(positive_ids=examples + accepted, negative_ids=rejected, k=per_round,
                              strategy="probe" if method == "probe+feedback" else "max")
        t0 = time.perf_counter()
        result = miner.mine(query)
        seconds.append(time.perf_counter() - t0)
        for candidate in result.candidates:
            (accepted if labels[row[candidate.image_id]] == target else rejected).append(candidate.image_id)
        yields.append(len(accepted) / max(1, len(accepted) + len(rejected)))
    reviewed = accepted + rejected
    if len(set(reviewed)) != len(reviewed) or set(reviewed) & set(examples):
        raise AssertionError(f"{method}: an image was shown twice or an example came back")
    return {"target": target, "seed": seed, "method": method, "cumulative_yield": yields,
            "accepted": len(accepted), "reviewed": len(reviewed), "members": len(members),
            "mine_ms_median": round(float(np.median(seconds)) * 1e3, 3)}


def interval(values: np.ndarray) -> tuple[float, float]:
    """Return (mean, 95% half-width) over sessions (normal approximation)."""
    mean = float(values.mean())
    half = float(Z95 * values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
    return mean, half


def summarize(sessions: list[dict[str, Any]], rounds: int) -> dict[str, Any]:
    """Aggregate per method and round; paired differences against plain max."""
    curves = {m: np.array([s["cumulative_yield"] for s in sessions if s["method"] == m]) for m in METHODS}
    out: dict[str, Any] = {"per_method": {}, "paired_vs_max": {}}
    for method, curve in curves.items():
        out["per_method"][method] = [dict(zip(("mean", "ci95"), interval(curve[:, r]), strict=True))
                                     for r in range(rounds)]
    for method in METHODS[1:]:
        diff = curves[method] - curves["max"]
        out["paired_vs_max"][method] = [dict(zip(("mean", "ci95"), interval(diff[:, r]), strict=True))
                                        for r in range(rounds)]
    probe, base = out["per_method"]["probe+feedback"], out["per_method"]["max"]
    last = out["paired_vs_max"]["probe+feedback"][-1]
    out["goal"] = {
        "beats_max_after_last_round": bool(probe[-1]["mean"] > base[-1]["mean"]),
        "paired_difference_after_last_round": last,
        "never_below_max_by_more_than_its_interval": bool(all(
            p["mean"] >= b["mean"] - p["ci95"] for p, b in zip(probe, base, strict=True))),
    }
    return out


def markdown(res: dict[str, Any]) -> str:
    """Render the summary as Markdown tables."""
    cfg, summary = res["config"], res["summary"]
    rounds = cfg["rounds"]
    head = "| method | " + " | ".join(f"round {r + 1}" for r in range(rounds)) + " |"
    rule = "| --- |" + " ---: |" * rounds
    lines = [f"### Cumulative yield on scikit-learn digits ({cfg['vectors']}), {res['sessions_per_method']} "
             f"sessions per method", "",
             f"Targets {cfg['targets']}, seeds {cfg['seeds']}; {cfg['start']} starting examples, "
             f"{cfg['per_round']} candidates a round. Mean cumulative yield (accepted / reviewed) "
             "+- 95% interval over sessions.", "", head, rule]
    for method, per_round in summary["per_method"].items():
        cells = " | ".join(f"{c['mean']:.3f} +- {c['ci95']:.3f}" for c in per_round)
        lines.append(f"| {method} | {cells} |")
    lines += ["", "Paired difference against `max` (same target and seed), mean +- 95% interval:", "", head, rule]
    for method, per_round in summary["paired_vs_max"].items():
        cells = " | ".join(f"{c['mean']:+.3f} +- {c['ci95']:.3f}" for c in per_round)
        lines.append(f"| {method} - max | {cells} |")
    goal = summary["goal"]
    lines += ["", f"Goal: probe+feedback beats max after round {rounds}: "
              f"**{'yes' if goal['beats_max_after_last_round'] else 'no'}**; never below max by more than "
              f"its interval: **{'yes' if goal['never_below_max_by_more_than_its_interval'] else 'no'}**.",
              "", "Median time per mine (ms): " + ", ".join(
                  f"{m} {res['mine_ms_median'][m]}" for m in METHODS) + "."]
    return "\n".join(lines) + "\n"


def plot(res: dict[str, Any], path: Path) -> None:
    """Plot the cumulative yield curves with their intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = np.arange(1, res["config"]["rounds"] + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, per_round in res["summary"]["per_method"].items():
        mean = np.array([c["mean"] for c in per_round])
        half = np.nan_to_num(np.array([c["ci95"] for c in per_round]))
        ax.plot(rounds, mean, marker="o", label=method)
        ax.fill_between(rounds, mean - half, mean + half, alpha=0.2)
    ax.set_xlabel(f"round ({res['config']['per_round']} candidates each)")
    ax.set_ylabel("cumulative yield (accepted / reviewed)")
    kind = "raw pixels" if res["config"]["kind"] == "pixels" else "edgemine-tiny, random weights"
    ax.set_title(f"digits ({kind}), {res['sessions_per_method']} sessions per method", fontsize=10)
    ax.set_xticks(rounds)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default="0,1,2,3,4,5,6,7,8,9", help="target classes (comma-separated)")
    parser.add_argument("--seeds", type=int, default=5, help="starting-example draws per target")
    parser.add_argument("--start", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=20)
    parser.add_argument("--vectors", choices=("pixels", "images"), default="pixels")
    parser.add_argument("--out", type=Path, default=Path("bench-results/feedback"))
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    args.targets = [int(t) for t in args.targets.split(",")]
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run every session, write JSON, Markdown and the plot; return the results."""
    args = parse_args(argv)
    vectors, labels = load_digits()
    sessions: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgemine-feedback-") as tmp:
        if args.vectors == "pixels":
            miner, ids = build_miner(vectors, Path(tmp))
        else:
            miner, ids = build_image_miner(vectors, Path(tmp))
        for target in args.targets:
            for seed in range(args.seeds):
                for method in METHODS:
                    sessions.append(run_session(miner, ids, labels, target, seed, method,
                                                args.start, args.rounds, args.per_round))
    res: dict[str, Any] = {
        "config": {"data": "sklearn.datasets.load_digits", "kind": args.vectors,
                   "vectors": "raw pixels, L2-normalized" if args.vectors == "pixels"
                   else "64x64 PNGs embedded by edgemine-tiny (random weights)",
                   "rows": len(ids), "targets": args.targets, "seeds": args.seeds, "start": args.start,
                   "rounds": args.rounds, "per_round": args.per_round},
        "sessions_per_method": len(args.targets) * args.seeds,
        "summary": summarize(sessions, args.rounds),
        "mine_ms_median": {m: round(float(np.median([s["mine_ms_median"] for s in sessions
                                                     if s["method"] == m])), 3) for m in METHODS},
        "seconds": round(time.perf_counter() - started, 2),
        "sessions": sessions,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "feedback" if args.vectors == "pixels" else "feedback-images"
    (args.out / f"{stem}.json").write_text(json.dumps(res, indent=2))
    table = markdown(res)
    (args.out / f"{stem}.md").write_text(table)
    if not args.no_plot:
        plot(res, args.out / f"{stem}.png")
    print(table, flush=True)
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
