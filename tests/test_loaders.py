"""Loaders (GTSDB, BelgiumTS, COCO, VOC, YOLO) and few-shot subsets.

Real shared files are used when ``../shared`` is present; every format is also tested on tiny files the
tests write themselves, so a fresh clone runs almost all of this.
"""

from __future__ import annotations

import json
import re
import warnings
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from tlutils.data import (
    AnnotationError, DetectionDataset, DetectionRecord, load_btsd, load_coco, load_gtsdb, load_image, load_voc,
    load_yolo, subset,
)
from tlutils.data.btsd import BTSD_IMAGE_SIZE, btsd_superclass_id
from tlutils.data.gtsdb import GTSDB_CLASSES


def write_image(path: Path, width: int, height: int, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (width, height), color=0).save(path)
    return path


def messages(dataset: DetectionDataset) -> list[str]:
    return [str(item) for item in dataset.skipped]


def raises_or_skips_one(load: Callable[..., DetectionDataset], message: str) -> DetectionDataset:
    """``load()`` raises AnnotationError matching ``message``; ``load(on_error="skip")`` skips one item."""
    with pytest.raises(AnnotationError, match=message):
        load()
    with pytest.warns(UserWarning, match="skipped 1 bad items"):
        dataset = load(on_error="skip")
    assert len(dataset.skipped) == 1
    return dataset


# --- GTSDB: the class map ----------------------------------------------------------------------------

def test_gtsdb_class_map_spot_checks():
    assert len(GTSDB_CLASSES) == 43
    assert GTSDB_CLASSES[0] == ("speed limit 20", "prohibitory")
    assert GTSDB_CLASSES[11] == ("priority at next intersection", "danger")
    assert GTSDB_CLASSES[14] == ("stop", "other")
    assert GTSDB_CLASSES[17] == ("no entry", "other")
    assert GTSDB_CLASSES[33] == ("go right", "mandatory")
    assert GTSDB_CLASSES[42] == ("restriction ends (overtaking (trucks))", "other")
    counts = Counter(category for _, category in GTSDB_CLASSES)
    assert counts == {"prohibitory": 12, "danger": 15, "mandatory": 8, "other": 8}


def test_gtsdb_class_map_matches_the_readme(shared_dir):
    text = (shared_dir / "data" / "gtsdb-sample" / "ReadMe.txt").read_text(encoding="latin-1")
    table = [(int(class_id), name, category)
             for class_id, name, category in re.findall(r"^(\d+) = (.+) \((\w+)\)\s*$", text, flags=re.MULTILINE)]
    assert [class_id for class_id, _, _ in table] == list(range(43))
    assert [(name, category) for _, name, category in table] == list(GTSDB_CLASSES)


# --- GTSDB: the real sample ------------------------------------------------------------------------

def test_gtsdb_sample(shared_dir):
    root = shared_dir / "data" / "gtsdb-sample"
    dataset = load_gtsdb(root)
    assert len(dataset) == 12 and dataset.num_boxes == 16
    assert sorted(Path(r.image_path).name for r in dataset if r.is_background) == ["00108.ppm", "00139.ppm"]
    first = dataset[0]
    assert Path(first.image_path).name == "00000.ppm" and (first.width, first.height) == (1360, 800)
    # gt.txt "00000.ppm;774;411;815;446;11": inclusive pixel indices -> corners with +1 on the far side
    np.testing.assert_array_equal(first.boxes, [[774, 411, 816, 447]])
    assert first.labels.tolist() == [11] and first.class_names == ("priority at next intersection",)
    assert first.superclasses == ("danger",) and first.country == "Germany" and first.split == "train"
    assert len(dataset.classes) == 43 and dataset.superclass_of[14] == "other" and not dataset.skipped
    assert len(load_gtsdb(root, split="train")) == 12
    with pytest.raises(AnnotationError, match=r"GTSDB test: no images"):  # the sample has no test frames
        load_gtsdb(root, split="test")
    assert len(load_gtsdb(root, split="test", allow_empty=True)) == 0
    pixels = load_image(first)
    assert pixels.shape == (800, 1360, 3) and pixels.dtype == np.uint8


def test_gtsdb_real_training_frames_as_jpeg(shared_dir):
    """The 600 official training frames re-encoded as JPEG, with the official gt.txt naming ``.ppm``."""
    root = shared_dir / "data" / "gtsdb-train"
    if not (root / "gt.txt").is_file():
        pytest.skip(f"{root} is not present")
    # the official gt.txt lists the stop sign of 00340 twice (lines 533 and 535): 852 lines, 851 signs
    dataset = raises_or_skips_one(
        partial(load_gtsdb, root), r"gt\.txt, line 535: .*same image, box and class as line 533")
    assert (len(dataset), dataset.num_boxes) == (600, 851)
    assert sum(record.is_background for record in dataset) == 94
    assert {Path(record.image_path).suffix for record in dataset} == {".jpg"}
    assert {(record.width, record.height, record.split) for record in dataset} == {(1360, 800, "train")}
    first = dataset[0]
    assert Path(first.image_path).name == "00000.jpg" and first.labels.tolist() == [11]
    np.testing.assert_array_equal(first.boxes, [[774, 411, 816, 447]])
    assert load_image(first).shape == (800, 1360, 3)


# --- GTSDB: files written here -------------------------------------------------------------------

GOOD_GT = ["00000.ppm;2;3;11;9;14", "00000.ppm;20;1;29;10;33", "00600.ppm;0;0;39;29;0"]


def write_gtsdb(root: Path, gt_lines: list[str], images=("00000.ppm", "00001.ppm", "00600.ppm")) -> Path:
    for name in images:
        write_image(root / name, 40, 30)
    (root / "gt.txt").write_text("\n".join(gt_lines) + "\n")
    return root


def test_gtsdb_layout_conversion_and_splits(tmp_path):
    dataset = load_gtsdb(write_gtsdb(tmp_path, GOOD_GT))
    assert [Path(record.image_path).name for record in dataset] == ["00000.ppm", "00001.ppm", "00600.ppm"]
    np.testing.assert_array_equal(dataset[0].boxes, [[2, 3, 12, 10], [20, 1, 30, 11]])
    assert dataset[0].class_names == ("stop", "go right") and dataset[0].superclasses == ("other", "mandatory")
    assert dataset[1].is_background and (dataset[1].width, dataset[1].height) == (40, 30)
    np.testing.assert_array_equal(dataset[2].boxes, [[0, 0, 40, 30]])  # the whole image, inclusive 0..39
    assert [record.split for record in dataset] == ["train", "train", "test"]
    assert [len(load_gtsdb(tmp_path, split=split)) for split in ("train", "test")] == [2, 1]
    with pytest.raises(ValueError, match="split"):
        load_gtsdb(tmp_path, split="val")


def test_gtsdb_without_gt_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="gt.txt"):
        load_gtsdb(tmp_path)


BAD_GTSDB_LINES = {
    "wrong field count": ("00000.ppm;2;3;11;9", r"expected 6 fields"),
    "non-numeric": ("00000.ppm;2;3;eleven;9;14", r"non-integer"),
    "unknown class": ("00000.ppm;2;3;11;9;43", r"unknown class id 43"),
    "outside the image": ("00000.ppm;30;3;42;9;14", r"outside the 40x30 image"),
    "zero area": ("00000.ppm;5;3;4;9;14", r"zero area"),
    "inverted corners": ("00000.ppm;11;3;2;9;14", r"3\.0, 10\.0\] has inverted corners: xmax 3 < xmin 11"),
    "missing image": ("00007.ppm;2;3;11;9;14", r"00007\.ppm: image file not found"),
}


@pytest.mark.parametrize("case", sorted(BAD_GTSDB_LINES))
def test_gtsdb_bad_line_raises_naming_file_and_line(tmp_path, case):
    bad_line, message = BAD_GTSDB_LINES[case]
    write_gtsdb(tmp_path, [GOOD_GT[0], bad_line, GOOD_GT[2]])
    with pytest.raises(AnnotationError, match=rf"gt\.txt, line 2: .*{message}") as raised:
        load_gtsdb(tmp_path)
    assert raised.value.line == 2 and raised.value.file.endswith("gt.txt")


@pytest.mark.parametrize("case", sorted(BAD_GTSDB_LINES))
def test_gtsdb_skip_drops_the_bad_image_and_reports_it(tmp_path, case):
    bad_line, message = BAD_GTSDB_LINES[case]
    write_gtsdb(tmp_path, [GOOD_GT[0], GOOD_GT[2], bad_line])
    with pytest.warns(UserWarning, match="skipped 1 bad items"):
        dataset = load_gtsdb(tmp_path, on_error="skip")
    assert len(dataset.skipped) == 1 and dataset.skipped[0].line == 3
    assert re.search(message, dataset.skipped[0].reason)
    # the image of the bad line goes: keeping it without that sign's box would teach the sign as background
    bad_image = bad_line.split(";")[0]
    assert [Path(record.image_path).name for record in dataset] == [
        name for name in ("00000.ppm", "00001.ppm", "00600.ppm") if name != bad_image]
    assert "skipped: 1 bad items" in dataset.summary() and "1 skipped" in repr(dataset)


def test_gtsdb_truncated_and_unreadable_images(tmp_path):
    write_gtsdb(tmp_path, GOOD_GT)
    data = (tmp_path / "00000.ppm").read_bytes()
    (tmp_path / "00000.ppm").write_bytes(data[:-100])
    with pytest.raises(AnnotationError, match=r"gt\.txt, line 1: image .*00000\.ppm: truncated"):
        load_gtsdb(tmp_path)
    (tmp_path / "00001.ppm").write_text("P6 but not really")  # a background image: no gt line to name
    with pytest.warns(UserWarning):
        dataset = load_gtsdb(tmp_path, on_error="skip")
    assert [Path(record.image_path).name for record in dataset] == ["00600.ppm"]
    assert len(dataset.skipped) == 2
    assert dataset.skipped[1].file.endswith("00001.ppm") and dataset.skipped[1].line is None


def test_gtsdb_frames_in_another_image_format(tmp_path):
    # gt.txt names 00000.ppm as the official file does; the frames were re-encoded as JPEG / PNG
    for name in ("00000.jpg", "00001.png", "00600.JPEG"):
        write_image(tmp_path / name, 40, 30)
    (tmp_path / "gt.txt").write_text("\n".join(GOOD_GT) + "\n")
    dataset = load_gtsdb(tmp_path)
    assert [Path(record.image_path).name for record in dataset] == ["00000.jpg", "00001.png", "00600.JPEG"]
    np.testing.assert_array_equal(dataset[0].boxes, [[2, 3, 12, 10], [20, 1, 30, 11]])
    assert dataset[1].is_background and [record.split for record in dataset] == ["train", "train", "test"]
    write_image(tmp_path / "00000.ppm", 40, 30)  # two files for one frame: which one did gt.txt mean?
    dataset = raises_or_skips_one(partial(load_gtsdb, tmp_path),
                                  r"frame 00000 has 2 image files \['00000\.jpg', '00000\.ppm'\]")
    assert [Path(record.image_path).name for record in dataset] == ["00001.png", "00600.JPEG"]


def test_load_without_skips_is_silent(tmp_path):
    write_gtsdb(tmp_path, GOOD_GT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_gtsdb(tmp_path, on_error="skip").skipped == []


# --- BelgiumTS ------------------------------------------------------------------------------------

def test_btsd_real_training_file(shared_dir):
    dataset = load_btsd(shared_dir / "data" / "btsd-annotations" / "BTSD_training_GTclear.txt")
    assert len(dataset) == 5905 and dataset.num_boxes == 8851 and not dataset.skipped
    assert dataset.name == "BTSD train" and {record.split for record in dataset} == {"train"}
    # the readme's "[annotations]([superclass])" table
    readme = {-1: 2040, 0: 1705, 1: 765, 2: 891, 3: 1026, 4: 455, 5: 291, 6: 252, 7: 43, 8: 375, 9: 414,
              10: 540, 11: 54}
    labels = np.concatenate([record.labels for record in dataset])
    assert Counter(btsd_superclass_id(label) for label in labels.tolist()) == readme
    assert dataset.superclass_counts() == {"danger": 765, "prohibitory": 891, "mandatory": 1026, None: 2040,
                                           "other": 1705 + 455 + 291 + 252 + 43 + 375 + 414 + 540 + 54}
    first = dataset[0]
    assert first.image_path == "01/image.000935.jp2" and (first.width, first.height) == BTSD_IMAGE_SIZE
    np.testing.assert_allclose(first.boxes, [[1346.82, 246.76, 1582.12, 484.41]], rtol=1e-6)
    assert first.labels.tolist() == [65] and first.class_names == ("class 65 (red circle)",)
    assert dataset.classes[-1] == "undefined" and dataset.superclass_of[-1] is None
    # "02/image.006390.jp2;-1.45;..." sticks out 1.45 px: within the tolerance, clipped to 0
    clipped = next(record for record in dataset if record.image_path == "02/image.006390.jp2")
    assert clipped.boxes[:, 0].min() == 0.0


def test_btsd_real_testing_file(shared_dir):
    dataset = load_btsd(shared_dir / "data" / "btsd-annotations" / "BTSD_testing_GTclear.txt")
    assert (len(dataset), dataset.num_boxes, dataset.name) == (3101, 4629, "BTSD test")
    assert dataset.superclass_counts()["prohibitory"] == 795 and dataset.superclass_counts()[None] == 990


BTSD_LINES = [
    "01/image.000001.jp2;10.5;12.25;30;40;65;2;",   # red circle -> prohibitory
    "01/image.000001.jp2;40;5;60;25;39;7;",         # stop -> other (as GTSDB files stop)
    "02/image.000002.jp2;1;2;20;22;-1;-1;",         # undefined class -> superclass None
    "02/image.000003.jp2;5;5;25;25;2;1;",           # triangle -> danger
]


def test_btsd_lines_written_here(tmp_path):
    (tmp_path / "BTSD_training_GTclear.txt").write_text("\n".join(BTSD_LINES) + "\n")
    dataset = load_btsd(tmp_path / "BTSD_training_GTclear.txt")
    assert [record.image_path for record in dataset] == ["01/image.000001.jp2", "02/image.000002.jp2",
                                                         "02/image.000003.jp2"]
    np.testing.assert_allclose(dataset[0].boxes, [[10.5, 12.25, 30, 40], [40, 5, 60, 25]])
    assert dataset[0].superclasses == ("prohibitory", "other") and dataset[1].superclasses == (None,)
    assert dataset[2].superclasses == ("danger",) and dataset[0].country == "Belgium"
    assert dataset.classes == {-1: "undefined", 2: "class 2 (triangle)", 39: "class 39 (stop)",
                               65: "class 65 (red circle)"}


@pytest.mark.skipif(not features.check("jpg_2000"), reason="this Pillow has no OpenJPEG")
def test_btsd_with_images_reads_their_size(tmp_path):
    (tmp_path / "ann.txt").write_text("\n".join(BTSD_LINES[:2]) + "\n")
    write_image(tmp_path / "images" / "01" / "image.000001.jp2", 64, 48)
    dataset = load_btsd(tmp_path / "ann.txt", image_root=tmp_path / "images", split="train")
    record = dataset[0]
    assert (record.width, record.height, record.split) == (64, 48, "train")
    assert load_image(record).shape == (48, 64, 3)
    (tmp_path / "ann.txt").write_text("\n".join(BTSD_LINES) + "\n")
    message = r"ann\.txt, line 3: image .*image\.000002\.jp2: image file not found"
    with pytest.raises(AnnotationError, match=message):
        load_btsd(tmp_path / "ann.txt", image_root=tmp_path / "images")


def test_jpeg2000_without_openjpeg_says_so(tmp_path, monkeypatch):
    from tlutils.data import records

    monkeypatch.setattr(records.features, "check", lambda name: False)
    (tmp_path / "image.jp2").write_bytes(b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 20)
    with pytest.raises(AnnotationError, match=r"image\.jp2: .*no JPEG 2000 decoder \(OpenJPEG\)"):
        load_image(tmp_path / "image.jp2")


BAD_BTSD_LINES = {
    "wrong field count": ("01/image.000009.jp2;1;2;20;22;65;", r"expected 7 fields"),
    "non-numeric": ("01/image.000009.jp2;1;2;x;22;65;2;", r"non-numeric"),
    "unknown class": ("01/image.000009.jp2;1;2;20;22;-7;2;", r"unknown class id -7"),
    "unknown superclass": ("01/image.000009.jp2;1;2;20;22;65;12;", r"superclass id 12"),
    "class and superclass disagree": ("01/image.000009.jp2;1;2;20;22;65;3;", r"readme says 2"),
    "outside the image": ("01/image.000009.jp2;1600;2;1640;22;65;2;", r"outside the 1628x1236 image"),
    "zero area": ("01/image.000009.jp2;20;2;20;22;65;2;", r"zero area"),
}


@pytest.mark.parametrize("case", sorted(BAD_BTSD_LINES))
def test_btsd_bad_lines(tmp_path, case):
    bad_line, message = BAD_BTSD_LINES[case]
    (tmp_path / "gt.txt").write_text("\n".join([*BTSD_LINES[:2], bad_line, *BTSD_LINES[2:]]) + "\n")
    with pytest.raises(AnnotationError, match=rf"gt\.txt, line 3: .*{message}"):
        load_btsd(tmp_path / "gt.txt")
    with pytest.warns(UserWarning, match="skipped 1"):
        dataset = load_btsd(tmp_path / "gt.txt", on_error="skip")
    assert len(dataset) == 3 and dataset.num_boxes == 4 and dataset.skipped[0].line == 3


# --- COCO -----------------------------------------------------------------------------------------

def coco_document() -> dict:
    return {
        "info": {"description": "toy signs", "country": "Germany", "split": "train"},
        "categories": [
            {"id": 1, "name": "stop", "supercategory": "other"},
            {"id": 2, "name": "bend left", "supercategory": "danger"},
            {"id": 7, "name": "bus", "supercategory": "vehicle"},
        ],
        "images": [
            {"id": 10, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 11, "file_name": "sub/b.png", "width": 40, "height": 30},
            {"id": 12, "file_name": "c.png", "width": 40, "height": 30},
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 1, "bbox": [2.5, 3, 10, 5], "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 7, "bbox": [0, 0, 40, 30], "iscrowd": 1},
            {"id": 3, "image_id": 12, "category_id": 2, "bbox": [5, 5, 5, 5]},
        ],
    }


def write_coco(root: Path, document: dict) -> Path:
    for name in ("a.png", "sub/b.png", "c.png"):
        write_image(root / name, 40, 30)
    (root / "annotations.json").write_text(json.dumps(document, indent=1))
    return root / "annotations.json"


def test_coco(tmp_path):
    dataset = load_coco(write_coco(tmp_path, coco_document()))
    assert dataset.name == "toy signs" and dataset.classes == {1: "stop", 2: "bend left", 7: "bus"}
    assert dataset.superclass_of == {1: "other", 2: "danger", 7: None}
    first, background, third = dataset
    np.testing.assert_array_equal(first.boxes, [[2.5, 3, 12.5, 8], [0, 0, 40, 30]])
    assert first.labels.tolist() == [1, 7] and first.superclasses == ("other", None)
    assert first.difficult.tolist() == [False, True]  # iscrowd
    assert first.image_path == str(tmp_path / "a.png") and (first.country, first.split) == ("Germany", "train")
    assert background.is_background and background.image_path == str(tmp_path / "sub" / "b.png")
    assert third.class_names == ("bend left",)
    overridden = load_coco(tmp_path / "annotations.json", image_root=tmp_path, country="Belgium", split="test")
    assert (overridden[0].country, overridden[0].split) == ("Belgium", "test")


def _coco_with(change) -> dict:
    document = coco_document()
    change(document)
    return document


def set_annotation(**fields):
    return lambda document: document["annotations"][2].update(**fields)


def set_image(**fields):
    return lambda document: document["images"][2].update(**fields)


def add_orphan_annotation(document):
    document["annotations"].append({"id": 4, "image_id": 99, "category_id": 1, "bbox": [1, 1, 2, 2]})


BAD_COCO = {
    "unknown category": (set_annotation(category_id=99), r"annotations\[2\] \(id 3\): unknown category_id 99"),
    "malformed bbox": (set_annotation(bbox=[5, 5, "wide"]), r"annotations\[2\] .*bbox"),
    "outside the image": (set_annotation(bbox=[35, 5, 10, 5]), r"annotations\[2\] .*outside the 40x30"),
    "zero area": (set_annotation(bbox=[5, 5, 0, 5]), r"annotations\[2\] .*zero area"),
    "missing image": (set_image(file_name="gone.png"), r"images\[2\].*gone\.png: image file not found"),
    "wrong size": (set_image(width=64), r"images\[2\] .*c\.png: the annotation says 64x30, the image .* 40x30"),
    "unknown image id": (add_orphan_annotation, r"image_id 99, which is not in 'images'"),
    "image id not an integer": (set_annotation(image_id=12.0), r"annotations\[2\] .*needs image_id"),
}


@pytest.mark.parametrize("case", sorted(BAD_COCO))
def test_coco_bad_input(tmp_path, case):
    change, message = BAD_COCO[case]
    json_path = write_coco(tmp_path, _coco_with(change))
    with pytest.raises(AnnotationError, match=rf"annotations\.json: .*{message}"):
        load_coco(json_path)
    with pytest.warns(UserWarning, match="skipped 1"):
        dataset = load_coco(json_path, on_error="skip")
    kept = ["a.png", "b.png", "c.png"] if case == "unknown image id" else ["a.png", "b.png"]  # c.png is bad
    assert [Path(record.image_path).name for record in dataset] == kept and len(dataset.skipped) == 1


def test_coco_invalid_json_names_the_line(tmp_path):
    (tmp_path / "annotations.json").write_text('{\n "images": [],\n "categories": [,]\n}')
    with pytest.raises(AnnotationError, match=r"annotations\.json, line 3: not valid JSON"):
        load_coco(tmp_path / "annotations.json")
    (tmp_path / "annotations.json").write_text('{"images": []}')
    with pytest.raises(AnnotationError, match="not a COCO detection file"):
        load_coco(tmp_path / "annotations.json")


@pytest.mark.parametrize("key", ["images", "categories", "annotations"])
def test_coco_null_instead_of_a_list(tmp_path, key):
    json_path = write_coco(tmp_path, _coco_with(lambda document: document.update({key: None})))
    with pytest.raises(AnnotationError, match=rf"annotations\.json: '{key}' must be a list, got null"):
        load_coco(json_path, on_error="skip")


def test_coco_duplicate_image_id(tmp_path):
    write_image(tmp_path / "d.png", 40, 30)
    document = _coco_with(lambda document: document["images"].append({"id": 10, "file_name": "d.png"}))
    json_path = write_coco(tmp_path, document)
    dataset = raises_or_skips_one(partial(load_coco, json_path), r"images\[3\] has id 10, like images\[0\]")
    # image 10's boxes could belong to either picture: both go
    assert [Path(record.image_path).name for record in dataset] == ["b.png", "c.png"]


def test_coco_duplicate_category_id(tmp_path):
    document = _coco_with(lambda document: document["categories"].append({"id": 2, "name": "bend right"}))
    json_path = write_coco(tmp_path, document)
    for on_error in ("raise", "skip"):  # the class table itself is wrong: nothing to skip
        with pytest.raises(AnnotationError, match=r"categories\[3\] repeats id 2 of categories\[1\] \('bend left'\)"):
            load_coco(json_path, on_error=on_error)


def test_coco_repeated_annotation(tmp_path):
    repeat = {"id": 9, "image_id": 10, "category_id": 1, "bbox": [2.5, 3, 10, 5]}
    json_path = write_coco(tmp_path, _coco_with(lambda document: document["annotations"].append(repeat)))
    message = r"annotations\[3\] \(id 9\): same image, box and class as annotations\[0\] \(id 1\)"
    dataset = raises_or_skips_one(partial(load_coco, json_path), message)
    assert len(dataset) == 3 and dataset[0].labels.tolist() == [1, 7]  # only the repeat goes


# --- Pascal VOC -----------------------------------------------------------------------------------

def voc_xml(file_name: str, objects: list[tuple[str, int, int, int, int, int]], size=(40, 30)) -> str:
    parts = [f"<annotation>\n  <filename>{file_name}</filename>",
             f"  <size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"]
    for name, xmin, ymin, xmax, ymax, difficult in objects:
        parts.append(f"  <object>\n    <name>{name}</name>\n    <difficult>{difficult}</difficult>\n"
                     f"    <bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
                     f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>\n"
                     f"  </object>")
    return "\n".join(parts) + "\n</annotation>\n"


def write_voc(root: Path, second_objects=(("stop", 1, 1, 10, 10, 0),)) -> tuple[Path, Path]:
    write_image(root / "images" / "a.jpg", 40, 30)
    write_image(root / "images" / "b.jpg", 40, 30)
    (root / "xml").mkdir()
    (root / "xml" / "a.xml").write_text(voc_xml("a.jpg", [("stop", 3, 4, 12, 10, 0), ("danger", 1, 1, 40, 30, 1)]))
    (root / "xml" / "b.xml").write_text(voc_xml("b.jpg", list(second_objects)))
    return root / "xml", root / "images"


def test_voc(tmp_path):
    dataset = load_voc(*write_voc(tmp_path))
    assert dataset.classes == {0: "danger", 1: "stop"} and dataset.superclass_of == {0: "danger", 1: None}
    first = dataset[0]
    # VOC is 1-based and inclusive: xmin 3 is the 3rd pixel column, whose left edge is at 2
    np.testing.assert_array_equal(first.boxes, [[2, 3, 12, 10], [0, 0, 40, 30]])
    assert first.labels.tolist() == [1, 0] and first.difficult.tolist() == [False, True]
    assert first.superclasses == (None, "danger")
    zero_based = load_voc(tmp_path / "xml", tmp_path / "images", one_based=False)
    np.testing.assert_array_equal(zero_based[0].boxes[0], [3, 4, 12, 10])
    fixed = load_voc(tmp_path / "xml", tmp_path / "images", classes=["stop", "danger", "yield"])
    assert fixed[0].labels.tolist() == [0, 1] and fixed.classes[2] == "yield"


BAD_VOC = {
    "unknown class": ((("yield", 1, 1, 10, 10, 0),), r"line 9: unknown class 'yield'"),
    "non-numeric": ((("stop", 1, 1, "ten", 10, 0),), r"line 4: <xmax> missing or not a number"),
    "outside the image": ((("stop", 1, 1, 10, 10, 0), ("stop", 1, 1, 50, 10, 0)), r"line 9: .*outside the 40x30"),
    "zero area": ((("stop", 5, 1, 4, 10, 0),), r"line 4: .*zero area"),
}


@pytest.mark.parametrize("case", sorted(BAD_VOC))
def test_voc_bad_objects_name_file_and_line(tmp_path, case):
    objects, message = BAD_VOC[case]
    annotation_dir, image_dir = write_voc(tmp_path, objects)
    classes = ["stop", "danger"] if case == "unknown class" else None
    if case == "unknown class":
        objects = (("stop", 1, 1, 10, 10, 0),) + objects
        (annotation_dir / "b.xml").write_text(voc_xml("b.jpg", list(objects)))
    with pytest.raises(AnnotationError, match=rf"b\.xml, {message}"):
        load_voc(annotation_dir, image_dir, classes=classes)
    with pytest.warns(UserWarning):
        dataset = load_voc(annotation_dir, image_dir, classes=classes, on_error="skip")
    assert [Path(record.image_path).name for record in dataset] == ["a.jpg"] and len(dataset.skipped) == 1


def test_voc_broken_xml_and_missing_image(tmp_path):
    annotation_dir, image_dir = write_voc(tmp_path)
    (annotation_dir / "b.xml").write_text("<annotation>\n<filename>b.jpg</filename>\n<object>\n</annotation>\n")
    with pytest.raises(AnnotationError, match=r"b\.xml, line 4: not well-formed XML"):
        load_voc(annotation_dir, image_dir)
    (annotation_dir / "b.xml").write_text(voc_xml("gone.jpg", []))
    with pytest.raises(AnnotationError, match=r"b\.xml: image .*gone\.jpg: image file not found"):
        load_voc(annotation_dir, image_dir)


# --- YOLO -----------------------------------------------------------------------------------------

def write_yolo(root: Path, labels: dict[str, str]) -> Path:
    (root / "classes.txt").write_text("stop\ndanger\n\n")
    for stem in ("a", "b", "c"):
        write_image(root / "images" / f"{stem}.png", 40, 20)
    (root / "labels").mkdir()
    for stem, text in labels.items():
        (root / "labels" / f"{stem}.txt").write_text(text)
    return root


def test_yolo(tmp_path):
    write_yolo(tmp_path, {"a": "0 0.5 0.5 0.25 0.5\n1 0.1 0.2 0.2 0.4\n", "b": ""})
    dataset = load_yolo(tmp_path / "images", tmp_path / "classes.txt", label_dir=tmp_path / "labels")
    assert dataset.classes == {0: "stop", 1: "danger"} and dataset.superclass_of == {0: None, 1: "danger"}
    first = dataset[0]
    # cx 0.5 w 0.25 of 40 px -> 15..25; cy 0.5 h 0.5 of 20 px -> 5..15
    np.testing.assert_allclose(first.boxes, [[15, 5, 25, 15], [0, 0, 8, 8]], atol=1e-5)
    assert first.labels.tolist() == [0, 1] and first.class_names == ("stop", "danger")
    assert dataset[1].is_background and dataset[2].is_background  # empty label file; no label file


def test_yolo_finds_the_ultralytics_labels_folder_beside_images(tmp_path):
    """images/ and labels/ side by side: found without label_dir (Ultralytics' images -> labels rule)."""
    write_yolo(tmp_path, {"a": "0 0.5 0.5 0.25 0.5\n"})
    dataset = load_yolo(tmp_path / "images", tmp_path / "classes.txt")
    assert dataset[0].labels.tolist() == [0] and dataset[1].is_background


def test_yolo_images_without_any_label_file_are_an_error_not_background(tmp_path):
    """All-background data trains and scores nothing (mAP NaN): a wrong labels folder must not pass silently."""
    write_yolo(tmp_path, {"a": "0 0.5 0.5 0.25 0.5\n"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(AnnotationError, match=r"none of the 3 images has a label file .*labels="):
        load_yolo(tmp_path / "images", tmp_path / "classes.txt", label_dir=elsewhere)
    assert len(load_yolo(tmp_path / "images", tmp_path / "classes.txt", label_dir=elsewhere, allow_empty=True)) == 3
    for stem in ("a", "b", "c"):  # label files for every image, but no box in any
        (elsewhere / f"{stem}.txt").write_text("")
    with pytest.raises(AnnotationError, match="hold no box for any of the 3 images"):
        load_yolo(tmp_path / "images", tmp_path / "classes.txt", label_dir=elsewhere)


def test_yolo_labels_beside_the_images_win_over_a_labels_folder(tmp_path):
    write_yolo(tmp_path, {"a": "0 0.5 0.5 0.25 0.5\n"})
    (tmp_path / "images" / "b.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    dataset = load_yolo(tmp_path / "images", tmp_path / "classes.txt")
    assert dataset[0].is_background and dataset[1].labels.tolist() == [1]


BAD_YOLO = {
    "wrong field count": ("0 0.5 0.5 0.25\n", r"expected 5 fields"),
    "non-numeric": ("0 0.5 half 0.25 0.5\n", r"non-numeric"),
    "unknown class": ("2 0.5 0.5 0.25 0.5\n", r"unknown class id 2"),
    "outside the image": ("0 0.95 0.5 0.25 0.5\n", r"outside the 40x20"),
    "zero area": ("0 0.5 0.5 0 0.5\n", r"zero area"),
}


@pytest.mark.parametrize("case", sorted(BAD_YOLO))
def test_yolo_bad_lines(tmp_path, case):
    text, message = BAD_YOLO[case]
    write_yolo(tmp_path, {"a": "0 0.5 0.5 0.25 0.5\n", "b": "1 0.5 0.5 0.5 0.5\n" + text})
    with pytest.raises(AnnotationError, match=rf"b\.txt, line 2: .*{message}"):
        load_yolo(tmp_path / "images", tmp_path / "classes.txt", tmp_path / "labels")
    with pytest.warns(UserWarning):
        dataset = load_yolo(tmp_path / "images", tmp_path / "classes.txt", tmp_path / "labels", on_error="skip")
    assert [Path(record.image_path).stem for record in dataset] == ["a", "c"] and len(dataset.skipped) == 1


def test_yolo_label_without_image_and_unreadable_image(tmp_path):
    write_yolo(tmp_path, {"a": "0 0.5 0.5 0.25 0.5\n", "orphan": "0 0.5 0.5 0.25 0.5\n"})
    with pytest.raises(AnnotationError, match=r"orphan\.txt: label file has no image"):
        load_yolo(tmp_path / "images", tmp_path / "classes.txt", tmp_path / "labels")
    (tmp_path / "labels" / "orphan.txt").unlink()
    (tmp_path / "images" / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(AnnotationError, match=r"c\.png: "):
        load_yolo(tmp_path / "images", tmp_path / "classes.txt", tmp_path / "labels")


# --- what every loader refuses: repeated boxes, empty results; what every text reader accepts: a BOM ----

@pytest.mark.parametrize("loader", ["gtsdb", "btsd"])
def test_a_repeated_line_is_an_error_not_a_second_box(tmp_path, loader):
    if loader == "gtsdb":
        write_gtsdb(tmp_path, [GOOD_GT[0], GOOD_GT[1], GOOD_GT[0], GOOD_GT[2]])
        file, load = tmp_path / "gt.txt", partial(load_gtsdb, tmp_path)
    else:
        file = tmp_path / "ann.txt"
        file.write_text("\n".join([BTSD_LINES[0], BTSD_LINES[1], BTSD_LINES[0], *BTSD_LINES[2:]]) + "\n")
        load = partial(load_btsd, file)
    dataset = raises_or_skips_one(load, rf"{file.name}, line 3: .*same image, box and class as line 1")
    # only the repeat goes: the image keeps its two boxes, each once
    assert dataset.skipped[0].line == 3 and dataset.num_boxes == (3 if loader == "gtsdb" else 4)
    assert len(dataset[0].boxes) == 2 and not np.array_equal(dataset[0].boxes[0], dataset[0].boxes[1])


def write_empty_source(root: Path, loader: str):
    """An empty annotation source of each loader's kind, and the loader to call on it."""
    if loader == "gtsdb: empty gt.txt":
        write_gtsdb(root, [])
        (root / "gt.txt").write_text("")
        return lambda **options: load_gtsdb(root, **options)
    if loader == "btsd: empty file":
        (root / "ann.txt").write_text("")
        return lambda **options: load_btsd(root / "ann.txt", **options)
    if loader == "coco: no images":
        write_coco(root, {"images": [], "categories": coco_document()["categories"], "annotations": []})
        return lambda **options: load_coco(root / "annotations.json", **options)
    if loader == "voc: empty folder":
        (root / "xml").mkdir()
        return lambda **options: load_voc(root / "xml", root, **options)
    write_yolo(root, {})
    for image in (root / "images").iterdir():
        image.unlink()
    return lambda **options: load_yolo(root / "images", root / "classes.txt", **options)


EMPTY_SOURCES = {
    "gtsdb: empty gt.txt": r"gt\.txt: no annotation lines",
    "btsd: empty file": r"ann\.txt: BTSD ann\.txt: no images",
    "coco: no images": r"annotations\.json: annotations: no images",
    "voc: empty folder": r"xml: VOC xml: no images",
    "yolo: empty image folder": r"images: YOLO images: no images",
}


@pytest.mark.parametrize("loader", sorted(EMPTY_SOURCES))
def test_an_empty_source_is_an_error_unless_allowed(tmp_path, loader):
    load = write_empty_source(tmp_path, loader)
    with pytest.raises(AnnotationError, match=rf"{EMPTY_SOURCES[loader]}.*allow_empty=True"):
        load()
    dataset = load(allow_empty=True)
    assert dataset.num_boxes == 0 and len(dataset) == (3 if loader.startswith("gtsdb") else 0)


@pytest.mark.parametrize("loader", ["gtsdb", "btsd", "coco", "yolo"])
def test_a_utf8_byte_order_mark_is_stripped(tmp_path, loader):
    def rewrite_with_bom(path: Path) -> None:
        path.write_text(path.read_text(encoding="utf-8"), encoding="utf-8-sig")  # Windows Notepad does this

    if loader == "gtsdb":
        write_gtsdb(tmp_path, GOOD_GT)
        rewrite_with_bom(tmp_path / "gt.txt")
        dataset = load_gtsdb(tmp_path)
        assert Path(dataset[0].image_path).name == "00000.ppm" and dataset.num_boxes == 3
    elif loader == "btsd":
        (tmp_path / "ann.txt").write_text("\n".join(BTSD_LINES) + "\n", encoding="utf-8-sig")
        assert load_btsd(tmp_path / "ann.txt")[0].image_path == "01/image.000001.jp2"
    elif loader == "coco":
        rewrite_with_bom(write_coco(tmp_path, coco_document()))
        assert load_coco(tmp_path / "annotations.json").num_boxes == 3
    else:
        write_yolo(tmp_path, {"a": "0 0.5 0.5 0.25 0.5\n"})
        rewrite_with_bom(tmp_path / "classes.txt")
        rewrite_with_bom(tmp_path / "labels" / "a.txt")
        dataset = load_yolo(tmp_path / "images", tmp_path / "classes.txt", tmp_path / "labels")
        assert dataset.classes == {0: "stop", 1: "danger"} and dataset[0].labels.tolist() == [0]


# --- few-shot subsets ----------------------------------------------------------------------------

def toy_dataset(num_images: int = 60) -> DetectionDataset:
    """Class 0 in every image, class 1..4 in some, class 5 in exactly one image, a few background images."""
    records = []
    for index in range(num_images):
        labels = [0] if index % 10 else []
        labels += [class_id for class_id in (1, 2, 3, 4) if index % (class_id + 5) == 1]
        labels += [5] if index == 37 else []
        records.append(DetectionRecord(
            image_path=f"{index:03d}.png", width=10, height=10, boxes=[[1, 1, 5, 5]] * len(labels), labels=labels,
            class_names=[f"c{label}" for label in labels], superclasses=[None] * len(labels)))
    return DetectionDataset(records, {class_id: f"c{class_id}" for class_id in range(6)}, name="toy")


def paths(dataset: DetectionDataset) -> set[str]:
    return {record.image_path for record in dataset}


def test_subset_covers_every_class_when_it_can():
    dataset = toy_dataset()
    for seed in range(5):
        six = subset(dataset, 6, seed=seed)
        assert all(count > 0 for count in six.box_counts().values()), (seed, six.box_counts())
        assert "037.png" in paths(six)  # the only image of class 5
        assert isinstance(six, DetectionDataset) and six.classes == dataset.classes and len(six) == 6


def test_subsets_are_nested_and_seeded():
    dataset = toy_dataset()
    sizes = (1, 3, 6, 10, 25, 60)
    for seed in (0, 1):
        nested = [paths(subset(dataset, size, seed=seed)) for size in sizes]
        assert all(small <= large for small, large in zip(nested, nested[1:]))
        assert [len(chosen) for chosen in nested] == list(sizes)
    assert paths(subset(dataset, 10, seed=3)) == paths(subset(dataset, 10, seed=3))
    assert len({frozenset(paths(subset(dataset, 10, seed=seed))) for seed in range(5)}) > 1
    records = list(subset(dataset, 10, seed=1))
    assert records == sorted(records, key=lambda record: record.image_path)  # the dataset's order


def test_subset_rejects_impossible_sizes():
    with pytest.raises(ValueError, match=r"0\.\.60"):
        subset(toy_dataset(), 61, seed=0)


def test_subset_of_real_gtsdb_sample(shared_dir):
    dataset = load_gtsdb(shared_dir / "data" / "gtsdb-sample")
    five = subset(dataset, 5, seed=0)
    ten = subset(dataset, 10, seed=0)
    assert paths(five) <= paths(ten)
    present = {class_id for record in ten for class_id in record.labels.tolist()}
    assert present == {class_id for record in dataset for class_id in record.labels.tolist()}
