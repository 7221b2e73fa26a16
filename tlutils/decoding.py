"""From network outputs to detections: softmax, box decoding, per-class NMS, top-k.

Conventions: coordinates are normalized to [0, 1] (x by the input's width, y by its height, so a
non-square input decodes as a square one); detections' boxes are **corners**
``(xmin, ymin, xmax, ymax)``, clipped to [0, 1]; anchors are **centroids** ``(cx, cy, w, h)``
(``tlutils.anchors``). Class 0 is background and is never reported; labels are ``1..C``.

Inference as in the SSD paper (Liu et al., ECCV 2016, section 3, "Inference time") and its Caffe
``DetectionOutput`` layer: per anchor a softmax over the ``C + 1`` classes; per class keep the scores
above ``score_threshold`` (0.01), at most ``nms_top_k`` (400) of them, and run greedy
non-maximum suppression at IoU ``iou_threshold`` (0.45); then keep the ``top_k`` (200) best
detections of the image over all classes.

The softmax runs on the backend (``keras.ops``); the rest is vectorized NumPy post-processing, batched
over images and classes (no Python loop over anchors, boxes or classes):

1. **Candidates.** The greedy NMS decides boxes in descending score order, and a box's fate depends
   only on higher-scored boxes of its class. So if an image's ``M`` best candidates leave ``top_k``
   boxes after NMS, lower-scored candidates cannot change the result. Each image starts with the
   candidates scoring at least its ``M``-th best per-anchor maximum (``M = 2 top_k``: at least the
   ``M`` best candidates, found on ``(B, A)`` maxima instead of all ``(B, A, C)`` scores); images
   that end with fewer than ``top_k`` boxes while candidates remain go again with ``M`` doubled.
   The result is exactly that of NMS over all candidates. Only the candidates' boxes are decoded
   (``tlutils.encoding.decode_rows``, the NumPy twin of ``decode_boxes``).
2. **NMS.** Pairs of candidates of the same image and class that can overlap enough are listed with
   a sweep line over ``xmin`` (IoU > t needs the x-ranges to overlap by more than t times either
   width), their IoU computed in one vector, and the greedy NMS is resolved on this overlap graph in
   rounds: keep every undecided box that no undecided higher-scored box overlaps, suppress what it
   overlaps. Each round decides at least the best undecided box of every class.

Target: a batch of 32 SSD300 outputs in under 50 ms on 2 CPU cores, so decoding never dominates an
evaluation; ``scripts/bench_decoding.py`` measures it (figures per class count in docs/performance.md).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from keras import ops

from tlutils.boxes import iou_numpy
from tlutils.encoding import VARIANCES, decode_rows

Tensor = Any  # a NumPy array or a backend tensor

#: Minimum class probability of a reported box (SSD paper, section 3: "confidence threshold of 0.01").
SCORE_THRESHOLD = 0.01
#: Boxes of the same class overlapping a higher-scored kept box by more than this IoU are suppressed
#: (SSD paper, section 3: "non-maximum suppression (nms) with jaccard overlap of 0.45 per class").
NMS_IOU_THRESHOLD = 0.45
#: Detections kept per image (SSD paper, section 3: "keep the top 200 detections per image").
TOP_K = 200
#: Candidates per class and image entering NMS (Caffe SSD ``DetectionOutput`` ``nms_param { top_k: 400 }``;
#: torchvision's SSD ``topk_candidates=400``).
NMS_TOP_K = 400
#: Slack of the sweep line that lists candidate pairs for NMS: pairs whose IoU is within float rounding
#: of the threshold are still compared exactly.
PAIR_MARGIN = 1e-6
#: The first candidate pass of an image covers ``CANDIDATE_FACTOR * top_k`` candidates (see step 1).
CANDIDATE_FACTOR = 2


def decode_detections(
    class_logits: Tensor,
    box_offsets: Tensor,
    anchors: Tensor,
    score_threshold: float = SCORE_THRESHOLD,
    iou_threshold: float = NMS_IOU_THRESHOLD,
    top_k: int = TOP_K,
    variances: Sequence[float] = VARIANCES,
    nms_top_k: int = NMS_TOP_K,
) -> list[dict[str, np.ndarray]]:
    """Detections of a batch: softmax, decode, per-class NMS, top-k (see the module docstring).

    Args:
        class_logits: ``(B, A, C + 1)`` raw class scores, background first.
        box_offsets: ``(B, A, 4)`` encoded offsets (``tlutils.encoding``).
        anchors: ``(A, 4)`` centroids, the anchors the network was trained with.
        score_threshold: a (box, class) is a candidate if its softmax probability is above this.
        iou_threshold: a candidate is suppressed by a kept higher-scored box of the same class if
            their IoU is above this (an IoU equal to it is kept).
        top_k: at most this many detections per image, the best over all classes.
        variances: the offsets' scales used in training (``tlutils.encoding.VARIANCES``).
        nms_top_k: at most this many candidates per class and image (the best) enter NMS; a cap
            that bounds the NMS work and changes nothing unless a class has more candidates.

    Returns:
        One dict per image, sorted by descending score: ``boxes`` ``(K, 4)`` float32 corners clipped
        to [0, 1], ``scores`` ``(K,)`` float32 softmax probabilities, ``labels`` ``(K,)`` int32 in
        ``1..C``; ``K <= top_k``.
    """
    _check_parameters(score_threshold, iou_threshold, top_k, nms_top_k)
    class_logits = ops.convert_to_tensor(class_logits)
    offsets = np.asarray(_as_numpy(box_offsets), dtype=np.float32)
    anchors = np.asarray(_as_numpy(anchors), dtype=np.float32)
    _check_shapes(tuple(class_logits.shape), offsets.shape, anchors.shape)
    probabilities = ops.softmax(ops.cast(class_logits, "float32"), axis=-1)
    object_scores = _as_numpy(probabilities)[..., 1:]  # (B, A, C), class c + 1 at index c
    best_scores = _as_numpy(ops.max(probabilities[..., 1:], axis=-1))  # (B, A)

    detections: list[dict[str, np.ndarray] | None] = [None] * len(offsets)
    pending = np.arange(len(offsets))
    budget = int(CANDIDATE_FACTOR * top_k)
    while pending.size:
        candidates, complete = _candidates(object_scores, best_scores, pending, budget, score_threshold)
        position, anchor_index, labels, scores = candidates  # position: index into `pending`
        image_index = pending[position]
        boxes = np.clip(decode_rows(offsets[image_index, anchor_index], anchors[anchor_index], variances), 0.0, 1.0)
        groups = image_index * object_scores.shape[-1] + labels  # one group per image and class
        kept = batched_nms(boxes, scores, groups, iou_threshold, max_per_group=nms_top_k)
        kept = kept[np.argsort(position[kept], kind="stable")]  # by image, descending score within
        counts = np.bincount(position[kept], minlength=len(pending))
        complete |= counts >= top_k
        starts = np.cumsum(counts) - counts
        for done in np.flatnonzero(complete):
            chosen = kept[starts[done] : starts[done] + min(counts[done], top_k)]
            detections[pending[done]] = {"boxes": boxes[chosen], "scores": scores[chosen], "labels": labels[chosen]}
        pending = pending[~complete]
        budget *= 2
    return detections  # type: ignore[return-value]


def _as_numpy(tensor: Tensor) -> np.ndarray:
    """``tensor`` as a NumPy array, without a copy where the backend allows it.

    ``keras.ops.convert_to_numpy`` copies (TensorFlow: ``np.array``): 49 MB for a batch of 32 SSD300
    outputs with 43 classes (32 x 8732 x 44 floats), a measurable share of decoding (docs/performance.md).
    ``np.asarray`` shares the buffer of a CPU tensor of TensorFlow or JAX (read-only); other tensors
    (e.g. torch on a GPU) are copied by ``convert_to_numpy``.
    """
    try:
        return np.asarray(tensor)
    except (TypeError, RuntimeError, ValueError):
        return ops.convert_to_numpy(tensor)


def _candidates(
    object_scores: np.ndarray, best_scores: np.ndarray, images: np.ndarray, budget: int, score_threshold: float
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The candidates of some images that their first ``budget`` candidates in score order need (step 1).

    Args:
        object_scores: ``(B, A, C)`` probabilities of classes ``1..C``.
        best_scores: ``(B, A)`` their maximum over classes.
        images: ``(P,)`` the images to look at.
        budget: ``M``; an image's candidates are those scoring at least its ``M``-th best per-anchor
            maximum (so at least its ``M`` best candidates), or all of them.
        score_threshold: candidates score above this.

    Returns:
        ``(position, anchor_index, labels, scores)``, each ``(N,)``, ``position`` indexing ``images``;
        and ``covered`` ``(P,)`` bool: all of the image's candidates are there.
    """
    best = best_scores[images]  # (P, A)
    above = best > score_threshold
    covered = above.sum(axis=1) <= budget
    cut = np.full(len(images), -np.inf, dtype=best.dtype)
    if not covered.all():
        kth = best.shape[1] - budget  # the budget-th largest per-anchor maximum
        cut[~covered] = np.partition(best[~covered], kth, axis=1)[:, kth]
    position, anchor_index = np.nonzero(above & (best >= cut[:, None]))  # candidate anchors
    anchor_scores = object_scores[images[position], anchor_index]  # (N_anchors, C)
    row, class_index = np.nonzero((anchor_scores > score_threshold) & (anchor_scores >= cut[position, None]))
    labels = class_index.astype(np.int32) + 1
    return (position[row], anchor_index[row], labels, anchor_scores[row, class_index]), covered


def _check_shapes(logits_shape: tuple, offsets_shape: tuple, anchors_shape: tuple) -> None:
    """Raise ``ValueError`` unless the shapes are ``(B, A, C + 1)``, ``(B, A, 4)`` and ``(A, 4)``."""
    if len(logits_shape) != 3 or logits_shape[-1] < 2:
        raise ValueError(f"class_logits must have shape (B, A, C + 1) with C >= 1, got {logits_shape}")
    if len(anchors_shape) != 2 or anchors_shape[-1] != 4:
        raise ValueError(f"anchors must have shape (A, 4) (centroids), got {anchors_shape}")
    expected = (logits_shape[0], anchors_shape[0], 4)
    if offsets_shape != expected or logits_shape[1] != anchors_shape[0]:
        raise ValueError(
            f"shapes disagree: class_logits {logits_shape} and box_offsets {offsets_shape} must be "
            f"(B, A, C + 1) and (B, A, 4) with A = {anchors_shape[0]} anchors"
        )


def batched_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    iou_threshold: float,
    max_per_group: int | None = None,
) -> np.ndarray:
    """Greedy non-maximum suppression within each group (e.g. per class, or per image and class).

    A box is suppressed if a kept box of its group with a higher score (ties: the lower index) has
    IoU > ``iou_threshold`` with it. Boxes of different groups never suppress each other.

    Args:
        boxes: ``(N, 4)`` corners.
        scores: ``(N,)``.
        groups: ``(N,)`` integer group of each box.
        iou_threshold: suppress above this IoU.
        max_per_group: only the best ``max_per_group`` boxes of each group take part (the rest are
            dropped); ``None`` for all.

    Returns:
        Indices of the kept boxes, by descending score (ties: the lower index first).
    """
    boxes, scores, groups = np.asarray(boxes), np.asarray(scores), np.asarray(groups, dtype=np.int64)
    order = np.lexsort((-scores, groups))  # by group, then descending score, then index: the priority
    if max_per_group is not None:
        sorted_groups = groups[order]
        starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
        rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        order = order[rank < max_per_group]
    sorted_boxes = boxes[order]
    first, second = _overlap_candidates(sorted_boxes, groups[order], iou_threshold)
    overlapping = iou_numpy(sorted_boxes[first], sorted_boxes[second]) > iou_threshold
    first, second = first[overlapping], second[overlapping]
    # In `order`, a smaller position in the same group is a higher priority.
    keep = _greedy_keep(len(order), np.minimum(first, second), np.maximum(first, second))
    kept = np.sort(order[keep])
    return kept[np.argsort(-scores[kept], kind="stable")]


def _overlap_candidates(boxes: np.ndarray, groups: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)`` of boxes in the same group that may overlap by more than ``iou_threshold``.

    IoU <= intersection width / width of either box, so IoU > t needs the boxes' x-ranges to overlap
    by more than ``t`` times the width of each. Within each group, sorted by ``xmin``, box ``i`` is
    paired only with the boxes after it whose ``xmin`` lies below ``xmax_i - t * width_i`` (a sweep
    line), which leaves out most pairs of boxes far apart. Each pair is listed once.

    Args:
        boxes: ``(N, 4)`` corners.
        groups: ``(N,)`` int64.

    Returns:
        ``first``, ``second``: ``(P,)`` indices into ``boxes``.
    """
    if len(boxes) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    by_x = np.lexsort((boxes[:, 0], groups))  # by group, then xmin
    # One sorted line for all groups: group g occupies [g * span, g * span + span - 1].
    low = float(boxes[:, 0].min())
    span = float(boxes[:, 2].max()) - low + 1.0
    line = groups[by_x] * span - low
    starts = line + boxes[by_x, 0]  # (N,) sorted
    reach = line + boxes[by_x, 2] - iou_threshold * (boxes[by_x, 2] - boxes[by_x, 0]) + PAIR_MARGIN
    partners = np.maximum(np.searchsorted(starts, reach) - np.arange(len(by_x)) - 1, 0)
    first = np.repeat(np.arange(len(by_x)), partners)  # (P,) positions in by_x
    pair_starts = np.cumsum(partners) - partners
    second = first + 1 + (np.arange(len(first)) - np.repeat(pair_starts, partners))
    return by_x[first], by_x[second]


def _greedy_keep(num_boxes: int, higher: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Resolve greedy NMS on the overlap graph: edge ``higher[e] -> lower[e]`` (higher-scored first).

    Each round keeps every undecided box with no undecided overlapping higher-scored box left (its
    such boxes were all suppressed), suppresses the boxes these overlap, and drops decided edges.

    Returns:
        ``(num_boxes,)`` bool, True for kept boxes.
    """
    state = np.zeros(num_boxes, dtype=np.int8)  # 0 undecided, 1 kept, 2 suppressed
    while True:
        undecided = state == 0
        if not undecided.any():
            return state == 1
        has_open_parent = np.zeros(num_boxes, dtype=bool)
        has_open_parent[lower] = True
        newly_kept = undecided & ~has_open_parent
        state[newly_kept] = 1
        state[lower[newly_kept[higher]]] = 2
        open_edge = (state[higher] == 0) & (state[lower] == 0)
        higher, lower = higher[open_edge], lower[open_edge]


def _check_parameters(score_threshold: float, iou_threshold: float, top_k: int, nms_top_k: int) -> None:
    """Raise ``ValueError`` for thresholds outside their range and non-positive counts."""
    if not 0.0 <= score_threshold < 1.0:
        raise ValueError(f"score_threshold must lie in [0, 1), got {score_threshold}")
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must lie in (0, 1], got {iou_threshold}")
    for name, value in (("top_k", top_k), ("nms_top_k", nms_top_k)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
