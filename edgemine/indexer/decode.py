"""Open one source item as a decoded image: the one place both indexing engines read a file."""

from __future__ import annotations

from PIL import Image

from edgemine.bundle import objects
from edgemine.indexer.files import probe_file
from edgemine.indexer.sources import SourceItem
from edgemine.models.images import decode_image


def open_item_image(item: SourceItem, min_side: int | None = None,
                    max_bytes: int = objects.DEFAULT_MAX_OBJECT_BYTES) -> Image.Image:
    """Read and decode `item`'s file or object (s3://, gs://) as RGB; raise ValueError saying why it cannot be used.

    An object is read whole into memory, at most `max_bytes` (checked before downloading).
    """
    if item.path is None:
        raise ValueError("no path")
    if objects.is_remote(item.path):
        try:
            data = objects.read_object(item.path, max_bytes)
        except objects.ObjectStoreError as exc:  # missing, denied, too large, store unreachable
            raise ValueError(str(exc)) from exc
        return decode_image(data, min_side)
    # Checked again here (the file may have changed since the scan): opening a named pipe
    # would block the worker forever.
    _, error = probe_file(item.path)
    if error is not None:
        raise ValueError(error)
    return decode_image(item.path, min_side)
