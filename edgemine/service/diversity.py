"""Keep a result list diverse: cap candidates per group and drop near-duplicates."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from edgemine.models.vectors import Vectors


def select_diverse(order: npt.NDArray[np.int64], wanted: int, embeddings: Vectors,
                   groups: Sequence[object] | None, max_per_group: int | None,
                   dedup_threshold: float | None) -> list[int]:
    """Greedily take rows in `order` (best first), skipping capped groups and near-duplicates.

    Returns positions into `order`.
    """
    taken: list[int] = []
    per_group: Counter[object] = Counter()
    kept_vectors = np.empty((0, embeddings.shape[1]), np.float32)
    for pos, row in enumerate(order.tolist()):
        if groups is not None and max_per_group is not None:
            group = groups[row]
            if group is not None and per_group[group] >= max_per_group:
                continue
        if dedup_threshold is not None:
            vec = np.asarray(embeddings[row], np.float32)
            if len(kept_vectors) and float(np.max(kept_vectors @ vec)) >= dedup_threshold:
                continue
            kept_vectors = np.vstack([kept_vectors, vec[None, :]])
        if groups is not None and max_per_group is not None:
            per_group[groups[row]] += 1
        taken.append(pos)
        if len(taken) >= wanted:
            break
    return taken
