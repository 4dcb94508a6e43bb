"""Import labeling state from a table of image ids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgemine.bundle.errors import BundleError, UnknownImageIds
from edgemine.bundle.layout import BundlePaths
from edgemine.bundle.state import LabelState, open_state
from edgemine.indexer.sources import SourceError, _require_ids, read_table


@dataclass
class LabelImport:
    """The outcome of a labels import."""

    requested: int
    changed: int
    unknown: list[str]


def import_labels(bundle: Path, table_file: Path, state: LabelState = "labeled",
                  ignore_unknown: bool = False, state_url: str | None = None) -> LabelImport:
    """Mark the images listed in a CSV/JSONL/Parquet file (column image_id) with `state`.

    All or nothing: unknown ids abort the import (naming them) unless `ignore_unknown`.
    `state_url`: a postgresql:// state database (default: the bundle's state.sqlite).
    """
    paths = BundlePaths(bundle)
    if not state_url and not paths.state_db.is_file():
        raise BundleError(f"{bundle} is not an edgemine bundle (no {paths.state_db.name})")
    if not table_file.is_file():
        raise SourceError(f"labels file {table_file} does not exist")
    ids = _require_ids(read_table(table_file), table_file)
    db = open_state(paths, state_url)
    unknown = sorted(set(ids) - db.known_ids(ids))
    if unknown and not ignore_unknown:
        raise UnknownImageIds(unknown)
    known = [i for i in ids if i not in set(unknown)]
    return LabelImport(len(ids), db.set_state(known, state), unknown)
