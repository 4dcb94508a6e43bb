"""Loading CLIP models and turning images and texts into normalized vectors.

The CLIP half (`load_clip`, `ClipEmbedder`) imports torch and open_clip, which take seconds:
it is imported on first use (PEP 562), so the CLI, the bundle and BYO serving stay light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from edgemine.models.base import Embedder, ModelUnavailable
from edgemine.models.vectors import Vectors, l2_normalize
from edgemine.models.weights import DEFAULT_MODEL, DEFAULT_PRETRAINED, resolve_weights

if TYPE_CHECKING:
    from edgemine.models.clip import ClipEmbedder, load_clip

_LAZY = {"ClipEmbedder": "edgemine.models.clip", "load_clip": "edgemine.models.clip"}

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_PRETRAINED",
    "ClipEmbedder",
    "Embedder",
    "ModelUnavailable",
    "Vectors",
    "l2_normalize",
    "load_clip",
    "resolve_weights",
]


def __getattr__(name: str) -> Any:
    """Import the torch-backed names on first access."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
