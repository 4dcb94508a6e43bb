"""IVF indexes of large bundles filled in parallel Ray tasks: train on the driver, add in shards, merge.

Training is `train_new_index` (a uniform random sample, the same as a single-process build); each
task adds a contiguous slice of the vectors to a copy of the trained, empty index; the driver merges
the shards' inverted lists with FAISS `merge_into`. The ids and lists are those of a single-process
build, so search results (and `make_index`'s recall tuning, which runs after) are the same.
Below `RAY_IVF_MIN_ROWS` rows, or for a non-IVF plan, the build is `build_index` in this process:
shipping the vectors to the cluster costs more than the add saves there (ray-data notes: 200k x 512
added in 8.4 s by one process, 6.9 s by two tasks plus ~4 s to start Ray).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edgemine.models.vectors import Vectors
from edgemine.search.build import BuildStats, add_vectors, build_index, ivf_of, train_new_index
from edgemine.search.plan import IndexPlan

RAY_IVF_MIN_ROWS = 500_000


def _fill_shard(trained: Any, vectors: Vectors, vec_ids: npt.NDArray[np.int64]) -> Any:
    """Add one slice of vectors to a copy of the trained, empty index; return it serialized."""
    import faiss

    index = faiss.deserialize_index(trained)
    add_vectors(index, vectors, vec_ids)
    return faiss.serialize_index(index)


def build_ivf_sharded(vectors: Vectors, vec_ids: npt.NDArray[np.int64], plan: IndexPlan, *, ray: Any,
                      shards: int, seed: int = 0, hold_out: int = 0) -> tuple[Any, BuildStats]:
    """Train on the driver, fill `shards` slices in Ray tasks, merge them into one index."""
    import faiss

    started = time.perf_counter()
    index, stats = train_new_index(vectors, plan, seed, hold_out)
    if ivf_of(index) is None:
        raise ValueError(f"{plan.factory} is not an IVF index: nothing to merge shard by shard")
    trained = ray.put(faiss.serialize_index(index))
    fill = ray.remote(num_cpus=1, max_retries=2)(_fill_shard)
    bounds = np.linspace(0, len(vectors), max(1, shards) + 1).astype(int)
    parts = [fill.remote(trained, np.ascontiguousarray(vectors[a:b], np.float32), vec_ids[a:b])
             for a, b in itertools.pairwise(bounds) if b > a]
    target = ivf_of(index)
    for ref in parts:  # in slice order: each list holds its ids in the order a single add would
        part = faiss.deserialize_index(ray.get(ref))
        faiss.merge_into(target, ivf_of(part), False)  # ids are stable vec_ids: no shift
    index.ntotal = target.ntotal
    stats.seconds = time.perf_counter() - started
    stats.extra["shards"] = len(parts)
    return index, stats


@dataclass(frozen=True)
class RayIvfBuilder:
    """An `IndexBuilder` for `make_index`: sharded on Ray for large IVF plans, else `build_index`."""

    address: str | None = None
    shards: int = 0  # 0: one per CPU of the cluster
    ivf_min_rows: int = RAY_IVF_MIN_ROWS

    def __call__(self, vectors: Vectors, vec_ids: npt.NDArray[np.int64], plan: IndexPlan, seed: int = 0,
                 hold_out: int = 0) -> tuple[Any, BuildStats]:
        """Build the index for `plan` (see the module's docstring for when Ray is used)."""
        if plan.kind != "ivf" or plan.exact or len(vectors) < self.ivf_min_rows:
            return build_index(vectors, vec_ids, plan, seed=seed, hold_out=hold_out)
        from edgemine.indexer.ray_engine import ray_session

        with ray_session(self.address) as ray:
            shards = self.shards or max(1, int(ray.cluster_resources().get("CPU", 1)))
            return build_ivf_sharded(vectors, vec_ids, plan, ray=ray, shards=shards, seed=seed,
                                     hold_out=hold_out)
