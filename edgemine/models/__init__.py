"""Loading CLIP models and turning images and texts into normalized vectors."""

from edgemine.models.base import Embedder, ModelUnavailable
from edgemine.models.clip import DEFAULT_MODEL, DEFAULT_PRETRAINED, ClipEmbedder, load_clip
from edgemine.models.vectors import Vectors, l2_normalize
from edgemine.models.weights import resolve_weights

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
