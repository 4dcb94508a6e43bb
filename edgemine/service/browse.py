"""Browse a bundle's images with the same metadata filters as mining (for review pages)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel

from edgemine.bundle.snapshot import Snapshot
from edgemine.bundle.state import LABEL_STATES
from edgemine.service.filters import filter_mask
from edgemine.service.miner import image_url
from edgemine.service.query import FilterValue
from edgemine.service.row_states import RowStates


class ImageInfo(BaseModel):
    """One image with its metadata and labeling state."""

    image_id: str
    state: str
    metadata: dict[str, Any]
    image_url: str


class ImagePage(BaseModel):
    """A page of images matching a browse request."""

    total: int
    offset: int
    items: list[ImageInfo]


def browse(snapshot: Snapshot, states: RowStates, filters: dict[str, FilterValue],
           include_states: list[str], contains: str = "", offset: int = 0, limit: int = 100,
           base_url: str = "") -> ImagePage:
    """Return images (in catalog order) passing the filters, states and id substring."""
    mask = states.eligible(include_states)
    fmask = filter_mask(snapshot.catalog, filters)
    if fmask is not None:
        mask &= fmask
    if contains:
        mask &= np.fromiter((contains in i for i in snapshot.image_ids), bool, len(mask))
    rows = np.flatnonzero(mask)
    page = rows[offset:offset + limit]
    table = snapshot.catalog.take(pa.array(page, pa.int64()))
    cols = snapshot.metadata_columns
    metadata = table.select(cols).to_pylist() if cols else [{} for _ in page]
    items = [ImageInfo(image_id=snapshot.image_ids[r], state=LABEL_STATES[int(states.codes[r])],
                       metadata={k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in m.items()},
                       image_url=image_url(snapshot.image_ids[r], base_url))
             for r, m in zip(page.tolist(), metadata, strict=True)]
    return ImagePage(total=len(rows), offset=offset, items=items)
