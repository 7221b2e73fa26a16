"""Mean average precision of detections: Pascal VOC rules, COCO's 101-point AP, and pycocotools itself.

Conventions: boxes are **corners** ``(xmin, ymin, xmax, ymax)``, normalized to [0, 1] (any common
scale works for ``mean_average_precision``; ``coco_map`` scales them by ``image_size``). Labels are
``1..C``. Detections come one dict per image as ``tlutils.decoding.decode_detections`` makes them
(``boxes`` ``(K, 4)``, ``scores`` ``(K,)``, ``labels`` ``(K,)``); ground truths one dict per image with
``boxes`` ``(M, 4)``, ``labels`` ``(M,)`` and optionally ``difficult`` ``(M,)`` bool.

Per class, detections are taken by descending score (ties: image order, then the order within the
image) and each is a true positive (TP) if it matches a ground truth of its class in its image, else
a false positive (FP). AP summarizes the precision/recall curve. The rules:

- ``"voc07"`` and ``"all_points"``: the Pascal VOC devkit (Everingham et al., IJCV 2010, section 4.2;
  ``VOCevaldet.m`` / ``voc_eval.py``). A detection's candidate is the ground truth it overlaps most;
  it matches if that IoU is **> iou_threshold** and the ground truth is not yet taken (a second
  detection of it is a FP). A detection whose candidate is *difficult* is neither TP nor FP, and
  difficult ground truths do not count as positives. ``"voc07"``: mean over recall r in
  {0, 0.1, ..., 1} of the highest precision at recall >= r (VOC2007, the SSD paper's metric);
  ``"all_points"``: area under the precision envelope at every recall step (VOC2010 on).
- ``"coco101"``: exactly what pycocotools reports as AP at one IoU threshold for area "all" and
  100 detections per image (``COCOeval``): at most 100 detections per image and class, each matches
  the best **not yet matched** ground truth with IoU **>= iou_threshold**, preferring real ground
  truths to ignored ones; precision made monotone and read at 101 recall points 0, 0.01, ..., 1.
  Difficult ground truths are passed to pycocotools as ``iscrowd`` (its only way to ignore a box),
  so here they follow crowd rules: IoU with them is intersection / detection area, any number of
  detections may match them, and those detections are neither TP nor FP.

pycocotools computes IoU on pixel boxes without the old "+1" (checked: boxes [0, 10) and [5, 10)
overlap 0.5), so normalized and pixel boxes give the same IoU.

Classes are reported only if they have at least one ground truth that counts (not difficult); a
class with ground truth but no detections has AP 0. With no such class at all, ``map`` is NaN.
"""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

from tlutils.boxes import area_numpy, intersection_numpy, iou_numpy

if TYPE_CHECKING:
    import keras

    from tlutils.data.pipeline import DetectionSequence
    from tlutils.data.records import DetectionRecord

#: IoU threshold of a match in Pascal VOC (Everingham et al. 2010, section 4.4) and COCO's AP50.
IOU_THRESHOLD = 0.5
METHODS = ("voc07", "all_points", "coco101")
#: Recall points of VOC2007's 11-point interpolated AP (``voc_eval.py``: ``np.arange(0., 1.1, 0.1)``).
VOC07_RECALL_POINTS = np.arange(0.0, 1.1, 0.1)
#: Recall points of COCO AP (pycocotools ``Params.recThrs``: 0:0.01:1).
COCO_RECALL_POINTS = np.linspace(0.0, 1.0, int(np.round(1.0 / 0.01)) + 1)
#: Detections per image and class that COCO AP looks at (pycocotools ``Params.maxDets[-1]``).
COCO_MAX_DETECTIONS = 100
#: COCO's object sizes by pixel area (pycocotools ``Params.areaRng``): ``[low, high)`` here, so each box
#: is in exactly one (pycocotools counts an area of exactly 32**2 or 96**2 in both neighbours).
SIZE_BUCKETS = {"small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, float("inf"))}
#: What ``map50`` of ``evaluate_detector`` / ``evaluate_tiled`` (the results table's ``val_map50``) is:
#: the results table records it in its ``map_metric`` column.
MAP_METRIC = "VOC all-points AP@0.5"
#: The ``mean_average_precision`` method that computes it.
MAP_METHOD = "all_points"
#: Names of ``COCOeval.stats``, in order.
COCO_STATS = (
    "map", "ap50", "ap75", "ap_small", "ap_medium", "ap_large",
    "ar_1", "ar_10", "ar_100", "ar_small", "ar_medium", "ar_large",
)  # fmt: skip


class _Flat(NamedTuple):
    """All boxes of a dataset in flat arrays; ``extra`` is scores (detections) or difficult (ground truth)."""

    image: np.ndarray  # (N,) int64 image index
    boxes: np.ndarray  # (N, 4) float64 corners
    labels: np.ndarray  # (N,) int64
    extra: np.ndarray  # (N,) float64 scores or bool difficult


def mean_average_precision(
    detections: Sequence[dict[str, Any]],
    ground_truths: Sequence[dict[str, Any]],
    iou_threshold: float = IOU_THRESHOLD,
    method: str = "voc07",
) -> dict[str, Any]:
    """AP per class and their mean (see the module docstring for the rules of each ``method``).

    Args:
        detections: one dict per image: ``boxes`` ``(K, 4)`` corners, ``scores`` ``(K,)``,
            ``labels`` ``(K,)`` in ``1..C``.
        ground_truths: one dict per image, in the same order: ``boxes`` ``(M, 4)``, ``labels``
            ``(M,)``, optional ``difficult`` ``(M,)`` bool.
        iou_threshold: IoU of a match (VOC: above it; COCO: at least it).
        method: ``"voc07"`` (11 points), ``"all_points"`` or ``"coco101"``.

    Returns:
        ``{"map": float, "per_class": {label: AP}}`` over the classes with ground truth that counts.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must lie in (0, 1], got {iou_threshold}")
    found, truth = _flatten(detections, ground_truths)
    if method == "coco101":
        per_class = _coco_average_precision(found, truth, iou_threshold)
    else:
        per_class = _voc_average_precision(found, truth, iou_threshold, eleven_points=method == "voc07")
    return {"map": float(np.mean(list(per_class.values()))) if per_class else float("nan"), "per_class": per_class}


def coco_map(
    detections: Sequence[dict[str, Any]],
    ground_truths: Sequence[dict[str, Any]],
    image_size: int | tuple[int, int] | Sequence[tuple[int, int]] = 300,
) -> dict[str, Any]:
    """COCO metrics computed by pycocotools itself (``COCOeval``, bbox), without its printing.

    Args:
        detections, ground_truths: as for ``mean_average_precision``, boxes normalized to [0, 1].
        image_size: pixel size to scale boxes by (COCO's small/medium/large split is in pixels):
            one side for square images, ``(width, height)``, or one ``(width, height)`` per image.

    Returns:
        ``COCOeval.stats`` by name (``map`` = AP@[.5:.95], ``ap50``, ``ap75``, ``ap_small``, ...,
        ``ar_100``, ...; see ``COCO_STATS``); ``per_iou``: ``{0.5: AP, 0.55: AP, ..., 0.95: AP}``;
        ``per_class``: ``{label: AP@[.5:.95]}``. pycocotools' -1 (no ground truth) becomes NaN.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    found, truth = _flatten(detections, ground_truths)
    sizes = _image_sizes(image_size, len(ground_truths))
    categories = [{"id": int(label)} for label in np.union1d(found.labels, truth.labels)]
    images = [{"id": index + 1, "width": width, "height": height} for index, (width, height) in enumerate(sizes)]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        datasets = []
        for flat, is_truth in ((truth, True), (found, False)):
            dataset = COCO()
            annotations = _annotations(flat, sizes, is_truth)
            dataset.dataset = {"images": images, "categories": categories, "annotations": annotations}
            dataset.createIndex()
            datasets.append(dataset)
        evaluator = COCOeval(datasets[0], datasets[1], iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    results: dict[str, Any] = {name: _nan_if_absent(value) for name, value in zip(COCO_STATS, evaluator.stats)}
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # (IoU, recall, class) at area all, 100 dets
    results["per_iou"] = {
        round(float(threshold), 2): _mean_present(precision[index])
        for index, threshold in enumerate(evaluator.params.iouThrs)
    }
    results["per_class"] = {
        int(label): _mean_present(precision[:, :, index])
        for index, label in enumerate(evaluator.params.catIds)
        if np.any(precision[:, :, index] > -1)
    }
    return results


def map_by_size(
    detections: Sequence[dict[str, Any]],
    ground_truths: Sequence[dict[str, Any]],
    image_sizes: int | tuple[int, int] | Sequence[tuple[int, int]],
    iou_threshold: float = IOU_THRESHOLD,
) -> dict[str, dict[str, Any]]:
    """VOC all-points mAP per object size (COCO's small, medium and large, ``SIZE_BUCKETS``).

    Sizes are pixel areas ``w * h`` of the boxes scaled by their image's size. For a bucket, COCO's
    rule for an area range (``COCOeval.evaluateImg``) on top of the VOC matching of
    ``mean_average_precision(method="all_points")``:

    - ground truths outside the bucket are ignored like difficult ones: they are no positives, and a
      detection whose candidate (the ground truth of its class it overlaps most, in or out of the
      bucket) is one of them with IoU > ``iou_threshold`` is neither TP nor FP;
    - a detection that is not a TP (no match, or a second detection of a taken ground truth) is a FP
      only if its own area lies in the bucket; outside it, it is neither.

    Unlike pycocotools, a detection is not steered to an in-bucket ground truth when an ignored one
    overlaps it more (VOC matching), and bucket bounds are half-open.

    Args:
        detections, ground_truths: as for ``mean_average_precision``, boxes normalized to [0, 1].
        image_sizes: one side, one ``(width, height)``, or one ``(width, height)`` per image.
        iou_threshold: a match needs IoU above this.

    Returns:
        ``{"small" | "medium" | "large": {"map", "per_class", "num_ground_truths"}}``; ``map`` is NaN
        for a bucket without ground truth that counts.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must lie in (0, 1], got {iou_threshold}")
    found, truth = _flatten(detections, ground_truths)
    sizes = np.asarray(_image_sizes(image_sizes, len(ground_truths)), dtype=np.float64)
    truth_area, found_area = (_pixel_area(flat, sizes) for flat in (truth, found))
    results = {}
    for name, (low, high) in SIZE_BUCKETS.items():
        outside = (truth_area < low) | (truth_area >= high)
        bucket_truth = truth._replace(extra=truth.extra.astype(bool) | outside)
        uncounted = (found_area < low) | (found_area >= high)
        per_class = _voc_average_precision(found, bucket_truth, iou_threshold, eleven_points=False, uncounted=uncounted)
        mean = float(np.mean(list(per_class.values()))) if per_class else float("nan")
        results[name] = {"map": mean, "per_class": per_class, "num_ground_truths": int(np.sum(~bucket_truth.extra))}
    return results


def _pixel_area(flat: _Flat, sizes: np.ndarray) -> np.ndarray:
    """``(N,)`` pixel areas of normalized boxes, each scaled by its image's ``(width, height)`` in ``sizes``."""
    scale = sizes[flat.image] if len(flat.image) else np.zeros((0, 2))
    return area_numpy(flat.boxes * np.concatenate([scale, scale], axis=1))


def _voc_average_precision(found: _Flat, truth: _Flat, iou_threshold: float, eleven_points: bool,
                           uncounted: np.ndarray | None = None) -> dict[int, float]:
    """AP per class under the Pascal VOC devkit rules; ``uncounted`` ``(D,)`` bool: detections that are
    neither TP nor FP unless they are a TP (``map_by_size``: outside the size bucket)."""
    order = np.lexsort((-found.extra, found.labels))  # by class, then descending score; stable
    found = _Flat(*(array[order] for array in found))
    pair_found, pair_truth = _same_image_and_class_pairs(found, truth)
    overlaps = iou_numpy(found.boxes[pair_found], truth.boxes[pair_truth])
    best_overlap, best_truth = _first_maximum_per_detection(len(found.image), pair_found, overlaps, pair_truth)
    over = best_overlap > iou_threshold  # VOC: strictly above
    ignored = np.zeros(len(found.image), dtype=bool)
    ignored[over] = truth.extra[best_truth[over]]  # its best ground truth is difficult
    candidate = over & ~ignored
    first_claim = np.zeros(len(found.image), dtype=bool)
    claimed = np.flatnonzero(candidate)
    first_claim[claimed[np.unique(best_truth[claimed], return_index=True)[1]]] = True  # in score order
    true_positive = candidate & first_claim
    false_positive = ~over | (candidate & ~first_claim)
    if uncounted is not None:
        false_positive &= ~uncounted[order]
    per_class = {}
    for label in _counted_classes(truth):
        in_class = found.labels == label
        true_positives = np.cumsum(true_positive[in_class], dtype=np.float64)
        false_positives = np.cumsum(false_positive[in_class], dtype=np.float64)
        recall = true_positives / np.count_nonzero((truth.labels == label) & ~truth.extra)
        precision = true_positives / np.maximum(true_positives + false_positives, np.finfo(np.float64).eps)
        per_class[label] = _eleven_point_ap(recall, precision) if eleven_points else _all_point_ap(recall, precision)
    return per_class


def _eleven_point_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2007: mean over ``VOC07_RECALL_POINTS`` of the highest precision at recall >= the point."""
    reached = recall[None, :] >= VOC07_RECALL_POINTS[:, None]  # (11, D)
    return float(np.mean(np.max(np.where(reached, precision[None, :], 0.0), axis=1, initial=0.0)))


def _all_point_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2010+: area under the precision envelope (``voc_ap(use_07_metric=False)``)."""
    recall = np.concatenate([[0.0], recall, [1.0]])
    envelope = np.maximum.accumulate(np.concatenate([[0.0], precision, [0.0]])[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * envelope[steps + 1]))


def _coco_average_precision(found: _Flat, truth: _Flat, iou_threshold: float) -> dict[int, float]:
    """AP per class as pycocotools computes it for one IoU threshold, area "all", 100 detections."""
    # pycocotools: per image and class, detections by descending score (stable), the first 100
    order = np.lexsort((-found.extra, found.labels, found.image))
    found = _Flat(*(array[order] for array in found))
    starts, ends = _runs(found.image * (found.labels.max(initial=0) + 1) + found.labels)
    rank = np.arange(len(order)) - np.repeat(starts, ends - starts)  # position within image and class
    found = _Flat(*(array[rank < COCO_MAX_DETECTIONS] for array in found))
    matched, ignored = _coco_matches(found, truth, iou_threshold)
    per_class = {}
    for label in _counted_classes(truth):
        in_class = np.flatnonzero(found.labels == label)
        # all images' detections of the class by descending score; ties keep image order (mergesort)
        in_class = in_class[np.argsort(-found.extra[in_class], kind="stable")]
        true_positives = np.cumsum(matched[in_class] & ~ignored[in_class], dtype=np.float64)
        false_positives = np.cumsum(~matched[in_class] & ~ignored[in_class], dtype=np.float64)
        recall = true_positives / np.count_nonzero((truth.labels == label) & ~truth.extra)
        precision = true_positives / (true_positives + false_positives + np.spacing(1))
        precision = np.maximum.accumulate(precision[::-1])[::-1]  # monotone, as pycocotools makes it
        points = np.searchsorted(recall, COCO_RECALL_POINTS, side="left")  # first index reaching each
        padded = np.r_[precision, 0.0]  # recall points never reached have precision 0
        per_class[label] = float(np.mean(padded[np.minimum(points, len(precision))]))
    return per_class


def _coco_matches(found: _Flat, truth: _Flat, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools' greedy matching (``COCOeval.evaluateImg``); ``found`` sorted by image, class, score.

    Each detection, in that order, takes among the ground truths of its image and class with overlap
    >= the threshold the best still free real one (ties: the later one), else the best crowd
    (difficult) one, which stays free. Only detections with such a candidate need the loop.

    Returns:
        ``matched`` and ``ignored`` (matched a crowd ground truth), each ``(D,)`` bool.
    """
    pair_found, pair_truth = _same_image_and_class_pairs(found, truth)
    crowd = truth.extra.astype(bool)
    overlaps = iou_numpy(found.boxes[pair_found], truth.boxes[pair_truth])
    crowd_pairs = crowd[pair_truth]  # crowd overlap: intersection / detection area
    detection_area = area_numpy(found.boxes[pair_found[crowd_pairs]])
    intersection = intersection_numpy(found.boxes[pair_found[crowd_pairs]], truth.boxes[pair_truth[crowd_pairs]])
    overlaps[crowd_pairs] = intersection / np.maximum(detection_area, np.finfo(np.float64).tiny)
    close = overlaps >= min(iou_threshold, 1 - 1e-10)  # pycocotools' bound
    pair_found, pair_truth, overlaps = pair_found[close], pair_truth[close], overlaps[close]

    matched = np.zeros(len(found.image), dtype=bool)
    ignored = np.zeros(len(found.image), dtype=bool)
    taken = np.zeros(len(truth.image), dtype=bool)
    for start, end in zip(*_runs(pair_found)):
        candidates, candidate_overlaps = pair_truth[start:end], overlaps[start:end]
        free_real = ~crowd[candidates] & ~taken[candidates]
        usable = free_real if free_real.any() else crowd[candidates]
        if not usable.any():
            continue
        best = candidate_overlaps[usable].max()
        chosen = candidates[usable][candidate_overlaps[usable] == best].max()  # ties: the later one
        detection = pair_found[start]
        matched[detection], ignored[detection] = True, crowd[chosen]
        taken[chosen] |= not crowd[chosen]
    return matched, ignored


def _same_image_and_class_pairs(found: _Flat, truth: _Flat) -> tuple[np.ndarray, np.ndarray]:
    """All (detection, ground truth) index pairs of the same image and class, by detection then ground truth."""
    num_labels = int(max(found.labels.max(initial=0), truth.labels.max(initial=0))) + 1
    truth_keys = truth.image * num_labels + truth.labels
    truth_order = np.argsort(truth_keys, kind="stable")
    sorted_keys = truth_keys[truth_order]
    found_keys = found.image * num_labels + found.labels
    first = np.searchsorted(sorted_keys, found_keys, side="left")
    counts = np.searchsorted(sorted_keys, found_keys, side="right") - first  # (D,)
    pair_found = np.repeat(np.arange(len(found_keys)), counts)
    within = np.arange(len(pair_found)) - np.repeat(np.cumsum(counts) - counts, counts)
    return pair_found, truth_order[np.repeat(first, counts) + within]


def _first_maximum_per_detection(
    num_found: int, pair_found: np.ndarray, overlaps: np.ndarray, pair_truth: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per detection: its highest overlap (-inf without pairs) and the first ground truth reaching it (-1)."""
    best_overlap = np.full(num_found, -np.inf)
    best_truth = np.full(num_found, -1, dtype=np.int64)
    starts, ends = _runs(pair_found)
    if len(starts) == 0:
        return best_overlap, best_truth
    maxima = np.maximum.reduceat(overlaps, starts)
    at_maximum = overlaps == np.repeat(maxima, ends - starts)
    first = np.minimum.reduceat(np.where(at_maximum, np.arange(len(overlaps)), len(overlaps)), starts)
    best_overlap[pair_found[starts]] = maxima
    best_truth[pair_found[starts]] = pair_truth[first]
    return best_overlap, best_truth


def _runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) indices of the runs of equal values in sorted ``keys`` ``(N,)``."""
    if len(keys) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return starts, np.r_[starts[1:], len(keys)]


def _counted_classes(truth: _Flat) -> list[int]:
    """Classes with at least one ground truth that is not difficult, ascending."""
    return [int(label) for label in np.unique(truth.labels[~truth.extra.astype(bool)])]


def _flatten(detections: Sequence[dict[str, Any]], ground_truths: Sequence[dict[str, Any]]) -> tuple[_Flat, _Flat]:
    """Validate the per-image dicts and concatenate them into flat arrays."""
    if len(detections) != len(ground_truths):
        raise ValueError(f"detections has {len(detections)} images but ground_truths has {len(ground_truths)}")
    found = [_read_image("detections", index, item, "scores") for index, item in enumerate(detections)]
    truth = [_read_image("ground_truths", index, item, "difficult") for index, item in enumerate(ground_truths)]
    return _concatenate(found, np.float64), _concatenate(truth, bool)


def _read_image(kind: str, index: int, item: dict[str, Any], extra_key: str) -> tuple[np.ndarray, ...]:
    """``(boxes (K, 4) float64, labels (K,) int64, extra (K,))`` of one image, or ``ValueError``."""
    where = f"{kind}[{index}]"
    if not isinstance(item, dict) or "boxes" not in item or "labels" not in item:
        raise ValueError(f"{where} must be a dict with 'boxes' and 'labels', got {type(item).__name__}")
    if extra_key == "scores" and "scores" not in item:
        raise ValueError(f"{where} has no 'scores'")
    boxes = np.asarray(item["boxes"], dtype=np.float64)
    boxes = boxes.reshape(0, 4) if boxes.size == 0 else boxes
    labels = np.asarray(item["labels"])
    default = np.zeros(len(labels), dtype=bool)
    extra = np.asarray(item.get(extra_key, default), dtype=np.float64 if extra_key == "scores" else bool)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{where}['boxes'] must have shape (K, 4) (corners), got {boxes.shape}")
    for name, values in (("labels", labels), (extra_key, extra)):
        if values.shape != (len(boxes),):
            raise ValueError(f"{where}['{name}'] must have shape ({len(boxes)},) like its boxes, got {values.shape}")
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 1):
        raise ValueError(f"{where}['labels'] must be integers >= 1 (0 is background), got {labels.tolist()}")
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    bad = np.flatnonzero(~np.all(np.isfinite(boxes), axis=1) | inverted)
    if bad.size:
        raise ValueError(
            f"{where}['boxes'][{bad[0]}] = {boxes[bad[0]].tolist()} is not a corners box (xmin <= xmax, ymin <= ymax)"
        )
    return boxes, labels.astype(np.int64), extra


def _concatenate(images: list[tuple[np.ndarray, ...]], extra_dtype: type) -> _Flat:
    """One ``_Flat`` of the per-image ``(boxes, labels, extra)`` triples."""
    image_index = np.repeat(np.arange(len(images)), [len(labels) for _, labels, _ in images]).astype(np.int64)
    if not images:
        return _Flat(image_index, np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, extra_dtype))
    boxes, labels, extra = (np.concatenate(parts) for parts in zip(*images))
    return _Flat(image_index, boxes, labels, extra.astype(extra_dtype))


def _annotations(flat: _Flat, sizes: list[tuple[int, int]], is_truth: bool) -> list[dict[str, Any]]:
    """COCO annotations (pixel ``[x, y, w, h]`` boxes, ids from 1: pycocotools reads id 0 as "no match")."""
    scale = np.asarray(sizes, dtype=np.float64)[flat.image] if len(flat.image) else np.zeros((0, 2))
    corners = flat.boxes * np.concatenate([scale, scale], axis=1)
    xywh = np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2]], axis=1)
    annotations = []
    rows = zip(flat.image.tolist(), xywh.tolist(), flat.labels.tolist(), flat.extra.tolist())
    for number, (image, box, label, extra) in enumerate(rows):
        annotation = {"id": number + 1, "image_id": image + 1, "category_id": label, "bbox": box}
        annotation.update(area=box[2] * box[3], iscrowd=int(extra) if is_truth else 0)
        if not is_truth:
            annotation["score"] = extra
        annotations.append(annotation)
    return annotations


def _image_sizes(image_size: Any, num_images: int) -> list[tuple[int, int]]:
    """``(width, height)`` of every image from one side, one ``(width, height)``, or one per image."""
    sizes = np.asarray(image_size)
    if sizes.ndim == 0:
        sizes = np.array([image_size, image_size])
    if sizes.ndim == 1 and sizes.shape == (2,):
        sizes = np.tile(sizes, (num_images, 1))
    if sizes.shape != (num_images, 2) or np.any(sizes <= 0):
        raise ValueError(f"image_size must be a side, (width, height) or one (width, height) per image "
                         f"({num_images} images), got {image_size!r}")
    return [(float(width), float(height)) for width, height in sizes]


def _nan_if_absent(value: float) -> float:
    """pycocotools writes -1 where nothing was there to measure."""
    return float("nan") if value == -1 else float(value)


def _mean_present(precision: np.ndarray) -> float:
    """Mean of pycocotools precision entries that are not -1 (absent), NaN if none are."""
    present = precision[precision > -1]
    return float(np.mean(present)) if present.size else float("nan")


# ------------------------------------------------------------------------------------------------
# A detector on a validation set: one pass gives its mAP and its loss terms.
# ------------------------------------------------------------------------------------------------

#: The validation loss terms ``evaluate_detector(losses=True)`` reports.
VAL_LOSS_TERMS = ("loss", "localization", "confidence")


def evaluate_detector(model: "keras.Model", sequence: "DetectionSequence", truths: list[dict[str, np.ndarray]],
                      anchors: np.ndarray, coco: bool = False, losses: bool = False,
                      class_names: Mapping[int, str] | None = None, regularization: bool = True) -> dict[str, Any]:
    """``map50`` (``MAP_METRIC``: VOC all-points mAP at IoU 0.5) and its parts per class
    (``class_scores``) and, with ``coco``, ``coco_map``, ``map50_small`` / ``_medium`` / ``_large``
    (``map_by_size`` at the input size) and ``per_class_by_size`` on a validation set.

    With ``losses``, also the validation loss from the same forward pass (what ``SSDTrainer.evaluate``
    reports, without a second pass over the data): ``localization`` and ``confidence`` (the MultiBox
    terms) and ``loss`` (their weighted sum + the detector's L2 regularization; without
    ``regularization`` the sum alone), each averaged over the batches weighted by batch size, like
    Keras' ``evaluate``.

    Args:
        model: a detector or an ``SSDTrainer`` (a compiled trainer predicts with its compiled step;
            its ``MultiBoxLoss`` gives the losses, a plain detector uses ``MultiBoxLoss()``).
        sequence: validation batches built with ``shuffle=False``, so predictions line up with ``truths``.
        truths: ``tlutils.data.pipeline.ground_truths_for_eval(sequence)``.
        anchors: the detector's anchors ``(A, 4)``.
        class_names: model class ``1..C`` -> name, to key the per-class scores by name.
    """
    from tlutils.anchors import height_width
    from tlutils.decoding import decode_detections

    detections: list[dict[str, np.ndarray]] = []
    loss_sums = _LossSums(model) if losses else None
    for index in range(len(sequence)):
        images, targets = sequence[index]
        outputs = model.predict_on_batch(images)
        detections.extend(decode_detections(outputs["class_logits"], outputs["box_offsets"], anchors))
        if loss_sums is not None:
            loss_sums.add(targets, outputs)
    height, width = height_width(sequence.input_size)  # the scored images are the inputs
    scores = class_scores(detections, truths, (width, height), class_names, by_size=coco)
    if coco:
        scores["coco_map"] = float(coco_map(detections, truths, image_size=(width, height))["map"])
        scores.update({f"map50_{name}": value for name, value in scores.pop("by_size").items()})
    if loss_sums is not None:
        scores.update(loss_sums.means(regularization))
    return scores


#: The per-class scores of ``class_scores`` (``per_class_by_size`` only where sizes were scored).
PER_CLASS_KEYS = ("per_class", "num_ground_truths", "per_class_by_size")


def class_scores(
    detections: Sequence[dict[str, Any]],
    ground_truths: Sequence[dict[str, Any]],
    image_sizes: int | tuple[int, int] | Sequence[tuple[int, int]],
    class_names: Mapping[int, str] | None = None,
    by_size: bool = True,
) -> dict[str, Any]:
    """``MAP_METRIC`` over all classes, per class, and (with ``by_size``) per class and object size.

    The numbers are ``mean_average_precision(method=MAP_METHOD)`` and ``map_by_size``'s; this only
    lists every class -- those named in ``class_names``, else every label of the detections or ground
    truths -- so that a class without ground truth that counts shows NaN (AP is undefined there), never
    a missing entry or 0.

    Args:
        detections, ground_truths: as for ``mean_average_precision``, boxes normalized to [0, 1].
        image_sizes: as for ``map_by_size`` (used with ``by_size`` only).
        class_names: model class -> name: key the classes by name (each label must have one);
            ``None``: by model class.
        by_size: also score COCO's small / medium / large objects.

    Returns:
        ``map50``; ``per_class`` ``{class: AP@0.5}``; ``num_ground_truths`` ``{class: ground truths that
        count}``; with ``by_size`` also ``by_size`` ``{"small" | "medium" | "large": mAP@0.5}`` and
        ``per_class_by_size`` ``{"small" | ...: {class: AP@0.5}}``.

    Raises:
        ValueError: a label has no name in ``class_names``, or two classes share a name.
    """
    found, truth = _flatten(detections, ground_truths)
    keys = _class_keys(np.union1d(found.labels, truth.labels), class_names)
    counted = truth.labels[~truth.extra.astype(bool)]
    voc = mean_average_precision(detections, ground_truths, iou_threshold=IOU_THRESHOLD, method=MAP_METHOD)
    scores: dict[str, Any] = {
        "map50": float(voc["map"]),
        "per_class": _every_class(voc["per_class"], keys),
        "num_ground_truths": {key: int(np.count_nonzero(counted == label)) for label, key in keys.items()},
    }
    if by_size:
        buckets = map_by_size(detections, ground_truths, image_sizes, iou_threshold=IOU_THRESHOLD)
        scores["by_size"] = {name: float(bucket["map"]) for name, bucket in buckets.items()}
        scores["per_class_by_size"] = {name: _every_class(bucket["per_class"], keys)
                                       for name, bucket in buckets.items()}
    return scores


def _class_keys(labels: np.ndarray, class_names: Mapping[int, str] | None) -> dict[int, int | str]:
    """Model class -> its key in per-class scores: its name (every named class) or the class itself."""
    if class_names is None:
        return {int(label): int(label) for label in labels}
    unnamed = sorted(set(labels.tolist()) - set(class_names))
    if unnamed:
        raise ValueError(f"labels {unnamed} have no name in class_names (names are given for {sorted(class_names)})")
    if len(set(class_names.values())) < len(class_names):
        raise ValueError(f"class_names gives two classes one name: {dict(class_names)}")
    return {int(label): name for label, name in sorted(class_names.items())}


def _every_class(per_class: Mapping[int, float], keys: Mapping[int, int | str]) -> dict[int | str, float]:
    """``per_class`` re-keyed, with NaN for each class it leaves out (no ground truth that counts)."""
    return {key: float(per_class.get(label, float("nan"))) for label, key in keys.items()}


def evaluate_tiled(
    model_predict: "keras.Model | Callable[[np.ndarray], Mapping[str, Any]]",
    records: Sequence["DetectionRecord"],
    anchors: np.ndarray,
    label_map: Mapping[int, int] | None = None,
    tile_size: int | None = None,
    unmapped: str = "raise",
    class_names: Mapping[int, str] | None = None,
    **detect_options: Any,
) -> dict[str, Any]:
    """Scores of a detector on **whole frames** by tiled inference (``tlutils.tiling.detect_tiled``).

    Each record's image is decoded in turn (one frame in memory at a time) and detected tile by tile;
    ground truth is the records' boxes normalized to their own frames (``ground_truths_for_eval``), so
    small signs count at their real size whatever the detector's input size.

    Args:
        model_predict: a detector (its ``predict_on_batch`` is used) or a function ``float32
            (B, S, S, 3) -> {"class_logits", "box_offsets"}``.
        records: ``DetectionRecord`` of the frames.
        anchors: the detector's anchors ``(A, 4)``.
        label_map: dataset class id -> model class ``1..C``; ``None``: the labels are model classes.
        tile_size: the detector's input side; ``None``: read from the model's input shape.
        unmapped: as for ``ground_truths_for_eval`` (``"drop"``: boxes of unmapped classes are left out).
        class_names: model class -> name, to key the per-class scores by name (``class_scores``).
        **detect_options: ``overlap``, ``scales``, ``score_threshold``, ``iou_threshold``, ``top_k``,
            ``batch_size``, ``border_margin`` of ``detect_tiled``.

    Returns:
        ``map50`` (``MAP_METRIC``: VOC all-points mAP at IoU 0.5), ``coco_map`` (pycocotools
        AP@[.5:.95] with each frame's pixel size), ``by_size`` (``{"small" | "medium" | "large": mAP
        at 0.5}``, ``map_by_size``; NaN for an empty bucket) and per class (``class_scores``):
        ``per_class`` (``{class: AP at 0.5}``, NaN without ground truth), ``num_ground_truths`` and
        ``per_class_by_size``.
    """
    from tlutils.data.pipeline import ground_truths_for_eval
    from tlutils.data.records import load_image
    from tlutils.tiling import detect_tiled

    predict = getattr(model_predict, "predict_on_batch", model_predict)
    if tile_size is None:
        if not hasattr(model_predict, "input_shape"):
            raise ValueError("give tile_size (the detector's input side): model_predict is no Keras model")
        tile_size = int(model_predict.input_shape[1])
    truths = ground_truths_for_eval(records, label_map, unmapped)
    detections = [detect_tiled(predict, load_image(record), anchors, tile_size, **detect_options) for record in records]
    sizes = [(record.width, record.height) for record in records]
    scores = class_scores(detections, truths, sizes, class_names)
    scores["coco_map"] = float(coco_map(detections, truths, image_size=sizes)["map"])
    return scores


class _LossSums:
    """Batch-size-weighted sums of the MultiBox terms over a validation pass (see ``evaluate_detector``)."""

    def __init__(self, model: "keras.Model") -> None:
        from tlutils.losses import MultiBoxLoss

        self.model = model
        self.multibox = getattr(model, "multibox", None) or MultiBoxLoss()
        self.sums = {name: 0.0 for name in VAL_LOSS_TERMS}
        self.images = 0

    def add(self, targets: Mapping[str, np.ndarray], outputs: Mapping[str, Any]) -> None:
        components = self.multibox.components(dict(targets), dict(outputs))
        batch = len(targets["class_targets"])
        for name in self.sums:
            self.sums[name] += float(components[name]) * batch
        self.images += batch

    def means(self, regularization: bool = True) -> dict[str, float]:
        """``{"loss", "localization", "confidence"}``; with ``regularization``, ``loss`` includes the
        model's L2 term (:func:`add_regularization`)."""
        means = {name: total / max(self.images, 1) for name, total in self.sums.items()}
        return add_regularization(means, self.model) if regularization else means


def add_regularization(scores: dict[str, Any], model: "keras.Model") -> dict[str, Any]:
    """``scores`` with the model's L2 term added to its ``loss``, as ``evaluate_detector`` adds it: the
    term depends on which layers train (Keras counts trainable kernels only), the MultiBox terms do not."""
    from tlutils.model import regularization_loss

    scores["loss"] += float(regularization_loss(model))
    return scores
