"""`edgemine index` and `edgemine labels import`."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from edgemine.bundle.layout import ModelInfo
from edgemine.bundle.objects import is_remote, local_path
from edgemine.cli.common import STATE_HELP, StateUrl, domain_errors
from edgemine.indexer import (
    IndexReport,
    ModelChoice,
    import_labels,
    read_embeddings_source,
    read_manifest_source,
    run_index,
    scan_directory,
)
from edgemine.indexer.engine import IndexEngine, LocalEngine
from edgemine.indexer.job import IndexOptions
from edgemine.indexer.sources import IMAGE_EXTENSIONS, Source, SourceError
from edgemine.models.base import ModelUnavailable
from edgemine.models.weights import DEFAULT_MODEL, DEFAULT_PRETRAINED, resolve_weights
from edgemine.search.plan import parse_memory

TABLE_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq")

labels_app = typer.Typer(help="Labeling state: mark images labeled or queued.", no_args_is_help=True)


def model_choice(model: str, pretrained: str, device: str | None, batch_size: int) -> ModelChoice:
    """Resolve the model identity now (cheap, fails fast) and defer loading the weights."""
    import open_clip  # imports torch: only commands that embed get here

    from edgemine.models.clip import _register_bundled_configs, load_clip

    _register_bundled_configs()
    if model not in open_clip.list_models():
        raise ModelUnavailable(f"unknown model {model!r}; see `python -c \"import open_clip; "
                               f"print(open_clip.list_models())\"` or use edgemine-tiny")
    weights = resolve_weights(model, pretrained)
    info = ModelInfo(identity=weights.identity, name=model, pretrained=pretrained)
    return ModelChoice(info, lambda: load_clip(model, pretrained, device, batch_size))


def read_source(source: Path | str, metadata: Path | None, image_root: Path | str | None) -> Source:
    """Read a directory tree (local, or an s3://bucket/prefix) or a manifest table."""
    if is_remote(str(source)):
        # An object-store prefix is a directory source (a manifest must be a local file).
        if image_root is not None:
            raise SourceError("--image-root is for manifests and --embeddings: a directory source is "
                              "its own image root")
        return scan_directory(str(source), metadata)
    source = Path(local_path(str(source)))
    if source.is_dir():
        if image_root is not None:
            raise SourceError("--image-root is for manifests and --embeddings: a directory source is "
                              "its own image root")
        return scan_directory(source, metadata)
    if source.suffix.lower() in TABLE_SUFFIXES:
        return read_manifest_source(source, image_root)
    if not source.exists():
        raise SourceError(f"source {source} does not exist")
    raise SourceError(f"source {source} is neither a directory of images "
                      f"({', '.join(sorted(IMAGE_EXTENSIONS))}) nor a manifest ({', '.join(TABLE_SUFFIXES)})")


def pick_engine(engine: str, address: str | None, actors: int, gpus_per_actor: float) -> IndexEngine:
    """Return the engine named by --engine; the Ray options are refused without --engine ray."""
    if engine == "local":
        if address is not None or actors != 1 or gpus_per_actor:
            raise ValueError("--ray-address, --actors and --gpus-per-actor need --engine ray")
        return LocalEngine()
    if engine == "ray":
        from edgemine.indexer.ray_engine import RayEngine  # imports ray only when it runs

        return RayEngine(address=address, actors=actors, gpus_per_actor=gpus_per_actor)
    raise ValueError(f"--engine must be local or ray, not {engine!r}")


def print_report(report: IndexReport) -> None:
    """Print the end-of-run summary."""
    where = f"version {report.version}" if report.version else "no version"
    status = "published" if report.published else "nothing changed, kept"
    typer.echo(
        f"\n{status} {where} of {report.bundle}\n"
        f"  new: {report.added}  updated: {report.updated}  unchanged (skipped): {report.unchanged}"
        f"  removed: {report.removed}  failed: {len(report.failed)}\n"
        f"  embedded now: {report.embedded_now}  resumed from an interrupted run: "
        f"{report.resumed_from_journal}  ({report.embed_images_per_s} img/s)  in {report.seconds} s"
    )
    if report.missing_from_source_kept:
        typer.echo(f"  {report.missing_from_source_kept} indexed images are no longer in the "
                   "source and were kept (use --prune to remove them)")
    if report.compacted:
        typer.echo("  compacted: every served row rewritten into one segment")
    for failure in report.failed[:20]:
        typer.secho(f"  failed: {failure['image_id']}: {failure['reason']}", fg=typer.colors.YELLOW)
    if len(report.failed) > 20:
        typer.echo(f"  ... {len(report.failed) - 20} more")
    typer.echo(f"  report: {report.report_path}")


def index(
    # Text, not Path: Path("s3://b/p") would fold the "//".
    source: Annotated[str | None, typer.Argument(
        help="Image directory (or s3://bucket/prefix, gs://...) or manifest (CSV/JSONL/Parquet).")] = None,
    bundle: Annotated[Path, typer.Option(help="Bundle directory to create or update.")] = Path("bundle"),
    embeddings: Annotated[Path | None, typer.Option(
        help="Parquet of precomputed embeddings (image_id, embedding, metadata...) instead of SOURCE.")] = None,
    embedding_model: Annotated[str, typer.Option(help="Name recorded for precomputed embeddings.")] = "external",
    model: Annotated[str, typer.Option(help="open_clip model name.")] = DEFAULT_MODEL,
    pretrained: Annotated[str, typer.Option(
        help="Pretrained tag, checkpoint file, or 'none' (random weights).")] = DEFAULT_PRETRAINED,
    metadata: Annotated[Path | None, typer.Option(help="Metadata table keyed by image_id (directory sources).")] = None,
    image_root: Annotated[str | None, typer.Option(
        help="Folder (or s3://bucket/prefix) the service may serve images from, for a manifest or "
             "--embeddings whose paths lie outside the file's own folder (the default root).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass and per journal commit.")] = 64,
    workers: Annotated[int, typer.Option(min=0, help="Decoding worker processes.")] = 2,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, or unset for CUDA when available.")] = None,
    index_spec: Annotated[str, typer.Option(
        "--index", help="auto, flat, or a FAISS factory string (e.g. 'IVF4096,SQ8', 'HNSW32,Flat').")] = "auto",
    memory_budget: Annotated[str, typer.Option(help="Memory for index + embeddings, for --index auto.")] = "4G",
    prune: Annotated[bool, typer.Option(help="Remove indexed images no longer in the source.")] = False,
    rebuild: Annotated[bool, typer.Option(help="Re-embed everything (e.g. to change model).")] = False,
    compact: Annotated[bool, typer.Option(
        help="Rewrite every served row into one new segment (drops tombstoned rows; O(all)).")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    engine: Annotated[str, typer.Option(
        help="local (this machine) or ray (Ray Data; needs the ray extra).")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        help="--engine ray: auto, HOST:PORT or ray://HOST:PORT of a running cluster (default: start a "
             "local Ray).")] = None,
    actors: Annotated[int, typer.Option(min=1, help="--engine ray: embedding actors (model copies), at most.")] = 1,
    gpus_per_actor: Annotated[float, typer.Option(min=0, help="--engine ray: GPUs each actor requests.")] = 0,
    state_url: StateUrl = None,
) -> None:
    """Embed images into a bundle; re-runs embed only new or changed images."""
    with domain_errors():
        if (source is None) == (embeddings is None):
            raise SourceError("give exactly one of SOURCE or --embeddings FILE")
        chosen = pick_engine(engine, ray_address, actors, gpus_per_actor)
        if embeddings is not None:
            src = read_embeddings_source(embeddings, image_root)
            choice = ModelChoice(ModelInfo(identity=f"byo:{embedding_model}",
                                           name=embedding_model, pretrained="external"), None)
        else:
            assert source is not None
            src = read_source(source, metadata, image_root)
            choice = model_choice(model, pretrained, device, batch_size)
        report = run_index(src, bundle, choice, batch_size=batch_size, workers=workers,
                           prune=prune, rebuild=rebuild, progress=progress,
                           options=IndexOptions(index_spec, parse_memory(memory_budget), compact),
                           engine=chosen, state_url=state_url)
    if json_out:
        typer.echo(json.dumps(asdict(report), default=str))
    else:
        print_report(report)


def compact(
    bundle: Annotated[Path, typer.Option(help="Bundle directory to compact.")] = Path("bundle"),
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    state_url: StateUrl = None,
) -> None:
    """Rewrite the served rows into one segment (drops tombstoned rows; same images served)."""
    from edgemine.indexer.compact import compact_bundle

    with domain_errors():
        report = compact_bundle(bundle, state_url)
    if json_out:
        typer.echo(json.dumps(asdict(report), default=str))
    else:
        print_report(report)


@labels_app.command("import")
def labels_import(
    file: Annotated[Path, typer.Argument(help="CSV/JSONL/Parquet with an image_id column.")],
    bundle: Annotated[Path, typer.Option(help="Bundle directory.")] = Path("bundle"),
    state: Annotated[str, typer.Option(help="labeled, queued or unlabeled.")] = "labeled",
    ignore_unknown: Annotated[bool, typer.Option(help="Skip ids not in the bundle instead of failing.")] = False,
    state_url: Annotated[str | None, typer.Option(  # --state is the labeling state here
        "--state-url", envvar="EDGEMINE_STATE_URL", show_default=False, help=STATE_HELP)] = None,
) -> None:
    """Mark the listed images labeled (they are never mined again)."""
    with domain_errors():
        if state not in ("labeled", "queued", "unlabeled"):
            raise ValueError(f"--state must be labeled, queued or unlabeled, not {state!r}")
        result = import_labels(bundle, file, state, ignore_unknown,  # type: ignore[arg-type]
                               state_url=state_url)
    typer.echo(f"{result.changed} of {result.requested} images newly marked {state}"
               + (f"; {len(result.unknown)} unknown ids skipped" if result.unknown else ""))
