"""DetectionRecord, DetectionDataset, box checks and image decoding (load_image)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from tlutils.data.records import (
    SUPERCLASSES, AnnotationError, DetectionDataset, DetectionRecord, ImageReadError, IssueLog, SkippedItem,
    check_box, load_image, read_image_size,
)


def make_record(path="a.png", boxes=((10, 20, 30, 60),), labels=(3,), **overrides) -> DetectionRecord:
    fields = dict(
        image_path=path, width=100, height=80, boxes=boxes, labels=labels,
        class_names=["speed limit 60"] * len(labels), superclasses=["prohibitory"] * len(labels),
        country="Germany", split="train",
    )
    fields.update(overrides)
    return DetectionRecord(**fields)


def test_record_coerces_types_and_normalizes():
    record = make_record()
    assert record.boxes.dtype == np.float32 and record.boxes.shape == (1, 4)
    assert record.labels.dtype == np.int64 and record.labels.tolist() == [3]
    assert record.class_names == ("speed limit 60",) and record.superclasses == ("prohibitory",)
    np.testing.assert_allclose(record.normalized_boxes(), [[0.1, 0.25, 0.3, 0.75]], rtol=1e-6)
    assert record.normalized_boxes().dtype == np.float32
    assert not record.is_background and record.difficult is None


def test_background_record_has_empty_arrays():
    record = make_record(boxes=[], labels=[], class_names=[], superclasses=[])
    assert record.boxes.shape == (0, 4) and record.labels.shape == (0,)
    assert record.is_background and record.normalized_boxes().shape == (0, 4)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(boxes=[[1, 2, 3]]), "shape"),
        (dict(labels=[1, 2]), "lengths"),
        (dict(superclasses=["round"]), "superclasses"),
        (dict(difficult=[True, False]), "lengths"),
        (dict(width=0), "size"),
    ],
)
def test_record_rejects_inconsistent_fields(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_record(**overrides)


def test_dataset_counts_summary_and_slicing():
    records = [
        make_record("a.png", boxes=[[1, 1, 5, 5], [6, 6, 9, 9]], labels=[3, 14],
                    class_names=["speed limit 60", "stop"], superclasses=["prohibitory", "other"]),
        make_record("b.png", boxes=[], labels=[], class_names=[], superclasses=[]),
        make_record("c.png", labels=[3]),
    ]
    dataset = DetectionDataset(records, {3: "speed limit 60", 14: "stop", 20: "bend right"},
                               {3: "prohibitory", 14: "other", 20: "danger"}, name="toy",
                               skipped=[SkippedItem("gt.txt", 7, "box has zero area")])
    assert len(dataset) == 3 and dataset[1].image_path == "b.png" and dataset.num_boxes == 3
    assert dataset.box_counts() == {3: 2, 14: 1, 20: 0}
    assert dataset.superclass_counts() == {"prohibitory": 2, "other": 1}
    summary = dataset.summary()
    assert "3 images (1 background), 3 boxes, 2 of 3 classes present" in summary
    assert "prohibitory: 2" in summary and "skipped: 1 bad items" in summary and "gt.txt, line 7" in summary
    assert repr(dataset) == "<DetectionDataset 'toy': 3 images, 3 boxes, 3 classes, 1 skipped>"
    head = dataset[:2]
    assert isinstance(head, DetectionDataset) and len(head) == 2 and head.classes == dataset.classes


def test_dataset_rejects_labels_missing_from_class_table():
    with pytest.raises(ValueError, match=r"labels \[3\]"):
        DetectionDataset([make_record()], {14: "stop"})


def test_superclasses_are_the_gtsdb_categories():
    assert SUPERCLASSES == ("prohibitory", "danger", "mandatory", "other")


def test_check_box_clips_within_tolerance_and_rejects_beyond():
    np.testing.assert_allclose(check_box([-1.45, 15.3, 179.7, 422.6], 1628, 1236, "f.txt", 3),
                               [0.0, 15.3, 179.7, 422.6])
    with pytest.raises(AnnotationError, match=r"f\.txt, line 3: .*outside the 100x80 image"):
        check_box([10, 10, 103, 50], 100, 80, "f.txt", 3)
    with pytest.raises(AnnotationError, match="zero area"):
        check_box([10, 10, 10, 50], 100, 80, "f.txt", 4)
    with pytest.raises(AnnotationError, match="entirely outside"):
        check_box([100, 10, 101.5, 50], 100, 80, "f.txt", 5)


def test_check_box_names_inverted_corners_with_their_values():
    with pytest.raises(AnnotationError, match=r"f\.txt, line 6: .* has inverted corners: xmax 10 < xmin 20$"):
        check_box([20, 10, 10, 50], 100, 80, "f.txt", 6)
    with pytest.raises(AnnotationError, match=r"inverted corners: xmax 30 < xmin 40, ymax 5 < ymin 50$"):
        check_box([40, 50, 30, 5], 100, 80, "f.txt", 7)


def test_issue_log_raises_or_collects_and_warns_once():
    error = AnnotationError("bad class", "gt.txt", 2)
    with pytest.raises(AnnotationError, match="gt.txt, line 2: bad class"):
        IssueLog("raise").report(error)
    log = IssueLog("skip")
    log.report(error)
    log.report(AnnotationError("zero area", "gt.txt", 5))
    assert log.skipped == [SkippedItem("gt.txt", 2, "bad class"), SkippedItem("gt.txt", 5, "zero area")]
    with pytest.warns(UserWarning, match="skipped 2 bad items"):
        log.warn_if_skipped("toy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        IssueLog("skip").warn_if_skipped("toy")  # nothing skipped, nothing said
    with pytest.raises(ValueError, match="on_error"):
        IssueLog("ignore")


def test_issue_log_refuses_an_empty_result_unless_allowed():
    log = IssueLog("skip")
    log.report(AnnotationError("zero area", "gt.txt", 5))
    with pytest.raises(AnnotationError, match=r"^gt\.txt: toy: no images left after skipping 1 bad items "
                                              r"\(first: gt\.txt, line 5: zero area\).*allow_empty=True"):
        log.dataset([], {1: "stop"}, {}, name="toy", source="gt.txt")
    with pytest.warns(UserWarning, match="toy: skipped 1 bad items"):
        dataset = log.dataset([], {1: "stop"}, {}, name="toy", source="gt.txt", allow_empty=True)
    assert len(dataset) == 0 and dataset.skipped == log.skipped and dataset.name == "toy"


# --- load_image: every pixel format becomes (H, W, 3) uint8 RGB ---------------------------------------

def test_load_image_rgb_round_trip(tmp_path, rng):
    pixels = rng.integers(0, 256, size=(6, 9, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    got = load_image(tmp_path / "rgb.png")
    assert got.dtype == np.uint8 and got.shape == (6, 9, 3)
    np.testing.assert_array_equal(got, pixels)


def test_load_image_converts_grayscale_rgba_palette_and_16_bit(tmp_path):
    grey = np.array([[0, 128], [200, 255]], dtype=np.uint8)
    Image.fromarray(grey, mode="L").save(tmp_path / "grey.png")
    np.testing.assert_array_equal(load_image(tmp_path / "grey.png"), np.repeat(grey[:, :, None], 3, axis=2))

    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 10  # red, nearly transparent: alpha is dropped, colour kept
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(load_image(tmp_path / "rgba.png")[0, 0], [255, 0, 0])

    deep = np.array([[0, 257], [32896, 65535]], dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")  # really stored as 16 bit
    got = load_image(tmp_path / "deep.png")
    assert got.dtype == np.uint8 and got.shape == (2, 2, 3)
    np.testing.assert_array_equal(got[..., 0], [[0, 1], [128, 255]])

    palette = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), mode="P")
    palette.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    palette.save(tmp_path / "palette.png")
    np.testing.assert_array_equal(load_image(tmp_path / "palette.png")[0], [[0, 0, 255], [0, 255, 0]])


def test_load_image_errors_name_the_file(tmp_path, rng):
    with pytest.raises(ImageReadError, match=r"missing\.png: image file not found"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageReadError, match=r"notes\.png: not an image"):
        load_image(tmp_path / "notes.png")
    Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.jpg: unreadable or truncated"):
        load_image(tmp_path / "cut.jpg")
    assert issubclass(ImageReadError, ValueError)


def test_load_image_checks_the_record_size(tmp_path):
    Image.new("RGB", (100, 80)).save(tmp_path / "a.png")
    assert load_image(make_record(str(tmp_path / "a.png"))).shape == (80, 100, 3)
    with pytest.raises(ImageReadError, match="record says 120x80"):
        load_image(make_record(str(tmp_path / "a.png"), width=120))


def test_read_image_size_catches_truncated_ppm_and_png(tmp_path, rng):
    pixels = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    for suffix in (".ppm", ".png"):
        Image.fromarray(pixels).save(tmp_path / f"full{suffix}")
        assert read_image_size(tmp_path / f"full{suffix}") == (30, 20)
        data = (tmp_path / f"full{suffix}").read_bytes()
        (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) - 40])
        with pytest.raises(ImageReadError, match=rf"cut\{suffix}: truncated"):
            read_image_size(tmp_path / f"cut{suffix}")


def test_importing_tlutils_data_imports_nothing_heavy():
    code = (
        "import sys, tlutils.data as d; "
        "assert not any(m in sys.modules for m in ('tlutils.data.synth', 'tlutils.data.augment', "
        "'tlutils.data.pipeline', 'keras', 'tensorflow')), sorted(sys.modules); "
        "assert d.DetectionRecord.__name__ == 'DetectionRecord'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_name_tlutils_data_exports_resolves():
    import tlutils.data

    for name in tlutils.data.__all__:
        assert getattr(tlutils.data, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'load_kitti'"):
        tlutils.data.load_kitti  # noqa: B018
