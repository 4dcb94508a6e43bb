"""Fixtures for scenario tests: bundles of precomputed vectors (no model) that can be re-indexed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.support.vec_bundle import VecBundle, build_vec_bundle


@pytest.fixture
def vec_bundle(tmp_path: Path) -> Callable[..., VecBundle]:
    """Build (or re-index, optionally pruning) the bundle at tmp_path/bundle from ids and vectors."""

    def make(ids: list[str], vectors: np.ndarray, prune: bool = False) -> VecBundle:
        return build_vec_bundle(tmp_path / "bundle", ids, vectors, prune=prune)

    return make
