"""SSD-VGG16 (Liu et al., "SSD: Single Shot MultiBox Detector", ECCV 2016), built from spec tables.

Layer names (a contract: weights load and transfer by name):

- ``image`` (input, raw RGB 0-255) -> ``preprocessing`` (:class:`ImagePreprocessing`);
- VGG16 conv1_1 ... conv5_3 with the names of ``keras.applications.VGG16``: ``block1_conv1`` ...
  ``block5_conv3``, pools ``block1_pool`` ... ``block5_pool``;
- ``conv4_3_norm`` (:class:`L2Normalization` of ``block4_conv3``), ``fc6``, ``fc7``, the extra layers
  ``conv8_1`` ... ``conv11_2``;
- per prediction layer ``p`` (``conv4_3``, ``fc7``, ``conv8_2``, ``conv9_2``, ``conv10_2``,
  ``conv11_2``): ``{p}_class_head``, ``{p}_box_head`` (3x3 convs) and their ``{p}_class_reshape``,
  ``{p}_box_reshape``; the outputs ``class_logits`` and ``box_offsets`` (concatenations).

Output order along the anchor axis is prediction layer -> row -> column -> box, the order of
``tlutils.anchors.generate_anchors``. Sizes are one side (square) or ``(height, width)``, as in
``tlutils.anchors``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import keras
from keras import layers, ops

from tlutils.anchors import FIRST_LAYER_SCALE, AnchorConfig, Size, canonical_size, default_scales, height_width
from tlutils.model.layers import PREPROCESSING_MODES, AtrousConv2D, ImagePreprocessing, L2Normalization

# He et al. 2015 initialization for the ReLU convolutions (variance 2 / fan_in, as ssd_keras's
# he_normal); the uniform variant because JAX compiles a truncated normal once per kernel shape, which
# slows building the model (docs/performance.md).
KERNEL_INITIALIZER = "he_uniform"

# Channel counts scaled by ``width`` never drop below this.
MIN_CHANNELS = 8


@dataclass(frozen=True)
class ConvSpec:
    """One convolution of the network: Keras layer name, channels at width 1.0, geometry.

    ``padding="valid"`` falls back to ``"same"`` where the incoming feature map is smaller than the
    kernel (small inputs, e.g. 160 px), so that every prediction layer keeps at least one cell.
    """

    name: str
    filters: int
    kernel_size: int = 3
    strides: int = 1
    padding: str = "same"
    dilation_rate: int = 1


@dataclass(frozen=True)
class PredictionSpec:
    """A prediction layer: its name, the layer whose features it reads, default boxes per cell."""

    name: str
    source: str
    boxes_per_cell: int


# VGG16 (Simonyan & Zisserman 2015, configuration D): (number of 3x3 convs, channels) per block.
VGG16_BLOCKS: tuple[tuple[int, int], ...] = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))

VGG16_CONVS: tuple[tuple[ConvSpec, ...], ...] = tuple(
    tuple(ConvSpec(f"block{block}_conv{index}", filters) for index in range(1, num_convs + 1))
    for block, (num_convs, filters) in enumerate(VGG16_BLOCKS, start=1)
)

# SSD paper, section 3 / figure 2: fc6 and fc7 of VGG16 become convolutions; fc6 is a 3x3 "a trous"
# convolution with dilation 6 (its input comes from pool5, changed to 3x3 stride 1).
FC_LAYERS: tuple[ConvSpec, ...] = (
    ConvSpec("fc6", 1024, kernel_size=3, dilation_rate=6),
    ConvSpec("fc7", 1024, kernel_size=1),
)

# SSD300's extra feature layers, each a 1x1 bottleneck followed by a 3x3 convolution.
EXTRA_LAYERS: tuple[ConvSpec, ...] = (
    ConvSpec("conv8_1", 256, kernel_size=1),
    ConvSpec("conv8_2", 512, strides=2),
    ConvSpec("conv9_1", 128, kernel_size=1),
    ConvSpec("conv9_2", 256, strides=2),
    ConvSpec("conv10_1", 128, kernel_size=1),
    ConvSpec("conv10_2", 256, padding="valid"),
    ConvSpec("conv11_1", 128, kernel_size=1),
    ConvSpec("conv11_2", 256, padding="valid"),
)

# SSD300 feature maps 38, 19, 10, 5, 3, 1 with 4, 6, 6, 6, 4, 4 boxes per cell -> 8732 anchors.
PREDICTION_LAYERS: tuple[PredictionSpec, ...] = (
    PredictionSpec("conv4_3", "conv4_3_norm", 4),
    PredictionSpec("fc7", "fc7", 6),
    PredictionSpec("conv8_2", "conv8_2", 6),
    PredictionSpec("conv9_2", "conv9_2", 6),
    PredictionSpec("conv10_2", "conv10_2", 4),
    PredictionSpec("conv11_2", "conv11_2", 4),
)

BOX_CODE_SIZE = 4  # offsets (cx, cy, w, h) per default box


def scaled_channels(filters: int, width: float) -> int:
    """``filters * width`` rounded, at least :data:`MIN_CHANNELS` (width 1.0 keeps the paper's counts)."""
    return max(MIN_CHANNELS, int(round(filters * width)))


def build_ssd_vgg16(
    num_classes: int,
    input_size: Size = 300,
    width: float = 1.0,
    backbone_weights: str | os.PathLike | None = None,
    preprocessing: str = "caffe",
    l2_regularization: float = 0.0,
) -> keras.Model:
    """Build SSD-VGG16 (width 1.0 and input 300: the paper's SSD300, 8732 anchors).

    Args:
        num_classes: object classes C (background is extra: the model predicts C + 1 logits).
        input_size: the input in pixels: a side ``S`` (square, ``H = W = S``) or ``(height, width)``
            for a non-square input; any size builds (see :class:`ConvSpec`), and
            :func:`anchor_config_for` gives its default boxes (the model itself holds no anchors, so
            the smallest default box is a parameter of that function, not of this one).
        width: channel multiplier (e.g. 0.25 for CPU runs); channels are rounded, at least 8.
        backbone_weights: ``None`` (random), ``"imagenet"`` (downloads through
            ``keras.applications.VGG16``) or a path to VGG16 no-top weights; see
            :func:`load_vgg16_weights`. Needs ``width=1.0``.
        preprocessing: ``"caffe"`` (what VGG16's ImageNet weights expect), ``"tf"`` or ``"none"``.
        l2_regularization: factor of a ``keras.regularizers.L2`` on every conv kernel (0: none; use
            the optimizer's weight decay instead). Keras adds these terms to the training loss, for
            trainable layers only; read them with :func:`regularization_loss`.

    Returns:
        A Functional model ``images (B, H, W, 3) float 0-255 -> {"class_logits": (B, A, C + 1),
        "box_offsets": (B, A, 4)}``; outputs are float32 also under a mixed precision policy.

    Raises:
        ValueError: an argument out of range, or weights that do not fit.
    """
    _check_arguments(num_classes, input_size, width, backbone_weights, preprocessing, l2_regularization)
    regularizer = keras.regularizers.L2(l2_regularization) if l2_regularization > 0 else None

    images = keras.Input(shape=(*height_width(input_size, "input_size"), 3), name="image")
    x = ImagePreprocessing(preprocessing, name="preprocessing")(images)
    features: dict[str, Any] = {}
    for block in range(1, len(VGG16_CONVS) + 1):
        block_output, x = vgg16_block(x, block, width, regularizer)
        if block == 4:  # conv4_3 feeds the first prediction layer through the L2 normalization
            features["conv4_3_norm"] = L2Normalization(name="conv4_3_norm")(block_output)
    for spec in FC_LAYERS + EXTRA_LAYERS:
        x = _conv(x, spec, width, regularizer)
        features[spec.name] = x

    class_logits, box_offsets = [], []
    for spec in PREDICTION_LAYERS:
        class_logits.append(_head(features[spec.source], spec, "class", num_classes + 1, regularizer))
        box_offsets.append(_head(features[spec.source], spec, "box", BOX_CODE_SIZE, regularizer))
    outputs = {
        "class_logits": layers.Concatenate(axis=1, dtype="float32", name="class_logits")(class_logits),
        "box_offsets": layers.Concatenate(axis=1, dtype="float32", name="box_offsets")(box_offsets),
    }
    model = keras.Model(images, outputs, name="ssd_vgg16")
    if backbone_weights is not None:
        load_vgg16_weights(model, backbone_weights)
    return model


def _check_arguments(num_classes: Any, input_size: Any, width: Any, backbone_weights: Any,
                     preprocessing: Any, l2_regularization: Any) -> None:
    """Raise ``ValueError`` naming the first argument of :func:`build_ssd_vgg16` that is out of range."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1 (background is added), got {num_classes!r}")
    height_width(input_size, "input_size")  # raises ValueError: not a positive side or (height, width)
    if not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
        raise ValueError(f"width must be a positive number (1.0 = SSD300's channels), got {width!r}")
    if preprocessing not in PREPROCESSING_MODES:
        raise ValueError(f"preprocessing must be one of {PREPROCESSING_MODES}, got {preprocessing!r}")
    if (not isinstance(l2_regularization, (int, float)) or not math.isfinite(l2_regularization)
            or l2_regularization < 0):
        raise ValueError(f"l2_regularization must be a number >= 0, got {l2_regularization!r}")
    if backbone_weights is not None and width != 1.0:
        raise ValueError(
            f"backbone_weights={str(backbone_weights)!r} are VGG16's weights and fit only width=1.0, "
            f"got width={width}; build with width=1.0 or backbone_weights=None"
        )


def vgg16_block(x: Any, block: int, width: float, regularizer: Any = None) -> tuple[Any, Any]:
    """VGG16's block ``block`` (1..5) on ``x``: its convs (``block{block}_conv1`` ...), then its pool.

    The one builder of VGG16's conv blocks: the detector and ``tlutils.pretrain``'s sign classifier
    share it, so their layers have the same names and shapes and weights copy between them by name.

    Returns:
        ``(last conv output (B, H, W, C), pooled output)``; SSD's pool5 keeps the size (3x3 stride 1).
    """
    for spec in VGG16_CONVS[block - 1]:
        x = _conv(x, spec, width, regularizer)
    return x, _pool(block)(x)


def _conv(x: Any, spec: ConvSpec, width: float, regularizer: Any) -> Any:
    """A ReLU convolution from ``spec``, channels scaled by ``width``; ``(B, H, W, C) -> (B, H', W', C')``."""
    padding = spec.padding
    if padding == "valid" and min(x.shape[1], x.shape[2]) < spec.kernel_size:
        padding = "same"  # the map is too small for a valid conv: keep it (e.g. 1x1 -> 1x1)
    conv_class = AtrousConv2D if spec.dilation_rate > 1 else layers.Conv2D  # same weights, faster op
    return conv_class(
        scaled_channels(spec.filters, width),
        spec.kernel_size,
        strides=spec.strides,
        padding=padding,
        dilation_rate=spec.dilation_rate,
        activation="relu",
        kernel_initializer=KERNEL_INITIALIZER,
        kernel_regularizer=regularizer,
        name=spec.name,
    )(x)


def _pool(block: int) -> layers.Layer:
    """VGG16's pool after ``block``: 2x2 stride 2, except SSD's pool5 (3x3 stride 1).

    Padding is "same", i.e. Caffe's ceil mode, so SSD300's 75x75 conv3_3 map pools to 38x38 (the
    paper's conv4_3 size); on even sizes it equals keras.applications.VGG16's "valid" pools.
    """
    if block == 5:
        return layers.MaxPooling2D(3, strides=1, padding="same", name="block5_pool")
    return layers.MaxPooling2D(2, strides=2, padding="same", name=f"block{block}_pool")


def _head(features: Any, spec: PredictionSpec, kind: str, values_per_box: int, regularizer: Any) -> Any:
    """A 3x3 prediction conv and its reshape: ``(B, H, W, C_in) -> (B, H * W * k, values_per_box)``.

    The conv's channel ``b * values_per_box + v`` is value ``v`` of box slot ``b``; the row-major
    reshape therefore orders the anchor axis row -> column -> box.
    """
    height, width = int(features.shape[1]), int(features.shape[2])
    boxes = spec.boxes_per_cell
    x = layers.Conv2D(
        boxes * values_per_box,
        3,
        padding="same",
        kernel_initializer=KERNEL_INITIALIZER,
        kernel_regularizer=regularizer,
        name=f"{spec.name}_{kind}_head",
    )(features)  # (B, H, W, k * values_per_box)
    return layers.Reshape((height * width * boxes, values_per_box), name=f"{spec.name}_{kind}_reshape")(x)


def feature_map_sizes(model: keras.Model) -> tuple[Size, ...]:
    """Each prediction layer's feature map, read from the head convs' output shapes: its side where
    it is square, else ``(rows, columns)`` (the form of ``AnchorConfig.feature_map_sizes``).

    Raises:
        ValueError: ``model`` is not an SSD from :func:`build_ssd_vgg16`.
    """
    sizes = []
    for spec in PREDICTION_LAYERS:
        shape = _get_layer(model, f"{spec.name}_class_head").output.shape  # (B, rows, columns, k)
        sizes.append(canonical_size((int(shape[1]), int(shape[2]))))
    return tuple(sizes)


def input_size_of(model: keras.Model) -> Size:
    """The model's input in pixels: its side where square, else ``(height, width)``."""
    return canonical_size((int(model.input_shape[1]), int(model.input_shape[2])))


def boxes_per_cell(model: keras.Model) -> tuple[int, ...]:
    """Default boxes per cell of each prediction layer, read from the box heads' channel counts."""
    return tuple(_get_layer(model, f"{spec.name}_box_head").filters // BOX_CODE_SIZE
                 for spec in PREDICTION_LAYERS)


def num_classes_of(model: keras.Model) -> int:
    """Object classes C of an SSD (its ``class_logits`` hold C + 1 values per anchor)."""
    return int(_get_layer(model, "class_logits").output.shape[-1]) - 1


def anchor_config_for(model: keras.Model, smallest_scale: float | None = None) -> AnchorConfig:
    """The default boxes matching ``model``: its input size and its prediction layers' real feature maps.

    ``config.num_anchors`` equals the model's anchor axis ``A`` for every input size, square or not.
    A model with SSD300's geometry (input 300, maps 38, 19, 10, 5, 3, 1) gets
    ``AnchorConfig.ssd300()``, the paper's release with steps 8, 16, 32, 64, 100, 300 px; any other
    gets ``AnchorConfig.from_feature_maps`` (steps = input size / map size per axis, SSD300's scales
    and ratios). On a non-square input, scales are fractions of the shorter side and default boxes
    keep their aspect ratios in pixels (``tlutils.anchors``).

    Args:
        model: an SSD from :func:`build_ssd_vgg16`.
        smallest_scale: the first prediction layer's (conv4_3's) scale, a fraction of the input's
            shorter side: the smallest default box. ``None`` means ``FIRST_LAYER_SCALE`` = 0.1 (SSD300's
            30 px), the boxes the model has always had; a smaller one suits objects smaller than
            ``0.1 x`` the input (``default_scales`` gives the whole ladder). Train and evaluate with
            the same value: it changes the targets, not the model.

    Raises:
        ValueError: ``model`` is not an SSD from :func:`build_ssd_vgg16`, its heads' boxes per cell
            differ from the anchor config's, or ``smallest_scale`` is out of range.
    """
    image_size, sizes = input_size_of(model), feature_map_sizes(model)
    smallest_scale = FIRST_LAYER_SCALE if smallest_scale is None else smallest_scale
    ssd300 = AnchorConfig.ssd300()
    if (image_size, sizes) == (ssd300.image_size, ssd300.feature_map_sizes):
        config = replace(ssd300, scales=default_scales(len(sizes), smallest_scale))  # ssd300 by default
    else:
        config = AnchorConfig.from_feature_maps(image_size, sizes, smallest_scale=smallest_scale)
    if config.boxes_per_cell != boxes_per_cell(model):
        raise ValueError(
            f"model {model.name!r} predicts {boxes_per_cell(model)} boxes per cell, its anchor config "
            f"{config.boxes_per_cell}"
        )
    return config


def regularization_loss(model: keras.Model) -> float:
    """The L2 kernel penalty Keras adds to the training loss: ``sum(model.losses)`` in float32, as a
    Python float to log (through NumPy: on PyTorch the tensor of trainable kernels tracks gradients,
    and ``float`` of it warns).

    Only **trainable** conv kernels contribute (Keras 3 collects regularizers from
    ``trainable_weights``): frozen layers' terms disappear, unlike in Keras 2. 0.0 for a model built
    with ``l2_regularization=0``.
    """
    losses = model.losses
    if not losses:
        return 0.0
    return float(ops.convert_to_numpy(ops.sum(ops.stack([ops.cast(loss, "float32") for loss in losses]))))


def vgg16_conv_names() -> tuple[str, ...]:
    """The 13 VGG16 conv layer names, ``block1_conv1`` ... ``block5_conv3``."""
    return tuple(spec.name for convs in VGG16_CONVS for spec in convs)


def load_vgg16_weights(model: keras.Model, weights: str | os.PathLike) -> list[str]:
    """Copy VGG16 conv weights (block1_conv1 ... block5_conv3) into ``model`` by layer name.

    Args:
        model: a width-1.0 SSD from :func:`build_ssd_vgg16` (or any model with those layer names).
        weights: ``"imagenet"`` (``keras.applications.VGG16(include_top=False, weights="imagenet")``,
            downloads once) or a path: a ``.keras`` VGG16 model (loaded, copied by name) or any file
            ``keras.applications.VGG16(include_top=False, weights=path)`` accepts (``.weights.h5``
            from ``save_weights``, the legacy ``..._notop.h5``).

    Returns:
        The names of the 13 layers loaded.

    Raises:
        ValueError: no such file, a file VGG16 cannot load, or weights whose shapes do not fit.
    """
    source = _vgg16_source(weights)
    loaded = []
    for name in vgg16_conv_names():
        try:
            source_layer = source.get_layer(name)
        except ValueError:
            raise ValueError(f"{weights!s} has no layer {name!r}: not a VGG16 model") from None
        target_layer = _get_layer(model, name)
        source_shapes = [tuple(w.shape) for w in source_layer.weights]
        target_shapes = [tuple(w.shape) for w in target_layer.weights]
        if source_shapes != target_shapes:
            raise ValueError(
                f"VGG16 weights of {name!r} have shapes {source_shapes}, the model's layer "
                f"{target_shapes}; VGG16 weights fit only width=1.0"
            )
        target_layer.set_weights(source_layer.get_weights())
        loaded.append(name)
    return loaded


def _vgg16_source(weights: str | os.PathLike) -> keras.Model:
    """A VGG16 no-top model holding ``weights`` (see :func:`load_vgg16_weights`)."""
    from keras.applications import VGG16

    if isinstance(weights, str) and weights == "imagenet":
        return VGG16(include_top=False, weights="imagenet")
    path = Path(weights)
    if not path.is_file():
        raise ValueError(f"backbone_weights: no such file {str(path)!r} (or pass 'imagenet' or None)")
    if path.suffix == ".keras":
        return keras.saving.load_model(path, compile=False)
    try:
        return VGG16(include_top=False, weights=str(path))
    except (ValueError, OSError, KeyError, TypeError) as error:
        raise ValueError(
            f"backbone_weights: keras.applications.VGG16(include_top=False) cannot load {str(path)!r} "
            f"({error}); expected VGG16 no-top weights (.weights.h5, or .h5 as downloaded by Keras)"
        ) from error


def _get_layer(model: keras.Model, name: str) -> layers.Layer:
    """``model.get_layer(name)`` with an error that says what kind of model was expected."""
    try:
        return model.get_layer(name)
    except ValueError:
        raise ValueError(
            f"model {model.name!r} has no layer {name!r}; expected an SSD from build_ssd_vgg16"
        ) from None
