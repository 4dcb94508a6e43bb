"""Peers backed by vector libraries and databases: hnswlib, Qdrant's local mode (qdrant-local), LanceDB.

Their configuration and the documentation followed are described in peers.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from peers import (
    HNSW_SWEEP,
    LANCEDB_INDEX_MIN_ROWS,
    QDRANT_PAYLOAD_BATCH,
    QDRANT_UPLOAD_BATCH,
    Ids,
    Mask,
    Vectors,
    _as_ids,
    _as_queries,
    _import,
    _top_k,
    sweep_with,
)


class HnswlibPeer:
    """hnswlib HNSW (inner product) with its per-node Python filter callback."""

    name = "hnswlib"
    param = "ef"
    notes = (
        "HNSW M=16 ef_construction=200, ef=max(2k,200) recommended (swept); knn_query(filter=callable) per "
        "README/examples: the filter is a Python callback per visited node (GIL), so queries run with "
        "num_threads=1 as its filter example advises; k per example, merged by max"
    )

    def __init__(self, m: int = 16, ef_construction: int = 200, threads: int = 2) -> None:
        self._m, self._ef_construction, self._threads = m, ef_construction, threads
        self.recommended = 200  # max(2k, 200) at the benchmark's k = 100; set_param overrides
        self._ef: int | None = None
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
            self._index.set_ef(self._ef if self._ef is not None else max(2 * k, 200))
            labels, distances = self._index.knn_query(
                _as_queries(examples), k=kk, num_threads=1, filter=self._allowed.__getitem__
            )
        finally:
            for i in extra:
                self._allowed[i] = True
        # space "ip" returns distance = 1 - <x, q>
        return _top_k(labels.astype(np.int64).ravel(), 1.0 - distances.ravel(), k)

    def sweep_values(self) -> list[int]:
        """ef values to measure."""
        return sweep_with(self.recommended, HNSW_SWEEP)

    def set_param(self, value: int) -> None:
        """Use ef = value (hnswlib itself searches with max(ef, k))."""
        self._ef = value

    def memory_bytes(self) -> int | None:
        """hnswlib's own index_file_size() (graph + vectors)."""
        return None if self._index is None else int(self._index.index_file_size())

    def close(self) -> None:
        """Drop the index."""
        self._index = None
        self._allowed = []


class QdrantPeer:
    """Qdrant Recommendation API (best_score) with a payload filter; local mode unless `url` is given."""

    name = "qdrant-local"

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
    param = "nprobes"
    recommended = 20  # LanceDB's auto-tuned default

    def __init__(self, index_min_rows: int = LANCEDB_INDEX_MIN_ROWS, refine_factor: int = 10) -> None:
        self._index_min_rows, self._refine_factor = index_min_rows, refine_factor
        self._partitions = 1
        self._nprobes: int | None = None
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
            self._partitions = max(1, n // 4096)
            self._table.create_index(
                "vector",
                config=IvfPq(distance_type="dot", num_partitions=self._partitions, num_sub_vectors=sub_vectors),
            )
            vector_part = f"IVF_PQ dot, {self._partitions} partitions, {sub_vectors} sub-vectors, " + (
                f"nprobes auto (20) recommended (swept), refine_factor={self._refine_factor}"
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
            if self._nprobes is not None:
                search = search.nprobes(self._nprobes)
        result = search.to_arrow()
        ids = result["id"].to_numpy().astype(np.int64)
        # LanceDB's dot distance is 1 - <x, q>
        return _top_k(ids, 1.0 - result["_distance"].to_numpy().astype(np.float32), k)

    def sweep_values(self) -> list[int]:
        """nprobes values to measure (capped at the number of partitions; one value without an index)."""
        if not self._indexed:
            return [self.recommended]
        return sweep_with(self.recommended, (5, 10, 40, 80), limit=self._partitions)

    def set_param(self, value: int) -> None:
        """Use nprobes = value (ignored by the flat scan below 100k rows)."""
        self._nprobes = value

    def memory_bytes(self) -> int | None:
        """Table + index bytes on disk as LanceDB reports them (it is a disk-based store)."""
        return None if self._table is None else int(self._table.stats()["total_bytes"])

    def close(self) -> None:
        """Drop the table handle."""
        self._table = None
