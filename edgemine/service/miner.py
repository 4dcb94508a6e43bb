"""The mining library: one call from examples to ranked, explained, unlabeled candidates."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa

from edgemine.bundle.errors import UnknownImageIds
from edgemine.bundle.snapshot import Snapshot
from edgemine.bundle.state import LABEL_STATES
from edgemine.indexer.pipeline import decode_image
from edgemine.models.base import Embedder
from edgemine.models.vectors import Vectors
from edgemine.service.diversity import select_diverse
from edgemine.service.filters import filter_mask
from edgemine.service.query import Candidate, MineQuery, MineResult, Timings
from edgemine.service.row_states import RowStates
from edgemine.service.scoring import Examples, ranked_rows, score_rows


class QueryError(ValueError):
    """The query cannot be answered as asked (no positive input, bad upload, no model...)."""


@dataclass(frozen=True)
class Upload:
    """An uploaded example image."""

    name: str
    data: bytes


def image_url(image_id: str, base: str = "") -> str:
    """Return the URL the service serves an image at."""
    return f"{base.rstrip('/')}/v1/images/{quote(image_id, safe='/')}"


class Miner:
    """Mines one bundle version; cheap to create, safe to share between threads."""

    def __init__(self, snapshot: Snapshot, states: RowStates,
                 embedder: Callable[[], Embedder] | None, public_url: str = "") -> None:
        self.snapshot = snapshot
        self.states = states
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
            images = []
            for up in uploads:
                try:
                    images.append(_decode_upload(up))
                except ValueError as exc:
                    raise QueryError(f"uploaded file {up.name!r}: {exc}") from exc
            parts.append(self._model("an uploaded image").embed_images(images))
            labels += [f"upload:{up.name}" for up in uploads]
        dim = self.snapshot.manifest.dim
        for part in parts:
            if part.shape[1] != dim:
                raise QueryError(f"model produced {part.shape[1]}-d vectors, bundle has {dim}")
        vectors = np.concatenate(parts) if parts else np.empty((0, dim), np.float32)
        return vectors, labels

    def mine(self, query: MineQuery, uploads: Sequence[Upload] = ()) -> MineResult:
        """Return the best eligible candidates for `query` (exclusions applied before ranking)."""
        started = time.perf_counter()
        if not query.has_positive(len(uploads)):
            raise QueryError("empty query: give at least one of positive_ids, texts or an uploaded image")
        snap = self.snapshot
        unknown = [i for i in [*query.positive_ids, *query.negative_ids] if i not in snap.row_by_id]
        if unknown:
            raise UnknownImageIds(unknown)
        if query.group_by and query.group_by not in snap.metadata_columns:
            raise QueryError(f"unknown group_by column {query.group_by!r}; valid columns: "
                             f"{', '.join(snap.metadata_columns) or '(none)'}")
        embedded, embedded_labels = self._embed_inputs(query.texts, uploads)
        neg_embedded, neg_labels = self._embed_inputs(query.negative_texts, ())
        embed_done = time.perf_counter()

        pos_rows = snap.rows_of(query.positive_ids)
        neg_rows = snap.rows_of(query.negative_ids)
        positives = Examples(np.concatenate([np.asarray(snap.embeddings[pos_rows]), embedded]),
                             [*query.positive_ids, *embedded_labels])
        negatives = Examples(np.concatenate([np.asarray(snap.embeddings[neg_rows]), neg_embedded]),
                             [*query.negative_ids, *neg_labels])

        eligible = self.states.eligible(list(query.include_states))
        mask = filter_mask(snap.catalog, dict(query.filters))
        if mask is not None:
            eligible &= mask
        eligible[pos_rows] = False
        eligible[neg_rows] = False
        excluded = [snap.row_by_id[i] for i in query.exclude_ids if i in snap.row_by_id]
        eligible[excluded] = False

        wanted = query.offset + query.k
        scores = score_rows(snap.embeddings, positives, negatives, query.strategy,
                            query.negative_weight, eligible, depth=max(1000, 4 * wanted))
        if query.min_score is not None:
            scores.score[scores.score < query.min_score] = -np.inf
        available = int(np.isfinite(scores.score).sum())
        rows = self._rank(query, scores.score, wanted)
        page = rows[query.offset:wanted]
        search_done = time.perf_counter()

        candidates = self._candidates(page, query.offset, scores.score, scores.nearest,
                                      scores.nearest_sim, positives.labels)
        more = len(rows) >= wanted and (query.max_per_group or query.dedup_threshold
                                        or available > wanted)
        return MineResult(
            candidates=candidates,
            eligible=available,
            offset=query.offset,
            next_offset=wanted if more else None,
            bundle_version=snap.version,
            model=snap.manifest.model.identity,
            strategy=query.strategy,
            timings=Timings(embed_ms=round((embed_done - started) * 1e3, 3),
                            search_ms=round((search_done - embed_done) * 1e3, 3),
                            total_ms=round((time.perf_counter() - started) * 1e3, 3)),
        )

    def _rank(self, query: MineQuery, score: np.ndarray, wanted: int) -> list[int]:
        if not (query.max_per_group or query.dedup_threshold):
            return [int(r) for r in ranked_rows(score, wanted)]
        groups = (self.snapshot.catalog.column(query.group_by).to_pylist()
                  if query.group_by and query.max_per_group else None)
        depth = max(4 * wanted, 256)
        while True:
            order = ranked_rows(score, depth)
            taken = select_diverse(order, wanted, self.snapshot.embeddings, groups,
                                   query.max_per_group, query.dedup_threshold)
            if len(taken) >= wanted or len(order) < depth:
                return taken
            depth *= 4

    def _candidates(self, page: list[int], offset: int, score: np.ndarray, nearest: np.ndarray,
                    nearest_sim: np.ndarray, labels: list[str]) -> list[Candidate]:
        if not page:
            return []
        snap = self.snapshot
        table = snap.catalog.take(pa.array(page, pa.int64()))
        meta_cols = snap.metadata_columns
        metadata = table.select(meta_cols).to_pylist() if meta_cols else [{} for _ in page]
        codes = self.states.codes
        out = []
        for i, (row, meta) in enumerate(zip(page, metadata, strict=True)):
            image_id = snap.image_ids[row]
            out.append(Candidate(
                image_id=image_id,
                score=float(score[row]),
                rank=offset + i + 1,
                nearest_example_id=labels[int(nearest[row])],
                nearest_example_similarity=float(nearest_sim[row]),
                metadata={k: _jsonable(v) for k, v in meta.items()},
                state=LABEL_STATES[int(codes[row])],
                image_url=image_url(image_id, self.public_url),
            ))
        return out


def _jsonable(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _decode_upload(upload: Upload) -> Any:
    import tempfile

    if not upload.data:
        raise ValueError("empty file (0 bytes)")
    # decode_image works on paths so uploads get exactly the indexer's checks and messages.
    with tempfile.NamedTemporaryFile(suffix=".img") as fh:
        fh.write(upload.data)
        fh.flush()
        return decode_image(fh.name)


__all__ = ["Miner", "QueryError", "Upload", "image_url"]
