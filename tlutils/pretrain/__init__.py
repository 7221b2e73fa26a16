"""The two pretrained starts of the source stage, made by the project itself, offline, at any width.

The thesis started its Belgian SSD four ways: from scratch, from ImageNet's VGG16, from a VGG16 trained
to *classify* traffic signs, and from a COCO detector. ``tlutils.transfer`` has all four as strategies
(``scratch``, ``imagenet``, ``classifier``, ``detector``); this package makes the files the last two
start from:

- ``classifier``: :func:`sign_crops` cuts every box of a dataset out as a small square,
  :func:`train_classifier` trains :func:`tlutils.model.build_sign_classifier` (the detector's VGG16
  blocks + a classification head) on them; :func:`load_classifier_into` copies its 13 convs into a
  detector bit for bit. **fc6 and fc7 start fresh**: the classifier's head is a global average pool
  and one dense layer, not VGG16's fully connected layers that SSD converts (``tlutils.model.classifier``).
- ``detector``: :func:`pretrain_detector` trains a whole SSD on other detection data (by default the
  sign world's other countries together, the COCO stand-in; never the source country);
  :func:`load_detector_start` copies it and maps its classes onto the detector's by name
  (``tlutils.transfer.class_map_for``): a class both know gets the pretrained row, another starts fresh.

:func:`pretrained` makes either once per :class:`PretrainConfig` (sizes from the run profile) and
keeps it as ``runs/<profile>/pretrained/<kind>_<key>.keras`` with a JSON summary beside it
(``tlutils pretrain classifier|detector`` on the command line).

Modules: ``crops`` (sign crops), ``data`` (data specs, merging), ``config`` (the configuration and its
key; no backend), ``training`` (the two trainings), ``cache`` (the files), ``starts`` (loading them).
The names below are re-exported lazily: ``import tlutils.pretrain`` imports no backend.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "crops": ("SignCrops", "default_crop_size", "sign_crops"),
    "data": ("load_pretrain_data", "merge_datasets"),
    "config": ("PRETRAIN_KINDS", "PretrainConfig", "ResolvedPretrain"),
    "training": ("pretrain_detector", "train_classifier"),
    "cache": ("pretrained", "pretrained_classes", "pretrained_summary"),
    "starts": ("load_classifier_into", "load_detector_start", "pretrained_class_map"),
    "tlutils.model.classifier": ("build_sign_classifier",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)

if TYPE_CHECKING:
    from .cache import pretrained, pretrained_classes, pretrained_summary
    from .config import PRETRAIN_KINDS, PretrainConfig, ResolvedPretrain
    from .crops import SignCrops, default_crop_size, sign_crops
    from .data import load_pretrain_data, merge_datasets
    from .starts import load_classifier_into, load_detector_start, pretrained_class_map
    from .training import pretrain_detector, train_classifier
    from tlutils.model.classifier import build_sign_classifier


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module if "." in module else f".{module}", __name__), name)
    globals()[name] = value  # cache: later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
