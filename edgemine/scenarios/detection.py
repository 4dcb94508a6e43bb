"""Detection scoring as COCO does it: IoU, greedy matching per image and class, AP50 (101-point).

Matching (as pycocotools' COCOeval.evaluateImg): per image and class, predictions sorted by score
(highest first, stable), each is matched to the still-unmatched ground-truth box of highest IoU,
if that IoU is >= the threshold (ties go to the later box, as in COCOeval); an unmatched prediction
is a false positive, an unmatched box a false negative. No crowd boxes, no area ranges.

AP50 (as COCOeval's AP at IoU 0.5, area "all", maxDets 100): per class, every image's top-100
predictions are pooled, sorted by score, and precision is read at the 101 recall points 0, 0.01,
..., 1 from the precision envelope; the class AP is their mean, AP50 the mean over the classes
with at least one ground-truth box. A prediction without a score counts as score 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgemine.scenarios.records import Box, Detection

MAX_DETS = 100  # COCO's maxDets for AP: top predictions per image and class
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
AP_IOU = 0.5


def score_of(detection: Detection) -> float:
    """Return a prediction's score (1.0 when it has none: a prediction without a confidence is firm)."""
    return 1.0 if detection.score is None else detection.score


def iou_matrix(dts: Sequence[Box], gts: Sequence[Box]) -> np.ndarray:
    """Return the (predictions x ground truth) IoU matrix of COCO [x, y, w, h] boxes."""
    if not dts or not gts:
        return np.zeros((len(dts), len(gts)))
    d = np.asarray(dts, dtype=np.float64)[:, None, :]
    g = np.asarray(gts, dtype=np.float64)[None, :, :]
    iw = np.minimum(d[..., 0] + d[..., 2], g[..., 0] + g[..., 2]) - np.maximum(d[..., 0], g[..., 0])
    ih = np.minimum(d[..., 1] + d[..., 3], g[..., 1] + g[..., 3]) - np.maximum(d[..., 1], g[..., 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = d[..., 2] * d[..., 3] + g[..., 2] * g[..., 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def sort_by_score(dts: Sequence[Detection]) -> list[Detection]:
    """Return predictions highest score first, keeping file order among equal scores (COCO's mergesort)."""
    order = np.argsort([-score_of(d) for d in dts], kind="mergesort")
    return [dts[int(i)] for i in order]


def greedy_match(dts: Sequence[Detection], gts: Sequence[Box], iou: float) -> list[bool]:
    """Return, for predictions already sorted by score, whether each matches a ground-truth box (a TP)."""
    ious = iou_matrix([d.box for d in dts], gts)
    taken = [False] * len(gts)
    threshold = min(iou, 1 - 1e-10)  # COCOeval's cap: an IoU threshold of 1 still matches identical boxes
    hits: list[bool] = []
    for row in ious:
        best, best_iou = -1, threshold
        for g, value in enumerate(row):
            if taken[g] or value < best_iou:
                continue
            best, best_iou = g, value
        if best >= 0:
            taken[best] = True
        hits.append(best >= 0)
    return hits


def by_label(detections: Sequence[Detection], label: str) -> list[Detection]:
    """Return the detections of one class."""
    return [d for d in detections if d.label == label]


@dataclass(frozen=True)
class ClassAP:
    """One class's pooled predictions (score order) for AP: which image each came from and whether it is a TP."""

    label: str
    det_image: np.ndarray    # int, index into the scored images
    det_tp: np.ndarray       # float 0/1
    gt_per_image: np.ndarray  # float, ground-truth boxes of this class per image


def ap_data(truth: Sequence[Sequence[Detection]], preds: Sequence[Sequence[Detection]],
            classes: Sequence[str]) -> list[ClassAP]:
    """Match every image's top-100 predictions per class at IoU 0.5 and pool them per class for AP."""
    out: list[ClassAP] = []
    for label in classes:
        scores: list[float] = []
        images: list[int] = []
        tps: list[float] = []
        gt_counts = np.zeros(len(truth))
        for i, (gt, pr) in enumerate(zip(truth, preds, strict=True)):
            boxes = [d.box for d in by_label(gt, label)]
            gt_counts[i] = len(boxes)
            dts = sort_by_score(by_label(pr, label))[:MAX_DETS]
            hits = greedy_match(dts, boxes, AP_IOU)
            scores += [score_of(d) for d in dts]
            images += [i] * len(dts)
            tps += [float(h) for h in hits]
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
        out.append(ClassAP(label, np.asarray(images, dtype=np.int64)[order], np.asarray(tps)[order], gt_counts))
    return out


def _class_ap(tp_cum: np.ndarray, fp_cum: np.ndarray, n_gt: float) -> float:
    """Return COCO's 101-point interpolated AP from cumulative TP/FP counts (weighted) in score order."""
    if tp_cum.size == 0:
        return 0.0
    recall = tp_cum / n_gt
    precision = tp_cum / (tp_cum + fp_cum + np.spacing(1))
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    points = np.where(idx < envelope.size, envelope[np.minimum(idx, envelope.size - 1)], 0.0)
    return float(points.mean())


def ap50(data: Sequence[ClassAP], weights: np.ndarray) -> np.ndarray:
    """Return AP50 for each row of a (resamples x images) weights matrix (NaN where no class has ground truth).

    A weight w on an image stands for w copies of it: its predictions and boxes count w times.
    """
    rows = weights.shape[0]
    total = np.zeros(rows)
    counted = np.zeros(rows)
    for cls in data:
        n_gt = weights @ cls.gt_per_image
        det_w = weights[:, cls.det_image]
        tp_cum = np.cumsum(det_w * cls.det_tp, axis=1)
        fp_cum = np.cumsum(det_w * (1 - cls.det_tp), axis=1)
        for r in range(rows):
            if n_gt[r] > 0:
                total[r] += _class_ap(tp_cum[r], fp_cum[r], float(n_gt[r]))
                counted[r] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counted > 0, total / np.where(counted > 0, counted, 1), np.nan)
