"""Metrics on a set of images: per-image counts, per-image outcomes for paired tests, value and 95% interval.

Scored images are the given ids that have ground truth; an image without a prediction record
counts as "predicted nothing". The metric's classes C are `metric.classes`, or every label in the
ground truth of the scored images. Predictions below `metric.min_score` are dropped (AP50 uses all).

Per image, pooled over C: classification counts tp (truth in C, predicted it), fn (truth in C,
predicted something else or nothing), fp (predicted a label in C that is not the truth);
detection counts matched predictions (tp), unmatched predictions (fp) and unmatched boxes (fn).
precision = tp / (tp + fp), recall = tp / (tp + fn), f1 = 2tp / (2tp + fp + fn) (micro, over C;
per-class figures are in `Measurement.detail`). accuracy: classification = recall (on the images
whose truth is in C; all images when `classes` is unset); detection = the share of images whose
outcome below holds. ap50: detection only (see detection.py).

Per-image outcome (McNemar pairs, flips): accuracy / recall: every ground-truth object of C found
(classification: correct; vacuously true for an image with no object of C); precision: no false
positive of C on the image; f1 / ap50 / detection accuracy: both.

Intervals: Wilson where the proportion is over independent images (classification accuracy,
precision, recall; detection accuracy); otherwise (f1, ap50, and detection precision/recall, whose
objects cluster within images) a seeded percentile bootstrap over images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edgemine.scenarios import detection as det
from edgemine.scenarios.errors import NotEvaluable
from edgemine.scenarios.records import ImageRecord, Records, Task
from edgemine.scenarios.results import Measurement
from edgemine.scenarios.spec import MetricSpec
from edgemine.scenarios.stats import RESAMPLES, Statistic, bootstrap_interval, wilson


@dataclass(frozen=True)
class PerImage:
    """Per-image counts over the metric's classes, aligned with `ids` (the scored images)."""

    ids: list[str]
    task: Task
    classes: list[str]
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    per_class: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    ap: list[det.ClassAP] = field(default_factory=list)


def scored_ids(truth: Records, ids: Sequence[str]) -> list[str]:
    """Return the ids that have ground truth, in the given order, without duplicates."""
    return list(dict.fromkeys(i for i in ids if i in truth))


def task_of(truth: Records, ids: Sequence[str]) -> Task:
    """Return the one task of these images' ground truth (NotEvaluable if they mix both)."""
    tasks = {truth[i].task for i in ids}
    if len(tasks) > 1:
        raise NotEvaluable("the ground truth mixes classification and detection records; "
                           "score them in separate scenarios")
    return next(iter(tasks), "classification")


def _classes(metric: MetricSpec, truth: Records, ids: Sequence[str], task: Task) -> list[str]:
    if metric.classes is not None:
        return list(metric.classes)
    if task == "classification":
        return sorted({label for i in ids if (label := truth[i].label) is not None})
    return sorted({d.label for i in ids for d in truth[i].detections})


def _prediction(preds: Records, image_id: str, task: Task) -> ImageRecord | None:
    rec = preds.get(image_id)
    if rec is not None and rec.task != task:
        raise NotEvaluable(f"image {image_id!r}: the prediction is a {rec.task} record but the ground truth "
                           f"is {task}")
    return rec


def per_image(metric: MetricSpec, truth: Records, preds: Records, ids: Sequence[str]) -> PerImage:
    """Return per-image tp/fp/fn over the metric's classes for the scored images among `ids`."""
    scored = scored_ids(truth, ids)
    task = task_of(truth, scored)
    classes = _classes(metric, truth, scored, task)
    n = len(scored)
    counts = {c: (np.zeros(n), np.zeros(n), np.zeros(n)) for c in classes}
    for i, image_id in enumerate(scored):
        gt, pr = truth[image_id], _prediction(preds, image_id, task)
        if task == "classification":
            label = pr.label if pr is not None and (pr.score is None or pr.score >= metric.min_score) else None
            if gt.label in counts:
                counts[gt.label][0 if label == gt.label else 2][i] += 1
            if label in counts and label != gt.label:
                counts[label][1][i] += 1
            continue
        kept = [d for d in (pr.detections if pr else ()) if det.score_of(d) >= metric.min_score]
        for label, (tp, fp, fn) in counts.items():
            boxes = [d.box for d in det.by_label(gt.detections, label)]
            hits = det.greedy_match(det.sort_by_score(det.by_label(kept, label)), boxes, metric.iou)
            tp[i], fp[i], fn[i] = sum(hits), len(hits) - sum(hits), len(boxes) - sum(hits)
    zero = np.zeros(n)
    tp, fp, fn = (sum((c[k] for c in counts.values()), zero) for k in range(3))
    ap: list[det.ClassAP] = []
    if metric.name == "ap50":
        if task != "detection":
            raise NotEvaluable("ap50 needs detection ground truth (boxes); use accuracy or f1 for classification")
        ap = det.ap_data([truth[i].detections for i in scored],
                         [p.detections if (p := preds.get(i)) else () for i in scored], classes)
    return PerImage(scored, task, classes, tp, fp, fn, counts, ap)


def outcome_array(metric: MetricSpec, data: PerImage) -> np.ndarray:
    """Return the per-image outcome (True = right) of `metric` from per-image counts (see the module doc)."""
    found: np.ndarray = data.fn == 0
    clean: np.ndarray = data.fp == 0
    if metric.name == "precision":
        return clean
    if metric.name == "recall" or (metric.name == "accuracy" and data.task == "classification"):
        return found
    both: np.ndarray = found & clean
    return both


def outcomes(metric: MetricSpec, truth: Records, preds: Records, ids: Sequence[str]) -> np.ndarray:
    """Return one bool per scored image (aligned with `scored_ids(truth, ids)`): right under this metric."""
    return outcome_array(metric, per_image(metric, truth, preds, ids))


def _ratio(num: np.ndarray, den: np.ndarray) -> Statistic:
    def statistic(weights: np.ndarray) -> np.ndarray:
        top, bottom = weights @ num, weights @ den
        with np.errstate(invalid="ignore", divide="ignore"):
            out: np.ndarray = np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1), np.nan)
        return out
    return statistic


def statistic(metric: MetricSpec, data: PerImage) -> Statistic:
    """Return the metric as a function of a (resamples x images) weights matrix, for the bootstrap."""
    if metric.name == "ap50":
        return lambda weights: det.ap50(data.ap, weights)  # type: ignore[no-any-return]
    if metric.name == "precision":
        return _ratio(data.tp, data.tp + data.fp)
    if metric.name == "f1":
        return _ratio(2 * data.tp, 2 * data.tp + data.fp + data.fn)
    if metric.name == "accuracy" and data.task == "detection":
        return _ratio(outcome_array(metric, data).astype(np.float64), np.ones(len(data.ids)))
    return _ratio(data.tp, data.tp + data.fn)


def _wilson_counts(metric: MetricSpec, data: PerImage) -> tuple[int, int] | None:
    """Return (successes, trials) when the metric is a proportion over independent images, else None."""
    if metric.name == "accuracy" and data.task == "detection":
        return int(outcome_array(metric, data).sum()), len(data.ids)
    if data.task != "classification" or metric.name in ("f1", "ap50"):
        return None
    tp = int(data.tp.sum())
    other = data.fp if metric.name == "precision" else data.fn
    return tp, tp + int(other.sum())


def _detail(data: PerImage) -> dict[str, float]:
    detail = {"tp": float(data.tp.sum()), "fp": float(data.fp.sum()), "fn": float(data.fn.sum())}
    for label, (tp, fp, fn) in data.per_class.items():
        t, f, m = float(tp.sum()), float(fp.sum()), float(fn.sum())
        if t + f > 0:
            detail[f"precision:{label}"] = t / (t + f)
        if t + m > 0:
            detail[f"recall:{label}"] = t / (t + m)
        if t + f + m > 0:
            detail[f"f1:{label}"] = 2 * t / (2 * t + f + m)
    return detail


def measure_data(metric: MetricSpec, data: PerImage, *, seed: int = 0, resamples: int = RESAMPLES) -> Measurement:
    """Return the metric's value and 95% interval from per-image counts (see `measure`)."""
    n = len(data.ids)
    detail = _detail(data)
    counts = _wilson_counts(metric, data)
    if counts is not None:
        k, trials = counts
        detail["trials"] = float(trials)
        if trials == 0:
            return Measurement(metric.name, None, None, None, n, "wilson", detail)
        low, high = wilson(k, trials)
        return Measurement(metric.name, k / trials, low, high, n, "wilson", detail)
    if n == 0:
        return Measurement(metric.name, None, None, None, 0, "bootstrap", detail)
    stat = statistic(metric, data)
    value = float(stat(np.ones((1, n)))[0])
    if np.isnan(value):
        return Measurement(metric.name, None, None, None, n, "bootstrap", detail)
    interval = bootstrap_interval(stat, n, resamples=resamples, seed=seed)
    return Measurement(metric.name, value, interval[0] if interval else None, interval[1] if interval else None, n,
                       "bootstrap", detail)


def measure(metric: MetricSpec, truth: Records, preds: Records, ids: Sequence[str], *, seed: int = 0) -> Measurement:
    """Return the metric on the scored images among `ids` with its 95% interval (Wilson or seeded bootstrap)."""
    return measure_data(metric, per_image(metric, truth, preds, ids), seed=seed)
