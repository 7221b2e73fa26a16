"""Detection on full frames through tiles: tile geometry, training crops at native resolution, tiled inference.

Why (issue 18): a GTSDB frame is 1360 x 800 pixels and its signs 16-128 pixels wide. Warped whole into
a 300 pixel detector input a sign is 3.5-28 pixels wide, into a 160 pixel input 2-15 pixels: below the
smallest default box (0.1 of the input, ``tlutils.anchors``), and no SSD finds it. So the detector
works on square pieces of the frame at (or near) its native resolution:

- **training** samples crops of ``crop_size`` pixels around signs and on background
  (:func:`sample_crops`, :func:`crop_samples`) and trains on them as on any image;
- **inference** cuts the whole frame into overlapping tiles (:func:`tile_grid`), detects in each and
  merges the detections into one list for the frame (:func:`detect_tiled`), so mAP is measured on
  whole frames (``tlutils.evaluation.evaluate_tiled``).

Conventions:

- A **window** (a tile or a crop) is a square of integer **pixel** corners ``(x0, y0, x1, y1)`` of the
  frame. A window at scale ``s`` has side ``round(tile_size / s)`` frame pixels and is resampled to
  ``tile_size x tile_size`` (``s < 1`` shrinks, ``s > 1`` enlarges). Where a frame is smaller than a
  window, the window starts at 0 and the part past the right or bottom edge is ``MEAN_COLOR``.
- Frame boxes, like ``DetectionRecord`` boxes, are pixel corners ``(xmin, ymin, xmax, ymax)`` in
  continuous coordinates (pixel ``c`` covers ``[c, c + 1)``); a crop's boxes are pixel corners in the
  crop (a ``tlutils.data.pipeline.Sample``); the detections of :func:`detect_tiled` are corners
  **normalized to the whole frame** ``[0, 1]``, like those of ``decode_detections`` for its input.
- Tiles and crops are resampled alike (Pillow bilinear with antialiasing, as
  ``tlutils.data.augment.resize_image``; an exact copy at scale 1), so the detector sees at test time
  what it saw in training.

Memory: :func:`detect_tiled` holds one frame, one batch of tiles and their outputs; :func:`crop_samples`
one decoded frame at a time and the crops. NumPy and Pillow, plus ``tlutils.decoding`` (``keras.ops``)
for the detections: no TensorFlow, so it runs with ``KERAS_BACKEND=jax``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from PIL import Image

from tlutils.boxes import area_numpy, intersection_numpy
from tlutils.data.augment import MEAN_COLOR
from tlutils.data.records import DetectionRecord, load_image
from tlutils.decoding import NMS_IOU_THRESHOLD, SCORE_THRESHOLD, TOP_K, batched_nms, decode_detections

if TYPE_CHECKING:
    from tlutils.data.pipeline import Sample

#: Pixels of the model input that neighbouring tiles share, at every scale (at scale ``s``:
#: ``overlap / s`` frame pixels). An object up to this size lies whole in at least one tile (up to
#: ``overlap - 2 * BORDER_MARGIN``: whole and off its borders), so it must be at least the largest object
#: to find whole: 128 for GTSDB, whose signs are 16-128 pixels (Houben et al., IJCNN 2013). Larger
#: objects are cut in every tile of that scale and need a coarser one. On a 160 pixel detector 128 of
#: 160 is costly (819 tiles per GTSDB frame); ``overlap=64, scales=(1.0, 0.5)`` gives 140 tiles and
#: still holds each of the 851 GTSDB training signs whole and off the borders in some tile.
DEFAULT_OVERLAP = 128
#: Scales of tiled inference by default: the frame's native resolution only.
DEFAULT_SCALES = (1.0,)
#: A crop keeps a box only if at least this fraction of the box's area lies inside it (clipped to the
#: crop); the other boxes in the crop are **dropped**, so their visible slivers train as background.
#: Dropped, not ignored: ``DetectionSequence``/``encode`` have no per-box ignore, and a detector that
#: does not fire on slivers suits tiled inference, where the tile that holds the sign whole reports it.
#: A kept part has IoU >= 0.5 with its whole sign, above NMS's 0.45: at inference the whole sign's
#: detection suppresses it (and :func:`merge_tile_detections` drops it as a piece before that).
MIN_VISIBLE = 0.5
#: Random windows tried at once for each background crop; none free of boxes: the crop is left out.
BACKGROUND_TRIALS = 50
#: A detection within this many input pixels of a tile side shared with a neighbouring tile (not a
#: frame edge) counts as **cut** by the tile: it may be a piece of a sign that another tile holds whole.
BORDER_MARGIN = 2.0
#: A cut detection more than this fraction of whose area lies inside a kept whole detection of its
#: class is a piece of that sign and is dropped (see :func:`merge_tile_detections`).
PIECE_COVERAGE = 0.5
#: Tiles per call of ``predict``; the last batch is padded to this size (one shape: no retracing).
TILE_BATCH_SIZE = 16
#: Cut detections compared at once with the kept whole ones (bounds the memory of that step).
_PIECE_BLOCK = 512

Predict = Callable[[np.ndarray], Mapping[str, Any]]


# ------------------------------------------------------------------------------------------------
# Tile geometry
# ------------------------------------------------------------------------------------------------


def tile_grid(
    width: int,
    height: int,
    tile_size: int,
    overlap: float = DEFAULT_OVERLAP,
    scales: Sequence[float] = DEFAULT_SCALES,
) -> np.ndarray:
    """Overlapping square tiles that together cover every pixel of a ``width x height`` frame.

    At each scale ``s`` the tiles have side ``round(tile_size / s)`` frame pixels. Along each axis
    ``n`` tiles start at evenly spread integer positions from 0 to ``length - side`` (so they lie inside
    the frame), ``n`` the fewest that let neighbours share at least ``overlap / s`` pixels: any
    interval of up to that length lies whole in one tile. A frame shorter than the side on an axis
    gets one tile there, starting at 0 and padded past the edge.

    Example: ``tile_grid(300, 160, 160, overlap=32)`` is ``[[0, 0, 160, 160], [70, 0, 230, 160],
    [140, 0, 300, 160]]`` (3 columns: 2 could share only 20 pixels).

    Args:
        width, height: frame size in pixels.
        tile_size: the detector's input side ``S``.
        overlap: input pixels shared by neighbouring tiles (see :data:`DEFAULT_OVERLAP`), ``< S``.
        scales: one grid per scale, in this order.

    Returns:
        ``(T, 4)`` int64 pixel corners ``(x0, y0, x1, y1)``, by scale, then row, then column.
    """
    _check_size("width", width)
    _check_size("height", height)
    _check_size("tile_size", tile_size)
    grids = []
    for scale in _check_scales(scales):
        side, shared = window_side(tile_size, scale), overlap / scale
        stride = _max_stride(side, shared, tile_size, overlap, scale)
        left, top = np.meshgrid(_axis_starts(width, side, stride), _axis_starts(height, side, stride))
        starts = np.stack([left.ravel(), top.ravel()], axis=1)  # (rows * columns, 2), row-major
        grids.append(np.concatenate([starts, starts + side], axis=1))
    return np.concatenate(grids).astype(np.int64)


def window_side(tile_size: int, scale: float) -> int:
    """Frame pixels of a window at ``scale`` (it is resampled to ``tile_size``): ``round(tile_size / scale)``."""
    return max(1, round(tile_size / scale))


def _axis_starts(length: int, side: int, stride: int) -> np.ndarray:
    """Integer starts from 0 to ``length - side``, evenly spread, at most ``stride`` apart."""
    if length <= side:
        return np.zeros(1, dtype=np.int64)
    count = math.ceil((length - side) / stride) + 1
    # floor(x + 0.5), not banker's rounding: consecutive starts then differ by at most ceil(step) <= stride
    return np.floor(np.linspace(0.0, length - side, count) + 0.5).astype(np.int64)


def _max_stride(side: int, shared: float, tile_size: int, overlap: float, scale: float) -> int:
    """Largest start-to-start step of tiles of ``side`` that share ``shared`` pixels, or ``ValueError``."""
    if not 0 <= overlap < tile_size:
        raise ValueError(f"overlap must lie in [0, tile_size = {tile_size}) input pixels, got {overlap!r}")
    stride = math.floor(side - shared)
    if stride < 1:
        raise ValueError(
            f"at scale {scale} tiles are {side} pixels and must share {shared:g}: no room to move; "
            "lower the overlap"
        )
    return stride


# ------------------------------------------------------------------------------------------------
# Cutting windows out of a frame
# ------------------------------------------------------------------------------------------------


def extract_tiles(
    image: np.ndarray, windows: np.ndarray, tile_size: int, fill: tuple[int, int, int] = MEAN_COLOR
) -> np.ndarray:
    """The pixels of each window, resampled to ``tile_size x tile_size``.

    Args:
        image: the frame, ``uint8 (H, W, 3)``.
        windows: ``(T, 4)`` integer pixel corners with ``x0, y0 >= 0`` (:func:`tile_grid`); they may
            reach past the right and bottom edges, which are filled with ``fill``.
        tile_size: output side ``S``.

    Returns:
        ``uint8 (T, S, S, 3)``: a window of side ``S`` is copied exactly, others are resampled
        (Pillow bilinear with antialiasing).
    """
    image = _check_image(image)
    windows = np.asarray(windows, dtype=np.int64).reshape(-1, 4)
    bad = np.any(windows[:, :2] < 0, axis=1) | np.any(windows[:, 2:] <= windows[:, :2], axis=1)
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(f"window {index} = {windows[index].tolist()} must have 0 <= x0 < x1 and 0 <= y0 < y1")
    tiles = np.empty((len(windows), tile_size, tile_size, 3), dtype=np.uint8)
    if not len(windows):
        return tiles
    canvas = _padded(image, int(windows[:, 2].max()), int(windows[:, 3].max()), fill)
    picture = None  # the Pillow image, made once and only if some window needs resampling
    for index, (x0, y0, x1, y1) in enumerate(windows.tolist()):
        if x1 - x0 == tile_size and y1 - y0 == tile_size:
            tiles[index] = canvas[y0:y1, x0:x1]
            continue
        if picture is None:
            picture = Image.fromarray(canvas)
        resized = picture.resize((tile_size, tile_size), Image.Resampling.BILINEAR, box=(x0, y0, x1, y1))
        tiles[index] = np.asarray(resized)
    return tiles


def _padded(image: np.ndarray, width: int, height: int, fill: tuple[int, int, int]) -> np.ndarray:
    """``image`` itself if it is at least ``width x height``, else on a canvas of ``fill`` at the top left."""
    image_height, image_width = image.shape[:2]
    if image_width >= width and image_height >= height:
        return image
    canvas = np.empty((max(height, image_height), max(width, image_width), 3), dtype=np.uint8)
    canvas[...] = np.asarray(fill, dtype=np.uint8)
    canvas[:image_height, :image_width] = image
    return canvas


# ------------------------------------------------------------------------------------------------
# Training crops
# ------------------------------------------------------------------------------------------------


class Crop(NamedTuple):
    """One training crop: ``sample`` is what ``DetectionSequence`` takes."""

    image: np.ndarray  # uint8 (S, S, 3)
    boxes: np.ndarray  # float32 (K, 4) pixel corners in the crop
    labels: np.ndarray  # (K,) the labels of those boxes, as given (dataset ids or model classes)
    window: np.ndarray  # int64 (4,) pixel corners of the frame the crop shows

    @property
    def sample(self) -> Sample:
        """``(image, boxes, labels)``, an in-memory sample of ``tlutils.data.pipeline``."""
        return self.image, self.boxes, self.labels


def sample_crops(
    sample: DetectionRecord | Sample,
    crop_size: int,
    rng: np.random.Generator,
    num_positive: int = 1,
    num_background: int = 1,
    scale_jitter: tuple[float, float] = (1.0, 1.0),
    min_visible: float = MIN_VISIBLE,
    fill: tuple[int, int, int] = MEAN_COLOR,
) -> list[Crop]:
    """Square crops of one frame: ``num_positive`` around signs, then ``num_background`` without any.

    Each crop draws a scale ``s`` log-uniformly from ``scale_jitter`` (a window of
    ``round(crop_size / s)`` frame pixels, resampled to ``crop_size``; ``(1, 1)``: native resolution).
    A **positive** window targets a box (distinct boxes while there are enough), is enlarged to hold it
    if the drawn scale would cut it (a crop of a sign's inside would teach it as background), and lies
    at a uniform integer position that holds it whole, inside the frame. A **background** window is the
    first of :data:`BACKGROUND_TRIALS` uniform positions that no box touches; if none is free, that
    crop is left out. A frame without boxes gives background crops only. Every crop keeps the boxes
    with at least ``min_visible`` of their area inside (:func:`boxes_in_window`).

    Args:
        sample: a ``DetectionRecord`` (its image is decoded here) or ``(image uint8 (H, W, 3), boxes
            (K, 4) pixel corners, labels (K,))``.
        crop_size: side ``S`` of the crops (the detector's input side).
        rng: the only source of randomness: the same generator state gives the same crops.

    Returns:
        Positive crops first, then background ones.
    """
    image, boxes, labels = _read_sample(sample)
    _check_size("crop_size", crop_size)
    for name, count in (("num_positive", num_positive), ("num_background", num_background)):
        if int(count) != count or count < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {count!r}")
    low, high = scale_jitter
    if not 0 < low <= high:
        raise ValueError(f"scale_jitter must be (low, high) with 0 < low <= high, got {scale_jitter!r}")
    height, width = image.shape[:2]
    positive = _positive_windows(boxes, width, height, crop_size, rng, int(num_positive), scale_jitter)
    background = _background_windows(boxes, width, height, crop_size, rng, int(num_background), scale_jitter)
    windows = np.concatenate([positive, background])
    crops = extract_tiles(image, windows, crop_size, fill)
    return [
        Crop(crop, *boxes_in_window(boxes, labels, window, crop_size, min_visible), window)
        for crop, window in zip(crops, windows)
    ]


def boxes_in_window(
    boxes: np.ndarray, labels: np.ndarray, window: np.ndarray, crop_size: int, min_visible: float = MIN_VISIBLE
) -> tuple[np.ndarray, np.ndarray]:
    """The boxes a crop of ``window`` keeps, in the crop's pixels (see :data:`MIN_VISIBLE`).

    A box is kept if at least ``min_visible`` of its area lies inside the window; it is clipped to the
    window and mapped to the crop: ``(box - (x0, y0, x0, y0)) * crop_size / side``.

    Example: window ``(0, 0, 100, 100)``, ``crop_size`` 50: box ``(80, 10, 120, 20)`` (half inside)
    becomes ``(40, 5, 50, 10)``; box ``(90, 10, 130, 20)`` (a quarter inside) is dropped.

    Returns:
        ``(boxes float32 (K', 4), labels (K',))``.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    window = np.asarray(window, dtype=np.float64)
    clipped = np.clip(boxes, window[[0, 1, 0, 1]], window[[2, 3, 2, 3]])
    keep = area_numpy(clipped) >= min_visible * area_numpy(boxes)
    keep &= area_numpy(clipped) > 0
    scale = crop_size / (window[2] - window[0])
    return ((clipped[keep] - window[[0, 1, 0, 1]]) * scale).astype(np.float32), np.asarray(labels)[keep]


def crop_samples(
    data: Iterable[DetectionRecord | Sample],
    crop_size: int,
    seed: int = 0,
    epoch: int = 0,
    num_positive: int = 2,
    num_background: int = 1,
    scale_jitter: tuple[float, float] = (1.0, 1.0),
    min_visible: float = MIN_VISIBLE,
) -> list[Sample]:
    """Training crops of many frames as in-memory samples for ``DetectionSequence``.

    Frames are decoded one at a time and only their crops are kept. Memory: about ``len(data) *
    (num_positive + num_background) * crop_size**2 * 3`` bytes, plus one decoded frame; e.g. GTSDB's
    600 training frames with 3 crops of 300 pixels take 486 MB (160 pixels: 138 MB), where the
    decoded frames alone would take 1.96 GB. Labels stay as given (dataset ids): give the sequence
    its ``label_map``.

    Frame ``i`` draws from ``np.random.default_rng([seed, epoch, i])``: the crops depend on
    ``(seed, epoch, i)`` only. For new windows every epoch, call again with the next ``epoch``.

    Example::

        crops = crop_samples(train_set, crop_size=160, seed=0, scale_jitter=(0.5, 1.0))
        train = DetectionSequence(crops, anchors, label_map, batch_size=32,
                                  augmenter=Augmenter(160, zoom_out=False, crop=False))
    """
    samples: list[Sample] = []
    for index, item in enumerate(data):
        rng = np.random.default_rng([seed, epoch, index])
        try:
            crops = sample_crops(item, crop_size, rng, num_positive, num_background, scale_jitter, min_visible)
        except ValueError as error:
            where = f"image {index} ({item.image_path})" if isinstance(item, DetectionRecord) else f"sample {index}"
            raise ValueError(f"{where}: {error}") from None
        samples.extend(crop.sample for crop in crops)
    return samples


def _positive_windows(
    boxes: np.ndarray, width: int, height: int, crop_size: int, rng: np.random.Generator, count: int,
    scale_jitter: tuple[float, float],
) -> np.ndarray:
    """``(count, 4)`` windows, each holding a drawn target box whole (see :func:`sample_crops`)."""
    if not len(boxes) or not count:
        return np.zeros((0, 4), dtype=np.int64)
    targets = boxes[rng.choice(len(boxes), size=count, replace=count > len(boxes))]  # (count, 4)
    extent = np.ceil(np.max(targets[:, 2:] - targets[:, :2], axis=1)).astype(np.int64)
    sides = np.maximum(_draw_sides(crop_size, rng, count, scale_jitter), extent)  # large enough for the target
    left = _start_holding(targets[:, 0], targets[:, 2], sides, width, rng.random(count))
    top = _start_holding(targets[:, 1], targets[:, 3], sides, height, rng.random(count))
    return np.stack([left, top, left + sides, top + sides], axis=1)


def _start_holding(
    low: np.ndarray, high: np.ndarray, sides: np.ndarray, length: int, uniform: np.ndarray
) -> np.ndarray:
    """Uniform integer window starts along one axis that hold ``[low, high]`` and stay in the frame."""
    room = np.maximum(length - sides, 0)  # the last start inside the frame (0 for a frame shorter than a side)
    first = np.clip(np.ceil(high - sides), 0, room)  # (N,)
    last = np.maximum(np.clip(np.floor(low), 0, room), first)
    return np.minimum(first + np.floor(uniform * (last - first + 1)), last).astype(np.int64)


def _background_windows(
    boxes: np.ndarray, width: int, height: int, crop_size: int, rng: np.random.Generator, count: int,
    scale_jitter: tuple[float, float],
) -> np.ndarray:
    """Up to ``count`` windows that touch no box: for each, the first free of ``BACKGROUND_TRIALS`` draws."""
    if not count:
        return np.zeros((0, 4), dtype=np.int64)
    sides = _draw_sides(crop_size, rng, count * BACKGROUND_TRIALS, scale_jitter)
    left = np.floor(rng.random(len(sides)) * (np.maximum(width - sides, 0) + 1)).astype(np.int64)
    top = np.floor(rng.random(len(sides)) * (np.maximum(height - sides, 0) + 1)).astype(np.int64)
    candidates = np.stack([left, top, left + sides, top + sides], axis=1)  # (count * trials, 4)
    touched = intersection_numpy(candidates[:, None].astype(np.float64), boxes[None]) > 0  # (count * trials, K)
    free = ~touched.any(axis=1).reshape(count, BACKGROUND_TRIALS)
    first = np.argmax(free, axis=1)
    chosen = np.flatnonzero(free[np.arange(count), first])
    return candidates.reshape(count, BACKGROUND_TRIALS, 4)[chosen, first[chosen]]


def _draw_sides(crop_size: int, rng: np.random.Generator, count: int, scale_jitter: tuple[float, float]) -> np.ndarray:
    """``(count,)`` int64 window sides (as ``window_side``) for scales drawn log-uniformly from ``scale_jitter``."""
    low, high = scale_jitter
    scales = np.exp(rng.uniform(math.log(low), math.log(high), count))
    return np.maximum(np.round(crop_size / scales), 1).astype(np.int64)


def _read_sample(sample: DetectionRecord | Sample) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image, boxes float64 (K, 4) clipped to the frame, labels (K,))`` of a record or a sample."""
    if isinstance(sample, DetectionRecord):
        image, boxes, labels = load_image(sample), sample.boxes, sample.labels
    elif isinstance(sample, (tuple, list)) and len(sample) == 3:
        image, boxes, labels = sample
    else:
        raise ValueError(f"give a DetectionRecord or an (image, boxes, labels) sample, got {type(sample).__name__}")
    image = _check_image(image)
    height, width = image.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes but {len(labels)} labels")
    clipped = np.clip(boxes, 0.0, [width, height, width, height])
    bad = ~np.isfinite(boxes).all(axis=1) | np.any(clipped[:, 2:] <= clipped[:, :2], axis=1)
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(f"box {index} = {boxes[index].tolist()} is not finite, empty, inverted or outside the "
                         f"{width}x{height} image")
    return image, clipped, labels


# ------------------------------------------------------------------------------------------------
# Tiled inference
# ------------------------------------------------------------------------------------------------


def detect_tiled(
    predict: Predict,
    image: np.ndarray,
    anchors: np.ndarray,
    tile_size: int,
    overlap: float = DEFAULT_OVERLAP,
    scales: Sequence[float] = DEFAULT_SCALES,
    score_threshold: float = SCORE_THRESHOLD,
    iou_threshold: float = NMS_IOU_THRESHOLD,
    top_k: int = TOP_K,
    batch_size: int = TILE_BATCH_SIZE,
    border_margin: float | None = BORDER_MARGIN,
) -> dict[str, np.ndarray]:
    """Detections of a whole frame: detect in every tile of :func:`tile_grid`, then merge.

    The tiles go to ``predict`` in batches of ``batch_size`` (the last one padded with black tiles,
    whose outputs are dropped, so the detector sees one batch shape), each tile's outputs are decoded
    by ``decode_detections`` (softmax, ``score_threshold``, per-class NMS, ``top_k``) and
    :func:`merge_tile_detections` maps them to the frame and merges them.

    Args:
        predict: ``float32 (B, S, S, 3)`` raw RGB 0-255 -> ``{"class_logits": (B, A, C + 1),
            "box_offsets": (B, A, 4)}``, e.g. a detector's ``predict_on_batch``.
        image: the frame, ``uint8 (H, W, 3)``.
        anchors: ``(A, 4)`` the detector's default boxes, normalized centroids.
        tile_size: the detector's input side ``S``.
        overlap, scales: the tiles (:func:`tile_grid`).
        score_threshold, iou_threshold, top_k: as for ``decode_detections``, per tile and for the merge.
        batch_size: tiles per ``predict`` call.
        border_margin: see :data:`BORDER_MARGIN`; ``None``: no detection counts as cut (a plain
            class-wise NMS over all tiles).

    Returns:
        ``{"boxes": float32 (K, 4) corners normalized to the frame, "scores": float32 (K,), "labels":
        int32 (K,)}`` by descending score, ``K <= top_k``: what ``decode_detections`` gives for one
        image, so ``tlutils.evaluation`` takes it as is.
    """
    image = _check_image(image)
    height, width = image.shape[:2]
    _check_size("batch_size", batch_size)
    tiles = tile_grid(width, height, tile_size, overlap, scales)
    per_tile: list[dict[str, np.ndarray]] = []
    for start in range(0, len(tiles), batch_size):
        windows = tiles[start : start + batch_size]
        batch = np.zeros((batch_size, tile_size, tile_size, 3), dtype=np.float32)
        batch[: len(windows)] = extract_tiles(image, windows, tile_size)
        outputs = predict(batch)
        detections = decode_detections(outputs["class_logits"], outputs["box_offsets"], anchors,
                                       score_threshold, iou_threshold, top_k)
        per_tile.extend(detections[: len(windows)])
    return merge_tile_detections(per_tile, tiles, width, height, tile_size, iou_threshold, top_k, border_margin)


def merge_tile_detections(
    per_tile: Sequence[Mapping[str, np.ndarray]],
    tiles: np.ndarray,
    width: int,
    height: int,
    tile_size: int,
    iou_threshold: float = NMS_IOU_THRESHOLD,
    top_k: int = TOP_K,
    border_margin: float | None = BORDER_MARGIN,
) -> dict[str, np.ndarray]:
    """One frame's detections from its tiles' detections.

    1. Each tile's boxes (normalized to the tile) are mapped to frame pixels, ``box * side + (x0, y0)``,
       and clipped to the frame.
    2. A detection is **cut** if it comes within ``border_margin`` input pixels of a tile side shared
       with a neighbour (frame edges do not count): it may be a piece of a sign cut by the tile.
       Whole (not cut) detections are merged by class-wise NMS at ``iou_threshold``.
    3. A cut detection with more than :data:`PIECE_COVERAGE` of its area inside a kept whole detection
       of its class is a piece of that sign and is dropped. The other cut detections (objects larger
       than the overlap, cut in every tile) stay, ranked after every whole one: a class-wise NMS over
       both keeps every kept whole detection and suppresses the cut ones that overlap one of them (or
       a higher-scored cut one) by IoU > ``iou_threshold``.
    4. The ``top_k`` best by score, boxes normalized to the frame.

    Without steps 2 and 3 (``border_margin=None``: one class-wise NMS over all tiles) a sign cut by a
    tile border is reported twice, or only as its piece (NMS compares IoU, and a piece of a third of a
    sign has IoU 1/3 with it).

    Args:
        per_tile: one dict per tile, as ``decode_detections`` gives: ``boxes`` ``(K, 4)`` normalized
            corners of the tile, ``scores`` ``(K,)``, ``labels`` ``(K,)``.
        tiles: ``(T, 4)`` the tiles' pixel corners (:func:`tile_grid`), in the same order.
        width, height: the frame's size in pixels.
        tile_size: the detector's input side.

    Returns:
        As :func:`detect_tiled`.
    """
    tiles = np.asarray(tiles, dtype=np.int64).reshape(-1, 4)
    if len(per_tile) != len(tiles):
        raise ValueError(f"{len(per_tile)} tiles of detections for {len(tiles)} tiles")
    counts = [len(detections["scores"]) for detections in per_tile]
    if not sum(counts):
        empty = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0)}
        return {name: values.astype(np.int32 if name == "labels" else np.float32) for name, values in empty.items()}
    local = np.concatenate([np.reshape(d["boxes"], (-1, 4)) for d in per_tile]).astype(np.float64)  # (N, 4)
    scores = np.concatenate([d["scores"] for d in per_tile]).astype(np.float32)
    labels = np.concatenate([d["labels"] for d in per_tile]).astype(np.int32)
    windows = tiles[np.repeat(np.arange(len(tiles)), counts)].astype(np.float64)  # (N, 4) each one's tile
    sides = windows[:, 2:] - windows[:, :2]
    frame = np.array([width, height, width, height], dtype=np.float64)
    boxes = np.clip(local * np.tile(sides, 2) + windows[:, [0, 1, 0, 1]], 0.0, frame)  # frame pixels
    if border_margin is None:
        cut = np.zeros(len(boxes), dtype=bool)
    else:
        cut = _cut_by_tile(local, windows, width, height, border_margin / tile_size)
    kept = _merge(boxes, scores, labels, cut, iou_threshold, top_k)
    kept = kept[np.argsort(-scores[kept], kind="stable")][:top_k]
    return {"boxes": (boxes[kept] / frame).astype(np.float32), "scores": scores[kept], "labels": labels[kept]}


def _cut_by_tile(local: np.ndarray, windows: np.ndarray, width: int, height: int, margin: float) -> np.ndarray:
    """``(N,)`` bool: the box (normalized to its tile) is within ``margin`` of a side shared with a neighbour."""
    inner = np.stack([windows[:, 0] > 0, windows[:, 1] > 0, windows[:, 2] < width, windows[:, 3] < height], axis=1)
    near = np.concatenate([local[:, :2] <= margin, local[:, 2:] >= 1.0 - margin], axis=1)  # left, top, right, bottom
    return np.any(inner & near, axis=1)


def _merge(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, cut: np.ndarray, iou_threshold: float,
           top_k: int) -> np.ndarray:
    """Indices of the merged detections (steps 2 and 3 of :func:`merge_tile_detections`)."""
    whole = np.flatnonzero(~cut)
    kept_whole = whole[batched_nms(boxes[whole], scores[whole], labels[whole], iou_threshold)]  # by score
    pieces = np.flatnonzero(cut)
    if len(kept_whole) >= top_k:  # a cut detection ranks after equal whole ones: below the top_k-th it is out
        pieces = pieces[scores[pieces] > scores[kept_whole[top_k - 1]]]
    pieces = pieces[~_inside_kept(boxes, labels, pieces, kept_whole)]
    candidates = np.concatenate([kept_whole, pieces])
    priority = scores[candidates].astype(np.float64) + np.where(cut[candidates], 0.0, 2.0)  # whole ones first
    return candidates[batched_nms(boxes[candidates], priority, labels[candidates], iou_threshold)]


def _inside_kept(boxes: np.ndarray, labels: np.ndarray, pieces: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """``(P,)`` bool: over ``PIECE_COVERAGE`` of the piece's area lies in one kept box of its class."""
    inside = np.zeros(len(pieces), dtype=bool)
    for start in range(0, len(pieces), _PIECE_BLOCK):  # blocks of pieces x all kept boxes
        block = pieces[start : start + _PIECE_BLOCK]
        shared = intersection_numpy(boxes[block][:, None], boxes[kept][None])  # (block, kept)
        covers = shared > PIECE_COVERAGE * area_numpy(boxes[block])[:, None]
        inside[start : start + len(block)] = np.any(covers & (labels[block][:, None] == labels[kept][None]), axis=1)
    return inside


# ------------------------------------------------------------------------------------------------
# Checks
# ------------------------------------------------------------------------------------------------


def _check_image(image: Any) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise ValueError(f"image must be uint8 RGB (height, width, 3), got {image.dtype} {image.shape}")
    return image


def _check_size(name: str, value: Any) -> None:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer (pixels), got {value!r}")


def _check_scales(scales: Sequence[float]) -> tuple[float, ...]:
    scales = tuple(float(scale) for scale in scales)
    if not scales or not all(math.isfinite(scale) and scale > 0 for scale in scales):
        raise ValueError(f"scales must be one or more positive numbers, got {scales!r}")
    return scales
