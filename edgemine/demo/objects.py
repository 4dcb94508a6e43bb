"""Where the renderer drew each object: an object-id map beside the frame, turned into COCO boxes.

Every pedestrian and car is drawn through a `Pen`, which paints the frame exactly as before and,
in one flat ink, an object-id map (one byte per supersampled pixel: 0 = no object, k = object k).
Nearer objects are drawn later, so they overwrite farther ones in the map as they do in the frame;
roadside lamps and trees are drawn with ink 0, so they hide what they cover. A box is the bounding
box of an object's pixels still visible in the map (the *visible* extent, as COCO annotates), in
pixels of the written image. An object with fewer than `MIN_VISIBLE_PIXELS` visible pixels, or a
visible box narrower than `MIN_SIDE` pixels, is not annotated (far away, or hidden behind a nearer
object): no annotator could box it either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw

Label = Literal["pedestrian", "car"]
Ink = int | tuple[int, ...]
Points = Sequence[tuple[float, float]] | Sequence[float]
MIN_VISIBLE_PIXELS = 8.0  # in pixels of the written image
MIN_SIDE = 2.0  # the visible box's width and height, in pixels of the written image


@dataclass(frozen=True)
class SceneObject:
    """One annotated object in a written frame."""

    label: Label
    box: tuple[float, float, float, float]  # COCO [x, y, w, h], pixels of the written image
    visible: float  # share of the object's own pixels not hidden by nearer things, 0..1
    on_zebra: bool  # a pedestrian walking on the zebra crossing


class Pen:
    """Draws on the frame and, in one flat ink, on the object-id map and the object's own mask."""

    def __init__(self, frame: ImageDraw.ImageDraw, ids: ImageDraw.ImageDraw, ink: int,
                 own: ImageDraw.ImageDraw | None = None) -> None:
        self._targets = [(frame, None), (ids, ink)] + ([(own, 255)] if own is not None else [])

    def line(self, xy: Points, fill: Ink, width: int = 1) -> None:
        """A line, as ImageDraw.line."""
        for draw, ink in self._targets:
            draw.line(xy, fill=fill if ink is None else ink, width=width)

    def ellipse(self, xy: Sequence[float], fill: Ink) -> None:
        """A filled ellipse, as ImageDraw.ellipse."""
        for draw, ink in self._targets:
            draw.ellipse(xy, fill=fill if ink is None else ink)

    def rectangle(self, xy: Sequence[float], fill: Ink) -> None:
        """A filled rectangle, as ImageDraw.rectangle."""
        for draw, ink in self._targets:
            draw.rectangle(xy, fill=fill if ink is None else ink)

    def polygon(self, xy: Points, fill: Ink) -> None:
        """A filled polygon, as ImageDraw.polygon."""
        for draw, ink in self._targets:
            draw.polygon(xy, fill=fill if ink is None else ink)


class ObjectMap:
    """The object-id map of one frame at drawing (supersampled) resolution."""

    def __init__(self, size: tuple[int, int]) -> None:
        self._ids = Image.new("L", size)
        self._draw = ImageDraw.Draw(self._ids)
        self._objects: list[tuple[Label, bool, Image.Image]] = []

    def pen(self, frame: ImageDraw.ImageDraw, label: Label, on_zebra: bool = False) -> Pen:
        """A pen for a new object: what it draws is that object."""
        if len(self._objects) >= 254:
            raise ValueError("too many objects in one frame for a one-byte id map")
        own = Image.new("L", self._ids.size)
        self._objects.append((label, on_zebra, own))
        return Pen(frame, self._draw, len(self._objects), ImageDraw.Draw(own))

    def occluder(self, frame: ImageDraw.ImageDraw) -> Pen:
        """A pen for scenery that hides objects behind it but is not annotated itself."""
        return Pen(frame, self._draw, 0)

    def hide(self, mask: Image.Image, at: tuple[int, int]) -> None:
        """Mark the pixels under `mask` (pasted at `at`) as showing no object (e.g. a puddle)."""
        self._ids.paste(0, (*at, at[0] + mask.width, at[1] + mask.height), mask.point(
            lambda v: 255 if v else 0))

    def objects(self, scale: int, out_size: tuple[int, int], mirror: bool) -> list[SceneObject]:
        """The visible objects as boxes in the written image (downscaled by `scale`, maybe mirrored)."""
        ids = np.asarray(self._ids)
        counts = np.bincount(ids.ravel(), minlength=len(self._objects) + 1)
        area = float(scale * scale)
        found = []
        for k, (label, on_zebra, own) in enumerate(self._objects, start=1):
            if counts[k] / area < MIN_VISIBLE_PIXELS:
                continue
            rows = np.flatnonzero((ids == k).any(axis=1))
            cols = np.flatnonzero((ids == k).any(axis=0))
            x, y = cols[0] / scale, rows[0] / scale
            w, h = (cols[-1] + 1) / scale - x, (rows[-1] + 1) / scale - y
            if w < MIN_SIDE or h < MIN_SIDE:
                continue
            if mirror:  # the rear camera's frame is flipped left-right after drawing
                x = out_size[0] - x - w
            full = int(np.count_nonzero(np.asarray(own)))
            found.append(SceneObject(label, (float(x), float(y), float(w), float(h)),
                                     round(float(counts[k]) / max(full, 1), 3), on_zebra))
        return found
