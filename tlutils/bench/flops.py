"""Counted FLOPs of a Keras model, per image.

Convention: a convolution or dense layer costs ``2 x MACs`` per image forward (a multiply and an add
per weight use; biases, activations, pooling, normalization and the loss are not counted), and a
training step ``3 x`` the forward (the backward pass computes the gradients of the inputs and of the
weights, each as costly as the forward). torch's FLOP counter counts the peer the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any


def _leaf_layers(model: Any) -> Iterator[Any]:
    """The layers of ``model``, nested models expanded."""
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _leaf_layers(layer)
        else:
            yield layer


def layer_macs(layer: Any) -> int:
    """Multiply-accumulates per image of a convolution or dense layer (0 for any other layer).

    Conv1D/2D/3D and DepthwiseConv2D: output positions x kernel size (``kh * kw * c_in / groups *
    c_out``, resp. ``kh * kw * c_in * multiplier``); Dense: positions x ``c_in * c_out``.
    """
    import keras

    if not isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
                              keras.layers.DepthwiseConv2D, keras.layers.Dense)):
        return 0
    output_shape = tuple(layer.output.shape[1:])
    channels_first = getattr(layer, "data_format", "channels_last") == "channels_first"
    positions = output_shape[1:] if channels_first else output_shape[:-1]
    return math.prod(int(size) for size in positions) * math.prod(int(size) for size in layer.kernel.shape)


def forward_flops(model: Any) -> int:
    """Forward FLOPs per image of ``model``'s conv and dense layers: ``2 x`` their MACs."""
    return 2 * sum(layer_macs(layer) for layer in _leaf_layers(model))


def training_flops(model: Any) -> int:
    """Training FLOPs per image: ``3 x forward_flops`` (forward, input gradients, weight gradients)."""
    return 3 * forward_flops(model)
