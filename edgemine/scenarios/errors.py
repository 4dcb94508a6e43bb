"""Domain errors of scenario testing; the CLI maps them to exit code 2, the service to 4xx."""

from __future__ import annotations

from pathlib import Path

from edgemine.bundle.errors import BundleError


class ScenarioError(BundleError):
    """Base class: something a scenario run needs is missing, stale or malformed."""


class InputFileError(ScenarioError, ValueError):
    """A ground-truth, predictions or scenario file is malformed; names the file, line and field."""

    def __init__(self, path: Path | str, message: str, *, line: int | None = None,
                 field: str | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.reason = message
        where = self.path + (f", line {line}" if line is not None else "")
        what = f" (field {field!r})" if field else ""
        super().__init__(f"{where}{what}: {message}")


class UnknownModel(ScenarioError):
    """No predictions were imported under this model name."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        listed = ", ".join(known) if known else "none imported yet"
        super().__init__(f"unknown model {name!r} (models with predictions: {listed}); "
                         f"import them with: edgemine predictions import FILE --model {name}")


class UnknownScenario(ScenarioError):
    """No scenario file with this name in the scenarios folder."""


class LockError(ScenarioError):
    """A scenario's lock file is missing or stale (the YAML changed, or locked images left the bundle)."""


class NotEvaluable(ScenarioError):
    """A scenario cannot be evaluated (e.g. no member has ground truth, missing predictions)."""
