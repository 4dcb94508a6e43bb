"""Shared CLI plumbing: turning domain errors into clear messages and exit codes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated

import typer

from edgemine.bundle.errors import BundleError, UnknownImageIds
from edgemine.bundle.layout import BundlePaths
from edgemine.bundle.state import StateDB, open_state
from edgemine.indexer.sources import SourceError
from edgemine.models.base import ModelUnavailable

STATE_HELP = ("State database shared by several hosts: postgresql://USER:PASSWORD@HOST:PORT/DB (prefer the "
              "EDGEMINE_STATE_URL variable: command lines are visible to other users). Default: state.sqlite "
              "in the bundle.")
StateUrl = Annotated[str | None, typer.Option("--state", "--state-url", envvar="EDGEMINE_STATE_URL",
                                              show_default=False, help=STATE_HELP)]


def bundle_state(bundle: Path, url: str | None) -> StateDB:
    """Open the bundle's state: the database at `url`, else the bundle's state.sqlite (which must exist)."""
    paths = BundlePaths(bundle)
    if not url and not paths.state_db.is_file():
        raise BundleError(f"{bundle} has no state.sqlite: is it a bundle directory? (or give --state URL)")
    return open_state(paths, url)


@contextlib.contextmanager
def domain_errors() -> Iterator[None]:
    """Print domain errors as one clear line and exit non-zero (no traceback)."""
    try:
        yield
    except (BundleError, SourceError, ModelUnavailable, UnknownImageIds, ValueError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc


def text_table(title: str, cells: Sequence[Sequence[str]]) -> list[str]:
    """Return `title:` and the rows of `cells` (header first) as aligned lines: first column left, others right."""
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = [f"{title}:"]
    for row in cells:
        lines.append("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                      for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    return lines
