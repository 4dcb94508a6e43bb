"""The `edgemine` console script."""

from __future__ import annotations

import typer

from edgemine.cli.index import index, labels_app

app = typer.Typer(help="edgemine: mine unlabeled recorded images that look like your failures.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.command()(index)
app.add_typer(labels_app, name="labels")

if __name__ == "__main__":
    app()
