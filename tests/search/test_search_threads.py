"""The service's FAISS thread setting reaches the worker threads that actually search."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import faiss
import numpy as np
import pytest

from edgemine.search import searcher as searcher_mod
from edgemine.search.build import build_index
from edgemine.search.plan import choose_index
from edgemine.search.searcher import Searcher

N, D = 4000, 16


@pytest.fixture
def restore_threads() -> Iterator[None]:
    yield
    searcher_mod.set_search_threads(None)


def test_a_search_on_a_fresh_thread_runs_with_the_configured_openmp_threads(kit: Any, restore_threads: None) -> None:
    data = kit.clustered(N, D, clusters=16, seed=3)
    index, _ = build_index(data, np.arange(N, dtype=np.int64), choose_index(N, D, forced="IVF16,Flat"))
    searcher = Searcher(index, "ivf", {"nprobe": 4.0, "rerank_factor": 1.0}, np.arange(N, dtype=np.int64))
    seen: dict[str, int] = {}

    def worker(tag: str) -> None:
        seen[f"{tag}-before"] = faiss.omp_get_max_threads()
        rows = searcher.candidates(data[:2], 10, np.ones(N, bool))
        assert rows is not None and len(rows) >= 10
        seen[f"{tag}-after"] = faiss.omp_get_max_threads()

    probe = threading.Thread(target=lambda: seen.update(default=faiss.omp_get_max_threads()))
    probe.start()
    probe.join()
    wanted = seen["default"] + 1  # any count a new thread would not have by itself
    searcher_mod.set_search_threads(wanted)  # what the service's lifespan does (EDGEMINE_FAISS_THREADS)
    thread = threading.Thread(target=worker, args=("fresh",))
    thread.start()
    thread.join()
    # A new thread starts from OpenMP's default, whatever was set on the startup thread...
    assert seen["fresh-before"] == seen["default"]
    # ...and each search applies the configured count on the thread that runs it.
    assert seen["fresh-after"] == wanted
