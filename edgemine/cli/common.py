"""Shared CLI plumbing: turning domain errors into clear messages and exit codes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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
