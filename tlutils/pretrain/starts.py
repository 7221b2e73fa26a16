"""Starting a detector from a pretrained file: the classifier's conv blocks, or a whole detector with
its classes mapped onto the detector's (as the thesis did with COCO's 80 slots)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Mapping

from tlutils.data.classes import match_classes
from tlutils.model.classifier import load_classifier_into
from tlutils.pretrain.cache import pretrained_classes
from tlutils.transfer import start_from_detector

if TYPE_CHECKING:
    import keras

    from tlutils.model import TransferReport

__all__ = ["load_classifier_into", "load_detector_start", "pretrained_class_map"]


def pretrained_class_map(pretrained_path: str | os.PathLike, source_classes: Mapping[int, str]) -> dict[int, int | None]:
    """``{class of the detector to start: class of the pretrained detector or None}``.

    ``source_classes`` are the classes of the detector being started, model class -> name (``1..C``).
    Classes match by canonical name (``tlutils.data.classes.match_classes``: synonyms such as "yield"
    and "give way" are one class); an unmatched class maps to ``None`` and starts fresh.

    Raises:
        ValueError: ``source_classes`` are not numbered ``1..C``, or the file has no summary.
    """
    if sorted(source_classes) != list(range(1, len(source_classes) + 1)):
        raise ValueError(f"source_classes must be the model classes 1..C, got ids {sorted(source_classes)}")
    _, class_map = match_classes(pretrained_classes(pretrained_path), source_classes)
    return class_map


def load_detector_start(detector: "keras.Model", pretrained_path: str | os.PathLike,
                        source_classes: Mapping[int, str]) -> "TransferReport":
    """Copy a pretrained detector into ``detector`` (in place): every layer, and in the class heads the
    rows of the classes both know (:func:`pretrained_class_map`) and background's.

    Raises:
        ValueError: no such file or summary, another preprocessing, or another width.
    """
    return start_from_detector(detector, pretrained_path, pretrained_class_map(pretrained_path, source_classes))
