"""`edgemine verdicts import` (Label Studio exports back into verdicts)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgemine.cli.common import StateUrl, domain_errors
from edgemine.service.labelstudio import (
    DEFAULT_ACCEPT,
    DEFAULT_CHOICE_NAME,
    DEFAULT_REJECT,
    FORMATS,
    ChoiceMap,
)
from edgemine.service.labelstudio_import import import_labelstudio

verdicts_app = typer.Typer(help="Review verdicts: accept, reject or skip per image.", no_args_is_help=True)
_FORMAT_NAMES = {"json": "JSON", "json-min": "JSON_MIN", "csv": "CSV"}


@verdicts_app.command("import")
def verdicts_import(
    file: Annotated[Path, typer.Argument(help="A Label Studio export: JSON, JSON_MIN or CSV.")],
    bundle: Annotated[Path, typer.Option(help="Bundle directory.")] = Path("bundle"),
    accept_choice: Annotated[list[str] | None, typer.Option(
        "--accept-choice", show_default=False,
        help=f"A choice that means accept (repeat; default: {', '.join(DEFAULT_ACCEPT)}).")] = None,
    reject_choice: Annotated[list[str] | None, typer.Option(
        "--reject-choice", show_default=False,
        help=f"A choice that means reject (repeat; default: {', '.join(DEFAULT_REJECT)}).")] = None,
    choice_name: Annotated[str, typer.Option(
        help="The `name` of the Choices control in the labeling config (the CSV/JSON_MIN column).")
    ] = DEFAULT_CHOICE_NAME,
    fmt: Annotated[str, typer.Option(
        "--format", help=f"{', '.join(FORMATS)} (auto: detected from the content).")] = "auto",
    reviewer: Annotated[str | None, typer.Option(
        show_default=False, help="Reviewer recorded with every verdict (default: labelstudio:<annotator id>).")
    ] = None,
    session: Annotated[str | None, typer.Option(
        show_default=False, help="Mining session the verdicts belong to (for use_verdicts and yield).")] = None,
    state_url: StateUrl = None,
) -> None:
    """Import annotations exported from Label Studio as verdicts; annotated images become labeled.

    Choices map to accept/reject, skipped tasks to skip. All or nothing: an unmapped choice, a
    task without image_id or an id not in the bundle stops the import before anything is stored.
    """
    with domain_errors():
        choices = ChoiceMap(accept=tuple(accept_choice or DEFAULT_ACCEPT),
                            reject=tuple(reject_choice or DEFAULT_REJECT), name=choice_name)
        report = import_labelstudio(bundle, file, choices, fmt=fmt, reviewer=reviewer, session_id=session,
                                    state_url=state_url)
    counts = ", ".join(f"{report.counts.get(v, 0)} {v}" for v in ("accept", "reject", "skip"))
    typer.echo(f"imported {report.recorded} verdicts ({counts}) on {report.images} images from {file} "
               f"(Label Studio {_FORMAT_NAMES[report.format]}); {report.newly_labeled} images newly marked labeled")
