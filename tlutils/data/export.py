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
notebook 08 and its tests, made once under ``data/``. :func:`benchmark_format_example` writes
sign-world frames in the two benchmarks' own formats, GTSDB and BelgiumTS, and :func:`benchmark_spec`
picks notebook 01's data: the user's spec, else the sample in ``../shared/data``, else that stand-in.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from tlutils.data.records import DetectionDataset, DetectionRecord, read_image_size

__all__ = ["BenchmarkExample", "ExampleData", "benchmark_format_example", "benchmark_spec", "export_yolo",
           "real_format_example", "yolo_spec"]

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


#: Where ``../shared/data`` (:func:`tlutils.paths.shared_data_dir`) keeps each benchmark's sample.
SHARED_SAMPLES = {"gtsdb": Path("gtsdb-sample"), "btsd": Path("btsd-annotations") / "BTSD_training_GTclear.txt"}
#: The stand-in's classes: one GTSDB class id per superclass (GTSDB's ReadMe.txt), and BTSD's
#: ``class id;superclass id`` (its readme's superclass numbers).
GTSDB_STAND_IN_CLASSES = {"prohibitory": 1, "danger": 18, "mandatory": 35, "other": 12}
BTSD_STAND_IN_CLASSES = {"prohibitory": "65;2", "danger": "2;1", "mandatory": "72;3", "other": "1;0"}
#: The file name of the stand-in's BTSD annotations (the training file's name).
BTSD_STAND_IN_FILE = "BTSD_training_GTclear.txt"


class BenchmarkExample(NamedTuple):
    """The same frames in the two benchmarks' formats (data specs); :func:`benchmark_format_example`."""

    gtsdb: str
    btsd: str


def benchmark_format_example(country: str = "germany", num_images: int = 6, image_size: int = 400,
                             data_dir: str | os.PathLike | None = None) -> BenchmarkExample:
    """``num_images`` sign-world frames of ``country`` (its val set) in the GTSDB and BelgiumTS formats.

    Written once under ``<data_dir>/real-format-example/<country>_<num_images>x<image_size>_benchmarks/``
    (default data_dir: the project's ``data/``): ``gtsdb/`` holds ``00000.ppm`` ... and a ``gt.txt`` with
    GTSDB's inclusive ``rightCol;bottomRow``, and :data:`BTSD_STAND_IN_FILE` has one BelgiumTS line per
    box (``01/image.000000.jp2;x1;y1;x2;y2;class id;superclass id;``, no images). Every sign gets the
    class of its superclass (:data:`GTSDB_STAND_IN_CLASSES`, :data:`BTSD_STAND_IN_CLASSES`).

    Returns:
        The two data specs, ``gtsdb:<...>/gtsdb`` and ``btsd:<...>/BTSD_training_GTclear.txt``, with
        absolute paths.
    """
    from tlutils.data.synth import synth_dataset
    from tlutils.paths import data_dir as default_data_dir

    root = Path(data_dir) if data_dir is not None else default_data_dir()
    folder = root.resolve() / EXAMPLE_FOLDER / f"{country}_{num_images}x{image_size}_benchmarks"
    frames = synth_dataset(country, "val", num_images, image_size, data_dir)
    _write_once(folder, lambda side: _write_benchmark_files(frames, side))
    return BenchmarkExample(f"gtsdb:{folder / 'gtsdb'}", f"btsd:{folder / BTSD_STAND_IN_FILE}")


def _write_benchmark_files(frames: DetectionDataset, folder: Path) -> None:
    """``folder/gtsdb/`` (PPM frames + ``gt.txt``) and ``folder/BTSD_training_GTclear.txt`` of ``frames``."""
    from PIL import Image

    (folder / "gtsdb").mkdir(parents=True)
    gt_lines, btsd_lines = [], []
    for index, record in enumerate(frames):
        with Image.open(record.image_path) as image:
            image.convert("RGB").save(folder / "gtsdb" / f"{index:05d}.ppm")
        for (x0, y0, x1, y1), superclass in zip(record.boxes.astype(int).tolist(), record.superclasses):
            gt_lines.append(f"{index:05d}.ppm;{x0};{y0};{x1 - 1};{y1 - 1};{GTSDB_STAND_IN_CLASSES[superclass]}\n")
            btsd_lines.append(f"01/image.{index:06d}.jp2;{x0};{y0};{x1};{y1};{BTSD_STAND_IN_CLASSES[superclass]};\n")
    (folder / "gtsdb" / "gt.txt").write_text("".join(gt_lines), encoding="utf-8")
    (folder / BTSD_STAND_IN_FILE).write_text("".join(btsd_lines), encoding="utf-8")


def benchmark_spec(parameter: str, value: str | None, format_name: str,
                   shared: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None) -> str:
    """The data spec of notebook parameter ``parameter`` (GTSDB or BTSD data), canonical.

    - ``value`` given: it must be a ``format_name`` spec (``gtsdb:<folder>``, ``btsd:<annotations.txt>``,
      with their options) whose annotations exist (a GTSDB folder's ``gt.txt``, the BTSD file, an
      ``images=`` folder);
    - ``value`` None: the sample in ``shared`` (``../shared/data``, :data:`SHARED_SAMPLES`) when it is
      there, else the stand-in :func:`benchmark_format_example` writes under ``data_dir``.

    Each benchmark is decided on its own: a shared folder without the BTSD file still gives its GTSDB.

    Raises:
        ValueError: ``value`` is no spec, or a spec of another format; the message names ``parameter``.
        FileNotFoundError: ``value`` names files that are not there; the message names ``parameter``.
    """
    from tlutils.data.specs import FORMATS, parse_spec

    if format_name not in SHARED_SAMPLES:
        raise ValueError(f"format_name must be one of {', '.join(SHARED_SAMPLES)}, got {format_name!r}")
    if value is None:
        sample = Path(shared) / SHARED_SAMPLES[format_name] if shared is not None else None
        if sample is not None and _benchmark_annotations(format_name, sample).is_file():
            return str(parse_spec(f"{format_name}:{sample.resolve()}"))
        return getattr(benchmark_format_example(data_dir=data_dir), format_name)
    usage = (f"{parameter} takes a data spec {format_name}:{FORMATS[format_name].path}[,<option>=<value>], "
             f"or None for the sample in ../shared/data or a stand-in")
    try:
        spec = parse_spec(value)
    except ValueError as error:
        raise ValueError(f"{parameter} = {value!r}: {error}\n{usage}") from None
    if spec.format != format_name:
        raise ValueError(f"{parameter} = {value!r} is {spec.format} data: {usage} (notebook 08 studies any format)")
    needed = [_benchmark_annotations(format_name, Path(spec.path).expanduser())]
    needed += [Path(spec.options["images"]).expanduser()] if "images" in spec.options else []
    for path in needed:
        if not path.exists():
            raise FileNotFoundError(f"{parameter} = {value!r}: {path} does not exist (relative paths start in "
                                    f"{Path.cwd()}). {usage}")
    return str(spec)


def _benchmark_annotations(format_name: str, path: Path) -> Path:
    """The annotation file of a GTSDB folder (its ``gt.txt``) or of a BTSD spec (the file itself)."""
    return path / "gt.txt" if format_name == "gtsdb" else path


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
