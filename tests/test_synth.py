"""Tests of the embedded sign world (``tlutils.data.synth``): determinism, COCO output, tight boxes, sets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tlutils.data.synth.sets
from tlutils.data.synth import (
    COUNTRIES,
    COUNTRY_SHIFT,
    GENERATOR_VERSION,
    MIN_BOX_SIZE,
    SIGN_CLASSES,
    WORLD_SEEDS,
    generate,
    image_rng,
    render_scene,
    render_sign,
    synth_dataset,
)
from tlutils.data.synth.sets import STALE_PARTIAL_SECONDS, remove_stale_partials
from tlutils.plotting import save_gallery

SUPERCLASSES = ("prohibitory", "danger", "mandatory", "other")  # as tlutils.data.records.SUPERCLASSES
COUNTRY_ONLY = {"priority_road_ends": "germany"}


def _scenes(country: str, count: int, size: int, seed: int = 0, **options):
    return [render_scene(country, image_rng(seed, country, i), size, **options) for i in range(count)]


def _files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


# --- tables -------------------------------------------------------------------------------------------
def test_class_table_is_ordered_from_one_with_gtsdb_superclasses():
    assert [c.id for c in SIGN_CLASSES] == list(range(1, len(SIGN_CLASSES) + 1))
    assert 10 <= len(SIGN_CLASSES) <= 14
    assert {c.superclass for c in SIGN_CLASSES} == set(SUPERCLASSES)
    assert len({c.name for c in SIGN_CLASSES}) == len(SIGN_CLASSES)


def test_countries_grade_the_shift_and_list_valid_classes():
    assert COUNTRY_SHIFT == {"belgium": "source", "germany": "near", "sweden": "medium", "usa": "large"}
    ids = {c.id for c in SIGN_CLASSES}
    for name, style in COUNTRIES.items():
        assert style.name == name
        assert set(style.classes) <= ids and len(style.classes) >= 10
    by_name = {c.name: c.id for c in SIGN_CLASSES}
    for class_name, country in COUNTRY_ONLY.items():
        assert [n for n, s in COUNTRIES.items() if by_name[class_name] in s.classes] == [country]


# --- determinism --------------------------------------------------------------------------------------
def test_generate_is_byte_identical_for_the_same_arguments(tmp_path):
    first = generate("germany", 4, tmp_path / "a", seed=3, image_size=96)
    second = generate("germany", 4, tmp_path / "b", seed=3, image_size=96)
    assert first.name == "annotations.json"
    files = _files(tmp_path / "a")
    assert len(files) == 5 and files == _files(tmp_path / "b")


def test_a_different_seed_gives_different_images(tmp_path):
    generate("belgium", 3, tmp_path / "a", seed=0, image_size=96)
    generate("belgium", 3, tmp_path / "b", seed=1, image_size=96)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert all(a[name] != b[name] for name in a if name.endswith(".png"))


def test_first_images_do_not_depend_on_the_number_of_images(tmp_path):
    small = json.loads(generate("sweden", 3, tmp_path / "small", seed=5, image_size=96).read_text())
    large = json.loads(generate("sweden", 7, tmp_path / "large", seed=5, image_size=96).read_text())
    for image in small["images"]:
        name = image["file_name"]
        assert (tmp_path / "small" / name).read_bytes() == (tmp_path / "large" / name).read_bytes()
    first_ids = {image["id"] for image in small["images"]}
    assert small["annotations"] == [a for a in large["annotations"] if a["image_id"] in first_ids]


def test_render_scene_is_deterministic_for_a_seeded_generator():
    a = render_scene("usa", np.random.default_rng(11), 128)
    b = render_scene("usa", np.random.default_rng(11), 128)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# --- COCO output --------------------------------------------------------------------------------------
@pytest.mark.parametrize("country", sorted(COUNTRIES))
def test_coco_json_is_valid_for_every_country(tmp_path, country):
    size = 128
    coco = json.loads(generate(country, 8, tmp_path, seed=2, image_size=size).read_text())
    style = COUNTRIES[country]
    assert coco["info"]["country"] == country and coco["info"]["seed"] == 2
    assert coco["info"]["shift"] == COUNTRY_SHIFT[country] and coco["info"]["version"]
    assert [c["id"] for c in coco["categories"]] == list(style.classes)
    for category in coco["categories"]:
        sign = SIGN_CLASSES[category["id"] - 1]
        assert (category["name"], category["supercategory"]) == (sign.name, sign.superclass)
    assert [image["id"] for image in coco["images"]] == list(range(1, 9))
    for image in coco["images"]:
        assert (image["width"], image["height"]) == (size, size)
        with Image.open(tmp_path / image["file_name"]) as png:
            assert png.size == (size, size) and png.mode == "RGB"
    image_ids = {image["id"] for image in coco["images"]}
    assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"])
    for annotation in coco["annotations"]:
        x, y, w, h = annotation["bbox"]
        assert annotation["image_id"] in image_ids and annotation["iscrowd"] == 0
        assert annotation["category_id"] in style.classes
        assert x >= 0 and y >= 0 and x + w <= size and y + h <= size
        assert w >= MIN_BOX_SIZE and h >= MIN_BOX_SIZE and annotation["area"] == pytest.approx(w * h)


def test_annotations_are_the_boxes_of_render_scene(tmp_path):
    coco = json.loads(generate("belgium", 5, tmp_path, seed=4, image_size=96).read_text())
    for index in range(5):
        pixels, boxes, labels = render_scene("belgium", image_rng(4, "belgium", index), 96)
        with Image.open(tmp_path / f"belgium_{index:06d}.png") as png:
            np.testing.assert_array_equal(np.asarray(png), pixels)
        rows = [a for a in coco["annotations"] if a["image_id"] == index + 1]
        written = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in rows)]).reshape(-1, 4)
        np.testing.assert_allclose(written, boxes)
        assert [a["category_id"] for a in rows] == labels.tolist()


def test_country_only_class_appears_only_in_its_country():
    only = {c.id for c in SIGN_CLASSES if c.name in COUNTRY_ONLY}
    seen = {country: set() for country in COUNTRIES}
    for country in COUNTRIES:
        for _, _, labels in _scenes(country, 40, 64):
            seen[country].update(labels.tolist())
    assert only <= seen["germany"]
    assert all(not (only & labels) for country, labels in seen.items() if country != "germany")
    assert all(labels <= set(COUNTRIES[c].classes) for c, labels in seen.items())


# --- boxes --------------------------------------------------------------------------------------------
def test_boxes_are_tight_around_the_sign_pixels():
    """Without camera effects, the pixels that the signs change are exactly the pixels in the boxes."""
    checked = 0
    for index in range(25):
        with_signs, boxes, _ = render_scene("germany", image_rng(9, "germany", index), 160, photometric=False)
        without, _, _ = render_scene("germany", image_rng(9, "germany", index), 160, photometric=False,
                                     with_signs=False)
        changed = np.any(with_signs != without, axis=2)
        inside = np.zeros_like(changed)
        for x0, y0, x1, y1 in boxes.astype(int):
            inside[max(0, y0 - 1):y1 + 1, max(0, x0 - 1):x1 + 1] = True  # 1 px of anti-aliased edge
            sign = changed[y0:y1, x0:x1]
            # Each side of the box touches changed pixels (at most 1 px inside): the box is not loose.
            assert sign[:2].any() and sign[-2:].any() and sign[:, :2].any() and sign[:, -2:].any()
            assert sign.mean() > 0.3
            checked += 1
        assert not (changed & ~inside).any(), f"sign pixels outside the boxes in scene {index}"
    assert checked >= 20


def test_signs_stand_out_from_the_scene_after_camera_effects():
    for index in range(8):
        with_signs, boxes, _ = render_scene("sweden", image_rng(1, "sweden", index), 128)
        without, _, _ = render_scene("sweden", image_rng(1, "sweden", index), 128, with_signs=False)
        difference = np.abs(with_signs.astype(int) - without.astype(int)).sum(axis=2)
        inside = np.zeros(difference.shape, dtype=bool)
        for x0, y0, x1, y1 in boxes.astype(int):
            inside[y0:y1, x0:x1] = True
        if inside.any():
            assert difference[inside].mean() > 10 * max(1.0, difference[~inside].mean())


def test_sign_counts_and_sizes_span_the_range():
    counts, sides = [], []
    for country in ("belgium", "usa"):
        for _, boxes, _ in _scenes(country, 40, 160):
            counts.append(len(boxes))
            sides.extend(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]).tolist())
    counts_array = np.array(counts)
    assert 0 < (counts_array == 0).sum() < 0.4 * len(counts)  # some images have no sign
    assert counts_array.max() <= 6 and (counts_array >= 3).any()
    assert min(sides) < 16 and max(sides) > 0.4 * 160  # small far signs and close-ups


@pytest.mark.parametrize("country", sorted(COUNTRIES))
def test_every_country_renders_every_class(country):
    pixels, boxes, labels = render_scene(country, np.random.default_rng(0), 64)
    assert pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8 and pixels.std() > 5
    assert boxes.dtype == np.float32 and boxes.shape == (len(labels), 4) and labels.dtype == np.int64
    for class_id in COUNTRIES[country].classes:
        drawing = render_sign(country, class_id, 48)
        assert drawing.shape[0] == 48 and drawing.shape[2] == 4
        alpha = drawing[:, :, 3]
        assert alpha.max() == 255 and alpha.min() == 0  # opaque sign, transparent corners
    if country != "germany":
        with pytest.raises(ValueError, match="does not exist"):
            render_sign(country, "priority_road_ends")


def test_countries_draw_the_same_class_differently():
    drawings = {c: render_sign(c, "speed_limit_50", 64).astype(int) for c in COUNTRIES}
    assert np.abs(drawings["belgium"] - drawings["germany"]).mean() > 3  # near: font, ring, red
    fill = {c: drawings[c][14, 32, :3] for c in ("belgium", "sweden")}  # inside the ring, above the digits
    assert fill["belgium"].min() > 200  # white
    assert fill["sweden"][0] > 200 and fill["sweden"][2] < 100  # yellow
    assert drawings["usa"].shape[1] < 64  # a tall white rectangle, not a disc


# --- input checking -----------------------------------------------------------------------------------
@pytest.mark.parametrize("arguments, message", [
    ({"country": "atlantis"}, "belgium"),
    ({"num_images": -1}, "num_images"),
    ({"image_size": 32}, "image_size must be between 64"),
    ({"image_size": 100.5}, "image_size must be an integer"),
    ({"seed": -3}, "seed"),
])
def test_generate_rejects_bad_input(tmp_path, arguments, message):
    options = {"country": "belgium", "num_images": 1, "out_dir": tmp_path, "seed": 0, "image_size": 64}
    with pytest.raises(ValueError, match=message):
        generate(**{**options, **arguments})
    assert not (tmp_path / "annotations.json").exists()


def test_render_scene_rejects_bad_input():
    with pytest.raises(ValueError, match="usa"):
        render_scene("france", np.random.default_rng(0), 128)
    with pytest.raises(ValueError, match="Generator"):
        render_scene("belgium", 0, 128)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown sign class"):
        render_sign("belgium", 99)


def test_zero_images_writes_an_empty_dataset(tmp_path):
    coco = json.loads(generate("usa", 0, tmp_path, seed=0, image_size=64).read_text())
    assert coco["images"] == [] and coco["annotations"] == [] and len(coco["categories"]) == 12


# --- files and figures --------------------------------------------------------------------------------
@pytest.mark.parametrize("country, size", [("usa", 64), ("sweden", 160)])
def test_generated_png_decodes_to_exactly_the_rendered_pixels(tmp_path, country, size):
    generate(country, 3, tmp_path, seed=7, image_size=size)
    for index in range(3):
        pixels, _, _ = render_scene(country, image_rng(7, country, index), size)
        with Image.open(tmp_path / f"{country}_{index:06d}.png") as png:
            assert png.format == "PNG" and png.mode == "RGB"
            np.testing.assert_array_equal(np.asarray(png), pixels)


def test_save_gallery_writes_a_grid(tmp_path):
    path = save_gallery(tmp_path / "gallery.png", countries=["belgium", "usa"], per_country=2, image_size=64)
    with Image.open(path) as png:
        width, height = png.size
    assert path.exists() and width > 300 and height > 300
    with pytest.raises(ValueError, match="PNG"):
        save_gallery(tmp_path / "gallery.jpg", countries=["belgium"], per_country=1, image_size=64)


def test_load_coco_reads_the_generated_dataset(tmp_path):
    from tlutils.data import load_coco

    dataset = load_coco(generate("germany", 4, tmp_path, seed=6, image_size=96))
    assert dataset.classes == {c.id: c.name for c in SIGN_CLASSES if c.id in COUNTRIES["germany"].classes}
    for index, record in enumerate(dataset):
        _, boxes, labels = render_scene("germany", image_rng(6, "germany", index), 96)
        assert record.country == "germany" and (record.width, record.height) == (96, 96)
        np.testing.assert_allclose(record.boxes, boxes.reshape(-1, 4))
        assert record.labels.tolist() == labels.tolist()
        assert list(record.superclasses) == [SIGN_CLASSES[label - 1].superclass for label in labels]


# --- the course's sets (synth_dataset) ----------------------------------------------------------------
def _side_folder(root: Path, host: str, pid: int, thread: int) -> Path:
    """A side folder as ``synth_dataset`` names it, with one file written."""
    folder = root / "synth" / f"usa_train_s0_64px_n9_v{GENERATOR_VERSION}.partial-{host}-{pid}-{thread}"
    folder.mkdir(parents=True)
    (folder / "usa_000000.png").write_bytes(b"half a set")
    return folder


def test_synth_dataset_renders_a_set_once_then_reads_it_from_disk(tmp_path, monkeypatch):
    dataset = synth_dataset("germany", "val", 3, 64, data_dir=tmp_path)
    folder = tmp_path / "synth" / f"germany_val_s{WORLD_SEEDS['val']}_64px_n3_v{GENERATOR_VERSION}"
    assert [path.name for path in (tmp_path / "synth").iterdir()] == [folder.name]
    for index, record in enumerate(dataset):
        _, boxes, labels = render_scene("germany", image_rng(WORLD_SEEDS["val"], "germany", index), 64)
        assert record.split == "val" and Path(record.image_path).parent == folder
        np.testing.assert_allclose(record.boxes, boxes)
        assert record.labels.tolist() == labels.tolist()

    def no_rendering(*args, **kwargs):
        raise AssertionError("a set on disk must not be rendered again")

    monkeypatch.setattr(tlutils.data.synth.sets, "generate", no_rendering)
    again = synth_dataset("germany", "val", 3, 64, data_dir=tmp_path)
    assert [record.image_path for record in again] == [record.image_path for record in dataset]


def test_the_same_set_asked_for_twice_at_once_is_rendered_into_place_once(tmp_path, monkeypatch):
    """Two notebooks (here: threads) rendering one set at the same time: both get it, no side folder stays."""
    render = tlutils.data.synth.sets.generate
    both_rendering = threading.Barrier(2, timeout=60)

    def generate_side_by_side(*args, **kwargs):
        folder = render(*args, **kwargs)
        both_rendering.wait()  # neither renames its copy before the other has rendered one
        return folder

    monkeypatch.setattr(tlutils.data.synth.sets, "generate", generate_side_by_side)
    results, errors = [], []

    def ask():
        try:
            results.append(synth_dataset("germany", "val", 3, 64, data_dir=tmp_path))
        except Exception as error:  # noqa: BLE001 - reported by the assert below
            errors.append(error)

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert [len(dataset) for dataset in results] == [3, 3]
    assert [path.name for path in (tmp_path / "synth").iterdir()] == [f"germany_val_s{WORLD_SEEDS['val']}_64px_n3_v"
                                                                      f"{GENERATOR_VERSION}"]


def test_side_folders_of_killed_renders_are_removed_on_the_next_call(tmp_path):
    host = socket.gethostname()
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its pid no longer runs: the render it stood for was killed
    killed = _side_folder(tmp_path, host, finished.pid, 1)
    hung = _side_folder(tmp_path, host, os.getpid(), 2)  # a live pid, but nothing written for 2 hours
    old = time.time() - 2 * STALE_PARTIAL_SECONDS
    os.utime(hung, (old, old))
    running = _side_folder(tmp_path, host, os.getpid(), 3)  # a render in progress here
    elsewhere = _side_folder(tmp_path, "another-machine", finished.pid, 4)  # its pid means nothing here

    synth_dataset("belgium", "val", 2, 64, data_dir=tmp_path)
    left = sorted(path.name for path in (tmp_path / "synth").iterdir())
    assert left == sorted([running.name, elsewhere.name, f"belgium_val_s1_64px_n2_v{GENERATOR_VERSION}"])
    assert not killed.exists() and not hung.exists()
    assert remove_stale_partials(tmp_path / "synth", max_age=0.0) == sorted([elsewhere, running])


def test_an_interrupted_render_leaves_no_side_folder(tmp_path, monkeypatch):
    def interrupted(country, num_images, out_dir, **kwargs):
        Path(out_dir).mkdir(parents=True)
        (Path(out_dir) / f"{country}_000000.png").write_bytes(b"half a set")
        raise KeyboardInterrupt  # the student stops the cell

    monkeypatch.setattr(tlutils.data.synth.sets, "generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        synth_dataset("sweden", "train", 4, 64, data_dir=tmp_path)
    assert list((tmp_path / "synth").iterdir()) == []


def test_tlutils_data_re_exports_synth_dataset():
    import tlutils.data

    assert tlutils.data.synth_dataset is synth_dataset and "synth_dataset" in tlutils.data.__all__
