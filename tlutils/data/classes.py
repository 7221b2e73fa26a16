"""One vocabulary of sign classes across datasets: a synonym table, and matching by name or by superclass.

The same sign is spelled differently by every source: the sign world's ``turn_right`` is GTSDB's
"go right" and GTSRB's "Turn right ahead"; GTSDB's "give way" is GTSRB's "Yield" and BelgiumTS's class
31 (the only class of its "inverted triangle" superclass). :data:`CLASS_SYNONYMS` maps every such
spelling to one **canonical name** (snake case; the sign world's name where the sign world has the
sign, else GTSDB's name in snake case), so that a detector trained on one dataset can hand its class
rows to another (:func:`tlutils.transfer.class_map_for`, used by :func:`match_classes`).

Sources of the table (all in this package or its shared notes):

- the sign world, :data:`tlutils.data.signs.SIGN_CLASSES` (14 classes);
- GTSDB, :data:`tlutils.data.gtsdb.GTSDB_CLASSES` (43 classes, the ReadMe's names);
- GTSRB, the classification benchmark with the **same 43 class ids** as GTSDB; its usual names
  ("Speed limit (30km/h)", "No passing", ...) are listed beside GTSDB's, id for id;
- BelgiumTS detection (:mod:`tlutils.data.btsd`): the annotation files give class ids, not names. The
  readme pins down three of them, each the single member of a superclass: 31 (inverted triangle =
  give way), 39 (stop) and 42 (no entry). The two diamonds (32, 41: priority road and its end) are
  not told apart by the readme, so they stay unmatched, like every other BTSD class;
- US spellings of the sign world's American signs ("do not enter", "do not pass").

Names compare after :func:`normalize_class_name` (lower case, every run of other characters one
``_``). A name the table does not know keeps its normalized spelling: it matches only itself.

Superclass names (:data:`~tlutils.data.records.SUPERCLASSES`) are special: GTSDB calls its class 18
"danger", which is the sign world's ``general_danger``, but a dataset labelled by superclass calls a
whole superclass "danger". :func:`canonical_classes` therefore leaves a class table alone whose every
name is a superclass: that dataset is labelled by superclass.

Matching (:func:`match_classes`) returns the **model** classes ``1..C`` (0 is background): dataset ids
numbered in ascending order, as :func:`tlutils.data.pipeline.make_label_map` numbers them; in superclass
mode the four superclasses, ids ``1..4`` of :data:`SUPERCLASS_CLASSES`
(:func:`relabel_by_superclass` relabels a dataset to them).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import replace
from typing import Literal, Union

from tlutils.data.btsd import btsd_class_name
from tlutils.data.gtsdb import GTSDB_CLASSES
from tlutils.data.records import SUPERCLASSES, DetectionDataset, DetectionRecord, SkippedItem
from tlutils.data.signs import SIGN_CLASSES
from tlutils.transfer import class_map_for

__all__ = [
    "CLASS_SYNONYMS",
    "SUPERCLASS_CLASSES",
    "canonical_classes",
    "canonical_name",
    "canonical_superclass",
    "match_classes",
    "normalize_class_name",
    "relabel_by_superclass",
]

ClassTable = Mapping[int, str]
ClassSource = Union[DetectionDataset, ClassTable]

# canonical name -> other spellings. Rows in GTSDB class-id order (the GTSDB ReadMe name, then the GTSRB
# name of the same id), then the sign world's class GTSDB lacks. A canonical name counts as its own spelling.
CLASS_SYNONYMS: dict[str, tuple[str, ...]] = {
    "speed_limit_20": ("speed limit 20", "Speed limit (20km/h)"),  # GTSDB / GTSRB 0
    "speed_limit_30": ("speed limit 30", "Speed limit (30km/h)"),
    "speed_limit_50": ("speed limit 50", "Speed limit (50km/h)"),
    "speed_limit_60": ("speed limit 60", "Speed limit (60km/h)"),
    "speed_limit_70": ("speed limit 70", "Speed limit (70km/h)"),
    "speed_limit_80": ("speed limit 80", "Speed limit (80km/h)"),  # 5
    "restriction_ends_80": ("restriction ends 80", "End of speed limit (80km/h)"),
    "speed_limit_100": ("speed limit 100", "Speed limit (100km/h)"),
    "speed_limit_120": ("speed limit 120", "Speed limit (120km/h)"),
    "no_overtaking": ("no overtaking", "No passing", "do not pass"),
    "no_overtaking_trucks": ("no overtaking (trucks)", "No passing for vehicles over 3.5 metric tons"),  # 10
    "priority_at_next_intersection": ("priority at next intersection", "Right-of-way at the next intersection"),
    "priority_road": ("priority road", "Priority road"),
    "give_way": ("give way", "Yield", btsd_class_name(31)),
    "stop": ("stop", "Stop", btsd_class_name(39)),
    "no_traffic_both_ways": ("no traffic both ways", "No vehicles"),  # 15
    "no_trucks": ("no trucks", "Vehicles over 3.5 metric tons prohibited"),
    "no_entry": ("no entry", "No entry", "do not enter", btsd_class_name(42)),
    "general_danger": ("danger", "General caution"),
    "bend_left": ("bend left", "Dangerous curve to the left"),
    "bend_right": ("bend right", "Dangerous curve to the right"),  # 20
    "bend": ("bend", "Double curve"),
    "uneven_road": ("uneven road", "Bumpy road"),
    "slippery_road": ("slippery road", "Slippery road"),
    "road_narrows": ("road narrows", "Road narrows on the right"),
    "construction": ("construction", "Road work"),  # 25
    "traffic_signal": ("traffic signal", "Traffic signals"),
    "pedestrian_crossing": ("pedestrian crossing", "Pedestrians"),
    "school_crossing": ("school crossing", "Children crossing"),
    "cycles_crossing": ("cycles crossing", "Bicycles crossing"),
    "snow": ("snow", "Beware of ice/snow"),  # 30
    "animals": ("animals", "Wild animals crossing"),
    "restriction_ends": ("restriction ends", "End of all speed and passing limits"),
    "turn_right": ("go right", "Turn right ahead"),
    "turn_left": ("go left", "Turn left ahead"),
    "ahead_only": ("go straight", "Ahead only"),  # 35
    "go_right_or_straight": ("go right or straight", "Go straight or right"),
    "go_left_or_straight": ("go left or straight", "Go straight or left"),
    "keep_right": ("keep right", "Keep right"),
    "keep_left": ("keep left", "Keep left"),
    "roundabout": ("roundabout", "Roundabout mandatory"),  # 40
    "restriction_ends_overtaking": ("restriction ends (overtaking)", "End of no passing"),
    "restriction_ends_overtaking_trucks": ("restriction ends (overtaking (trucks))",
                                           "End of no passing by vehicles over 3.5 metric tons"),
    "priority_road_ends": ("end of priority road",),  # the sign world's German-only class
}

SUPERCLASS_CLASSES: dict[int, str] = dict(enumerate(SUPERCLASSES, start=1))
"""The class table of a dataset relabelled by superclass: ``{1: "prohibitory", 2: "danger", 3:
"mandatory", 4: "other"}``, ids fixed whether or not a superclass occurs, so the model classes of any two
relabelled datasets agree."""


def normalize_class_name(name: str) -> str:
    """Lower case, every run of characters other than letters and digits one ``_``, none at the ends.

    ``"Speed limit (30km/h)"`` -> ``"speed_limit_30km_h"``; ``"go right"`` -> ``"go_right"``.
    """
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")


def _build_index() -> dict[str, str]:
    """Normalized spelling -> canonical name; ValueError if one spelling would name two signs."""
    index: dict[str, str] = {}
    for canonical, spellings in CLASS_SYNONYMS.items():
        for spelling in (canonical, *spellings):
            key = normalize_class_name(spelling)
            if index.setdefault(key, canonical) != canonical:
                raise ValueError(f"synonym table: {spelling!r} names both {index[key]!r} and {canonical!r}")
    return index


_CANONICAL_OF = _build_index()

# canonical name -> superclass, from the two class tables that state superclasses
_SUPERCLASS_OF: dict[str, str] = {
    **{_CANONICAL_OF[normalize_class_name(name)]: category for name, category in GTSDB_CLASSES},
    **{sign.name: sign.superclass for sign in SIGN_CLASSES},
}


def canonical_name(name: str) -> str:
    """The canonical name of a class name: ``"Yield"`` -> ``"give_way"``, unknown names normalized."""
    key = normalize_class_name(name)
    return _CANONICAL_OF.get(key, key)


def canonical_superclass(name: str) -> str | None:
    """The superclass (:data:`~tlutils.data.records.SUPERCLASSES`) of a class name, ``None`` if unknown.

    A superclass name is its own superclass.
    """
    key = normalize_class_name(name)
    return key if key in SUPERCLASSES else _SUPERCLASS_OF.get(_CANONICAL_OF.get(key, key))


def _is_superclass_labelled(classes: ClassTable) -> bool:
    return bool(classes) and all(normalize_class_name(name) in SUPERCLASSES for name in classes.values())


def canonical_classes(classes: ClassTable) -> dict[int, str]:
    """A class table with canonical names (ids unchanged).

    A table whose every name is a superclass ("danger", "other", ...) is labelled by superclass and
    keeps its (normalized) names; see the module docstring.

    Raises:
        ValueError: two classes of the table are the same sign (``"yield"`` and ``"give way"``).
    """
    rename = normalize_class_name if _is_superclass_labelled(classes) else canonical_name
    table: dict[int, str] = {}
    first_of: dict[str, int] = {}
    for class_id, name in sorted(classes.items()):
        canonical = rename(name)
        if canonical in first_of:
            raise ValueError(f"classes {first_of[canonical]} ({classes[first_of[canonical]]!r}) and {class_id} "
                             f"({name!r}) are the same sign, {canonical!r}: merge them before matching")
        first_of[canonical], table[int(class_id)] = int(class_id), canonical
    return table


def _class_table(source: ClassSource) -> dict[int, str]:
    classes = source.classes if isinstance(source, DetectionDataset) else source
    return {int(class_id): str(name) for class_id, name in classes.items()}


def _superclasses_present(source: ClassSource) -> set[str]:
    """Superclasses of a dataset's classes (its own table), or of a class table's names (the synonyms)."""
    if isinstance(source, DetectionDataset):
        return {name for name in source.superclass_of.values() if name is not None}
    return {name for name in map(canonical_superclass, source.values()) if name is not None}


def _model_classes(classes: ClassTable) -> dict[int, str]:
    """Model class ``1..C`` -> name, dataset ids numbered in ascending order (as ``make_label_map``)."""
    return {model_class: classes[class_id] for model_class, class_id in enumerate(sorted(classes), start=1)}


def match_classes(
    source: ClassSource, target: ClassSource, mode: Literal["name", "superclass"] = "name",
) -> tuple[dict[int, str], dict[int, int | None]]:
    """Which source class row starts each target class row: ``(target classes, class map)``.

    Args:
        source, target: a :class:`DetectionDataset` or its class table (dataset id -> name).
        mode: ``"name"``: classes match by canonical name (:func:`canonical_name`), and a target class
            the source does not have falls back to the source class named like its superclass when
            the source is labelled by superclass. ``"superclass"``: both datasets are relabelled to
            the four superclasses (:func:`relabel_by_superclass`); a superclass none of whose classes
            the source has maps to ``None``.

    Returns:
        ``classes``: target model class (``1..C``) -> canonical name, or :data:`SUPERCLASS_CLASSES` in
        superclass mode; ``class_map``: target model class -> source model class, ``None`` for a class
        the source never saw (a fresh classifier row), the form :func:`tlutils.transfer.class_map_for`
        returns and ``transfer_weights`` takes.

    Example: source = the sign world (``turn_right`` is id 9), target = GTSDB (class 33 "go right" is
    model class 34): ``class_map[34] == 9``; GTSDB's "speed limit 20" (model class 1) maps to ``None``.
    """
    if mode == "superclass":
        present = _superclasses_present(source)
        source_classes = {class_id: name for class_id, name in SUPERCLASS_CLASSES.items() if name in present}
        return dict(SUPERCLASS_CLASSES), class_map_for(source_classes, SUPERCLASS_CLASSES)
    if mode != "name":
        raise ValueError(f'mode must be "name" or "superclass", got {mode!r}')
    source_classes = _model_classes(canonical_classes(_class_table(source)))
    target_classes = _model_classes(canonical_classes(_class_table(target)))
    superclasses = {name: superclass for name in target_classes.values()
                    if (superclass := canonical_superclass(name)) is not None}
    return target_classes, class_map_for(source_classes, target_classes, superclasses)


def relabel_by_superclass(
    dataset: DetectionDataset, unknown: Literal["skip", "raise"] = "skip",
) -> DetectionDataset:
    """The dataset with every box labelled by its superclass: classes :data:`SUPERCLASS_CLASSES` (ids 1..4).

    A box's superclass is the one its loader recorded, else the one its class name has in the synonym
    table (:func:`canonical_superclass`): YOLO and VOC files name classes only.

    Args:
        unknown: what to do with an image holding a box whose superclass is ``None`` (BelgiumTS's
            "undefined" class -1): ``"skip"`` drops the whole image (dropping only the box would teach
            the sign as background), lists it in ``.skipped`` and warns once; ``"raise"`` raises
            ValueError naming the image.
    """
    if unknown not in ("skip", "raise"):
        raise ValueError(f'unknown must be "skip" or "raise", got {unknown!r}')
    id_of = {name: class_id for class_id, name in SUPERCLASS_CLASSES.items()}
    records: list[DetectionRecord] = []
    skipped = list(dataset.skipped)
    for index, record in enumerate(dataset):
        superclasses = _record_superclasses(record)
        missing = [box for box, name in enumerate(superclasses) if name is None]
        if missing:
            reason = (f"record {index}: boxes {missing} (classes {record.labels[missing].tolist()}) have no "
                      f"superclass; the image is left out")
            if unknown == "raise":
                raise ValueError(f"{dataset.name}: {record.image_path}: {reason}")
            skipped.append(SkippedItem(record.image_path, None, reason))
            continue
        records.append(replace(record, labels=[id_of[name] for name in superclasses], class_names=superclasses,
                               superclasses=superclasses))
    if len(skipped) > len(dataset.skipped):
        warnings.warn(f"{dataset.name}: {len(skipped) - len(dataset.skipped)} images hold boxes without a "
                      f"superclass and were left out (see .skipped)", stacklevel=2)
    return DetectionDataset(records, SUPERCLASS_CLASSES, SUPERCLASS_CLASSES,
                            name=f"{dataset.name} by superclass", skipped=skipped)


def _record_superclasses(record: DetectionRecord) -> list[str | None]:
    """Each box's superclass: recorded by the loader, else from its class name (:func:`canonical_superclass`)."""
    return [given if given is not None else canonical_superclass(str(name))
            for given, name in zip(record.superclasses, record.class_names)]
