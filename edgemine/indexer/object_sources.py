"""Sources on object storage: an s3:// (or gs://) prefix as a directory source, and URI rows of a manifest.

Change detection mirrors local files: a listing gives size + Last-Modified (as size + mtime for a
file), a row stat'ed on its own gives size + ETag. An object that cannot be used fails alone, with
its reason; an endpoint that cannot be reached fails the whole source, naming the endpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath
from typing import Any

from edgemine.bundle import objects
from edgemine.indexer.files import UNREADABLE, parse_sidecar
from edgemine.indexer.sources import IMAGE_EXTENSIONS, Source, SourceError, SourceItem

# HEAD requests in flight while stat'ing a manifest's object rows (each waits on the network).
STAT_THREADS = 16
# A metadata sidecar is a small JSON object: more than this is not one.
MAX_SIDECAR_BYTES = 1024 * 1024


def _hidden(relative: str) -> bool:
    return any(part.startswith(".") for part in relative.split("/"))


def scan_object_prefix(uri: str, extra: dict[str, dict[str, Any]], labeled: dict[str, bool]) -> Source:
    """List images under an object-store prefix; ids are keys relative to it, the prefix is the image root.

    `extra` and `labeled` come from an optional metadata table keyed by image_id; a sidecar object
    (`frame.jpg.json`) beside an image adds metadata and wins, as for local directories.
    """
    try:
        root = objects.as_root(uri)
        listing = list(objects.list_prefix(root))
    except objects.StoreUnreachable as exc:
        raise SourceError(f"cannot list source {uri}: {exc}") from exc
    except (objects.ObjectStoreError, ValueError) as exc:
        raise SourceError(f"cannot list source {uri}: {exc}") from exc
    by_uri = {info.uri: info for info in listing}
    items: list[SourceItem] = []
    for info in listing:
        image_id = info.uri[len(root):]
        if _hidden(image_id) or PurePosixPath(image_id).suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        item = SourceItem(image_id, info.uri, info.fingerprint, dict(extra.get(image_id, {})),
                          labeled.get(image_id, False))
        sidecar = by_uri.get(info.uri + ".json")
        if sidecar is not None:
            _apply_sidecar(item, sidecar)
        items.append(item)
    return Source("directory", root, items, [root])


def _apply_sidecar(item: SourceItem, sidecar: objects.ObjectInfo) -> None:
    name = sidecar.uri.rsplit("/", 1)[-1]
    try:
        raw = objects.read_object(sidecar.uri, MAX_SIDECAR_BYTES)
        more, flag = parse_sidecar(name, raw)
    except objects.StoreUnreachable:
        raise
    except objects.ObjectStoreError as exc:
        item.error = f"sidecar {name}: {exc}"
    except ValueError as exc:
        item.error = str(exc)
    else:
        item.metadata.update(more)
        item.labeled = item.labeled if flag is None else flag


def stat_object_items(items: Sequence[SourceItem]) -> None:
    """Fingerprint the items whose path is an object URI (size + ETag); a missing one fails alone.

    Raises SourceError naming the endpoint when the store cannot be reached at all.
    """
    remote = [item for item in items if objects.is_remote(item.path)]

    def stat(item: SourceItem) -> None:
        assert item.path is not None
        try:
            item.fingerprint = objects.stat_object(item.path).fingerprint
        except objects.StoreUnreachable:
            raise
        except (objects.ObjectStoreError, ValueError) as exc:
            item.fingerprint, item.error = UNREADABLE, str(exc)

    if not remote:
        return
    with ThreadPoolExecutor(min(STAT_THREADS, len(remote))) as pool:
        try:
            list(pool.map(stat, remote))
        except objects.StoreUnreachable as exc:
            raise SourceError(f"cannot read the source's objects: {exc}") from exc
