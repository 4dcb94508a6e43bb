"""Shared CLI plumbing: turning domain errors into clear messages and exit codes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import typer

from edgemine.bundle.errors import BundleError, UnknownImageIds
from edgemine.indexer.sources import SourceError
from edgemine.models.base import ModelUnavailable


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
