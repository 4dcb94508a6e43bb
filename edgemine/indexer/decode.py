"""Open one source item as a decoded image: the one place both indexing engines read a file."""

from __future__ import annotations

from PIL import Image

from edgemine.indexer.files import probe_file
from edgemine.indexer.sources import SourceItem
from edgemine.models.images import decode_image


def open_item_image(item: SourceItem, min_side: int | None = None) -> Image.Image:
    """Read and decode `item`'s file as RGB; raise ValueError with the reason it cannot be used."""
    if item.path is None:
        raise ValueError("no path")
    # Checked again here (the file may have changed since the scan): opening a named pipe
    # would block the worker forever.
    _, error = probe_file(item.path)
    if error is not None:
        raise ValueError(error)
    return decode_image(item.path, min_side)
