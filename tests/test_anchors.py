"""Default boxes: hand-worked boxes for tiny configs, SSD300's layout, and config validation."""

import dataclasses
import math

import numpy as np
import pytest

from tlutils.anchors import AnchorConfig, generate_anchors

pytestmark = pytest.mark.core

SQRT2 = math.sqrt(2.0)
SQRT3 = math.sqrt(3.0)


def one_cell_config(**overrides) -> AnchorConfig:
    """A single 1x1 layer of scale 0.5 (next scale 0.8) with ratios 1, 2, 1/2 -> 4 boxes."""
    settings = dict(image_size=100, feature_map_sizes=(1,), scales=(0.5, 0.8), aspect_ratios=((1.0, 2.0, 0.5),))
    return AnchorConfig(**{**settings, **overrides})


def test_one_cell_gives_these_four_boxes():
    anchors = generate_anchors(one_cell_config())
    extra = math.sqrt(0.5 * 0.8)  # 0.632456
    expected = [
        [0.5, 0.5, 0.5, 0.5],  # ratio 1, scale 0.5
        [0.5, 0.5, extra, extra],  # extra ratio-1 box, scale sqrt(0.5 * 0.8)
        [0.5, 0.5, 0.5 * SQRT2, 0.5 / SQRT2],  # ratio 2: w = s sqrt(2), h = s / sqrt(2)
        [0.5, 0.5, 0.5 / SQRT2, 0.5 * SQRT2],  # ratio 1/2
    ]
    assert anchors.dtype == np.float32
    np.testing.assert_allclose(anchors, expected, rtol=1e-6)


def test_without_extra_box_the_cell_follows_the_ratios_only():
    config = one_cell_config(aspect_ratios=((2.0, 1.0),), extra_ratio_one_box=False)
    assert config.boxes_per_cell == (2,)
    expected = [[0.5, 0.5, 0.5 * SQRT2, 0.5 / SQRT2], [0.5, 0.5, 0.5, 0.5]]  # ratio 2, then ratio 1
    np.testing.assert_allclose(generate_anchors(config), expected, rtol=1e-6)


def test_two_by_two_grid_runs_row_then_column_and_clips():
    # Centres at 0.25 and 0.75; a 0.6 box around 0.25 spans [-0.05, 0.55] -> clipped [0, 0.55]
    # -> centre 0.275, size 0.55; around 0.75 it spans [0.45, 1.05] -> [0.45, 1] -> centre 0.725.
    config = AnchorConfig(
        image_size=2, feature_map_sizes=(2,), scales=(0.6, 0.6), aspect_ratios=((1.0,),),
        extra_ratio_one_box=False, clip=True,
    )
    expected = [
        [0.275, 0.275, 0.55, 0.55],  # row 0, column 0
        [0.725, 0.275, 0.55, 0.55],  # row 0, column 1: cx moves first
        [0.275, 0.725, 0.55, 0.55],  # row 1, column 0
        [0.725, 0.725, 0.55, 0.55],
    ]
    np.testing.assert_allclose(generate_anchors(config), expected, atol=1e-6)
    unclipped = generate_anchors(dataclasses.replace(config, clip=False))
    np.testing.assert_allclose(unclipped[0], [0.25, 0.25, 0.6, 0.6], atol=1e-7)


def test_ssd300_layout_and_counts():
    config = AnchorConfig.ssd300()
    assert config.boxes_per_cell == (4, 6, 6, 6, 4, 4)
    assert config.num_anchors == 8732
    per_layer = [size * size * boxes for size, boxes in zip(config.feature_map_sizes, config.boxes_per_cell)]
    assert per_layer == [5776, 2166, 600, 150, 36, 4]
    assert generate_anchors(config).shape == (8732, 4)


def test_ssd300_first_boxes_by_hand():
    anchors = generate_anchors(AnchorConfig.ssd300())
    c = 4 / 300  # conv4_3: step 8 px, offset 0.5 -> first centre at 4 px of 300
    conv4_3_first_cell = [
        [c, c, 0.1, 0.1],
        [c, c, math.sqrt(0.1 * 0.2), math.sqrt(0.1 * 0.2)],  # 0.141421
        [c, c, 0.1 * SQRT2, 0.1 / SQRT2],
        [c, c, 0.1 / SQRT2, 0.1 * SQRT2],
    ]
    np.testing.assert_allclose(anchors[:4], conv4_3_first_cell, rtol=1e-6)
    np.testing.assert_allclose(anchors[4], [12 / 300, c, 0.1, 0.1], rtol=1e-6)  # next column
    np.testing.assert_allclose(anchors[38 * 4], [c, 12 / 300, 0.1, 0.1], rtol=1e-6)  # next row
    f = 8 / 300  # fc7 starts at anchor 38 * 38 * 4 = 5776: step 16 px
    fc7_first_cell = [
        [f, f, 0.2, 0.2],
        [f, f, math.sqrt(0.2 * 0.37), math.sqrt(0.2 * 0.37)],  # 0.272029
        [f, f, 0.2 * SQRT2, 0.2 / SQRT2],
        [f, f, 0.2 / SQRT2, 0.2 * SQRT2],
        [f, f, 0.2 * SQRT3, 0.2 / SQRT3],  # 0.346410, 0.115470
        [f, f, 0.2 / SQRT3, 0.2 * SQRT3],
    ]
    np.testing.assert_allclose(anchors[5776:5782], fc7_first_cell, rtol=1e-6)
    # conv11_2: one cell at the image centre; its last box is ratio 1/2 of scale 0.88.
    np.testing.assert_allclose(anchors[-1], [0.5, 0.5, 0.88 / SQRT2, 0.88 * SQRT2], rtol=1e-6)


def test_from_feature_maps_with_six_layers_keeps_ssd300_boxes_and_tiles_the_image():
    config = AnchorConfig.from_feature_maps(200, (25, 13, 7, 4, 2, 1))
    ssd300 = AnchorConfig.ssd300()
    assert config.scales == ssd300.scales and config.aspect_ratios == ssd300.aspect_ratios
    assert config.steps == (8.0, 200 / 13, 200 / 7, 50.0, 100.0, 200.0)
    assert config.num_anchors == 25 * 25 * 4 + 13 * 13 * 6 + 7 * 7 * 6 + 4 * 4 * 6 + 2 * 2 * 4 + 4
    anchors = generate_anchors(config)
    np.testing.assert_allclose(anchors[0], [0.02, 0.02, 0.1, 0.1], rtol=1e-6)  # 4 px of 200
    np.testing.assert_allclose(anchors[-1], [0.5, 0.5, 0.88 / SQRT2, 0.88 * SQRT2], rtol=1e-6)


def test_from_feature_maps_with_seven_layers_uses_the_linear_scales():
    config = AnchorConfig.from_feature_maps(512, (64, 32, 16, 8, 4, 2, 1))
    # 0.1 for the first layer, then 0.2 .. 1.05 in 6 equal steps of 0.85 / 6.
    expected_scales = [0.1, 0.2, 0.2 + 0.85 / 6, 0.2 + 1.7 / 6, 0.625, 0.2 + 3.4 / 6, 0.2 + 4.25 / 6, 1.05]
    np.testing.assert_allclose(config.scales, expected_scales, rtol=1e-12)
    assert config.boxes_per_cell == (4, 6, 6, 6, 6, 4, 4)
    assert config.num_anchors == 24564  # as SSD512
    assert config.steps == (8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0)


def test_from_feature_maps_takes_given_scales_and_ratios():
    config = AnchorConfig.from_feature_maps(64, (2, 1), scales=(0.3, 0.6, 0.9), aspect_ratios=((1.0,), (1.0, 3.0)))
    assert config.boxes_per_cell == (2, 3)
    anchors = generate_anchors(config)
    expected = [
        [0.25, 0.25, 0.3, 0.3], [0.25, 0.25, math.sqrt(0.18), math.sqrt(0.18)],
        [0.75, 0.25, 0.3, 0.3], [0.75, 0.25, math.sqrt(0.18), math.sqrt(0.18)],
        [0.25, 0.75, 0.3, 0.3], [0.25, 0.75, math.sqrt(0.18), math.sqrt(0.18)],
        [0.75, 0.75, 0.3, 0.3], [0.75, 0.75, math.sqrt(0.18), math.sqrt(0.18)],
        [0.5, 0.5, 0.6, 0.6], [0.5, 0.5, math.sqrt(0.54), math.sqrt(0.54)], [0.5, 0.5, 0.6 * SQRT3, 0.6 / SQRT3],
    ]
    np.testing.assert_allclose(anchors, expected, rtol=1e-6)


def test_config_is_hashable_and_compares_by_value():
    assert AnchorConfig.ssd300() == AnchorConfig.ssd300()
    assert hash(AnchorConfig.ssd300()) == hash(AnchorConfig.ssd300())
    assert one_cell_config(scales=[0.5, 0.8]) == one_cell_config()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(image_size=0), r"image_size = 0 must be a positive integer"),
        (dict(image_size=300.0), r"image_size = 300.0 must be a positive integer"),
        (dict(feature_map_sizes=()), r"feature_map_sizes is empty"),
        (dict(feature_map_sizes=(1, 0), scales=(0.5, 0.6, 0.7), aspect_ratios=((1.0,), (1.0,))),
         r"feature_map_sizes\[1\] = 0 must be a positive integer"),
        (dict(scales=(0.5,)), r"scales has 1 entries; expected 2"),
        (dict(scales=(0.5, -0.8)), r"scales\[1\] = -0.8 must be a finite positive number"),
        (dict(scales=(float("nan"), 0.8)), r"scales\[0\] = nan must be a finite positive number"),
        (dict(aspect_ratios=((1.0,), (1.0,))), r"aspect_ratios has 2 entries; expected 1"),
        (dict(aspect_ratios=((1.0, 0.0),)), r"aspect_ratios\[0\]\[1\] = 0.0 must be a finite positive number"),
        (dict(aspect_ratios=((),)), r"aspect_ratios\[0\] is empty"),
        (dict(aspect_ratios=((2.0, 0.5),)), r"aspect_ratios\[0\] = \(2.0, 0.5\) has no ratio 1.0"),
        (dict(steps=(10.0, 20.0)), r"steps has 2 entries; expected 1"),
        (dict(steps=(-1.0,)), r"steps\[0\] = -1.0 must be a finite positive number"),
        (dict(offset=1.5), r"offset = 1.5 must lie in \[0, 1\]"),
    ],
)
def test_bad_config_raises(overrides, message):
    with pytest.raises(ValueError, match=message):
        one_cell_config(**overrides)
