"""Box-aware data augmentation of SSD (Liu et al. 2016, sec. 2.2 "Data augmentation").

The chain follows the Caffe SSD / ssd.pytorch reference, in this order:

1. **photometric distortion** — random brightness, then contrast either before or after the
   saturation and hue changes (the reference draws which, so the order is random);
2. **zoom-out** ("expand") — with probability 0.5 the image is placed at a random position on a canvas
   ``ratio`` times larger (``ratio ~ U(1, max_zoom)``) filled with the mean colour: objects get smaller;
3. **IoU-constrained random crop** — pick one of: the whole image, an unconstrained patch, or a patch
   whose IoU with at least one object is ``>= 0.1, 0.3, 0.5, 0.7, 0.9``; the patch is
   ``[min_crop_scale, 1]`` of the canvas per side with height / width in ``[0.5, 2]``; boxes whose
   centre lies in the patch are kept and clipped to it;
4. (off by default) horizontal flip;
5. resize (warp) to the model's input, ``output_size`` (a side, or ``(height, width)``).

Conventions: images are ``uint8`` RGB ``(height, width, 3)``; boxes are **pixel** corners
``(xmin, ymin, xmax, ymax)`` in continuous coordinates (pixel ``i`` spans ``[i, i + 1)``), so a box
scales exactly with its image; labels ``(K,)`` are integers of any numbering (dataset ids or model
classes) and follow their boxes.

Two deliberate departures from the reference, both because colour and direction carry meaning on a
traffic sign:

- **No horizontal flip by default.** Mirroring turns "turn left" into "turn right" and "keep left"
  into "keep right". ``flip=True`` enables it; pass ``flip_label_map`` (e.g. ``{turn_left:
  turn_right}``, the reverse pairs are added) so mirrored direction signs change class too.
- **No random channel swap** (the reference's "lighting noise"): swapping R and B turns a red
  prohibitory circle into a blue mandatory one.

Zoom-out and small signs: zoom-out shrinks every object by the zoom ratio. It teaches SSD the small
objects that its coarse default boxes otherwise miss, but traffic signs are small already: a GTSDB
sign of 16-128 px in a 1360 px wide image is 3.5-28 px wide at SSD300's input, and a zoom of 4 leaves
1-7 px, far below the smallest default box (0.1 x 300 = 30 px; IoU <= 0.06), so it can be matched
only by the forced best-anchor rule and barely shows at all. ``TRAFFIC_SIGN_MAX_ZOOM = 2.0`` keeps
zoomed signs matchable; the random crop (which zooms *in*) does the more useful work for signs.
Boxes that end up smaller than ``min_box_size`` output pixels are dropped.

Implementation: the geometric steps (zoom-out, crop, resize) compose to one scale-and-translate map,
so the image is resampled once, straight from the source pixels to the output, with Pillow's
antialiased bilinear resize; the large zoom-out canvas is never built. The photometric steps are
per-pixel functions, so they run on the small resampled image, before it is pasted on the canvas (the
fill keeps the mean colour, as in the reference, which fills the canvas after the distortion).
Brightness and contrast are 256-entry lookup tables; saturation and hue are the W3C colour matrices
(``feColorMatrix`` saturate / hueRotate, which keep luminance) instead of the reference's HSV
round trip: the same effect for augmentation, far cheaper (docs/performance.md). Every random number
comes from the ``np.random.Generator`` passed in, so a seed fixes the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
from PIL import Image

from tlutils.anchors import Size, canonical_size, height_width

# Fill colour of the zoom-out canvas: the ImageNet mean in RGB (123.68, 116.78, 103.94), rounded.
MEAN_COLOR: tuple[int, int, int] = (124, 117, 104)

# A crop choice meaning "keep the whole image" (the paper's first sampling option).
WHOLE_IMAGE = "whole"

# The paper's sampling options: the whole image, a random patch, or a patch with min IoU 0.1 ... 0.9.
CROP_CHOICES: tuple[float | str | None, ...] = (WHOLE_IMAGE, None, 0.1, 0.3, 0.5, 0.7, 0.9)

# Zoom-out limit suited to traffic signs (see the module docstring); the paper uses 4.
TRAFFIC_SIGN_MAX_ZOOM = 2.0

# Each photometric step (brightness, contrast, saturation, hue) is applied with this probability.
_PHOTOMETRIC_PROBABILITY = 0.5


@dataclass(frozen=True)
class Augmenter:
    """SSD's augmentation chain as a configuration; calling it augments one image.

    ``Augmenter(output_size)`` is the paper's training chain without flips;
    ``Augmenter.validation(output_size)`` only resizes (for validation and test images).

    Attributes:
        output_size: the output image in pixels, the model's input size: a side (square) or
            ``(height, width)``; a square pair is stored as its side.
        photometric: random brightness, contrast, saturation and hue.
        zoom_out: the zoom-out ("expand") step.
        crop: the IoU-constrained random crop.
        flip: random horizontal flip (off: it changes the meaning of direction signs).
        max_zoom: largest zoom-out ratio (4 in the paper; ``TRAFFIC_SIGN_MAX_ZOOM`` = 2 for signs).
        zoom_out_probability: probability of zooming out when ``zoom_out`` is on.
        flip_probability: probability of flipping when ``flip`` is on.
        flip_label_map: classes that swap when mirrored, ``{left_id: right_id}``; the reverse pairs
            are added. Uses the same label numbering as the labels passed in.
        crop_choices: options drawn uniformly by the crop: ``WHOLE_IMAGE`` (no crop), ``None`` (any
            patch) or a minimum IoU in ``[0, 1]`` that at least one object must reach.
        crop_trials: random patches tried for the drawn option before keeping the whole image.
        min_crop_scale: smallest patch side as a fraction of the (zoomed-out) image side.
        crop_aspect_range: allowed patch height / width, in pixels.
        brightness_delta: brightness shift is uniform in ``[-delta, delta]`` (0-255 scale).
        contrast_range: contrast factor range (pixel values are multiplied).
        saturation_range: saturation factor range (the colour around the luminance grey is scaled).
        hue_delta: hue rotation is uniform in ``[-delta, delta]`` degrees.
        fill_color: RGB colour of the zoom-out canvas.
        min_box_size: with zoom-out or crop on, boxes narrower or lower than this many output pixels
            are dropped (with their labels). The validation path keeps every box.
    """

    output_size: Size
    photometric: bool = True
    zoom_out: bool = True
    crop: bool = True
    flip: bool = False
    max_zoom: float = 4.0
    zoom_out_probability: float = 0.5
    flip_probability: float = 0.5
    flip_label_map: Mapping[int, int] | None = None
    crop_choices: tuple[float | str | None, ...] = CROP_CHOICES
    crop_trials: int = 50
    min_crop_scale: float = 0.3
    crop_aspect_range: tuple[float, float] = (0.5, 2.0)
    brightness_delta: float = 32.0
    contrast_range: tuple[float, float] = (0.5, 1.5)
    saturation_range: tuple[float, float] = (0.5, 1.5)
    hue_delta: float = 18.0
    fill_color: tuple[int, int, int] = MEAN_COLOR
    min_box_size: float = 1.0
    _flip_pairs: dict[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "output_size", canonical_size(self.output_size, "output_size"))
        if not self.max_zoom >= 1.0:
            raise ValueError(f"max_zoom must be >= 1 (1 = no zoom-out), got {self.max_zoom!r}")
        for name in ("zoom_out_probability", "flip_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)!r}")
        if not 0.0 < self.min_crop_scale <= 1.0:
            raise ValueError(f"min_crop_scale must lie in (0, 1], got {self.min_crop_scale!r}")
        if self.crop_trials < 1:
            raise ValueError(f"crop_trials must be >= 1, got {self.crop_trials!r}")
        if self.crop and not self.crop_choices:
            raise ValueError("crop_choices is empty; give at least one option or set crop=False")
        for index, choice in enumerate(self.crop_choices):
            if choice not in (WHOLE_IMAGE, None) and not (
                isinstance(choice, (int, float)) and 0.0 <= choice <= 1.0
            ):
                raise ValueError(
                    f"crop_choices[{index}] = {choice!r}: use WHOLE_IMAGE, None or a minimum IoU in [0, 1]"
                )
        for name in ("crop_aspect_range", "contrast_range", "saturation_range"):
            low, high = getattr(self, name)
            if not 0.0 < low <= high:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high, got {(low, high)!r}")
        if self.brightness_delta < 0 or self.hue_delta < 0 or self.min_box_size < 0:
            raise ValueError("brightness_delta, hue_delta and min_box_size must be >= 0")
        object.__setattr__(self, "_flip_pairs", _symmetric_pairs(self.flip_label_map))

    @classmethod
    def validation(cls, output_size: Size) -> Augmenter:
        """The no-augmentation path: resize (warp) to ``output_size`` only."""
        return cls(output_size, photometric=False, zoom_out=False, crop=False, flip=False)

    @property
    def output_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the output image."""
        return height_width(self.output_size)

    @property
    def is_random(self) -> bool:
        """Whether calling this augmenter draws random numbers (needs an ``rng``)."""
        return self.photometric or self.zoom_out or self.crop or self.flip

    def __call__(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        labels: np.ndarray,
        rng: np.random.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Augment one image and its boxes.

        Args:
            image: ``uint8 (height, width, 3)`` RGB.
            boxes: ``(K, 4)`` pixel corners in ``image``; coordinates outside the image are clipped.
            labels: ``(K,)`` integer labels of the boxes.
            rng: the only source of randomness; required unless the augmenter is the validation path.

        Returns:
            ``(image uint8 (H, W, 3), boxes float32 (K', 4) pixel corners in the output image,
            labels (K',))`` with ``(H, W) = output_shape``; ``K' <= K`` (the crop and
            ``min_box_size`` drop boxes).

        Raises:
            ValueError: malformed image, boxes or labels (the message names the box index), or no
                ``rng`` for a random augmenter.
        """
        image, boxes, labels = _check_sample(image, boxes, labels)
        if self.is_random and rng is None:
            raise ValueError("this Augmenter is random: pass rng=np.random.default_rng(seed)")
        height, width = image.shape[:2]
        out_height, out_width = self.output_shape

        # Geometry in "canvas" coordinates: the source image sits at (left, top) on the canvas.
        left, top, canvas_width, canvas_height = 0.0, 0.0, float(width), float(height)
        if self.zoom_out and rng.random() < self.zoom_out_probability:
            ratio = rng.uniform(1.0, self.max_zoom)
            left = rng.uniform(0.0, width * (ratio - 1.0))
            top = rng.uniform(0.0, height * (ratio - 1.0))
            canvas_width, canvas_height = width * ratio, height * ratio
        boxes = boxes + np.array([left, top, left, top], dtype=np.float64)
        patch = np.array([0.0, 0.0, canvas_width, canvas_height])
        if self.crop:
            chosen = self._sample_crop(canvas_width, canvas_height, boxes, rng)
            if chosen is not None:
                patch, keep = chosen
                boxes = np.clip(boxes[keep], patch[[0, 1, 0, 1]], patch[[2, 3, 2, 3]])
                labels = labels[keep]

        # Canvas -> output: u = (x - patch_x0) * scale_x (and the same for y).
        scale = np.array([out_width / (patch[2] - patch[0]), out_height / (patch[3] - patch[1])] * 2)
        boxes = (boxes - patch[[0, 1, 0, 1]]) * scale
        placed = (np.array([left, top, left + width, top + height]) - patch[[0, 1, 0, 1]]) * scale
        drawn, corner = _resample_visible_part(image, placed, out_width, out_height)
        if drawn is not None and self.photometric:
            drawn = self._distort(drawn, rng)
        output = _compose(drawn, corner, out_width, out_height, self.fill_color)
        if self.flip and rng.random() < self.flip_probability:
            output = output.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            boxes = np.stack([out_width - boxes[:, 2], boxes[:, 1], out_width - boxes[:, 0], boxes[:, 3]], axis=1)
            labels = _swap_labels(labels, self._flip_pairs)
        if self.zoom_out or self.crop:
            sizes = boxes[:, 2:] - boxes[:, :2]
            keep = np.all(sizes >= self.min_box_size, axis=1)
            boxes, labels = boxes[keep], labels[keep]
        return np.array(output), boxes.astype(np.float32), labels

    def _sample_crop(
        self, width: float, height: float, boxes: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Draw a crop option and try ``crop_trials`` patches at once (vectorized).

        Returns ``(patch (4,) canvas corners, keep (K,) bool)`` for the first patch that satisfies the
        option, or ``None`` for the whole image (the ``WHOLE_IMAGE`` option, or no patch qualified, as
        in Caffe SSD).
        """
        choice = self.crop_choices[rng.integers(len(self.crop_choices))]
        if choice == WHOLE_IMAGE:
            return None
        trials = self.crop_trials
        patch_width = rng.uniform(self.min_crop_scale * width, width, trials)
        patch_height = rng.uniform(self.min_crop_scale * height, height, trials)
        patch_left = rng.uniform(0.0, 1.0, trials) * (width - patch_width)
        patch_top = rng.uniform(0.0, 1.0, trials) * (height - patch_height)
        patches = np.stack(
            [patch_left, patch_top, patch_left + patch_width, patch_top + patch_height], axis=1
        )  # (T, 4)
        aspect = patch_height / patch_width
        low, high = self.crop_aspect_range
        valid = (aspect >= low) & (aspect <= high)
        # An object is kept when its centre lies strictly inside the patch: (T, K).
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2.0
        inside = np.all(
            (centres[None] > patches[:, None, :2]) & (centres[None] < patches[:, None, 2:]), axis=2
        )
        if len(boxes):
            valid &= inside.any(axis=1)
        if choice is not None:
            best_overlap = _overlaps(patches, boxes).max(axis=1, initial=-1.0)
            valid &= best_overlap >= choice
        if not valid.any():
            return None
        first = int(np.argmax(valid))
        return patches[first], inside[first]

    def _distort(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        """Photometric distortion of an RGB image (Pillow C loops; same size and mode back).

        Brightness, then contrast either first or last (drawn) around saturation and hue, as in the
        reference chain; each step is applied with probability 0.5 and values saturate to [0, 255]
        after each step, as in Caffe's ``uint8`` arithmetic, so the order matters.
        """
        apply = rng.random(4) < _PHOTOMETRIC_PROBABILITY  # brightness, contrast, saturation, hue
        contrast_first = rng.random() < 0.5
        delta = rng.uniform(-self.brightness_delta, self.brightness_delta)
        contrast = rng.uniform(*self.contrast_range)
        saturation = rng.uniform(*self.saturation_range)
        hue_shift = rng.uniform(-self.hue_delta, self.hue_delta)

        levels = np.arange(256, dtype=np.float64)  # a lookup table over the 256 grey levels
        if apply[0]:
            levels = np.clip(levels + delta, 0.0, 255.0)
        if apply[1] and contrast_first:
            levels = np.clip(levels * contrast, 0.0, 255.0)
        if apply[0] or (apply[1] and contrast_first):
            image = image.point(_lookup_table(levels))
        if apply[2] or apply[3]:
            matrix = _color_matrix(saturation if apply[2] else 1.0, hue_shift if apply[3] else 0.0)
            image = image.convert("RGB", matrix=matrix)
        if apply[1] and not contrast_first:
            image = image.point(_lookup_table(np.clip(np.arange(256) * contrast, 0.0, 255.0)))
        return image


def resize_image(
    image: np.ndarray, boxes: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Resize (warp) an image to ``width x height`` and scale its pixel corner boxes exactly.

    Args:
        image: ``uint8 (H, W, 3)``.
        boxes: ``(K, 4)`` pixel corners in ``image``.

    Returns:
        ``(uint8 (height, width, 3), float32 (K, 4))`` — boxes scaled by ``(width / W, height / H)``.
    """
    source_height, source_width = image.shape[:2]
    scale = np.array([width / source_width, height / source_height] * 2, dtype=np.float64)
    if (source_width, source_height) == (width, height):
        resized = image
    else:
        resized = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))
    return resized, (np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale).astype(np.float32)


def _resample_visible_part(
    image: np.ndarray, placed: np.ndarray, out_width: int, out_height: int
) -> tuple[Image.Image | None, tuple[int, int]]:
    """Resample the part of ``image`` that shows in an ``out_width x out_height`` output.

    ``placed`` = ``(x0, y0, x1, y1)`` output coordinates of the source image's outer corners (they may
    lie outside the output). The visible part is rounded *inwards* to whole output pixels and the
    matching source box is computed from the same linear map, so the map stays exact; the partly
    covered output pixels at the image border keep the fill colour.

    Returns:
        ``(drawn, (column, row))``: the resampled part and where its top-left pixel goes in the
        output; ``drawn`` is ``None`` when no whole output pixel shows the image.
    """
    height, width = image.shape[:2]
    x0, y0, x1, y1 = placed
    scale_x, scale_y = (x1 - x0) / width, (y1 - y0) / height
    eps = 1e-6
    col_start, row_start = math.ceil(max(x0, 0.0) - eps), math.ceil(max(y0, 0.0) - eps)
    col_stop, row_stop = math.floor(min(x1, out_width) + eps), math.floor(min(y1, out_height) + eps)
    if col_stop <= col_start or row_stop <= row_start:
        return None, (0, 0)
    source_box = (
        min(max((col_start - x0) / scale_x, 0.0), width),
        min(max((row_start - y0) / scale_y, 0.0), height),
        min(max((col_stop - x0) / scale_x, 0.0), width),
        min(max((row_stop - y0) / scale_y, 0.0), height),
    )
    drawn = Image.fromarray(image).resize(
        (col_stop - col_start, row_stop - row_start), Image.Resampling.BILINEAR, box=source_box
    )
    return drawn, (col_start, row_start)


def _compose(
    drawn: Image.Image | None, corner: tuple[int, int], out_width: int, out_height: int,
    fill_color: tuple[int, int, int],
) -> Image.Image:
    """``drawn`` pasted at ``corner`` on an ``out_width x out_height`` canvas of ``fill_color``."""
    if drawn is not None and drawn.size == (out_width, out_height):
        return drawn
    canvas = Image.new("RGB", (out_width, out_height), tuple(fill_color))
    if drawn is not None:
        canvas.paste(drawn, corner)
    return canvas


def _lookup_table(levels: np.ndarray) -> list[int]:
    """A Pillow ``point`` table applying the 256 ``levels`` to each of the R, G, B bands."""
    return np.rint(levels).astype(np.uint8).tolist() * 3


def _color_matrix(saturation: float, hue_degrees: float) -> tuple[float, ...]:
    """Pillow ``convert`` matrix (3 x 4, row-major) for a saturation change and a hue rotation.

    The W3C Filter Effects colour matrices (``feColorMatrix`` types ``saturate`` and ``hueRotate``):
    both keep the Rec. 709 luminance and act on the colour around it, the linear counterpart of
    scaling HSV saturation and shifting HSV hue. Saturation is applied first, then the rotation.
    """
    luminance = np.tile([0.213, 0.715, 0.072], (3, 1))  # each row: the luminance weights
    saturate = luminance + saturation * (np.eye(3) - luminance)
    angle = math.radians(hue_degrees)
    rotate_sin = np.array([[-0.213, -0.715, 0.928], [0.143, 0.140, -0.283], [-0.787, 0.715, 0.072]])
    rotate = luminance + math.cos(angle) * (np.eye(3) - luminance) + math.sin(angle) * rotate_sin
    matrix = np.concatenate([rotate @ saturate, np.zeros((3, 1))], axis=1)
    return tuple(matrix.ravel().tolist())


def _overlaps(patches: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of ``(T, 4)`` patches with ``(K, 4)`` boxes, corners, in NumPy: ``(T, K)``."""
    top_left = np.maximum(patches[:, None, :2], boxes[None, :, :2])
    bottom_right = np.minimum(patches[:, None, 2:], boxes[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0.0, None), axis=2)
    patch_area = np.prod(patches[:, 2:] - patches[:, :2], axis=1)
    box_area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return intersection / (patch_area[:, None] + box_area[None, :] - intersection)


def _symmetric_pairs(flip_label_map: Mapping[int, int] | None) -> dict[int, int]:
    """``{a: b}`` -> ``{a: b, b: a}``; raises ``ValueError`` on contradicting pairs."""
    pairs: dict[int, int] = {}
    for source, target in (flip_label_map or {}).items():
        for key, value in ((int(source), int(target)), (int(target), int(source))):
            if pairs.get(key, value) != value:
                raise ValueError(
                    f"flip_label_map maps class {key} to both {pairs[key]} and {value}; "
                    "give each left/right pair once"
                )
            pairs[key] = value
    return pairs


def _swap_labels(labels: np.ndarray, pairs: Mapping[int, int]) -> np.ndarray:
    """Replace every label that has a mirror partner by that partner."""
    swapped = labels.copy()
    for source, target in pairs.items():
        swapped[labels == source] = target
    return swapped


def _check_sample(
    image: np.ndarray, boxes: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate one sample; boxes come back as float64 clipped to the image."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"image must be uint8 RGB (height, width, 3), got {image.dtype} {image.shape}"
        )
    height, width = image.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float64)
    labels = np.asarray(labels)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (K, 4) pixel corners, got {boxes.shape}")
    if labels.shape != (len(boxes),) or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"labels must be integers of shape ({len(boxes)},), got {labels.dtype} {labels.shape}")
    clipped = np.clip(boxes, 0.0, [width, height, width, height])
    bad = ~np.isfinite(boxes).all(axis=1) | np.any(clipped[:, 2:] <= clipped[:, :2], axis=1)
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(
            f"box {index} = {boxes[index].tolist()} is not finite, empty, inverted or outside the "
            f"{width}x{height} image; boxes are pixel corners (xmin, ymin, xmax, ymax)"
        )
    return image, clipped, labels
