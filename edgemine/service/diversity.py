"""Keep a result list diverse: cap candidates per group and drop near-duplicates."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from edgemine.bundle.vectors import Embeddings

# Candidates compared per step: one (block x kept) matrix product instead of one product per
# candidate, and one (block x block) product for the pairs inside the block.
BLOCK = 256


def select_diverse(order: npt.NDArray[np.int64], wanted: int, embeddings: Embeddings,
                   groups: Sequence[object] | None, max_per_group: int | None,
                   dedup_threshold: float | None,
                   served: npt.NDArray[np.bool_] | None = None) -> list[int]:
    """Greedily take rows in `order` (best first), skipping capped groups and near-duplicates.

    A position flagged in `served` (returned on an earlier page) is walked like any other, so it
    fills its group and suppresses its duplicates, but it is not returned and not counted.
    Work per candidate is O(kept x d): the kept vectors live in one preallocated, doubling matrix.

    Returns positions into `order`.
    """
    taken: list[int] = []
    per_group: Counter[object] = Counter()
    capped = groups is not None and max_per_group is not None
    flags = served.tolist() if served is not None else None

    def admit(pos: int, row: int) -> bool:
        # Counts the row in its group; returns whether the page is full.
        if capped:
            assert groups is not None
            per_group[groups[row]] += 1
        if flags is None or not flags[pos]:
            taken.append(pos)
        return len(taken) >= wanted

    def full_group(row: int) -> bool:
        if not capped:
            return False
        assert groups is not None and max_per_group is not None
        group = groups[row]
        return group is not None and per_group[group] >= max_per_group

    rows = order.tolist()
    if dedup_threshold is None:
        for pos, row in enumerate(rows):
            if not full_group(row) and admit(pos, row):
                break
        return taken

    kept = np.empty((min(max(wanted, 16), len(rows)) or 1, embeddings.shape[1]), np.float32)
    n_kept = 0
    for first in range(0, len(rows), BLOCK):
        block_rows = rows[first:first + BLOCK]
        vectors = np.asarray(embeddings[order[first:first + BLOCK]], np.float32)
        to_kept = (vectors @ kept[:n_kept].T).max(axis=1) if n_kept else np.full(len(vectors), -np.inf)
        inner = vectors @ vectors.T
        kept_here: list[int] = []
        for i, row in enumerate(block_rows):
            if full_group(row):
                continue
            best = float(to_kept[i])
            if kept_here:
                best = max(best, float(inner[i, kept_here].max()))
            if best >= dedup_threshold:
                continue
            kept_here.append(i)
            if n_kept == len(kept):
                kept = np.concatenate([kept, np.empty_like(kept)])  # amortized O(d) per kept row
            kept[n_kept] = vectors[i]
            n_kept += 1
            if admit(first + i, row):
                return taken
    return taken
