"""Matching ground truth to default boxes, offset encoding, and its inverse.

Conventions: coordinates are normalized to [0, 1]; ground-truth boxes are **corners**
``(xmin, ymin, xmax, ymax)``; anchors (default boxes) are **centroids** ``(cx, cy, w, h)`` as made by
``tlutils.anchors.generate_anchors``; class 0 is background and object classes are ``1..C``.

``encode`` runs once per image in the input pipeline, so it is plain vectorized NumPy with no backend
calls (target: <= 1 ms per image against SSD300's 8732 anchors, which the per-call overhead of
``keras.ops`` alone would exceed; ``scripts/bench_encoding.py``, figures in docs/performance.md).
``decode_boxes`` runs on network outputs and uses ``keras.ops`` on every backend; ``decode_rows`` is its
NumPy twin for post-processing a few thousand candidate rows (``tlutils.decoding``), where a backend
round trip costs more than the arithmetic.

Matching (section 2.2, "Matching strategy", of Liu et al., "SSD: Single Shot MultiBox Detector",
ECCV 2016, arXiv 1512.02325):

1. **Each ground truth gets its best anchor** (bipartite step), greedily by IoU as in the Caffe
   release and ssd_keras: repeatedly take the highest IoU among the ground truths and anchors not yet
   paired, pair them, and remove both. Ties (equal float32 IoU) go to the lower ground-truth index,
   then the lower anchor index. So two ground truths that want the same anchor get distinct anchors,
   the higher IoU keeping it. A ground truth that overlaps no free anchor (IoU 0) stays unmatched.
2. **Every other anchor with IoU >= pos_iou** with some ground truth gets its best ground truth (ties:
   the lower index). Anchors whose best IoU lies in ``[neg_iou, pos_iou)`` are ignored (-1, left out of
   the loss); the rest are background (0).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from keras import ops

from tlutils.boxes import to_corners

Tensor = Any  # a NumPy array or a backend tensor

# Scales of the encoded offsets (cx, cy, w, h): the "variance" of the prior boxes in the paper's
# Caffe release (PriorBox layer, SSD300 VOC prototxt); torchvision's box coder weights 10, 10, 5, 5.
VARIANCES = (0.1, 0.1, 0.2, 0.2)

# Ground-truth coordinates may leave [0, 1] by this much (rounding in annotations and resizing); they
# are clipped to [0, 1]. Anything further out is an error (usually pixel coordinates, not normalized).
COORDINATE_TOLERANCE = 1e-3

BACKGROUND = 0  # class target of anchors matched to no ground truth
IGNORED = -1  # class target of anchors whose best IoU lies in [neg_iou, pos_iou)


def encode(
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    anchors: np.ndarray,
    pos_iou: float = 0.5,
    neg_iou: float = 0.5,
    variances: Sequence[float] = VARIANCES,
) -> tuple[np.ndarray, np.ndarray]:
    """Training targets of one image: match ground truth to anchors and encode the offsets.

    Args:
        gt_boxes: ``(G, 4)`` normalized corners; ``G = 0`` is allowed (an image without objects).
        gt_labels: ``(G,)`` integer class ids in ``1..C`` (whole floats are accepted; ``C`` is not
            known here, so ids above it are not caught).
        anchors: ``(A, 4)`` centroids (default boxes).
        pos_iou: an anchor with IoU >= ``pos_iou`` with a ground truth is matched to its best one.
        neg_iou: anchors whose best IoU is in ``[neg_iou, pos_iou)`` are ignored (class target -1).
        variances: scales of the four offsets, see ``VARIANCES``.

    Returns:
        ``box_targets`` ``(A, 4)`` float32: for matched anchors
        ``((cx_g - cx_a) / w_a / v0, (cy_g - cy_a) / h_a / v1, log(w_g / w_a) / v2, log(h_g / h_a) / v3)``,
        zeros elsewhere; ``class_targets`` ``(A,)`` int32: the matched class, 0 background, -1 ignored.

    Raises:
        ValueError: bad shapes, NaN, degenerate boxes, coordinates outside [0, 1] by more than
            ``COORDINATE_TOLERANCE``, labels that are not integers >= 1 (naming the box index).
    """
    boxes, labels = _check_ground_truth(gt_boxes, gt_labels)
    anchors = _check_anchors(anchors)
    scale = _check_variances(variances)
    _check_thresholds(pos_iou, neg_iou)
    box_targets = np.zeros((len(anchors), 4), dtype=np.float32)
    class_targets = np.full(len(anchors), BACKGROUND, dtype=np.int32)
    if len(boxes) == 0:
        return box_targets, class_targets
    matched_gt, ignored = _match(_iou_with_anchors(boxes, anchors), pos_iou, neg_iou)
    positive = np.flatnonzero(matched_gt >= 0)
    class_targets[ignored] = IGNORED
    class_targets[positive] = labels[matched_gt[positive]]
    box_targets[positive] = _offsets(boxes[matched_gt[positive]], anchors[positive], scale)
    return box_targets, class_targets


def decode_boxes(box_offsets: Tensor, anchors: Tensor, variances: Sequence[float] = VARIANCES) -> Tensor:
    """Invert ``encode``'s offsets: ``(..., A, 4)`` offsets and ``(A, 4)`` centroids -> ``(..., A, 4)`` corners.

    ``cx = cx_a + t0 * v0 * w_a``, ``cy = cy_a + t1 * v1 * h_a``, ``w = w_a * exp(t2 * v2)``,
    ``h = h_a * exp(t3 * v3)``. Works on batched backend tensors (``keras.ops``).
    """
    scale = ops.convert_to_tensor(_check_variances(variances))
    box_offsets = ops.convert_to_tensor(box_offsets, dtype="float32")
    anchors = ops.convert_to_tensor(anchors, dtype="float32")
    if len(anchors.shape) != 2 or anchors.shape[-1] != 4:
        raise ValueError(f"anchors must have shape (A, 4) (centroids), got {tuple(anchors.shape)}")
    num_anchors = anchors.shape[0]
    if len(box_offsets.shape) < 2 or box_offsets.shape[-1] != 4 or box_offsets.shape[-2] not in (None, num_anchors):
        raise ValueError(
            f"box_offsets must have shape (..., {num_anchors}, 4) to match the anchors, "
            f"got {tuple(box_offsets.shape)}"
        )
    centers = anchors[:, :2] + box_offsets[..., :2] * scale[:2] * anchors[:, 2:]
    sizes = anchors[:, 2:] * ops.exp(box_offsets[..., 2:] * scale[2:])
    return to_corners(ops.concatenate([centers, sizes], axis=-1))


def decode_rows(box_offsets: np.ndarray, anchors: np.ndarray, variances: Sequence[float] = VARIANCES) -> np.ndarray:
    """``decode_boxes`` in NumPy, row by row: ``(N, 4)`` offsets with their own ``(N, 4)`` centroid anchors
    -> ``(N, 4)`` float32 corners (not clipped).
    """
    box_offsets, anchors = np.asarray(box_offsets, np.float32), np.asarray(anchors, np.float32)
    if box_offsets.ndim != 2 or box_offsets.shape[1] != 4 or anchors.shape != box_offsets.shape:
        raise ValueError(
            f"box_offsets and anchors must both have shape (N, 4), got {box_offsets.shape} and {anchors.shape}"
        )
    scale = _check_variances(variances)
    centers = anchors[:, :2] + box_offsets[:, :2] * scale[:2] * anchors[:, 2:]
    half_sizes = anchors[:, 2:] * np.exp(box_offsets[:, 2:] * scale[2:]) / 2.0
    return np.concatenate([centers - half_sizes, centers + half_sizes], axis=1)


def _match(overlaps: np.ndarray, pos_iou: float, neg_iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Match anchors to ground truth from the ``(G, A)`` IoU matrix (see the module docstring).

    Returns ``matched_gt`` ``(A,)`` int64 (ground-truth index, -1 for none) and ``ignored`` ``(A,)``
    bool (best IoU in ``[neg_iou, pos_iou)`` and not matched).
    """
    best_iou = overlaps.max(axis=0)  # (A,)
    matched_gt = np.full(overlaps.shape[1], -1, dtype=np.int64)
    positive = np.flatnonzero(best_iou >= pos_iou)
    matched_gt[positive] = overlaps[:, positive].argmax(axis=0)
    gt_indices, anchor_indices = _match_each_ground_truth(overlaps)
    matched_gt[anchor_indices] = gt_indices  # the bipartite step wins over the threshold step
    ignored = (best_iou >= neg_iou) & (matched_gt < 0)
    return matched_gt, ignored


def _match_each_ground_truth(overlaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bipartite step on the ``(G, A)`` IoU matrix: ``(gt_indices, anchor_indices)`` of the pairs.

    Usually every ground truth's best anchor is a different one, and then those pairs are exactly what
    the greedy matching gives; only when two ground truths want the same anchor the greedy runs.
    """
    best_anchor = overlaps.argmax(axis=1)  # (G,), first maximum: the lowest anchor index on ties
    gt_indices = np.flatnonzero(overlaps[np.arange(len(overlaps)), best_anchor] > 0.0)
    anchor_indices = best_anchor[gt_indices]
    if len(np.unique(anchor_indices)) == len(anchor_indices):
        return gt_indices, anchor_indices
    return _greedy_pairs(overlaps)


def _greedy_pairs(overlaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy bipartite matching: pair the highest remaining IoU, remove its row and column, repeat.

    One loop iteration per ground truth (not per anchor); each is one argmax over ``(G, A)``.
    """
    remaining = overlaps.copy()
    num_anchors = overlaps.shape[1]
    gt_indices, anchor_indices = [], []
    for _ in range(len(overlaps)):
        gt, anchor = divmod(int(remaining.argmax()), num_anchors)  # first maximum: lowest gt, then anchor
        if remaining[gt, anchor] <= 0.0:
            break  # no free anchor overlaps any free ground truth
        gt_indices.append(gt)
        anchor_indices.append(anchor)
        remaining[gt, :] = -1.0
        remaining[:, anchor] = -1.0
    return np.array(gt_indices, dtype=np.int64), np.array(anchor_indices, dtype=np.int64)


def _iou_with_anchors(boxes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """IoU ``(G, A)`` of corners ``boxes`` ``(G, 4)`` with centroid ``anchors`` ``(A, 4)``, float32.

    NumPy counterpart of ``tlutils.boxes.iou`` for the input pipeline, where a ``keras.ops`` call costs
    more than the arithmetic (docs/performance.md). Anchor edges are taken as contiguous ``(A,)`` rows:
    faster than broadcasting ``(A, 4)`` slices.
    """
    cx, cy, width, height = np.ascontiguousarray(anchors.T)  # each (A,)
    gx0, gy0, gx1, gy1 = boxes.astype(np.float32).T[:, :, None]  # each (G, 1)
    inter_w = np.minimum(gx1, cx + width / 2) - np.maximum(gx0, cx - width / 2)  # (G, A)
    inter_h = np.minimum(gy1, cy + height / 2) - np.maximum(gy0, cy - height / 2)
    intersection = np.maximum(inter_w, 0.0) * np.maximum(inter_h, 0.0)
    union = (gx1 - gx0) * (gy1 - gy0) + width * height - intersection  # > 0: boxes are not degenerate
    return intersection / union


def _offsets(boxes: np.ndarray, anchors: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Encoded offsets ``(N, 4)`` of corners ``boxes`` ``(N, 4)`` relative to centroid ``anchors`` ``(N, 4)``.

    The centroids of ``boxes`` are computed here in NumPy rather than with ``tlutils.boxes.to_centroids``,
    whose ``keras.ops`` round trip would take half the time budget of ``encode``.
    """
    centers = (boxes[:, :2] + boxes[:, 2:]) / 2.0
    sizes = boxes[:, 2:] - boxes[:, :2]
    center_offsets = (centers - anchors[:, :2]) / anchors[:, 2:] / scale[:2]
    size_offsets = np.log(sizes / anchors[:, 2:]) / scale[2:]
    return np.concatenate([center_offsets, size_offsets], axis=1)


def _check_ground_truth(gt_boxes: np.ndarray, gt_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(G, 4)`` float64 corners clipped to [0, 1] and ``(G,)`` int32 labels."""
    boxes = _as_array("gt_boxes", gt_boxes, np.float64)
    labels = _as_array("gt_labels", gt_labels, None)
    if boxes.size == 0 and labels.size == 0:
        return np.zeros((0, 4)), np.zeros(0, dtype=np.int32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"gt_boxes must have shape (G, 4) (normalized corners), got {boxes.shape}")
    if labels.ndim != 1 or len(labels) != len(boxes):
        raise ValueError(f"gt_labels must have shape ({len(boxes)},), one label per box; got {labels.shape}")
    _raise_at("gt_boxes", boxes, ~np.isfinite(boxes).all(axis=1), "is not finite (NaN or inf)")
    outside = ((boxes < -COORDINATE_TOLERANCE) | (boxes > 1.0 + COORDINATE_TOLERANCE)).any(axis=1)
    _raise_at(
        "gt_boxes", boxes, outside,
        f"lies outside [0, 1] by more than {COORDINATE_TOLERANCE}: boxes must be normalized corners "
        "(divide pixel coordinates by the image width and height)",
    )
    boxes = np.clip(boxes, 0.0, 1.0)
    for axis, (low, high) in {"x": (0, 2), "y": (1, 3)}.items():
        problem = f"is degenerate: {axis}max <= {axis}min (after clipping to [0, 1])"
        _raise_at("gt_boxes", boxes, boxes[:, high] <= boxes[:, low], problem)
    if labels.dtype.kind not in "iuf":
        raise ValueError(f"gt_labels must be integer class ids 1..C, got dtype {labels.dtype}")
    if labels.dtype.kind == "f":
        _raise_at("gt_labels", labels, ~(labels == np.round(labels)), "is not an integer class id")
    _raise_at("gt_labels", labels, labels < 1, "must be >= 1 (class 0 is background; object classes are 1..C)")
    return boxes, labels.astype(np.int32)


def _check_anchors(anchors: np.ndarray) -> np.ndarray:
    """Validated ``(A, 4)`` float32 centroids with positive width and height."""
    anchors = _as_array("anchors", anchors, np.float32)
    if anchors.ndim != 2 or anchors.shape[1] != 4 or len(anchors) == 0:
        raise ValueError(f"anchors must have shape (A, 4) with A > 0 (centroids), got {anchors.shape}")
    if not (np.isfinite(anchors).all() and (anchors[:, 2:] > 0.0).all()):  # fast check; find the index if it fails
        usable = np.isfinite(anchors).all(axis=1) & (anchors[:, 2:] > 0.0).all(axis=1)
        _raise_at("anchors", anchors, ~usable, "must be finite with a positive w and h")
    return anchors


def _check_variances(variances: Sequence[float]) -> np.ndarray:
    scale = np.asarray(variances, dtype=np.float32)
    if scale.shape != (4,) or not (np.isfinite(scale) & (scale > 0)).all():
        raise ValueError(f"variances must be 4 positive numbers (cx, cy, w, h), got {variances!r}")
    return scale


def _check_thresholds(pos_iou: float, neg_iou: float) -> None:
    if not 0.0 < pos_iou <= 1.0:
        raise ValueError(f"pos_iou = {pos_iou} must lie in (0, 1]")
    if not 0.0 <= neg_iou <= pos_iou:
        raise ValueError(f"neg_iou = {neg_iou} must lie in [0, pos_iou = {pos_iou}]")


def _as_array(name: str, values: object, dtype: type | None) -> np.ndarray:
    """``np.asarray`` with a ValueError naming ``name`` for ragged or non-numeric input."""
    try:
        return np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a numeric array: {error}") from None


def _raise_at(name: str, values: np.ndarray, bad: np.ndarray, problem: str) -> None:
    """Raise ValueError naming the first index where ``bad`` (a ``(N,)`` mask) is set, if any."""
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{index}] = {values[index].tolist()} {problem}")
