"""Where a served image's bytes come from: a local file or an object, only inside the declared image roots."""

from __future__ import annotations

import os

from edgemine.bundle import objects
from edgemine.bundle.layout import real_path_inside


class ImageOutsideRoots(PermissionError):
    """The catalog path (or the symlink it names) lies outside the bundle's image roots."""


def indexed_image(raw: str, roots: list[str], max_bytes: int = objects.DEFAULT_MAX_OBJECT_BYTES) -> str | bytes:
    """Return what to decode for a catalog path: the real local path, or an object's bytes (at most `max_bytes`).

    Raises ImageOutsideRoots, objects.ObjectNotFound (also for a local file that is gone),
    ObjectAccessDenied, ObjectTooLarge or StoreUnreachable. The service, the Python API and the
    reports all read indexed images through here, so they check and fail alike.
    """
    if objects.is_remote(raw):
        uri = objects.uri_inside(raw, roots)
        if uri is None:
            raise ImageOutsideRoots(f"{raw} is outside the bundle's image roots")
        return objects.read_object(uri, max_bytes)
    real = real_path_inside(raw, roots)
    if real is None:
        raise ImageOutsideRoots(f"{raw} is outside the bundle's image roots")
    if not os.path.isfile(real):
        raise objects.ObjectNotFound(raw)  # callers say "file of image X is gone: <path>"
    return real
