"""Domain errors raised by the library and translated at the edges (CLI, HTTP)."""

from __future__ import annotations

from collections.abc import Iterable


class BundleError(RuntimeError):
    """The bundle is missing, corrupt, or cannot be used as asked."""


class ModelMismatch(BundleError):
    """The bundle was built with another model or dimension than the one requested."""


class UnknownImageIds(KeyError):
    """Some image IDs are not in the bundle."""

    SHOWN = 20  # ids named in the message
    SHOWN_CHARS = 100  # characters shown of each: an id can be as long as the request allows

    def __init__(self, ids: Iterable[str]) -> None:
        self.ids = sorted(set(ids))
        shown = ", ".join(repr(_cut(i, self.SHOWN_CHARS)) for i in self.ids[:self.SHOWN])
        # The count comes first: a long message may be cut where it is echoed (HTTP error bodies).
        more = f" ({len(self.ids)}; {len(self.ids) - self.SHOWN} more not shown)" if len(self.ids) > self.SHOWN else ""
        super().__init__(f"unknown image ids{more}: {shown}")

    def __str__(self) -> str:
        return str(self.args[0])


class StateReadOnly(BundleError):
    """state.sqlite cannot be written by this process: labeling state is read-only."""


class StateBusy(BundleError):
    """state.sqlite stayed locked by another writer for longer than the busy timeout."""


class UnstorableText(ValueError):
    """Text the state database cannot hold (PostgreSQL text cannot contain NUL characters)."""


class StateUnavailable(BundleError):
    """The state database (PostgreSQL) cannot be reached; the message names its endpoint."""


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"
