"""YOLO export (``tlutils.data.export``): a hand-worked label file, exact round trips through ``load_yolo``
and the ``yolo:`` spec, the errors that stop an export, the sign-world stand-ins in two labelling-tool
formats and in the two benchmarks' formats, and how notebook 01's data parameters pick their data."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlutils.data import DetectionDataset, DetectionRecord, load_spec, load_yolo, synth_dataset
from tlutils.data.export import benchmark_format_example, benchmark_spec, export_yolo, real_format_example, yolo_spec
from tlutils.data.pipeline import make_label_map

#: Boxes come back from the normalized text within this many pixels (8 decimals of a side, float32 boxes).
PIXEL_TOLERANCE = 1e-3


def record(folder: Path, name: str, size: tuple[int, int], boxes, labels, classes) -> DetectionRecord:
    """A record of a black image written to ``folder/name``."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size).save(folder / name)
    return DetectionRecord(str(folder / name), *size, np.asarray(boxes, dtype=np.float32).reshape(-1, 4), labels,
                           [classes[label] for label in labels], [None] * len(labels))


@pytest.fixture
def dataset(tmp_path) -> DetectionDataset:
    """Three images: fractional boxes, a class id gap and a class without boxes, a background image."""
    classes = {3: "stop", 7: "give way", 10: "no entry"}  # 10 has no box: it stays in the class table
    source = tmp_path / "source"
    records = [
        record(source, "a.png", (100, 50), [[10, 5, 30, 25], [0.5, 1.25, 99.75, 50]], [7, 3], classes),
        record(source, "b.jpg", (64, 80), [[12.3, 40.7, 20.1, 79.9]], [3], classes),
        record(source, "c.png", (40, 40), [], [], classes),
    ]
    return DetectionDataset(records, classes, name="hand-made")


def test_a_label_file_worked_by_hand(dataset, tmp_path):
    images = export_yolo(dataset, tmp_path / "out")
    # a.png is 100 x 50: box (10, 5, 30, 25) of class 7 (YOLO id 1) has centre (20, 15), size 20 x 20
    # -> 0.2 0.3 0.2 0.4; box (0.5, 1.25, 99.75, 50) of class 3 (YOLO id 0) -> centre (50.125, 25.625),
    # size 99.25 x 48.75 -> 0.50125 0.5125 0.9925 0.975
    assert (tmp_path / "out" / "labels" / "a.txt").read_text() == (
        "1 0.20000000 0.30000000 0.20000000 0.40000000\n"
        "0 0.50125000 0.51250000 0.99250000 0.97500000\n")
    assert (tmp_path / "out" / "labels" / "c.txt").read_text() == ""  # background: an empty label file
    assert (tmp_path / "out" / "classes.txt").read_text() == "stop\ngive way\nno entry\n"  # ids 3, 7, 10 -> 0, 1, 2
    assert images == tmp_path / "out" / "images"
    assert sorted(path.name for path in images.iterdir()) == ["a.png", "b.jpg", "c.png"]
    assert (images / "b.jpg").read_bytes() == Path(dataset[1].image_path).read_bytes()  # copied, not re-encoded


def _same_records(loaded: DetectionDataset, original: DetectionDataset) -> None:
    by_name = {Path(item.image_path).name: item for item in loaded}
    assert sorted(by_name) == sorted(Path(item.image_path).name for item in original)
    for item in original:
        back = by_name[Path(item.image_path).name]
        assert (back.width, back.height) == (item.width, item.height)
        np.testing.assert_allclose(back.boxes, item.boxes, rtol=0, atol=PIXEL_TOLERANCE)
        assert back.class_names == item.class_names


def test_the_export_reads_back_through_load_yolo_and_the_yolo_spec(dataset, tmp_path):
    images = export_yolo(dataset, tmp_path / "out")
    direct = load_yolo(images, tmp_path / "out" / "classes.txt", tmp_path / "out" / "labels")
    by_spec = load_spec(yolo_spec(tmp_path / "out"))
    for loaded in (direct, by_spec):
        _same_records(loaded, dataset)
        assert loaded.classes == {0: "stop", 1: "give way", 2: "no entry"}
        # the model classes (ascending ids) name the same classes as the original's
        assert [loaded.classes[i] for i in make_label_map(loaded.classes)] == \
               [dataset.classes[i] for i in make_label_map(dataset.classes)]


def test_exporting_again_overwrites_its_own_files(dataset, tmp_path):
    export_yolo(dataset, tmp_path / "out")
    export_yolo(dataset, tmp_path / "out")
    _same_records(load_spec(yolo_spec(tmp_path / "out")), dataset)


@pytest.mark.parametrize("breakage, message", [
    ("same stem", "records 0 and 3 both name an image a"),
    ("wrong size", r"record 0: .*a.png is 100x50 pixels, the record says 99x50"),
    ("class name", "class 3 has the name 'two\\\\nlines'"),
    ("foreign file", r"holds 1 files this export does not write \(old.txt\)"),
    ("suffix", r"record 0: image 'a.gif' is not a file load_yolo reads"),
])
def test_a_bad_export_says_why_and_writes_nothing(dataset, tmp_path, breakage, message):
    records, classes = list(dataset), dict(dataset.classes)
    out = tmp_path / "out"
    if breakage == "same stem":
        records.append(record(tmp_path / "elsewhere", "a.jpg", (8, 8), [], [], classes))
    elif breakage == "wrong size":
        first = records[0]
        records[0] = DetectionRecord(first.image_path, 99, 50, first.boxes, first.labels, first.class_names,
                                     first.superclasses)
    elif breakage == "class name":
        classes[3] = "two\nlines"
    elif breakage == "foreign file":
        (out / "labels").mkdir(parents=True)
        (out / "labels" / "old.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    elif breakage == "suffix":
        records[0] = record(tmp_path / "gif", "a.gif", (100, 50), [], [], classes)
    with pytest.raises(ValueError, match=message):
        export_yolo(DetectionDataset(records, classes), out)
    assert not (out / "images").exists() and not (out / "classes.txt").exists()


def test_the_sign_world_example_is_the_same_data_as_coco_and_as_yolo(tmp_path):
    example = real_format_example("germany", 6, 128, data_dir=tmp_path)
    folder = tmp_path.resolve() / "real-format-example" / "germany_6x128_s0"
    assert example.coco == f"coco:{folder / 'coco' / 'annotations.json'}"
    assert example.yolo == f"yolo:{folder / 'yolo' / 'images'},labels={folder / 'yolo' / 'labels'}"
    coco, yolo = load_spec(example.coco), load_spec(example.yolo)
    assert len(coco) == 6 and coco.num_boxes > 0
    _same_records(yolo, coco)
    stamp = (folder / "yolo" / "classes.txt").stat().st_mtime_ns
    assert real_format_example("germany", 6, 128, data_dir=tmp_path) == example  # made once, then reused
    assert (folder / "yolo" / "classes.txt").stat().st_mtime_ns == stamp
    assert sorted(path.name for path in folder.iterdir()) == ["coco", "yolo"]  # no side folder left behind


def test_the_benchmark_stand_in_holds_the_sign_world_frames_in_gtsdb_and_btsd_format(tmp_path):
    example = benchmark_format_example("germany", 3, 128, data_dir=tmp_path)
    folder = tmp_path.resolve() / "real-format-example" / "germany_3x128_benchmarks"
    assert example == (f"gtsdb:{folder / 'gtsdb'}", f"btsd:{folder / 'BTSD_training_GTclear.txt'}")
    frames = synth_dataset("germany", "val", 3, 128, tmp_path)
    gtsdb, btsd = load_spec(example.gtsdb), load_spec(example.btsd)
    assert len(gtsdb) == 3 and gtsdb.num_boxes == btsd.num_boxes == frames.num_boxes > 0
    x0, y0, x1, y1 = frames[0].boxes[0].astype(int).tolist()
    first_line = (folder / "gtsdb" / "gt.txt").read_text().splitlines()[0]
    assert first_line.split(";")[:5] == ["00000.ppm", str(x0), str(y0), str(x1 - 1), str(y1 - 1)]  # inclusive
    for loaded in (gtsdb, btsd):  # every sign keeps its pixels and its superclass
        boxes = np.concatenate([record.boxes for record in loaded])
        np.testing.assert_array_equal(boxes, np.concatenate([record.boxes.astype(int) for record in frames]))
        assert [s for record in loaded for s in record.superclasses] == [
            s for record in frames for s in record.superclasses]
    assert benchmark_format_example("germany", 3, 128, data_dir=tmp_path) == example  # made once, then reused
    assert sorted(path.name for path in folder.parent.iterdir()) == ["germany_3x128_benchmarks"]


def test_a_benchmark_parameter_is_the_users_spec_else_the_shared_sample_else_the_stand_in(tmp_path):
    stand_in = benchmark_format_example("germany", 6, 400, data_dir=tmp_path / "data")
    shared = tmp_path / "shared" / "data"
    shutil.copytree(stand_in.gtsdb.removeprefix("gtsdb:"), shared / "gtsdb-sample")  # a shared folder without BTSD
    assert benchmark_spec("GTSDB_DATA", None, "gtsdb", shared, tmp_path / "data") == f"gtsdb:{shared / 'gtsdb-sample'}"
    assert benchmark_spec("BTSD_DATA", None, "btsd", shared, tmp_path / "data") == stand_in.btsd
    assert benchmark_spec("GTSDB_DATA", None, "gtsdb", None, tmp_path / "data") == stand_in.gtsdb
    mine = f"gtsdb:{shared / 'gtsdb-sample'}/,on_error=skip"
    assert benchmark_spec("GTSDB_DATA", mine, "gtsdb", None) == f"gtsdb:{shared / 'gtsdb-sample'},on_error=skip"


@pytest.mark.parametrize("parameter, value, format_name, error, message", [
    ("GTSDB_DATA", "gtsdb:{tmp}/nowhere", "gtsdb", FileNotFoundError, r"GTSDB_DATA = .*nowhere/gt\.txt does not exist"),
    ("BTSD_DATA", "btsd:{tmp}/BTSD_training_GTclear.txt", "btsd", FileNotFoundError,
     r"BTSD_DATA = .*BTSD_training_GTclear\.txt does not exist"),
    ("BTSD_DATA", "btsd:{btsd},images={tmp}/no-images", "btsd", FileNotFoundError, r"BTSD_DATA = .*no-images does not"),
    ("BTSD_DATA", "coco:{btsd}", "btsd", ValueError, r"BTSD_DATA = .* is coco data: BTSD_DATA takes a data spec btsd:"),
    ("GTSDB_DATA", "{tmp}/gtsdb", "gtsdb", ValueError, r"GTSDB_DATA = .*has no format.*\n(.*\n)*GTSDB_DATA takes"),
])
def test_a_benchmark_parameter_that_names_nothing_says_which_parameter(tmp_path, parameter, value, format_name,
                                                                     error, message):
    btsd = tmp_path / "mine.txt"
    btsd.write_text("01/image.000000.jp2;10;10;20;20;65;2;\n")
    with pytest.raises(error, match=message):
        benchmark_spec(parameter, value.format(tmp=tmp_path, btsd=btsd), format_name)
