"""The two custom layers of SSD-VGG16: input preprocessing and conv4_3's scaled L2 normalization.

Both are registered for the native ``.keras`` format under the package name ``tlutils``, so
``keras.saving.load_model(path)`` rebuilds a saved detector without ``custom_objects``. Both compute in
float32 even under a ``mixed_bfloat16`` policy: the mean subtraction and the per-location norm are
small, precision-sensitive steps.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

# ImageNet mean pixel in RGB order, the one VGG16's ImageNet weights were trained with: Simonyan &
# Zisserman's Caffe release, also ``keras.applications.imagenet_utils.preprocess_input(mode="caffe")``
# (which subtracts it in BGR order, after flipping the channels).
IMAGENET_MEAN_RGB: tuple[float, float, float] = (123.68, 116.779, 103.939)

# "tf" mode of ``keras.applications.imagenet_utils.preprocess_input``: pixels / 127.5 - 1 -> [-1, 1].
TF_MODE_SCALE: float = 127.5

PREPROCESSING_MODES: tuple[str, ...] = ("caffe", "tf", "none")

# SSD paper, section 3.1 (after ParseNet, Liu, Rabinovich & Berg 2015): conv4_3 features are
# L2-normalized per location and multiplied by a learned per-channel scale initialized to 20.
CONV4_3_NORM_SCALE: float = 20.0

# Caffe's Normalize layer guards the norm with this epsilon.
L2_NORM_EPSILON: float = 1e-10


@keras.saving.register_keras_serializable(package="tlutils")
class ImagePreprocessing(keras.layers.Layer):
    """Raw RGB pixels 0-255 -> what the backbone's weights expect; ``(B, H, W, 3) -> (B, H, W, 3)``.

    Modes:
        ``"caffe"``: RGB -> BGR, then subtract the ImageNet mean (VGG16's ImageNet weights, Caffe).
        ``"tf"``: ``x / 127.5 - 1``, pixels scaled to [-1, 1].
        ``"none"``: unchanged.
    """

    def __init__(self, mode: str = "caffe", **kwargs: Any) -> None:
        if mode not in PREPROCESSING_MODES:
            raise ValueError(f"preprocessing must be one of {PREPROCESSING_MODES}, got {mode!r}")
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, images: Any) -> Any:
        images = ops.cast(images, "float32")
        if self.mode == "caffe":
            mean_bgr = ops.convert_to_tensor(IMAGENET_MEAN_RGB[::-1], dtype="float32")
            return ops.flip(images, axis=-1) - mean_bgr
        if self.mode == "tf":
            return images / TF_MODE_SCALE - 1.0
        return images

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="tlutils")
class L2Normalization(keras.layers.Layer):
    """Per-location L2 normalization with a learned per-channel scale; ``(B, H, W, C) -> (B, H, W, C)``.

    ``y[b, i, j, c] = scale[c] * x[b, i, j, c] / max(||x[b, i, j, :]||, sqrt(epsilon))``; ``scale`` has
    shape ``(C,)`` and starts at ``initial_scale`` (20 for SSD's conv4_3), so every location's feature
    vector starts with norm 20.
    """

    def __init__(self, initial_scale: float = CONV4_3_NORM_SCALE, epsilon: float = L2_NORM_EPSILON,
                 **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.initial_scale = float(initial_scale)
        self.epsilon = float(epsilon)

    def build(self, input_shape: tuple) -> None:
        self.scale = self.add_weight(
            name="scale",
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.initial_scale),
            trainable=True,
        )

    def call(self, features: Any) -> Any:
        features = ops.cast(features, "float32")
        squared_norm = ops.sum(ops.square(features), axis=-1, keepdims=True)  # (B, H, W, 1)
        return features * ops.rsqrt(ops.maximum(squared_norm, self.epsilon)) * self.scale

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "initial_scale": self.initial_scale, "epsilon": self.epsilon}
