"""Thumbnails of a bundle's images for the HTML report: decoded pixels only, only from the declared image roots."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgemine.bundle.image_source import ImageOutsideRoots, indexed_image
from edgemine.bundle.objects import ObjectStoreError
from edgemine.bundle.snapshot import load_current
from edgemine.models.images import DEFAULT_MAX_PIXELS, reencode_image

Thumbnails = Callable[[str], bytes | None]
# Edge of an embedded thumbnail: ~3-6 KB of JPEG each, so a page with a few hundred flips stays small.
THUMBNAIL_EDGE = 128


def bundle_thumbnails(bundle: Path, *, edge: int = THUMBNAIL_EDGE,
                      max_pixels: int = DEFAULT_MAX_PIXELS) -> Thumbnails:
    """Return `thumbnail(image_id) -> JPEG bytes | None` over the bundle's current version.

    None, never an exception, for an image that cannot be shown: unknown id, no file (a
    precomputed embedding), a path or symlink resolving outside the bundle's image roots, a
    missing file or object (or an object store that cannot be reached), content that is not a
    JPEG/PNG/WebP/BMP image, or one over `max_pixels`.
    The same checks and encoder as the service's /v1/images route.
    """
    snapshot = load_current(bundle)
    paths = snapshot.catalog.column("path")
    roots = snapshot.manifest.image_roots

    def thumbnail(image_id: str) -> bytes | None:
        row = snapshot.row_by_id.get(image_id)
        raw = None if row is None else paths[row].as_py()
        if not raw:
            return None
        try:
            source = indexed_image(raw, roots)
            body, _ = reencode_image(source, edge, max_pixels=max_pixels, thumbnail=True)
        except (ImageOutsideRoots, ObjectStoreError):  # outside, missing, denied, store unreachable
            return None
        except ValueError:  # NotAnImage, ImageTooLarge, corrupt: shown as "no thumbnail"
            return None
        return body

    return thumbnail
