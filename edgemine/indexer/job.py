"""The indexing job: incremental, resumable, and published atomically."""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from edgemine.bundle import images_sync
from edgemine.bundle.errors import BundleError, ModelMismatch, StateReadOnly
from edgemine.bundle.layout import (
    INDEX,
    RESERVED_COLUMNS,
    BundlePaths,
    Counts,
    Manifest,
    ModelInfo,
    utc_now,
    utc_text,
    write_atomic,
)
from edgemine.bundle.snapshot import (
    Snapshot,
    check_writable,
    load_current,
    publish_version,
)
from edgemine.bundle.state import StateDB, open_state
from edgemine.indexer.engine import EmbedJob, IndexEngine, LocalEngine
from edgemine.indexer.sources import Source, SourceItem, check_metadata
from edgemine.models.base import Embedder
from edgemine.models.vectors import Vectors
from edgemine.models.weights import same_model
from edgemine.search.maintain import IndexBuilder, make_index
from edgemine.search.plan import DEFAULT_MEMORY_BUDGET


@dataclass(frozen=True)
class IndexOptions:
    """How to index the vectors: "auto", "flat" or a FAISS factory string, and a memory budget."""

    index: str = "auto"
    memory_budget: int = DEFAULT_MEMORY_BUDGET
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
    prev_rows = {} if prev is None else prev.row_by_id
    prev_vec_ids = prev.catalog.column("vec_id").to_numpy() if prev else np.empty(0, np.int64)
    prev_fingerprints = prev.catalog.column("fingerprint").to_pylist() if prev else []
    next_vec_id = prev.manifest.next_vec_id if prev else 0
    in_source = {item.image_id for item in source.items}

    records: list[dict[str, object]] = []
    rows_vectors: list[Vectors] = []
    labeled: list[str] = []
    fresh_ids: list[int] = []  # vectors to add to a reused index
    changed_ids: list[int] = []  # ... of which these replace an older vector
    for item in source.items:
        prev_row = prev_rows.get(item.image_id)
        fingerprint = item.fingerprint
        if item.image_id in vectors:
            vec = vectors[item.image_id]
            if prev_row is not None and not rebuild:
                report.updated += 1
            else:
                report.added += 1
        elif prev_row is not None and (not rebuild or same_model(prev.manifest.model.identity, model.identity)):  # type: ignore[union-attr]
            vec = prev.embeddings[prev_row]  # type: ignore[union-attr]
            # Keep the fingerprint this vector was made from: a changed file that failed to
            # decode must be retried (and reported) next run, not pass as unchanged.
            fingerprint = prev_fingerprints[prev_row]
        else:
            continue  # failed and never indexed before: reported, not published
        if prev_row is not None:
            vec_id = int(prev_vec_ids[prev_row])
        else:
            vec_id, next_vec_id = next_vec_id, next_vec_id + 1
        records.append({"vec_id": vec_id, "image_id": item.image_id, "path": item.path,
                        "fingerprint": fingerprint,
                        # a sidecar or table must not override our columns ("path" is common)
                        **{k: v for k, v in item.metadata.items() if k not in RESERVED_COLUMNS}})
        rows_vectors.append(vec)
        if item.image_id in vectors:
            fresh_ids.append(vec_id)
            if prev_row is not None:
                changed_ids.append(vec_id)
        if item.labeled:
            labeled.append(item.image_id)
    kept = [] if prev is None or rebuild else [i for i in prev.image_ids if i not in in_source]
    if prune:
        kept = []
    # Removed: every published image the new version drops (pruned, or left out of a rebuild).
    published = {str(rec["image_id"]) for rec in records} | set(kept)
    removed = [] if prev is None else [i for i in prev.image_ids if i not in published]
    report.removed = len(removed)
    report.missing_from_source_kept = len(kept)

    # Not Table.from_pylist: it takes the columns of the first record only, and images differ in
    # which metadata they carry (sidecars, partial metadata tables).
    columns = list(dict.fromkeys(key for rec in records for key in rec))
    new_table = pa.table({c: [rec.get(c) for rec in records] for c in columns}) if records else None
    tables = [t for t in (new_table,) if t is not None]
    kept_vectors: Vectors = np.empty((0, dim), np.float32)
    if kept and prev is not None:
        kept_rows = prev.rows_of(kept)
        tables.append(prev.catalog.take(pa.array(kept_rows)))
        kept_vectors = np.asarray(prev.embeddings[kept_rows])
    if not tables:
        if prev is None:
            raise BundleError(f"nothing could be indexed from {source.location}: "
                              f"{len(report.failed)} files failed, see the report")
        catalog = prev.catalog.slice(0, 0)
    else:
        try:
            catalog = pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise BundleError(f"metadata no longer fits the bundle's column types ({exc}); the "
                              "embedded vectors are kept in the journal: fix the metadata or "
                              "use --rebuild") from exc
    embeddings = np.concatenate([np.asarray(rows_vectors, np.float32).reshape(-1, dim),
                                 kept_vectors]).astype(np.float32)

    changed = (report.added or report.updated or report.removed or rebuild or prev is None
               or prev.manifest.image_roots != sorted(source.image_roots))
    # Row order alone (kept rows move to the end) is no change: compare in vec_id order.
    if not changed and prev is not None and \
            catalog.sort_by("vec_id").equals(prev.catalog.sort_by("vec_id")):
        # Nothing to publish, but the images table may still be out of step with the served
        # version (a run killed after its flip): repair it.
        _sync_state(state, prev.catalog, prev.version, labeled, report, publish=None)
        return None
    now = utc_now()
    meta_cols = [c for c in catalog.column_names if c not in ("vec_id", "image_id", "path",
                                                                "fingerprint")]
    manifest = Manifest(
        version=(paths.current_version() or 0) + 1,
        model=model,
        dim=dim,
        counts=Counts(images=catalog.num_rows, added=report.added, updated=report.updated,
                      removed=report.removed, failed=len(report.failed)),
        next_vec_id=next_vec_id,
        # Declared by this run's source, never unioned with older runs: kept rows of an earlier
        # source outside these roots are no longer served (403) until re-indexed or pruned.
        image_roots=sorted(source.image_roots),
        metadata_columns=meta_cols,
        created_at=utc_text(prev.manifest.created_at) if prev else now,
        updated_at=now,
        edgemine_version="",
    )
    # Rows in vec_id order: then row == vec_id until something is pruned, which makes the
    # search-time id selector a plain bitmap over rows.
    order = np.argsort(catalog.column("vec_id").to_numpy(), kind="stable")
    if np.any(np.diff(order) != 1):
        catalog, embeddings = catalog.take(pa.array(order)), embeddings[order]
    vec_ids = catalog.column("vec_id").to_numpy()
    reuse = prev is not None and not rebuild
    removed_ids = prev_vec_ids[prev.rows_of(removed)] if reuse and prev is not None and removed else None
    index, manifest.index = make_index(
        embeddings, vec_ids, spec=options.index, memory_budget=options.memory_budget,
        prev_info=prev.manifest.index if reuse and prev is not None else None,
        prev_index_path=prev.dir / INDEX if reuse and prev is not None else None,
        changed_vec_ids=np.array(changed_ids, np.int64), removed_vec_ids=removed_ids,
        new_rows=np.flatnonzero(np.isin(vec_ids, np.array(fresh_ids, np.int64))), build=options.build)
    _sync_state(state, catalog, manifest.version, labeled, report,
                publish=lambda: publish_version(paths, manifest, catalog, embeddings, index))
    return manifest.version


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
