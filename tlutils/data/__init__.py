"""Data: one record type for every source, loaders, the embedded sign world, augmentation, batching.

- ``tlutils.data.records``  :class:`DetectionRecord`, :class:`DetectionDataset`, :func:`load_image`
- ``tlutils.data.loaders``  ``load_gtsdb``, ``load_btsd``, ``load_coco``, ``load_voc``, ``load_yolo``, ``subset``
- ``tlutils.data.synth``    the procedural sign world; :func:`synth_dataset` (the course's rendered sets)
- ``tlutils.data.specs``    data specs (``"gtsdb:<folder>"``, ``"synth:germany"``): ``parse_spec``, ``load_spec``,
  ``fingerprint``, ``split_dataset``
- ``tlutils.data.classes``  the class synonym table, ``match_classes``, ``relabel_by_superclass``
- ``tlutils.data.export``   ``export_yolo`` (a dataset as YOLO files), ``real_format_example`` (sign-world
  frames as COCO and YOLO: a stand-in for your own data)
- ``tlutils.data.augment``, ``tlutils.data.pipeline``  SSD augmentation and batches (import them explicitly)

Records keep **pixel** corners ``(xmin, ymin, xmax, ymax)`` and the dataset's own class ids; the
pipeline normalizes boxes and maps classes to ``1..C`` (0 = background).

The names below are re-exported lazily: ``import tlutils.data`` imports nothing else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "records": (
        "SUPERCLASSES", "BORDER_TOLERANCE", "AnnotationError", "ImageReadError", "SkippedItem",
        "DetectionRecord", "DetectionDataset", "load_image", "read_image_size",
    ),
    "loaders": ("load_gtsdb", "load_btsd", "load_coco", "load_voc", "load_yolo", "subset"),
    "synth": ("synth_dataset",),
    "specs": ("DataSpec", "DataSplits", "parse_spec", "load_spec", "fingerprint", "split_dataset"),
    "classes": ("CLASS_SYNONYMS", "SUPERCLASS_CLASSES", "canonical_name", "match_classes", "relabel_by_superclass"),
    "export": ("export_yolo", "real_format_example", "yolo_spec"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on first use
    from .loaders import load_btsd, load_coco, load_gtsdb, load_voc, load_yolo, subset
    from .records import (
        BORDER_TOLERANCE, SUPERCLASSES, AnnotationError, DetectionDataset, DetectionRecord, ImageReadError,
        SkippedItem, load_image, read_image_size,
    )
    from .classes import CLASS_SYNONYMS, SUPERCLASS_CLASSES, canonical_name, match_classes, relabel_by_superclass
    from .export import export_yolo, real_format_example, yolo_spec
    from .specs import DataSpec, DataSplits, fingerprint, load_spec, parse_spec, split_dataset
    from .synth import synth_dataset


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # cache: later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
