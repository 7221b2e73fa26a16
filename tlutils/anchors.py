"""Default boxes of SSD (default box = anchor = prior box).

Every prediction layer of SSD is a square feature map of ``f x f`` cells; each cell carries a fixed
set of default boxes centred on it (section 2.2 of Liu et al., "SSD: Single Shot MultiBox Detector",
ECCV 2016, arXiv 1512.02325). The network predicts, for each default box, class scores and offsets
relative to it (see ``tlutils.encoding``).

Conventions: coordinates are normalized to [0, 1] of the image; anchors are **centroids**
``(cx, cy, w, h)``.

Order of the anchors (the model's heads reshape their outputs in the same order):
layer -> row (cy) -> column (cx) -> box within the cell. Within a cell the boxes follow the layer's
aspect ratios as listed; when ``extra_ratio_one_box`` is set, the extra ratio-1 box of scale
``sqrt(s_k * s_{k+1})`` comes right after the ratio-1 box. For SSD300's 6-box layers this is::

    ratio 1 (s_k), ratio 1 (sqrt(s_k s_{k+1})), ratio 2, ratio 1/2, ratio 3, ratio 1/3

which is also the order of the original Caffe ``PriorBox`` layer (min size, max size, then the
ratios with their flips).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from keras import ops

from tlutils.boxes import to_centroids, to_corners

# SSD300 as released with the paper (Caffe, VOC models). The paper's formula (eq. 4),
# s_k = s_min + (s_max - s_min)(k - 1)/(m - 1) with s_min 0.2 and s_max 0.9, gives 0.2 .. 0.9;
# the release puts 0.1 on conv4_3 (section 3.1, "PASCAL VOC2007") and steps the remaining scales by
# 0.17, ending at 1.05, which only sets the extra box of the last layer.
SSD300_IMAGE_SIZE = 300
SSD300_FEATURE_MAP_SIZES = (38, 19, 10, 5, 3, 1)  # conv4_3, fc7, conv8_2, conv9_2, conv10_2, conv11_2
SSD300_SCALES = (0.1, 0.2, 0.37, 0.54, 0.71, 0.88, 1.05)
SSD300_STEPS = (8, 16, 32, 64, 100, 300)  # pixels between cell centres in the Caffe release
FOUR_BOX_RATIOS = (1.0, 2.0, 1.0 / 2.0)  # {1, 2, 1/2} + the extra ratio-1 box = 4 boxes per cell
SIX_BOX_RATIOS = (1.0, 2.0, 1.0 / 2.0, 3.0, 1.0 / 3.0)  # {1, 2, 1/2, 3, 1/3} + extra = 6 boxes
SSD300_ASPECT_RATIOS = (
    FOUR_BOX_RATIOS,
    SIX_BOX_RATIOS,
    SIX_BOX_RATIOS,
    SIX_BOX_RATIOS,
    FOUR_BOX_RATIOS,
    FOUR_BOX_RATIOS,
)
ANCHOR_OFFSET = 0.5  # cell centres at ((j + 0.5) * step) / image_size, section 2.2

# Default scales for a layer count other than SSD300's six: the first layer (conv4_3's role) gets
# FIRST_LAYER_SCALE and the others are spaced linearly from MIN_SCALE to MAX_SCALE (the paper's
# formula, eq. 4, with the Caffe release's end points). For six layers this gives SSD300_SCALES.
FIRST_LAYER_SCALE = 0.1
MIN_SCALE = 0.2
MAX_SCALE = 1.05


@dataclass(frozen=True)
class AnchorConfig:
    """Where and how large the default boxes of every prediction layer are.

    Attributes:
        image_size: side of the (square) network input in pixels.
        feature_map_sizes: side ``f`` of each prediction layer's square ``f x f`` feature map.
        scales: ``len(feature_map_sizes) + 1`` box scales as fractions of the image side;
            ``scales[k]`` is layer ``k``'s scale and ``scales[k + 1]`` only sets the size
            ``sqrt(scales[k] * scales[k + 1])`` of its extra ratio-1 box.
        aspect_ratios: one tuple of width/height ratios per layer; a box of scale ``s`` and ratio
            ``ar`` has ``w = s * sqrt(ar)`` and ``h = s / sqrt(ar)`` (section 2.2).
        extra_ratio_one_box: add the extra ratio-1 box of scale ``sqrt(s_k * s_{k+1})`` right after
            the ratio-1 box (every layer must then list ratio 1).
        steps: pixels between neighbouring cell centres per layer; ``None`` means
            ``image_size / feature_map_size``.
        offset: position of the first centre within a cell, in cells (0.5 = the cell's centre).
        clip: clip every box's corners to [0, 1] (the Caffe SSD300 release does not).

    Lists are stored as tuples of plain numbers (and ``steps`` as computed), so configs compare and
    hash by value. Invalid values raise ``ValueError`` naming the field and the index.
    """

    image_size: int
    feature_map_sizes: tuple[int, ...]
    scales: tuple[float, ...]
    aspect_ratios: tuple[tuple[float, ...], ...]
    extra_ratio_one_box: bool = True
    steps: tuple[float, ...] | None = None
    offset: float = ANCHOR_OFFSET
    clip: bool = False

    def __post_init__(self) -> None:
        _check_positive_int("image_size", self.image_size)
        sizes = tuple(self.feature_map_sizes)
        if not sizes:
            raise ValueError("feature_map_sizes is empty: give at least one prediction layer")
        for index, size in enumerate(sizes):
            _check_positive_int(f"feature_map_sizes[{index}]", size)
        num_layers = len(sizes)
        steps = tuple(self.image_size / size for size in sizes) if self.steps is None else self.steps
        _check_length("scales", self.scales, num_layers + 1, "one per layer + one for the last layer's extra box")
        _check_length("aspect_ratios", self.aspect_ratios, num_layers, "one tuple per layer")
        _check_length("steps", steps, num_layers, "one per layer")
        scales = _positive_floats("scales", self.scales)
        steps = _positive_floats("steps", steps)
        ratios = tuple(_positive_floats(f"aspect_ratios[{k}]", rs) for k, rs in enumerate(self.aspect_ratios))
        for index, layer_ratios in enumerate(ratios):
            if not layer_ratios:
                raise ValueError(f"aspect_ratios[{index}] is empty: every layer needs at least one box")
            if self.extra_ratio_one_box and 1.0 not in layer_ratios:
                raise ValueError(
                    f"aspect_ratios[{index}] = {layer_ratios} has no ratio 1.0, but extra_ratio_one_box=True puts "
                    "the extra box right after it: add 1.0 or set extra_ratio_one_box=False"
                )
        if not 0.0 <= float(self.offset) <= 1.0:
            raise ValueError(f"offset = {self.offset} must lie in [0, 1] (a fraction of a cell)")
        object.__setattr__(self, "feature_map_sizes", tuple(int(size) for size in sizes))
        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "aspect_ratios", ratios)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "offset", float(self.offset))

    @classmethod
    def ssd300(cls) -> AnchorConfig:
        """SSD300 as in the paper's original Caffe release: 8732 boxes.

        Feature maps 38, 19, 10, 5, 3, 1 with 4, 6, 6, 6, 4, 4 boxes per cell; scales 0.1, 0.2, 0.37,
        0.54, 0.71, 0.88, 1.05 (the release's values: the paper's formula gives 0.2 .. 0.9, with 0.1
        for conv4_3); steps 8, 16, 32, 64, 100, 300 pixels; offset 0.5; no clipping.
        """
        return cls(
            image_size=SSD300_IMAGE_SIZE,
            feature_map_sizes=SSD300_FEATURE_MAP_SIZES,
            scales=SSD300_SCALES,
            aspect_ratios=SSD300_ASPECT_RATIOS,
            steps=SSD300_STEPS,
        )

    @classmethod
    def from_feature_maps(
        cls,
        image_size: int,
        feature_map_sizes: Sequence[int],
        scales: Sequence[float] | None = None,
        aspect_ratios: Sequence[Sequence[float]] | None = None,
    ) -> AnchorConfig:
        """Anchors for any input size, given the prediction layers' real feature-map sizes.

        ``steps = image_size / feature_map_size`` (so cell centres tile the image exactly; note that
        for a 300 input this gives 300/38 = 7.89 where ``ssd300()`` keeps the release's 8).

        Defaults: with six layers, SSD300's scales and ratios. With another count ``L``: scales
        ``FIRST_LAYER_SCALE`` (0.1) for layer 0 and ``L`` values spaced linearly from ``MIN_SCALE``
        (0.2) to ``MAX_SCALE`` (1.05) for the rest (the paper's eq. 4); ratios {1, 2, 1/2} on the
        first and the last two layers and {1, 2, 1/2, 3, 1/3} in between (as SSD300 and SSD512 do).
        """
        sizes = tuple(feature_map_sizes)
        num_layers = len(sizes)
        if scales is None:
            scales = SSD300_SCALES if num_layers == 6 else _default_scales(num_layers)
        if aspect_ratios is None:
            aspect_ratios = SSD300_ASPECT_RATIOS if num_layers == 6 else _default_aspect_ratios(num_layers)
        return cls(
            image_size=image_size,
            feature_map_sizes=sizes,
            scales=tuple(scales),
            aspect_ratios=tuple(aspect_ratios),
        )

    @property
    def boxes_per_cell(self) -> tuple[int, ...]:
        """Number of default boxes in each cell, per layer (SSD300: 4, 6, 6, 6, 4, 4)."""
        extra = int(self.extra_ratio_one_box)
        return tuple(len(ratios) + extra for ratios in self.aspect_ratios)

    @property
    def num_anchors(self) -> int:
        """Total number of default boxes, ``sum(f * f * boxes_per_cell)`` (SSD300: 8732)."""
        return sum(size * size * boxes for size, boxes in zip(self.feature_map_sizes, self.boxes_per_cell))


def generate_anchors(config: AnchorConfig) -> np.ndarray:
    """All default boxes of ``config`` as float32 centroids ``(num_anchors, 4)``.

    Order: layer -> row -> column -> box within the cell (see the module docstring for the box order).
    With ``config.clip`` the corners are clipped to [0, 1] and the boxes converted back to centroids.
    """
    layers = [
        _layer_anchors(
            feature_map_size=size,
            step=step / config.image_size,
            offset=config.offset,
            box_sizes=_cell_box_sizes(config, layer),
        )
        for layer, (size, step) in enumerate(zip(config.feature_map_sizes, config.steps))
    ]
    anchors = np.concatenate(layers, axis=0).astype(np.float32)
    if config.clip:
        corners = ops.clip(to_corners(anchors), 0.0, 1.0)
        anchors = ops.convert_to_numpy(to_centroids(corners)).astype(np.float32)
    return anchors


def _cell_box_sizes(config: AnchorConfig, layer: int) -> np.ndarray:
    """``(boxes_per_cell, 2)`` widths and heights of one cell's boxes of ``layer``, in box order."""
    scale = config.scales[layer]
    sizes = []
    for ratio in config.aspect_ratios[layer]:
        sizes.append((scale * math.sqrt(ratio), scale / math.sqrt(ratio)))
        if ratio == 1.0 and config.extra_ratio_one_box:
            extra = math.sqrt(scale * config.scales[layer + 1])
            sizes.append((extra, extra))
    return np.array(sizes, dtype=np.float64)


def _layer_anchors(feature_map_size: int, step: float, offset: float, box_sizes: np.ndarray) -> np.ndarray:
    """Centroids ``(f * f * B, 4)`` of one layer, ordered row -> column -> box; ``step`` normalized."""
    num_boxes = len(box_sizes)
    centres = (np.arange(feature_map_size, dtype=np.float64) + offset) * step  # (f,)
    grid = np.empty((feature_map_size, feature_map_size, num_boxes, 4), dtype=np.float64)  # (row, col, box, 4)
    grid[..., 0] = centres[None, :, None]  # cx varies along columns
    grid[..., 1] = centres[:, None, None]  # cy varies along rows
    grid[..., 2:] = box_sizes[None, None, :, :]
    return grid.reshape(-1, 4)


def _default_scales(num_layers: int) -> tuple[float, ...]:
    """``num_layers + 1`` scales: FIRST_LAYER_SCALE, then MIN_SCALE .. MAX_SCALE linearly."""
    return (FIRST_LAYER_SCALE, *np.linspace(MIN_SCALE, MAX_SCALE, num_layers).tolist())


def _default_aspect_ratios(num_layers: int) -> tuple[tuple[float, ...], ...]:
    """Four-box ratios on the first and the last two layers, six-box ratios in between."""
    return tuple(
        FOUR_BOX_RATIOS if layer == 0 or layer >= num_layers - 2 else SIX_BOX_RATIOS for layer in range(num_layers)
    )


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} = {value!r} must be a positive integer")


def _check_length(name: str, values: Sequence[object], expected: int, meaning: str) -> None:
    if len(values) != expected:
        raise ValueError(f"{name} has {len(values)} entries; expected {expected} ({meaning})")


def _positive_floats(name: str, values: Sequence[float]) -> tuple[float, ...]:
    """``values`` as a tuple of floats; ValueError naming the first one that is not finite and > 0."""
    result = tuple(float(value) for value in values)
    for index, value in enumerate(result):
        if not (math.isfinite(value) and value > 0.0):
            raise ValueError(f"{name}[{index}] = {value} must be a finite positive number")
    return result
