"""Filtered candidate search over a FAISS index, exclusions applied inside the search.

The searcher returns *candidate rows*; the miner re-scores them exactly with the stored
embeddings. When the eligible set is small, or the index is exact, it returns None and the miner
searches the eligible rows exactly (numpy GEMM), which is then both faster and exact.
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from edgemine.models.vectors import Vectors
from edgemine.search.build import ivf_of
from edgemine.search.kmeans import assign

Rows = npt.NDArray[np.int64]
Found = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]
# Below these eligible fractions a filtered ANN walk costs more than exact search of the subset.
MIN_FRACTION = {"ivf": 0.02, "hnsw": 0.1}
MAX_EF = 4096
# Parameters are tuned for recall@TUNE_K (100) with a re-ranking pool of ~100 x rerank_factor rows;
# a smaller pool at small k loses the recall the tuning measured (4-bit PQ: ~0.66 at k=10).
MIN_DEPTH = 100


class Searcher:
    """Search one index with a per-query eligibility mask."""

    def __init__(self, index: Any, kind: str, params: dict[str, float], vec_ids: npt.NDArray[np.int64]) -> None:
        self.index = index
        self.kind = kind
        self.params = params
        self.n = len(vec_ids)
        self.vec_ids = vec_ids
        self.identity_ids = bool(self.n == 0 or (vec_ids[0] == 0 and vec_ids[-1] == self.n - 1
                                                and np.all(np.diff(vec_ids) == 1)))
        size = int(vec_ids.max()) + 1 if self.n else 0
        self.row_of_vec = np.full(size, -1, np.int64)
        self.row_of_vec[vec_ids] = np.arange(self.n)
        self.ivf = ivf_of(index) if kind == "ivf" else None
        import faiss as _faiss

        # Distances comparable across queries and lists (float or 8-bit codes): candidates can be
        # pre-ranked on them. PQ distances are too coarse for that; those are all re-scored.
        self.reliable_distances = isinstance(
            index, _faiss.IndexIVFScalarQuantizer | _faiss.IndexIVFFlat | _faiss.IndexIDMap2)
        self.centroids: Vectors | None = None  # transposed: [d x nlist]
        if self.ivf is not None:
            faiss: Any = importlib.import_module("faiss")

            # Only a bare IVF (no pre-transform or id map around it) can take our assignments.
            flat_quantizer = isinstance(faiss.downcast_index(self.ivf.quantizer), faiss.IndexFlat)
            if flat_quantizer and isinstance(index, faiss.IndexIVF):
                self.centroids = np.ascontiguousarray(self.ivf.quantizer.reconstruct_n(0, self.ivf.nlist).T)

    @property
    def exact(self) -> bool:
        """Return whether this searcher always defers to exact search."""
        return self.kind not in ("ivf", "hnsw")

    def _selector(self, eligible: npt.NDArray[np.bool_]) -> tuple[Any, Any]:
        faiss: Any = importlib.import_module("faiss")

        if self.identity_ids:
            bits = eligible
        else:
            bits = np.zeros(len(self.row_of_vec), bool)
            bits[self.vec_ids[eligible]] = True
        packed = np.packbits(bits, bitorder="little")
        return faiss.IDSelectorBitmap(packed), packed

    def candidates(self, queries: Vectors, depth: int, eligible: npt.NDArray[np.bool_],
                   eligible_count: int | None = None, keep: int | None = None,
                   breadth: float = 1.0) -> Rows | None:
        """Return eligible candidate rows for all queries (one call), or None for exact search.

        With `keep`, only the `keep` rows with the best approximate score (max over queries) are
        returned: re-scoring them exactly then costs a few hundred rows, not queries x depth.
        `breadth` multiplies the tuned nprobe / efSearch (for query vectors unlike the data,
        such as a linear probe's direction, whose best rows spread over more lists).
        """
        if self.exact or self.n == 0:
            return None
        count = int(eligible.sum()) if eligible_count is None else eligible_count
        fraction = count / self.n
        if fraction < MIN_FRACTION.get(self.kind, 1.0) or count <= depth:
            return None
        fetch = int(max(depth, MIN_DEPTH) * self.params.get("rerank_factor", 1.0))
        queries = np.ascontiguousarray(queries, np.float32)
        sel, _keep = self._selector(eligible)
        if self.kind == "ivf":
            found_ = self._search_ivf(queries, fetch, fraction, sel, breadth)
        else:
            found_ = self._search_hnsw(queries, fetch, fraction, sel, breadth)
        if found_ is None:
            return None
        dist, labels = found_
        valid = labels >= 0
        if keep is not None and len(queries) > 1 and self.reliable_distances:
            flat_labels, flat_dist = labels[valid], dist[valid]
            order = np.argsort(-flat_dist, kind="stable")
            ranked, first = np.unique(flat_labels[order], return_index=True)
            found = ranked[np.argsort(first)][: int(max(keep, MIN_DEPTH) * self.params.get("rerank_factor", 1.0))]
        else:
            found = np.unique(labels[valid])
        rows = self.row_of_vec[found]
        return rows[rows >= 0]

    def _search_ivf(self, queries: Vectors, fetch: int, fraction: float, sel: Any,
                    breadth: float = 1.0) -> Found | None:
        faiss: Any = importlib.import_module("faiss")

        assert self.ivf is not None
        nlist = self.ivf.nlist
        nprobe = min(nlist, math.ceil(self.params.get("nprobe", 16) * breadth / fraction))
        if nprobe > nlist // 2:
            return None
        params = faiss.SearchParametersIVF()
        params.nprobe = nprobe
        params.sel = sel
        if self.centroids is None:
            dist, labels = self.index.search(queries, fetch, params=params)
            return np.asarray(dist), np.asarray(labels)
        lists, coarse = assign(queries, self.centroids, nprobe)
        n = len(queries)
        dist = np.empty((n, fetch), np.float32)
        labels = np.empty((n, fetch), np.int64)
        self.ivf.search_preassigned_c(n, faiss.swig_ptr(queries), fetch, faiss.swig_ptr(lists),
                                      faiss.swig_ptr(coarse), faiss.swig_ptr(dist),
                                      faiss.swig_ptr(labels), False, params, None)
        return dist, labels

    def _search_hnsw(self, queries: Vectors, fetch: int, fraction: float, sel: Any,
                     breadth: float = 1.0) -> Found | None:
        faiss: Any = importlib.import_module("faiss")

        ef = int(min(MAX_EF, max(fetch, self.params.get("efSearch", 64) * breadth) / fraction))
        params = faiss.SearchParametersHNSW()
        params.efSearch = ef
        params.sel = sel
        dist, labels = self.index.search(queries, fetch, params=params)
        return np.asarray(dist), np.asarray(labels)
