"""Domain errors raised by the library and translated at the edges (CLI, HTTP)."""

from __future__ import annotations

from collections.abc import Iterable


class BundleError(RuntimeError):
    """The bundle is missing, corrupt, or cannot be used as asked."""


class ModelMismatch(BundleError):
    """The bundle was built with another model or dimension than the one requested."""


class UnknownImageIds(KeyError):
    """Some image IDs are not in the bundle."""

    def __init__(self, ids: Iterable[str]) -> None:
        self.ids = sorted(set(ids))
        shown = ", ".join(repr(i) for i in self.ids[:20])
        more = f" (and {len(self.ids) - 20} more)" if len(self.ids) > 20 else ""
        super().__init__(f"unknown image ids: {shown}{more}")

    def __str__(self) -> str:
        return str(self.args[0])


class StateReadOnly(BundleError):
    """state.sqlite cannot be written by this process: labeling state is read-only."""


class StateBusy(BundleError):
    """state.sqlite stayed locked by another writer for longer than the busy timeout."""
