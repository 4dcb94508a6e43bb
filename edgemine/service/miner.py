"""The mining library: one call from examples to ranked, explained, unlabeled candidates."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa

from edgemine.bundle.errors import StateBusy, StateReadOnly, UnknownImageIds
from edgemine.bundle.feedback import record_query, session_verdicts
from edgemine.bundle.snapshot import Snapshot
from edgemine.bundle.state import LABEL_STATES, StateDB
from edgemine.models.base import Embedder
from edgemine.models.vectors import Vectors
from edgemine.search.searcher import Searcher
from edgemine.service import limits
from edgemine.service.diversity import select_diverse
from edgemine.service.filters import filter_mask
from edgemine.service.paging import (
    Cursor,
    CursorError,
    cursor_message,
    decode_cursor,
    encode_cursor,
    query_digest,
    rows_before,
    upload_digest,
)
from edgemine.service.probe import SEARCH_BREADTH, Probe, ProbeError, background_rows, fit_probe
from edgemine.service.query import Candidate, MineQuery, MineResult, Timings
from edgemine.service.row_states import RowStates
from edgemine.service.scoring import CancellingExamples, Examples, mean_direction, ranked_rows, score_rows
from edgemine.service.uploads import Upload

log = logging.getLogger("edgemine.service")
# Seconds a mining call waits to store its query while another process writes state.sqlite; past
# that the answer goes out with its query_id and the query is not stored (a warning is logged).
RECORD_QUERY_WAIT = 2.0


class QueryError(ValueError):
    """The query cannot be answered as asked (no positive input, bad upload, no model...)."""


# Ids made only of characters quote() leaves alone skip it (~3 us each, 100 per page).
_URL_SAFE = re.compile(r"[A-Za-z0-9_.~/-]*")


def image_url(image_id: str, base: str = "") -> str:
    """Return the URL the service serves an image at."""
    path = image_id if _URL_SAFE.fullmatch(image_id) else quote(image_id, safe="/")
    return f"{base.rstrip('/')}/v1/images/{path}"


class Miner:
    """Mines one bundle version; cheap to create, safe to share between threads."""

    def __init__(self, snapshot: Snapshot, states: RowStates,
                 embedder: Callable[[], Embedder] | None, public_url: str = "",
                 searcher: Searcher | None = None) -> None:
        self.snapshot = snapshot
        self.states = states
        self.searcher = searcher
        self._embedder = embedder
        self.public_url = public_url

    def _model(self, why: str) -> Embedder:
        if self._embedder is None:
            raise QueryError(
                f"{why} needs the bundle's model, but bundle was built from precomputed embeddings "
                f"({self.snapshot.manifest.model.identity}); query by image ids instead")
        return self._embedder()

    def _embed_inputs(self, texts: Sequence[str], uploads: Sequence[Upload]) -> tuple[Vectors, list[str]]:
        parts: list[Vectors] = []
        labels: list[str] = []
        if texts:
            parts.append(self._model("a text query").embed_texts(list(texts)))
            labels += [f"text:{t}" for t in texts]
        if uploads:
            model = self._model("an uploaded image")
            for up in uploads:
                # One at a time: only one decoded image is alive at once, whatever the file count.
                try:
                    image = up.decode(getattr(model, "input_size", None))
                except ValueError as exc:
                    raise QueryError(f"uploaded file {up.name!r}: {exc}") from exc
                parts.append(model.embed_images([image]))
                del image
            labels += [f"upload:{up.name}" for up in uploads]
        dim = self.snapshot.manifest.dim
        for part in parts:
            if part.shape[1] != dim:
                raise QueryError(f"model produced {part.shape[1]}-d vectors, bundle has {dim}")
        vectors = np.concatenate(parts) if parts else np.empty((0, dim), np.float32)
        return vectors, labels

    def mine(self, query: MineQuery, uploads: Sequence[Upload] = ()) -> MineResult:
        """Return the best eligible candidates for `query` (exclusions applied before ranking).

        The query is stored in state.sqlite under the result's query_id (not where the state is
        read-only: the id is still returned, and a warning logged). With use_verdicts, the
        session's accepted and rejected images join the positives and negatives.
        """
        started = time.perf_counter()
        query_id = f"q-{uuid.uuid4().hex[:12]}"
        effective = self._with_verdicts(query, len(uploads)) if query.use_verdicts else query
        result = self._mine(effective, uploads, query_id, query)
        db = self._state_db()
        if db is not None:
            try:
                # A mining answer must not wait long behind another writer (an indexing run's batch).
                record_query(db, query_id, query.session_id, query.parent_query_id,
                             self.snapshot.version, query.strategy, query.model_dump_json(by_alias=True),
                             busy_timeout=RECORD_QUERY_WAIT)
            except (StateReadOnly, StateBusy) as exc:
                log.warning("query %s not stored: %s", query_id, exc)
        # The whole call (verdicts read, query stored): what the service adds is the HTTP layer's cost.
        result.timings.total_ms = round((time.perf_counter() - started) * 1e3, 3)
        return result

    def _state_db(self) -> StateDB | None:
        """Return the state database behind the row states (in-memory states, as tests use, have none)."""
        db: StateDB | None = getattr(self.states, "db", None)
        return db

    def _with_verdicts(self, query: MineQuery, uploads: int) -> MineQuery:
        """Return `query` with its session's accepted (rejected) images added as positives (negatives).

        Ids given by hand keep their role; verdicts on images this version does not serve are left out.
        """
        assert query.session_id is not None  # MineQuery's validator requires it
        db = self._state_db()
        if db is None:
            raise QueryError("use_verdicts needs the bundle's state database (these row states have none)")
        accepted, rejected = session_verdicts(db, query.session_id)
        given = {*query.positive_ids, *query.negative_ids}
        served = self.snapshot.row_by_id
        positives = [i for i in accepted if i not in given and i in served]
        negatives = [i for i in rejected if i not in given and i in served]
        effective = query.model_copy(update={"positive_ids": [*query.positive_ids, *positives],
                                             "negative_ids": [*query.negative_ids, *negatives],
                                             "use_verdicts": False})
        try:
            effective.check_examples(uploads)
        except ValueError as exc:
            raise QueryError(f"{exc} (use_verdicts added {len(positives)} accepted and {len(negatives)} "
                             f"rejected images of session {query.session_id!r}; pass fewer examples or "
                             "start a new session)") from exc
        return effective

    def _mine(self, query: MineQuery, uploads: Sequence[Upload], query_id: str,
              asked: MineQuery) -> MineResult:
        """Mine `query` (`asked`: the query as received, before use_verdicts added examples)."""
        started = time.perf_counter()
        if not query.has_positive(len(uploads)):
            raise QueryError("empty query: give at least one of positive_ids, texts or an uploaded image")
        try:
            query.check_examples(len(uploads))
        except ValueError as exc:
            raise QueryError(str(exc)) from exc
        snap = self.snapshot
        unknown = [i for i in [*query.positive_ids, *query.negative_ids] if i not in snap.row_by_id]
        if unknown:
            raise UnknownImageIds(unknown)
        if query.group_by and query.group_by not in snap.metadata_columns:
            raise QueryError(f"unknown group_by column {query.group_by!r}; valid columns: "
                             f"{', '.join(snap.metadata_columns) or '(none)'}")
        digest = query_digest(query, [upload_digest(up.data) for up in uploads])
        try:
            cursor = decode_cursor(query.cursor, digest) if query.cursor is not None else None
        except CursorError as exc:
            raise QueryError(cursor_message(exc, asked)) from exc
        skip = cursor.rank if cursor is not None else query.offset
        if skip + query.k > limits.MAX_DEPTH:
            raise QueryError(f"the cursor is at rank {skip}: rank + k is {skip + query.k}; at most "
                             f"{limits.MAX_DEPTH} (the ranking is computed from the top for every page)")
        embedded, embedded_labels = self._embed_inputs(query.texts, uploads)
        neg_embedded, neg_labels = self._embed_inputs(query.negative_texts, ())
        embed_done = time.perf_counter()

        pos_rows = snap.rows_of(query.positive_ids)
        neg_rows = snap.rows_of(query.negative_ids)
        positives = Examples(np.concatenate([np.asarray(snap.embeddings[pos_rows]), embedded]),
                             [*query.positive_ids, *embedded_labels])
        negatives = Examples(np.concatenate([np.asarray(snap.embeddings[neg_rows]), neg_embedded]),
                             [*query.negative_ids, *neg_labels])
        _check_directions(query, positives, negatives)

        # Rows the query's own rules admit (filters, exclusions), whatever their labeling state.
        allowed = np.ones(len(snap.image_ids), dtype=bool)
        mask = filter_mask(snap.catalog, dict(query.filters))
        if mask is not None:
            allowed &= mask
        allowed[pos_rows] = False
        allowed[neg_rows] = False
        excluded = [snap.row_by_id[i] for i in query.exclude_ids if i in snap.row_by_id]
        allowed[excluded] = False
        probe = self._probe(positives, negatives, allowed, digest) if query.strategy == "probe" else None
        by_state, seq = self.states.eligible_at(list(query.include_states))
        eligible = by_state & allowed
        count = int(np.count_nonzero(eligible))
        # Rows are ranked among those eligible when the first page was made: rows that changed
        # state since (e.g. page 1, now queued) still count for rrf ranks and diversity caps.
        ranked = eligible
        if cursor is not None:
            changed = self.states.changed_since(cursor.seq)
            if len(changed):
                ranked = eligible.copy()
                ranked[changed] |= allowed[changed]
        ranked_count = int(np.count_nonzero(ranked))

        wanted = skip + query.k
        depth = max(1000, 4 * wanted)
        space = self._search_space(query, positives, negatives, ranked, ranked_count, wanted, depth, probe)
        while True:
            emb = snap.embeddings if space is None else snap.embeddings[space]
            elig = ranked if space is None else ranked[space]
            scores = score_rows(emb, positives, negatives, query.strategy, query.negative_weight,
                                elig, depth=depth, probe=probe)
            if query.min_score is not None:
                scores.score[scores.score < query.min_score] = -np.inf
            served = None
            if cursor is not None:
                rows = np.arange(len(eligible)) if space is None else space
                served = rows_before(scores.score, rows, cursor, snap.row_by_id.get(cursor.image_id, -1)
                                 if cursor.version != snap.version else cursor.row)
                # Rows after the cursor are candidates only if they are eligible now.
                scores.score[~served & ~eligible[rows]] = -np.inf
            available = int(np.count_nonzero(np.isfinite(scores.score)))
            local = self._rank(query, scores.score, query.k if cursor else wanted, space, served)
            # An approximate candidate set that came up short while enough rows are eligible
            # falls back to exact search: k results whenever k are eligible.
            if len(local) >= (query.k if cursor else wanted) or space is None or len(space) >= ranked_count:
                break
            space = np.flatnonzero(ranked) if ranked_count < len(ranked) // 4 else None
        page = local if cursor is not None else local[query.offset:wanted]
        search_done = time.perf_counter()

        candidates = self._candidates(page, space, skip, scores.score, scores.nearest,
                                      scores.nearest_sim, positives.labels)
        diverse = bool(query.max_per_group or query.dedup_threshold)
        if cursor is None:
            more = len(local) >= wanted and (diverse or available > wanted or count > wanted)
        else:
            before = int(served.sum()) if served is not None else 0
            more = len(page) >= query.k and (diverse or available - before > query.k
                                            or (space is not None and count > wanted))
        next_cursor = None
        if more and candidates:
            last, pos = candidates[-1], page[-1]
            row = pos if space is None else int(space[pos])
            next_cursor = encode_cursor(Cursor(digest, snap.version, seq, skip + len(candidates),
                                               float(scores.score[pos]), row, last.image_id))
        return MineResult(
            query_id=query_id,
            candidates=candidates,
            # Over ANN candidates `available` counts only the candidates: report the eligible rows.
            eligible=count if query.min_score is None else available,
            offset=skip,
            next_offset=wanted if more else None,
            next_cursor=next_cursor,
            bundle_version=snap.version,
            model=snap.manifest.model.identity,
            strategy=query.strategy,
            timings=Timings(embed_ms=round((embed_done - started) * 1e3, 3),
                            search_ms=round((search_done - embed_done) * 1e3, 3),
                            total_ms=round((time.perf_counter() - started) * 1e3, 3)),
        )

    def _search_space(self, query: MineQuery, positives: Examples, negatives: Examples,
                      eligible: np.ndarray, count: int, wanted: int, depth: int,
                      probe: Probe | None = None) -> np.ndarray | None:
        """Return the rows to score exactly: ANN candidates, the eligible rows, or None (all)."""
        n = len(eligible)
        if self.searcher is not None and not self.searcher.exact:
            has_neg = len(negatives.vectors) > 0 and query.negative_weight > 0
            if probe is not None:
                # The probe's score is w.x + b: the index searches direction w/|w| like any query.
                queries, per_query = probe.direction, wanted
            elif query.strategy == "mean":
                centre = mean_direction(positives.vectors, "positive")
                if has_neg:
                    centre = centre - query.negative_weight * mean_direction(negatives.vectors, "negative")
                queries, per_query = centre.astype(np.float32), wanted
            else:
                queries = positives.vectors
                per_query = depth if query.strategy == "rrf" else wanted * (2 if has_neg else 1)
            if query.max_per_group or query.dedup_threshold:
                per_query *= 4
            # The max rule can be pre-ranked on approximate scores; rrf needs every list whole.
            keep = None if query.strategy == "rrf" else per_query
            rows = self.searcher.candidates(queries, per_query, eligible, count, keep,
                                            breadth=SEARCH_BREADTH if probe is not None else 1.0)
            if rows is not None:
                return np.sort(rows)
        # Gathering the eligible rows costs ~2 bytes moved per byte kept; a full pass costs n.
        if count < n // 4:
            return np.flatnonzero(eligible)
        return None

    def _probe(self, positives: Examples, negatives: Examples, allowed: np.ndarray, digest: str) -> Probe:
        """Fit the query's probe; background rows are drawn among `allowed`, seeded by the query."""
        # Drawn among rows the query's own rules allow, whatever their labeling state: a row
        # queued between two pages must not move the probe, or cursor pages would disagree.
        rows = background_rows(allowed, int(allowed.sum()), int(digest, 16))
        try:
            return fit_probe(positives.vectors, negatives.vectors, np.asarray(self.snapshot.embeddings[rows]))
        except ProbeError as exc:
            raise QueryError(str(exc)) from exc

    def _rank(self, query: MineQuery, score: np.ndarray, wanted: int, space: np.ndarray | None,
              served: np.ndarray | None = None) -> list[int]:
        """Return positions (into `score`) of the result, best first.

        `served` flags positions returned on earlier pages (the cursor's): without diversity
        rules they are skipped; with them they are walked (they fill groups, suppress their
        near-duplicates) but not returned.
        """
        if not (query.max_per_group or query.dedup_threshold):
            if served is not None:
                score = np.where(served, -np.inf, score).astype(np.float32)
            return [int(r) for r in ranked_rows(score, wanted)]
        groups = (self.snapshot.catalog.column(query.group_by).to_pylist()
                  if query.group_by and query.max_per_group else None)
        ahead = int(served.sum()) if served is not None else 0
        depth = max(4 * (wanted + ahead), 256)
        while True:
            order = ranked_rows(score, depth)
            rows = order if space is None else space[order]
            taken = select_diverse(rows, wanted, self.snapshot.embeddings, groups, query.max_per_group,
                                   query.dedup_threshold, None if served is None else served[order])
            if len(taken) >= wanted or len(order) < depth:
                return [int(order[i]) for i in taken]
            depth *= 4

    def _candidates(self, page: list[int], space: np.ndarray | None, offset: int, score: np.ndarray,
                    nearest: np.ndarray, nearest_sim: np.ndarray, labels: list[str]) -> list[Candidate]:
        if not page:
            return []
        snap = self.snapshot
        rows = page if space is None else [int(space[p]) for p in page]
        table = snap.catalog.take(pa.array(rows, pa.int64()))
        meta_cols = snap.metadata_columns
        metadata = table.select(meta_cols).to_pylist() if meta_cols else [{} for _ in page]
        codes = self.states.codes
        out = []
        for i, (pos, row, meta) in enumerate(zip(page, rows, metadata, strict=True)):
            image_id = snap.image_ids[row]
            # These values are ours and already typed; validation costs ~15 us each.
            out.append(Candidate.trusted(
                image_id=image_id,
                score=float(score[pos]),
                rank=offset + i + 1,
                nearest_example_id=labels[int(nearest[pos])],
                nearest_example_similarity=float(nearest_sim[pos]),
                metadata={k: _jsonable(v) for k, v in meta.items()},
                state=LABEL_STATES[int(codes[row])],
                image_url=image_url(image_id, self.public_url),
            ))
        return out


def _check_directions(query: MineQuery, positives: Examples, negatives: Examples) -> None:
    """Refuse a "mean" query whose positives (or negatives) average to nothing."""
    if query.strategy != "mean":
        return
    try:
        mean_direction(positives.vectors, "positive")
        if len(negatives.vectors) and query.negative_weight > 0:
            mean_direction(negatives.vectors, "negative")
    except CancellingExamples as exc:
        raise QueryError(str(exc)) from exc


def _jsonable(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


__all__ = ["Miner", "QueryError", "image_url"]
