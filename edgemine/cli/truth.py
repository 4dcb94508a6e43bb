"""`edgemine annotations import`, `edgemine predictions import`, `edgemine models list`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgemine.cli.common import StateUrl, bundle_state, domain_errors
from edgemine.scenarios.store import import_annotations, import_predictions, list_models

annotations_app = typer.Typer(help="Ground truth per image (classification or detection boxes).",
                              no_args_is_help=True)
predictions_app = typer.Typer(help="Model predictions per image, stored per model name.", no_args_is_help=True)
models_app = typer.Typer(help="Models whose predictions are stored in the bundle.", no_args_is_help=True)

BundleOption = Annotated[Path, typer.Option(help="Bundle directory.")]




@annotations_app.command("import")
def annotations_import(
    file: Annotated[Path, typer.Argument(help="JSONL (one image per line) or COCO instances JSON.")],
    bundle: BundleOption = Path("bundle"),
    state_url: StateUrl = None,
) -> None:
    """Import ground truth; replaces that of the images in FILE and marks them labeled. All or nothing."""
    with domain_errors():
        report = import_annotations(bundle_state(bundle, state_url), file)
    typer.echo(report.summary())


@predictions_app.command("import")
def predictions_import(
    file: Annotated[Path, typer.Argument(help="JSONL (one image per line, with scores) or COCO results JSON.")],
    model: Annotated[str, typer.Option(help="Model name, e.g. v8 (letters, digits, '.', '_', '-').")],
    bundle: BundleOption = Path("bundle"),
    state_url: StateUrl = None,
    coco_images: Annotated[Path | None, typer.Option(
        show_default=False, help="COCO results: the instances file whose image and category ids they use "
                                 "(default: the ids of the last COCO ground-truth import).")] = None,
) -> None:
    """Import a model's predictions, replacing any stored under that name. All or nothing."""
    with domain_errors():
        report = import_predictions(bundle_state(bundle, state_url), file, model, coco_images=coco_images)
    typer.echo(report.summary())


@models_app.command("list")
def models_list(bundle: BundleOption = Path("bundle"), state_url: StateUrl = None) -> None:
    """List the models with stored predictions: images, task, source file, import time, content hash."""
    with domain_errors():
        models = list_models(bundle_state(bundle, state_url))
    if not models:
        typer.echo("no predictions imported (edgemine predictions import FILE --model NAME)")
        return
    rows = [("model", "images", "task", "source", "imported_at", "hash"),
            *((m.name, str(m.images), m.task, m.source, m.imported_at, m.hash[:12]) for m in models)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(c.rjust(w) if i == 1 else c.ljust(w)
                             for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())
