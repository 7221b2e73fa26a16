"""Mean average precision: hand-worked AP, VOC rules against a devkit-style loop, COCO against pycocotools.

NumPy and pycocotools only (no backend ops): not marked ``core``, the JAX re-run would repeat them as is.
"""

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tlutils.evaluation import (
    COCO_STATS,
    MAP_METHOD,
    SIZE_BUCKETS,
    class_scores,
    coco_map,
    map_by_size,
    mean_average_precision,
)

A = [0.0, 0.0, 0.5, 0.5]
B = [0.5, 0.5, 1.0, 1.0]
FAR = [0.6, 0.6, 0.9, 0.9]


def image(boxes, labels, scores=None, difficult=None):
    item = {"boxes": np.reshape(np.asarray(boxes, np.float64), (-1, 4)), "labels": np.asarray(labels, np.int64)}
    if scores is not None:
        item["scores"] = np.asarray(scores, np.float64)
    if difficult is not None:
        item["difficult"] = np.asarray(difficult, bool)
    return item


def hand_case(difficult=False):
    """2 ground truths (A in image 0, B in image 1) and 3 detections: hit A (0.9), miss (0.8), hit B (0.7)."""
    truths = [image([A], [1]), image([B], [1])]
    found = [image([A, FAR], [1, 1], [0.9, 0.8]), image([B], [1], [0.7])]
    return found, truths


# Hand-worked: precision/recall after each detection = (1, 1/2), (1/2, 1/2), (2/3, 1).
HAND_AP = {
    "voc07": (6 * 1.0 + 5 * 2 / 3) / 11,  # recall points 0..0.5 see precision 1, 0.6..1 see 2/3
    "all_points": 0.5 * 1.0 + 0.5 * 2 / 3,  # envelope 1 up to recall 0.5, then 2/3
    "coco101": (51 * 1.0 + 50 * 2 / 3) / 101,  # recall points 0, 0.01, ..., 0.5 -> 1; 0.51 .. 1 -> 2/3
}


@pytest.mark.parametrize("method", ["voc07", "all_points", "coco101"])
def test_hand_worked_average_precision(method):
    result = mean_average_precision(*hand_case(), method=method)
    assert result["per_class"] == {1: pytest.approx(HAND_AP[method], abs=1e-12)}
    assert result["map"] == pytest.approx(HAND_AP[method], abs=1e-12)


def test_hand_worked_coco101_is_what_pycocotools_reports():
    assert coco_map(*hand_case())["per_iou"][0.5] == pytest.approx(HAND_AP["coco101"], abs=1e-12)


@pytest.mark.parametrize("method", ["voc07", "all_points", "coco101"])
def test_difficult_ground_truth_is_neither_positive_nor_false_positive(method):
    # Image 0: A real, B difficult. Detections: on B (0.9, ignored), apart (0.8, FP), on A (0.7, TP).
    apart = [0.6, 0.0, 0.9, 0.3]
    truths = [image([A, B], [1, 1], difficult=[False, True])]
    found = [image([B, apart, A], [1, 1, 1], [0.9, 0.8, 0.7])]
    # remaining detections: FP then TP of 1 positive -> precision 1/2 at recall 1, 0 before: AP 1/2
    assert mean_average_precision(found, truths, method=method)["per_class"] == {1: pytest.approx(0.5)}
    # without the flag B counts: TP (1, 1/2), FP, TP (2/3, 1): the hand-worked case again
    truths[0].pop("difficult")
    assert mean_average_precision(found, truths, method=method)["map"] == pytest.approx(HAND_AP[method])


def test_coco_difficult_follows_crowd_rules():
    # pycocotools ignores boxes only as crowds: overlap = intersection / detection area, any number
    # of detections may match. FAR lies inside the difficult B, so it is ignored too (VOC: a FP).
    truths = [image([A, B], [1, 1], difficult=[False, True])]
    found = [image([B, FAR, A], [1, 1, 1], [0.9, 0.8, 0.7])]
    assert mean_average_precision(found, truths, method="coco101")["map"] == pytest.approx(1.0)
    assert coco_map(found, truths)["per_iou"][0.5] == pytest.approx(1.0)
    assert mean_average_precision(found, truths, method="all_points")["map"] == pytest.approx(0.5)


def test_second_detection_of_a_ground_truth_is_a_false_positive():
    truths = [image([A], [1])]
    found = [image([A, A], [1, 1], [0.9, 0.8])]
    # TP then FP: precision 1 at recall 1 -> AP 1 in every method; the duplicate only lowers precision after
    for method in ("voc07", "all_points", "coco101"):
        assert mean_average_precision(found, truths, method=method)["map"] == pytest.approx(1.0)
    found = [image([A, A], [1, 1], [0.8, 0.9])]  # order by score, not by position
    assert mean_average_precision(found, truths, method="all_points")["map"] == pytest.approx(1.0)


def test_iou_exactly_at_threshold():
    # IoU of [0, 0, 0.5, 0.25] with A is 0.125 / 0.25 = 0.5 exactly: VOC needs more, COCO takes it.
    truths = [image([A], [1])]
    found = [image([[0.0, 0.0, 0.5, 0.25]], [1], [0.9])]
    assert mean_average_precision(found, truths, method="all_points")["map"] == 0.0
    assert mean_average_precision(found, truths, method="voc07")["map"] == 0.0
    assert mean_average_precision(found, truths, method="coco101")["map"] == pytest.approx(1.0)
    assert coco_map(found, truths)["per_iou"][0.5] == pytest.approx(1.0)


def test_no_detections_and_classes_without_ground_truth():
    truths = [image([A, B], [1, 2]), image(np.zeros((0, 4)), [])]
    found = [image(np.zeros((0, 4)), [], []), image([FAR], [3], [0.9])]  # class 3 has no ground truth
    for method in ("voc07", "all_points", "coco101"):
        assert mean_average_precision(found, truths, method=method) == {"map": 0.0, "per_class": {1: 0.0, 2: 0.0}}
    assert coco_map(found, truths)["map"] == 0.0
    assert coco_map([image(np.zeros((0, 4)), [], [])] * 2, truths)["per_class"] == {1: 0.0, 2: 0.0}
    empty = mean_average_precision([image(np.zeros((0, 4)), [], [])], [image(np.zeros((0, 4)), [])])
    assert np.isnan(empty["map"]) and empty["per_class"] == {}
    only_difficult = [image([A], [1], difficult=[True]), image(np.zeros((0, 4)), [])]
    for method in ("voc07", "all_points", "coco101"):  # detections, but no ground truth that counts
        result = mean_average_precision([image([A], [1], [0.9]), image([B], [2], [0.8])], only_difficult, method=method)
        assert np.isnan(result["map"]) and result["per_class"] == {}
    assert mean_average_precision([], []) == {"map": pytest.approx(float("nan"), nan_ok=True), "per_class": {}}


def test_classes_are_averaged():
    # class 1: the hand case (all_points 5/6); class 2: one perfect detection (AP 1)
    found, truths = hand_case()
    truths[1] = image([B, A], [1, 2])
    found[1] = image([B, A], [1, 2], [0.7, 0.95])
    result = mean_average_precision(found, truths, method="all_points")
    assert result["per_class"] == {1: pytest.approx(5 / 6), 2: pytest.approx(1.0)}
    assert result["map"] == pytest.approx((5 / 6 + 1.0) / 2)


# --- VOC rules against the devkit's loop (voc_eval.py, written out) on random sets ---


def devkit_average_precision(found, truths, label, iou_threshold, eleven_points):
    """Pascal VOC devkit ``voc_eval`` + ``voc_ap`` as loops (the test oracle)."""
    records = []
    for t in truths:
        difficult = t.get("difficult", np.zeros(len(t["labels"]), bool))
        records.append({"boxes": t["boxes"][t["labels"] == label], "difficult": difficult[t["labels"] == label]})
    for record in records:
        record["taken"] = [False] * len(record["boxes"])
    positives = sum(int((~record["difficult"]).sum()) for record in records)
    detections = [
        (score, index, box)
        for index, f in enumerate(found)
        for box, score, lab in zip(f["boxes"], f["scores"], f["labels"])
        if lab == label
    ]
    detections.sort(key=lambda item: -item[0])  # stable: image order, then order within the image
    tp, fp = [], []
    for _, index, box in detections:
        record = records[index]
        best, best_j = -np.inf, -1
        for j, truth in enumerate(record["boxes"]):
            width = min(box[2], truth[2]) - max(box[0], truth[0])
            height = min(box[3], truth[3]) - max(box[1], truth[1])
            inter = max(width, 0.0) * max(height, 0.0)
            union = (box[2] - box[0]) * (box[3] - box[1]) + (truth[2] - truth[0]) * (truth[3] - truth[1]) - inter
            overlap = inter / union if union > 0 else 0.0
            if overlap > best:
                best, best_j = overlap, j
        hit = miss = 0
        if best > iou_threshold:
            if not record["difficult"][best_j]:
                if not record["taken"][best_j]:
                    hit, record["taken"][best_j] = 1, True
                else:
                    miss = 1
        else:
            miss = 1
        tp.append(hit)
        fp.append(miss)
    tp, fp = np.cumsum(tp, dtype=float), np.cumsum(fp, dtype=float)
    recall = tp / positives
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if eleven_points:
        total = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            total += (0.0 if np.sum(recall >= t) == 0 else np.max(precision[recall >= t])) / 11.0
        return total
    recall = np.concatenate(([0.0], recall, [1.0]))
    precision = np.concatenate(([0.0], precision, [0.0]))
    for i in range(precision.size - 1, 0, -1):
        precision[i - 1] = max(precision[i - 1], precision[i])
    steps = np.where(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def random_set(rng, num_images=6, num_classes=3, ties=False, crowded=False):
    """Ground truths (some difficult) and detections: jittered copies of them, duplicates, misses, noise."""
    truths, found = [], []
    for _ in range(num_images):
        count = int(rng.integers(0, 6))
        top_left = rng.uniform(0, 0.7, (count, 2))
        boxes = np.concatenate([top_left, top_left + rng.uniform(0.05, 0.3, (count, 2))], axis=1)
        labels = rng.integers(1, num_classes + 1, count)
        truths.append(image(boxes, labels, difficult=rng.uniform(size=count) < 0.15))
        copies = rng.integers(0, 4, count)
        source = np.repeat(np.arange(count), copies)
        jitter = rng.normal(0, rng.uniform(0.005, 0.06), (len(source), 4))
        det_boxes = boxes[source] + jitter
        wrong_class = rng.uniform(size=len(source)) < 0.1
        det_labels = np.where(wrong_class, rng.integers(1, num_classes + 1, len(source)), labels[source])
        noise = int(rng.integers(330, 400) if crowded else rng.integers(0, 6))
        noise_top_left = rng.uniform(0, 0.8, (noise, 2))
        noise_boxes = np.concatenate([noise_top_left, noise_top_left + rng.uniform(0.02, 0.2, (noise, 2))], axis=1)
        det_boxes = np.clip(np.concatenate([det_boxes, noise_boxes]), 0, 1)
        det_boxes[:, 2:] = np.maximum(det_boxes[:, 2:], det_boxes[:, :2])
        det_labels = np.concatenate([det_labels, rng.integers(1, num_classes + 1, noise)])
        scores = rng.uniform(size=len(det_boxes))
        found.append(image(det_boxes, det_labels, np.round(scores, 1) if ties else scores))
    return found, truths


@pytest.mark.parametrize("method", ["voc07", "all_points"])
def test_voc_rules_match_devkit_loop(rng, method):
    for trial in range(12):
        found, truths = random_set(rng, ties=trial % 2 == 1)
        threshold = [0.5, 0.3, 0.7][trial % 3]
        result = mean_average_precision(found, truths, iou_threshold=threshold, method=method)
        for label, value in result["per_class"].items():
            expected = devkit_average_precision(found, truths, label, threshold, eleven_points=method == "voc07")
            assert value == pytest.approx(expected, abs=1e-12), (trial, label)
        counted = {int(l) for t in truths for l, d in zip(t["labels"], t["difficult"]) if not d}
        assert set(result["per_class"]) == counted


# --- COCO: 101-point AP equal to pycocotools, and coco_map equal to pycocotools used directly ---


def test_coco101_equals_pycocotools_on_random_sets(rng):
    compared = 0
    for trial in range(24):
        found, truths = random_set(rng, ties=trial % 3 == 1, crowded=trial % 8 == 7)  # some > 100 per class
        reference = coco_map(found, truths, image_size=(640, 480))["per_iou"]
        for threshold in (0.5, 0.75, 0.9):
            got = mean_average_precision(found, truths, iou_threshold=threshold, method="coco101")["map"]
            if np.isnan(reference[threshold]):
                assert np.isnan(got)
                continue
            assert got == pytest.approx(reference[threshold], abs=1e-6), (trial, threshold)
            compared += 1
    assert compared >= 60


def pycocotools_directly(found, truths, width, height):
    """The usual pycocotools route: a GT dataset dict and ``loadRes`` of a result list, in pixels."""
    scale = np.array([width, height, width, height])
    annotations, results = [], []
    for index, (f, t) in enumerate(zip(found, truths)):
        for box, label, difficult in zip(t["boxes"] * scale, t["labels"], t["difficult"]):
            xywh = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
            annotations.append(
                {"id": len(annotations) + 1, "image_id": index, "category_id": int(label), "bbox": xywh,
                 "area": xywh[2] * xywh[3], "iscrowd": int(difficult)}
            )  # fmt: skip
        for box, label, score in zip(f["boxes"] * scale, f["labels"], f["scores"]):
            xywh = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
            results.append({"image_id": index, "category_id": int(label), "bbox": xywh, "score": float(score)})
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO()
        ground_truth.dataset = {
            "images": [{"id": i, "width": width, "height": height} for i in range(len(truths))],
            "categories": [{"id": c} for c in range(1, 4)],
            "annotations": annotations,
        }
        ground_truth.createIndex()
        evaluator = COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def test_coco_map_is_pycocotools(rng):
    found, truths = random_set(rng, num_images=8)
    got = coco_map(found, truths, image_size=(640, 480))
    expected = pycocotools_directly(found, truths, 640, 480)
    expected = np.where(expected == -1, np.nan, expected)  # coco_map: NaN where pycocotools has -1
    assert np.isnan(expected[3])  # no small boxes at 640 x 480
    np.testing.assert_allclose([got[name] for name in COCO_STATS], expected, atol=1e-12)
    assert got["map"] > 0.1
    assert got["map"] == pytest.approx(np.mean(list(got["per_iou"].values())))
    assert set(got["per_class"]) == {int(l) for t in truths for l, d in zip(t["labels"], t["difficult"]) if not d}


def test_bad_input_names_the_image_and_box():
    found, truths = hand_case()
    with pytest.raises(ValueError, match="detections has 2 images but ground_truths has 1"):
        mean_average_precision(found, truths[:1])
    found[1] = image([[0.5, 0.5, 0.4, 1.0]], [1], [0.7])
    with pytest.raises(ValueError, match=r"detections\[1\]\['boxes'\]\[0\] = \[0.5, 0.5, 0.4, 1.0\] is not a corners"):
        mean_average_precision(found, truths)
    found, truths = hand_case()
    truths[0]["labels"] = np.array([0])
    with pytest.raises(ValueError, match=r"ground_truths\[0\]\['labels'\] must be integers >= 1"):
        mean_average_precision(found, truths)
    found, truths = hand_case()
    found[0]["scores"] = np.array([0.9])
    with pytest.raises(ValueError, match=r"detections\[0\]\['scores'\] must have shape \(2,\)"):
        mean_average_precision(found, truths)
    with pytest.raises(ValueError, match="method must be one of"):
        mean_average_precision(*hand_case(), method="voc12")
    with pytest.raises(ValueError, match="image_size must be"):
        coco_map(*hand_case(), image_size=(1, 2, 3))


# --- mAP by object size: COCO's area buckets on top of VOC matching ---


def pixel_image(boxes, labels, scores=None):
    """``image`` with pixel boxes of a 1000 x 1000 frame, normalized."""
    return image(np.divide(boxes, 1000.0), labels, scores)


def test_map_by_size_hand_worked():
    # Class 1 on a 1000 x 1000 frame: small signs S1, S2 (20 x 20), a large one L (120 x 120).
    s1, s2, large = [100, 100, 120, 120], [300, 100, 320, 120], [500, 500, 620, 620]
    truths = [pixel_image([s1, s2, large], [1, 1, 1])]
    found = [pixel_image([[700, 700, 820, 820], large, s1, [800, 100, 820, 120], s2], [1] * 5,
                         [0.95, 0.90, 0.85, 0.80, 0.75])]
    result = map_by_size(found, truths, image_sizes=(1000, 1000))
    # small: the large miss (0.95) is out of the bucket and matches nothing -> neither; the hit on L (0.9)
    # matches an out-of-bucket ground truth -> neither; then TP, FP, TP: envelope 1 to recall 1/2, then 2/3
    assert result["small"]["map"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3, abs=1e-12)
    assert result["small"]["num_ground_truths"] == 2
    # large: FP (0.95), TP (0.9), the rest small -> neither: precision 1/2 at recall 1
    assert result["large"] == {"map": pytest.approx(0.5), "per_class": {1: pytest.approx(0.5)}, "num_ground_truths": 1}
    assert np.isnan(result["medium"]["map"]) and result["medium"]["per_class"] == {}
    # all sizes together: FP, TP, TP, FP, TP over 3 signs, envelope 2/3, 2/3, 3/5 at recall 1/3, 2/3, 1
    plain = mean_average_precision(found, truths, method="all_points")["map"]
    assert plain == pytest.approx((2 / 3 + 2 / 3 + 3 / 5) / 3, abs=1e-12)


def test_size_buckets_use_each_images_pixels_and_half_open_bounds():
    assert SIZE_BUCKETS["small"][1] == SIZE_BUCKETS["medium"][0] == 32**2
    # the same normalized box is 30 x 30 (small) in a 300 pixel image and 40 x 40 (medium) in a 400 one;
    # a 32 x 32 box (area exactly 32**2) is medium
    box = [0.0, 0.0, 0.1, 0.1]
    truths = [image([box], [1]), image([box], [1]), image([[0, 0, 32 / 320, 32 / 320]], [2])]
    found = [image([box], [1], [0.9]), image([box], [1], [0.9]), image([[0, 0, 32 / 320, 32 / 320]], [2], [0.9])]
    result = map_by_size(found, truths, image_sizes=[(300, 300), (400, 400), (320, 320)])
    assert [result[name]["num_ground_truths"] for name in ("small", "medium", "large")] == [1, 2, 0]
    assert result["small"]["per_class"] == {1: 1.0} and result["medium"]["per_class"] == {1: 1.0, 2: 1.0}
    with pytest.raises(ValueError, match="image_size must be"):
        map_by_size(found, truths, image_sizes=[(300, 300)] * 2)


# --- per-class scores: what evaluate_detector and evaluate_tiled report per class ---


def per_class_case():
    """Class 1: the hand case (A, B; hit, miss, hit); class 2: a small sign found once and a large one
    missed; class 3: detections only; class 4: a difficult ground truth only."""
    found, truths = hand_case()
    small, large = [0.02, 0.02, 0.06, 0.06], [0.1, 0.1, 0.9, 0.9]
    truths[0] = image([A, small, FAR], [1, 2, 4], difficult=[False, False, True])
    truths[1] = image([B, large], [1, 2])
    found[0] = image([A, FAR, small, B], [1, 1, 2, 3], [0.9, 0.8, 0.6, 0.5])
    return found, truths


def test_class_scores_are_mean_average_precision_per_class_and_nan_without_ground_truth():
    found, truths = per_class_case()
    scores = class_scores(found, truths, image_sizes=300)
    plain = mean_average_precision(found, truths, method=MAP_METHOD)
    assert plain["per_class"] == {1: pytest.approx(HAND_AP["all_points"]), 2: pytest.approx(0.5)}
    assert {label: scores["per_class"][label] for label in (1, 2)} == plain["per_class"]  # the same numbers
    assert np.isnan(scores["per_class"][3]) and np.isnan(scores["per_class"][4])  # undefined, not 0
    assert scores["map50"] == plain["map"]
    assert scores["num_ground_truths"] == {1: 2, 2: 2, 3: 0, 4: 0}
    # by size (300 px): the small sign is 12 x 12 px, A and B 150 x 150, the missed one 240 x 240
    buckets = map_by_size(found, truths, 300)
    assert scores["per_class_by_size"]["small"][2] == buckets["small"]["per_class"][2] == 1.0
    assert scores["per_class_by_size"]["large"][1] == buckets["large"]["per_class"][1]
    assert scores["per_class_by_size"]["large"][2] == 0.0 and np.isnan(scores["per_class_by_size"]["small"][1])
    assert scores["by_size"] == {name: pytest.approx(bucket["map"], nan_ok=True) for name, bucket in buckets.items()}


def test_class_scores_are_keyed_by_name_and_every_label_needs_one():
    found, truths = per_class_case()
    names = {1: "stop", 2: "yield", 3: "priority_road", 4: "give_way", 5: "no_entry"}
    scores = class_scores(found, truths, image_sizes=300, class_names=names, by_size=False)
    assert list(scores["per_class"]) == list(names.values()) and "per_class_by_size" not in scores
    assert scores["per_class"]["stop"] == pytest.approx(HAND_AP["all_points"])
    assert np.isnan(scores["per_class"]["no_entry"]) and scores["num_ground_truths"]["no_entry"] == 0
    with pytest.raises(ValueError, match=r"labels \[3, 4\] have no name"):
        class_scores(found, truths, 300, class_names={1: "stop", 2: "yield"})
    with pytest.raises(ValueError, match="one name"):
        class_scores(found, truths, 300, class_names={1: "stop", 2: "stop", 3: "a", 4: "b"})
