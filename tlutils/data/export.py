"""Writing a dataset in a labelling tool's format: :func:`export_yolo`, and a stand-in for your own data.

YOLO layout written by :func:`export_yolo` (the Ultralytics one)::

    <out_dir>/images/<image file>    each record's image file, copied byte for byte under its own name
    <out_dir>/labels/<stem>.txt      one line "class cx cy w h" per box, normalized to [0, 1]; empty: no box
    <out_dir>/classes.txt            one class name a line; the YOLO class id is the line number - 1

It reads back with ``load_yolo(out_dir / "images", out_dir / "classes.txt", out_dir / "labels")`` or the
data spec :func:`yolo_spec` gives (``yolo:<out_dir>/images,labels=<out_dir>/labels``; the spec finds
``classes.txt`` above the image folder). Boxes come back within float rounding (``1e-3`` pixels), and
with the same class names. YOLO numbers classes ``0..K-1``, so a dataset's ids are renumbered in
ascending order: ``tlutils.data.pipeline.make_label_map`` numbers the model classes in that order too,
so a detector's classes are the same for the exported set as for the original. YOLO files carry no
superclass: a loaded box has one only where its class is named like a superclass
(``tlutils.data.formats``), so for ``classes="superclass"`` studies use a COCO copy (its
``supercategory``).

:func:`real_format_example` renders sign-world frames (``tlutils.data.synth``, a COCO
``annotations.json`` + PNG images) and exports them as YOLO: small data in two real formats for
notebook 08 and its tests, made once under ``data/``.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from tlutils.data.records import DetectionDataset, DetectionRecord, read_image_size

__all__ = ["ExampleData", "export_yolo", "real_format_example", "yolo_spec"]

#: Decimals of the normalized YOLO coordinates: 1e-8 of a side, far below a pixel of any image.
YOLO_DECIMALS = 8
#: The YOLO layout's folders and class file (see the module docstring).
IMAGES, LABELS, CLASSES_FILE = "images", "labels", "classes.txt"
#: Folder of :func:`real_format_example` under the data folder (notebook 01's stand-in lives there too).
EXAMPLE_FOLDER = "real-format-example"


def export_yolo(dataset: DetectionDataset, out_dir: str | os.PathLike) -> Path:
    """Write ``dataset`` in the YOLO layout (module docstring) under ``out_dir``; returns the image folder.

    Every record's image file is copied under its own name, and every record gets a label file
    (empty for an image without boxes). Files already in ``out_dir/images`` or ``out_dir/labels`` with
    the names this export writes are overwritten; any other file there is an error, since
    ``load_yolo`` would read it as part of the set.

    Raises:
        ValueError: two records with one image file name, an image suffix ``load_yolo`` does not read,
            a record whose size is not its image file's, a class name that is empty or spans lines,
            or other files in the output folders. Nothing is written then.
    """
    from tlutils.data.formats import IMAGE_SUFFIXES

    out = Path(out_dir)
    names = [Path(record.image_path).name for record in dataset]
    _check_names(names, IMAGE_SUFFIXES)
    _check_sizes(dataset)
    class_ids = sorted(dataset.classes)
    for class_id in class_ids:
        name = dataset.classes[class_id]
        if not name.strip() or "\n" in name or "\r" in name or name != name.strip():
            raise ValueError(f"class {class_id} has the name {name!r}: a YOLO class name is one line of text "
                             f"without leading or trailing spaces")
    _check_foreign_files(out, names)
    (out / IMAGES).mkdir(parents=True, exist_ok=True)
    (out / LABELS).mkdir(parents=True, exist_ok=True)
    yolo_id = {class_id: index for index, class_id in enumerate(class_ids)}
    for name, record in zip(names, dataset):
        shutil.copyfile(record.image_path, out / IMAGES / name)
        (out / LABELS / f"{Path(name).stem}.txt").write_text(_label_lines(record, yolo_id), encoding="utf-8")
    (out / CLASSES_FILE).write_text("".join(f"{dataset.classes[class_id]}\n" for class_id in class_ids),
                                    encoding="utf-8")
    return out / IMAGES


def yolo_spec(out_dir: str | os.PathLike) -> str:
    """The data spec of a set :func:`export_yolo` wrote to ``out_dir``: ``yolo:<out_dir>/images,labels=...``."""
    out = Path(out_dir)
    return f"yolo:{out / IMAGES},labels={out / LABELS}"


def _label_lines(record: DetectionRecord, yolo_id: dict[int, int]) -> str:
    """``class cx cy w h`` lines of a record, normalized to its image (boxes: pixel corners (K, 4))."""
    x0, y0, x1, y1 = record.boxes.astype(float).T  # (K,) each
    width, height = float(record.width), float(record.height)
    columns = ((x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height)
    return "".join(f"{yolo_id[int(label)]} " + " ".join(f"{value:.{YOLO_DECIMALS}f}" for value in values) + "\n"
                   for label, *values in zip(record.labels.tolist(), *columns))


def _check_names(names: Sequence[str], suffixes: Sequence[str]) -> None:
    first_of: dict[str, int] = {}
    for index, name in enumerate(names):
        if Path(name).suffix.lower() not in suffixes:
            raise ValueError(f"record {index}: image {name!r} is not a file load_yolo reads ({', '.join(suffixes)})")
        stem = Path(name).stem  # image.png and image.jpg would share image.txt
        if stem in first_of:
            raise ValueError(f"records {first_of[stem]} and {index} both name an image {stem}.*: YOLO keeps one "
                             f"label file per image name; rename one of them")
        first_of[stem] = index


def _check_sizes(dataset: DetectionDataset) -> None:
    for index, record in enumerate(dataset):
        size = read_image_size(record.image_path)
        if size != (record.width, record.height):
            raise ValueError(f"record {index}: {record.image_path} is {size[0]}x{size[1]} pixels, the record says "
                             f"{record.width}x{record.height}; YOLO boxes are relative to the image file")


def _check_foreign_files(out: Path, names: Sequence[str]) -> None:
    expected = {IMAGES: set(names), LABELS: {f"{Path(name).stem}.txt" for name in names}}
    for folder, wanted in expected.items():
        if not (out / folder).is_dir():
            continue
        foreign = sorted(path.name for path in (out / folder).iterdir() if path.name not in wanted)
        if foreign:
            raise ValueError(f"{out / folder} holds {len(foreign)} files this export does not write "
                             f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}): load_yolo would "
                             f"read them too; export into an empty folder")


class ExampleData(NamedTuple):
    """The same frames in two real formats (data specs); :func:`real_format_example`."""

    coco: str
    yolo: str


def real_format_example(country: str, num_images: int, image_size: int, seed: int = 0,
                        data_dir: str | os.PathLike | None = None) -> ExampleData:
    """``num_images`` sign-world frames of ``country``, ``image_size`` pixels a side, as COCO and as YOLO.

    The frames are rendered by ``tlutils.data.synth.generate`` (a COCO ``annotations.json`` + PNG images)
    into ``<data_dir>/real-format-example/<country>_<num_images>x<image_size>_s<seed>/coco/`` and
    exported by :func:`export_yolo` to ``.../yolo/`` (default data_dir: the project's ``data/``). Each
    folder is written once, into a side folder renamed into place, so a reader never sees half of it;
    an existing folder is reused (the renderer is deterministic: every copy is the same data).

    Returns:
        The two data specs, ``coco:<...>/annotations.json`` and ``yolo:<...>/images,labels=<...>``, with
        absolute paths: a notebook run from another folder (papermill, nbval) names the same data.
    """
    from tlutils.data.formats import load_coco
    from tlutils.data.synth import generate
    from tlutils.paths import data_dir as default_data_dir

    root = Path(data_dir) if data_dir is not None else default_data_dir()
    folder = root.resolve() / EXAMPLE_FOLDER / f"{country}_{num_images}x{image_size}_s{seed}"
    coco, yolo = folder / "coco", folder / "yolo"
    _write_once(coco, lambda side: generate(country, num_images, side, seed=seed, image_size=image_size))
    _write_once(yolo, lambda side: export_yolo(load_coco(coco / "annotations.json"), side))
    return ExampleData(f"coco:{coco / 'annotations.json'}", yolo_spec(yolo))


def _write_once(folder: Path, write: Callable[[Path], object]) -> None:
    """``write(side folder)``, then rename the side folder to ``folder``; nothing when ``folder`` exists."""
    if folder.is_dir():
        return
    side = folder.with_name(f"{folder.name}.partial-{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(side, ignore_errors=True)
    try:
        write(side)
        os.replace(side, folder)
    except OSError:  # the folder exists: another process wrote the same data first
        if not folder.is_dir():
            raise
    finally:
        shutil.rmtree(side, ignore_errors=True)
