"""SSD augmentation: boxes stay on the pixels they describe, labels follow them, seeds fix results.

The main check paints solid rectangles of distinct colours on a plain image, augments it, and reads
the output pixels back: inside every output box is that box's colour, just outside it is not.
NumPy and Pillow only: not core-marked, so the JAX re-run of the suite does not repeat these.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tlutils.data.augment import (
    MEAN_COLOR,
    TRAFFIC_SIGN_MAX_ZOOM,
    WHOLE_IMAGE,
    Augmenter,
    resize_image,
)

BACKGROUND = (60, 60, 60)
COLORS = {  # label -> RGB, all far apart, from each other, the background and MEAN_COLOR
    1: (230, 20, 20),
    2: (20, 200, 20),
    3: (20, 20, 230),
    4: (230, 230, 20),
    5: (230, 20, 230),
    6: (20, 220, 220),
}
# (xmin, ymin, xmax, ymax) pixel corners in a 320 x 240 image; at least 10 px apart.
RECTANGLES = np.array(
    [
        [10, 10, 70, 60],
        [90, 20, 130, 100],
        [150, 30, 300, 90],
        [20, 120, 60, 150],
        [100, 130, 200, 230],
        [230, 150, 310, 235],
    ],
    dtype=np.float32,
)
LABELS = np.arange(1, 7)
MARGIN = 2.0  # output pixels of resampling blur tolerated next to a box edge


def painted_image() -> np.ndarray:
    image = np.empty((240, 320, 3), dtype=np.uint8)
    image[...] = BACKGROUND
    for (x0, y0, x1, y1), label in zip(RECTANGLES.astype(int), LABELS):
        image[y0:y1, x0:x1] = COLORS[label]
    return image


def interior_and_ring(box: np.ndarray, size: int) -> tuple[tuple[np.ndarray, np.ndarray], list]:
    """Pixel index ranges well inside ``box``, and the pixel rows/columns just outside each edge."""
    x0, y0, x1, y1 = box
    cols = np.arange(np.ceil(x0 + MARGIN - 0.5), np.floor(x1 - MARGIN - 0.5) + 1).astype(int)
    rows = np.arange(np.ceil(y0 + MARGIN - 0.5), np.floor(y1 - MARGIN - 0.5) + 1).astype(int)
    outside = []
    for column in (np.floor(x0 - MARGIN), np.floor(x1 + MARGIN)):
        if 0 <= column < size and len(rows):
            outside.append((rows, np.full(len(rows), int(column))))
    for row in (np.floor(y0 - MARGIN), np.floor(y1 + MARGIN)):
        if 0 <= row < size and len(cols):
            outside.append((np.full(len(cols), int(row)), cols))
    return (rows, cols), outside


def assert_boxes_on_their_pixels(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, exact: bool):
    """Every box's interior is one colour (its label's colour if ``exact``); the ring around is not."""
    size = image.shape[0]
    for index, (box, label) in enumerate(zip(boxes, labels)):
        (rows, cols), outside = interior_and_ring(box, size)
        inside = image[rows[:, None], cols[None, :]].reshape(-1, 3).astype(int)
        if inside.size:
            color = np.array(COLORS[label]) if exact else np.median(inside, axis=0)
            assert np.abs(inside - color).max() <= 3, f"box {index} ({label}) interior is not its colour"
        else:  # box too small for an interior: judge the ring against the label colour
            color = np.array(COLORS[label]) if exact else None
        for ring_rows, ring_cols in outside:
            if color is None:
                continue
            ring = image[ring_rows, ring_cols].astype(int)
            assert np.abs(ring - color).max(axis=1).min() > 40, f"box {index} ({label}) is too small"


@pytest.mark.parametrize("photometric", [False, True])
def test_boxes_stay_on_their_pixels_through_zoom_out_and_crop(photometric):
    augmenter = Augmenter(
        128,
        photometric=photometric,
        zoom_out_probability=1.0,
        crop_choices=(None, 0.1, 0.3, 0.5, 0.7),  # always crop (no WHOLE_IMAGE)
    )
    image = painted_image()
    resized_boxes = resize_image(image, RECTANGLES, 128, 128)[1]
    changed = 0
    for seed in range(12):
        out_image, out_boxes, out_labels = augmenter(image, RECTANGLES, LABELS, np.random.default_rng(seed))
        assert out_image.shape == (128, 128, 3) and out_image.dtype == np.uint8
        assert len(out_boxes) == len(out_labels) >= 1
        assert_boxes_on_their_pixels(out_image, out_boxes, out_labels, exact=not photometric)
        changed += len(out_boxes) != len(resized_boxes) or not np.allclose(out_boxes, resized_boxes[out_labels - 1])
    assert changed >= 10  # the geometry really was augmented


def test_zoom_out_fills_the_canvas_with_the_mean_colour_and_shrinks_boxes():
    augmenter = Augmenter(
        128, photometric=True, crop=False, zoom_out_probability=1.0, max_zoom=TRAFFIC_SIGN_MAX_ZOOM
    )
    image = painted_image()
    reference = resize_image(image, RECTANGLES, 128, 128)[1]
    for seed in range(8):
        out_image, out_boxes, out_labels = augmenter(image, RECTANGLES, LABELS, np.random.default_rng(seed))
        np.testing.assert_array_equal(out_labels, LABELS)  # zoom-out alone keeps every box
        ratio = (reference[:, 2:] - reference[:, :2]) / (out_boxes[:, 2:] - out_boxes[:, :2])
        assert np.allclose(ratio, ratio[0, 0], rtol=1e-4) and 1.0 <= ratio[0, 0] <= 2.0 + 1e-4
        # The image occupies a (128 / ratio)-pixel square; at least one side of it is mean-colour fill.
        border = np.concatenate([out_image[0], out_image[-1], out_image[:, 0], out_image[:, -1]])
        if ratio[0, 0] > 1.05:
            assert (border == MEAN_COLOR).all(axis=1).sum() >= 128


def test_boxes_stay_inside_and_non_degenerate(rng):
    augmenter = Augmenter(96, max_zoom=4.0)
    image = rng.integers(0, 256, size=(150, 200, 3), dtype=np.uint8)
    for seed in range(40):
        sample_rng = np.random.default_rng(seed)
        top_left = sample_rng.uniform(0, 150, size=(5, 2))
        boxes = np.concatenate([top_left, top_left + sample_rng.uniform(2, 60, size=(5, 2))], axis=1)
        out_image, out_boxes, out_labels = augmenter(image, boxes, np.arange(5), sample_rng)
        assert out_boxes.dtype == np.float32 and out_boxes.shape == (len(out_labels), 4)
        assert (out_boxes >= 0).all() and (out_boxes <= 96).all()
        assert (out_boxes[:, 2:] - out_boxes[:, :2] >= augmenter.min_box_size).all()


def test_same_seed_same_result_and_seeds_differ():
    augmenter = Augmenter(96)
    image = painted_image()
    first = augmenter(image, RECTANGLES, LABELS, np.random.default_rng(7))
    again = augmenter(image, RECTANGLES, LABELS, np.random.default_rng(7))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    others = [augmenter(image, RECTANGLES, LABELS, np.random.default_rng(s))[0] for s in range(8, 12)]
    assert not all(np.array_equal(first[0], other) for other in others)


def test_validation_path_is_a_pure_resize_with_exactly_scaled_boxes():
    image = painted_image()
    tiny = np.concatenate([RECTANGLES, [[300.0, 5.0, 300.5, 5.5]]])  # kept: no augmentation drops
    labels = np.append(LABELS, 1)
    out_image, out_boxes, out_labels = Augmenter.validation(100)(image, tiny, labels)
    expected = np.asarray(Image.fromarray(image).resize((100, 100), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(out_image, expected)
    np.testing.assert_allclose(out_boxes, tiny * [100 / 320, 100 / 240, 100 / 320, 100 / 240], rtol=1e-6)
    np.testing.assert_array_equal(out_labels, labels)
    assert not Augmenter.validation(100).is_random


def test_flip_is_off_by_default():
    assert Augmenter(64).flip is False
    geometric_only = Augmenter(64, photometric=False, zoom_out=False, crop=False)  # flip left default
    image = painted_image()
    expected = Augmenter.validation(64)(image, RECTANGLES, LABELS)
    for seed in range(10):
        got = geometric_only(image, RECTANGLES, LABELS, np.random.default_rng(seed))
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)


def test_flip_mirrors_image_and_boxes_and_swaps_left_right_classes():
    # Say 1 = "turn left" and 2 = "turn right"; 3 has no mirror partner.
    flipping = Augmenter(
        64, photometric=False, zoom_out=False, crop=False, flip=True, flip_probability=1.0,
        flip_label_map={1: 2},
    )
    image = painted_image()
    plain_image, plain_boxes, _ = Augmenter.validation(64)(image, RECTANGLES, LABELS)
    out_image, out_boxes, out_labels = flipping(image, RECTANGLES, LABELS, np.random.default_rng(0))
    np.testing.assert_array_equal(out_image, plain_image[:, ::-1])
    np.testing.assert_allclose(out_boxes[:, [0, 2]], 64 - plain_boxes[:, [2, 0]], atol=1e-5)
    np.testing.assert_allclose(out_boxes[:, [1, 3]], plain_boxes[:, [1, 3]], atol=1e-5)
    np.testing.assert_array_equal(out_labels, [2, 1, 3, 4, 5, 6])


def test_photometric_keeps_grey_grey_without_brightness_and_contrast():
    colour_only = Augmenter(
        32, zoom_out=False, crop=False, brightness_delta=0.0, contrast_range=(1.0, 1.0)
    )
    grey = np.full((40, 40, 3), 90, dtype=np.uint8)
    red = np.zeros((40, 40, 3), dtype=np.uint8)
    red[..., 0] = 200
    hue_moved = 0
    for seed in range(20):
        grey_out = colour_only(grey, np.zeros((0, 4)), np.zeros(0, int), np.random.default_rng(seed))[0]
        assert np.abs(grey_out.astype(int) - 90).max() <= 1
        red_out = colour_only(red, np.zeros((0, 4)), np.zeros(0, int), np.random.default_rng(seed))[0]
        hue_moved += int(np.abs(red_out[..., 1:].astype(int) - 0).max() > 5 or red_out[0, 0, 0] != 200)
    assert hue_moved >= 5


def test_crop_sampler_honours_the_minimum_iou_and_keeps_centres():
    augmenter = Augmenter(64, crop_choices=(0.7,))
    box = np.array([[40.0, 30.0, 160.0, 130.0]])
    found = 0
    for seed in range(30):
        chosen = augmenter._sample_crop(200.0, 150.0, box, np.random.default_rng(seed))
        if chosen is None:
            continue
        found += 1
        patch, keep = chosen
        top_left, bottom_right = np.maximum(patch[:2], box[0, :2]), np.minimum(patch[2:], box[0, 2:])
        overlap = np.prod(bottom_right - top_left)
        union = np.prod(patch[2:] - patch[:2]) + np.prod(box[0, 2:] - box[0, :2]) - overlap
        assert overlap / union >= 0.7 and keep.tolist() == [True]
        aspect = (patch[3] - patch[1]) / (patch[2] - patch[0])
        assert 0.5 <= aspect <= 2.0 and patch[2] - patch[0] >= 0.3 * 200 - 1e-9
    assert found >= 20


def test_whole_image_choice_and_images_without_boxes():
    whole = Augmenter(48, photometric=False, zoom_out=False, crop_choices=(WHOLE_IMAGE,))
    image = painted_image()
    expected = Augmenter.validation(48)(image, RECTANGLES, LABELS)
    got = whole(image, RECTANGLES, LABELS, np.random.default_rng(0))
    np.testing.assert_array_equal(got[0], expected[0])
    no_boxes, no_labels = np.zeros((0, 4)), np.zeros(0, np.int64)
    out_image, out_boxes, out_labels = Augmenter(48)(image, no_boxes, no_labels, np.random.default_rng(0))
    assert out_image.shape == (48, 48, 3) and out_boxes.shape == (0, 4) and out_labels.shape == (0,)


@pytest.mark.parametrize(
    "boxes, labels, match",
    [
        ([[10, 10, 5, 20]], [1], "box 0"),
        ([[10, 10, 20, 20], [400, 10, 420, 20]], [1, 2], "box 1"),
        ([[10, 10, 20, 20]], [1, 2], "labels"),
        ([[10, 10, 20]], [1], r"\(K, 4\)"),
    ],
)
def test_bad_samples_raise_value_error(boxes, labels, match):
    with pytest.raises(ValueError, match=match):
        Augmenter.validation(32)(painted_image(), np.array(boxes, float), np.array(labels))


def test_bad_calls_and_configurations_raise_value_error():
    with pytest.raises(ValueError, match="uint8"):
        Augmenter.validation(32)(painted_image().astype(np.float32), RECTANGLES, LABELS)
    with pytest.raises(ValueError, match="rng"):
        Augmenter(32)(painted_image(), RECTANGLES, LABELS)
    with pytest.raises(ValueError, match="max_zoom"):
        Augmenter(32, max_zoom=0.5)
    with pytest.raises(ValueError, match=r"crop_choices\[1\]"):
        Augmenter(32, crop_choices=(None, 1.5))
    with pytest.raises(ValueError, match="flip_label_map"):
        Augmenter(32, flip_label_map={1: 2, 3: 2})


def test_crop_keeps_exactly_the_boxes_whose_centre_lies_in_the_patch():
    augmenter = Augmenter(64, crop_choices=(None,))
    boxes = RECTANGLES.astype(np.float64)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    dropped = 0
    for seed in range(30):
        patch, keep = augmenter._sample_crop(320.0, 240.0, boxes, np.random.default_rng(seed))
        expected = np.all((centres > patch[:2]) & (centres < patch[2:]), axis=1)
        np.testing.assert_array_equal(keep, expected)
        dropped += int((~keep).any())
    assert dropped >= 10
