"""Build a FAISS index from a plan: train on a random sample, add with stable ids, tune."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from edgemine.bundle.vectors import Embeddings
from edgemine.search.kmeans import assign, spherical_kmeans
from edgemine.search.plan import IndexPlan

ADD_CHUNK = 100_000
# Fewest rows to train on: a PQ codebook has 256 centroids per sub-quantizer.
MIN_TRAIN = 256


@dataclass
class BuildStats:
    """How a build went."""

    train_size: int = 0
    train_rows: npt.NDArray[np.int64] | None = None  # tuning queries are drawn from the other rows
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def ivf_of(index: Any) -> Any:
    """Return the IndexIVF inside `index`, or None."""
    import faiss

    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def new_index(plan: IndexPlan, d: int) -> Any:
    """Create an untrained index for the plan; HNSW/other indexes get an id map for stable ids."""
    import faiss

    factory = "Flat" if plan.exact else plan.factory
    index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    if ivf_of(index) is None:
        index = faiss.IndexIDMap2(index)
    return index


def train_sample_size(n: int, nlist: int | None, hold_out: int = 0) -> int:
    """Return how many vectors to train on: 64 per list (at least 20k), at most n - hold_out.

    `hold_out` rows are left out for the tuning queries, unless that would leave fewer than
    MIN_TRAIN rows or one per list (a tiny index then trains on everything).
    """
    size = min(n, 100_000) if not nlist else int(min(n, max(64 * nlist, 20_000)))
    floor = min(n, max(nlist or 0, MIN_TRAIN))
    return max(min(size, n - hold_out), floor)


def build_index(vectors: Embeddings, vec_ids: npt.NDArray[np.int64], plan: IndexPlan,
                seed: int = 0, hold_out: int = 0) -> tuple[Any, BuildStats]:
    """Train (on a random sample: recorded data is ordered in time) and fill an index.

    At least `hold_out` rows stay out of the training sample when there are enough (see
    `train_sample_size`), so that tuning can measure recall on rows the index was not trained on.
    """
    started = time.perf_counter()
    index, stats = train_new_index(vectors, plan, seed, hold_out)
    add_vectors(index, vectors, vec_ids)
    stats.seconds = time.perf_counter() - started
    return index, stats


def train_new_index(vectors: Embeddings, plan: IndexPlan, seed: int = 0, hold_out: int = 0) -> tuple[Any, BuildStats]:
    """Return the plan's index trained on a uniform random sample of `vectors` (still empty)."""
    n, d = vectors.shape
    index = new_index(plan, d)
    stats = BuildStats()
    ivf = ivf_of(index)
    if not index.is_trained:
        size = train_sample_size(n, plan.nlist or (ivf.nlist if ivf is not None else None), hold_out)
        rng = np.random.default_rng(seed)
        stats.train_rows = np.sort(rng.choice(n, size, replace=False))
        sample = np.ascontiguousarray(vectors[stats.train_rows], np.float32)
        stats.train_size = size
        if ivf is not None and ivf.quantizer.ntotal == 0 and size >= ivf.nlist:
            # Pre-filled quantizer: FAISS then trains only the codec (SQ/PQ) on the sample.
            ivf.quantizer.add(spherical_kmeans(sample, ivf.nlist, seed=seed))
        index.train(sample)
    return index, stats


def add_vectors(index: Any, vectors: Embeddings, vec_ids: npt.NDArray[np.int64]) -> None:
    """Add vectors with their stable ids (IVF lists assigned with numpy GEMM)."""
    import faiss

    ivf = ivf_of(index)
    centroids = None
    # Fast-scan IVF packs codes in blocks: add_core would write unpacked codes (heap corruption).
    bare_ivf = (ivf is not None and isinstance(index, faiss.IndexIVF)
                and not isinstance(index, faiss.IndexIVFFastScan))
    if bare_ivf and isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexFlat):
        centroids = np.ascontiguousarray(ivf.quantizer.reconstruct_n(0, ivf.nlist).T)
    for start in range(0, len(vectors), ADD_CHUNK):
        block = np.ascontiguousarray(vectors[start:start + ADD_CHUNK], np.float32)
        ids = np.ascontiguousarray(vec_ids[start:start + ADD_CHUNK], np.int64)
        if centroids is not None:
            lists = np.ascontiguousarray(assign(block, centroids)[0][:, 0])
            ivf.add_core(len(block), faiss.swig_ptr(block), faiss.swig_ptr(ids), faiss.swig_ptr(lists))
        else:
            index.add_with_ids(block, ids)


def index_bytes(index: Any) -> int:
    """Return the serialized size of an index in bytes."""
    import faiss

    return int(faiss.serialize_index(index).nbytes)
