"""The German Traffic Sign Detection Benchmark (GTSDB, Houben et al., IJCNN 2013) in its official layout.

Layout: ``00000.ppm`` ... ``00899.ppm`` (1360x800) and ``gt.txt`` with one line per sign::

    00000.ppm;774;411;815;446;11      file;leftCol;topRow;rightCol;bottomRow;ClassID

``leftCol..rightCol`` and ``topRow..bottomRow`` are **inclusive** pixel indices (ReadMe.txt, section 3),
so the sign covers columns 774 to 815, that is 42 pixels. In this package's continuous corners the pixel
in column ``c`` spans ``[c, c + 1)``, hence::

    xmin, ymin, xmax, ymax = leftCol, topRow, rightCol + 1, bottomRow + 1     # (774, 411, 816, 447)

Every image in the folder is a frame; one without a line in ``gt.txt`` is a background image (159 of
the 900). Official split: 00000-00599 train, 00600-00899 test. Redistributions that re-encode the
frames keep ``gt.txt`` naming ``00000.ppm``, so a frame is its file name without the suffix: it may be
stored as any one of :data:`GTSDB_IMAGE_SUFFIXES` (``00000.jpg``).

The official ``gt.txt`` lists the stop sign of ``00340.ppm`` twice (two identical lines): load it with
``on_error="skip"`` to drop the repeat.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from .records import (
    AnnotationError, DetectionDataset, DetectionRecord, IssueLog, OnError, check_box, group_lines_by_image,
    image_size_for, record_from_table,
)

# ClassID -> (name, category), verbatim from the GTSDB ReadMe.txt, section 3.
GTSDB_CLASSES: tuple[tuple[str, str], ...] = (
    ("speed limit 20", "prohibitory"),  # 0
    ("speed limit 30", "prohibitory"),
    ("speed limit 50", "prohibitory"),
    ("speed limit 60", "prohibitory"),
    ("speed limit 70", "prohibitory"),
    ("speed limit 80", "prohibitory"),  # 5
    ("restriction ends 80", "other"),
    ("speed limit 100", "prohibitory"),
    ("speed limit 120", "prohibitory"),
    ("no overtaking", "prohibitory"),
    ("no overtaking (trucks)", "prohibitory"),  # 10
    ("priority at next intersection", "danger"),
    ("priority road", "other"),
    ("give way", "other"),
    ("stop", "other"),
    ("no traffic both ways", "prohibitory"),  # 15
    ("no trucks", "prohibitory"),
    ("no entry", "other"),
    ("danger", "danger"),
    ("bend left", "danger"),
    ("bend right", "danger"),  # 20
    ("bend", "danger"),
    ("uneven road", "danger"),
    ("slippery road", "danger"),
    ("road narrows", "danger"),
    ("construction", "danger"),  # 25
    ("traffic signal", "danger"),
    ("pedestrian crossing", "danger"),
    ("school crossing", "danger"),
    ("cycles crossing", "danger"),
    ("snow", "danger"),  # 30
    ("animals", "danger"),
    ("restriction ends", "other"),
    ("go right", "mandatory"),
    ("go left", "mandatory"),
    ("go straight", "mandatory"),  # 35
    ("go right or straight", "mandatory"),
    ("go left or straight", "mandatory"),
    ("keep right", "mandatory"),
    ("keep left", "mandatory"),
    ("roundabout", "mandatory"),  # 40
    ("restriction ends (overtaking)", "other"),
    ("restriction ends (overtaking (trucks))", "other"),
)

GTSDB_CLASS_NAMES: dict[int, str] = {class_id: name for class_id, (name, _) in enumerate(GTSDB_CLASSES)}
GTSDB_SUPERCLASS_OF: dict[int, str] = {class_id: category for class_id, (_, category) in enumerate(GTSDB_CLASSES)}

GTSDB_NUM_TRAIN = 600
"""Images 00000-00599 are the official training split, 00600-00899 the test split."""

GTSDB_SPLITS = ("train", "test")

GTSDB_IMAGE_SUFFIXES = (".ppm", ".png", ".jpg", ".jpeg")
"""Image files a frame may be stored as (case-insensitive): the official PPM or a re-encoded copy."""


def gtsdb_split_of(file_name: str) -> str | None:
    """"train" or "test" from an official file name such as ``00612.ppm``; ``None`` for other names."""
    stem = Path(file_name).stem
    if not stem.isdigit():
        return None
    return "train" if int(stem) < GTSDB_NUM_TRAIN else "test"


def _parse_gt_line(text: str, gt_file: Path, line: int) -> tuple[str, list[float], int]:
    """``(file name, corners, class id)`` from one gt.txt line; AnnotationError when it is malformed."""
    fields = text.split(";")
    if len(fields) != 6:
        raise AnnotationError(
            f"expected 6 fields file;leftCol;topRow;rightCol;bottomRow;ClassID, got {len(fields)}: {text!r}",
            gt_file, line)
    file_name, *numbers = (field.strip() for field in fields)
    try:
        left, top, right, bottom, class_id = (int(number) for number in numbers)
    except ValueError:
        raise AnnotationError(f"non-integer coordinate or class id in {text!r}", gt_file, line) from None
    if not 0 <= class_id < len(GTSDB_CLASSES):
        raise AnnotationError(
            f"unknown class id {class_id} (GTSDB has 0..{len(GTSDB_CLASSES) - 1})", gt_file, line)
    return file_name, [left, top, right + 1, bottom + 1], class_id  # inclusive indices -> corners


def _frame(file_name: str) -> str:
    """The frame a file stands for: its name without an image suffix (``00000.ppm`` -> ``00000``)."""
    path = Path(file_name)
    return str(path.with_suffix("")) if path.suffix.lower() in GTSDB_IMAGE_SUFFIXES else file_name


def _image_files(root: Path) -> dict[str, list[str]]:
    """Frame -> the names of its image files in ``root`` (one, unless the folder holds copies)."""
    files: dict[str, list[str]] = {}
    for path in sorted(root.iterdir()):
        if path.suffix.lower() in GTSDB_IMAGE_SUFFIXES:
            files.setdefault(_frame(path.name), []).append(path.name)
    return files


def _frame_annotations(annotations: dict[str, list]) -> dict[str, tuple[str, list]]:
    """Frame -> (the file name gt.txt gives it, its ``(line, corners, class id)`` in line order)."""
    by_frame: dict[str, tuple[str, list]] = {}
    for file_name, lines in annotations.items():
        by_frame.setdefault(_frame(file_name), (file_name, []))[1].extend(lines)
    return {frame: (file_name, sorted(lines)) for frame, (file_name, lines) in by_frame.items()}


def _gtsdb_record(root: Path, frame: str, files: list[str], annotated: tuple[str, list] | None,
                  gt_file: Path) -> DetectionRecord:
    """One frame's record from its image files and annotations; AnnotationError when bad."""
    if len(files) > 1:
        raise AnnotationError(f"frame {frame} has {len(files)} image files {files}: keep one", root)
    file_name, annotations = annotated or (files[0], [])
    image_path = root / (files[0] if files else file_name)
    first_line = annotations[0][0] if annotations else None
    width, height = image_size_for(image_path, gt_file if annotations else image_path, first_line)
    boxes = [check_box(corners, width, height, gt_file, line) for line, corners, _ in annotations]
    labels = [class_id for _, _, class_id in annotations]
    return record_from_table(image_path, width, height, boxes, labels, GTSDB_CLASS_NAMES, GTSDB_SUPERCLASS_OF,
                             country="Germany", split=gtsdb_split_of(image_path.name))


def load_gtsdb(
    root: str | PathLike, split: str | None = None, on_error: OnError = "raise", allow_empty: bool = False,
) -> DetectionDataset:
    """Load GTSDB from its official folder (the frames and ``gt.txt``).

    Args:
        root: the folder holding ``00000.ppm`` ... (or ``00000.jpg`` ..., see
            :data:`GTSDB_IMAGE_SUFFIXES`) and ``gt.txt``.
        split: ``None`` for every image, or "train" (00000-00599) / "test" (00600-00899).
        on_error: "raise" the first bad item as an :class:`AnnotationError` naming file and line, or
            "skip" bad images (a malformed line or bad box drops its whole image, since keeping the image
            without that box would teach the sign as background; a line repeating an earlier one is
            dropped alone) and list them in ``.skipped``.
        allow_empty: accept an empty ``gt.txt`` (every frame a background image) or no images (e.g.
            ``split="test"`` of a folder of training frames); by default both raise AnnotationError.

    Returns:
        A :class:`DetectionDataset` with ``classes`` = the 43 GTSDB classes and ``superclass_of`` = the
        ReadMe's categories; records sorted by frame, width and height read from each image header.
    """
    if split not in (None, *GTSDB_SPLITS):
        raise ValueError(f"split must be None, 'train' or 'test', got {split!r}")
    root = Path(root)
    gt_file = root / "gt.txt"
    if not gt_file.is_file():
        raise FileNotFoundError(f"{gt_file} not found: load_gtsdb expects the official layout, "
                                f"00000.ppm ... and gt.txt in one folder")
    issues = IssueLog(on_error)
    annotations, bad_images = group_lines_by_image(gt_file, _parse_gt_line, issues)
    if not annotations and not bad_images and not allow_empty:
        raise AnnotationError("no annotation lines: every frame would be a background image. Check the file, "
                              "or pass allow_empty=True if that is what you want", gt_file)
    files, annotated = _image_files(root), _frame_annotations(annotations)
    bad_frames = {_frame(file_name) for file_name in bad_images}
    wanted = [frame for frame in sorted(files.keys() | annotated.keys())
              if frame not in bad_frames and (split is None or gtsdb_split_of(frame) == split)]
    records = issues.collect(
        lambda frame: _gtsdb_record(root, frame, files.get(frame, []), annotated.get(frame), gt_file), wanted)
    name = "GTSDB" if split is None else f"GTSDB {split}"
    return issues.dataset(records, GTSDB_CLASS_NAMES, GTSDB_SUPERCLASS_OF, name, root, allow_empty)
