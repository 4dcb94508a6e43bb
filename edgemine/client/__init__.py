"""The public Python API: `open` a local bundle or `connect` to a service, then mine, queue, export, label.

`Client` methods take and return the service's own pydantic models (`MineQuery`, `MineResult`,
the batch, verdict and yield models), wrapped in `MiningResult`, `Batch`, `Verdicts` and
`YieldReport`, and raise the typed errors of `edgemine.client.errors`, whichever backend runs them.
"""

from edgemine.client._backend import Backend
from edgemine.client._http import HttpBackend
from edgemine.client._local import LocalBackend
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

__all__ = ["AuthenticationError", "Backend", "Batch", "BatchConflict", "Client", "EdgemineError", "HttpBackend",
           "ImageUnavailable", "LocalBackend", "MiningResult", "QueryError", "ServiceUnavailable", "UnknownBatch",
           "UnknownImageIds", "Verdicts", "YieldReport", "connect", "open"]
