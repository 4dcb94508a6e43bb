"""Decoding images safely: known formats only, a pixel limit checked before decoding, JPEG draft mode.

Pillow and numpy only (no torch): the indexer, the service's thumbnails and uploads all decode here.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from pathlib import Path
from typing import IO

from PIL import Image, UnidentifiedImageError

# A 40 MP image takes ~120 MB as RGB (plus a copy while converting): enough for any camera frame,
# and a header claiming more is refused before a single pixel is allocated.
DEFAULT_MAX_PIXELS = 40_000_000
# Uploaded examples are resized to the model's input anyway: a 24 MP photo (6000x4000) is plenty.
UPLOAD_MAX_PIXELS = 24_000_000

# Magic bytes -> Pillow format name. Only these decoders are ever run, on any input.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
)
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "BMP": "image/bmp"}


class ImageTooLarge(ValueError):
    """The image's header declares more pixels than the caller allows."""

    def __init__(self, pixels: int, max_pixels: int, size: tuple[int, int] | None = None) -> None:
        shape = f"{size[0]}x{size[1]} = " if size else ""
        super().__init__(f"image is {shape}{pixels / 1e6:.1f} MP, over the limit of {max_pixels / 1e6:g} MP")
        self.pixels = pixels
        self.max_pixels = max_pixels


class NotAnImage(ValueError):
    """The content is not a JPEG, PNG, WebP or BMP image (by its magic bytes)."""


def sniff_format(head: bytes) -> str | None:
    """Return the format (JPEG, PNG, WEBP, BMP) that the first bytes of a file announce, or None."""
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in _SIGNATURES:
        if head.startswith(magic):
            return name
    return None


def _draft_scale(size: tuple[int, int], min_side: int | None, fit: int | None) -> float:
    """Return the factor (<= 1) the image may be reduced by and still meet both needs."""
    needs = [want / have for want, have in ((min_side, min(size)), (fit, max(size))) if want]
    return min(1.0, max(needs)) if needs else 1.0


def decode_image(source: str | Path | bytes, min_side: int | None = None, *, fit: int | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open and fully decode a JPEG, PNG, WebP or BMP image as RGB; raise ValueError with a readable reason.

    The format is recognised by its magic bytes (the name is irrelevant). JPEGs are decoded at the
    smallest DCT scale (1/2, 1/4, 1/8) that keeps the short side >= `min_side` (what a model
    resizes to) and the long side >= `fit` (a thumbnail's edge). `max_pixels` is checked against
    the size that will actually be decoded, read from the header before any pixel is allocated:
    larger images raise ImageTooLarge (a ValueError).
    """
    fh: IO[bytes]
    try:
        fh = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    except FileNotFoundError as exc:
        raise ValueError("file not found") from exc
    except IsADirectoryError as exc:
        raise ValueError("not a file (a directory)") from exc
    except OSError as exc:
        raise ValueError(f"cannot read file: {exc.strerror or exc}") from exc
    with fh:
        head = fh.read(16)
        if not head:
            raise ValueError("empty file (0 bytes)")
        fmt = sniff_format(head)
        if fmt is None:
            raise NotAnImage("not an image: the content is not JPEG, PNG, WebP or BMP")
        fh.seek(0)
        image = _decode(fh, fmt, min_side, fit, max_pixels)
        image.info["source_format"] = fmt
        return image


def reencode_image(source: str | Path | bytes, max_edge: int, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                   thumbnail: bool = False) -> tuple[bytes, str]:
    """Decode an image and encode its pixels anew, at most `max_edge` on a side; return (bytes, media type).

    Only pixels leave: never the file's own bytes (whatever else they hold). Thumbnails and JPEG
    sources become JPEG, other formats lossless PNG.
    """
    image = decode_image(source, fit=max_edge, max_pixels=max_pixels)
    fmt = "JPEG" if thumbnail or image.info.get("source_format") == "JPEG" else "PNG"
    image.thumbnail((max_edge, max_edge))
    buf = io.BytesIO()
    if fmt == "JPEG":
        image.save(buf, "JPEG", quality=85 if thumbnail else 92)
    else:
        image.save(buf, "PNG", compress_level=3)  # fast: these are served, not archived
    return buf.getvalue(), MEDIA_TYPES[fmt]


def _decode(fh: IO[bytes], fmt: str, min_side: int | None, fit: int | None, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Pillow's own (global, 89 MP) bomb warning: our explicit, smaller limit applies instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fh, formats=[fmt]) as im:
                scale = _draft_scale(im.size, min_side, fit)
                if im.format == "JPEG" and scale <= 0.5:
                    w, h = im.size
                    im.draft("RGB", (math.ceil(w * scale), math.ceil(h * scale)))
                # After draft, im.size is what load() will allocate; nothing is decoded yet.
                if im.size[0] * im.size[1] > max_pixels:
                    raise ImageTooLarge(im.size[0] * im.size[1], max_pixels, im.size)
                im.load()  # forces a full decode so truncated files fail here, not later
                return im.convert("RGB")
    except UnidentifiedImageError as exc:
        raise ValueError(f"not a valid {fmt} image (unreadable header)") from exc
    except Image.DecompressionBombError as exc:
        # Pillow's own hard limit (2x its global MAX_IMAGE_PIXELS) refused it in open(), before our check.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise ImageTooLarge(int(found.group(1)) if found else 0, max_pixels) from exc
    except (OSError, SyntaxError, EOFError) as exc:
        raise ValueError(f"corrupt or truncated image: {exc}") from exc
