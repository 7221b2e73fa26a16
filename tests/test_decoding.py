"""Detections from network outputs: hand-made NMS cases, a loop reference, top-k, thresholds, round trips."""

import numpy as np
import pytest
from keras import ops

from tlutils.anchors import AnchorConfig, generate_anchors
from tlutils.boxes import iou
from tlutils.boxes import iou_numpy
from tlutils.decoding import batched_nms, decode_detections
from tlutils.encoding import decode_boxes, encode

pytestmark = pytest.mark.core


def centroids(corners) -> np.ndarray:
    """Corners (N, 4) -> centroids (N, 4) float32 (exact for the dyadic boxes used here)."""
    corners = np.asarray(corners, dtype=np.float64)
    centers, sizes = (corners[:, :2] + corners[:, 2:]) / 2, corners[:, 2:] - corners[:, :2]
    return np.concatenate([centers, sizes], axis=1).astype(np.float32)


def logits_for(probabilities) -> np.ndarray:
    """Logits whose softmax is ``probabilities`` (rows summing to 1; zeros become 1e-9)."""
    return np.log(np.maximum(np.asarray(probabilities, dtype=np.float64), 1e-9)).astype(np.float32)


def loop_nms(boxes, scores, iou_threshold):
    """Greedy NMS written out: visit boxes by descending score, keep those no kept box overlaps too much."""
    kept = []
    for index in sorted(range(len(scores)), key=lambda i: (-scores[i], i)):
        if all(iou_numpy(boxes[k], boxes[index]) <= iou_threshold for k in kept):
            kept.append(index)
    return kept


def reference_detections(logits, offsets, anchors, score_threshold, iou_threshold, top_k, nms_top_k):
    """decode_detections with loops over images and classes (the test oracle)."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
    all_boxes = np.clip(ops.convert_to_numpy(decode_boxes(offsets, anchors)), 0, 1)
    results = []
    for image in range(len(logits)):
        found = []  # (score, label, box)
        for label in range(1, logits.shape[-1]):
            scores = probabilities[image, :, label]
            candidates = [a for a in np.argsort(-scores, kind="stable") if scores[a] > score_threshold][:nms_top_k]
            for k in loop_nms(all_boxes[image, candidates], scores[candidates], iou_threshold):
                found.append((scores[candidates[k]], label, all_boxes[image, candidates[k]]))
        found = sorted(found, key=lambda item: -item[0])[:top_k]
        results.append(found)
    return results


def assert_matches_reference(got, expected):
    for image, (detections, reference) in enumerate(zip(got, expected)):
        assert len(detections["scores"]) == len(reference), image
        np.testing.assert_allclose(detections["scores"], [score for score, _, _ in reference], rtol=1e-5)
        np.testing.assert_array_equal(detections["labels"], [label for _, label, _ in reference])
        expected_boxes = np.reshape([box for _, _, box in reference], (-1, 4))
        np.testing.assert_allclose(detections["boxes"], expected_boxes, atol=1e-6)


# Five hand-made boxes (dyadic, so that decoding and IoU are exact in float32).
HAND_BOXES = [
    [0.0, 0.0, 0.5, 0.5],  # 0: class 1, 0.9
    [0.0, 0.0, 0.5, 0.375],  # 1: class 1, 0.85 -- IoU 0.75 with box 0: suppressed
    [0.0, 0.0, 0.5, 0.375],  # 2: class 2, 0.8 -- same place as box 1, other class: kept
    [0.0, 0.0, 0.5, 0.25],  # 3: class 1, 0.6 -- IoU exactly 0.5 with box 0 (0.667 with suppressed box 1)
    [0.625, 0.625, 0.875, 0.875],  # 4: class 1, 0.3 -- apart from all
    [0.5, 0.5, 0.75, 0.75],  # 5: background 0.995 -- below the score threshold in every class
]
HAND_PROBABILITIES = [
    [0.1, 0.9, 0.0],
    [0.15, 0.85, 0.0],
    [0.2, 0.0, 0.8],
    [0.4, 0.6, 0.0],
    [0.7, 0.3, 0.0],
    [0.995, 0.003, 0.002],
]


def hand_case():
    logits = logits_for(HAND_PROBABILITIES)[None]
    return logits, np.zeros((1, len(HAND_BOXES), 4), np.float32), centroids(HAND_BOXES)


@pytest.mark.parametrize(
    "iou_threshold, kept",
    [(0.5, [0, 2, 3, 4]), (0.45, [0, 2, 4]), (0.8, [0, 1, 2, 3, 4])],
)
def test_hand_made_nms(iou_threshold, kept):
    # At 0.5 box 3 (IoU exactly 0.5 with box 0) stays; at 0.45 it goes; at 0.8 box 1 (IoU 0.75) stays,
    # and then box 3 too: 0.667 with box 1 is below 0.8.
    (got,) = decode_detections(*hand_case(), iou_threshold=iou_threshold)
    np.testing.assert_allclose(got["boxes"], np.array(HAND_BOXES)[kept])
    expected_scores = [max(HAND_PROBABILITIES[i][1:]) for i in kept]
    np.testing.assert_allclose(got["scores"], expected_scores, rtol=1e-6)
    np.testing.assert_array_equal(got["labels"], [int(np.argmax(HAND_PROBABILITIES[i][1:])) + 1 for i in kept])
    assert got["boxes"].dtype == np.float32 and got["scores"].dtype == np.float32 and got["labels"].dtype == np.int32


def test_score_threshold_and_background():
    logits, offsets, anchors = hand_case()
    (got,) = decode_detections(logits, offsets, anchors, score_threshold=0.5, iou_threshold=0.5)
    np.testing.assert_allclose(got["scores"], [0.9, 0.8, 0.6], rtol=1e-6)  # 0.3 is below 0.5
    # threshold 0: box 5 appears, in classes 1 and 2, never as background (its most likely class)
    (got,) = decode_detections(logits, offsets, anchors, score_threshold=0.0, iou_threshold=0.5)
    assert 0 not in got["labels"]
    at_box_5 = np.all(got["boxes"] == HAND_BOXES[5], axis=1)
    np.testing.assert_allclose(got["scores"][at_box_5], [0.003, 0.002], rtol=1e-4)
    np.testing.assert_array_equal(got["labels"][at_box_5], [1, 2])


def test_nothing_above_threshold_gives_empty_arrays():
    logits = logits_for([[0.999, 0.001]] * 4)[None]
    (got,) = decode_detections(logits, np.zeros((1, 4, 4), np.float32), centroids([[0, 0, 0.5, 0.5]] * 4))
    assert got["boxes"].shape == (0, 4) and got["scores"].shape == (0,) and got["labels"].shape == (0,)


def small_problem(rng, num_images=3, num_anchors=300, num_classes=3):
    config = AnchorConfig.from_feature_maps(96, (10, 5, 1), aspect_ratios=((1.0, 2.0, 0.5),) * 3)
    anchors = generate_anchors(config)[:num_anchors]
    logits = rng.normal(0, 2.0, size=(num_images, len(anchors), num_classes + 1)).astype(np.float32)
    offsets = rng.normal(0, 1.0, size=(num_images, len(anchors), 4)).astype(np.float32)
    return logits, offsets, anchors


@pytest.mark.parametrize(
    "score_threshold, iou_threshold, top_k, nms_top_k",
    [(0.01, 0.45, 200, 400), (0.2, 0.3, 7, 400), (0.01, 0.45, 30, 10), (0.05, 0.6, 1, 2)],
)
def test_matches_loop_reference(rng, score_threshold, iou_threshold, top_k, nms_top_k):
    logits, offsets, anchors = small_problem(rng)
    got = decode_detections(logits, offsets, anchors, score_threshold, iou_threshold, top_k, nms_top_k=nms_top_k)
    expected = reference_detections(logits, offsets, anchors, score_threshold, iou_threshold, top_k, nms_top_k)
    assert len(got) == len(logits)
    assert_matches_reference(got, expected)
    assert all(len(d["scores"]) == min(top_k, len(r)) for d, r in zip(got, expected))


def test_heavy_suppression_takes_more_candidates(rng):
    # All anchors in one place: NMS keeps one box per class, far fewer than top_k, so the first
    # candidate budget (2 top_k) is not enough and the image goes round again until all are seen.
    anchors = np.tile(centroids([[0.25, 0.25, 0.75, 0.75]]), (60, 1))
    logits = rng.normal(0, 1.0, size=(2, 60, 3)).astype(np.float32)
    offsets = rng.normal(0, 0.05, size=(2, 60, 4)).astype(np.float32)
    got = decode_detections(logits, offsets, anchors, top_k=5)
    expected = reference_detections(logits, offsets, anchors, 0.01, 0.45, 5, 400)
    assert_matches_reference(got, expected)
    assert [len(d["scores"]) for d in got] == [len(r) for r in expected] and len(got[0]["scores"]) < 5


def test_top_k_is_a_prefix_sorted_by_score(rng):
    logits, offsets, anchors = small_problem(rng)
    full = decode_detections(logits, offsets, anchors)
    short = decode_detections(logits, offsets, anchors, top_k=5)
    for long_result, short_result in zip(full, short):
        assert len(short_result["scores"]) == 5 and len(long_result["scores"]) > 5
        assert np.all(np.diff(long_result["scores"]) <= 0)
        for key in long_result:
            np.testing.assert_array_equal(short_result[key], long_result[key][:5])


def test_encoded_box_is_recovered():
    config = AnchorConfig.from_feature_maps(96, (12, 6, 3, 1), aspect_ratios=((1.0, 2.0, 0.5),) * 4)
    anchors = generate_anchors(config)
    box, label = np.array([[0.2, 0.3, 0.4, 0.5]]), np.array([2])
    box_targets, class_targets = encode(box, label, anchors)
    assert (class_targets == 2).sum() == 3  # several anchors predict it ...
    probabilities = np.where((class_targets == 2)[:, None], [0.09, 0.01, 0.9], [0.98, 0.01, 0.01])
    (got,) = decode_detections(logits_for(probabilities)[None], box_targets[None], anchors, score_threshold=0.02)
    # ... and decode to the same box, so NMS leaves exactly one detection
    assert len(got["scores"]) == 1 and got["labels"][0] == 2
    np.testing.assert_allclose(got["boxes"][0], box[0], atol=1e-5)
    np.testing.assert_allclose(got["scores"][0], 0.9, rtol=1e-5)


def test_boxes_are_clipped(rng):
    anchors = centroids([[0.9, 0.9, 1.0, 1.0], [0.0, 0.0, 0.1, 0.1]])
    offsets = np.array([[[5.0, 5.0, 3.0, 3.0], [-5.0, -5.0, 3.0, 3.0]]], np.float32)
    (got,) = decode_detections(logits_for([[0.1, 0.9], [0.2, 0.8]])[None], offsets, anchors)
    # centres move by 5 x 0.1 x 0.1 = 0.05 to (1, 1) and (0, 0); sides grow to 0.1 exp(3 x 0.2)
    half = 0.05 * np.exp(0.6)
    np.testing.assert_allclose(got["boxes"], [[1.0 - half, 1.0 - half, 1.0, 1.0], [0.0, 0.0, half, half]], rtol=1e-6)


def test_batched_nms_matches_loop_with_ties_and_groups(rng):
    for _ in range(30):
        count = int(rng.integers(0, 60))
        top_left = rng.uniform(0, 0.8, (count, 2))
        boxes = np.concatenate([top_left, top_left + rng.uniform(0.01, 0.4, (count, 2))], axis=1).astype(np.float32)
        scores = rng.choice(np.linspace(0, 1, 20), count).astype(np.float32)  # many ties
        groups = rng.integers(0, 3, count)
        threshold = float(rng.choice([0.1, 0.45, 0.7]))
        members = [np.flatnonzero(groups == g) for g in range(3)]
        kept = [member[loop_nms(boxes[member], scores[member], threshold)] for member in members]
        expected = np.concatenate(kept).astype(int)
        expected = expected[np.lexsort((expected, -scores[expected]))]  # descending score, then index
        np.testing.assert_array_equal(batched_nms(boxes, scores, groups, threshold), expected)


def test_iou_numpy_agrees_with_boxes_iou(rng):
    top_left = rng.uniform(0, 0.6, (7, 2))
    boxes = np.concatenate([top_left, top_left + rng.uniform(0.0, 0.4, (7, 2))], axis=1).astype(np.float32)
    expected = ops.convert_to_numpy(iou(boxes, boxes))
    np.testing.assert_allclose(iou_numpy(boxes[:, None], boxes[None]), expected, atol=1e-6)


def test_bad_input_raises(rng):
    logits, offsets, anchors = hand_case()
    with pytest.raises(ValueError, match="shapes disagree"):
        decode_detections(logits, offsets[:, :4], anchors)
    with pytest.raises(ValueError, match=r"anchors must have shape \(A, 4\)"):
        decode_detections(logits, offsets, anchors[:, :3])
    with pytest.raises(ValueError, match="iou_threshold must lie in"):
        decode_detections(logits, offsets, anchors, iou_threshold=0.0)
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        decode_detections(logits, offsets, anchors, top_k=0)


def test_as_numpy_shares_numpy_arrays_and_falls_back_to_keras(monkeypatch):
    """The decoder reads backend tensors without a copy where it can, and still takes any other tensor."""
    import tlutils.decoding as decoding

    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert decoding._as_numpy(array) is array
    np.testing.assert_array_equal(decoding._as_numpy(ops.convert_to_tensor(array)), array)

    class NoArrayProtocol:  # like a torch tensor on a GPU: np.asarray refuses it
        def __array__(self, *args, **kwargs):
            raise TypeError("copy it to the host first")

    calls = []
    monkeypatch.setattr(decoding.ops, "convert_to_numpy", lambda tensor: calls.append(tensor) or array)
    assert decoding._as_numpy(NoArrayProtocol()) is array
    assert len(calls) == 1
