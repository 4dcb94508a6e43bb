"""Adapters for the tools users would compare edgemine with on filtered multi-example mining.

The task: given m example vectors (unit float32, so inner product = cosine), return the k rows with the
highest score = max over examples of cosine(row, example), among rows NOT excluded (an excluded mask of
labeled/queued rows, plus the examples' own rows). Every peer applies the exclusions inside its own
search with its filtering feature; none post-filters on our side. A peer that searches once per example
returns, for each example, the exact top-k of the allowed rows (up to its own approximation), and the union
merged by max score is then exactly the top-k of the max rule (a row in the true top-k is in the per-example
top-k of its best example).

Peers, their configuration and the documentation followed (looked up for the installed versions:
numpy 2.4, faiss-cpu 1.15, hnswlib 0.8, qdrant-client 1.20, lancedb 0.40):

numpy
    The baseline: E @ examples.T, max over the examples, excluded rows set to -inf, argpartition top k.
faiss-flat
    faiss.IndexFlatIP (exact inner product). One ``search`` call for all examples with
    ``params=faiss.SearchParameters(sel=faiss.IDSelectorBitmap(bitmap))`` where the bitmap is
    ``np.packbits(~excluded, bitorder="little")`` (faiss wiki "Setting search parameters for one query",
    section on IDSelector). The examples' rows are cleared in the bitmap for the duration of the call.
hnswlib
    ``Index(space="ip")``, ``init_index(M=16, ef_construction=200)`` (README example),
    ``set_ef(max(2k, 200))`` (ALGO_PARAMS.md: ef >= k, higher = better recall), build with 2 threads.
    Query: ``knn_query(examples, k, num_threads=1, filter=callable)``; examples/example_filter.py warns
    that the Python filter is slow in multithreaded mode and sets num_threads=1. The filter is a Python
    callback invoked (under the GIL) for each candidate node; we pass ``list.__getitem__`` over a list of
    bools so no Python frame runs per call.
qdrant
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
lancedb
    ``lancedb.connect(dir)``, one table (``id`` int64, ``state`` string, ``vector`` FixedSizeList float32).
    Below 100k rows no vector index (docs, Vector Indexes: under ~100K rows an index is usually unnecessary;
    the search is then an exact flat scan). From 100k rows: ``IVF_PQ`` with ``distance_type="dot"`` (docs,
    Vector Search: dot for normalized vectors, best performance), ``num_partitions = n // 4096`` and
    ``num_sub_vectors = d // 8`` (docs, Vector Index configuration; IVF_PQ is the index the docs prefer for
    filtered workloads). Scalar indexes BITMAP on ``state`` and BTREE on ``id`` (docs, Filtering: "strongly
    recommend creating scalar indices on columns used for filtering"). Query: one batch search over all
    examples, ``.where("state = 'unlabeled' AND id NOT IN (...)", prefilter=True)``, nprobes left
    auto-tuned (docs: leave unset unless recall is short; it is 20), ``refine_factor(10)`` when indexed
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

PEER_NAMES = ("numpy", "faiss-flat", "hnswlib", "qdrant", "lancedb")
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


class HnswlibPeer:
    """hnswlib HNSW (inner product) with its per-node Python filter callback."""

    name = "hnswlib"
    notes = (
        "HNSW M=16 ef_construction=200, ef=max(2k,200); knn_query(filter=callable) per README/examples: the "
        "filter is a Python callback per visited node (GIL), so queries run with num_threads=1 as its filter "
        "example advises; k per example, merged by max"
    )

    def __init__(self, m: int = 16, ef_construction: int = 200, threads: int = 2) -> None:
        self._m, self._ef_construction, self._threads = m, ef_construction, threads
        self._index: Any = None
        self._allowed: list[bool] = []
        self._n_allowed = 0

    def build(self, vectors: Vectors, tmpdir: Path) -> None:
        """Build the graph with `threads` threads."""
        hnswlib = _import(self.name, "hnswlib", "hnswlib")
        n, d = vectors.shape
        self._index = hnswlib.Index(space="ip", dim=d)
        self._index.init_index(max_elements=n, ef_construction=self._ef_construction, M=self._m, random_seed=100)
        self._index.set_num_threads(self._threads)
        self._index.add_items(np.ascontiguousarray(vectors, dtype=np.float32), np.arange(n))
        self.set_excluded(np.zeros(n, bool))

    def set_excluded(self, excluded: Mask) -> None:
        """Keep the allowed flags as a Python list (its __getitem__ is the filter)."""
        allowed = ~np.asarray(excluded, bool)
        self._allowed = allowed.tolist()
        self._n_allowed = int(allowed.sum())

    def query(self, examples: Vectors, k: int, extra_excluded: Ids) -> Ids:
        """Filtered knn_query for each example (one call), merged by max."""
        assert self._index is not None, "build first"
        extra = [i for i in _as_ids(extra_excluded).tolist() if self._allowed[i]]
        for i in extra:
            self._allowed[i] = False
        try:
            kk = min(k, self._n_allowed - len(extra))
            if kk <= 0:
                return np.empty(0, np.int64)
            self._index.set_ef(max(2 * k, 200))
            labels, distances = self._index.knn_query(
                _as_queries(examples), k=kk, num_threads=1, filter=self._allowed.__getitem__
            )
        finally:
            for i in extra:
                self._allowed[i] = True
        # space "ip" returns distance = 1 - <x, q>
        return _top_k(labels.astype(np.int64).ravel(), 1.0 - distances.ravel(), k)

    def memory_bytes(self) -> int | None:
        """hnswlib's own index_file_size() (graph + vectors)."""
        return None if self._index is None else int(self._index.index_file_size())

    def close(self) -> None:
        """Drop the index."""
        self._index = None
        self._allowed = []


class QdrantPeer:
    """Qdrant Recommendation API (best_score) with a payload filter; local mode unless `url` is given."""

    name = "qdrant"

    def __init__(self, url: str | None = None) -> None:
        self._url = url
        self._client: Any = None
        self._models: Any = None
        self._state: Mask | None = None  # True = labeled (excluded)
        self._collection = "rows"
        where = f"server {url}" if url else "local mode (pure-Python brute force; not representative of the server)"
        self.notes = (
            f"{where}; Distance.DOT; recommend query, strategy=best_score (max over examples) with "
            "query_filter must state=='unlabeled' + must_not HasIdCondition(example rows); limit=k"
        )

    def build(self, vectors: Vectors, tmpdir: Path) -> None:
        """Create the collection and upload the points in batches."""
        qdrant_client = _import(self.name, "qdrant_client", "qdrant-client")
        models = self._models = qdrant_client.models
        n, d = vectors.shape
        location = {"url": self._url} if self._url else {"location": ":memory:"}
        self._client = qdrant_client.QdrantClient(**location)
        self._client.create_collection(
            self._collection, vectors_config=models.VectorParams(size=d, distance=models.Distance.DOT)
        )
        if self._url:
            self._client.create_payload_index(
                self._collection, field_name="state", field_schema=models.PayloadSchemaType.KEYWORD
            )
        # Local mode turns the whole upload into PointStructs with list vectors at once: batch it.
        for start in range(0, n, QDRANT_UPLOAD_BATCH):
            stop = min(n, start + QDRANT_UPLOAD_BATCH)
            self._client.upload_collection(
                self._collection,
                vectors=np.ascontiguousarray(vectors[start:stop], dtype=np.float32),
                payload=({"state": "unlabeled"} for _ in range(start, stop)),
                ids=range(start, stop),
                wait=True,
            )
        self._state = np.zeros(n, bool)

    def set_excluded(self, excluded: Mask) -> None:
        """set_payload on the rows whose state changes."""
        assert self._state is not None, "build first"
        excluded = np.asarray(excluded, bool)
        for value, rows in (("labeled", excluded & ~self._state), ("unlabeled", ~excluded & self._state)):
            ids = np.flatnonzero(rows).tolist()
            for start in range(0, len(ids), QDRANT_PAYLOAD_BATCH):
                self._client.set_payload(
                    self._collection,
                    payload={"state": value},
                    points=ids[start : start + QDRANT_PAYLOAD_BATCH],
                    wait=True,
                )
        self._state = excluded.copy()

    def query(self, examples: Vectors, k: int, extra_excluded: Ids) -> Ids:
        """One recommend query with best_score over all examples."""
        models = self._models
        extra = _as_ids(extra_excluded).tolist()
        query_filter = models.Filter(
            must=[models.FieldCondition(key="state", match=models.MatchValue(value="unlabeled"))],
            must_not=[models.HasIdCondition(has_id=extra)] if extra else None,
        )
        response = self._client.query_points(
            self._collection,
            query=models.RecommendQuery(
                recommend=models.RecommendInput(
                    positive=[row.tolist() for row in _as_queries(examples)],
                    strategy=models.RecommendStrategy.BEST_SCORE,
                )
            ),
            query_filter=query_filter,
            limit=k,
            with_payload=False,
            with_vectors=False,
        )
        return np.array([int(p.id) for p in response.points], np.int64)

    def memory_bytes(self) -> int | None:
        """Qdrant does not report an index size through the client."""
        return None

    def close(self) -> None:
        """Close the client."""
        if self._client is not None:
            self._client.close()
        self._client = None


class LanceDBPeer:
    """LanceDB table: flat scan below 100k rows, IVF_PQ (dot) above; SQL prefilter on `state` and `id`."""

    name = "lancedb"

    def __init__(self, index_min_rows: int = LANCEDB_INDEX_MIN_ROWS, refine_factor: int = 10) -> None:
        self._index_min_rows, self._refine_factor = index_min_rows, refine_factor
        self._table: Any = None
        self._pa: Any = None
        self._indexed = False
        self._state: Mask | None = None
        self.notes = "not built yet"

    def build(self, vectors: Vectors, tmpdir: Path) -> None:
        """Write the table, then the vector index (n >= 100k) and the scalar indexes."""
        lancedb = _import(self.name, "lancedb", "lancedb")
        pa = self._pa = _import(self.name, "pyarrow", "pyarrow")
        from lancedb.index import Bitmap, BTree, IvfPq

        n, d = vectors.shape
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
        table = pa.table(
            {
                "id": pa.array(np.arange(n, dtype=np.int64)),
                "state": pa.array(np.full(n, "unlabeled", dtype=object), pa.string()),
                "vector": pa.FixedSizeListArray.from_arrays(flat, d),
            }
        )
        db = lancedb.connect(str(Path(tmpdir) / "lancedb"))
        self._table = db.create_table("rows", table, mode="overwrite")
        self._indexed = n >= self._index_min_rows
        if self._indexed:
            sub_vectors = d // 8 if d % 8 == 0 else 1
            self._table.create_index(
                "vector",
                config=IvfPq(distance_type="dot", num_partitions=max(1, n // 4096), num_sub_vectors=sub_vectors),
            )
            vector_part = f"IVF_PQ dot, {max(1, n // 4096)} partitions, {sub_vectors} sub-vectors, " + (
                f"nprobes auto (20), refine_factor={self._refine_factor}"
            )
        else:
            vector_part = f"no vector index below {self._index_min_rows} rows (exact flat scan, dot)"
        self._table.create_index("state", config=Bitmap())
        self._table.create_index("id", config=BTree())
        self._state = np.zeros(n, bool)
        self.notes = (
            f"{vector_part}; scalar indexes BITMAP(state) + BTREE(id); batch search over all examples with "
            "where(\"state = 'unlabeled' AND id NOT IN (examples)\", prefilter=True), k per example, merged by max"
        )

    def set_excluded(self, excluded: Mask) -> None:
        """Rewrite the `state` column of changed rows (partial merge_insert), then refresh the scalar indexes."""
        assert self._state is not None and self._pa is not None, "build first"
        pa = self._pa
        excluded = np.asarray(excluded, bool)
        changed = np.flatnonzero(excluded != self._state)
        if len(changed):
            update = pa.table(
                {
                    "id": pa.array(changed.astype(np.int64)),
                    "state": pa.array(np.where(excluded[changed], "labeled", "unlabeled").astype(object), pa.string()),
                }
            )
            self._table.merge_insert("id").when_matched_update_all().execute(update)
            self._table.optimize()
        self._state = excluded.copy()

    def query(self, examples: Vectors, k: int, extra_excluded: Ids) -> Ids:
        """One batch vector search with the SQL prefilter, merged by max."""
        assert self._table is not None, "build first"
        where = "state = 'unlabeled'"
        extra = _as_ids(extra_excluded).tolist()
        if extra:
            where += f" AND id NOT IN ({', '.join(str(i) for i in extra)})"
        search = (
            self._table.search(_as_queries(examples))
            .distance_type("dot")
            .where(where, prefilter=True)
            .select(["id", "_distance"])
            .limit(k)
        )
        if self._indexed:
            search = search.refine_factor(self._refine_factor)
        result = search.to_arrow()
        ids = result["id"].to_numpy().astype(np.int64)
        # LanceDB's dot distance is 1 - <x, q>
        return _top_k(ids, 1.0 - result["_distance"].to_numpy().astype(np.float32), k)

    def memory_bytes(self) -> int | None:
        """Table + index bytes on disk as LanceDB reports them (it is a disk-based store)."""
        return None if self._table is None else int(self._table.stats()["total_bytes"])

    def close(self) -> None:
        """Drop the table handle."""
        self._table = None


_PEERS: dict[str, Callable[[], Peer]] = {
    "numpy": NumpyPeer,
    "faiss-flat": FaissFlatPeer,
    "hnswlib": HnswlibPeer,
    "qdrant": QdrantPeer,
    "lancedb": LanceDBPeer,
}


def make_peers(names: list[str]) -> list[Peer]:
    """Create the named peers (among PEER_NAMES); their libraries are imported only in build()."""
    unknown = [name for name in names if name not in _PEERS]
    if unknown:
        raise ValueError(f"unknown peer(s) {unknown}; choose among {list(PEER_NAMES)}")
    return [_PEERS[name]() for name in names]
