"""The on-disk index bundle: the contract between the indexer and the service."""

from edgemine.bundle.errors import BundleError, ModelMismatch, UnknownImageIds
from edgemine.bundle.layout import FORMAT_VERSION, BundlePaths, Manifest
from edgemine.bundle.snapshot import Snapshot, load_current
from edgemine.bundle.state import StateDB

__all__ = [
    "FORMAT_VERSION",
    "BundleError",
    "BundlePaths",
    "Manifest",
    "ModelMismatch",
    "Snapshot",
    "StateDB",
    "UnknownImageIds",
    "load_current",
]
