"""A VGG16 sign classifier whose conv blocks are the detector's, and loading them into a detector.

The classifier is what the thesis' third start was: a VGG16 trained to *classify* traffic signs,
whose convolutions then initialize the SSD. It is built from the detector's own block builder
(:func:`tlutils.model.ssd.vgg16_block`), so its 13 convs have the detector's names and, at the same
``width``, its shapes; :func:`load_classifier_into` copies them by name.

Layers: ``image`` (crops, raw RGB 0-255) -> ``preprocessing`` -> ``block1_conv1`` ... ``block5_pool``
(the detector's) -> ``classifier_pool`` (global average) -> ``classifier_logits`` (one logit per sign
class; no background: every crop shows a sign).

**fc6 and fc7 start fresh.** In SSD they are VGG16's fully connected layers converted to convolutions
(fc6's 7x7x512x4096 kernel subsampled to a 3x3 kernel dilated 6, fc7's 4096x4096 to a 1x1 conv with
1024 channels). This classifier has no fully connected layers to convert: its head is a global
average pool and one dense layer over the classes (VGG16's 4096-wide fc layers on 32-64 px crops,
whose conv5 maps are 2x2 to 4x4, would be mostly a dilated kernel reading zero padding). So
``fc6``, ``fc7``, the extra layers and the heads keep the detector's He initialization, as a Keras
user gets who loads their own ``keras.applications.VGG16`` classifier into an SSD by name (its
``fc1``/``fc2`` match no SSD layer).
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
from keras import layers

from tlutils.model.layers import PREPROCESSING_MODES, ImagePreprocessing
from tlutils.model.ssd import VGG16_CONVS, vgg16_block, vgg16_conv_names
from tlutils.model.weight_transfer import TransferReport, transfer_weights

#: The classifier's own layers (none of them is in the detector).
CLASSIFIER_HEAD_LAYERS: tuple[str, ...] = ("classifier_pool", "classifier_logits")


def build_sign_classifier(
    num_classes: int,
    input_size: int = 32,
    width: float = 1.0,
    preprocessing: str = "tf",
    l2_regularization: float = 0.0,
) -> keras.Model:
    """VGG16's conv blocks (the detector's, see the module docstring) with a classification head.

    Args:
        num_classes: sign classes K (no background class).
        input_size: side of the square crops in pixels (the blocks halve it four times, so 32 px gives
            2x2 conv5 maps).
        width: channel multiplier; the detector that loads these weights must have the same.
        preprocessing: ``"caffe"``, ``"tf"`` or ``"none"``; the detector must use the same, since its
            convs will see what these saw.
        l2_regularization: factor of an L2 penalty on every kernel (0: none).

    Returns:
        A Functional model ``crops (B, S, S, 3) float 0-255 -> logits (B, K)`` (float32 also under a
        mixed precision policy).

    Raises:
        ValueError: an argument out of range.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1 (sign classes), got {num_classes!r}")
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
        raise ValueError(f"input_size must be a positive integer (pixels), got {input_size!r}")
    if preprocessing not in PREPROCESSING_MODES:
        raise ValueError(f"preprocessing must be one of {PREPROCESSING_MODES}, got {preprocessing!r}")
    if not l2_regularization >= 0:
        raise ValueError(f"l2_regularization must be a number >= 0, got {l2_regularization!r}")
    regularizer = keras.regularizers.L2(l2_regularization) if l2_regularization > 0 else None

    crops = keras.Input(shape=(input_size, input_size, 3), name="image")
    x = ImagePreprocessing(preprocessing, name="preprocessing")(crops)
    for block in range(1, len(VGG16_CONVS) + 1):
        _, x = vgg16_block(x, block, width, regularizer)  # (B, S/16, S/16, 512 * width) after block 5
    x = layers.GlobalAveragePooling2D(name="classifier_pool")(x)  # (B, 512 * width)
    logits = layers.Dense(num_classes, kernel_regularizer=regularizer, dtype="float32",
                          name="classifier_logits")(x)  # (B, K)
    return keras.Model(crops, logits, name="sign_classifier_vgg16")


def load_classifier_into(detector: keras.Model, classifier: keras.Model | str | os.PathLike) -> TransferReport:
    """Copy the classifier's 13 VGG16 convs into ``detector`` (in place), bit for bit, by name.

    Everything else of the detector keeps its weights: ``fc6`` and ``fc7`` start fresh (see the
    module docstring for why), as do the extra layers and the heads.

    Args:
        detector: an SSD from :func:`tlutils.model.build_ssd_vgg16`, any input size.
        classifier: a model from :func:`build_sign_classifier`, or its ``.keras`` file.

    Returns:
        The :class:`TransferReport`: ``copied`` lists the 13 convs, ``initialized`` the layers that
        start fresh.

    Raises:
        ValueError: no such file, not a sign classifier, a different width (shapes differ) or a
            different preprocessing.
    """
    if not isinstance(classifier, keras.Model):
        path = Path(classifier)
        if path.suffix != ".keras" or not path.is_file():
            raise ValueError(f"{path}: no such classifier file (.keras); make one with `tlutils pretrain classifier`")
        classifier = keras.saving.load_model(path, compile=False)
    names = {layer.name for layer in classifier.layers}
    missing = [name for name in (*vgg16_conv_names(), *CLASSIFIER_HEAD_LAYERS) if name not in names]
    if missing:
        raise ValueError(f"{classifier.name!r} is not a sign classifier from build_sign_classifier: no layers {missing}")
    check_same_preprocessing(classifier, detector)
    report = transfer_weights(classifier, detector)
    not_copied = [name for name in vgg16_conv_names() if name not in report.copied]
    if not_copied:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in report.skipped + report.initialized
                            if name in not_copied)
        raise ValueError(
            f"the classifier's convs do not fit the detector ({reasons}); build both with the same width"
        )
    return report


def preprocessing_of(model: keras.Model) -> str:
    """The mode of the model's ``preprocessing`` layer (``"caffe"``, ``"tf"`` or ``"none"``)."""
    try:
        return model.get_layer("preprocessing").mode
    except ValueError:
        raise ValueError(f"model {model.name!r} has no 'preprocessing' layer") from None


def check_same_preprocessing(source: keras.Model, target: keras.Model) -> None:
    """Raise ``ValueError`` unless ``target`` preprocesses its input as ``source`` did (weights copied
    from ``source`` must see the pixels they were trained on)."""
    if preprocessing_of(source) != preprocessing_of(target):
        raise ValueError(
            f"the pretrained weights saw {preprocessing_of(source)!r}-preprocessed pixels, the detector "
            f"uses {preprocessing_of(target)!r}; build the detector with preprocessing="
            f"{preprocessing_of(source)!r}"
        )
