"""Spherical k-means and list assignment with numpy's GEMM.

FAISS's bundled OpenBLAS runs ~5x below numpy's GEMM on some CPUs, and training/assignment are
GEMM-bound, so we train the coarse quantizer here and hand FAISS the centroids and assignments.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edgemine.models.vectors import Vectors, l2_normalize

CHUNK = 65_536


def assign(vectors: Vectors, centroids_t: Vectors, nprobe: int = 1) -> tuple[npt.NDArray[np.int64], Vectors]:
    """Return the `nprobe` best lists (by inner product) and their scores for every vector.

    `centroids_t` is the transposed centroid matrix [d x K], C-contiguous (callers keep it:
    transposing per call costs more than the product itself).
    """
    n = len(vectors)
    ids = np.empty((n, nprobe), np.int64)
    sims = np.empty((n, nprobe), np.float32)
    ct = centroids_t
    for start in range(0, n, CHUNK):
        block = np.asarray(vectors[start:start + CHUNK], np.float32) @ ct
        if nprobe == 1:
            best = np.argmax(block, axis=1)[:, None]
        else:
            # Unordered is fine: every probed list is scanned in full.
            k = block.shape[1]
            best = np.argpartition(block, k - nprobe, axis=1)[:, k - nprobe:]
        ids[start:start + CHUNK] = best
        sims[start:start + CHUNK] = np.take_along_axis(block, best, axis=1)
    return ids, sims


def spherical_kmeans(sample: Vectors, k: int, iterations: int = 12, seed: int = 0) -> Vectors:
    """Cluster unit vectors into k unit centroids (inner-product k-means); empty clusters re-seeded."""
    rng = np.random.default_rng(seed)
    if len(sample) < k:
        raise ValueError(f"need at least {k} training vectors, got {len(sample)}")
    centroids = np.array(sample[rng.choice(len(sample), k, replace=False)], np.float32)
    for _ in range(iterations):
        labels = assign(sample, np.ascontiguousarray(centroids.T))[0][:, 0]
        counts = np.bincount(labels, minlength=k)
        order = np.argsort(labels, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        sums = np.zeros_like(centroids)
        filled = counts > 0
        sums[filled] = np.add.reduceat(np.asarray(sample)[order], starts[filled], axis=0)
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            sums[empty] = sample[rng.choice(len(sample), len(empty), replace=False)]
        centroids = l2_normalize(sums)
    return centroids
