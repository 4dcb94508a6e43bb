"""How should a version with several IVF segments be loaded: lists merged into RAM, or mapped and stacked?

400k x 128 random unit vectors, IVF1024,Flat trained once; the rows split into `--segments` segment
indexes (each a clone of the trained empty index plus its rows), as format-2 bundles store them.
Compared: one index of all rows (memory-mapped), the segments' mapped lists stacked with faiss
`HStackInvertedLists` (zero copy), and the segments read and `merge_from`-ed into the empty index
in RAM. Printed: load time, single-query search time (nprobe 16, k 100, one thread), RSS growth.

    python benchmarks/bench_segment_lists.py --segments 8
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np


def rss() -> int:
    """Resident bytes of this process."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


def main() -> None:
    """Build the indexes in a temp dir, then load and search each way."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--rows", type=int, default=400_000)
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    d, n, nseg = 128, args.rows, args.segments
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    tmp = Path(tempfile.mkdtemp())
    trained = faiss.index_factory(d, "IVF1024,Flat", faiss.METRIC_INNER_PRODUCT)
    trained.train(x[:60_000])
    faiss.write_index(faiss.clone_index(trained), str(tmp / "empty"))
    per = n // nseg
    for s in range(nseg):
        part = faiss.clone_index(trained)
        part.add_with_ids(x[s * per:(s + 1) * per], np.arange(s * per, (s + 1) * per))
        faiss.write_index(part, str(tmp / f"s{s}"))
    whole = faiss.clone_index(trained)
    whole.add_with_ids(x, np.arange(n))
    faiss.write_index(whole, str(tmp / "whole"))
    del whole
    queries = x[rng.choice(n, 300)]
    fx: Any = faiss
    keep: list[Any] = []

    def stacked() -> Any:
        base = faiss.read_index(str(tmp / "empty"))
        parts = [faiss.read_index(str(tmp / f"s{s}"), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
                 for s in range(nseg)]
        lists = fx.InvertedListsPtrVector()
        for part in parts:
            lists.push_back(part.invlists)
        stack = fx.HStackInvertedLists(lists.size(), lists.data())
        base.replace_invlists(stack, False)
        base.ntotal = n
        keep.append((parts, lists, stack))
        return base

    def merged() -> Any:
        base = faiss.read_index(str(tmp / "empty"))
        for s in range(nseg):
            base.merge_from(faiss.read_index(str(tmp / f"s{s}")), 0)
        return base

    def single() -> Any:
        return faiss.read_index(str(tmp / "whole"), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)

    ways: list[tuple[str, Callable[[], Any]]] = [
        ("one index (mmap)", single), (f"{nseg} segments stacked (HStack over mmap)", stacked),
        (f"{nseg} segments read + merge_from", merged)]
    for name, make in ways:
        before, started = rss(), time.perf_counter()
        index = make()
        load = time.perf_counter() - started
        index.nprobe = 16
        index.search(queries[:20], 10)
        started = time.perf_counter()
        for i in range(len(queries)):
            index.search(queries[i:i + 1], 100)
        per_query = (time.perf_counter() - started) / len(queries) * 1e3
        print(f"{name}: load {load * 1e3:.1f} ms, search {per_query:.3f} ms/query, "
              f"RSS +{(rss() - before) / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
