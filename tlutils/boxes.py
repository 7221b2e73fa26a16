"""Box formats and intersection over union.

Conventions (used by the whole package):

- coordinates are normalized to [0, 1] of the image width and height;
- **corners** = ``(xmin, ymin, xmax, ymax)``;
- **centroids** = ``(cx, cy, w, h)``.

Functions accept NumPy arrays or backend tensors and work on the last axis, so leading batch axes are
kept: ``(..., 4) -> (..., 4)``. They use ``keras.ops`` and therefore run on every Keras 3 backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from keras import ops

Tensor = Any  # a NumPy array or a backend tensor


def to_centroids(corners: Tensor) -> Tensor:
    """Convert corners ``(xmin, ymin, xmax, ymax)`` to centroids ``(cx, cy, w, h)``; shape ``(..., 4)``."""
    corners = ops.convert_to_tensor(corners)
    top_left, bottom_right = corners[..., :2], corners[..., 2:]
    return ops.concatenate([(top_left + bottom_right) / 2.0, bottom_right - top_left], axis=-1)


def to_corners(centroids: Tensor) -> Tensor:
    """Convert centroids ``(cx, cy, w, h)`` to corners ``(xmin, ymin, xmax, ymax)``; shape ``(..., 4)``."""
    centroids = ops.convert_to_tensor(centroids)
    center, size = centroids[..., :2], centroids[..., 2:]
    return ops.concatenate([center - size / 2.0, center + size / 2.0], axis=-1)


def area(corners: Tensor) -> Tensor:
    """Area of corners boxes, ``(..., 4) -> (...)``; inverted boxes count as 0."""
    corners = ops.convert_to_tensor(corners)
    size = ops.maximum(corners[..., 2:] - corners[..., :2], 0.0)
    return size[..., 0] * size[..., 1]


def iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """Pairwise intersection over union of two sets of corners boxes.

    Args:
        boxes_a: ``(N, 4)`` corners.
        boxes_b: ``(M, 4)`` corners.

    Returns:
        ``(N, M)`` IoU in [0, 1]; 0 where both boxes have zero area.
    """
    boxes_a = ops.convert_to_tensor(boxes_a, dtype="float32")
    boxes_b = ops.convert_to_tensor(boxes_b, dtype="float32")
    top_left = ops.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])  # (N, M, 2)
    bottom_right = ops.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])  # (N, M, 2)
    size = ops.maximum(bottom_right - top_left, 0.0)
    intersection = size[..., 0] * size[..., 1]
    union = area(boxes_a)[:, None] + area(boxes_b)[None, :] - intersection
    return ops.where(union > 0.0, intersection / ops.maximum(union, 1e-12), 0.0)


# NumPy versions for post-processing and evaluation: there, keras.ops' dispatch per call costs more
# than the arithmetic (and on JAX every new shape compiles).


def area_numpy(boxes: np.ndarray) -> np.ndarray:
    """Area of corners boxes ``(..., 4) -> (...)``; inverted boxes count as 0 (NumPy ``tlutils.boxes.area``)."""
    return np.maximum(boxes[..., 2] - boxes[..., 0], 0) * np.maximum(boxes[..., 3] - boxes[..., 1], 0)


def intersection_numpy(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Intersection area of corners boxes, broadcasting ``(..., 4)`` with ``(..., 4)`` -> ``(...)``."""
    width = np.minimum(boxes_a[..., 2], boxes_b[..., 2]) - np.maximum(boxes_a[..., 0], boxes_b[..., 0])
    height = np.minimum(boxes_a[..., 3], boxes_b[..., 3]) - np.maximum(boxes_a[..., 1], boxes_b[..., 1])
    return np.maximum(width, 0) * np.maximum(height, 0)


def iou_numpy(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of corners boxes, broadcasting ``(..., 4)`` with ``(..., 4)`` -> ``(...)``; 0 for empty unions.

    NumPy counterpart of ``tlutils.boxes.iou`` for post-processing: pairs ``(P, 4), (P, 4) -> (P,)``
    or a matrix ``a[:, None], b[None] -> (N, M)``. ``tlutils.boxes.iou`` goes through ``keras.ops``,
    whose dispatch per call costs more than the arithmetic here (and on JAX compiles every new shape).
    """
    intersection = intersection_numpy(boxes_a, boxes_b)
    union = area_numpy(boxes_a) + area_numpy(boxes_b) - intersection
    return np.where(union > 0, intersection / np.where(union > 0, union, 1), 0)
