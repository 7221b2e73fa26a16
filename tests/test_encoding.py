"""Matching and offset encoding: hand-worked cases, a loop reference on random cases, decode round trips."""

import math

import numpy as np
import pytest
from keras import ops

from tlutils.anchors import AnchorConfig, generate_anchors
from tlutils.encoding import VARIANCES, decode_boxes, decode_rows, encode

pytestmark = pytest.mark.core


def centroids(corners) -> np.ndarray:
    """Test helper: corners (N, 4) -> centroids (N, 4), float32 like generated anchors."""
    corners = np.asarray(corners, dtype=np.float64)
    centers, sizes = (corners[:, :2] + corners[:, 2:]) / 2, corners[:, 2:] - corners[:, :2]
    return np.concatenate([centers, sizes], axis=1).astype(np.float32)


# --- The loop reference (test oracle): the matching rules written as plain loops over pairs. ---


def corner_iou(a, b) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    intersection = width * height
    return intersection / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection)


def reference_overlaps(gt_boxes, anchors) -> list[list[float]]:
    """IoU [gt][anchor] of corners ``gt_boxes`` with centroid ``anchors``."""
    anchor_corners = [(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2) for cx, cy, w, h in anchors.tolist()]
    return [[corner_iou(box, anchor) for anchor in anchor_corners] for box in gt_boxes.tolist()]


def reference_match(overlaps, pos_iou, neg_iou) -> tuple[list[int], list[bool]]:
    """Per anchor: the matched ground-truth index (-1 none) and whether it is ignored."""
    num_gts, num_anchors = len(overlaps), len(overlaps[0])
    matched = [-1] * num_anchors
    free_gts, free_anchors = list(range(num_gts)), list(range(num_anchors))
    while True:  # bipartite: the highest IoU among free pairs first; ties to the lower gt, then anchor
        best_iou, best_gt, best_anchor = 0.0, -1, -1
        for gt in free_gts:
            for anchor in free_anchors:
                if overlaps[gt][anchor] > best_iou:
                    best_iou, best_gt, best_anchor = overlaps[gt][anchor], gt, anchor
        if best_gt < 0:
            break
        matched[best_anchor] = best_gt
        free_gts.remove(best_gt)
        free_anchors.remove(best_anchor)
    ignored = [False] * num_anchors
    for anchor in free_anchors:  # threshold step for the anchors the bipartite step left
        best_iou, best_gt = 0.0, -1
        for gt in range(num_gts):
            if overlaps[gt][anchor] > best_iou:
                best_iou, best_gt = overlaps[gt][anchor], gt
        if best_iou >= pos_iou:
            matched[anchor] = best_gt
        elif best_iou >= neg_iou:
            ignored[anchor] = True
    return matched, ignored


def reference_offsets(box, anchor) -> list[float]:
    gx, gy, gw, gh = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]
    ax, ay, aw, ah = anchor
    v0, v1, v2, v3 = VARIANCES
    return [(gx - ax) / aw / v0, (gy - ay) / ah / v1, math.log(gw / aw) / v2, math.log(gh / ah) / v3]


def random_boxes(rng, count) -> np.ndarray:
    """Random corners with sides 0.05 .. 0.5; some boxes repeat an earlier one exactly or nearly."""
    top_left = rng.uniform(0.0, 0.5, size=(count, 2))
    boxes = np.concatenate([top_left, top_left + rng.uniform(0.05, 0.5, size=(count, 2))], axis=1)
    for index in range(1, count):
        if rng.uniform() < 0.3:  # near-duplicates make ground truths compete for the same anchor
            boxes[index] = np.clip(boxes[index - 1] + rng.uniform(-0.02, 0.02, size=4) * (rng.uniform() < 0.7), 0, 1)
    return boxes.astype(np.float32)


# --- Hand-worked cases. ---

# Two ground truths and five anchors (corners, then the IoUs that decide):
GT_BOXES = np.array([[0.1, 0.1, 0.5, 0.5], [0.7, 0.75, 0.9, 0.9]])  # areas 0.16 and 0.03
GT_LABELS = np.array([3, 7])
ANCHORS = centroids(
    [
        [0.1, 0.1, 0.5, 0.6],  # IoU with gt 0: 0.16 / 0.2 = 0.8 -> gt 0's best (bipartite)
        [0.1, 0.2, 0.5, 0.5],  # gt 0: 0.12 / 0.16 = 0.75 >= 0.5 -> matched by threshold
        [0.25, 0.1, 0.65, 0.5],  # gt 0: 0.1 / 0.22 = 0.4545 in [0.4, 0.5) -> ignored
        [0.6, 0.6, 1.0, 1.0],  # gt 1: 0.03 / 0.16 = 0.1875 < 0.5, but gt 1's best -> matched
        [0.5, 0.5, 0.8, 0.8],  # gt 1: 0.005 / 0.115 = 0.0435; gt 0: touches a corner, 0 -> background
    ]
)


def test_two_ground_truths_five_anchors_by_hand():
    box_targets, class_targets = encode(GT_BOXES, GT_LABELS, ANCHORS, pos_iou=0.5, neg_iou=0.4)
    np.testing.assert_array_equal(class_targets, [3, 3, -1, 7, 0])
    assert class_targets.dtype == np.int32 and box_targets.dtype == np.float32
    # gt 0 centroid (0.3, 0.3, 0.4, 0.4); gt 1 centroid (0.8, 0.825, 0.2, 0.15).
    expected = [
        # anchor 0 (0.3, 0.35, 0.4, 0.5): (0, -0.05/0.5/0.1, 0, 5 ln(0.4/0.5))
        [0.0, -1.0, 0.0, -1.1157177565710485],
        # anchor 1 (0.3, 0.35, 0.4, 0.3): (0, -0.05/0.3/0.1, 0, 5 ln(0.4/0.3))
        [0.0, -1.6666666666666667, 0.0, 1.4384103622589044],
        [0.0, 0.0, 0.0, 0.0],  # ignored: no box target
        # anchor 3 (0.8, 0.8, 0.4, 0.4): (0, 0.025/0.4/0.1, 5 ln(0.2/0.4), 5 ln(0.15/0.4))
        [0.0, 0.625, -3.4657359027997265, -4.904146265058631],
        [0.0, 0.0, 0.0, 0.0],
    ]
    np.testing.assert_allclose(box_targets, expected, atol=2e-6)


def test_default_thresholds_ignore_nothing():
    _, class_targets = encode(GT_BOXES, GT_LABELS, ANCHORS)
    np.testing.assert_array_equal(class_targets, [3, 3, 0, 7, 0])


# Two ground truths want the same anchor X; the higher IoU keeps it, the other moves to its next best.
CONFLICT_GT = np.array([[0.0, 0.0, 0.4, 0.4], [0.1, 0.0, 0.5, 0.4]])
CONFLICT_ANCHORS = centroids(
    [
        [0.0, 0.0, 0.42, 0.4],  # X: gt 0 0.16 / 0.168 = 0.952; gt 1 0.128 / 0.2 = 0.64 (also gt 1's best)
        [0.2, 0.0, 0.6, 0.4],  # Y: gt 0 0.08 / 0.24 = 0.333; gt 1 0.12 / 0.2 = 0.6 (gt 1's second best)
        [0.6, 0.6, 1.0, 1.0],  # Z: no overlap
    ]
)


@pytest.mark.parametrize("order", [[0, 1], [1, 0]])
def test_ground_truths_competing_for_one_anchor_get_distinct_anchors(order):
    # pos_iou 0.7: only the bipartite step matches Y; neg_iou 0.5 would otherwise ignore it (0.6).
    box_targets, class_targets = encode(CONFLICT_GT[order], np.array([1, 2])[order], CONFLICT_ANCHORS, 0.7, 0.5)
    np.testing.assert_array_equal(class_targets, [1, 2, 0])  # by IoU, whatever the input order
    expected = [
        # X (0.21, 0.2, 0.42, 0.4) -> gt 0 (0.2, 0.2, 0.4, 0.4): (-0.01 / 0.42 / 0.1, 0, 5 ln(0.4 / 0.42), 0)
        [-0.23809523809523808, 0.0, -0.24395082084716025, 0.0],
        # Y (0.4, 0.2, 0.4, 0.4) -> gt 1 (0.3, 0.2, 0.4, 0.4): (-0.1 / 0.4 / 0.1, 0, 0, 0)
        [-2.5, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
    ]
    np.testing.assert_allclose(box_targets, expected, atol=2e-6)


def test_equal_ground_truths_tie_to_the_lower_index():
    boxes = np.array([[0.0, 0.0, 0.4, 0.4], [0.0, 0.0, 0.4, 0.4]])
    anchors = centroids([[0.0, 0.0, 0.4, 0.5], [0.0, 0.0, 0.4, 0.4]])  # IoU 0.8 and 1.0 with both
    _, class_targets = encode(boxes, np.array([5, 6]), anchors, pos_iou=0.9, neg_iou=0.9)
    np.testing.assert_array_equal(class_targets, [6, 5])  # gt 0 takes the IoU-1 anchor, gt 1 the other


def test_more_ground_truths_than_anchors_and_a_ground_truth_overlapping_nothing():
    boxes = np.array([[0.0, 0.0, 0.4, 0.4], [0.05, 0.0, 0.45, 0.4], [0.1, 0.0, 0.5, 0.4], [0.9, 0.9, 1.0, 1.0]])
    anchors = centroids([[0.0, 0.0, 0.4, 0.4], [0.1, 0.0, 0.5, 0.4]])
    _, class_targets = encode(boxes, np.array([1, 2, 3, 4]), anchors, pos_iou=0.99, neg_iou=0.99)
    np.testing.assert_array_equal(class_targets, [1, 3])  # gt 1 (IoU 0.6 with both) finds no free anchor


def test_no_ground_truth_gives_background_everywhere():
    anchors = generate_anchors(AnchorConfig.ssd300())
    for boxes, labels in [(np.zeros((0, 4)), np.zeros(0, dtype=np.int64)), ([], [])]:
        box_targets, class_targets = encode(boxes, labels, anchors)
        assert box_targets.shape == (8732, 4) and not box_targets.any()
        assert class_targets.shape == (8732,) and not class_targets.any()


def test_coordinates_within_tolerance_are_clipped():
    slightly_out = np.array([[-0.0005, 0.1, 0.5, 1.0009]])
    clipped = np.array([[0.0, 0.1, 0.5, 1.0]])
    anchors = generate_anchors(AnchorConfig.ssd300())
    for got, expected in zip(encode(slightly_out, [2], anchors), encode(clipped, [2], anchors)):
        np.testing.assert_array_equal(got, expected)


# --- Random cases against the loop reference; round trips through decode_boxes. ---


def test_matching_equals_the_loop_reference_on_random_cases(rng):
    # Random anchors, not a grid: a grid's same-scale anchors tie exactly in IoU with a box inside them
    # (equal areas), and float32 vs float64 rounding may then break the tie either way.
    conflicts = ignored_total = positives_total = gts_total = 0
    for case in range(40):
        anchors = centroids(random_boxes(rng, 60))
        boxes = random_boxes(rng, int(rng.integers(1, 9)))
        labels = np.arange(1, len(boxes) + 1)
        box_targets, class_targets = encode(boxes, labels, anchors, pos_iou=0.5, neg_iou=0.3)
        overlaps = reference_overlaps(boxes, anchors)
        matched, ignored = reference_match(overlaps, pos_iou=0.5, neg_iou=0.3)
        expected_classes = [gt + 1 if gt >= 0 else (-1 if skip else 0) for gt, skip in zip(matched, ignored)]
        np.testing.assert_array_equal(class_targets, expected_classes, err_msg=f"case {case}")
        expected_boxes = [
            reference_offsets(boxes[gt].tolist(), anchor) if gt >= 0 else [0.0] * 4
            for gt, anchor in zip(matched, anchors.tolist())
        ]
        np.testing.assert_allclose(box_targets, expected_boxes, atol=1e-5, err_msg=f"case {case}")
        best_anchors = [row.index(max(row)) for row in overlaps]
        conflicts += len(set(best_anchors)) < len(best_anchors)
        ignored_total, positives_total = ignored_total + sum(ignored), positives_total + (class_targets > 0).sum()
        gts_total += len(boxes)
    # The cases must exercise every rule: competing ground truths, threshold matches, ignored anchors.
    assert conflicts >= 5 and positives_total > gts_total and ignored_total > 0


def test_encode_then_decode_gives_back_the_ground_truth_on_ssd300(rng):
    anchors = generate_anchors(AnchorConfig.ssd300())
    boxes = random_boxes(rng, 10)
    box_targets, class_targets = encode(boxes, np.arange(1, 11), anchors)
    matched = np.flatnonzero(class_targets > 0)
    assert len(np.unique(class_targets[matched])) == 10  # every ground truth got at least its best anchor
    decoded = ops.convert_to_numpy(decode_boxes(box_targets, anchors))
    np.testing.assert_allclose(decoded[matched], boxes[class_targets[matched] - 1], atol=1e-5)


def test_decode_boxes_batched_equals_numpy(rng):
    anchors = generate_anchors(AnchorConfig.from_feature_maps(64, (4, 2, 1)))
    offsets = rng.normal(size=(2, len(anchors), 4)).astype(np.float32)
    cx = anchors[:, 0] + offsets[..., 0] * 0.1 * anchors[:, 2]
    cy = anchors[:, 1] + offsets[..., 1] * 0.1 * anchors[:, 3]
    w = anchors[:, 2] * np.exp(offsets[..., 2] * 0.2)
    h = anchors[:, 3] * np.exp(offsets[..., 3] * 0.2)
    expected = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)
    got = decode_boxes(ops.convert_to_tensor(offsets), anchors)
    assert tuple(got.shape) == (2, len(anchors), 4)
    np.testing.assert_allclose(ops.convert_to_numpy(got), expected, atol=1e-5)


def test_decode_rows_equals_decode_boxes_row_by_row(rng):
    anchors = generate_anchors(AnchorConfig.from_feature_maps(64, (4, 2, 1)))
    offsets = rng.normal(size=(len(anchors), 4)).astype(np.float32)
    rows = rng.permutation(len(anchors))[:25]  # candidates: any anchors, in any order
    expected = ops.convert_to_numpy(decode_boxes(offsets, anchors))[rows]
    got = decode_rows(offsets[rows], anchors[rows], VARIANCES)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_decode_rows_rejects_rows_without_their_anchors():
    with pytest.raises(ValueError, match="both have shape"):
        decode_rows(np.zeros((3, 4)), np.ones((2, 4)))


def test_decode_of_zero_offsets_is_the_anchor():
    anchors = centroids([[0.1, 0.2, 0.5, 0.6]])
    decoded = ops.convert_to_numpy(decode_boxes(np.zeros((1, 4)), anchors))
    np.testing.assert_allclose(decoded, [[0.1, 0.2, 0.5, 0.6]], atol=1e-7)


# --- Bad input. ---

GOOD_BOX = [0.1, 0.1, 0.5, 0.5]


@pytest.mark.parametrize(
    ("boxes", "labels", "message"),
    [
        ([GOOD_BOX, [0.5, 0.1, 0.5, 0.4]], [1, 2], r"gt_boxes\[1\] = .* degenerate: xmax <= xmin"),
        ([GOOD_BOX, [0.1, 0.4, 0.5, 0.3]], [1, 2], r"gt_boxes\[1\] = .* degenerate: ymax <= ymin"),
        ([[1.0002, 0.1, 1.0005, 0.5]], [1], r"gt_boxes\[0\] = .* degenerate: xmax <= xmin \(after clipping"),
        ([GOOD_BOX, [0.1, 0.1, 1.01, 0.5]], [1, 2], r"gt_boxes\[1\] = .* outside \[0, 1\] by more than 0.001"),
        ([[10.0, 20.0, 50.0, 80.0]], [1], r"gt_boxes\[0\] = .* \(divide pixel coordinates"),
        ([[-0.01, 0.1, 0.5, 0.5]], [1], r"gt_boxes\[0\] = .* outside \[0, 1\]"),
        ([GOOD_BOX, [0.1, float("nan"), 0.5, 0.5]], [1, 2], r"gt_boxes\[1\] = .* not finite"),
        ([GOOD_BOX, GOOD_BOX], [3, 0], r"gt_labels\[1\] = 0 must be >= 1"),
        ([GOOD_BOX, GOOD_BOX], [2, -4], r"gt_labels\[1\] = -4 must be >= 1"),
        ([GOOD_BOX, GOOD_BOX], [1.5, 2.0], r"gt_labels\[0\] = 1.5 is not an integer"),
        ([GOOD_BOX], [float("nan")], r"gt_labels\[0\] = nan is not an integer"),
        ([GOOD_BOX], ["stop"], r"gt_labels must be integer class ids 1..C, got dtype <U4"),
        ([GOOD_BOX, GOOD_BOX], [1, 2, 3], r"gt_labels must have shape \(2,\), one label per box; got \(3,\)"),
        ([GOOD_BOX], [], r"gt_labels must have shape \(1,\)"),
        ([[0.1, 0.1, 0.5]], [1], r"gt_boxes must have shape \(G, 4\) .* got \(1, 3\)"),
        (GOOD_BOX, [1], r"gt_boxes must have shape \(G, 4\) .* got \(4,\)"),
        ([GOOD_BOX, [0.1, 0.2]], [1, 2], r"gt_boxes must be a numeric array"),
    ],
)
def test_bad_ground_truth_raises(boxes, labels, message):
    with pytest.raises(ValueError, match=message):
        encode(boxes, labels, ANCHORS)


def test_float_labels_with_whole_values_are_accepted():
    _, class_targets = encode(GT_BOXES, np.array([3.0, 7.0]), ANCHORS)
    np.testing.assert_array_equal(class_targets, [3, 3, 0, 7, 0])


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        (dict(anchors=ANCHORS[:, :3]), r"anchors must have shape \(A, 4\)"),
        (dict(anchors=np.array([[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.0, 0.2]])), r"anchors\[1\] = .* positive w and h"),
        (dict(anchors=np.array([[0.5, np.nan, 0.2, 0.2]])), r"anchors\[0\] = .* must be finite"),
        (dict(pos_iou=0.0), r"pos_iou = 0.0 must lie in \(0, 1\]"),
        (dict(pos_iou=0.4, neg_iou=0.5), r"neg_iou = 0.5 must lie in \[0, pos_iou = 0.4\]"),
        (dict(variances=(0.1, 0.1, 0.2)), r"variances must be 4 positive numbers"),
    ],
)
def test_bad_settings_raise(keywords, message):
    with pytest.raises(ValueError, match=message):
        encode(GT_BOXES, GT_LABELS, **{"anchors": ANCHORS, **keywords})


def test_decode_boxes_rejects_offsets_that_do_not_fit_the_anchors():
    with pytest.raises(ValueError, match=r"box_offsets must have shape \(\.\.\., 5, 4\) .* got \(2, 6, 4\)"):
        decode_boxes(np.zeros((2, 6, 4)), ANCHORS)
    with pytest.raises(ValueError, match=r"anchors must have shape \(A, 4\)"):
        decode_boxes(np.zeros((5, 4)), ANCHORS[:, :2])
