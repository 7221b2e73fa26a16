"""Non-square inputs and the smallest default box, from the anchors through the model, the batches and
decoding to one training step; and the defaults, bit for bit as before these parameters existed.

Sizes are one side or ``(height, width)``; normalized x is divided by the width and y by the height.
A non-square input here is 96 x 160 (height x width), the cpu profile's 160 px side by a 96 px one.
"""

from __future__ import annotations

import hashlib
import json
import math

import keras
import numpy as np
import pytest

from tlutils.anchors import (
    FIRST_LAYER_SCALE,
    SSD300_SCALES,
    AnchorConfig,
    canonical_size,
    default_scales,
    generate_anchors,
    height_width,
)
from tlutils.data.augment import Augmenter
from tlutils.data.pipeline import DetectionSequence, ground_truths_for_eval
from tlutils.decoding import decode_detections
from tlutils.model import anchor_config_for, build_ssd_vgg16, feature_map_sizes, input_size_of
from tlutils.training import SSDTrainer

pytestmark = pytest.mark.core

HEIGHT, WIDTH = 96, 160
TINY = dict(width=0.125)  # as tests/test_model.py: channels 8..128, num_classes=2 shares JAX kernel shapes
SQRT2 = math.sqrt(2.0)

# SHA-256 of the float32 anchors (and of the layer table) computed by the code before non-square inputs
# and ``smallest_scale`` existed (commit b062b15): the defaults must reproduce them bit for bit.
ANCHORS_BEFORE = {
    "ssd300": "327b6cefbab2f6a498600aa1abb0a46b98c4d444efc5f6a0ec4773375b510ba1",
    96: "509ec91061313b983c24bcc36d389b73ae1df15bc9ed05f318f404fd4a551738",
    160: "3669ec486878d0e6948ce7408e25b6809268ee7e77b4b6e0c2510e992ffcf9dc",
    "seven_layers_64": "832e0ff8c1298fc3224a1987a1b02967bf4cff2e881cc723ee68e129c4169dc2",
}
LAYERS_BEFORE = {
    96: "d14a979401a6b6ce0c40b9facd38485fba4fbd53c40c41ede839fbdc08fe7e30",
    160: "eb1827c0eb748980548be92b5f0f8016f597aac5bcac0524035abdea953c14b0",
}


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def layer_table_digest(model: keras.Model) -> str:
    """Names, classes, output shapes and weight shapes of every layer: the model's architecture."""
    table = [(layer.name, type(layer).__name__, str(layer.output.shape), [tuple(w.shape) for w in layer.weights])
             for layer in model.layers]
    return hashlib.sha256(json.dumps(table).encode()).hexdigest()


def in_pixels(anchors: np.ndarray, height: int, width: int) -> np.ndarray:
    """Normalized centroids -> pixel centroids: x and w times the width, y and h times the height."""
    return anchors * np.array([width, height, width, height], dtype=np.float64)


@pytest.fixture(scope="module")
def wide_model() -> keras.Model:
    return build_ssd_vgg16(2, input_size=(HEIGHT, WIDTH), **TINY)


# --- anchors -------------------------------------------------------------------------------------


def test_one_row_of_two_cells_on_a_two_to_one_image_by_hand():
    # Image 100 high, 200 wide; a 1 x 2 map (steps 100 px both ways); scale 0.5 of the shorter side R = 100.
    config = AnchorConfig(image_size=(100, 200), feature_map_sizes=((1, 2),), scales=(0.5, 0.8),
                          aspect_ratios=((1.0, 2.0),))
    assert config.image_shape == (100, 200) and config.feature_map_shapes == ((1, 2),)
    assert config.steps == (100.0,) and config.reference_side == 100 and config.num_anchors == 6
    extra = math.sqrt(0.5 * 0.8) * 100  # 63.2 px
    expected_pixels = [
        [50, 50, 50, 50],  # ratio 1: 50 x 50 px, square on the image
        [50, 50, extra, extra],  # the extra ratio-1 box
        [50, 50, 50 * SQRT2, 50 / SQRT2],  # ratio 2 in pixels: 70.7 x 35.4 px
        [150, 50, 50, 50],  # the second column: cx moves by one 100 px step
        [150, 50, extra, extra],
        [150, 50, 50 * SQRT2, 50 / SQRT2],
    ]
    anchors = generate_anchors(config)
    np.testing.assert_allclose(in_pixels(anchors, 100, 200), expected_pixels, rtol=1e-6)
    # Normalized, a pixel square is twice as high as wide here, and the ratio-2 box is "square".
    np.testing.assert_allclose(anchors[0], [0.25, 0.5, 0.25, 0.5], rtol=1e-6)
    np.testing.assert_allclose(anchors[2, 2:], [0.5 * SQRT2 / 2, 0.5 / SQRT2], rtol=1e-6)


def test_aspect_ratios_hold_in_pixels_on_every_layer_of_a_non_square_model(wide_model):
    config = anchor_config_for(wide_model)
    pixels = in_pixels(generate_anchors(config), HEIGHT, WIDTH)
    start = 0
    for (rows, columns), ratios, boxes in zip(config.feature_map_shapes, config.aspect_ratios, config.boxes_per_cell):
        cell = pixels[start : start + boxes]  # the first cell's boxes, in the module's box order
        pixel_ratios = cell[:, 2] / cell[:, 3]
        np.testing.assert_allclose(pixel_ratios, [ratios[0], 1.0, *ratios[1:]], rtol=1e-5)
        layer = pixels[start : start + rows * columns * boxes].reshape(rows, columns, boxes, 4)
        np.testing.assert_allclose(layer[0, :, 0, 0], (np.arange(columns) + 0.5) * WIDTH / columns, rtol=1e-5)
        np.testing.assert_allclose(layer[:, 0, 0, 1], (np.arange(rows) + 0.5) * HEIGHT / rows, rtol=1e-5)
        start += rows * columns * boxes
    assert start == len(pixels)


def test_square_pairs_are_stored_as_their_side_and_give_the_same_config():
    pair = AnchorConfig.from_feature_maps((64, 64), ((8, 8), (4, 4), 2, (1, 1)))
    assert pair == AnchorConfig.from_feature_maps(64, (8, 4, 2, 1))
    assert pair.image_size == 64 and pair.feature_map_sizes == (8, 4, 2, 1) and pair.steps == (8.0, 16.0, 32.0, 64.0)
    assert canonical_size([96, 160]) == (96, 160) and canonical_size((7, 7)) == 7 and height_width(5) == (5, 5)
    explicit = AnchorConfig(image_size=(90, 120), feature_map_sizes=((3, 4),), scales=(0.2, 0.4),
                            aspect_ratios=((1.0,),), steps=((30, 30),))
    assert explicit.steps == (30.0,)


# --- the smallest default box ----------------------------------------------------------------------


def test_a_smaller_smallest_scale_shrinks_only_the_first_layer_boxes_in_pixels(wide_model):
    default = anchor_config_for(wide_model)
    small = anchor_config_for(wide_model, smallest_scale=0.05)
    assert default.smallest_box_size == pytest.approx(0.1 * HEIGHT)  # 9.6 px: a fraction of the shorter side
    assert small.smallest_box_size == pytest.approx(0.05 * HEIGHT)
    assert small.scales == (0.05, *default.scales[1:])
    rows, columns = default.feature_map_shapes[0]
    first = rows * columns * default.boxes_per_cell[0]
    before = in_pixels(generate_anchors(default), HEIGHT, WIDTH)
    after = in_pixels(generate_anchors(small), HEIGHT, WIDTH)
    np.testing.assert_allclose(after[:first:4, 2:], 4.8, rtol=1e-5)  # ratio-1 boxes: 0.05 x 96 px
    np.testing.assert_allclose(before[:first:4, 2:], 9.6, rtol=1e-5)
    assert np.all(after[:first, 2:] < before[:first, 2:])  # every box of the first layer is smaller
    np.testing.assert_array_equal(after[first:], before[first:])  # and nothing else changes
    np.testing.assert_array_equal(after[:, :2], before[:, :2])


def test_smallest_scale_on_ssd300_and_in_the_scale_ladders():
    ssd300 = build_ssd_vgg16(2, input_size=300, **TINY)
    assert anchor_config_for(ssd300) == AnchorConfig.ssd300()
    config = anchor_config_for(ssd300, smallest_scale=0.05)
    assert config.steps == AnchorConfig.ssd300().steps and config.scales[0] == 0.05
    assert config.smallest_box_size == pytest.approx(15.0)  # 30 px -> 15 px
    assert default_scales(6) == SSD300_SCALES and default_scales(6)[0] == FIRST_LAYER_SCALE
    assert default_scales(4, smallest_scale=0.04)[:2] == (0.04, 0.2)
    assert AnchorConfig.from_feature_maps(64, (8, 4, 2, 1), smallest_scale=0.04).scales == default_scales(4, 0.04)


@pytest.mark.parametrize("smallest_scale", [0.0, -0.1, 0.25, float("nan"), True])
def test_bad_smallest_scale_raises(smallest_scale):
    with pytest.raises(ValueError, match=r"smallest_scale = .* must lie in \(0, 0.2\]"):
        default_scales(6, smallest_scale)


def test_scales_and_smallest_scale_together_raise():
    with pytest.raises(ValueError, match="give scales or smallest_scale, not both"):
        AnchorConfig.from_feature_maps(64, (2, 1), scales=(0.3, 0.6, 0.9), smallest_scale=0.05)


# --- the model -------------------------------------------------------------------------------------


def test_non_square_model_outputs_as_many_anchors_as_its_config(wide_model):
    assert input_size_of(wide_model) == (HEIGHT, WIDTH)
    assert tuple(wide_model.input_shape) == (None, HEIGHT, WIDTH, 3)
    # 96 x 160 / 8 = 12 x 20 on conv4_3; the 2 x 3 map is too small for the last two valid convs.
    assert feature_map_sizes(wide_model) == ((12, 20), (6, 10), (3, 5), (2, 3), (2, 3), (2, 3))
    config = anchor_config_for(wide_model)
    assert config.image_size == (HEIGHT, WIDTH) and config.feature_map_sizes == feature_map_sizes(wide_model)
    num_anchors = 12 * 20 * 4 + 6 * 10 * 6 + 3 * 5 * 6 + 2 * 3 * 6 + 2 * 3 * 4 + 2 * 3 * 4  # 1494
    assert config.num_anchors == generate_anchors(config).shape[0] == num_anchors
    assert wide_model.output["class_logits"].shape[1] == wide_model.output["box_offsets"].shape[1] == num_anchors


def test_non_square_heads_order_anchors_row_then_column(wide_model, rng):
    probe = keras.Model(wide_model.input, [wide_model.get_layer("conv4_3_class_head").output,
                                           wide_model.output["class_logits"]])
    images = rng.uniform(0.0, 255.0, size=(1, HEIGHT, WIDTH, 3)).astype("float32")
    head, logits = (keras.ops.convert_to_numpy(t) for t in probe(images))
    i, j, b, v = 7, 15, 2, 1  # cell (row 7, column 15) of the 12 x 20 conv4_3 map, box 2, value 1
    anchor = (i * 20 + j) * 4 + b
    assert logits[0, anchor, v] == head[0, i, j, b * 3 + v]
    cx, cy = generate_anchors(anchor_config_for(wide_model))[anchor, :2]
    assert (cx, cy) == pytest.approx(((j + 0.5) / 20, (i + 0.5) / 12))


@pytest.mark.parametrize("input_size", [(96, 0), (96,), (96, 160, 3), (96.0, 160), "96x160", (True, 5)])
def test_bad_sizes_raise_value_error(input_size):
    with pytest.raises(ValueError, match=r"input_size = .* must be a positive integer \(a square's side\) or a "
                                         r"\(height, width\) pair"):
        build_ssd_vgg16(2, input_size=input_size, **TINY)
    with pytest.raises(ValueError, match="input_size"):
        DetectionSequence([(np.zeros((8, 8, 3), np.uint8), np.zeros((0, 4)), np.zeros(0))],
                          np.array([[0.5, 0.5, 1.0, 1.0]]), input_size=input_size)
    with pytest.raises(ValueError, match="output_size"):
        Augmenter(input_size)
    with pytest.raises(ValueError, match="image_size"):
        AnchorConfig.from_feature_maps(input_size, (1,))
    with pytest.raises(ValueError, match=r"feature_map_sizes\[0\] = .* \(rows, columns\) pair"):
        AnchorConfig.from_feature_maps(64, (input_size,))


def test_steps_must_be_one_number_or_a_pair():
    with pytest.raises(ValueError, match=r"steps\[0\] = \(1.0, 2.0, 3.0\) must be one number or a \(step_y, step_x\)"):
        AnchorConfig(image_size=(4, 6), feature_map_sizes=(1,), scales=(0.5, 0.5), aspect_ratios=((1.0,),),
                     steps=((1.0, 2.0, 3.0),))


# --- batches, decoding, training -------------------------------------------------------------------


def frames(count: int = 4, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Frames 240 x 300 (height x width; another aspect than the input's) with 1-2 signs of 30-60 px."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(count):
        image = rng.integers(0, 255, (240, 300, 3), dtype=np.uint8)
        count_boxes = int(rng.integers(1, 3))
        top_left = rng.uniform(10, 150, size=(count_boxes, 2))
        boxes = np.concatenate([top_left, top_left + rng.uniform(30, 60, size=(count_boxes, 2))], axis=1)
        samples.append((image, boxes.astype(np.float32), rng.integers(1, 3, count_boxes)))
    return samples


def test_validation_batches_resize_x_by_the_width_and_y_by_the_height(wide_model):
    anchors = generate_anchors(anchor_config_for(wide_model))
    samples = frames()
    sequence = DetectionSequence(samples, anchors, batch_size=4, input_size=[HEIGHT, WIDTH], shuffle=False)
    assert sequence.input_size == (HEIGHT, WIDTH) and sequence.input_shape == (HEIGHT, WIDTH)
    assert sequence.working_size == 2 * WIDTH
    images, targets = sequence[0]
    assert images.shape == (4, HEIGHT, WIDTH, 3) and targets["box_targets"].shape == (4, len(anchors), 4)
    image, boxes, _ = sequence.sample(0)
    assert image.shape == (HEIGHT, WIDTH, 3)
    np.testing.assert_allclose(boxes, samples[0][1] * np.array([WIDTH / 300, HEIGHT / 240] * 2), rtol=1e-5)


def test_encode_then_decode_on_a_non_square_input_gives_back_the_boxes(wide_model):
    """Pixel boxes -> batch targets on a 96 x 160 input -> decode_detections -> the same boxes."""
    anchors = generate_anchors(anchor_config_for(wide_model))
    sequence = DetectionSequence(frames(), anchors, batch_size=4, input_size=(HEIGHT, WIDTH), shuffle=False)
    _, targets = sequence[0]
    class_targets = targets["class_targets"]
    logits = np.where(class_targets[..., None] == np.arange(3), 10.0, 0.0).astype(np.float32)  # (B, A, 3)
    detections = decode_detections(logits, targets["box_targets"], anchors, score_threshold=0.5)
    for index, (found, truth) in enumerate(zip(detections, ground_truths_for_eval(sequence))):
        order = np.lexsort(truth["boxes"].T[::-1])
        found_order = np.lexsort(found["boxes"].T[::-1])
        np.testing.assert_allclose(found["boxes"][found_order], truth["boxes"][order], atol=1e-5)
        np.testing.assert_array_equal(found["labels"][found_order], truth["labels"][order])
        # ... and in the input's pixels, the resized boxes the batch was made from
        _, pixel_boxes, _ = sequence.sample(index)
        np.testing.assert_allclose(found["boxes"][found_order] * [WIDTH, HEIGHT, WIDTH, HEIGHT],
                                   pixel_boxes[np.lexsort(pixel_boxes.T[::-1])], atol=2e-3)


def test_augmented_non_square_batches_keep_boxes_inside_the_input():
    augmenter = Augmenter((48, 80), flip=True, flip_probability=1.0, max_zoom=2.0)
    assert augmenter.output_shape == (48, 80)
    rng = np.random.default_rng(1)
    for image, boxes, labels in frames(6, seed=2):
        output, out_boxes, _ = augmenter(image, boxes, labels, rng)
        assert output.shape == (48, 80, 3)
        assert np.all(out_boxes >= 0) and np.all(out_boxes[:, [0, 2]] <= 80) and np.all(out_boxes[:, [1, 3]] <= 48)
    # the validation path with a flip only: mirrored about the width
    mirror = Augmenter((48, 80), photometric=False, zoom_out=False, crop=False, flip=True, flip_probability=1.0)
    image, boxes, labels = frames(1)[0]
    _, mirrored, _ = mirror(image, boxes, labels, rng)
    scaled = boxes * np.array([80 / 300, 48 / 240] * 2)
    np.testing.assert_allclose(mirrored, np.stack([80 - scaled[:, 2], scaled[:, 1], 80 - scaled[:, 0], scaled[:, 3]], 1),
                               rtol=1e-5)


def test_one_training_step_on_a_non_square_batch_has_a_finite_loss():
    keras.utils.set_random_seed(0)
    detector = build_ssd_vgg16(2, input_size=(32, 64), **TINY)
    anchors = generate_anchors(anchor_config_for(detector))
    sequence = DetectionSequence(frames(2), anchors, batch_size=2, augmenter=Augmenter((32, 64)), workers=1)
    images, targets = sequence[0]
    assert images.shape == (2, 32, 64, 3) and (targets["class_targets"] > 0).any()
    trainer = SSDTrainer(detector)
    trainer.compile(optimizer=keras.optimizers.SGD(1e-3))
    logs = trainer.train_on_batch(images, targets, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["num_positives"] > 0


# --- the defaults, bit for bit ---------------------------------------------------------------------


@pytest.mark.parametrize("input_size", [96, 160])
def test_default_models_and_anchors_are_bit_identical_to_before(input_size):
    model = build_ssd_vgg16(2, input_size=input_size, **TINY)
    assert layer_table_digest(model) == LAYERS_BEFORE[input_size]
    assert digest(generate_anchors(anchor_config_for(model))) == ANCHORS_BEFORE[input_size]
    same_square = build_ssd_vgg16(2, input_size=(input_size, input_size), **TINY)
    assert layer_table_digest(same_square) == LAYERS_BEFORE[input_size]


def test_default_configs_give_the_anchors_of_before():
    assert digest(generate_anchors(AnchorConfig.ssd300())) == ANCHORS_BEFORE["ssd300"]
    seven = AnchorConfig.from_feature_maps(64, (7, 6, 5, 4, 3, 2, 1))
    assert digest(generate_anchors(seven)) == ANCHORS_BEFORE["seven_layers_64"]


# --- the smallest default box in the experiment runner ------------------------------------------------

def ci_run(**changes):
    from tlutils.experiment import RunConfig

    return RunConfig(profile="ci", target_data="germany", strategy="finetune", num_target_images=10, **changes)


def test_a_runs_smallest_scale_enters_its_key_and_its_sources_only_when_set():
    from tlutils.experiment import resolve

    default, spelled = resolve(ci_run()), resolve(ci_run(smallest_scale=0.1))
    smaller = resolve(ci_run(smallest_scale=0.05))
    assert "smallest_scale" not in default.to_dict() and spelled.key == default.key  # runs made before keep their keys
    assert smaller.to_dict()["smallest_scale"] == 0.05 and smaller.key != default.key
    assert smaller.source_run_key != default.source_run_key, "the source run trains on the same default boxes"
    from tlutils.experiment import source_config

    assert source_config(smaller.config).smallest_scale == 0.05


@pytest.mark.parametrize("smallest_scale", [0.0, 0.3, "0.05", True, float("inf")])
def test_a_bad_smallest_scale_of_a_run_raises(smallest_scale):
    with pytest.raises(ValueError, match="smallest_scale"):
        ci_run(smallest_scale=smallest_scale)


@pytest.mark.parametrize("smallest_scale", [None, 0.05])
def test_a_run_trains_and_scores_on_the_default_boxes_of_its_smallest_scale(tmp_path, smallest_scale):
    from tlutils.experiment import resolve
    from tlutils.experiment.run_data import build_data, training_pool

    resolved = resolve(ci_run(smallest_scale=smallest_scale))
    detector = build_ssd_vgg16(3, input_size=resolved.input_size, width=resolved.width)
    data = build_data(resolved, detector, training_pool(resolved, tmp_path), tmp_path)
    first = data.anchors[0]  # conv4_3's first cell, its ratio-1 box of the smallest scale
    assert first[2] == first[3] == pytest.approx(smallest_scale or FIRST_LAYER_SCALE, rel=1e-6)


def test_the_sweep_command_takes_a_smallest_scale():
    from tlutils.cli import build_parser
    from tlutils.experiment.sweeps import cli_grid

    parse = build_parser().parse_args
    assert cli_grid(parse(["sweep", "--profile", "ci", "--smallest-scale", "0.05"]))[1].smallest_scale == 0.05
    assert cli_grid(parse(["sweep", "--profile", "ci"]))[1].smallest_scale is None
