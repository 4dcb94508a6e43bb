"""Indexing throughput: the full pipeline (decode in workers + embed) against model-only forward.

Both are measured in the same run on the same images, so the ratio says how well decoding hides
behind compute (target: pipeline >= 0.9x model-only on CPU).

    python benchmarks/bench_indexing.py --images 256 --out bench-results/indexing.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from edgemine.indexer.pipeline import decode_image, embed_items
from edgemine.indexer.sources import scan_directory
from edgemine.models import load_clip


def make_images(root: Path, count: int, size: tuple[int, int], seed: int = 0) -> None:
    """Write `count` camera-sized JPEGs with smooth structure (so they compress like photos)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(count):
        fx, fy, phase = [*rng.uniform(0.002, 0.02, 2).tolist(), rng.uniform(0, 6.28)]
        base = (np.sin(xx * fx + phase) + np.cos(yy * fy)) * 60 + 128
        img = np.stack([base, base[::-1], base[:, ::-1]], axis=-1)
        img += rng.normal(0, 8, img.shape)
        path = root / f"seq{i // 50:03d}" / f"frame{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)


def main() -> None:
    """Run the benchmark and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", default="1280x720", help="WxH of the generated frames")
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="best of N for each measurement")
    parser.add_argument("--out", type=Path, default=Path("bench-results/indexing.json"))
    args = parser.parse_args()
    w, h = (int(x) for x in args.size.split("x"))

    embedder = load_clip(args.model, args.pretrained, "cpu", args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        make_images(root, args.images, (w, h))
        gen_s = time.perf_counter() - t0
        items = scan_directory(root).items

        # Model-only: inputs decoded and preprocessed up front, so only the forward pass is timed.
        tensors = torch.stack([embedder.preprocess(decode_image(i.path or "", embedder.input_size)) for i in items])
        decode_s = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for i in items[:64]:
                embedder.preprocess(decode_image(i.path or "", embedder.input_size))
            decode_s.append((time.perf_counter() - t0) / min(64, len(items)))
        embedder.embed_batch(tensors[: args.batch_size])  # warm-up
        model_rates = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for start in range(0, len(tensors), args.batch_size):
                embedder.embed_batch(tensors[start:start + args.batch_size])
            model_rates.append(len(tensors) / (time.perf_counter() - t0))

        pipeline_rates = []
        for _ in range(args.repeats):
            stats = embed_items(items, embedder, batch_size=args.batch_size, workers=args.workers,
                                on_batch=lambda b, v: None, on_failures=lambda f: None, progress=False)
            pipeline_rates.append(stats.images_per_s)

    model_best, pipe_best = max(model_rates), max(pipeline_rates)
    result = {
        "benchmark": "indexing",
        "model": embedder.identity,
        "images": args.images,
        "image_size": [w, h],
        "batch_size": args.batch_size,
        "workers": args.workers,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "generate_s": round(gen_s, 3),
        "decode_preprocess_ms_per_image": round(min(decode_s) * 1e3, 3),
        "model_only_images_per_s": [round(r, 2) for r in model_rates],
        "pipeline_images_per_s": [round(r, 2) for r in pipeline_rates],
        "ratio_pipeline_to_model_only": round(pipe_best / model_best, 3),
        "target_ratio": 0.9,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
