"""The demo's ground truth and two simulated detectors (v7, v8), written as JSONL.

Ground truth comes from the renderer (see `edgemine.demo.objects`): one line per image, images
without objects included, `{"image_id", "detections": [{"label", "box": [x, y, w, h]}]}`.

The two "models" are a seeded simulation from that truth, not real detectors. Each object has a
detection margin (probit scale) that grows with its size and shrinks at dusk/night, in rain/fog
and with occlusion; the object's latent evidence is `margin - (0.8 * hardness + 0.6 * noise)`,
with a hardness shared by both models (hard objects are hard for every model) and per-model
noise. Evidence > 0 is a confident detection (score >= 0.3), -1.2 < evidence <= 0 a
low-confidence one (score < 0.3, it only counts for AP), below that nothing. Boxes are jittered
(centre and size, a few percent), and each image gets Poisson false positives with mostly low
scores. A street lamp over every zebra crossing makes night crosswalk frames nearly as easy as
day ones. v8 is better everywhere (higher base margin, tighter boxes, fewer false positives)
except for pedestrians at night on streets with a zebra crossing: v7 had been fine-tuned on
those (the mined edge case, fixed), v8's training mix lost them. That is the slice an aggregate
hides and the demo's `ped-crosswalk-night` scenario gate catches (README: the demo walkthrough
quotes the figures).
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgemine.demo.objects import SceneObject

TRUTH_FILE = "ground_truth.jsonl"
SCORE_AT_ZERO = 0.3  # the score of evidence 0: a scenario's min_score of 0.3 keeps the confident ones
_LOGIT_AT_ZERO = math.log(SCORE_AT_ZERO / (1 - SCORE_AT_ZERO))
_WEAKEST = -1.2  # below this evidence a model outputs nothing at all
_TIME = {"day": 0.0, "dusk": 0.25, "night": 0.7}
_LIT_NIGHT = 0.2
_WEATHER = {"clear": 0.0, "rain": 0.35, "fog": 0.45}


@dataclass(frozen=True)
class Frame:
    """One written image with the conditions it was drawn under and its annotated objects."""

    image_id: str
    size: tuple[int, int]
    time_of_day: str
    weather: str
    crosswalk: bool  # the street has a zebra crossing
    edge_case: str
    objects: tuple[SceneObject, ...]

    @property
    def night_crosswalk(self) -> bool:
        """A night frame on a street with a zebra crossing."""
        return self.time_of_day == "night" and self.crosswalk

    def count(self, label: str) -> int:
        """How many annotated objects of this label the frame has."""
        return sum(o.label == label for o in self.objects)


@dataclass(frozen=True)
class SimulatedModel:
    """How one simulated detector behaves (see the module docstring)."""

    name: str
    seed_tag: int
    base: float  # margin of a clear, day, unoccluded object of the reference size
    jitter: float  # box noise: sd of centre shift and log-size, relative to the box side
    false_positives: float  # Poisson mean per image
    night_crosswalk_pedestrian: float  # extra margin for pedestrians in night crosswalk frames


MODELS = (
    # v7 was fine-tuned on the night crossings mined earlier; v8's new training mix lost them
    SimulatedModel("v7", 7, base=0.9, jitter=0.05, false_positives=0.35,
                   night_crosswalk_pedestrian=0.8),
    SimulatedModel("v8", 8, base=2.0, jitter=0.04, false_positives=0.25,
                   night_crosswalk_pedestrian=-2.0),
)


def prediction_file(model: str) -> str:
    """The file name of a simulated model's predictions."""
    return f"predictions-{model}.jsonl"


def margin(model: SimulatedModel, frame: Frame, obj: SceneObject) -> float:
    """The probit-scale detection margin of one object for one model (higher: easier)."""
    _, _, w, h = obj.box
    size = math.sqrt(w * h) / frame.size[1]  # relative, so it does not depend on the image size
    m = model.base + min(1.0, max(-2.0, math.log2(size / 0.05)))
    # a street lamp hangs over every zebra crossing at night: those frames are lit, not dark
    m -= _LIT_NIGHT if frame.night_crosswalk else _TIME.get(frame.time_of_day, 0.0)
    m -= _WEATHER.get(frame.weather, 0.0)
    m -= 1.5 * (1.0 - obj.visible)
    if obj.label == "pedestrian":
        m -= 0.2  # thin and articulated: a little harder than cars
        if frame.night_crosswalk:
            m += model.night_crosswalk_pedestrian
    return m


def _rng(seed: int, tag: int, image_id: str) -> np.random.Generator:
    # crc32, not hash(): stable across processes, so the same seed writes the same files
    return np.random.default_rng([seed, tag, zlib.crc32(image_id.encode())])


def _clip_box(x: float, y: float, w: float, h: float, size: tuple[int, int]) -> list[float]:
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(size[0]), x + w), min(float(size[1]), y + h)
    x1, y1 = max(x1, min(x0 + 1.0, size[0])), max(y1, min(y0 + 1.0, size[1]))
    return [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]


def _score(evidence: float) -> float:
    return round(1.0 / (1.0 + math.exp(-(1.6 * evidence + _LOGIT_AT_ZERO))), 4)


def predict(model: SimulatedModel, frame: Frame, seed: int) -> list[dict[str, Any]]:
    """One simulated model's detections for one frame, best score first."""
    hardness = _rng(seed, 900, frame.image_id).standard_normal(len(frame.objects))
    rng = _rng(seed, 900 + model.seed_tag, frame.image_id)
    noise = rng.standard_normal(len(frame.objects))
    out: list[dict[str, Any]] = []
    for obj, hard, own in zip(frame.objects, hardness, noise, strict=True):
        evidence = margin(model, frame, obj) - (0.8 * float(hard) + 0.6 * float(own))
        dx, dy, dw, dh = rng.standard_normal(4) * model.jitter
        if evidence <= _WEAKEST:
            continue
        x, y, w, h = obj.box
        w2, h2 = w * math.exp(dw), h * math.exp(dh)
        cx, cy = x + w / 2 + dx * w, y + h / 2 + dy * h
        out.append({"label": obj.label, "box": _clip_box(cx - w2 / 2, cy - h2 / 2, w2, h2, frame.size),
                    "score": _score(evidence)})
    W, H = frame.size
    for _ in range(int(rng.poisson(model.false_positives))):
        label = "pedestrian" if rng.random() < 0.5 else "car"
        if label == "pedestrian":
            h = float(rng.uniform(0.08, 0.3)) * H
            w = 0.35 * h
        else:
            w = float(rng.uniform(0.08, 0.3)) * W
            h = 0.6 * w
        x, y = float(rng.uniform(0, W - w)), float(rng.uniform(0.35 * H, H - h))
        out.append({"label": label, "box": _clip_box(x, y, w, h, frame.size),
                    "score": round(float(rng.beta(1.2, 5.0)), 4)})
    return sorted(out, key=lambda d: -float(d["score"]))


def _jsonl(lines: Iterable[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line, separators=(", ", ": ")) + "\n" for line in lines).encode()


def truth_jsonl(frames: Iterable[Frame]) -> bytes:
    """The ground truth file's content: one line per frame, objectless frames included."""
    return _jsonl({"image_id": f.image_id,
                   "detections": [{"label": o.label, "box": list(o.box)} for o in f.objects]}
                  for f in frames)


def predictions_jsonl(model: SimulatedModel, frames: Iterable[Frame], seed: int) -> bytes:
    """A simulated model's predictions file: one line per frame, with a score per detection."""
    return _jsonl({"image_id": f.image_id, "detections": predict(model, f, seed)} for f in frames)
