"""What does publishing 10k new images cost? Format 1 (main: rewrite everything) vs format 2 (segments).

For each bundle size N (512-d random unit vectors, exact "flat" index), a base bundle of N images is
built once (in 100k chunks, then compacted), then copied twice by hard links (state.sqlite copied):
one copy rewritten in the format-1 layout for main's code (`--base`, a checkout of commit 450cefd),
one kept in format 2 for this checkout. Each then gets the same publish, in a fresh process:
`run_index` of a BYO-embeddings Parquet of 10k new images (a day's recordings; the existing images
are not in that source and are kept, as an indexing run without --prune keeps them).

Measured per run, in the child process: wall time of the whole run and of the publish step
(`indexer.job._assemble_and_publish`: assembling the version, state sync, writing, the CURRENT flip),
peak RSS of the whole process (getrusage) and during the publish step (VmHWM, reset via
/proc/self/clear_refs just before it), bytes the process caused to be written (/proc/self/io
write_bytes, whole run), and by the parent: bytes of the files the run added to the bundle
(new inodes; hard links to existing files count zero).

    python benchmarks/bench_publish.py --base /work/wt-seg-base --sizes 100000 1000000 \\
        --out benchmarks/results/2026-12-02

The format-1 copy's version directory holds an empty exact index file: main's code checks that the
file exists but never reads a flat index when it publishes (it rebuilds one from all vectors).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parents[1]
CHUNK = 100_000

CHILD = r"""
import json, os, resource, sys, time
from pathlib import Path
from edgemine.bundle.layout import ModelInfo
from edgemine.indexer import ModelChoice, read_embeddings_source, run_index
from edgemine.indexer import job
from edgemine.indexer.job import IndexOptions

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0

def written():
    for line in open("/proc/self/io"):
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0

source, bundle = Path(sys.argv[1]), Path(sys.argv[2])
stats = {}
real = job._assemble_and_publish
def timed(*args, **kwargs):
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM: the peak below is the publish step's own
    stats["rss_before_publish"] = status("VmRSS")
    w0, t0 = written(), time.perf_counter()
    out = real(*args, **kwargs)
    stats["publish_s"] = time.perf_counter() - t0
    stats["publish_peak_rss"] = status("VmHWM")
    stats["publish_write_bytes"] = written() - w0
    return out
job._assemble_and_publish = timed
model = ModelChoice(ModelInfo(identity="byo:bench", name="bench", pretrained="external"), None)
t0 = time.perf_counter()
report = run_index(read_embeddings_source(source), bundle, model, progress=False, options=IndexOptions("flat"))
stats["total_s"] = time.perf_counter() - t0
stats["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
stats["write_bytes"] = written()
stats["published"] = report.published
stats["added"] = report.added
stats["kept"] = report.missing_from_source_kept
print(json.dumps(stats))
"""


def write_source(path: Path, ids: list[str], vectors: np.ndarray) -> Path:
    """Write a BYO-embeddings Parquet (image_id, embedding)."""
    values = pa.array(np.ascontiguousarray(vectors, np.float32).reshape(-1))
    column = pa.FixedSizeListArray.from_arrays(values, vectors.shape[1])
    pq.write_table(pa.table({"image_id": ids, "embedding": column}), path)
    return path


def chunk_vectors(seed: int, n: int, dim: int) -> np.ndarray:
    """n random unit vectors (float32)."""
    x = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def run_child(checkout: Path, source: Path, bundle: Path) -> dict[str, Any]:
    """Run one indexing run of `source` into `bundle` with the code of `checkout`; return its stats."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(source), str(bundle)], env=env, cwd=checkout,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({checkout}):\n{proc.stderr[-3000:]}")
    stats: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return stats


def inodes(root: Path) -> dict[int, int]:
    """inode -> size of every file under root."""
    return {p.stat().st_ino: p.stat().st_size for p in root.rglob("*") if p.is_file()}


def build_base(work: Path, n: int, dim: int) -> Path:
    """Build a format-2 bundle of n images (chunks of 100k, then one compaction) with this checkout."""
    bundle = work / "base"
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        src = write_source(work / "chunk.parquet", [f"img{start + i:08d}" for i in range(size)],
                           chunk_vectors(start, size, dim))
        run_child(HERE, src, bundle)
    # Compact into one segment: the steady state right after a compaction.
    code = ("import sys; from pathlib import Path; from edgemine.indexer import *; "
            "from edgemine.indexer.job import IndexOptions; from edgemine.bundle.layout import ModelInfo; "
            "run_index(read_embeddings_source(Path(sys.argv[1])), Path(sys.argv[2]), ModelChoice(ModelInfo("
            "identity='byo:bench', name='bench', pretrained='external'), None), progress=False, "
            "options=IndexOptions('flat', compact=True))")
    subprocess.run([sys.executable, "-c", code, str(work / "chunk.parquet"), str(bundle)],
                   env={**os.environ, "PYTHONPATH": str(HERE)}, check=True)
    (work / "chunk.parquet").unlink()
    return bundle


def link_copy(src: Path, dst: Path) -> Path:
    """Copy a bundle by hard links (its files are immutable), with a real copy of state.sqlite."""
    shutil.copytree(src, dst, copy_function=os.link)
    (dst / "state.sqlite").unlink()
    shutil.copyfile(src / "state.sqlite", dst / "state.sqlite")
    return dst


def to_format_1(bundle: Path) -> None:
    """Rewrite a one-segment format-2 bundle in the format-1 layout (hard links, no data copied)."""
    import faiss

    version = (bundle / "CURRENT").read_text().strip()
    vdir = bundle / "versions" / version
    manifest = json.loads((vdir / "manifest.json").read_text())
    (segment,) = manifest["segments"]
    for name in ("embeddings.npy", "catalog.parquet"):
        os.link(bundle / "segments" / segment["name"] / name, vdir / name)
    faiss.write_index(faiss.IndexIDMap2(faiss.IndexFlatIP(manifest["dim"])), str(vdir / "index.faiss"))
    manifest.update(format_version=1, segments=[], tombstones=0)
    (vdir / "manifest.json").unlink()  # a hard link shared with the base: write a new file
    (vdir / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(bundle / "segments")
    for other in (bundle / "versions").iterdir():
        if other != vdir:
            shutil.rmtree(other)


def measure(base_checkout: Path, n: int, new: int, dim: int, work: Path) -> list[dict[str, Any]]:
    """Build a base of n, then publish `new` new images with main's code (format 1) and this one's."""
    started = time.perf_counter()
    base = build_base(work, n, dim)
    print(f"base of {n} built in {time.perf_counter() - started:.0f} s", flush=True)
    source = write_source(work / "new.parquet", [f"new{i:08d}" for i in range(new)],
                          chunk_vectors(10**9 + n, new, dim))
    rows = []
    for label, checkout, fmt in (("before (format 1, main 450cefd)", base_checkout, 1),
                                 ("after (format 2, segments)", HERE, 2)):
        bundle = link_copy(base, work / f"f{fmt}")
        if fmt == 1:
            to_format_1(bundle)
        subprocess.run(["sync"], check=True)
        seen = inodes(bundle)
        stats = run_child(checkout, source, bundle)
        added = sum(size for ino, size in inodes(bundle).items() if ino not in seen)
        row = {"bundle_images": n, "new_images": new, "dim": dim, "variant": label, "format": fmt,
               **stats, "new_file_bytes": added}
        print(json.dumps(row), flush=True)
        rows.append(row)
        shutil.rmtree(bundle)
    shutil.rmtree(base)
    (work / "new.parquet").unlink()
    return rows


def render(rows: list[dict[str, Any]], command: str) -> str:
    """A markdown table of the runs."""
    gib, mib = 1024**3, 1024**2
    new, dim = (rows[0]["new_images"], rows[0]["dim"]) if rows else (0, 0)
    lines = [f"# Publishing {new:,} new images: format 1 (rewrite all) vs format 2 (segments)", "",
             f"Command: `{command}`", "",
             "| bundle | variant | publish s | total s | publish peak RSS GiB | process peak RSS GiB "
             "| written MiB (process) | new files MiB |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['bundle_images']:,} | {r['variant']} | {r['publish_s']:.2f} | {r['total_s']:.2f} "
                     f"| {r['publish_peak_rss'] / gib:.2f} | {r['peak_rss'] / gib:.2f} "
                     f"| {r['write_bytes'] / mib:.1f} | {r['new_file_bytes'] / mib:.1f} |")
    lines += ["", f"Exact (flat) index, {dim}-d float32, BYO embeddings; the {new:,} new images are the whole "
              "source (existing images kept). Peak RSS counts mapped file pages the process touched.", ""]
    return "\n".join(lines)


def main() -> None:
    """Run the benchmark and write publish-<sizes>.json/.md."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="checkout of main (format 1) to compare with")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=HERE / "benchmarks" / "results" / "2026-12-02")
    args = parser.parse_args()
    command = "python " + " ".join(sys.argv)
    rows: list[dict[str, Any]] = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory(dir=args.work) as tmp:
            rows += measure(args.base.resolve(), n, args.new, args.dim, Path(tmp))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "publish-" + "-".join(f"{n // 1000}k" for n in args.sizes)
    (args.out / f"{stem}.json").write_text(json.dumps({"command": command, "runs": rows}, indent=2))
    (args.out / f"{stem}.md").write_text(render(rows, command))
    print(render(rows, command))


if __name__ == "__main__":
    main()
