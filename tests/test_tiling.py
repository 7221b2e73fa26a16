"""Tiles of full frames: grids that cover every pixel, crops at the right pixels, tiled inference that finds
a sign cut by a tile border once and equals plain inference on a frame of one tile.

The detector here is a fake that "detects" the part of each ground-truth box visible in a tile: it
recognises the tile by its pixels and builds its outputs with ``tlutils.encoding.encode``, so decoding
reproduces the box, as a perfectly trained SSD would.
"""

import numpy as np
import pytest
from PIL import Image

from tlutils.anchors import AnchorConfig, generate_anchors
from tlutils.data.augment import MEAN_COLOR
from tlutils.data.records import DetectionRecord
from tlutils.decoding import decode_detections
from tlutils.encoding import encode
from tlutils.tiling import (
    BACKGROUND_TRIALS,
    boxes_in_window,
    crop_samples,
    detect_tiled,
    extract_tiles,
    merge_tile_detections,
    sample_crops,
    tile_grid,
    window_side,
)

pytestmark = pytest.mark.core

TILE = 64
ANCHORS = generate_anchors(AnchorConfig.from_feature_maps(TILE, (8, 4, 2, 1)))  # 372 default boxes
NUM_CLASSES = 3
CONFIDENT = 8.0  # logit of the fake detector's answer; every other logit is 0


def noise_frame(width, height, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# --- tile geometry ---------------------------------------------------------------------------------


def test_tile_grid_hand_worked():
    # 300 - 160 = 140 pixels to cross in steps of at most 160 - 32 = 128: 3 columns, starts 0, 70, 140.
    np.testing.assert_array_equal(tile_grid(300, 160, 160, overlap=32), [[0, 0, 160, 160], [70, 0, 230, 160],
                                                                        [140, 0, 300, 160]])
    # scale 0.5: tiles of 200 frame pixels sharing 40 (steps <= 160); columns 0, 100, 200; rows 0, 100
    expected = [[x, y, x + 200, y + 200] for y in (0, 100) for x in (0, 100, 200)]
    np.testing.assert_array_equal(tile_grid(400, 300, 100, overlap=20, scales=(0.5,)), expected)
    # a frame smaller than a tile: one tile, padded past the right and bottom edges
    np.testing.assert_array_equal(tile_grid(100, 50, 160), [[0, 0, 160, 160]])
    assert window_side(160, 0.75) == 213 and window_side(300, 2.0) == 150


@pytest.mark.parametrize(
    "width, height, tile_size, overlap, scales",
    [(1360, 800, 160, 64, (1.0, 0.5)), (1360, 800, 300, 128, (1.0,)), (301, 97, 64, 17, (1.0, 0.75, 1.5)),
     (999, 161, 160, 0, (1.0,))],
)
def test_tiles_cover_every_pixel_and_hold_every_overlap_long_interval(width, height, tile_size, overlap, scales):
    tiles = tile_grid(width, height, tile_size, overlap, scales)
    start = 0
    for scale in scales:
        side = window_side(tile_size, scale)
        count = len(np.flatnonzero(tiles[start:, 2] - tiles[start:, 0] == side))
        grid, start = tiles[start : start + count], start + count
        assert np.all(grid[:, 2:] - grid[:, :2] == side)
        assert grid[:, :2].min() == 0 and grid[:, 2].max() == width and grid[:, 3].max() == height  # inside
        covered = np.zeros((height, width), dtype=int)
        for x0, y0, x1, y1 in grid:
            covered[y0:y1, x0:x1] += 1
        assert covered.min() >= 1
        # along each axis, every interval of overlap / scale frame pixels lies whole in one tile
        shared = int(np.ceil(overlap / scale))
        for low, high, length in ((grid[:, 0], grid[:, 2], width), (grid[:, 1], grid[:, 3], height)):
            starts = np.arange(length - shared + 1)
            holds = (low[None] <= starts[:, None]) & (starts[:, None] + shared <= high[None])
            assert holds.any(axis=1).all()
    assert start == len(tiles)


def test_tile_grid_rejects_bad_arguments():
    with pytest.raises(ValueError, match="overlap must lie in"):
        tile_grid(500, 500, 160, overlap=160)
    with pytest.raises(ValueError, match="scales must be"):
        tile_grid(500, 500, 160, scales=(1.0, 0.0))
    with pytest.raises(ValueError, match="tile_size must be a positive integer"):
        tile_grid(500, 500, 0)
    with pytest.raises(ValueError, match="no room to move"):
        tile_grid(500, 500, 4, overlap=3, scales=(1.2,))  # tiles of 3 pixels sharing 2.5


def test_extract_tiles_copies_resamples_and_pads():
    frame = noise_frame(120, 50)
    windows = np.array([[10, 5, 74, 69], [0, 0, 128, 128]])  # native; twice as large, past both edges
    tiles = extract_tiles(frame, windows, TILE)
    assert tiles.shape == (2, TILE, TILE, 3) and tiles.dtype == np.uint8
    np.testing.assert_array_equal(tiles[0, :45], frame[5:50, 10:74])  # exact copy at scale 1 ...
    np.testing.assert_array_equal(tiles[0, 45:], np.broadcast_to(MEAN_COLOR, (19, TILE, 3)))  # ... fill below
    canvas = np.empty((128, 128, 3), np.uint8)
    canvas[...] = MEAN_COLOR
    canvas[:50, :120] = frame
    expected = np.asarray(Image.fromarray(canvas).resize((TILE, TILE), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(tiles[1], expected)
    with pytest.raises(ValueError, match=r"window 0 = \[-1, 0, 63, 64\]"):
        extract_tiles(frame, [[-1, 0, 63, 64]], TILE)


# --- training crops --------------------------------------------------------------------------------


def test_boxes_in_window_hand_worked():
    boxes = [[10, 10, 30, 30], [80, 10, 120, 20], [90, 10, 130, 20], [150, 150, 160, 160]]
    kept, labels = boxes_in_window(boxes, np.array([1, 2, 3, 4]), [0, 0, 100, 100], crop_size=50)
    # inside: halved; half inside: clipped then halved; a quarter inside: dropped; outside: dropped
    np.testing.assert_array_equal(kept, [[5, 5, 15, 15], [40, 5, 50, 10]])
    np.testing.assert_array_equal(labels, [1, 2])
    kept, labels = boxes_in_window(boxes, np.array([1, 2, 3, 4]), [0, 0, 100, 100], 100, min_visible=0.25)
    np.testing.assert_array_equal(labels, [1, 2, 3])


SIGNS = np.array([[40, 30, 72, 62], [100, 200, 120, 220], [300, 50, 380, 130], [350, 250, 366, 266]], float)


def test_crops_show_their_window_and_boxes_at_native_resolution():
    frame = noise_frame(400, 300)
    labels = np.array([5, 6, 7, 8])
    crops = sample_crops((frame, SIGNS, labels), 96, np.random.default_rng(3), num_positive=6, num_background=3)
    assert len(crops) == 9
    for index, crop in enumerate(crops):
        x0, y0, x1, y1 = crop.window
        assert (x1 - x0, y1 - y0) == (96, 96) and x0 >= 0 and y0 >= 0 and x1 <= 400 and y1 <= 300
        np.testing.assert_array_equal(crop.image, frame[y0:y1, x0:x1])
        # the boxes, worked out here: at least half of the area inside, clipped, shifted to the crop
        clipped = np.clip(SIGNS, [x0, y0, x0, y0], [x1, y1, x1, y1])
        visible = np.prod(clipped[:, 2:] - clipped[:, :2], axis=1) / np.prod(SIGNS[:, 2:] - SIGNS[:, :2], axis=1)
        np.testing.assert_array_equal(crop.boxes, (clipped - [x0, y0, x0, y0])[visible >= 0.5])
        np.testing.assert_array_equal(crop.labels, labels[visible >= 0.5])
        if index < 6:  # positive: holds a sign whole
            assert np.any(visible == 1.0)
        else:  # background: touches no sign at all
            assert len(crop.boxes) == 0 and np.all(visible == 0.0)


def test_scaled_crops_put_boxes_on_their_pixels():
    frame = np.zeros((300, 400, 3), np.uint8)
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.uint8)
    for (x0, y0, x1, y1), colour in zip(SIGNS.astype(int), colours):
        frame[y0:y1, x0:x1] = colour
    crops = sample_crops((frame, SIGNS, np.arange(4)), 64, np.random.default_rng(1), 4, 0, scale_jitter=(0.5, 0.5))
    for crop in crops:
        assert crop.window[2] - crop.window[0] == 128  # 64 / 0.5 frame pixels
        x0, y0, x1, y1 = crop.window
        clipped = np.clip(SIGNS[crop.labels], [x0, y0, x0, y0], [x1, y1, x1, y1])
        np.testing.assert_array_equal(crop.boxes, (clipped - [x0, y0, x0, y0]) / 2)
        for (x0, y0, x1, y1), label in zip(crop.boxes, crop.labels):
            centre = crop.image[int((y0 + y1) / 2), int((x0 + x1) / 2)]
            np.testing.assert_array_equal(centre, colours[label])


def test_crops_are_deterministic_per_seed():
    frame = noise_frame(400, 300)

    def windows(seed):
        crops = sample_crops((frame, SIGNS, np.arange(4)), 64, np.random.default_rng(seed), 3, 2, (0.5, 2.0))
        return np.stack([crop.window for crop in crops])

    np.testing.assert_array_equal(windows(7), windows(7))
    assert not np.array_equal(windows(7), windows(8))


def test_small_frames_crowded_frames_and_frames_without_signs():
    frame = noise_frame(50, 40)
    crops = sample_crops((frame, [[10, 10, 20, 20]], [1]), 64, np.random.default_rng(0), 1, 1)
    assert len(crops) == 1  # no window of 64 on a 50 x 40 frame misses the sign: no background crop
    np.testing.assert_array_equal(crops[0].window, [0, 0, 64, 64])
    np.testing.assert_array_equal(crops[0].image[:40, :50], frame)
    np.testing.assert_array_equal(crops[0].image[40:, :], np.broadcast_to(MEAN_COLOR, (24, 64, 3)))
    np.testing.assert_array_equal(crops[0].boxes, [[10, 10, 20, 20]])
    crops = sample_crops((noise_frame(200, 100), np.zeros((0, 4)), []), 64, np.random.default_rng(0), 2, 2)
    assert len(crops) == 2 and all(len(crop.boxes) == 0 for crop in crops)
    assert BACKGROUND_TRIALS >= 10
    with pytest.raises(ValueError, match=r"box 0 = \[30.0, 10.0, 20.0, 20.0\] is not finite, empty, inverted"):
        sample_crops((frame, [[30, 10, 20, 20]], [1]), 64, np.random.default_rng(0))


def test_crop_samples_decode_records_and_feed_a_detection_sequence(tmp_path):
    from tlutils.data.pipeline import DetectionSequence

    records = []
    for index in range(3):
        path = tmp_path / f"frame{index}.png"
        Image.fromarray(noise_frame(400, 300, seed=index)).save(path)
        records.append(DetectionRecord(str(path), 400, 300, SIGNS[index : index + 2], [10 + index, 11 + index],
                                       ("a", "b"), (None, None)))
    samples = crop_samples(records, TILE, seed=0, num_positive=2, num_background=1)
    assert len(samples) == 9
    again = crop_samples(records, TILE, seed=0, num_positive=2, num_background=1)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(samples, again))
    other_epoch = crop_samples(records, TILE, seed=0, epoch=1, num_positive=2, num_background=1)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(samples, other_epoch))
    label_map = {label: label - 9 for label in range(10, 14)}
    sequence = DetectionSequence(samples, ANCHORS, label_map, batch_size=9, input_size=TILE, shuffle=False)
    images, targets = sequence[0]
    assert images.shape == (9, TILE, TILE, 3)
    positives = (targets["class_targets"] > 0).sum(axis=1)
    assert np.all(positives[[0, 1, 3, 4, 6, 7]] > 0) and np.all(positives[[2, 5, 8]] == 0)


# --- tiled inference -------------------------------------------------------------------------------


class FakeDetector:
    """Outputs that decode to the visible part of each frame box in every tile (at least 1 pixel square).

    It recognises a tile by its pixels (``extract_tiles`` of each frame's grid; noise frames make every
    tile distinct); other images (the padding of the last batch) get background everywhere.

    Args:
        frames: ``(image, boxes, labels)`` per frame: pixel corners and model classes.
    """

    def __init__(self, frames, overlap, scales):
        self.tiles = {}  # tile pixels -> (window, frame boxes, labels)
        for frame, boxes, labels in frames:
            height, width = frame.shape[:2]
            windows = tile_grid(width, height, TILE, overlap, scales)
            for image, window in zip(extract_tiles(frame, windows, TILE), windows):
                self.tiles[image.tobytes()] = window, np.reshape(boxes, (-1, 4)).astype(float), np.asarray(labels)
        self.batch_shapes = []

    def __call__(self, images):
        self.batch_shapes.append(images.shape)
        logits = np.zeros((len(images), len(ANCHORS), NUM_CLASSES + 1), np.float32)
        logits[..., 0] = CONFIDENT
        offsets = np.zeros((len(images), len(ANCHORS), 4), np.float32)
        for row, image in enumerate(images):
            if image.astype(np.uint8).tobytes() not in self.tiles:
                continue
            window, boxes, labels = self.tiles[image.astype(np.uint8).tobytes()]
            visible = np.clip(boxes, window[[0, 1, 0, 1]], window[[2, 3, 2, 3]])
            shown = np.all(visible[:, 2:] - visible[:, :2] >= 1, axis=1)
            local = (visible[shown] - window[[0, 1, 0, 1]]) / (window[2] - window[0])
            offsets[row], classes = encode(np.clip(local, 0, 1), labels[shown], ANCHORS)
            positive = classes > 0
            logits[row, positive, 0] = 0.0
            logits[row, positive, classes[positive]] = CONFIDENT
        return {"class_logits": logits, "box_offsets": offsets}


def test_sign_cut_by_tile_borders_is_found_once_at_its_place():
    # Frame 120 x 64, tiles of 64 sharing 32: columns 0, 28, 56. The sign x 50..70 shows 70% in tile 0
    # (cut at x = 64), whole in tile 1, 30% in tile 2 (cut at x = 56).
    frame, sign = noise_frame(120, 64), [50, 20, 70, 40]
    np.testing.assert_array_equal(tile_grid(120, 64, TILE, 32)[:, 0], [0, 28, 56])
    detector = FakeDetector([(frame, [sign], [2])], overlap=32, scales=(1.0,))
    found = detect_tiled(detector, frame, ANCHORS, TILE, overlap=32, score_threshold=0.5, batch_size=2)
    assert detector.batch_shapes == [(2, TILE, TILE, 3)] * 2  # 3 tiles, the last batch padded
    np.testing.assert_array_equal(found["labels"], [2])
    np.testing.assert_allclose(found["boxes"], [np.divide(sign, [120, 64, 120, 64])], atol=1e-5)
    assert found["scores"][0] > 0.99

    # Class-wise NMS alone (no cut rule): the tie goes to tile 0's piece, and the 30% piece stays too.
    plain = detect_tiled(detector, frame, ANCHORS, TILE, overlap=32, score_threshold=0.5, border_margin=None)
    np.testing.assert_allclose(plain["boxes"] * [120, 64, 120, 64], [[50, 20, 64, 40], [56, 20, 70, 40]], atol=1e-3)


def test_sign_larger_than_the_overlap_is_found_whole_at_a_coarser_scale():
    # Frame 256 x 128, tiles of 64 sharing 16: at scale 1 (columns 0, 48, 96, 144, 192) the 60 pixel wide
    # sign x 70..130 is cut in every tile; at scale 0.5 (128 pixel tiles at 0, 64, 128) tile 64 holds it.
    frame, sign = noise_frame(256, 128, seed=2), [70, 30, 130, 60]
    detector = FakeDetector([(frame, [sign], [1])], overlap=16, scales=(1.0, 0.5))
    found = detect_tiled(detector, frame, ANCHORS, TILE, overlap=16, scales=(1.0, 0.5), score_threshold=0.5)
    np.testing.assert_array_equal(found["labels"], [1])
    np.testing.assert_allclose(found["boxes"], [np.divide(sign, [256, 128, 256, 128])], atol=1e-5)

    # At scale 1 only, the cut pieces are all there is: they stay (two, side by side), none whole.
    fine = FakeDetector([(frame, [sign], [1])], overlap=16, scales=(1.0,))
    pieces = detect_tiled(fine, frame, ANCHORS, TILE, overlap=16, score_threshold=0.5)["boxes"] * [256, 128, 256, 128]
    assert len(pieces) == 2
    np.testing.assert_allclose([pieces[:, 0].min(), pieces[:, 2].max()], [70, 130], atol=1e-3)


def test_frame_of_one_tile_is_plain_inference():
    frame = noise_frame(TILE, TILE, seed=5)
    generator = np.random.default_rng(0)
    base_logits = generator.normal(0.0, 3.0, (len(ANCHORS), NUM_CLASSES + 1))
    base_offsets = generator.normal(0.0, 1.0, (len(ANCHORS), 4))
    seen = []

    def predict(images):  # outputs that depend on the pixels
        seen.append(images)
        brightness = images.mean(axis=(1, 2, 3))[:, None, None] / 255.0
        return {"class_logits": (base_logits * (0.5 + brightness)).astype(np.float32),
                "box_offsets": (base_offsets * brightness).astype(np.float32)}

    plain = decode_detections(**predict(frame[None].astype(np.float32)), anchors=ANCHORS)[0]
    assert len(plain["scores"]) == 200  # top_k: many boxes, some at the frame edges
    # batch_size=1: the softmax sees the same shape (XLA may round a batch of 16 differently, by 1 ulp)
    tiled = detect_tiled(predict, frame, ANCHORS, TILE, overlap=16, batch_size=1)
    np.testing.assert_array_equal(seen[-1][0], frame.astype(np.float32))
    for name in ("boxes", "scores", "labels"):
        np.testing.assert_array_equal(tiled[name], plain[name])
        assert tiled[name].dtype == plain[name].dtype
    padded = detect_tiled(predict, frame, ANCHORS, TILE, overlap=16)  # a batch of 16: 15 padding tiles
    assert seen[-1].shape == (16, TILE, TILE, 3) and not seen[-1][1:].any()
    np.testing.assert_array_equal(padded["labels"], plain["labels"])
    np.testing.assert_allclose(padded["scores"], plain["scores"], rtol=1e-6)
    np.testing.assert_allclose(padded["boxes"], plain["boxes"], atol=1e-6)


def test_merge_hand_made_tiles():
    # Two tiles of 64 side by side on a 112 x 64 frame (they share 16 pixels).
    tiles = np.array([[0, 0, 64, 64], [48, 0, 112, 64]])
    per_tile = [
        {"boxes": np.array([[0.8125, 0.25, 1.0, 0.5], [0.0, 0.0, 0.25, 0.25]]), "scores": np.array([0.9, 0.3]),
         "labels": np.array([1, 1])},  # a piece cut at x = 64 (0.9), a whole box at the frame's corner
        {"boxes": np.array([[0.0625, 0.25, 0.5, 0.5]]), "scores": np.array([0.6]), "labels": np.array([1])},
    ]  # tile 1: x 52..80 whole; tile 0's piece is x 52..64, inside it -> dropped
    merged = merge_tile_detections(per_tile, tiles, 112, 64, TILE)
    np.testing.assert_allclose(merged["boxes"] * [112, 64, 112, 64], [[52, 16, 80, 32], [0, 0, 16, 16]], rtol=1e-6)
    np.testing.assert_allclose(merged["scores"], [0.6, 0.3])
    per_tile[1]["labels"] = np.array([2])  # another class does not make a piece of it
    assert len(merge_tile_detections(per_tile, tiles, 112, 64, TILE)["scores"]) == 3
    empty = merge_tile_detections([{"boxes": np.zeros((0, 4)), "scores": [], "labels": []}] * 2, tiles, 112, 64, TILE)
    assert empty["boxes"].shape == (0, 4) and empty["labels"].dtype == np.int32


def test_evaluate_tiled_scores_whole_frames(tmp_path):
    from tlutils.evaluation import evaluate_tiled

    # Frame 0: a small sign (20 x 20, dataset id 10) and a medium one (40 x 40, id 11); frame 1: a small
    # sign the detector misses. Class 1 (id 10): 2 signs, 1 found -> AP 0.5; class 2: AP 1. Tiles share 48
    # pixels: every sign lies whole, away from the borders, in some tile.
    signs = [np.array([[20, 20, 40, 40], [100, 30, 140, 70]]), np.array([[60, 50, 80, 70]])]
    frames = [noise_frame(200, 100, seed=3), noise_frame(150, 120, seed=4)]
    records = []
    for index, (frame, boxes) in enumerate(zip(frames, signs)):
        Image.fromarray(frame).save(tmp_path / f"{index}.png")
        labels = [10, 11][: len(boxes)]
        records.append(DetectionRecord(str(tmp_path / f"{index}.png"), frame.shape[1], frame.shape[0], boxes, labels,
                                       ("a",) * len(boxes), (None,) * len(boxes)))
    detector = FakeDetector([(frames[0], signs[0], [1, 2]), (frames[1], np.zeros((0, 4)), [])], 48, (1.0,))
    scores = evaluate_tiled(detector, records, ANCHORS, {10: 1, 11: 2}, tile_size=TILE, overlap=48)
    assert scores["per_class"] == {1: pytest.approx(0.5), 2: pytest.approx(1.0)}
    assert scores["map50"] == pytest.approx(0.75)
    assert scores["coco_map"] == pytest.approx((51 / 101 + 1.0) / 2, abs=1e-9)  # recall 0.5 at every IoU
    assert scores["by_size"]["small"] == pytest.approx(0.5) and scores["by_size"]["medium"] == pytest.approx(1.0)
    assert np.isnan(scores["by_size"]["large"])


def test_gtsdb_sample_signs_are_whole_in_a_tile_and_in_their_crops(shared_dir):
    from tlutils.data.loaders import load_gtsdb
    from tlutils.tiling import BORDER_MARGIN

    frames = load_gtsdb(shared_dir / "data" / "gtsdb-sample")  # 12 frames of 1360 x 800, 16 signs of 16-128 px
    tiles = tile_grid(1360, 800, 160, overlap=64, scales=(1.0, 0.5))
    sides = tiles[:, 2:3] - tiles[:, 0:1]
    margin = BORDER_MARGIN * sides / 160  # frame pixels
    signs = np.concatenate([record.boxes for record in frames])
    inside = np.all((signs[None, :, :2] >= tiles[:, None, :2] + margin[..., None]) &
                    (signs[None, :, 2:] <= tiles[:, None, 2:] - margin[..., None]), axis=2)  # (T, signs)
    assert inside.any(axis=0).all()  # every sign, away from the borders, in a tile: found whole

    samples = crop_samples(frames, 160, seed=0, num_positive=1, num_background=1)
    with_signs = [not record.is_background for record in frames]
    assert len(samples) == sum(with_signs) * 2 + (len(frames) - sum(with_signs))
    positives = [sample for sample in samples if len(sample[1])]
    assert len(positives) == sum(with_signs)  # no background crop shows a sign
    for image, boxes, _ in positives:
        assert image.shape == (160, 160, 3) and np.all(boxes >= 0) and np.all(boxes <= 160)


def test_positive_window_grows_to_hold_a_sign_larger_than_the_crop():
    frame = noise_frame(400, 300)
    crops = sample_crops((frame, [[50, 60, 150, 140]], [1]), 64, np.random.default_rng(0), 3, 0)
    for crop in crops:  # 100 x 80 sign, crops of 64: windows of 100 frame pixels, the sign whole in each
        x0, y0, x1, y1 = crop.window
        assert x1 - x0 == 100 and x0 == 50 and 40 <= y0 <= 60
        np.testing.assert_allclose(crop.boxes, [np.subtract([50, 60, 150, 140], [x0, y0, x0, y0]) * 0.64], rtol=1e-6)
