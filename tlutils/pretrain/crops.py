"""Sign crops: every box of a detection dataset cut out as a small square image with its label.

A crop is the square around a box's centre whose side is :data:`CROP_CONTEXT` times the box's longer
side (a classification benchmark such as GTSRB keeps a margin of about 10 % around each sign), moved
inside the image where it fits, padded with black where it does not, and resized to
``crop_size`` x ``crop_size``. Boxes are the records' **pixel** corners ``(xmin, ymin, xmax, ymax)``.
NumPy and Pillow only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from PIL import Image

from tlutils.data.records import load_image

if TYPE_CHECKING:
    from tlutils.data.records import DetectionDataset

#: Side of a crop / the longer side of its box.
CROP_CONTEXT = 1.2
#: Crop sizes are multiples of this (the VGG16 base halves its input four times before pool5).
CROP_SIZE_STEP = 16
#: The smallest default crop size: 2x2 conv5 maps.
MIN_CROP_SIZE = 32


class SignCrops(NamedTuple):
    """Crops of a dataset's boxes.

    Attributes:
        images: ``(N, S, S, 3)`` uint8 RGB crops, in dataset order (record, then box).
        labels: ``(N,)`` int64 the dataset's class ids of the boxes.
        classes: the dataset's class table, id -> name (also classes without a crop).
    """

    images: np.ndarray
    labels: np.ndarray
    classes: dict[int, str]


def default_crop_size(input_size: int) -> int:
    """About a fifth of the detector's input, a multiple of :data:`CROP_SIZE_STEP`, at least
    :data:`MIN_CROP_SIZE`: the median sign of the sign world covers about a sixth of the image side
    (96 px -> 32, 160 px -> 32, 300 px -> 64)."""
    return max(MIN_CROP_SIZE, CROP_SIZE_STEP * round(input_size / 5 / CROP_SIZE_STEP))


def sign_crops(dataset: "DetectionDataset", crop_size: int, context: float = CROP_CONTEXT) -> SignCrops:
    """Cut every box of ``dataset`` out as a ``crop_size`` square (see the module docstring).

    Each image is decoded once. Images without boxes give no crop.

    Raises:
        ValueError: ``crop_size`` or ``context`` out of range, or a dataset without any box.
    """
    if isinstance(crop_size, bool) or not isinstance(crop_size, int) or crop_size < 1:
        raise ValueError(f"crop_size must be a positive integer (pixels), got {crop_size!r}")
    if not context >= 1.0:
        raise ValueError(f"context must be >= 1 (the crop holds the whole box), got {context!r}")
    images, labels = [], []
    for record in dataset:
        if record.num_boxes == 0:
            continue
        image = Image.fromarray(load_image(record))
        for corners in crop_corners(record.boxes, context, record.width, record.height):
            patch = image.crop(tuple(int(v) for v in corners))  # black outside the image
            images.append(np.asarray(patch.resize((crop_size, crop_size), Image.BILINEAR)))
        labels.append(record.labels)
    if not images:
        raise ValueError(f"{dataset.name}: no boxes to crop ({len(dataset)} images, all without boxes)")
    return SignCrops(np.stack(images), np.concatenate(labels).astype(np.int64), dict(dataset.classes))


def crop_corners(boxes: np.ndarray, context: float, width: int, height: int) -> np.ndarray:
    """Integer pixel corners ``(K, 4)`` of the square crop of each box ``(K, 4)`` in a ``width`` x
    ``height`` image: side ``ceil(context * longer side)``, centred on the box, then shifted inside
    the image along each axis where the side fits (else centred, to be padded)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    side = np.ceil(context * np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]))
    corners = []
    for low, high, limit in ((boxes[:, 0], boxes[:, 2], width), (boxes[:, 1], boxes[:, 3], height)):
        start = np.round((low + high) / 2 - side / 2)
        start = np.where(side <= limit, np.clip(start, 0, limit - side), start)
        corners.append(start)
    xmin, ymin = corners
    return np.stack([xmin, ymin, xmin + side, ymin + side], axis=1).astype(np.int64)
