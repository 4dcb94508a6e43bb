"""The indexing job: incremental, resumable, and published atomically."""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pyarrow as pa

from edgemine.bundle import images_sync
from edgemine.bundle.errors import BundleError, ModelMismatch, StateReadOnly
from edgemine.bundle.layout import (
    RESERVED_COLUMNS,
    BundlePaths,
    Counts,
    Manifest,
    ModelInfo,
    utc_now,
    utc_text,
    write_atomic,
)
from edgemine.bundle.snapshot import Snapshot, check_writable, load_current
from edgemine.bundle.state import StateDB, open_state
from edgemine.indexer.engine import EmbedJob, IndexEngine, LocalEngine
from edgemine.indexer.publish import assemble, collect_changes, publish_assembled
from edgemine.indexer.sources import Source, SourceItem, check_metadata
from edgemine.models.base import Embedder
from edgemine.models.vectors import Vectors
from edgemine.models.weights import same_model
from edgemine.search.maintain import IndexBuilder
from edgemine.search.plan import DEFAULT_MEMORY_BUDGET


@dataclass(frozen=True)
class IndexOptions:
    """How to index the vectors: "auto", "flat" or a FAISS factory string, and a memory budget."""

    index: str = "auto"
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    compact: bool = False  # rewrite every served row into one segment (see indexer/publish.py)
    build: IndexBuilder | None = None  # None: the engine's builder (in-process for the local engine)


@dataclass(frozen=True)
class ModelChoice:
    """The model that embeds images: its identity (checked against the bundle) and a loader."""

    info: ModelInfo
    load: Callable[[], Embedder] | None  # None for precomputed embeddings


@dataclass
class IndexReport:
    """What an indexing run did; also written as JSON into the bundle's reports/."""

    bundle: str
    version: int | None
    published: bool
    total_in_source: int
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    resumed_from_journal: int = 0
    embedded_now: int = 0
    removed: int = 0
    missing_from_source_kept: int = 0
    state_upserted: int = 0  # images-table rows written (new or changed), including repairs
    state_deleted: int = 0  # images-table rows deleted (removed images, orphans of a crash)
    failed: list[dict[str, str | None]] = field(default_factory=list)
    seconds: float = 0.0
    embed_images_per_s: float = 0.0
    compacted: bool = False  # the publish rewrote all rows into one segment
    report_path: str | None = None


@contextlib.contextmanager
def _exclusive(paths: BundlePaths) -> Iterator[None]:
    with paths.lock.open("a") as fh:
        try:
            # A POSIX record lock, not flock: flock is shared with forked decode workers, which
            # outlive a killed indexer by seconds and would block the resuming run.
            fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise BundleError(f"another indexer is writing {paths.root} (lock {paths.lock})") from exc
        yield


def _check_compatible(prev: Snapshot, model: ModelInfo, dim: int | None) -> None:
    if not same_model(prev.manifest.model.identity, model.identity):
        raise ModelMismatch(
            f"bundle {prev.paths.root} was built with model {prev.manifest.model.identity!r}, not "
            f"{model.identity!r}; pass the same --model/--pretrained, or --rebuild to re-embed all"
        )
    if dim is not None and prev.manifest.dim != dim:
        raise ModelMismatch(f"bundle {prev.paths.root} has dimension {prev.manifest.dim}, "
                            f"the new vectors have {dim}; use --rebuild to replace it")


def run_index(source: Source, bundle: Path, model: ModelChoice, *, batch_size: int = 64,
              workers: int = 2, prune: bool = False, rebuild: bool = False,
              progress: bool = True, options: IndexOptions | None = None,
              engine: IndexEngine | None = None, state_url: str | None = None) -> IndexReport:
    """Index `source` into the bundle at `bundle`: embed only new or changed images, then publish.

    Args:
        source: what to index (see `edgemine.indexer.sources`).
        bundle: the bundle directory (created if missing).
        model: the embedding model; its identity must match the bundle's unless `rebuild`.
        batch_size: images per forward pass (and per journal commit).
        workers: decoding worker processes (0 decodes in the main process).
        prune: remove images that are no longer in the source.
        rebuild: ignore the published version's vectors (needed to change model).
        progress: show a progress bar.
        options: index type and memory budget (default: automatic choice, 4 GiB).
        engine: what embeds the pending items (default: `LocalEngine`, this machine).
        state_url: a postgresql:// state database (default: state.sqlite in the bundle).
    """
    options = options or IndexOptions()
    engine = engine or LocalEngine()
    if options.build is None:
        options = replace(options, build=engine.index_builder())
    started = time.perf_counter()
    paths = BundlePaths(bundle)
    check_writable(paths)
    with _exclusive(paths):
        state = open_state(paths, state_url)
        if not state.writable:
            raise StateReadOnly(f"cannot index into {paths.root}: {state.where} is read-only")
        prev = load_current(paths.root) if paths.current_version() is not None else None
        check_metadata(source.items)
        byo_dim = int(source.vectors.shape[1]) if source.vectors is not None else None
        if prev is not None and not rebuild:
            _check_compatible(prev, model.info, byo_dim)
        report = IndexReport(str(paths.root), prev.version if prev else None, False,
                             len(source.items))
        old = {} if prev is None or rebuild else dict(zip(
            prev.image_ids, prev.catalog.column("fingerprint").to_pylist(), strict=True))

        vectors: dict[str, Vectors] = {}
        todo: list[SourceItem] = []
        failures: list[tuple[SourceItem, str]] = [(i, i.error or "") for i in source.rejected]
        for row, item in enumerate(source.items):
            if item.error is not None:  # unusable file (pipe, broken link, bad sidecar): never opened
                failures.append((item, item.error))
                if prev is not None and item.image_id in prev.row_by_id:
                    # It stays indexed as it was, metadata included, until it is fixed.
                    record = prev.record(prev.row_by_id[item.image_id])
                    item.metadata = {k: v for k, v in record.items() if k not in RESERVED_COLUMNS}
            elif old.get(item.image_id) == item.fingerprint:
                report.unchanged += 1
            elif source.vectors is not None:
                vectors[item.image_id] = source.vectors[row]
            else:
                todo.append(item)
        state.record_failures((i.image_id, i.path, r) for i, r in failures)

        if todo:
            assert model.load is not None
            embedder = model.load()
            journal = state.journal_load(model.info.identity, embedder.dim)
            fresh = []
            for item in todo:
                hit = journal.get(item.image_id)
                if hit is not None and hit[0] == item.fingerprint:
                    vectors[item.image_id] = hit[1]
                    report.resumed_from_journal += 1
                else:
                    fresh.append(item)

            def on_batch(batch: list[SourceItem], vecs: Vectors) -> None:
                state.journal_add([i.image_id for i in batch], [i.fingerprint for i in batch],
                                  model.info.identity, vecs)
                vectors.update({i.image_id: v for i, v in zip(batch, vecs, strict=True)})

            def on_failures(bad: list[tuple[SourceItem, str]]) -> None:
                failures.extend(bad)
                state.record_failures((i.image_id, i.path, r) for i, r in bad)

            job = EmbedJob(fresh, embedder, model.load, model.info.identity, paths, batch_size,
                           workers, progress)
            stats = engine.embed(job, on_batch, on_failures)
            report.embedded_now = stats.embedded
            report.resumed_from_journal += stats.resumed
            report.embed_images_per_s = round(stats.images_per_s, 2)
        dim = embedder.dim if todo else (byo_dim or (prev.manifest.dim if prev else 0))

        report.failed = [{"image_id": i.image_id, "path": i.path, "reason": r}
                         for i, r in failures]
        published = _assemble_and_publish(paths, state, source, prev, rebuild, prune, model.info,
                                          dim, vectors, report, options)
        if published is not None:
            report.version, report.published = published, True
            state.journal_clear()
            engine.discard_staged(paths)
        state.clear_failures(vectors)
        report.seconds = round(time.perf_counter() - started, 3)
        report.report_path = str(_write_report(paths, report))
        return report


def _assemble_and_publish(paths: BundlePaths, state: StateDB, source: Source,
                          prev: Snapshot | None, rebuild: bool, prune: bool, model: ModelInfo,
                          dim: int, vectors: dict[str, Vectors], report: IndexReport,
                          options: IndexOptions) -> int | None:
    # Format 2 (indexer/publish.py): new and changed images go to one new segment, unchanged
    # ones stay where they are, removed ones become tombstones; or everything is compacted.
    keep_prev = prev is not None and (not rebuild or same_model(prev.manifest.model.identity, model.identity))
    changes, stay = collect_changes(source.items, prev, vectors, rebuild=rebuild,
                                    keep_prev_vectors=keep_prev, report=report)
    in_source = {item.image_id for item in source.items}
    kept = [] if prev is None or rebuild or prune else [i for i in prev.image_ids if i not in in_source]
    # Removed: every published image the new version drops (pruned, or left out of a rebuild).
    published = {str(rec["image_id"]) for rec in changes.records} | stay | set(kept)
    removed = [] if prev is None else [i for i in prev.image_ids if i not in published]
    report.removed = len(removed)
    report.missing_from_source_kept = len(kept)
    if not changes.records and not stay and not kept and prev is None:
        raise BundleError(f"nothing could be indexed from {source.location}: "
                              f"{len(report.failed)} files failed, see the report")
    changed = (changes.records or removed or rebuild or prev is None or options.compact
               or prev.manifest.image_roots != sorted(source.image_roots))
    if not changed and prev is not None:
        # Nothing to publish, but the images table may still be out of step with the served
        # version (a run killed after its flip): repair it.
        _sync_state(state, prev.catalog, prev.version, changes.labeled, report, publish=None)
        return None
    now = utc_now()
    n = len(changes.records) + len(stay) + len(kept)
    base = Manifest(
        version=(paths.current_version() or 0) + 1,
        model=model,
        dim=dim,
        counts=Counts(images=n, added=report.added, updated=report.updated,
                      removed=report.removed, failed=len(report.failed)),
        next_vec_id=prev.manifest.next_vec_id if prev is not None and not rebuild else 0,
        # Declared by this run's source, never unioned with older runs: kept rows of an earlier
        # source outside these roots are no longer served (403) until re-indexed or pruned.
        image_roots=sorted(source.image_roots),
        created_at=utc_text(prev.manifest.created_at) if prev else now,
        updated_at=now,
        edgemine_version="",
    )
    assembled = assemble(paths, prev, changes, stay, base=base, removed=removed, rebuild=rebuild,
                         force=options.compact, spec=options.index, memory_budget=options.memory_budget,
                         build=options.build)
    assert assembled.manifest is not None
    assembled.manifest.metadata_columns = [c for c in assembled.catalog.column_names
                                           if c not in RESERVED_COLUMNS]
    report.compacted = assembled.compacted and prev is not None  # a first publish is not a compaction
    if assembled.new_rows is not None and prev is not None and \
            images_sync.in_step(state, prev.version, prev.catalog.num_rows):
        # The table mirrors the previous version: write only what changed (O(new), not O(all)).
        new_rows = assembled.catalog.slice(assembled.catalog.num_rows - assembled.new_rows)
        _sync_delta(state, new_rows, removed, assembled.version, changes.labeled, report,
                    publish=lambda: publish_assembled(paths, assembled))
    else:
        _sync_state(state, assembled.catalog, assembled.version, changes.labeled, report,
                    publish=lambda: publish_assembled(paths, assembled))
    return assembled.version


def _sync_delta(state: StateDB, new_rows: pa.Table, removed: list[str], version: int, labeled: list[str],
                report: IndexReport, publish: Callable[[], object]) -> None:
    """Like _sync_state, from the change set alone: upsert the new rows, publish, delete the removed."""
    with state.sync_lock():  # shared state: services wait rather than sync to the old version
        _delta_and_publish(state, new_rows, removed, version, labeled, report, publish)


def _delta_and_publish(state: StateDB, new_rows: pa.Table, removed: list[str], version: int,
                       labeled: list[str], report: IndexReport, publish: Callable[[], object]) -> None:
    images_sync.mark_synced(state, None)  # until the end, the next run does a full comparison
    report.state_upserted = images_sync.apply_upserts(state, images_sync.catalog_rows(new_rows))
    images_sync.label_from_source(state, labeled)
    publish()
    report.state_deleted = images_sync.apply_deletes(state, removed)
    images_sync.mark_synced(state, version)


def _sync_state(state: StateDB, catalog: pa.Table, version: int, labeled: list[str],
                report: IndexReport, publish: Callable[[], object] | None) -> None:
    """Make the images table match `catalog`, publishing it (if given) between the two steps."""
    if publish is None and images_sync.in_step(state, version, catalog.num_rows):
        images_sync.label_from_source(state, labeled)
        return
    with state.sync_lock():  # shared state: services wait rather than sync to the old version
        _sync_and_publish(state, catalog, version, labeled, report, publish)


def _sync_and_publish(state: StateDB, catalog: pa.Table, version: int, labeled: list[str],
                      report: IndexReport, publish: Callable[[], object] | None) -> None:
    images_sync.mark_synced(state, None)
    plan = images_sync.plan_sync(state, images_sync.catalog_rows(catalog))
    # Rows first: once CURRENT names the version, every image it serves can be labeled.
    report.state_upserted = images_sync.apply_upserts(state, plan.upserts)
    images_sync.label_from_source(state, labeled)
    if publish is not None:
        publish()
    # Deletions last: until the flip the served version still holds these images. A crash
    # before this line leaves orphans that the next run's plan deletes.
    report.state_deleted = images_sync.apply_deletes(state, plan.deletes)
    images_sync.mark_synced(state, version)


def _write_report(paths: BundlePaths, report: IndexReport) -> Path:
    paths.reports.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = paths.reports / f"index-{stamp}.json"
    data = json.dumps(asdict(report), indent=2, default=str).encode()
    write_atomic(path, data)
    write_atomic(paths.reports / "last-index.json", data)
    lines = "".join(json.dumps(f) + "\n" for f in report.failed)
    write_atomic(paths.reports / "failures.jsonl", lines.encode())
    return path
