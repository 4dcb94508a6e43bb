"""Uploaded example images: what a request carries, and decoding them under the upload pixel limit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgemine.models.images import UPLOAD_MAX_PIXELS, decode_image


@dataclass(frozen=True)
class Upload:
    """An uploaded example image."""

    name: str
    data: bytes
    max_pixels: int = UPLOAD_MAX_PIXELS

    def decode(self, min_side: int | None) -> Any:
        """Return the decoded image; ValueError (the indexer's message) when it is empty or not an image."""
        if not self.data:
            raise ValueError("empty file (0 bytes)")
        # Decoded from memory with the indexer's checks and messages, under the upload pixel limit;
        # JPEGs at the smallest DCT scale that still covers the model's input.
        return decode_image(self.data, min_side, max_pixels=self.max_pixels)
