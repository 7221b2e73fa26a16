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
