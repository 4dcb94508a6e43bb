"""Peers in the engines users pick: Qdrant's Rust engine embedded (qdrant-edge), Milvus Lite, USearch.

Their configuration and the documentation followed are described in peers.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from peers import HNSW_SWEEP, Ids, Mask, Vectors, _as_ids, _as_queries, _import, _top_k, sweep_with

QDRANT_EDGE_BATCH = 2_000
MILVUS_BATCH = 5_000
MILVUS_SWEEP_FACTORS = (2, 4, 8)  # ef = k x factor


class QdrantEdgePeer:
    """Qdrant's engine in-process: HNSW + keyword payload index, a filtered nearest search per example."""

    name = "qdrant-edge"
    param = "hnsw_ef"
    recommended = 100  # unset: Qdrant searches with ef = ef_construct (100)

    def __init__(
        self,
        m: int = 16,
        ef_construct: int = 100,
        full_scan_threshold_kb: int = 10_000,
        indexing_threshold_kb: int | None = None,
    ) -> None:
        self._m, self._ef_construct, self._full_scan = m, ef_construct, full_scan_threshold_kb
        self._indexing_threshold = indexing_threshold_kb  # None: Qdrant's default (segments below it stay plain)
        self._q: Any = None
        self._shard: Any = None
        self._dir: Path | None = None
        self._state: Mask | None = None  # True = labeled (excluded)
        self._ef: int | None = None
        self.notes = (
            f"Rust engine embedded (qdrant-edge EdgeShard): HNSW m={m} ef_construct={ef_construct} "
            f"full_scan_threshold={full_scan_threshold_kb}KB (Qdrant defaults), Distance.Dot, keyword payload index "
            "on state (created before upload), optimize(); one Query.Nearest per example in a query_batch with "
            "Filter(must state=='unlabeled', must_not HasId(example rows)), merged by max (RecommendBestScore's "
            "single max-over-examples graph walk lost most of the recall); hnsw_ef unset = 100 recommended (swept)"
        )

    def build(self, vectors: Vectors, tmpdir: Path) -> None:
        """Create the shard, index `state`, upsert the points, build HNSW (blocking optimize)."""
        q = self._q = _import(self.name, "qdrant_edge", "qdrant-edge-py")
        n, d = vectors.shape
        self._dir = Path(tmpdir) / "shard"
        config = q.EdgeConfig(
            vectors=q.EdgeVectorParams(size=d, distance=q.Distance.Dot),
            hnsw_config=q.HnswIndexConfig(
                m=self._m, ef_construct=self._ef_construct, full_scan_threshold=self._full_scan
            ),
            optimizers=None
            if self._indexing_threshold is None
            else q.EdgeOptimizersConfig(indexing_threshold=self._indexing_threshold),
        )
        self._shard = q.EdgeShard.create(str(self._dir), config)
        self._shard.update(q.UpdateOperation.create_field_index("state", q.PayloadSchemaType.Keyword))
        for start in range(0, n, QDRANT_EDGE_BATCH):
            rows = range(start, min(n, start + QDRANT_EDGE_BATCH))
            points = [q.Point(i, vectors[i].tolist(), {"state": "unlabeled"}) for i in rows]
            self._shard.update(q.UpdateOperation.upsert_points(points))
        self._shard.optimize()
        self._state = np.zeros(n, bool)

    def set_excluded(self, excluded: Mask) -> None:
        """set_payload on the rows whose state changes."""
        assert self._state is not None, "build first"
        excluded = np.asarray(excluded, bool)
        for value, rows in (("labeled", excluded & ~self._state), ("unlabeled", ~excluded & self._state)):
            ids = np.flatnonzero(rows).tolist()
            for start in range(0, len(ids), 50_000):
                self._shard.update(self._q.UpdateOperation.set_payload(ids[start : start + 50_000], {"state": value}))
        self._state = excluded.copy()

    def query(self, examples: Vectors, k: int, extra_excluded: Ids) -> Ids:
        """One batched nearest search per example (query_batch), merged by max score."""
        q = self._q
        extra = set(_as_ids(extra_excluded).tolist())
        query_filter = q.Filter(
            must=[q.FieldCondition(key="state", match=q.MatchValue(value="unlabeled"))],
            must_not=[q.HasIdCondition(point_ids=extra)] if extra else None,
        )
        params = q.SearchParams(hnsw_ef=self._ef) if self._ef is not None else None
        # Not Query.RecommendBestScore: its single graph walk scores max-over-examples, a multi-modal
        # target the HNSW greedy search cannot follow (recall 0.0-0.3 at 10 examples, flat in hnsw_ef).
        requests = [
            q.QueryRequest(
                limit=k,
                query=q.Query.Nearest(row.tolist()),
                filter=query_filter,
                params=params,
                with_payload=False,
                with_vector=False,
            )
            for row in _as_queries(examples)
        ]
        hits = [p for points in self._shard.query_batch(q.QueryBatchRequest(requests)) for p in points]
        ids = np.array([int(p.id) for p in hits], np.int64)
        return _top_k(ids, np.array([p.score for p in hits], np.float32), k)

    def sweep_values(self) -> list[int]:
        """hnsw_ef values to measure."""
        return sweep_with(self.recommended, HNSW_SWEEP)

    def set_param(self, value: int) -> None:
        """Search with hnsw_ef = value."""
        self._ef = value

    def memory_bytes(self) -> int | None:
        """Not reported by the engine (the benchmark falls back to the RSS growth during build)."""
        return None

    def close(self) -> None:
        """Close the shard."""
        if self._shard is not None:
            self._shard.close()
        self._shard = None


class MilvusPeer:
    """Milvus Lite through pymilvus: HNSW (IP) + INVERTED index on state, a boolean filter expression."""

    name = "milvus"
    param = "ef"

    def __init__(self, m: int = 16, ef_construction: int = 200, k: int = 100) -> None:
        self._m, self._ef_construction = m, ef_construction
        self.recommended = k  # Milvus requires ef >= limit; the benchmark's k
        self._k = k
        self._ef = k
        self._client: Any = None
        self._dir: Path | None = None
        self._state: Mask | None = None
        self._collection = "rows"
        self.notes = (
            "Milvus Lite 3.x via pymilvus MilvusClient('file.db') -- a pure-Python re-implementation of the Milvus "
            "API (gRPC server process, per-segment FAISS indexes, row mask built in Python per search), NOT Milvus's "
            f"C++/Knowhere engine; HNSW M={m} efConstruction={ef_construction} metric IP, INVERTED index on state; "
            "one search for all examples with filter 'state == \"unlabeled\" and id not in [example rows]', "
            "ef = k recommended (swept); merged by max; bytes/vector = files on disk"
        )

    def build(self, vectors: Vectors, tmpdir: Path) -> None:
        """Create the collection, insert, flush, build the indexes and load."""
        pymilvus = _import(self.name, "pymilvus", "pymilvus")
        _import(self.name, "milvus_lite", "milvus-lite")
        n, d = vectors.shape
        self._dir = Path(tmpdir)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._client = client = pymilvus.MilvusClient(str(self._dir / "milvus.db"))
        schema = pymilvus.MilvusClient.create_schema(auto_id=False)
        schema.add_field("id", pymilvus.DataType.INT64, is_primary=True)
        schema.add_field("state", pymilvus.DataType.VARCHAR, max_length=16)
        schema.add_field("vector", pymilvus.DataType.FLOAT_VECTOR, dim=d)
        # Indexes declared with the collection (as in Milvus's quickstart): each flushed segment gets its
        # HNSW inside flush, an idempotent call; a create_index on loaded data can outlast pymilvus's RPC
        # deadline on a busy machine, and its retry then fails with "index already exists".
        index = client.prepare_index_params()
        index.add_index(
            field_name="vector", index_type="HNSW", metric_type="IP",
            params={"M": self._m, "efConstruction": self._ef_construction},
        )
        index.add_index(field_name="state", index_type="INVERTED")
        client.create_collection(self._collection, schema=schema, index_params=index)
        for start in range(0, n, MILVUS_BATCH):
            rows = range(start, min(n, start + MILVUS_BATCH))
            batch = [{"id": i, "state": "unlabeled", "vector": vectors[i].tolist()} for i in rows]
            client.insert(self._collection, batch)
        client.flush(self._collection)
        client.load_collection(self._collection)
        info = client.describe_index(self._collection, "vector")
        self.notes += f"; indexed rows after build: {info.get('indexed_rows')} of {info.get('total_rows')}"
        self._state = np.zeros(n, bool)

    def set_excluded(self, excluded: Mask) -> None:
        """Partial upsert of `state` on the rows whose state changes, then flush."""
        assert self._state is not None, "build first"
        excluded = np.asarray(excluded, bool)
        changed = np.flatnonzero(excluded != self._state)
        for start in range(0, len(changed), MILVUS_BATCH):
            batch = changed[start : start + MILVUS_BATCH]
            rows = [{"id": int(i), "state": "labeled" if excluded[i] else "unlabeled"} for i in batch]
            self._client.upsert(self._collection, rows, partial_update=True)
        if len(changed):
            self._client.flush(self._collection)
        self._state = excluded.copy()

    def query(self, examples: Vectors, k: int, extra_excluded: Ids) -> Ids:
        """One filtered search for all examples, merged by max."""
        extra = _as_ids(extra_excluded).tolist()
        expr = 'state == "unlabeled"' + (f" and id not in [{', '.join(map(str, extra))}]" if extra else "")
        hits = self._client.search(
            self._collection,
            data=_as_queries(examples).tolist(),
            limit=k,
            filter=expr,
            search_params={"metric_type": "IP", "params": {"ef": max(self._ef, k)}},
            output_fields=[],
        )
        ids = np.array([h["id"] for per in hits for h in per], np.int64)
        scores = np.array([h["distance"] for per in hits for h in per], np.float32)  # IP: the inner product
        return _top_k(ids, scores, k)

    def sweep_values(self) -> list[int]:
        """ef values to measure (k and multiples)."""
        return sweep_with(self.recommended, tuple(self._k * f for f in MILVUS_SWEEP_FACTORS))

    def set_param(self, value: int) -> None:
        """Search with ef = value (at least k)."""
        self._ef = value

    def memory_bytes(self) -> int | None:
        """The database directory's bytes on disk (segments + index files): the engine runs in its own process."""
        if self._dir is None:
            return None
        return sum(f.stat().st_size for f in self._dir.rglob("*") if f.is_file())

    def close(self) -> None:
        """Close the client (stops the local server)."""
        if self._client is not None:
            self._client.close()
        self._client = None


class USearchPeer:
    """USearch HNSW; excluded rows removed (tombstones skipped inside the search)."""

    name = "usearch"
    param = "expansion_search"
    recommended = 64  # README default; the search uses at least k candidates

    def __init__(self, connectivity: int = 16, expansion_add: int = 128) -> None:
        self._connectivity, self._expansion_add = connectivity, expansion_add
        self._index: Any = None
        self._vectors: Vectors | None = None
        self._state: Mask | None = None
        self.notes = (
            f"HNSW connectivity={connectivity} expansion_add={expansion_add} metric ip dtype f32 (README defaults), "
            "expansion_search 64 recommended (swept); the Python API has no filter predicate: excluded rows are "
            "remove()d (tombstones the search skips), examples' own rows dropped from k+m results; merged by max"
        )

    def build(self, vectors: Vectors, tmpdir: Path) -> None:
        """Add all vectors (keys = row ids) with the library's default threads."""
        usearch_index = _import(self.name, "usearch.index", "usearch")
        n, d = vectors.shape
        self._index = usearch_index.Index(
            ndim=d, metric="ip", dtype="f32", connectivity=self._connectivity,
            expansion_add=self._expansion_add, expansion_search=self.recommended,
        )
        self._vectors = vectors
        self._index.add(np.arange(n, dtype=np.uint64), np.ascontiguousarray(vectors, dtype=np.float32))
        self._state = np.zeros(n, bool)

    def set_excluded(self, excluded: Mask) -> None:
        """Remove newly excluded rows; re-add rows that became eligible again."""
        assert self._state is not None and self._vectors is not None, "build first"
        excluded = np.asarray(excluded, bool)
        gone = np.flatnonzero(excluded & ~self._state).astype(np.uint64)
        back = np.flatnonzero(~excluded & self._state)
        if len(gone):
            self._index.remove(gone)
        if len(back):
            self._index.add(back.astype(np.uint64), np.ascontiguousarray(self._vectors[back], dtype=np.float32))
        self._state = excluded.copy()

    def query(self, examples: Vectors, k: int, extra_excluded: Ids) -> Ids:
        """One batch search for all examples (k + m each), examples' rows dropped, merged by max."""
        assert self._state is not None, "build first"
        extra = _as_ids(extra_excluded)
        extra = extra[~self._state[extra]]  # rows already removed cannot come back
        queries = _as_queries(examples)
        matches = self._index.search(queries, k + len(extra))
        if hasattr(matches, "counts"):  # BatchMatches: fixed-width rows padded past each query's count
            keys = np.asarray(matches.keys, np.int64).reshape(len(queries), -1)
            distances = np.asarray(matches.distances, np.float32).reshape(len(queries), -1)
            valid = np.arange(keys.shape[1])[None, :] < np.asarray(matches.counts).reshape(-1, 1)
            keys, distances = keys[valid], distances[valid]
        else:  # one query: Matches holds only the valid results
            keys = np.asarray(matches.keys, np.int64).reshape(-1)
            distances = np.asarray(matches.distances, np.float32).reshape(-1)
        keep = ~np.isin(keys, extra)
        # metric "ip": distance = 1 - <x, q>
        return _top_k(keys[keep], 1.0 - distances[keep], k)

    def sweep_values(self) -> list[int]:
        """expansion_search values to measure."""
        return sweep_with(self.recommended, HNSW_SWEEP)

    def set_param(self, value: int) -> None:
        """Search with expansion_search = value."""
        self._index.expansion_search = value

    def memory_bytes(self) -> int | None:
        """USearch's own memory_usage (graph + vectors)."""
        return None if self._index is None else int(self._index.memory_usage)

    def close(self) -> None:
        """Drop the index."""
        self._index = self._vectors = None
