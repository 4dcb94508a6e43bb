"""Detection matching and AP50: COCO's rules, cross-checked against pycocotools' COCOeval."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from edgemine.scenarios.detection import ap50, ap_data, greedy_match, iou_matrix, sort_by_score
from edgemine.scenarios.metrics import measure, outcomes, per_image
from edgemine.scenarios.records import Detection, ImageRecord
from edgemine.scenarios.spec import MetricSpec

LABELS = ["car", "pedestrian", "bike"]


def _random_dataset(seed: int, images: int = 30) -> tuple[list[list[Detection]], list[list[Detection]]]:
    """Random boxes in several classes; some images without ground truth, some without predictions."""
    rng = np.random.default_rng(seed)
    truth: list[list[Detection]] = []
    preds: list[list[Detection]] = []
    for i in range(images):
        gts = [] if i % 7 == 3 else [
            Detection(str(rng.choice(LABELS[:2] if seed % 2 else LABELS)),
                      (float(rng.uniform(0, 80)), float(rng.uniform(0, 80)), float(rng.uniform(5, 40)),
                       float(rng.uniform(5, 40)))) for _ in range(int(rng.integers(0, 5)))]
        dts: list[Detection] = []
        if i % 5 != 2:
            for g in gts:  # near-misses and hits of the truth boxes
                if rng.random() < 0.8:
                    x, y, w, h = g.box
                    jitter = rng.normal(0, 0.15 * min(w, h), 4)
                    label = g.label if rng.random() < 0.85 else str(rng.choice(LABELS))
                    dts.append(Detection(label, (x + jitter[0], y + jitter[1], max(1.0, w + jitter[2]),
                                                 max(1.0, h + jitter[3])), float(rng.random())))
            for _ in range(int(rng.integers(0, 4))):  # pure false positives, any class
                dts.append(Detection(str(rng.choice(LABELS)), (float(rng.uniform(0, 90)), float(rng.uniform(0, 90)),
                                                               float(rng.uniform(3, 30)), float(rng.uniform(3, 30))),
                                     float(rng.random())))
        truth.append(gts)
        preds.append(dts)
    return truth, preds


def _coco_ap50(truth: list[list[Detection]], preds: list[list[Detection]]) -> float:
    cats = [{"id": k + 1, "name": name} for k, name in enumerate(LABELS)]
    cat_id = {c["name"]: c["id"] for c in cats}
    anns = [{"id": n + 1, "image_id": i + 1, "category_id": cat_id[d.label], "bbox": list(d.box),
             "area": d.box[2] * d.box[3], "iscrowd": 0}
            for n, (i, d) in enumerate((i, d) for i, gts in enumerate(truth) for d in gts)]
    results = [{"image_id": i + 1, "category_id": cat_id[d.label], "bbox": list(d.box), "score": d.score}
               for i, dts in enumerate(preds) for d in dts]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": [{"id": i + 1} for i in range(len(truth))], "annotations": anns, "categories": cats}
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[1])  # AP at IoU 0.5, area all, maxDets 100


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_ap50_equals_pycocotools_on_random_multiclass_data(seed: int) -> None:
    truth, preds = _random_dataset(seed)
    assert any(not g for g in truth) and any(not p for p in preds)
    ids = [f"im{i:03d}" for i in range(len(truth))]
    truth_records = {ids[i]: ImageRecord(ids[i], "detection", detections=tuple(truth[i])) for i in range(len(ids))}
    pred_records = {ids[i]: ImageRecord(ids[i], "detection", detections=tuple(preds[i]))
                    for i in range(len(ids)) if preds[i] or i % 2}  # some images have no prediction record at all
    ours = measure(MetricSpec(name="ap50"), truth_records, pred_records, ids)
    assert ours.value == pytest.approx(_coco_ap50(truth, preds), abs=1e-12)
    assert ours.method == "bootstrap" and ours.low is not None and ours.high is not None
    assert ours.low <= ours.value <= ours.high


def test_ap50_of_a_class_subset_equals_pycocotools_restricted_to_that_class() -> None:
    truth, preds = _random_dataset(5)
    only = [[d for d in g if d.label == "pedestrian"] for g in truth]
    only_preds = [[d for d in p if d.label == "pedestrian"] for p in preds]
    classes = ["pedestrian"]
    data = ap_data(truth, preds, classes)
    assert float(ap50(data, np.ones((1, len(truth))))[0]) == pytest.approx(_coco_ap50(only, only_preds), abs=1e-12)


def test_ap50_weights_count_an_image_as_that_many_copies() -> None:
    truth, preds = _random_dataset(6, images=12)
    weights = np.array([2, 0, 1, 3, 1, 0, 1, 1, 2, 1, 0, 1])
    copies_t = [g for i, g in enumerate(truth) for _ in range(weights[i])]
    copies_p = [p for i, p in enumerate(preds) for _ in range(weights[i])]
    weighted = float(ap50(ap_data(truth, preds, LABELS), weights[None, :].astype(float))[0])
    assert weighted == pytest.approx(_coco_ap50(copies_t, copies_p), abs=0.02)  # ties among copies may reorder


def test_greedy_match_takes_the_highest_iou_unmatched_box_in_score_order() -> None:
    gts = [(0.0, 0.0, 10.0, 10.0), (1.0, 0.0, 10.0, 10.0)]
    dts = sort_by_score([Detection("car", (0.9, 0.0, 10.0, 10.0), 0.5), Detection("car", (0.0, 0.0, 10.0, 10.0), 0.9)])
    # The 0.9 prediction takes box 0 (IoU 1); the 0.5 one then takes box 1, the best one left.
    assert greedy_match(dts, gts, 0.5) == [True, True]
    assert greedy_match(dts[:1], gts[1:], 0.95) == [False]  # IoU 9/11 < 0.95


def test_greedy_match_leaves_duplicates_and_low_iou_unmatched() -> None:
    gts = [(0.0, 0.0, 10.0, 10.0)]
    dts = [Detection("car", (0.0, 0.0, 10.0, 10.0), 0.9), Detection("car", (0.0, 0.0, 10.0, 10.0), 0.8),
           Detection("car", (20.0, 20.0, 5.0, 5.0), 0.7)]
    assert greedy_match(dts, gts, 0.5) == [True, False, False]
    assert greedy_match([], gts, 0.5) == []
    assert greedy_match(dts, [], 0.5) == [False, False, False]


def test_iou_threshold_is_inclusive_and_iou_is_cocos() -> None:
    # Two 10x10 boxes offset by 5: intersection 50, union 150, IoU exactly 1/3.
    assert iou_matrix([(0.0, 0.0, 10.0, 10.0)], [(5.0, 0.0, 10.0, 10.0)])[0, 0] == pytest.approx(1 / 3)
    box = (0.0, 0.0, 10.0, 10.0)
    half = (0.0, 0.0, 10.0, 5.0)  # IoU 0.5 exactly
    assert greedy_match([Detection("car", half, 1.0)], [box], 0.5) == [True]
    assert greedy_match([Detection("car", box, 1.0)], [box], 1.0) == [True]


def test_detection_outcomes_count_misses_and_false_positives_per_metric() -> None:
    box = (0.0, 0.0, 10.0, 10.0)
    far = (50.0, 50.0, 10.0, 10.0)
    truth = {"found": ImageRecord("found", "detection", detections=(Detection("ped", box),)),
             "missed": ImageRecord("missed", "detection", detections=(Detection("ped", box),)),
             "extra": ImageRecord("extra", "detection", detections=(Detection("ped", box),)),
             "empty": ImageRecord("empty", "detection"),
             "lowscore": ImageRecord("lowscore", "detection", detections=(Detection("ped", box),))}
    preds = {"found": ImageRecord("found", "detection", detections=(Detection("ped", box, 0.9),
                                                                      Detection("car", far, 0.9))),
             "extra": ImageRecord("extra", "detection", detections=(Detection("ped", box, 0.9),
                                                                      Detection("ped", far, 0.9))),
             "empty": ImageRecord("empty", "detection", detections=(Detection("ped", far, 0.9),)),
             "lowscore": ImageRecord("lowscore", "detection", detections=(Detection("ped", box, 0.2),))}
    ids = ["found", "missed", "extra", "empty", "lowscore", "no-truth"]
    metric = MetricSpec(name="recall", classes=["ped"], min_score=0.3)
    assert outcomes(metric, truth, preds, ids).tolist() == [True, False, True, True, False]
    precision = metric.model_copy(update={"name": "precision"})
    assert outcomes(precision, truth, preds, ids).tolist() == [True, True, False, False, True]
    f1 = metric.model_copy(update={"name": "f1"})
    assert outcomes(f1, truth, preds, ids).tolist() == [True, False, False, False, False]
    data = per_image(metric, truth, preds, ids)
    assert (data.tp.sum(), data.fp.sum(), data.fn.sum()) == (2, 2, 2)
    recall = measure(metric, truth, preds, ids)
    assert recall.value == pytest.approx(0.5) and recall.n == 5 and recall.method == "bootstrap"


def test_bootstrap_intervals_are_deterministic_for_a_seed() -> None:
    truth, preds = _random_dataset(7, images=40)
    ids = [f"im{i:03d}" for i in range(len(truth))]
    truth_records = {ids[i]: ImageRecord(ids[i], "detection", detections=tuple(truth[i])) for i in range(len(ids))}
    pred_records = {ids[i]: ImageRecord(ids[i], "detection", detections=tuple(preds[i])) for i in range(len(ids))}
    for name in ("ap50", "f1", "recall"):
        metric = MetricSpec(name=name)  # type: ignore[arg-type]
        first = measure(metric, truth_records, pred_records, ids, seed=11)
        assert first == measure(metric, truth_records, pred_records, ids, seed=11)
        other = measure(metric, truth_records, pred_records, ids, seed=12)
        assert other.value == first.value and (other.low, other.high) != (first.low, first.high)
