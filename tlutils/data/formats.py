"""Users' own data from labelling tools: COCO JSON, Pascal VOC XML and YOLO txt.

Each format's coordinates become pixel corners ``(xmin, ymin, xmax, ymax)`` (continuous: the pixel in
column ``c`` spans ``[c, c + 1)``):

- COCO ``bbox = [x, y, width, height]`` (continuous) -> ``(x, y, x + width, y + height)``;
- Pascal VOC ``xmin..xmax`` are 1-based inclusive pixel indices (the VOC devkit) ->
  ``(xmin - 1, ymin - 1, xmax, ymax)``; pass ``one_based=False`` for tools that write 0-based values;
- YOLO ``class cx cy w h`` normalized to [0, 1] -> ``((cx - w/2) W, (cy - h/2) H, (cx + w/2) W, (cy + h/2) H)``.

A box's superclass is set only where the data names one of
:data:`~tlutils.data.records.SUPERCLASSES`: COCO's ``supercategory``, or a VOC / YOLO class named
"danger", "mandatory", ... itself; otherwise ``None``. Every image is opened (header only) for its size.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any, NamedTuple

from .records import (
    SUPERCLASSES, AnnotationError, DetectionDataset, DetectionRecord, IssueLog, OnError, check_box,
    image_size_for, record_from_table,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".jp2")
"""Files :func:`load_yolo` takes for images (case-insensitive)."""


def superclass_named(name: Any) -> str | None:
    """``name`` when it is one of SUPERCLASSES, else ``None``."""
    return name if name in SUPERCLASSES else None


def _checked_size(image_path: Path, stated: tuple[Any, Any], file: Path, line: int | None, what: str):
    """The image's size from its header; AnnotationError when the annotation states another size."""
    width, height = image_size_for(image_path, file, line, what)
    if all(stated) and (int(stated[0]), int(stated[1])) != (width, height):
        raise AnnotationError(f"{what} {image_path}: the annotation says {stated[0]}x{stated[1]}, the image "
                              f"file is {width}x{height}", file, line)
    return width, height


# --- COCO ------------------------------------------------------------------------------------------

def _read_json(json_path: Path) -> dict:
    try:
        data = json.loads(json_path.read_text(encoding="utf-8-sig"))  # -sig: drop a BOM
    except json.JSONDecodeError as error:
        reason = f"not valid JSON: {error.msg} (column {error.colno})"
        raise AnnotationError(reason, json_path, error.lineno) from None
    missing = [key for key in ("images", "categories") if not isinstance(data, dict) or key not in data]
    if missing:
        raise AnnotationError(f"not a COCO detection file: no {missing} list", json_path)
    for key in ("images", "categories", "annotations"):
        if key in data and not isinstance(data[key], list):
            raise AnnotationError(f"'{key}' must be a list, got {json.dumps(data[key])[:40]}", json_path)
    return data


def _coco_categories(data: dict, json_path: Path) -> tuple[dict[int, str], dict[int, str | None]]:
    """The class table; AnnotationError for a malformed or repeated category (there is nothing to skip)."""
    classes, superclass_of, index_of = {}, {}, {}
    for index, category in enumerate(data["categories"]):
        try:
            class_id, name = int(category["id"]), str(category["name"])
        except (KeyError, TypeError, ValueError):
            raise AnnotationError(f"categories[{index}] needs an integer 'id' and a 'name': {category!r}",
                                  json_path) from None
        if class_id in classes:
            raise AnnotationError(f"categories[{index}] repeats id {class_id} of categories[{index_of[class_id]}] "
                                  f"({classes[class_id]!r}); ids must be unique", json_path)
        classes[class_id], index_of[class_id] = name, index
        superclass_of[class_id] = superclass_named(category.get("supercategory"))
    return classes, superclass_of


class _CocoBox(NamedTuple):
    corners: list[float]
    category_id: int
    crowd: bool
    what: str  # "annotations[3] (id 17)", for messages


def _coco_box(annotation: Any, index: int, classes: Mapping[int, str], json_path: Path) -> tuple[Any, _CocoBox]:
    """``(image id, box)`` from ``annotations[index]``; COCO's ``[x, y, w, h]`` becomes corners."""
    what = f"annotations[{index}] (id {annotation.get('id') if isinstance(annotation, dict) else None})"
    try:
        image_id, category_id = annotation["image_id"], int(annotation["category_id"])
        x, y, width, height = (float(value) for value in annotation["bbox"])
        if not isinstance(image_id, (int, str)):
            raise TypeError
    except (KeyError, TypeError, ValueError):
        raise AnnotationError(f"{what} needs image_id, category_id and bbox [x, y, w, h]: {annotation!r}",
                              json_path) from None
    if category_id not in classes:
        raise AnnotationError(f"{what}: unknown category_id {category_id}", json_path)
    return image_id, _CocoBox([x, y, x + width, y + height], category_id, bool(annotation.get("iscrowd", 0)), what)


def _coco_boxes_by_image(data: dict, classes: Mapping[int, str], json_path: Path, issues: IssueLog):
    """``image id -> [_CocoBox, ...]`` and the ids of images with a bad annotation (dropped whole).

    A bad annotation whose ``image_id`` is still a number or string (``12.0``) drops the image with
    that id; one naming no image at all can drop none. A repeated annotation is left out on its own.
    """
    boxes_of: dict[Any, list[_CocoBox]] = defaultdict(list)
    bad_images: set = set()
    first_of: dict[tuple, _CocoBox] = {}
    for index, annotation in enumerate(data.get("annotations", [])):
        try:
            image_id, box = _coco_box(annotation, index, classes, json_path)
        except AnnotationError as error:
            issues.report(error)
            image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
            if isinstance(image_id, (int, float, str)):
                bad_images.add(image_id)  # 12.0 == 12: the set finds image 12
            continue
        key = (image_id, box.category_id, *box.corners)
        if key in first_of:
            issues.report(AnnotationError(f"{box.what}: same image, box and class as {first_of[key].what}: "
                                          f"a box listed twice would count twice", json_path))
            continue
        first_of[key] = box
        boxes_of[image_id].append(box)
    known_ids = {image.get("id") for image in data["images"] if isinstance(image, dict)}
    for image_id in boxes_of.keys() - known_ids:
        issues.report(AnnotationError(f"{len(boxes_of[image_id])} annotations name image_id {image_id!r}, "
                                      f"which is not in 'images'", json_path))
    return boxes_of, bad_images


def _coco_repeated_image_ids(images: list, json_path: Path, issues: IssueLog) -> set:
    """Ids that more than one ``images`` entry has: their annotations could belong to either, so all go."""
    first_index: dict[Any, int] = {}
    repeated = set()
    for index, image in enumerate(images):
        image_id = image.get("id") if isinstance(image, dict) else None
        if not isinstance(image_id, (int, str)):
            continue  # _coco_record reports it
        if image_id in first_index:
            reason = (f"images[{index}] has id {image_id!r}, like images[{first_index[image_id]}]: the "
                      f"annotations of image {image_id!r} could belong to either")
            issues.report(AnnotationError(reason, json_path))
            repeated.add(image_id)
        first_index.setdefault(image_id, index)
    return repeated


def _coco_record(index: int, image: Any, boxes_of: Mapping[Any, list[_CocoBox]], image_root: Path,
                 json_path: Path, classes: Mapping[int, str], superclass_of: Mapping[int, str | None],
                 **fields) -> DetectionRecord:
    try:
        image_path = image_root / image["file_name"]
        boxes = boxes_of.get(image["id"], [])
    except (KeyError, TypeError):
        raise AnnotationError(f"images[{index}] needs 'id' and 'file_name': {image!r}", json_path) from None
    stated = (image.get("width"), image.get("height"))
    width, height = _checked_size(image_path, stated, json_path, None, f"images[{index}]")
    return record_from_table(
        image_path, width, height,
        [check_box(box.corners, width, height, json_path, None, what=box.what) for box in boxes],
        [box.category_id for box in boxes], classes, superclass_of,
        difficult=[box.crowd for box in boxes], **fields,
    )


def load_coco(
    json_path: str | PathLike,
    image_root: str | PathLike | None = None,
    on_error: OnError = "raise",
    country: str | None = None,
    split: str | None = None,
    allow_empty: bool = False,
) -> DetectionDataset:
    """Load a COCO detection JSON (``images``, ``annotations``, ``categories``).

    Ids must be unique: a repeated category id raises AnnotationError even with ``on_error="skip"``
    (the class table is wrong), a repeated image id is a bad item for both images (whose boxes would
    they be?), and an annotation repeating another (same image, category and bbox) is a bad item.

    Args:
        json_path: the JSON file (e.g. :func:`tlutils.data.synth.generate`'s ``annotations.json``).
        image_root: folder the images' ``file_name`` are relative to; defaults to the JSON's folder.
        on_error: "raise" or "skip"; a bad annotation drops its whole image (one naming no image
            drops none), a repeated annotation is dropped alone.
        country, split: default to the JSON's ``info`` block ("country", "split") when present.
        allow_empty: accept a file without images; by default that raises AnnotationError.

    Returns:
        A :class:`DetectionDataset` with every category (id -> name), named after ``info.description``
        or the file. ``iscrowd`` annotations are kept and flagged in ``record.difficult``. JSON has no
        line numbers: messages name the ``annotations[i]`` / ``images[i]`` entry instead.
    """
    json_path = Path(json_path)
    image_root = json_path.parent if image_root is None else Path(image_root)
    data = _read_json(json_path)
    info = data.get("info") or {}
    country = info.get("country") if country is None else country
    split = info.get("split") if split is None else split
    classes, superclass_of = _coco_categories(data, json_path)
    issues = IssueLog(on_error)
    boxes_of, bad_images = _coco_boxes_by_image(data, classes, json_path, issues)
    bad_images |= _coco_repeated_image_ids(data["images"], json_path, issues)
    wanted = [(index, image) for index, image in enumerate(data["images"])
              if not (isinstance(image, dict) and isinstance(image.get("id"), (int, str))
                      and image["id"] in bad_images)]
    records = issues.collect(
        lambda item: _coco_record(*item, boxes_of, image_root, json_path, classes, superclass_of,
                                  country=country, split=split),
        wanted,
    )
    name = info.get("description") or json_path.stem
    return issues.dataset(records, classes, superclass_of, name, json_path, allow_empty)


# --- Pascal VOC ------------------------------------------------------------------------------------

def _object_lines(text: str) -> list[int]:
    """Line number of each ``<object>`` element, in document order (ElementTree keeps no line numbers)."""
    return [text.count("\n", 0, match.start()) + 1 for match in re.finditer(r"<object[\s>]", text)]


def _voc_number(element: ET.Element | None, tag: str, file: Path, line: int | None) -> float:
    node = None if element is None else element.find(tag)
    try:
        return float(node.text)
    except (AttributeError, TypeError, ValueError):
        raise AnnotationError(f"<{tag}> missing or not a number", file, line) from None


def _read_voc_file(xml_path: Path, one_based: bool) -> tuple[str, tuple, list[tuple]]:
    """``(image file name, (width, height) stated, [(line, class name, corners, difficult), ...])``."""
    text = xml_path.read_text(encoding="utf-8", errors="replace")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as error:
        raise AnnotationError(f"not well-formed XML ({error})", xml_path, error.position[0]) from None
    file_name = (root.findtext("filename") or "").strip()
    if not file_name:
        raise AnnotationError("no <filename>", xml_path)
    try:
        stated = tuple(int(float(value)) if value and value.strip() else None
                       for value in (root.findtext("size/width"), root.findtext("size/height")))
    except ValueError:
        raise AnnotationError("<size> width or height is not a number", xml_path) from None
    objects, lines = root.findall("object"), _object_lines(text)
    shift = 1.0 if one_based else 0.0
    parsed = []
    for index, element in enumerate(objects):
        line = lines[index] if len(lines) == len(objects) else None
        name = (element.findtext("name") or "").strip()
        if not name:
            raise AnnotationError(f"object {index} has no <name>", xml_path, line)
        bndbox = element.find("bndbox")
        xmin, ymin, xmax, ymax = (_voc_number(bndbox, tag, xml_path, line)
                                  for tag in ("xmin", "ymin", "xmax", "ymax"))
        difficult = (element.findtext("difficult") or "0").strip() in ("1", "true", "True")
        parsed.append((line, name, [xmin - shift, ymin - shift, xmax, ymax], difficult))
    return file_name, stated, parsed


def load_voc(
    annotation_dir: str | PathLike,
    image_dir: str | PathLike,
    classes: Sequence[str] | None = None,
    on_error: OnError = "raise",
    one_based: bool = True,
    country: str | None = None,
    split: str | None = None,
    allow_empty: bool = False,
) -> DetectionDataset:
    """Load Pascal VOC XML files (one per image, ``<filename>``, ``<size>``, ``<object>``s).

    Args:
        annotation_dir: folder of ``*.xml`` files.
        image_dir: folder the ``<filename>`` entries are in.
        classes: class names in id order (id = position); an object of another class is an error. By
            default the sorted names found in the files, ids 0, 1, ...
        on_error: "raise" or "skip"; a bad object drops its whole image.
        one_based: VOC devkit coordinates (1-based, inclusive); ``False`` for 0-based continuous ones.
        country, split: recorded on every record.
        allow_empty: accept a folder without images; by default that raises AnnotationError.

    Returns:
        A :class:`DetectionDataset`; ``record.difficult`` holds each object's ``<difficult>`` flag.
    """
    annotation_dir, image_dir = Path(annotation_dir), Path(image_dir)
    if not annotation_dir.is_dir():
        raise FileNotFoundError(f"VOC annotation folder {annotation_dir} not found")
    issues = IssueLog(on_error)
    documents = issues.collect(lambda path: (path, *_read_voc_file(path, one_based)),
                               sorted(annotation_dir.glob("*.xml")))
    names = list(classes) if classes is not None else sorted({obj[1] for doc in documents for obj in doc[3]})
    class_table = dict(enumerate(names))
    id_of = {name: class_id for class_id, name in class_table.items()}
    superclass_of = {class_id: superclass_named(name) for class_id, name in class_table.items()}

    def make(document: tuple) -> DetectionRecord:
        xml_path, file_name, stated, objects = document
        width, height = _checked_size(image_dir / file_name, stated, xml_path, None, "image")
        for line, name, _, _ in objects:
            if name not in id_of:
                raise AnnotationError(f"unknown class {name!r} (classes: {names})", xml_path, line)
        return record_from_table(
            image_dir / file_name, width, height,
            [check_box(corners, width, height, xml_path, line) for line, _, corners, _ in objects],
            [id_of[name] for _, name, _, _ in objects], class_table, superclass_of,
            difficult=[difficult for _, _, _, difficult in objects], country=country, split=split,
        )

    records = issues.collect(make, documents)
    name = f"VOC {annotation_dir.name}"
    return issues.dataset(records, class_table, superclass_of, name, annotation_dir, allow_empty)


# --- YOLO ------------------------------------------------------------------------------------------

def _read_class_names(classes_file: Path) -> list[str]:
    if not classes_file.is_file():
        raise FileNotFoundError(f"YOLO classes file {classes_file} not found")
    names = [line.strip() for line in classes_file.read_text(encoding="utf-8-sig").splitlines()]  # drop a BOM
    while names and not names[-1]:
        names.pop()
    for line, name in enumerate(names, start=1):
        if not name:
            raise AnnotationError("empty class name (one name per line; the line number is the class id + 1)",
                                  classes_file, line)
    return names


def _read_yolo_labels(label_path: Path, width: int, height: int, num_classes: int) -> tuple[list, list]:
    """``(pixel corners, class ids)`` from one YOLO label file; AnnotationError naming the line."""
    boxes, labels = [], []
    text_lines = label_path.read_text(encoding="utf-8-sig", errors="replace").splitlines()  # -sig: drop a BOM
    for line, text in enumerate(text_lines, start=1):
        fields = text.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise AnnotationError(f"expected 5 fields 'class cx cy w h', got {len(fields)} (polygon labels are "
                                  f"not supported): {text!r}", label_path, line)
        try:
            class_id = int(fields[0])
            center_x, center_y, box_width, box_height = (float(value) for value in fields[1:])
        except ValueError:
            raise AnnotationError(f"non-numeric class or coordinate in {text!r}", label_path, line) from None
        if not 0 <= class_id < num_classes:
            raise AnnotationError(
                f"unknown class id {class_id} (the classes file has {num_classes})", label_path, line)
        corners = [(center_x - box_width / 2) * width, (center_y - box_height / 2) * height,
                   (center_x + box_width / 2) * width, (center_y + box_height / 2) * height]
        boxes.append(check_box(corners, width, height, label_path, line))
        labels.append(class_id)
    return boxes, labels


def _yolo_label_dir(image_dir: Path) -> Path:
    """``image_dir`` itself when label files lie beside the images; else Ultralytics' rule
    (``img2label_paths``): the last ``images`` part of the path becomes ``labels``, when that folder exists."""
    if any(path.suffix == ".txt" and path.name != "classes.txt" for path in image_dir.iterdir()):
        return image_dir
    parts = image_dir.parts
    if "images" in parts:
        index = len(parts) - 1 - parts[::-1].index("images")
        candidate = Path(*parts[:index], "labels", *parts[index + 1:])
        if candidate.is_dir():
            return candidate
    return image_dir


def load_yolo(
    image_dir: str | PathLike,
    classes_file: str | PathLike,
    label_dir: str | PathLike | None = None,
    on_error: OnError = "raise",
    country: str | None = None,
    split: str | None = None,
    allow_empty: bool = False,
) -> DetectionDataset:
    """Load YOLO txt labels: one ``<stem>.txt`` per image, lines ``class cx cy w h`` normalized to [0, 1].

    Args:
        image_dir: folder of images (:data:`IMAGE_SUFFIXES`).
        classes_file: class names, one a line; class id = line number - 1.
        label_dir: folder of the label files; by default ``image_dir`` when label files lie beside the
            images, else the Ultralytics layout's (``image_dir`` with its last ``images`` part replaced
            by ``labels``, e.g. ``.../labels/train`` for ``.../images/train``) when that folder exists.
        on_error: "raise" or "skip"; a bad line drops its whole image. A label file without an image is
            an error too.
        country, split: recorded on every record.
        allow_empty: accept a folder without images, or images none of which has a label file or a
            box; by default these raise AnnotationError (all-background data would train and score
            nothing).

    Returns:
        A :class:`DetectionDataset`; an image without a label file (or with an empty one) is a
        background image.
    """
    image_dir, classes_file = Path(image_dir), Path(classes_file)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"YOLO image folder {image_dir} not found")
    label_dir = _yolo_label_dir(image_dir) if label_dir is None else Path(label_dir)
    names = _read_class_names(classes_file)
    class_table = dict(enumerate(names))
    superclass_of = {class_id: superclass_named(name) for class_id, name in class_table.items()}
    issues = IssueLog(on_error)
    images = sorted(path for path in image_dir.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
    stems = {path.stem for path in images}
    for label_path in sorted(label_dir.glob("*.txt")):
        if label_path.stem not in stems and label_path.resolve() != classes_file.resolve() \
                and label_path.name != "classes.txt":
            issues.report(
                AnnotationError(f"label file has no image {label_path.stem}.* in {image_dir}", label_path))

    def make(image_path: Path) -> DetectionRecord:
        width, height = image_size_for(image_path, image_path, None)
        label_path = label_dir / f"{image_path.stem}.txt"
        boxes, labels = [], []  # no label file: a background image
        if label_path.is_file():
            boxes, labels = _read_yolo_labels(label_path, width, height, len(names))
        return record_from_table(image_path, width, height, boxes, labels, class_table, superclass_of,
                                 country=country, split=split)

    if images and not allow_empty and not any((label_dir / f"{path.stem}.txt").is_file() for path in images):
        raise AnnotationError(f"none of the {len(images)} images has a label file <stem>.txt in {label_dir}: "
                              "give labels=<folder> (Ultralytics: labels/ beside images/), or allow_empty=True",
                              label_dir)
    records = issues.collect(make, images)
    if records and not allow_empty and not any(len(record.boxes) for record in records):
        raise AnnotationError(f"the label files in {label_dir} hold no box for any of the {len(records)} images "
                              "(all background would train and score nothing); allow_empty=True accepts it",
                              label_dir)
    name = f"YOLO {image_dir.name}"
    return issues.dataset(records, class_table, superclass_of, name, image_dir, allow_empty)
