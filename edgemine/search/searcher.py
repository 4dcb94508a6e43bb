"""Filtered candidate search over a FAISS index, exclusions applied inside the search.

The searcher returns *candidate rows*; the miner re-scores them exactly with the stored
embeddings. When the eligible set is small, or the index is exact, it returns None and the miner
searches the eligible rows exactly (numpy GEMM), which is then both faster and exact.
"""

from __future__ import annotations

import importlib
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edgemine.models.vectors import Vectors
from edgemine.search.blas import single_threaded_blas
from edgemine.search.build import ivf_of
from edgemine.search.kmeans import assign

Rows = npt.NDArray[np.int64]
Found = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]
Params = dict[str, float]
# A tuned exclusion level: (eligible fraction, params serving every example count[, params by
# example count]). Bundles tuned before per-count tuning have no third element.
Level = tuple[float, Params] | tuple[float, Params, Mapping[int, Params]]
# Below these eligible fractions a filtered ANN walk costs more than exact search of the subset.
MIN_FRACTION = {"ivf": 0.02, "hnsw": 0.1}
MAX_EF = 4096
# Parameters are tuned for recall@TUNE_K (100) with a re-ranking pool of ~100 x rerank_factor rows;
# a smaller pool at small k loses the recall the tuning measured (4-bit PQ: ~0.66 at k=10).
MIN_DEPTH = 100
PROBE_SLACK = 0.01  # nprobe = ceil(interpolated value - slack)
# OpenMP threads per FAISS search (None: FAISS's default). OpenMP keeps the count per thread, and
# searches run on whatever worker thread took the request, so it is applied on every search call
# rather than once at startup (which set it for the startup thread only).
_search_threads: int | None = None


def set_search_threads(count: int | None) -> None:
    """Make every later FAISS search, on any thread, use `count` OpenMP threads (None: FAISS's default)."""
    global _search_threads
    _search_threads = count


class Searcher:
    """Search one index with a per-query eligibility mask."""

    def __init__(self, index: Any, kind: str, params: dict[str, float], vec_ids: npt.NDArray[np.int64],
                 filtered: Sequence[Level] = ()) -> None:
        self.index = index
        self.kind = kind
        self.params = params
        # (eligible fraction, params tuned there) from the build (IndexInfo.filtered); empty for
        # bundles built before it: nprobe / efSearch then scale by 1 / fraction.
        self.filtered = filtered
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
    def filtered(self) -> list[tuple[float, Params, dict[int, Params]]]:
        """Return the tuned exclusion levels, least excluded first."""
        return self._filtered

    @filtered.setter
    def filtered(self, levels: Sequence[Level]) -> None:
        self._filtered = sorted(((lv[0], dict(lv[1]), {int(m): dict(p) for m, p in lv[2].items()}
                                  if len(lv) > 2 else {}) for lv in levels),  # type: ignore[misc]
                                key=lambda point: -point[0])

    def scaled(self, fraction: float, examples: int | None = None) -> dict[str, float]:
        """Return the search parameters for queries of `examples` vectors where `fraction` of the rows are eligible.

        At each tuned level the parameters are those tuned for the largest example count not above
        `examples` (fewer examples need more probes each); without per-count tuning, or with
        `examples` None, the level's parameters for every count. Between two tuned exclusion levels,
        nprobe / efSearch are interpolated log-linearly in the fraction (and the larger re-ranking
        factor of the two kept); beyond the most restrictive level they grow by 1 / fraction from
        it. Without tuned levels: the base value / fraction.
        """
        key = "nprobe" if self.kind == "ivf" else "efSearch"
        base = {key: self.params.get(key, 16.0 if key == "nprobe" else 64.0),
                "rerank_factor": self.params.get("rerank_factor", 1.0)}
        if not self.filtered:
            return {key: base[key] / fraction, "rerank_factor": base["rerank_factor"]}
        # A tuned level at fraction 1.0 (no exclusion, several examples) replaces the base.
        levels = [(f, _for_examples(params, per_count, examples)) for f, params, per_count in self.filtered]
        points = sorted(dict([(1.0, base), *levels]).items(), key=lambda point: -point[0])
        if fraction >= points[0][0]:
            return dict(points[0][1])
        for (hi, upper), (lo, lower) in itertools.pairwise(points):
            if fraction == lo:
                return dict(lower)
            if lo < fraction < hi:
                t = math.log(hi / fraction) / math.log(hi / lo)
                value = math.exp((1 - t) * math.log(upper[key]) + t * math.log(lower[key]))
                return {key: value, "rerank_factor": max(upper.get("rerank_factor", 1.0),
                                                         lower.get("rerank_factor", 1.0))}
        lo, lower = points[-1]
        return {key: lower[key] * lo / fraction, "rerank_factor": lower.get("rerank_factor", 1.0)}

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
        count = int(np.count_nonzero(eligible)) if eligible_count is None else eligible_count
        fraction = count / self.n
        if fraction < MIN_FRACTION.get(self.kind, 1.0) or count <= depth:
            return None
        params = self.scaled(fraction, len(queries))
        rerank = params["rerank_factor"]
        fetch = int(max(depth, MIN_DEPTH) * rerank)
        queries = np.ascontiguousarray(queries, np.float32)
        sel, _keep = self._selector(eligible)
        if _search_threads is not None:
            importlib.import_module("faiss").omp_set_num_threads(_search_threads)
        with single_threaded_blas():  # the centroid product is tiny: no BLAS thread hand-off
            found_ = self._search(queries, fetch, params, breadth, sel)
        if found_ is None:
            return None
        return self._pool(found_, keep, len(queries), rerank)

    def _search(self, queries: Vectors, fetch: int, params: dict[str, float], breadth: float,
                sel: Any) -> Found | None:
        if self.kind == "ivf":
            return self._search_ivf(queries, fetch, params["nprobe"] * breadth, sel)
        base_ef = self.params.get("efSearch", 64.0)
        return self._search_hnsw(queries, fetch, base_ef * breadth, params["efSearch"] / base_ef, sel)

    def _pool(self, found_: Found, keep: int | None, n_queries: int, rerank: float) -> Rows:
        """Return the candidate rows: all found, or the best `keep` x rerank by approximate score."""
        dist, labels = found_
        valid = labels >= 0
        if keep is not None and n_queries > 1 and self.reliable_distances:
            flat_labels, flat_dist = labels[valid], dist[valid]
            order = np.argsort(-flat_dist, kind="stable")
            ranked, first = np.unique(flat_labels[order], return_index=True)
            found = ranked[np.argsort(first)][: int(max(keep, MIN_DEPTH) * rerank)]
        else:
            found = np.unique(labels[valid])
        rows = self.row_of_vec[found]
        return rows[rows >= 0]

    def _search_ivf(self, queries: Vectors, fetch: int, probes: float, sel: Any) -> Found | None:
        faiss: Any = importlib.import_module("faiss")

        assert self.ivf is not None
        nlist = self.ivf.nlist
        nprobe = probe_count(probes, nlist)
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

    def _search_hnsw(self, queries: Vectors, fetch: int, ef_base: float, scale: float, sel: Any) -> Found | None:
        faiss: Any = importlib.import_module("faiss")

        # The walk's breadth grows with exclusion (`scale`), for the fetch depth as for efSearch.
        ef = int(min(MAX_EF, max(fetch, ef_base) * scale))
        params = faiss.SearchParametersHNSW()
        params.efSearch = ef
        params.sel = sel
        dist, labels = self.index.search(queries, fetch, params=params)
        return np.asarray(dist), np.asarray(labels)


def _for_examples(params: Params, per_count: Mapping[int, Params], examples: int | None) -> Params:
    """Return the parameters tuned for the largest example count not above `examples`."""
    if examples is None or not per_count:
        return params
    counts = [m for m in per_count if m <= examples]
    return dict(per_count[max(counts)]) if counts else params


def probe_count(probes: float, nlist: int) -> int:
    """Return the lists to scan for an interpolated nprobe: rounded up, unless within PROBE_SLACK above an integer."""
    # Interpolated values land a hair above a tuned integer (fraction 0.4996 next to a level tuned
    # at 0.5 gave 4.0017): 1% of a list is not worth a fifth list (+25% of the scan).
    return max(1, min(nlist, math.ceil(probes - PROBE_SLACK)))
