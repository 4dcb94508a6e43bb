"""The batch job that embeds recorded images into an index bundle."""

from edgemine.indexer.job import IndexReport, ModelChoice, run_index
from edgemine.indexer.labels import import_labels
from edgemine.indexer.sources import (
    Source,
    SourceError,
    read_embeddings_source,
    read_manifest_source,
    scan_directory,
)

__all__ = [
    "IndexReport",
    "ModelChoice",
    "Source",
    "SourceError",
    "import_labels",
    "read_embeddings_source",
    "read_manifest_source",
    "run_index",
    "scan_directory",
]
