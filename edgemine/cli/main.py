"""The `edgemine` console script."""

from __future__ import annotations

import typer

from edgemine.cli.demo import demo
from edgemine.cli.evaluate import evaluate
from edgemine.cli.feedback import verdicts_app
from edgemine.cli.gate import gate
from edgemine.cli.index import compact, index, labels_app
from edgemine.cli.scenarios import scenario_app
from edgemine.cli.serve import mine, serve
from edgemine.cli.truth import annotations_app, models_app, predictions_app
from edgemine.cli.yields import yield_

app = typer.Typer(help="edgemine: mine unlabeled recorded images that look like your failures.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.command()(index)
app.command()(compact)
app.add_typer(labels_app, name="labels")
app.add_typer(verdicts_app, name="verdicts")
app.add_typer(annotations_app, name="annotations")
app.add_typer(predictions_app, name="predictions")
app.add_typer(models_app, name="models")
app.command()(serve)
app.command()(mine)
app.command()(demo)
app.command("yield")(yield_)
app.command()(evaluate)
app.add_typer(scenario_app, name="scenario")
app.command()(gate)

if __name__ == "__main__":
    app()
