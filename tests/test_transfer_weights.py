"""transfer_weights: copy by name and shape, class-mapped classification heads, the report."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tlutils.model import PREDICTION_LAYERS, build_ssd_vgg16, transfer_weights

TINY = dict(input_size=64, width=0.125)
CLASS_HEADS = [f"{spec.name}_class_head" for spec in PREDICTION_LAYERS]
BOX_HEADS = [f"{spec.name}_box_head" for spec in PREDICTION_LAYERS]
NUM_WEIGHTED_LAYERS = 13 + 2 + 1 + 8 + 12  # VGG convs, fc6/fc7, conv4_3_norm, extras, heads


def _images(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    return rng.uniform(0.0, 255.0, size=(2, size, size, 3)).astype("float32")


def _assert_same_logits(ours: np.ndarray, theirs: np.ndarray) -> None:
    """Equal up to float32 rounding. Heads with other class counts have other output-channel counts,
    and CPU conv kernels block channels by their count, so the sums are taken in another order: on an
    AVX-512 CPU oneDNN happened to give identical bits, on an AVX2-only one 24 % of the logits differ
    in the last bits (at most 1.2e-7 of the largest logit), XLA (JAX) about 1e-6. A wrong mapping is
    off by the size of the logits themselves."""
    scale = max(1.0, float(np.abs(theirs).max()))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * scale)


def _outputs(model: keras.Model, images: np.ndarray) -> dict[str, np.ndarray]:
    return {key: keras.ops.convert_to_numpy(value) for key, value in model(images).items()}


@pytest.fixture(scope="module")
def source() -> keras.Model:
    """A 'trained' source detector with 5 classes (random weights stand in for trained ones)."""
    return build_ssd_vgg16(5, **TINY)


@pytest.mark.core
def test_mapped_classes_give_identical_logits(source, rng):
    target = build_ssd_vgg16(3, **TINY)
    fresh = {name: target.get_layer(name).get_weights() for name in CLASS_HEADS}
    report = transfer_weights(source, target, class_map={1: 4, 2: None, 3: 2})
    images = _images(rng)
    ours, theirs = _outputs(target, images), _outputs(source, images)
    # target classes 0 (background), 1, 3 <- source classes 0, 4, 2
    _assert_same_logits(ours["class_logits"][..., [0, 1, 3]], theirs["class_logits"][..., [0, 4, 2]])
    assert np.array_equal(ours["box_offsets"], theirs["box_offsets"])
    # the new class 2 keeps the target's fresh initialization in every box slot (k * 4 columns)
    for name in CLASS_HEADS:
        kernel, bias = target.get_layer(name).get_weights()
        slots = kernel.shape[-1] // 4
        new_columns = [b * 4 + 2 for b in range(slots)]
        assert np.array_equal(kernel[..., new_columns], fresh[name][0][..., new_columns]), name
        assert np.array_equal(bias[new_columns], fresh[name][1][new_columns]), name
    assert [name for name, _ in report.remapped] == CLASS_HEADS
    assert len(report.copied) == NUM_WEIGHTED_LAYERS - 6
    assert report.skipped == [] and report.initialized == []
    assert report.class_map == {0: 0, 1: 4, 2: None, 3: 2}


def test_class_map_can_grow_the_class_count(source, rng):
    """More target classes than source classes: mapped ones copied, the rest new."""
    target = build_ssd_vgg16(7, **TINY)
    transfer_weights(source, target, class_map={7: 1, 1: 5})
    images = _images(rng)
    ours, theirs = _outputs(target, images), _outputs(source, images)
    _assert_same_logits(ours["class_logits"][..., [0, 7, 1]], theirs["class_logits"][..., [0, 1, 5]])


def test_same_classes_without_class_map_copy_everything(source, rng):
    target = build_ssd_vgg16(5, input_size=96, width=0.125)  # another input size: weights still fit
    report = transfer_weights(source, target)
    assert len(report.copied) == NUM_WEIGHTED_LAYERS and report.remapped == [] and report.skipped == []
    for layer in source.layers:
        for mine, theirs in zip(target.get_layer(layer.name).get_weights(), layer.get_weights()):
            assert np.array_equal(mine, theirs), layer.name


def test_other_class_count_without_class_map_skips_class_heads_with_a_reason(source):
    target = build_ssd_vgg16(3, **TINY)
    fresh = target.get_layer("fc7_class_head").get_weights()[0]
    report = transfer_weights(source, target)
    assert [name for name, _ in report.skipped] == CLASS_HEADS
    assert all("class_map" in reason and "(3, 3, 128, 36)" in reason
               for name, reason in report.skipped if name == "fc7_class_head")
    assert set(BOX_HEADS) <= set(report.copied)
    assert np.array_equal(target.get_layer("fc7_class_head").get_weights()[0], fresh)


def test_other_width_skips_every_layer(source):
    target = build_ssd_vgg16(5, input_size=64, width=0.25)
    report = transfer_weights(source, target)
    assert report.copied == [] and len(report.skipped) == NUM_WEIGHTED_LAYERS
    block1 = dict(report.skipped)["block1_conv1"]
    assert block1 == "weight shapes differ: source [(3, 3, 3, 8), (8,)], target [(3, 3, 3, 16), (16,)]"


def test_class_map_with_another_width_skips_the_class_heads(source):
    target = build_ssd_vgg16(3, input_size=64, width=0.25)
    report = transfer_weights(source, target, class_map={1: 1})
    assert report.remapped == []
    assert all("width or boxes per cell" in reason for name, reason in report.skipped if name in CLASS_HEADS)


def test_keras_vgg16_as_source_fills_the_backbone_and_reports_the_rest():
    vgg = keras.applications.VGG16(include_top=False, weights=None)
    target = build_ssd_vgg16(2, input_size=32)
    report = transfer_weights(vgg, target)
    assert report.copied == [layer.name for layer in vgg.layers if layer.weights]
    assert len(report.initialized) == NUM_WEIGHTED_LAYERS - 13
    assert dict(report.initialized)["fc6"] == "not in the source model"
    assert np.array_equal(target.get_layer("block5_conv3").get_weights()[0],
                          vgg.get_layer("block5_conv3").get_weights()[0])


def test_report_reads_as_text(source):
    target = build_ssd_vgg16(3, **TINY)
    text = str(transfer_weights(source, target, class_map={1: 4, 3: 2}))
    lines = text.splitlines()
    assert lines[0] == "weight transfer: 30 copied, 6 remapped, 0 initialized, 0 skipped"
    assert lines[1] == "class map (target <- source): 1 <- 4, 2 new, 3 <- 2"
    assert lines[2].startswith("copied: block1_conv1, block1_conv2,")
    assert "remapped: conv4_3_class_head: 2 classes + background copied in 4 box slots" in lines


@pytest.mark.parametrize(
    "class_map, message",
    [
        ({4: 1}, "target class 4 is not in 1..3"),
        ({1: 6}, r"class_map\[1\] = 6 is not in 1..5"),
        ({1: 0}, r"class_map\[1\] = 0 is not in 1..5"),
        ({0: 2}, "background"),
        ({"a": 1}, "target class 'a'"),
    ],
)
def test_bad_class_maps_raise_value_error(source, class_map, message):
    target = build_ssd_vgg16(3, **TINY)
    with pytest.raises(ValueError, match=message):
        transfer_weights(source, target, class_map=class_map)
