"""edgemine: mine unlabeled recorded images that look like your model's failures.

The Python API: `edgemine.open("bundle/")` mines a local bundle in this process,
`edgemine.connect("http://127.0.0.1:8000")` a running service; both return a `Client` with the
same methods and results. Names are imported on first use, so `import edgemine` stays cheap
(no torch, FAISS, FastAPI or httpx until a call needs them). `edgemine.open` is not the builtin
`open`: call it as `edgemine.open(...)`; `from edgemine import *` would shadow the builtin.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it (imported when the name is first used)
_LAZY = {
    "connect": "edgemine.client.client",
    "open": "edgemine.client.client",
    "Client": "edgemine.client.client",
    "MiningResult": "edgemine.client.results",
    "Batch": "edgemine.client.results",
    "Verdicts": "edgemine.client.review",
    "YieldReport": "edgemine.client.review",
    "EdgemineError": "edgemine.client.errors",
    "UnknownImageIds": "edgemine.client.errors",
    "QueryError": "edgemine.client.errors",
    "ServiceUnavailable": "edgemine.client.errors",
    "AuthenticationError": "edgemine.client.errors",
    "BatchConflict": "edgemine.client.errors",
    "UnknownBatch": "edgemine.client.errors",
    "ImageUnavailable": "edgemine.client.errors",
    "MineQuery": "edgemine.service.query",
    "MineResult": "edgemine.service.query",
}

__all__ = ["AuthenticationError", "Batch", "BatchConflict", "Client", "EdgemineError", "ImageUnavailable",
           "MineQuery", "MineResult", "MiningResult", "QueryError", "ServiceUnavailable", "UnknownBatch",
           "UnknownImageIds", "Verdicts", "YieldReport", "__version__", "connect", "open"]

if TYPE_CHECKING:
    from edgemine.client.client import Client, connect, open
    from edgemine.client.errors import (
        AuthenticationError,
        BatchConflict,
        EdgemineError,
        ImageUnavailable,
        QueryError,
        ServiceUnavailable,
        UnknownBatch,
        UnknownImageIds,
    )
    from edgemine.client.results import Batch, MiningResult
    from edgemine.client.review import Verdicts, YieldReport
    from edgemine.service.query import MineQuery, MineResult


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgemine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    """List the public names with the module's own."""
    return sorted({*globals(), *_LAZY})
