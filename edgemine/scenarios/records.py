"""Per-image ground truth and predictions, as parsed from files and stored in the state database.

Boxes are COCO's: `[x, y, w, h]` in pixels of the original image, (x, y) the top-left corner,
w > 0 and h > 0. A record is either a classification (one label, plus a score for a prediction)
or a list of detections (possibly empty: "nothing to detect here" / "detected nothing").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Box = tuple[float, float, float, float]
Task = Literal["classification", "detection"]


@dataclass(frozen=True)
class Detection:
    """One object: its label, its box and, for a prediction, its confidence score."""

    label: str
    box: Box
    score: float | None = None


@dataclass(frozen=True)
class ImageRecord:
    """Ground truth or one model's prediction for one image."""

    image_id: str
    task: Task
    label: str | None = None          # classification: the (predicted) label
    score: float | None = None        # classification prediction: its confidence
    detections: tuple[Detection, ...] = ()  # detection: the objects (empty = none)


Records = dict[str, ImageRecord]
