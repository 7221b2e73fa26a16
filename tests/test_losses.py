"""MultiBox loss: a loop-per-image NumPy reference, hand-made cases, hard negative mining, dtypes, jit."""

import keras
import numpy as np
import pytest
from keras import ops

from tlutils.losses import MultiBoxLoss, hard_negative_mask, multibox_loss, smooth_l1

pytestmark = pytest.mark.core


def reference_multibox_loss(class_targets, box_targets, class_logits, box_offsets, neg_pos_ratio=3.0, loc_weight=1.0):
    """The SSD loss written out with loops, one image and one anchor at a time (float64)."""
    confidence = localization = 0.0
    num_positives = 0
    for image in range(class_targets.shape[0]):
        logits = class_logits[image].astype(np.float64)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        positives = [a for a in range(class_targets.shape[1]) if class_targets[image, a] > 0]
        negatives = [a for a in range(class_targets.shape[1]) if class_targets[image, a] == 0]
        num_hard = min(int(np.floor(neg_pos_ratio * len(positives))), len(negatives))
        hardest = sorted(negatives, key=lambda a: -log_probs[a, 0], reverse=True)[:num_hard]  # highest loss first
        for anchor in positives:
            confidence -= log_probs[anchor, class_targets[image, anchor]]
            for coordinate in range(4):
                x = float(box_offsets[image, anchor, coordinate]) - float(box_targets[image, anchor, coordinate])
                localization += 0.5 * x * x if abs(x) < 1.0 else abs(x) - 0.5
        for anchor in hardest:
            confidence -= log_probs[anchor, 0]
        num_positives += len(positives)
    divisor = max(num_positives, 1)
    return {
        "loss": (confidence + loc_weight * localization) / divisor,
        "confidence": confidence / divisor,
        "localization": localization / divisor,
        "num_positives": num_positives,
    }


def random_batch(rng, num_images=4, num_anchors=60, num_classes=4):
    """Targets with every situation: few positives, many positives (3 x positives > negatives), none, ignored."""
    fractions = [(0.05, 0.10), (0.40, 0.05), (0.0, 0.2), (0.15, 0.0)][:num_images]
    class_targets = np.zeros((num_images, num_anchors), np.int32)
    for image, (positive_fraction, ignored_fraction) in enumerate(fractions):
        draw = rng.uniform(size=num_anchors)
        positive = draw < positive_fraction
        class_targets[image, positive] = rng.integers(1, num_classes + 1, size=positive.sum())
        class_targets[image, (draw >= positive_fraction) & (draw < positive_fraction + ignored_fraction)] = -1
    box_targets = rng.normal(0, 1.0, size=(num_images, num_anchors, 4)).astype(np.float32)
    class_logits = rng.normal(0, 2.0, size=(num_images, num_anchors, num_classes + 1)).astype(np.float32)
    box_offsets = rng.normal(0, 1.0, size=(num_images, num_anchors, 4)).astype(np.float32)
    return class_targets, box_targets, class_logits, box_offsets


def to_numpy(result):
    return {key: float(ops.convert_to_numpy(value)) for key, value in result.items()}


@pytest.mark.parametrize("neg_pos_ratio, loc_weight", [(3.0, 1.0), (1.5, 2.0), (0.0, 1.0)])
def test_matches_loop_reference_on_random_batches(rng, neg_pos_ratio, loc_weight):
    for _ in range(3):
        batch = random_batch(rng)
        got = to_numpy(multibox_loss(*batch, neg_pos_ratio=neg_pos_ratio, loc_weight=loc_weight))
        expected = reference_multibox_loss(*batch, neg_pos_ratio=neg_pos_ratio, loc_weight=loc_weight)
        assert expected["num_positives"] > 0 and expected["localization"] > 0
        for key in expected:
            np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-5, err_msg=key)


def test_hand_worked_single_positive():
    # 1 image, 5 anchors, 1 class. Anchor 0 positive (class 1), anchors 1-3 negatives, 4 ignored.
    class_targets = np.array([[1, 0, 0, 0, -1]])
    logits = np.zeros((1, 5, 2), np.float32)
    logits[0, 1] = [0.0, np.log(3.0)]  # background probability 1/4 -> loss ln 4, the hardest negative
    logits[0, 4] = [0.0, 50.0]  # ignored: would be by far the hardest negative, must not count
    offsets = np.zeros((1, 5, 4), np.float32)
    targets = np.zeros((1, 5, 4), np.float32)
    targets[0, 0] = [0.5, -2.0, 0.0, 0.0]  # Smooth L1: 0.5 * 0.25 + (2 - 0.5) = 1.625
    got = to_numpy(multibox_loss(class_targets, targets, logits, offsets, neg_pos_ratio=1.0))
    # positive: -ln(1/2); one mined negative (ratio 1): ln 4
    np.testing.assert_allclose(got["confidence"], np.log(2.0) + np.log(4.0), rtol=1e-6)
    np.testing.assert_allclose(got["localization"], 1.625, rtol=1e-6)
    np.testing.assert_allclose(got["loss"], np.log(8.0) + 1.625, rtol=1e-6)
    assert got["num_positives"] == 1.0


def test_perfect_prediction_gives_zero_loss(rng):
    class_targets, box_targets, _, _ = random_batch(rng)
    num_classes = 4
    logits = np.full(class_targets.shape + (num_classes + 1,), -100.0, np.float32)
    correct = np.maximum(class_targets, 0)
    np.put_along_axis(logits, correct[..., None], 100.0, axis=-1)
    got = to_numpy(multibox_loss(class_targets, box_targets, logits, box_targets.copy()))
    assert got["num_positives"] == (class_targets > 0).sum()
    assert got["loss"] == 0.0 and got["confidence"] == 0.0 and got["localization"] == 0.0


def test_hard_negative_mask_counts_and_picks_the_hardest_per_image(rng):
    class_targets, _, _, _ = random_batch(rng, num_anchors=80)
    losses = rng.uniform(0, 5, size=class_targets.shape).astype(np.float32)
    mask = ops.convert_to_numpy(hard_negative_mask(class_targets, losses, neg_pos_ratio=3.0))
    for image in range(class_targets.shape[0]):
        positives = (class_targets[image] > 0).sum()
        negatives = np.flatnonzero(class_targets[image] == 0)
        expected_count = min(3 * positives, len(negatives))
        assert mask[image].sum() == expected_count, image
        hardest = negatives[np.argsort(-losses[image, negatives])[:expected_count]]
        assert set(np.flatnonzero(mask[image])) == set(hardest), image
    # the batch covers the interesting cases: capped by negatives, and no positives at all
    assert mask[1].sum() == (class_targets[1] == 0).sum() < 3 * (class_targets[1] > 0).sum()
    assert (class_targets[2] > 0).sum() == 0 and mask[2].sum() == 0


def test_fractional_ratio_floors():
    class_targets = np.array([[1, 0, 0, 0, 0]])
    losses = np.array([[0.0, 1.0, 4.0, 3.0, 2.0]], np.float32)
    mask = ops.convert_to_numpy(hard_negative_mask(class_targets, losses, neg_pos_ratio=2.5))
    np.testing.assert_array_equal(mask, [[False, False, True, True, False]])


def test_ignored_anchors_do_not_change_the_loss(rng):
    class_targets, box_targets, logits, offsets = random_batch(rng)
    ignored = class_targets == -1
    assert ignored.sum() > 0
    before = to_numpy(multibox_loss(class_targets, box_targets, logits, offsets))
    logits[ignored] = rng.normal(0, 30.0, size=(ignored.sum(), logits.shape[-1]))
    offsets[ignored] = 1e3
    box_targets[ignored] = np.nan
    after = to_numpy(multibox_loss(class_targets, box_targets, logits, offsets))
    for key in before:
        np.testing.assert_allclose(after[key], before[key], rtol=1e-6, err_msg=key)


def test_no_positives_is_finite_and_zero(rng):
    class_targets = np.zeros((2, 30), np.int32)
    class_targets[1, :5] = -1
    _, box_targets, logits, offsets = random_batch(rng, num_images=2, num_anchors=30)
    got = to_numpy(multibox_loss(class_targets, box_targets, logits, offsets))
    assert got == {"loss": 0.0, "localization": 0.0, "confidence": 0.0, "num_positives": 0.0}


def test_divides_by_positives_of_whole_batch():
    # Two images, each with one positive of loss ln 2 and no negatives: total 2 ln 2 / 2 positives.
    class_targets = np.array([[1, -1], [-1, 1]])
    logits = np.zeros((2, 2, 2), np.float32)
    zeros = np.zeros((2, 2, 4), np.float32)
    got = to_numpy(multibox_loss(class_targets, zeros, logits, zeros))
    np.testing.assert_allclose(got["loss"], np.log(2.0), rtol=1e-6)
    assert got["num_positives"] == 2.0


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_outputs_are_lost_in_float32(rng, dtype):
    batch = random_batch(rng)
    class_targets, box_targets, logits, offsets = batch
    low_logits = ops.cast(logits, dtype)
    low_offsets = ops.cast(offsets, dtype)
    result = multibox_loss(class_targets, box_targets, low_logits, low_offsets)
    assert all(ops.dtype(value) == "float32" for value in result.values())
    # reference on the same (rounded) inputs
    rounded = [ops.convert_to_numpy(ops.cast(x, "float32")) for x in (low_logits, low_offsets)]
    expected = reference_multibox_loss(class_targets, box_targets, *rounded)
    np.testing.assert_allclose(float(ops.convert_to_numpy(result["loss"])), expected["loss"], rtol=1e-5)


def test_smooth_l1_values():
    got = ops.convert_to_numpy(smooth_l1(np.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], np.float32)))
    np.testing.assert_allclose(got, [2.5, 0.5, 0.125, 0.0, 0.125, 0.5, 1.5])


def test_runs_under_jit(rng):
    batch = random_batch(rng)
    expected = reference_multibox_loss(*batch)["loss"]
    if keras.backend.backend() == "jax":
        import jax

        compiled = jax.jit(lambda *args: multibox_loss(*args)["loss"])
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(lambda *args: multibox_loss(*args)["loss"], jit_compile=True)
    else:
        pytest.skip("jit test written for jax and tensorflow")
    np.testing.assert_allclose(float(ops.convert_to_numpy(compiled(*batch))), expected, rtol=1e-5)


def test_multibox_loss_object_over_dicts(rng):
    class_targets, box_targets, logits, offsets = random_batch(rng)
    loss = MultiBoxLoss(neg_pos_ratio=2.0, loc_weight=0.5)
    y_true = {"class_targets": class_targets, "box_targets": box_targets}
    got = loss(y_true, {"class_logits": logits, "box_offsets": offsets})
    expected = reference_multibox_loss(class_targets, box_targets, logits, offsets, neg_pos_ratio=2.0, loc_weight=0.5)
    np.testing.assert_allclose(float(ops.convert_to_numpy(got)), expected["loss"], rtol=1e-5)
    assert MultiBoxLoss.from_config(loss.get_config()).neg_pos_ratio == 2.0
    with pytest.raises(ValueError, match="y_pred must be a dict with keys"):
        loss(y_true, {"logits": logits})


def test_bad_shapes_name_the_argument(rng):
    class_targets, box_targets, logits, offsets = random_batch(rng)
    with pytest.raises(ValueError, match="box_offsets has 59 entries on axis 1"):
        multibox_loss(class_targets, box_targets, logits, offsets[:, :59])
    with pytest.raises(ValueError, match="box_targets must end in 4"):
        multibox_loss(class_targets, box_targets[..., :3], logits, offsets)
    with pytest.raises(ValueError, match="class_targets must have rank 2"):
        multibox_loss(class_targets[0], box_targets, logits, offsets)
