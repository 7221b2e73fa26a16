"""Box formats and IoU: identities and hand-worked values."""

import numpy as np
import pytest
from keras import ops

from tlutils.boxes import area, iou, to_centroids, to_corners

pytestmark = pytest.mark.core


def test_corner_centroid_round_trip(rng):
    top_left = rng.uniform(0, 0.5, size=(20, 2))
    corners = np.concatenate([top_left, top_left + rng.uniform(0.01, 0.5, size=(20, 2))], axis=1)
    back = ops.convert_to_numpy(to_corners(to_centroids(corners)))
    np.testing.assert_allclose(back, corners, atol=1e-6)


def test_to_centroids_hand_worked():
    got = ops.convert_to_numpy(to_centroids(np.array([[0.1, 0.2, 0.5, 0.4]])))
    np.testing.assert_allclose(got, [[0.3, 0.3, 0.4, 0.2]], atol=1e-7)


def test_iou_hand_worked():
    a = np.array([[0.0, 0.0, 0.5, 0.5]])
    b = np.array([[0.25, 0.25, 0.75, 0.75], [0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5]])
    # overlap 0.25*0.25 = 0.0625; union 0.25 + 0.25 - 0.0625 = 0.4375
    np.testing.assert_allclose(ops.convert_to_numpy(iou(a, b)), [[0.0625 / 0.4375, 0.0, 1.0]], atol=1e-6)


def test_iou_identities(rng):
    top_left = rng.uniform(0, 0.5, size=(12, 2))
    boxes = np.concatenate([top_left, top_left + rng.uniform(0.01, 0.5, size=(12, 2))], axis=1)
    matrix = ops.convert_to_numpy(iou(boxes, boxes))
    np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-6)
    np.testing.assert_allclose(matrix, matrix.T, atol=1e-7)
    assert matrix.min() >= 0.0 and matrix.max() <= 1.0 + 1e-6
    np.testing.assert_allclose(ops.convert_to_numpy(area(boxes)), np.prod(boxes[:, 2:] - boxes[:, :2], axis=1), rtol=1e-6)


def test_iou_of_degenerate_boxes_is_zero():
    point = np.array([[0.3, 0.3, 0.3, 0.3]])
    assert ops.convert_to_numpy(iou(point, point))[0, 0] == 0.0


def test_numpy_iou_equals_keras_ops_iou(rng):
    from tlutils.boxes import iou_numpy

    top_left = rng.uniform(0, 0.6, size=(15, 2))
    a = np.concatenate([top_left, top_left + rng.uniform(0.0, 0.4, size=(15, 2))], axis=1).astype("float32")
    b = a[::-1] + 0.05
    np.testing.assert_allclose(iou_numpy(a[:, None], b[None]), ops.convert_to_numpy(iou(a, b)), atol=1e-6)
