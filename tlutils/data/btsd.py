"""BelgiumTS for detection (BTSD, Timofte et al., MVA 2011): the ``*_GTclear.txt`` annotation files.

One line per sign (readme.txt of the annotations)::

    01/image.000935.jp2;1346.82;246.76;1582.12;484.41;65;2;     camera/image;x1;y1;x2;y2;class id;superclass id;

``x1..y2`` are sub-pixel coordinates, used as corners as they are. The long format ``*_GT.txt`` (five more
fields: pole id, number on pole, camera, frame, class label) is read too; the extra fields are ignored.

Superclasses, mapped onto the shared GTSDB space (:data:`~tlutils.data.records.SUPERCLASSES`) as the
BTSD readme states and as GTSDB itself files the same signs:

====  ==========================  ============  ==============================================
id    BTSD superclass             shared        why
====  ==========================  ============  ==============================================
-1    undefined class             ``None``      the sign's class is unknown
0     other defined signs         other
1     triangles                   danger        readme: "corresponds to Danger superclass"
2     red circles                 prohibitory   readme: "corresponds to Prohibitory"
3     blue circles                mandatory     readme: "corresponds to Mandatory"
4     red-blue circles            other         no parking/stopping; not among GTSDB's classes
5     diamonds (priority road)    other         GTSDB class 12 priority road is "other"
6     inverted triangle (yield)   other         GTSDB class 13 give way is "other"
7     stop                        other         GTSDB class 14 stop is "other"
8     no entry ("forbidden")      other         GTSDB class 17 no entry is "other"
9-11  squares, rectangles         other
====  ==========================  ============  ==============================================

Images are JPEG 2000, all 1628x1236. Without ``image_root`` the images are not opened: width and
height are this nominal size and ``image_path`` is the relative path of the annotation file. The files
list annotated images only; BTSD's background images come as a separate folder.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from .records import (
    AnnotationError, DetectionDataset, DetectionRecord, IssueLog, OnError, check_box, group_lines_by_image,
    image_size_for,
)

BTSD_IMAGE_SIZE = (1628, 1236)
"""(width, height) of every BelgiumTS detection image; used when the images are not at hand."""

# BTSD superclass id -> (shape as the readme names it, shared superclass).
BTSD_SUPERCLASSES: dict[int, tuple[str, str | None]] = {
    -1: ("undefined", None),
    0: ("other", "other"),
    1: ("triangle", "danger"),
    2: ("red circle", "prohibitory"),
    3: ("blue circle", "mandatory"),
    4: ("red-blue circle", "other"),
    5: ("diamond", "other"),
    6: ("inverted triangle", "other"),
    7: ("stop", "other"),
    8: ("no entry", "other"),
    9: ("square", "other"),
    10: ("rectangle up", "other"),
    11: ("rectangle down", "other"),
}

# Class ids the readme lists for superclasses 1..11 (every other defined class is superclass 0).
_README_MEMBERS: dict[int, tuple[int, ...]] = {
    1: (2, 3, 4, 7, 8, 9, 10, 12, 13, 15, 17, 18, 22, 26, 27, 28, 29, 34, 35),
    2: (36, 43, 48, 50, 55, 56, 57, 58, 59, 61, 65),
    3: (72, 75, 76, 78, 79, 80, 81),
    4: (82, 84, 85, 86),
    5: (32, 41),
    6: (31,),
    7: (39,),
    8: (42,),
    9: (118, 151, 155, 181),
    10: (37, 87, 90, 94, 95, 96, 97, 149, 150, 163),
    11: (111, 112),
}
BTSD_SUPERCLASS_OF_CLASS: dict[int, int] = {
    class_id: superclass for superclass, members in _README_MEMBERS.items() for class_id in members
}
"""BTSD class id -> BTSD superclass id, for the classes the readme lists."""

_FIELD_COUNTS = (7, 12)  # GTclear short format, GT long format (without the trailing ';')


def btsd_superclass_id(class_id: int) -> int:
    """The BTSD superclass of a class id as the readme defines it: -1 for -1, 0 for unlisted classes."""
    return -1 if class_id == -1 else BTSD_SUPERCLASS_OF_CLASS.get(class_id, 0)


def btsd_class_name(class_id: int) -> str:
    """A readable name: BTSD gives class ids, not names (e.g. ``"class 65 (red circle)"``)."""
    if class_id == -1:
        return "undefined"
    return f"class {class_id} ({BTSD_SUPERCLASSES[btsd_superclass_id(class_id)][0]})"


def btsd_superclass(class_id: int) -> str | None:
    """The shared superclass (:data:`~tlutils.data.records.SUPERCLASSES` or ``None``) of a class id."""
    return BTSD_SUPERCLASSES[btsd_superclass_id(class_id)][1]


def _parse_btsd_line(text: str, file: Path, line: int) -> tuple[str, list[float], int]:
    """``(relative image path, corners, class id)``; AnnotationError when malformed or inconsistent."""
    fields = [field.strip() for field in text.split(";")]
    if fields[-1] == "":
        fields = fields[:-1]  # lines end with ';'
    if len(fields) not in _FIELD_COUNTS or not fields[0]:
        raise AnnotationError(
            f"expected 7 fields camera/image;x1;y1;x2;y2;class id;superclass id; (or the 12 of the long "
            f"format), got {len(fields)}: {text!r}", file, line)
    try:
        corners = [float(value) for value in fields[1:5]]
        class_id, superclass_id = int(fields[5]), int(fields[6])
    except ValueError:
        raise AnnotationError(f"non-numeric coordinate or class id in {text!r}", file, line) from None
    if class_id < -1 or superclass_id not in BTSD_SUPERCLASSES:
        raise AnnotationError(f"unknown class id {class_id} / superclass id {superclass_id} "
                              f"(class ids are >= -1, superclass ids -1..11)", file, line)
    if superclass_id != btsd_superclass_id(class_id):
        raise AnnotationError(f"class {class_id} has superclass {superclass_id}, the BTSD readme says "
                              f"{btsd_superclass_id(class_id)}", file, line)
    return fields[0], corners, class_id


def _btsd_split_of(annotation_file: Path) -> str | None:
    name = annotation_file.name.lower()
    return "train" if "train" in name else "test" if "test" in name else None


def load_btsd(
    annotation_file: str | PathLike,
    image_root: str | PathLike | None = None,
    on_error: OnError = "raise",
    split: str | None = None,
    country: str = "Belgium",
    allow_empty: bool = False,
) -> DetectionDataset:
    """Load a BelgiumTS detection annotation file (``BTSD_training_GTclear.txt``, ...).

    Args:
        annotation_file: the ``*_GTclear.txt`` (or ``*_GT.txt``) file.
        image_root: folder holding the camera folders ``00/`` ... ``07/``. When given, every image must
            exist and its size comes from its header; when ``None``, images are not touched, sizes are
            :data:`BTSD_IMAGE_SIZE` and ``image_path`` is relative.
        on_error: "raise" or "skip"; a bad line drops its whole image, a line repeating an earlier one
            is dropped alone (see :func:`load_gtsdb`).
        split: defaults to "train" / "test" from the file name ("training" / "testing").
        country: recorded on every record.
        allow_empty: accept a file without images; by default that raises AnnotationError.

    Returns:
        A :class:`DetectionDataset` whose ``classes`` are the class ids found in the file (-1 = undefined),
        records in order of first appearance.
    """
    annotation_file = Path(annotation_file)
    if not annotation_file.is_file():
        raise FileNotFoundError(f"BelgiumTS annotation file {annotation_file} not found")
    split = _btsd_split_of(annotation_file) if split is None else split
    issues = IssueLog(on_error)
    annotations, bad_images = group_lines_by_image(annotation_file, _parse_btsd_line, issues)
    records = issues.collect(
        lambda image: _btsd_record(image, annotations[image], annotation_file, image_root, split, country),
        [image for image in annotations if image not in bad_images],
    )
    class_ids = sorted({label for record in records for label in record.labels.tolist()})
    classes = {class_id: btsd_class_name(class_id) for class_id in class_ids}
    superclass_of = {class_id: btsd_superclass(class_id) for class_id in class_ids}
    name = f"BTSD {split}" if split else f"BTSD {annotation_file.name}"
    return issues.dataset(records, classes, superclass_of, name, annotation_file, allow_empty)


def _btsd_record(
    image: str, annotations: list, annotation_file: Path, image_root: str | PathLike | None,
    split: str | None, country: str,
) -> DetectionRecord:
    if image_root is None:
        image_path, (width, height) = image, BTSD_IMAGE_SIZE
    else:
        image_path = str(Path(image_root) / image)
        width, height = image_size_for(image_path, annotation_file, annotations[0][0])
    boxes = [check_box(corners, width, height, annotation_file, line) for line, corners, _ in annotations]
    labels = [class_id for _, _, class_id in annotations]
    return DetectionRecord(
        image_path=image_path, width=width, height=height, boxes=boxes, labels=labels,
        class_names=[btsd_class_name(label) for label in labels],
        superclasses=[btsd_superclass(label) for label in labels], country=country, split=split,
    )
