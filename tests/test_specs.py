"""Data specs (``tlutils.data.specs``) and class matching (``tlutils.data.classes``).

Every format is loaded from tiny files written into ``tmp_path``; the real GTSDB training frames and
BelgiumTS annotations in ``../shared`` are used when present and skipped cleanly when not.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlutils.data import AnnotationError, DetectionDataset, DetectionRecord, load_gtsdb, subset
from tlutils.data.btsd import btsd_class_name
from tlutils.data.classes import (
    CLASS_SYNONYMS, SUPERCLASS_CLASSES, _build_index, canonical_classes, canonical_name, canonical_superclass,
    match_classes, normalize_class_name, relabel_by_superclass,
)
from tlutils.data.gtsdb import GTSDB_CLASS_NAMES, GTSDB_CLASSES, GTSDB_SUPERCLASS_OF
from tlutils.data.signs import SIGN_CLASSES
from tlutils.data.specs import (
    FORMATS, DataSpec, fingerprint, format_help, load_spec, parse_spec, rarest_class_strata, split_dataset,
)
from tlutils.data.synth import synth_dataset


def write_image(path: Path, width: int = 40, height: int = 30) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height)).save(path)
    return path


# --- parsing ---------------------------------------------------------------------------------------

PARSED = [
    # text, (format, path, options, split), canonical spelling
    ("synth:germany", ("synth", "germany", {}, "train"), "synth:germany"),
    ("germany", ("synth", "germany", {}, "train"), "synth:germany"),
    ("Sweden,split=val", ("synth", "sweden", {}, "val"), "synth:sweden,split=val"),
    ("synth:usa,split=train", ("synth", "usa", {}, "train"), "synth:usa"),
    ("gtsdb:data/gtsdb/", ("gtsdb", "data/gtsdb", {}, None), "gtsdb:data/gtsdb"),
    ("GTSDB:/x/./y/../gtsdb,on_error=skip,split=train",
     ("gtsdb", "/x/gtsdb", {"on_error": "skip"}, "train"), "gtsdb:/x/gtsdb,split=train,on_error=skip"),
    ("gtsdb:g,on_error=raise", ("gtsdb", "g", {}, None), "gtsdb:g"),
    ("btsd:a/BTSD_training_GTclear.txt, images = jp2/",
     ("btsd", "a/BTSD_training_GTclear.txt", {"images": "jp2"}, None),
     "btsd:a/BTSD_training_GTclear.txt,images=jp2"),
    ("coco:set/annotations.json,on_error=skip,images=pics",
     ("coco", "set/annotations.json", {"on_error": "skip", "images": "pics"}, None),
     "coco:set/annotations.json,images=pics,on_error=skip"),
    ("voc:VOC2007,split=trainval", ("voc", "VOC2007", {}, "trainval"), "voc:VOC2007,split=trainval"),
    ("yolo:ds/images/train,labels=ds/labels/train,classes=ds/classes.txt",
     ("yolo", "ds/images/train", {"labels": "ds/labels/train", "classes": "ds/classes.txt"}, None),
     "yolo:ds/images/train,classes=ds/classes.txt,labels=ds/labels/train"),
]


@pytest.mark.parametrize("text, fields, canonical", PARSED, ids=[text for text, _, _ in PARSED])
def test_every_format_parses_to_one_canonical_spelling(text, fields, canonical):
    spec = parse_spec(text)
    assert (spec.format, spec.path, dict(spec.options), spec.split) == fields
    assert str(spec) == canonical
    again = parse_spec(str(spec))
    assert again == spec and hash(again) == hash(spec) and parse_spec(spec) is spec
    assert DataSpec(*fields) == spec  # constructing one directly checks and normalizes the same way


@pytest.mark.parametrize("text, expected", [
    ("synth:Belgium", "synth:belgium"),  # the sign world has no location
    ("gtsdb:/data/GTSDB,on_error=skip", "gtsdb:*,on_error=skip"),
    ("coco:/a/ann.json,images=/a/img", "coco:*"),
    ("gtsdb:/data/GTSDB,split=test", "gtsdb:*,split=test"),
    ("yolo:ds/images,classes=ds/classes.txt,labels=ds/labels", "yolo:*"),
])
def test_a_spec_without_its_location_keeps_format_split_and_options(text, expected):
    assert parse_spec(text).without_location() == expected


def test_every_format_is_tested():
    assert {fields[0] for _, fields, _ in PARSED} == set(FORMATS)


BAD_SPECS = {
    "unknown format": ("kitti:data/kitti", r"unknown format 'kitti'"),
    "missing path": ("gtsdb:", r"gtsdb: the path is missing"),
    "blank path": ("coco: ,images=x", r"coco: the path is missing"),
    "unknown option": ("btsd:gt.txt,labels=x", r"btsd: unknown option 'labels' \(options of btsd: images, on_error\)"),
    "split without splits": ("coco:a.json,split=train", r"coco: has no split option"),
    "split not of the format": ("gtsdb:g,split=val", r"gtsdb: split must be train or test, got 'val'"),
    "synth split": ("synth:germany,split=test", r"synth: split must be train or val, got 'test'"),
    "unknown country": ("synth:france", r"synth: unknown country 'france'"),
    "no format": ("data/gtsdb", r"'data/gtsdb' has no format and is no country"),
    "not key=value": ("coco:a.json,images", r"option 'images' is not <option>=<value>"),
    "empty value": ("coco:a.json,images=", r"coco: option 'images' has no value"),
    "repeated option": ("coco:a.json,images=a,images=b", r"option 'images' is given twice"),
    "bad on_error": ("gtsdb:g,on_error=ignore", r"gtsdb: on_error must be raise or skip, got 'ignore'"),
    "empty": ("", r"the spec is empty"),
}


@pytest.mark.parametrize("text, message", BAD_SPECS.values(), ids=BAD_SPECS.keys())
def test_a_bad_spec_names_the_bad_part_and_lists_the_formats(text, message):
    with pytest.raises(ValueError, match=message) as caught:
        parse_spec(text)
    text_of_error = str(caught.value)
    assert text_of_error.startswith(f"bad data spec {text!r}: ")
    assert format_help() in text_of_error and all(f"\n  {name}:" in text_of_error for name in FORMATS)
    assert "on_error=raise|skip" in text_of_error and "split=train|val" in text_of_error


def test_a_spec_that_is_no_string_is_rejected():
    with pytest.raises(ValueError, match="a data spec is a string, got PosixPath"):
        parse_spec(Path("data/gtsdb"))  # type: ignore[arg-type]


# --- loading each format from tiny files ------------------------------------------------------------

GT_LINES = ["00000.ppm;2;3;11;9;14", "00000.ppm;20;1;29;10;33", "00600.ppm;0;0;39;29;0"]


def write_gtsdb(root: Path, gt_lines=GT_LINES, frames=("00000", "00001", "00600")) -> Path:
    for frame in frames:
        write_image(root / f"{frame}.ppm")
    (root / "gt.txt").write_text("\n".join(gt_lines) + "\n")
    return root


def test_load_gtsdb_spec_with_and_without_a_split(tmp_path):
    write_gtsdb(tmp_path)
    dataset = load_spec(f"gtsdb:{tmp_path}")
    assert len(dataset) == 3 and dataset.num_boxes == 3 and dataset.classes == GTSDB_CLASS_NAMES
    assert [len(load_spec(f"gtsdb:{tmp_path},split={split}")) for split in ("train", "test")] == [2, 1]


def test_a_repeated_gtsdb_line_raises_with_a_hint_or_is_skipped_by_the_spec(tmp_path):
    write_gtsdb(tmp_path, [*GT_LINES, GT_LINES[0]])  # line 4 repeats line 1, like 00340 in the real gt.txt
    with pytest.raises(AnnotationError, match=r"gt\.txt, line 4: same image.*add ,on_error=skip to the data spec"):
        load_spec(f"gtsdb:{tmp_path}")
    with pytest.warns(UserWarning, match="skipped 1 bad items"):
        dataset = load_spec(f"gtsdb:{tmp_path},on_error=skip")
    assert (len(dataset), dataset.num_boxes, len(dataset.skipped)) == (3, 3, 1)
    with pytest.warns(UserWarning, match="skipped 1 bad items"):  # the keyword is the default of a spec that gives none
        assert load_spec(f"gtsdb:{tmp_path}", on_error="skip").num_boxes == 3
    with pytest.raises(ValueError, match="contradicts the spec"):
        load_spec(f"gtsdb:{tmp_path},on_error=skip", on_error="raise")


def write_btsd(root: Path, lines=("01/a.png;1;2;11;12;39;7;", "01/a.png;20;2;30;12;65;2;", "02/b.png;0;0;10;10;31;6;")):
    write_image(root / "jp2" / "01" / "a.png")
    write_image(root / "jp2" / "02" / "b.png", 20, 20)
    annotations = root / "BTSD_training_GTclear.txt"
    annotations.write_text("\n".join(lines) + "\n")
    return annotations


def test_load_btsd_spec_with_and_without_images(tmp_path):
    annotations = write_btsd(tmp_path)
    without = load_spec(f"btsd:{annotations}")
    assert [(r.image_path, r.width) for r in without] == [("01/a.png", 1628), ("02/b.png", 1628)]
    with_images = load_spec(f"btsd:{annotations},images={tmp_path / 'jp2'}")
    assert [(r.width, r.height) for r in with_images] == [(40, 30), (20, 20)]
    assert with_images.classes == {31: btsd_class_name(31), 39: btsd_class_name(39), 65: btsd_class_name(65)}
    assert with_images[0].split == "train"  # from the file name


def write_coco(root: Path, images_dir: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in ("a.png", "b.png"):
        write_image(images_dir / name)
    document = {
        "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}, {"id": 2, "file_name": "b.png"}],
        "categories": [{"id": 1, "name": "stop", "supercategory": "other"}, {"id": 2, "name": "Yield"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 5]},
                        {"id": 2, "image_id": 2, "category_id": 2, "bbox": [0, 0, 5, 5]}],
    }
    path = root / "annotations.json"
    path.write_text(json.dumps(document))
    return path


def test_load_coco_spec_with_images_elsewhere(tmp_path):
    annotations = write_coco(tmp_path, tmp_path / "pictures")
    dataset = load_spec(f"coco:{annotations},images={tmp_path / 'pictures'}")
    assert len(dataset) == 2 and dataset.classes == {1: "stop", 2: "Yield"}
    assert dataset[0].image_path == str(tmp_path / "pictures" / "a.png")
    with pytest.raises(AnnotationError, match="image file not found"):  # images default to the JSON's folder
        load_spec(f"coco:{annotations}")


def voc_xml(file_name: str, objects: list[tuple[str, int, int, int, int]]) -> str:
    boxes = "".join(f"<object><name>{name}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
                    f"<ymax>{y1}</ymax></bndbox></object>\n" for name, x0, y0, x1, y1 in objects)
    return f"<annotation><filename>{file_name}</filename>\n{boxes}</annotation>\n"


def write_voc(root: Path) -> Path:
    for stem, objects in {"a": [("stop", 3, 4, 12, 10)], "b": [("stop", 1, 1, 9, 9), ("give way", 5, 5, 20, 20)],
                          "c": []}.items():
        write_image(root / "JPEGImages" / f"{stem}.jpg")
        (root / "Annotations").mkdir(exist_ok=True)
        (root / "Annotations" / f"{stem}.xml").write_text(voc_xml(f"{stem}.jpg", objects))
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\nc\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("b\nmissing\n")
    return root


def test_load_voc_spec_reads_the_devkit_layout_and_imagesets_splits(tmp_path):
    root = write_voc(tmp_path)
    dataset = load_spec(f"voc:{root}")
    assert [Path(r.image_path).name for r in dataset] == ["a.jpg", "b.jpg", "c.jpg"]
    assert dataset.classes == {0: "give way", 1: "stop"} and dataset.num_boxes == 3
    train = load_spec(f"voc:{root},split=train")
    assert [Path(r.image_path).name for r in train] == ["a.jpg", "c.jpg"] and {r.split for r in train} == {"train"}
    with pytest.raises(AnnotationError, match=r"val\.txt, line 2: image 'missing' has no annotation"):
        load_spec(f"voc:{root},split=val")
    with pytest.raises(FileNotFoundError, match=r"test\.txt not found"):
        load_spec(f"voc:{root},split=test")


def write_yolo(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("stop\ndanger\n")
    for stem in ("a", "b"):
        write_image(root / "images" / f"{stem}.png", 40, 20)
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.25 0.5\n1 0.1 0.2 0.2 0.4\n")
    return root


def test_load_yolo_spec_finds_classes_above_the_images(tmp_path):
    root = write_yolo(tmp_path)
    dataset = load_spec(f"yolo:{root / 'images'},labels={root / 'labels'}")  # classes.txt: the parent's
    assert dataset.classes == {0: "stop", 1: "danger"} and [r.num_boxes for r in dataset] == [2, 0]
    shutil.move(root / "classes.txt", root / "names.txt")
    with pytest.raises(FileNotFoundError, match=r"add ,classes=<file>"):
        load_spec(f"yolo:{root / 'images'}")
    explicit = load_spec(f"yolo:{root / 'images'},classes={root / 'names.txt'},labels={root / 'labels'}")
    assert explicit.num_boxes == 2


def test_load_synth_spec_is_the_rendered_set(tmp_path):
    dataset = load_spec("synth:germany,split=val", num_images=3, image_size=64, data_dir=tmp_path)
    rendered = synth_dataset("germany", "val", 3, 64, data_dir=tmp_path)
    assert [r.image_path for r in dataset] == [r.image_path for r in rendered] and len(dataset) == 3
    assert {r.split for r in dataset} == {"val"} and dataset.classes == rendered.classes
    with pytest.raises(ValueError, match="give num_images and image_size"):
        load_spec("germany")
    with pytest.raises(ValueError, match="give image_size"):
        load_spec("germany", num_images=3)


# --- fingerprints ----------------------------------------------------------------------------------

def test_fingerprint_is_stable_and_independent_of_where_the_data_lives(tmp_path):
    first = write_gtsdb(tmp_path / "one")
    spec = f"gtsdb:{first}"
    print_one = fingerprint(load_spec(spec), spec)
    assert print_one == fingerprint(load_spec(spec), spec)
    assert print_one["num_images"] == 3 and print_one["num_boxes"] == 3 and print_one["num_classes"] == 43
    assert re.fullmatch(r"[0-9a-f]{16}", str(print_one["annotations_sha256"]))
    moved = shutil.copytree(first, tmp_path / "elsewhere" / "two")
    print_two = fingerprint(load_spec(f"gtsdb:{moved}"), f"gtsdb:{moved}")
    assert print_two["spec"] != print_one["spec"]
    assert {key: print_two[key] for key in print_two if key != "spec"} == \
        {key: print_one[key] for key in print_one if key != "spec"}


def test_fingerprint_changes_when_one_annotation_changes(tmp_path):
    root = write_gtsdb(tmp_path)
    before = fingerprint(load_spec(f"gtsdb:{root}"), f"gtsdb:{root}")
    write_gtsdb(root, [GT_LINES[0].replace(";11;", ";12;"), *GT_LINES[1:]])  # one box one pixel wider
    after = fingerprint(load_spec(f"gtsdb:{root}"), f"gtsdb:{root}")
    assert after["annotations_sha256"] != before["annotations_sha256"]
    assert after["records_sha256"] != before["records_sha256"]
    assert (after["num_images"], after["num_boxes"]) == (before["num_images"], before["num_boxes"])
    train = load_spec(f"gtsdb:{root},split=train")  # same file, other images: only the records hash tells
    train_print = fingerprint(train, f"gtsdb:{root},split=train")
    assert train_print["annotations_sha256"] == after["annotations_sha256"]
    assert train_print["records_sha256"] != after["records_sha256"]


def test_fingerprint_of_every_format_sees_each_annotation_file(tmp_path):
    voc = write_voc(tmp_path / "voc")
    yolo = write_yolo(tmp_path / "yolo")
    coco = write_coco(tmp_path / "coco", tmp_path / "coco")
    btsd = write_btsd(tmp_path / "btsd")
    cases = {  # spec: (an annotation file, a change that keeps it valid)
        f"voc:{voc}": (voc / "Annotations" / "b.xml", "<xmax>9<", "<xmax>8<"),
        f"yolo:{yolo / 'images'},labels={yolo / 'labels'}": (yolo / "labels" / "a.txt", "0.25", "0.2"),
        f"coco:{coco}": (coco, "[2, 3, 10, 5]", "[2, 3, 10, 6]"),
        f"btsd:{btsd}": (btsd, ";11;12;39", ";11;13;39"),
    }
    for spec, (annotation_file, old, new) in cases.items():
        before = fingerprint(load_spec(spec), spec)
        assert old in annotation_file.read_text(), spec
        annotation_file.write_text(annotation_file.read_text().replace(old, new))
        after = fingerprint(load_spec(spec), spec)
        assert after["annotations_sha256"] != before["annotations_sha256"], spec
        assert after["records_sha256"] != before["records_sha256"], spec


def test_fingerprint_of_a_synth_set_hashes_its_annotations_json(tmp_path):
    dataset = load_spec("germany", num_images=2, image_size=64, data_dir=tmp_path)
    before = fingerprint(dataset, "germany")
    annotations = Path(dataset[0].image_path).parent / "annotations.json"
    annotations.write_text(annotations.read_text() + " ")
    assert fingerprint(dataset, "germany")["annotations_sha256"] != before["annotations_sha256"]


# --- splits ----------------------------------------------------------------------------------------

def toy_dataset(labels_per_image: list[list[int]], name: str = "toy") -> DetectionDataset:
    """Records with fake image paths (nothing is read): one 10x10 box per label."""
    classes = {1: "common", 2: "rare", 3: "rarest"}
    records = [DetectionRecord(f"/data/{name}/{index:05d}.png", 100, 100, [[0, 0, 10, 10]] * len(labels),
                               labels, [classes[label] for label in labels], [None] * len(labels))
               for index, labels in enumerate(labels_per_image)]
    return DetectionDataset(records, classes, name=name)


def gtsdb_frames(frames: list[int]) -> DetectionDataset:
    records = [DetectionRecord(f"/gtsdb/{frame:05d}.jpg", 1360, 800, [[0, 0, 20, 20]], [frame % 3], ["x"], [None],
                               split="train" if frame < 600 else "test") for frame in frames]
    return DetectionDataset(records, {0: "a", 1: "b", 2: "c"}, name="GTSDB")


def names_of(dataset: DetectionDataset) -> list[str]:
    return [Path(record.image_path).name for record in dataset]


def test_gtsdb_split_is_the_official_one_by_frame_number():
    dataset = gtsdb_frames([*range(0, 40), *range(600, 610)])
    splits = split_dataset(dataset, "gtsdb:anywhere", seed=3, fractions=(0.6, 0.2, 0.2))
    assert names_of(splits["test"]) == [f"{frame:05d}.jpg" for frame in range(600, 610)]
    train_val = sorted(names_of(splits["train"]) + names_of(splits["val"]))
    assert train_val == [f"{frame:05d}.jpg" for frame in range(40)]
    assert (len(splits["train"]), len(splits["val"])) == (30, 10)  # 0.6 : 0.2 of the 40 training frames
    assert [{record.split for record in splits[name]} for name in ("train", "val", "test")] == \
        [{"train"}, {"val"}, {"test"}]
    assert "GTSDB official split" in splits.rule and "seed 3" in splits.rule
    # only the training frames (as many copies of GTSDB): test is carved from them, and the rule says so
    only_training = split_dataset(gtsdb_frames(list(range(40))), "gtsdb:anywhere", seed=3, fractions=(0.6, 0.2, 0.2))
    assert [len(only_training[name]) for name in ("train", "val", "test")] == [24, 8, 8]
    assert sorted(names_of(only_training["train"]) + names_of(only_training["val"]) + names_of(only_training["test"])) \
        == [f"{frame:05d}.jpg" for frame in range(40)]
    assert "no test frames (00600-00899) in the folder" in only_training.rule


def stratified_toy() -> DetectionDataset:
    # 60 images of "common", 20 with "rare" (5 of them also "common"), 4 with "rarest", 16 background
    return toy_dataset([[1]] * 60 + [[2]] * 15 + [[1, 2]] * 5 + [[3, 1]] * 4 + [[]] * 16)


def test_rarest_class_strata():
    strata = rarest_class_strata(stratified_toy())
    assert list(strata) == [3, 2, 1, None]  # rarest first, background last
    assert [len(indices) for indices in strata.values()] == [4, 20, 60, 16]


def test_seeded_split_is_deterministic_disjoint_covering_and_stratified():
    dataset = stratified_toy()
    splits = split_dataset(dataset, "coco:toy.json", seed=7, fractions=(0.5, 0.25, 0.25))
    parts = {name: names_of(part) for name, part in splits.items()}
    everything = [name for part in parts.values() for name in part]
    assert sorted(everything) == sorted(names_of(dataset)) and len(set(everything)) == len(dataset)
    assert [len(parts[name]) for name in ("train", "val", "test")] == [50, 25, 25]
    strata = {key: {names_of(dataset)[index] for index in indices}
              for key, indices in rarest_class_strata(dataset).items()}
    for name, share in zip(("train", "val", "test"), (0.5, 0.25, 0.25)):
        for key, members in strata.items():  # each stratum is divided in proportion, within one image
            assert abs(len(members & set(parts[name])) - share * len(members)) <= 1, (name, key)
    again = split_dataset(dataset, "coco:toy.json", seed=7, fractions=(0.5, 0.25, 0.25))
    assert {name: names_of(part) for name, part in again.items()} == parts
    other_seed = split_dataset(dataset, "coco:toy.json", seed=8, fractions=(0.5, 0.25, 0.25))
    assert names_of(other_seed["val"]) != parts["val"]
    assert "no official split" in splits.rule and "rarest class" in splits.rule


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.6, 0.3, 0.3), (1.2, -0.1, -0.1), (float("nan"), 0.5, 0.5)])
def test_split_fractions_must_be_three_shares_summing_to_one(fractions):
    with pytest.raises(ValueError, match="fractions must be three shares"):
        split_dataset(stratified_toy(), "coco:toy.json", fractions=fractions)


def test_few_shot_subsets_of_the_train_split_are_nested_and_leave_val_alone():
    splits = split_dataset(stratified_toy(), "coco:toy.json", seed=1)
    ten, fifty = (set(names_of(subset(splits["train"], size, seed=1))) for size in (10, 50))
    assert len(ten) == 10 and len(fifty) == 50 and ten < fifty
    assert not fifty & set(names_of(splits["val"])) and not fifty & set(names_of(splits["test"]))
    assert {1, 2, 3} <= {label for record in subset(splits["train"], 3, seed=1) for label in record.labels.tolist()}


# --- classes: the synonym table ---------------------------------------------------------------------

def test_synonym_table_knows_every_gtsdb_and_sign_world_class():
    canonical = set(CLASS_SYNONYMS)
    assert {canonical_name(name) for name, _ in GTSDB_CLASSES} <= canonical
    assert {canonical_name(sign.name) for sign in SIGN_CLASSES} == {sign.name for sign in SIGN_CLASSES} < canonical
    assert len({canonical_name(name) for name, _ in GTSDB_CLASSES}) == 43  # no two GTSDB classes merge


@pytest.mark.parametrize("name, canonical", [
    ("Yield", "give_way"), ("give way", "give_way"), (btsd_class_name(31), "give_way"),
    ("go right", "turn_right"), ("Turn right ahead", "turn_right"), ("Speed limit (30km/h)", "speed_limit_30"),
    ("speed limit 30", "speed_limit_30"), ("danger", "general_danger"), ("General caution", "general_danger"),
    ("DO NOT ENTER", "no_entry"), (btsd_class_name(39), "stop"), ("go straight", "ahead_only"),
    ("class 65 (red circle)", "class_65_red_circle"), ("Priority-Road ", "priority_road"),
])
def test_canonical_names(name, canonical):
    assert canonical_name(name) == canonical


def test_superclasses_of_the_sign_world_and_gtsdb_agree_on_every_shared_sign():
    gtsdb = {canonical_name(name): category for name, category in GTSDB_CLASSES}
    shared = [sign for sign in SIGN_CLASSES if sign.name in gtsdb]
    assert len(shared) == 13 and all(gtsdb[sign.name] == sign.superclass for sign in shared)
    assert canonical_superclass("Yield") == "other" and canonical_superclass("mandatory") == "mandatory"
    assert canonical_superclass("class 65 (red circle)") is None


def test_a_spelling_naming_two_signs_is_rejected(monkeypatch):
    monkeypatch.setitem(CLASS_SYNONYMS, "no_entry", ("no entry", "stop"))
    with pytest.raises(ValueError, match=r"'stop' names both 'stop' and 'no_entry'"):
        _build_index()


def test_canonical_classes_keeps_a_superclass_labelled_table_and_rejects_merged_signs():
    assert canonical_classes({1: "Danger", 2: "Other"}) == {1: "danger", 2: "other"}
    assert canonical_classes({0: "danger", 1: "stop"}) == {0: "general_danger", 1: "stop"}
    with pytest.raises(ValueError, match=r"classes 3 \('Yield'\) and 5 \('give way'\) are the same sign"):
        canonical_classes({3: "Yield", 5: "give way"})
    assert normalize_class_name("  Speed limit (30km/h) ") == "speed_limit_30km_h"


# --- classes: matching ------------------------------------------------------------------------------

SIGN_WORLD = {sign.id: sign.name for sign in SIGN_CLASSES}


def test_match_by_name_sign_world_to_gtsdb():
    classes, class_map = match_classes(SIGN_WORLD, GTSDB_CLASS_NAMES)
    assert len(classes) == len(class_map) == 43 and classes[34] == "turn_right"  # GTSDB id 33 is model class 34
    assert class_map[34] == 9 and class_map[15] == 10 and class_map[14] == 11  # turn_right, stop, give_way
    assert class_map[1] is None  # speed limit 20: the sign world has none, a fresh row
    assert sum(source is not None for source in class_map.values()) == 13


def test_match_by_name_gtsdb_to_the_german_sign_world_and_btsd_to_gtsdb():
    classes, class_map = match_classes(GTSDB_CLASS_NAMES, SIGN_WORLD)
    assert classes == SIGN_WORLD and class_map[9] == 34 and class_map[14] is None  # priority_road_ends: new
    btsd = {65: btsd_class_name(65), 31: btsd_class_name(31), 39: btsd_class_name(39)}
    _, class_map = match_classes(btsd, GTSDB_CLASS_NAMES)
    assert class_map[14] == 1 and class_map[15] == 2  # give way <- BTSD 31, stop <- BTSD 39 (model classes 1, 2)
    assert sum(source is not None for source in class_map.values()) == 2


def test_match_by_name_falls_back_to_a_superclass_labelled_source():
    _, class_map = match_classes(SUPERCLASS_CLASSES, GTSDB_CLASS_NAMES)
    assert class_map[1] == 1  # speed limit 20 <- the "prohibitory" row
    assert class_map[19] == 2  # GTSDB "danger" (general danger) <- the "danger" row
    assert class_map[34] == 3 and class_map[15] == 4  # go right <- mandatory, stop <- other


def test_model_classes_are_numbered_as_make_label_map_numbers_them():
    from tlutils.data.pipeline import make_label_map  # imports keras

    btsd = {65: btsd_class_name(65), -1: "undefined", 31: btsd_class_name(31)}
    classes, _ = match_classes(btsd, btsd)
    assert {model: canonical_name(btsd[dataset_id]) for dataset_id, model in make_label_map(btsd).items()} == classes


def test_match_by_superclass():
    gtsdb = DetectionDataset([], GTSDB_CLASS_NAMES, GTSDB_SUPERCLASS_OF)
    only_two = {36: btsd_class_name(36), 2: btsd_class_name(2), -1: "undefined"}  # red circle, triangle
    classes, class_map = match_classes(only_two, gtsdb, mode="superclass")
    assert classes == SUPERCLASS_CLASSES == {1: "prohibitory", 2: "danger", 3: "mandatory", 4: "other"}
    assert class_map == {1: None, 2: None, 3: None, 4: None}  # names say nothing: BTSD names are ids
    btsd_dataset = DetectionDataset([], only_two, {36: "prohibitory", 2: "danger", -1: None})
    assert match_classes(btsd_dataset, gtsdb, mode="superclass")[1] == {1: 1, 2: 2, 3: None, 4: None}
    assert match_classes(SIGN_WORLD, gtsdb, mode="superclass")[1] == {1: 1, 2: 2, 3: 3, 4: 4}
    with pytest.raises(ValueError, match="mode must be"):
        match_classes(SIGN_WORLD, gtsdb, mode="shape")  # type: ignore[arg-type]


def test_relabel_by_superclass():
    records = [
        DetectionRecord("a.png", 50, 50, [[0, 0, 5, 5], [5, 5, 9, 9]], [1, 33], ["x", "y"], ["prohibitory", "mandatory"]),
        DetectionRecord("b.png", 50, 50, [[0, 0, 5, 5]], [14], ["z"], ["other"]),
        DetectionRecord("c.png", 50, 50, [[0, 0, 5, 5], [1, 1, 4, 4]], [18, -1], ["w", "?"], ["danger", None]),
        DetectionRecord("d.png", 50, 50, np.zeros((0, 4)), [], [], []),
    ]
    dataset = DetectionDataset(records, {1: "x", 33: "y", 14: "z", 18: "w", -1: "?"}, name="mixed")
    with pytest.warns(UserWarning, match="1 images hold boxes without a superclass"):
        relabelled = relabel_by_superclass(dataset)
    assert relabelled.classes == SUPERCLASS_CLASSES and relabelled.superclass_of == SUPERCLASS_CLASSES
    assert [record.image_path for record in relabelled] == ["a.png", "b.png", "d.png"]
    assert relabelled[0].labels.tolist() == [1, 3] and relabelled[0].class_names == ("prohibitory", "mandatory")
    assert relabelled[1].labels.tolist() == [4] and relabelled.name == "mixed by superclass"
    assert len(relabelled.skipped) == 1 and relabelled.skipped[0].file == "c.png"
    assert "boxes [1] (classes [-1]) have no superclass" in relabelled.skipped[0].reason
    with pytest.raises(ValueError, match=r"mixed: c\.png: record 2"):
        relabel_by_superclass(dataset, unknown="raise")


# --- the real data in ../shared ---------------------------------------------------------------------

def shared_data() -> Path:
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def test_real_gtsdb_training_frames_through_a_spec():
    root = shared_data() / "gtsdb-train"
    if not (root / "gt.txt").is_file():
        pytest.skip(f"{root} is not present")
    with pytest.raises(AnnotationError, match=r"line 535: same image.*on_error=skip"):
        load_spec(f"gtsdb:{root}")
    spec = f"gtsdb:{root},on_error=skip"
    start = time.perf_counter()
    with pytest.warns(UserWarning, match="skipped 1 bad items"):
        dataset = load_spec(spec)
    seconds = time.perf_counter() - start
    assert (len(dataset), dataset.num_boxes) == (600, 851) and seconds < 30  # image headers only
    with pytest.warns(UserWarning, match="skipped 1 bad items"):
        direct = load_gtsdb(root, on_error="skip")
    assert fingerprint(dataset, spec) == fingerprint(direct, spec)
    splits = split_dataset(dataset, spec, seed=0, fractions=(0.8, 0.2, 0.0))
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (480, 120, 0)
    assert not set(names_of(splits["train"])) & set(names_of(splits["val"]))
    _, class_map = match_classes(SIGN_WORLD, dataset)
    assert class_map[34] == 9


def test_real_btsd_annotations_through_a_spec():
    annotations = shared_data() / "btsd-annotations" / "BTSD_training_GTclear.txt"
    if not annotations.is_file():
        pytest.skip(f"{annotations} is not present")
    dataset = load_spec(f"btsd:{annotations}")
    assert (len(dataset), dataset.num_boxes) == (5905, 8851)  # the readme's counts
    with pytest.warns(UserWarning, match="boxes without a superclass"):
        relabelled = relabel_by_superclass(dataset)
    kept = [record for record in dataset if None not in record.superclasses]
    assert len(relabelled) == len(kept) and relabelled.num_boxes == sum(record.num_boxes for record in kept)
    assert relabelled.superclass_counts() == {name: count for name, count in dataset.with_records(kept)
                                              .superclass_counts().items()}
