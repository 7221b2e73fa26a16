"""The custom layers of SSD-VGG16: input preprocessing, conv4_3's scaled L2 normalization, and fc6's
dilated convolution computed as one matrix product.

All are registered for the native ``.keras`` format under the package name ``tlutils``, so
``keras.saving.load_model(path)`` rebuilds a saved detector without ``custom_objects``. Preprocessing
and normalization compute in float32 even under a ``mixed_bfloat16`` policy: the mean subtraction and
the per-location norm are small, precision-sensitive steps.
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


@keras.saving.register_keras_serializable(package="tlutils")
class AtrousConv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` whose dilated ("a trous") convolution runs as one matrix product.

    Same weights (kernel ``(kh, kw, C_in, C_out)``), config and outputs as ``Conv2D`` up to float
    rounding; only the computation differs. The ``kh * kw`` dilated taps are gathered as shifted views
    of the padded input, ``(B, H, W, C_in) -> (B, H, W, kh * kw * C_in)`` (tap-major, like the kernel's
    rows), and multiplied by the kernel reshaped to ``(kh * kw * C_in, C_out)``. Why: TensorFlow's CPU
    kernels train a dilated convolution several times slower per multiply-add than an undilated one,
    which made SSD's fc6 (dilation 6) the costliest layer per MAC (``scripts/bench_model.py``; figures
    in docs/performance.md). Strided, grouped, channels-first or dynamically shaped convolutions
    fall back to ``Conv2D``'s own op.
    """

    def convolution_op(self, inputs: Any, kernel: Any) -> Any:
        dilation_h, dilation_w = self.dilation_rate
        height, width = inputs.shape[1], inputs.shape[2]
        if (max(dilation_h, dilation_w) == 1 or tuple(self.strides) != (1, 1) or self.groups != 1
                or self.data_format != "channels_last" or height is None or width is None):
            return super().convolution_op(inputs, kernel)
        kernel_h, kernel_w = self.kernel_size
        span_h, span_w = dilation_h * (kernel_h - 1), dilation_w * (kernel_w - 1)
        if self.padding == "same":  # TensorFlow's SAME: the odd pixel of padding goes after
            inputs = ops.pad(inputs, [[0, 0], [span_h // 2, span_h - span_h // 2],
                                      [span_w // 2, span_w - span_w // 2], [0, 0]])
            out_h, out_w = height, width
        else:
            out_h, out_w = height - span_h, width - span_w
        taps = [
            inputs[:, i * dilation_h:i * dilation_h + out_h, j * dilation_w:j * dilation_w + out_w, :]
            for i in range(kernel_h)
            for j in range(kernel_w)
        ]  # kh * kw views (B, out_h, out_w, C_in)
        patches = ops.concatenate(taps, axis=-1)  # (B, out_h, out_w, kh * kw * C_in)
        return ops.matmul(patches, ops.reshape(kernel, (-1, self.filters)))  # (B, out_h, out_w, C_out)
