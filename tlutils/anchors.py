"""Default boxes of SSD (default box = anchor = prior box).

Every prediction layer of SSD is a feature map of ``rows x columns`` cells (``f x f`` on a square
input); each cell carries a fixed set of default boxes centred on it (section 2.2 of Liu et al., "SSD:
Single Shot MultiBox Detector", ECCV 2016, arXiv 1512.02325). The network predicts, for each default
box, class scores and offsets relative to it (see ``tlutils.encoding``).

Conventions: coordinates are normalized to [0, 1] of the image, **x by the image width and y by its
height**; anchors are **centroids** ``(cx, cy, w, h)``. A size is one ``int`` (a square) or a
``(height, width)`` pair, the order of Keras' image shape ``(H, W, 3)``.

Non-square inputs: a scale is a fraction of the image's **shorter side** and an aspect ratio is
width / height **in pixels**, so a ratio-1 default box is square on the image whatever the image's
shape, and its normalized ``w`` and ``h`` differ (w / h = H / W). This is how the Caffe release's
``PriorBox`` layer works: box sizes in pixels (``min_size``, a fraction of ``min_dim``), divided by
the image width and height separately. On a square input the formulas reduce to the square ones and
give the same numbers, bit for bit.

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
from typing import Sequence, Union

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
#
# FIRST_LAYER_SCALE is the smallest default box: section 3.1 of the paper ("PASCAL VOC2007"): "we set
# default box with scale 0.1 on conv4_3", i.e. 30 px on SSD300's 300 px input (16 px on 160 px).
# Signs squeezed into the input are often smaller; the ``smallest_scale`` parameters
# (:func:`default_scales`, :meth:`AnchorConfig.from_feature_maps`, ``tlutils.model.anchor_config_for``)
# default to it and take a smaller value for them.
FIRST_LAYER_SCALE = 0.1
MIN_SCALE = 0.2  # the paper's s_min (eq. 4): the second layer's scale
MAX_SCALE = 1.05

Size = Union[int, tuple[int, int]]
"""An image or feature-map size: one side (a square) or ``(height, width)`` / ``(rows, columns)``."""


@dataclass(frozen=True)
class AnchorConfig:
    """Where and how large the default boxes of every prediction layer are.

    Attributes:
        image_size: the network input in pixels: a side ``S`` (square) or ``(height, width)``.
        feature_map_sizes: each prediction layer's feature map: a side ``f`` (``f x f`` cells) or
            ``(rows, columns)``.
        scales: ``len(feature_map_sizes) + 1`` box scales as fractions of the image's shorter side
            ``R`` (:attr:`reference_side`); ``scales[k]`` is layer ``k``'s scale and
            ``scales[k + 1]`` only sets the size ``sqrt(scales[k] * scales[k + 1])`` of its extra
            ratio-1 box.
        aspect_ratios: one tuple of width/height ratios **in pixels** per layer; a box of scale ``s``
            and ratio ``ar`` is ``s * sqrt(ar) * R`` px wide and ``s / sqrt(ar) * R`` px high
            (section 2.2), i.e. normalized ``w = s * sqrt(ar) * R / W`` and
            ``h = s / sqrt(ar) * R / H`` (``s * sqrt(ar)`` and ``s / sqrt(ar)`` on a square input).
        extra_ratio_one_box: add the extra ratio-1 box of scale ``sqrt(s_k * s_{k+1})`` right after
            the ratio-1 box (every layer must then list ratio 1).
        steps: pixels between neighbouring cell centres per layer: one number for both axes or
            ``(step_y, step_x)``; ``None`` means ``height / rows`` and ``width / columns``.
        offset: position of the first centre within a cell, in cells (0.5 = the cell's centre).
        clip: clip every box's corners to [0, 1] (the Caffe SSD300 release does not).

    Lists are stored as tuples of plain numbers (and ``steps`` as computed); a square size and equal
    steps are stored as one number, so configs compare and hash by value (``image_size=(300, 300)``
    equals ``image_size=300``). Invalid values raise ``ValueError`` naming the field and the index.
    """

    image_size: Size
    feature_map_sizes: tuple[Size, ...]
    scales: tuple[float, ...]
    aspect_ratios: tuple[tuple[float, ...], ...]
    extra_ratio_one_box: bool = True
    steps: tuple[float | tuple[float, float], ...] | None = None
    offset: float = ANCHOR_OFFSET
    clip: bool = False

    def __post_init__(self) -> None:
        height, width = height_width(self.image_size, "image_size")
        if not tuple(self.feature_map_sizes):
            raise ValueError("feature_map_sizes is empty: give at least one prediction layer")
        shapes = tuple(height_width(size, f"feature_map_sizes[{index}]", "(rows, columns)")
                       for index, size in enumerate(self.feature_map_sizes))
        num_layers = len(shapes)
        if self.steps is None:
            steps = tuple(_compact(height / rows, width / columns) for rows, columns in shapes)
        else:
            steps = tuple(self.steps)
        _check_length("scales", self.scales, num_layers + 1, "one per layer + one for the last layer's extra box")
        _check_length("aspect_ratios", self.aspect_ratios, num_layers, "one tuple per layer")
        _check_length("steps", steps, num_layers, "one per layer")
        scales = _positive_floats("scales", self.scales)
        steps = tuple(_checked_step(index, step) for index, step in enumerate(steps))
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
        object.__setattr__(self, "image_size", _compact(height, width))
        object.__setattr__(self, "feature_map_sizes", tuple(_compact(*shape) for shape in shapes))
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
        image_size: Size,
        feature_map_sizes: Sequence[Size],
        scales: Sequence[float] | None = None,
        aspect_ratios: Sequence[Sequence[float]] | None = None,
        smallest_scale: float = FIRST_LAYER_SCALE,
    ) -> AnchorConfig:
        """Anchors for any input size, given the prediction layers' real feature-map sizes.

        ``steps = image size / feature map size`` per axis (so cell centres tile the image exactly;
        note that for a 300 input this gives 300/38 = 7.89 where ``ssd300()`` keeps the release's 8).

        Defaults: ``scales = default_scales(len(feature_map_sizes), smallest_scale)`` (SSD300's
        with six layers); ratios {1, 2, 1/2} on the first and the last two layers and
        {1, 2, 1/2, 3, 1/3} in between (as SSD300 and SSD512 do).

        Args:
            image_size: a side or ``(height, width)`` in pixels.
            feature_map_sizes: a side or ``(rows, columns)`` per prediction layer.
            scales, aspect_ratios: see :class:`AnchorConfig`; ``None`` for the defaults above.
            smallest_scale: the first layer's scale (:data:`FIRST_LAYER_SCALE`, 0.1, by default);
                with ``scales`` given, ``scales[0]`` is the smallest scale and this must stay at its
                default.
        """
        sizes = tuple(feature_map_sizes)
        num_layers = len(sizes)
        if scales is None:
            scales = default_scales(num_layers, smallest_scale)
        elif smallest_scale != FIRST_LAYER_SCALE:
            raise ValueError(
                f"give scales or smallest_scale, not both: scales[0] = {scales[0]} is the smallest scale "
                f"(got smallest_scale={smallest_scale})"
            )
        if aspect_ratios is None:
            aspect_ratios = SSD300_ASPECT_RATIOS if num_layers == 6 else _default_aspect_ratios(num_layers)
        return cls(
            image_size=image_size,
            feature_map_sizes=sizes,
            scales=tuple(scales),
            aspect_ratios=tuple(aspect_ratios),
        )

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the input in pixels."""
        return height_width(self.image_size)

    @property
    def feature_map_shapes(self) -> tuple[tuple[int, int], ...]:
        """``(rows, columns)`` of each prediction layer's feature map."""
        return tuple(height_width(size) for size in self.feature_map_sizes)

    @property
    def reference_side(self) -> int:
        """``R = min(height, width)``: scales are fractions of it (the side on a square input)."""
        return min(self.image_shape)

    @property
    def smallest_box_size(self) -> float:
        """Side in pixels of the smallest ratio-1 default box (SSD300: 0.1 x 300 = 30 px)."""
        sides = [
            min(self.scales[k], math.sqrt(self.scales[k] * self.scales[k + 1])) if self.extra_ratio_one_box
            else self.scales[k]
            for k in range(len(self.feature_map_sizes))
        ]
        return min(sides) * self.reference_side

    @property
    def boxes_per_cell(self) -> tuple[int, ...]:
        """Number of default boxes in each cell, per layer (SSD300: 4, 6, 6, 6, 4, 4)."""
        extra = int(self.extra_ratio_one_box)
        return tuple(len(ratios) + extra for ratios in self.aspect_ratios)

    @property
    def num_anchors(self) -> int:
        """Total number of default boxes, ``sum(rows * columns * boxes_per_cell)`` (SSD300: 8732)."""
        shapes = self.feature_map_shapes
        return sum(rows * columns * boxes for (rows, columns), boxes in zip(shapes, self.boxes_per_cell))


def default_scales(num_layers: int, smallest_scale: float = FIRST_LAYER_SCALE) -> tuple[float, ...]:
    """The ``num_layers + 1`` default scales: ``smallest_scale`` for the first layer, then the rest.

    Six layers: SSD300's ``SSD300_SCALES`` with the first replaced (unchanged by default). Another
    count ``L``: ``L`` values spaced linearly from ``MIN_SCALE`` (0.2) to ``MAX_SCALE`` (1.05) after
    it (the paper's eq. 4 with the release's end points).

    Raises:
        ValueError: ``smallest_scale`` not in ``(0, MIN_SCALE]`` (it would not be the smallest), or
            ``num_layers < 1``.
    """
    if isinstance(num_layers, bool) or not isinstance(num_layers, (int, np.integer)) or num_layers < 1:
        raise ValueError(f"num_layers = {num_layers!r} must be a positive integer")
    is_number = isinstance(smallest_scale, (int, float, np.floating)) and not isinstance(smallest_scale, bool)
    if not (is_number and math.isfinite(smallest_scale) and 0.0 < smallest_scale <= MIN_SCALE):
        raise ValueError(
            f"smallest_scale = {smallest_scale!r} must lie in (0, {MIN_SCALE}] (a fraction of the input's "
            f"shorter side, at most the second layer's scale MIN_SCALE); the default {FIRST_LAYER_SCALE} is "
            "SSD300's 30 px box. For another ladder give all scales"
        )
    rest = SSD300_SCALES[1:] if num_layers == 6 else tuple(np.linspace(MIN_SCALE, MAX_SCALE, num_layers).tolist())
    return (float(smallest_scale), *rest)


def generate_anchors(config: AnchorConfig) -> np.ndarray:
    """All default boxes of ``config`` as float32 centroids ``(num_anchors, 4)``.

    Order: layer -> row -> column -> box within the cell (see the module docstring for the box order).
    With ``config.clip`` the corners are clipped to [0, 1] and the boxes converted back to centroids.
    """
    height, width = config.image_shape
    layers = [
        _layer_anchors(
            feature_map_shape=shape,
            steps=(step_y / height, step_x / width),
            offset=config.offset,
            box_sizes=_cell_box_sizes(config, layer),
        )
        for layer, (shape, (step_y, step_x)) in enumerate(zip(config.feature_map_shapes, map(_pair, config.steps)))
    ]
    anchors = np.concatenate(layers, axis=0).astype(np.float32)
    if config.clip:
        corners = ops.clip(to_corners(anchors), 0.0, 1.0)
        anchors = ops.convert_to_numpy(to_centroids(corners)).astype(np.float32)
    return anchors


def canonical_size(size: object, name: str = "size") -> Size:
    """``size`` as configs store it: its side where square, else ``(height, width)`` (ValueError as
    :func:`height_width`). ``canonical_size((300, 300)) == 300``; ``canonical_size([96, 160]) == (96, 160)``."""
    return _compact(*height_width(size, name))


def height_width(size: object, name: str = "size", pair_meaning: str = "(height, width)") -> tuple[int, int]:
    """``size`` (one positive int, or a pair of them) as ``(height, width)``; ValueError naming ``name``."""
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(_is_positive_int(side) for side in size):
        return int(size[0]), int(size[1])
    if _is_positive_int(size):
        return int(size), int(size)
    raise ValueError(f"{name} = {size!r} must be a positive integer (a square's side) or a {pair_meaning} "
                     "pair of positive integers")


def _cell_box_sizes(config: AnchorConfig, layer: int) -> np.ndarray:
    """``(boxes_per_cell, 2)`` normalized widths and heights of one cell's boxes of ``layer``, in box order.

    Sizes in reference sides ``(s sqrt(ar), s / sqrt(ar))`` times ``(R / W, R / H)``: exactly 1.0 on a
    square input, so square inputs keep the square formula's numbers bit for bit.
    """
    height, width = config.image_shape
    reference = config.reference_side
    scale = config.scales[layer]
    sizes = []
    for ratio in config.aspect_ratios[layer]:
        sizes.append((scale * math.sqrt(ratio), scale / math.sqrt(ratio)))
        if ratio == 1.0 and config.extra_ratio_one_box:
            extra = math.sqrt(scale * config.scales[layer + 1])
            sizes.append((extra, extra))
    return np.array(sizes, dtype=np.float64) * np.array([reference / width, reference / height])


def _layer_anchors(
    feature_map_shape: tuple[int, int], steps: tuple[float, float], offset: float, box_sizes: np.ndarray
) -> np.ndarray:
    """Centroids ``(rows * columns * B, 4)`` of one layer, ordered row -> column -> box; ``steps``
    ``(step_y, step_x)`` normalized."""
    rows, columns = feature_map_shape
    num_boxes = len(box_sizes)
    centres_x = (np.arange(columns, dtype=np.float64) + offset) * steps[1]  # (columns,)
    centres_y = (np.arange(rows, dtype=np.float64) + offset) * steps[0]  # (rows,)
    grid = np.empty((rows, columns, num_boxes, 4), dtype=np.float64)  # (row, column, box, 4)
    grid[..., 0] = centres_x[None, :, None]  # cx varies along columns
    grid[..., 1] = centres_y[:, None, None]  # cy varies along rows
    grid[..., 2:] = box_sizes[None, None, :, :]
    return grid.reshape(-1, 4)


def _default_aspect_ratios(num_layers: int) -> tuple[tuple[float, ...], ...]:
    """Four-box ratios on the first and the last two layers, six-box ratios in between."""
    return tuple(
        FOUR_BOX_RATIOS if layer == 0 or layer >= num_layers - 2 else SIX_BOX_RATIOS for layer in range(num_layers)
    )


def _is_positive_int(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value > 0


def _compact(height: float, width: float) -> float | tuple[float, float]:
    """One number where both axes agree (how square sizes and steps are stored), else the pair."""
    return height if height == width else (height, width)


def _pair(value: float | tuple[float, float]) -> tuple[float, float]:
    """A stored step as ``(step_y, step_x)``."""
    return (value, value) if isinstance(value, (int, float, np.number)) else (value[0], value[1])


def _checked_step(index: int, step: object) -> float | tuple[float, float]:
    """Step ``index`` as a float, or a ``(step_y, step_x)`` pair of floats when they differ."""
    if isinstance(step, (tuple, list)):
        if len(step) != 2:
            raise ValueError(f"steps[{index}] = {step!r} must be one number or a (step_y, step_x) pair")
        return _compact(*_positive_floats(f"steps[{index}]", step))
    return _positive_floats("steps", [step], first_index=index)[0]


def _check_length(name: str, values: Sequence[object], expected: int, meaning: str) -> None:
    if len(values) != expected:
        raise ValueError(f"{name} has {len(values)} entries; expected {expected} ({meaning})")


def _positive_floats(name: str, values: Sequence[float], first_index: int = 0) -> tuple[float, ...]:
    """``values`` as a tuple of floats; ValueError naming the first one that is not finite and > 0."""
    result = tuple(float(value) for value in values)
    for index, value in enumerate(result, start=first_index):
        if not (math.isfinite(value) and value > 0.0):
            raise ValueError(f"{name}[{index}] = {value} must be a finite positive number")
    return result
