"""Adapters for the tools users would compare edgemine with on filtered multi-example mining.

The task: given m example vectors (unit float32, so inner product = cosine), return the k rows with the
highest score = max over examples of cosine(row, example), among rows NOT excluded (an excluded mask of
labeled/queued rows, plus the examples' own rows). Every peer applies the exclusions inside its own
search with its filtering feature; none post-filters on our side. A peer that searches once per example
returns, for each example, the exact top-k of the allowed rows (up to its own approximation), and the union
merged by max score is then exactly the top-k of the max rule (a row in the true top-k is in the per-example
top-k of its best example).

Peers, their configuration and the documentation followed (looked up for the installed versions:
numpy 2.4, faiss-cpu 1.15, hnswlib 0.8, qdrant-client 1.20, qdrant-edge-py 0.9, pymilvus 3.0 + milvus-lite 3.2,
usearch 2.26, lancedb 0.40). Peers with a search knob (``param``) start at the value their documentation
recommends (``recommended``) and the benchmark also runs a small sweep (``sweep_values()``), so that they are
compared at equal recall; numpy, faiss-flat and qdrant-local are exact and have no knob.

numpy
    The baseline: E @ examples.T, max over the examples, excluded rows set to -inf, argpartition top k.
faiss-flat
    faiss.IndexFlatIP (exact inner product). One ``search`` call for all examples with
    ``params=faiss.SearchParameters(sel=faiss.IDSelectorBitmap(bitmap))`` where the bitmap is
    ``np.packbits(~excluded, bitorder="little")`` (faiss wiki "Setting search parameters for one query",
    section on IDSelector). The examples' rows are cleared in the bitmap for the duration of the call.
hnswlib
    ``Index(space="ip")``, ``init_index(M=16, ef_construction=200)`` (README example), ef = max(2k, 200)
    recommended (ALGO_PARAMS.md: ef >= k, higher = better recall), swept over 100..800; build with 2 threads.
    Query: ``knn_query(examples, k, num_threads=1, filter=callable)``; examples/example_filter.py warns
    that the Python filter is slow in multithreaded mode and sets num_threads=1. The filter is a Python
    callback invoked (under the GIL) for each candidate node; we pass ``list.__getitem__`` over a list of
    bools so no Python frame runs per call.
qdrant-edge (peers_engines.py)
    Qdrant's Rust engine embedded in-process (``qdrant_edge.EdgeShard``). Qdrant's default collection
    config: HNSW m=16, ef_construct=100, full_scan_threshold=10000 KB, default optimizers; Distance.Dot;
    a keyword payload index on ``state`` created before the upload (docs "Indexing": create payload indexes
    first so that HNSW builds filter-aware links), then ``optimize()`` (blocking HNSW build). ``state`` is
    kept up to date with ``set_payload``. Query: one ``Query.Nearest`` per example, sent together through
    ``query_batch``, each with ``Filter(must=[state == "unlabeled"], must_not=[HasIdCondition(example
    rows)])``, merged by max score. Not ``Query.RecommendBestScore`` (the recommend API's best_score
    strategy): it walks the graph once with the max-over-positives score, which the greedy HNSW search
    cannot follow to several examples' neighbourhoods (recall 0.0-0.33 at 10 examples on 30k x 512 of
    the benchmark's data against 0.58-1.0 per example; flat in hnsw_ef; the 2026-12-01 peers-100k/1M
    results were measured with it). ``SearchParams(hnsw_ef=...)``: recommended
    = unset (Qdrant then uses ef_construct, 100), swept 100..800. Qdrant picks exact search over the payload
    index by itself when the filter's estimated cardinality is under full_scan_threshold. Above it, its
    filtered graph walk does not pass through non-matching nodes: with 5% of rows matching it returns only a few
    of the k points asked for (measured at 100k x 512: 5,000 matching rows -> 1-4 points, 4,999 -> exact).
    Its relevance-feedback query (``FeedbackNaiveQuery``) needs a target vector, a reranker's scores for a few
    results and a, b, c weights trained per dataset; it does not express "max over positives" and is not run.
milvus (peers_engines.py)
    pymilvus ``MilvusClient("file.db")`` (Milvus Lite), collection (id INT64 primary, state VARCHAR,
    vector FLOAT_VECTOR), index HNSW M=16 efConstruction=200 metric IP (Milvus docs' HNSW example) and an
    INVERTED scalar index on ``state``. Query: one ``search`` over all examples with the boolean filter
    expression ``state == "unlabeled" and id not in [example rows]``, ``search_params={"ef": ...}``:
    Milvus requires ef >= limit; recommended ef = k, swept to 8k. NOTE: milvus-lite 3.x is a pure-Python
    re-implementation of Milvus's API (a gRPC server process over per-segment FAISS indexes); it is not
    Milvus's C++/Knowhere engine, and it builds its row mask in Python on every search (O(n) per query).
usearch (peers_engines.py)
    ``Index(ndim, metric="ip", dtype="f32", connectivity=16, expansion_add=128, expansion_search=64)``
    (README defaults), ``add`` with its default threads. USearch's Python API (2.26) has no per-query filter
    predicate (the C/C++/Rust bindings do); it offers ``remove`` ("mark some entries deleted, instead of
    rebuilding a filtered index"), whose tombstones the HNSW search skips inside the search. Excluded rows are
    removed (and re-added with their vectors if they become eligible again); the examples' own rows, at most
    m, are dropped from k + m results per example (the only exclusion applied outside the library).
    expansion_search recommended 64 (README; the search uses at least k), swept 100..800.
qdrant-local (peers_db.py)
    qdrant-client local mode (``QdrantClient(":memory:")``; its README: local mode is for development,
    prototyping and testing, "when you need to scale, switch to server mode"). Collection with
    ``Distance.DOT``; payload ``state`` = "unlabeled"/"labeled" kept up to date with ``set_payload``.
    Query: ``query_points(query=RecommendQuery(recommend=RecommendInput(positive=[...],
    strategy=RecommendStrategy.BEST_SCORE)), query_filter=Filter(must=[state == "unlabeled"],
    must_not=[HasIdCondition(example ids)]), limit=k)`` (docs "Explore the data", Recommendation API;
    best_score = max over positives, passed through a monotone sigmoid). Positives are passed as raw
    vectors (supported since Qdrant 1.6); Qdrant also drops point ids named as positives by itself, but we
    name no ids, so the example rows are excluded by the explicit ``must_not``. Local mode is a pure
    Python/numpy re-implementation: it scores every point, argsorts all of them and evaluates the filter per
    point in Python, so it is brute force and slow, NOT representative of the Qdrant server (HNSW +
    payload index); payload indexes have no effect in local mode. ``QdrantPeer(url=...)`` targets a
    server instead (creates a keyword payload index on ``state``, as the docs recommend) -- untested here.
lancedb (peers_db.py)
    ``lancedb.connect(dir)``, one table (``id`` int64, ``state`` string, ``vector`` FixedSizeList float32).
    Below 100k rows no vector index (docs, Vector Indexes: under ~100K rows an index is usually unnecessary;
    the search is then an exact flat scan). From 100k rows: ``IVF_PQ`` with ``distance_type="dot"`` (docs,
    Vector Search: dot for normalized vectors, best performance), ``num_partitions = n // 4096`` and
    ``num_sub_vectors = d // 8`` (docs, Vector Index configuration; IVF_PQ is the index the docs prefer for
    filtered workloads). Scalar indexes BITMAP on ``state`` and BTREE on ``id`` (docs, Filtering: "strongly
    recommend creating scalar indices on columns used for filtering"). Query: one batch search over all
    examples, ``.where("state = 'unlabeled' AND id NOT IN (...)", prefilter=True)``, nprobes left
    auto-tuned (docs: leave unset unless recall is short; it is 20; swept 5..80 up to the number of partitions),
    ``refine_factor(10)`` when indexed
    (docs: refine recovers recall lost to quantization; the docs' examples use 10), then merged by max.
    ``set_excluded`` rewrites only the ``state`` column of changed rows (partial-column ``merge_insert`` on
    ``id``; the vector index stays valid) and calls ``optimize()`` to bring the scalar indexes up to date.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]
Ids = npt.NDArray[np.int64]

PEER_NAMES = ("numpy", "faiss-flat", "hnswlib", "qdrant-edge", "milvus", "usearch", "lancedb", "qdrant-local")
# What `bench_search.py --peers` runs by default: qdrant-local is a pure-Python brute force, opt-in only.
DEFAULT_PEERS = ("numpy", "faiss-flat", "hnswlib", "qdrant-edge", "milvus", "usearch", "lancedb")
HNSW_SWEEP = (100, 200, 400, 800)
LANCEDB_INDEX_MIN_ROWS = 100_000
QDRANT_UPLOAD_BATCH = 10_000
QDRANT_PAYLOAD_BATCH = 50_000


class Peer(Protocol):
    """One tool's way of doing filtered multi-example nearest-neighbour mining."""

    name: str
    notes: str

    def build(self, vectors: Vectors, tmpdir: Path) -> None:
        """Index `vectors` (unit rows; row i has id i), using `tmpdir` for any files."""
        ...

    def set_excluded(self, excluded: Mask) -> None:
        """Make rows where `excluded` is True ineligible for the following queries (untimed)."""
        ...

    def query(self, examples: Vectors, k: int, extra_excluded: Ids) -> Ids:
        """Return up to k eligible row ids, best first, by max cosine over `examples`."""
        ...

    def memory_bytes(self) -> int | None:
        """Index size in bytes if the tool can tell, else None."""
        ...

    def close(self) -> None:
        """Release the index and anything it holds."""
        ...


class Tunable(Peer, Protocol):
    """A peer with one search-effort knob (efSearch, nprobes, ...) that the benchmark sweeps."""

    param: str
    recommended: int

    def sweep_values(self) -> list[int]:
        """The knob's values to measure, including `recommended`, ascending."""
        ...

    def set_param(self, value: int) -> None:
        """Use `value` for the following queries."""
        ...


def is_tunable(peer: Peer) -> bool:
    """Whether the peer has a search knob to sweep."""
    return isinstance(getattr(peer, "param", None), str)


def peer_methods(peer: Peer, vectors: Vectors, k: int) -> dict[str, Callable[[Ids], Ids]]:
    """Timed callables for the benchmark: one per sweep value (`name@param=value`), or the peer itself.

    Each callable sets its parameter first (a cheap attribute write) so that interleaved timing of the
    sweep points stays correct.
    """

    def run(value: int | None) -> Callable[[Ids], Ids]:
        def call(rows: Ids) -> Ids:
            if value is not None:
                peer.set_param(value)  # type: ignore[attr-defined]
            return peer.query(vectors[rows], k, rows)

        return call

    if not is_tunable(peer):
        return {peer.name: run(None)}
    tunable: Any = peer
    return {f"{peer.name}@{tunable.param}={v}": run(v) for v in tunable.sweep_values()}


def sweep_info(peer: Peer) -> dict[str, Any]:
    """The knob, its recommended value and the sweep, for the results file (empty for exact peers)."""
    if not is_tunable(peer):
        return {}
    tunable: Any = peer
    return {"param": tunable.param, "recommended": tunable.recommended, "sweep": tunable.sweep_values()}


def sweep_with(recommended: int, values: tuple[int, ...], limit: int | None = None) -> list[int]:
    """`values` plus the recommended one, ascending, capped at `limit` (e.g. the number of IVF lists)."""
    out = {recommended, *values}
    if limit is not None:
        out = {min(v, limit) for v in out}
    return sorted(out)


def _import(peer: str, module: str, package: str) -> ModuleType:
    """Import a peer's library, or fail with an error that names the peer and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"peer {peer!r} needs the {package!r} package (pip install {package}, or edgemine[bench])"
        ) from exc


def _as_queries(examples: Vectors) -> Vectors:
    """The examples as a C-contiguous float32 [m x d] array."""
    return np.ascontiguousarray(np.atleast_2d(examples), dtype=np.float32)


def _as_ids(ids: npt.ArrayLike) -> Ids:
    """Row ids as a flat int64 array."""
    return np.asarray(ids, dtype=np.int64).reshape(-1)


def _top_k(ids: Ids, scores: npt.NDArray[np.float32], k: int) -> Ids:
    """Keep each id's best score (negative ids are padding), return the k best ids, best first."""
    keep = ids >= 0
    ids, scores = ids[keep], scores[keep].astype(np.float32, copy=False)
    order = np.lexsort((ids, -scores))  # by score descending, ties by id
    ids = ids[order]
    _, first = np.unique(ids, return_index=True)
    return ids[np.sort(first)][:k]


class NumpyPeer:
    """Brute force with numpy: the baseline."""

    name = "numpy"
    notes = "exact brute force: E @ X.T, max over examples, excluded rows set to -inf, argpartition top k"

    def __init__(self) -> None:
        self._vectors: Vectors | None = None
        self._excluded: Mask | None = None

    def build(self, vectors: Vectors, tmpdir: Path) -> None:
        """Keep the vectors."""
        self._vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._excluded = np.zeros(len(vectors), bool)

    def set_excluded(self, excluded: Mask) -> None:
        """Keep a copy of the mask."""
        self._excluded = np.asarray(excluded, bool).copy()

    def query(self, examples: Vectors, k: int, extra_excluded: Ids) -> Ids:
        """Score every row, mask, take the top k."""
        assert self._vectors is not None and self._excluded is not None, "build first"
        scores = (self._vectors @ _as_queries(examples).T).max(axis=1)
        scores[self._excluded] = -np.inf
        scores[_as_ids(extra_excluded)] = -np.inf
        kk = min(k, int(np.isfinite(scores).sum()))
        if kk == 0:
            return np.empty(0, np.int64)
        top = np.argpartition(-scores, kk - 1)[:kk].astype(np.int64)
        return _top_k(top, scores[top], kk)

    def memory_bytes(self) -> int | None:
        """The vectors' bytes."""
        return None if self._vectors is None else int(self._vectors.nbytes)

    def close(self) -> None:
        """Drop the arrays."""
        self._vectors = self._excluded = None


class FaissFlatPeer:
    """faiss IndexFlatIP with an IDSelectorBitmap passed in SearchParameters."""

    name = "faiss-flat"
    notes = (
        "exact: IndexFlatIP, one search for all examples with SearchParameters(sel=IDSelectorBitmap) over "
        "the allowed rows (examples' rows cleared for the call); k per example, merged by max"
    )

    def __init__(self) -> None:
        self._faiss: Any = None
        self._index: Any = None
        self._bitmap: npt.NDArray[np.uint8] | None = None  # must outlive the selector that points into it
        self._params: Any = None
        self._allowed = 0

    def build(self, vectors: Vectors, tmpdir: Path) -> None:
        """Add the vectors to an IndexFlatIP."""
        self._faiss = faiss = _import(self.name, "faiss", "faiss-cpu")
        self._index = faiss.IndexFlatIP(vectors.shape[1])
        self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self.set_excluded(np.zeros(len(vectors), bool))

    def set_excluded(self, excluded: Mask) -> None:
        """Pack the allowed rows into a bitmap selector."""
        allowed = ~np.asarray(excluded, bool)
        self._allowed = int(allowed.sum())
        self._bitmap = np.packbits(allowed, bitorder="little")
        self._params = self._faiss.SearchParameters(sel=self._faiss.IDSelectorBitmap(self._bitmap))

    def query(self, examples: Vectors, k: int, extra_excluded: Ids) -> Ids:
        """One filtered search for all examples, merged by max."""
        assert self._index is not None and self._bitmap is not None, "build first"
        extra = _as_ids(extra_excluded)
        byte, bit = extra >> 3, (extra & 7).astype(np.uint8)
        saved = self._bitmap[byte].copy()
        np.bitwise_and.at(self._bitmap, byte, ~(np.uint8(1) << bit))
        try:
            kk = min(k, self._allowed)
            if kk == 0:
                return np.empty(0, np.int64)
            scores, ids = self._index.search(_as_queries(examples), kk, params=self._params)
        finally:
            self._bitmap[byte] = saved
        return _top_k(ids.ravel(), scores.ravel(), k)

    def memory_bytes(self) -> int | None:
        """Stored codes: ntotal x code_size."""
        return None if self._index is None else int(self._index.ntotal * self._index.code_size)

    def close(self) -> None:
        """Drop the index."""
        self._index = self._params = self._bitmap = None


def _external(name: str) -> Callable[[], Peer]:
    # The library- and database-backed peers live in peers_db.py and peers_engines.py (imported here
    # to keep one registry).
    import peers_db
    import peers_engines

    return {
        "hnswlib": peers_db.HnswlibPeer,
        "qdrant-local": peers_db.QdrantPeer,
        "lancedb": peers_db.LanceDBPeer,
        "qdrant-edge": peers_engines.QdrantEdgePeer,
        "milvus": peers_engines.MilvusPeer,
        "usearch": peers_engines.USearchPeer,
    }[name]


_PEERS: dict[str, Callable[[], Peer]] = {
    "numpy": NumpyPeer,
    "faiss-flat": FaissFlatPeer,
    **{name: (lambda n: lambda: _external(n)())(name) for name in PEER_NAMES[2:]},
}


def make_peers(names: list[str]) -> list[Peer]:
    """Create the named peers (among PEER_NAMES); their libraries are imported only in build()."""
    unknown = [name for name in names if name not in _PEERS]
    if unknown:
        raise ValueError(f"unknown peer(s) {unknown}; choose among {list(PEER_NAMES)}")
    return [_PEERS[name]() for name in names]
