"""SSD-VGG16 for transfer learning: the detector, its freeze points and class-mapped weight transfer.

- :func:`build_ssd_vgg16` builds the detector (``tlutils.model.ssd``; custom layers in
  ``tlutils.model.layers``), :func:`anchor_config_for` gives its matching default boxes (square or ``(height, width)`` inputs);
- :data:`FREEZE_POINTS`, :func:`block_of`, :func:`freeze`, :func:`trainable_summary`
  (``tlutils.model.freezing``);
- :func:`transfer_weights` and its :class:`TransferReport` (``tlutils.model.weight_transfer``).
- :func:`build_sign_classifier` (VGG16's blocks + a classification head) and
  :func:`load_classifier_into` (its convs into a detector) (``tlutils.model.classifier``).

Outputs follow the package conventions: class 0 is background, ``class_logits`` has ``C + 1`` values
per anchor, ``box_offsets`` are encoded ``(cx, cy, w, h)`` offsets, anchors ordered prediction layer
-> row -> column -> box. Importing this module builds nothing.
"""

from tlutils.model.classifier import build_sign_classifier, load_classifier_into
from tlutils.model.freezing import (FREEZE_POINTS, LAYERS_BY_BLOCK, block_of, freeze, frozen_regularization,
                                    trainable_summary)
from tlutils.model.layers import (
    CONV4_3_NORM_SCALE,
    IMAGENET_MEAN_RGB,
    PREPROCESSING_MODES,
    AtrousConv2D,
    ImagePreprocessing,
    L2Normalization,
)
from tlutils.model.ssd import (
    PREDICTION_LAYERS,
    anchor_config_for,
    boxes_per_cell,
    build_ssd_vgg16,
    feature_map_sizes,
    input_size_of,
    load_vgg16_weights,
    num_classes_of,
    regularization_loss,
)
from tlutils.model.weight_transfer import TransferReport, transfer_weights

__all__ = [
    "CONV4_3_NORM_SCALE",
    "FREEZE_POINTS",
    "IMAGENET_MEAN_RGB",
    "LAYERS_BY_BLOCK",
    "PREDICTION_LAYERS",
    "PREPROCESSING_MODES",
    "AtrousConv2D",
    "ImagePreprocessing",
    "L2Normalization",
    "TransferReport",
    "anchor_config_for",
    "block_of",
    "boxes_per_cell",
    "build_sign_classifier",
    "build_ssd_vgg16",
    "feature_map_sizes",
    "freeze",
    "frozen_regularization",
    "input_size_of",
    "load_classifier_into",
    "load_vgg16_weights",
    "num_classes_of",
    "regularization_loss",
    "trainable_summary",
    "transfer_weights",
]
