"""Compact a bundle without a source: rewrite the served rows of its current version into one segment."""

from __future__ import annotations

import time
from pathlib import Path

from edgemine.bundle.errors import StateReadOnly
from edgemine.bundle.layout import RESERVED_COLUMNS, BundlePaths, Counts, utc_now
from edgemine.bundle.snapshot import load_current
from edgemine.bundle.state import open_state
from edgemine.indexer.job import IndexReport, _exclusive, _sync_state, _write_report
from edgemine.indexer.publish import Changes, assemble, publish_assembled
from edgemine.search.plan import DEFAULT_MEMORY_BUDGET


def compact_bundle(bundle: Path, state_url: str | None = None) -> IndexReport:
    """Publish the current version's served rows as one new segment (tombstones dropped, same index kind).

    The same images, metadata and vectors are served after it; vec_ids are renumbered 0..n-1 and
    the images table follows (in `state_url`'s database when given, else state.sqlite). An IVF
    index keeps its trained quantizer unless it is due a retrain.
    """
    started = time.perf_counter()
    paths = BundlePaths(bundle)
    prev = load_current(paths.root)
    with _exclusive(paths):
        state = open_state(paths, state_url)
        if not state.writable:
            raise StateReadOnly(f"cannot compact {paths.root}: {state.where} is read-only")
        prev = load_current(paths.root)  # again, under the lock
        info = prev.manifest.index
        report = IndexReport(str(paths.root), prev.version, False, 0, unchanged=len(prev.catalog))
        base = prev.manifest.model_copy(update={
            "version": (paths.current_version() or 0) + 1, "updated_at": utc_now(),
            "counts": Counts(images=len(prev.catalog))})
        assembled = assemble(paths, prev, Changes(), set(prev.image_ids), base=base, removed=[], rebuild=False,
                             force=True, spec="flat" if info.type == "flat" else info.factory,
                             memory_budget=DEFAULT_MEMORY_BUDGET)
        assert assembled.manifest is not None
        assembled.manifest.metadata_columns = [c for c in assembled.catalog.column_names
                                               if c not in RESERVED_COLUMNS]
        _sync_state(state, assembled.catalog, assembled.version, [], report,
                    publish=lambda: publish_assembled(paths, assembled))
        report.version, report.published, report.compacted = assembled.version, True, True
        report.seconds = round(time.perf_counter() - started, 3)
        report.report_path = str(_write_report(paths, report))
        return report
