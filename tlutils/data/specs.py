"""Data specs: one string names a dataset of any source, wherever the study accepts a country.

A spec is ``<format>:<path>[,<option>=<value>]...``:

=======================================================  =====================================================
spec                                                     loads
=======================================================  =====================================================
``synth:<country>[,split=train|val]`` or ``<country>``   the sign world's rendered set (:func:`synth_dataset`)
``gtsdb:<folder>[,split=train|test]``                    GTSDB frames + ``gt.txt`` (:func:`load_gtsdb`)
``btsd:<annotations.txt>[,images=<folder>]``             a BelgiumTS ``*_GTclear.txt`` (:func:`load_btsd`)
``coco:<annotations.json>[,images=<folder>]``            COCO JSON (:func:`load_coco`)
``voc:<folder>[,images=<folder>][,split=<name>]``        Pascal VOC (:func:`load_voc`); ``split`` reads
                                                         ``ImageSets/Main/<name>.txt``
``yolo:<image folder>[,classes=<file>][,labels=<dir>]``  YOLO txt labels (:func:`load_yolo`)
=======================================================  =====================================================

Every real format also takes ``on_error=raise|skip`` (default ``raise``): the loaders' strictness.
It belongs to the spec (``load_spec``'s ``on_error`` only fills in where a spec gives none), because
skipping changes the data: the official GTSDB ``gt.txt`` lists the stop sign of ``00340.ppm`` twice
(lines 533 and 535), so ``gtsdb:<folder>`` raises on it (the message says to add ``,on_error=skip``)
and ``gtsdb:<folder>,on_error=skip`` loads 851 boxes, the repeat listed in ``dataset.skipped``.

Paths: ``str(spec)`` keeps the user's path, normalized (``os.path.normpath``: no ``./``, ``..`` folded,
no trailing slash), not made absolute, so that a results table reads the same on every machine; where
the data really lives and what it holds is in :func:`fingerprint`. A relative path is relative to the
current folder when the data is loaded, ``~`` is expanded then. Paths cannot contain commas. Options
at their default value are left out of the canonical spelling, the others follow in a fixed order, so
one dataset has one spelling (``synth:germany,split=train`` is ``synth:germany``).

Splits (:func:`split_dataset`): GTSDB's official one (frames 00000-00599 train, 00600-00899 test) with
the training frames divided into train and val; for every other source a seeded split stratified by each
image's rarest class. Few-shot training sets come from :func:`tlutils.data.subset` on the train part,
which keeps them nested (the 10 images lie inside the 50).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

from tlutils.data.records import AnnotationError, DetectionDataset, OnError

__all__ = [
    "FORMATS",
    "DataSpec",
    "DataSplits",
    "SpecFormat",
    "fingerprint",
    "format_help",
    "load_spec",
    "parse_spec",
    "split_dataset",
]

ON_ERROR_CHOICES = ("raise", "skip")
OPTION_ORDER = ("images", "classes", "labels", "split", "on_error")
"""The order of options in a canonical spec."""
PATH_OPTIONS = frozenset({"images", "classes", "labels"})
OPTION_HELP = {"images": "images=<folder>", "classes": "classes=<file>", "labels": "labels=<folder>",
               "on_error": "on_error=raise|skip"}
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
"""Train, val and test shares of :func:`split_dataset`."""
HASH_LENGTH = 16
"""Hex digits kept of a sha256 (64 bits) in :func:`fingerprint`."""


class SpecFormat(NamedTuple):
    """One format of :data:`FORMATS`: what its path names and which options it takes.

    ``splits``: the split names it accepts, ``()`` for any name, ``None`` for a format without splits.
    """

    path: str
    description: str
    options: tuple[str, ...]
    splits: tuple[str, ...] | None = None
    default_split: str | None = None


FORMATS: dict[str, SpecFormat] = {
    "synth": SpecFormat("<country>", "the sign world's rendered set (a bare country name means this)",
                        (), ("train", "val"), "train"),
    "gtsdb": SpecFormat("<folder with 00000.ppm ... and gt.txt>", "GTSDB, official layout (.ppm, .png or .jpg)",
                        ("on_error",), ("train", "test")),
    "btsd": SpecFormat("<BTSD_*_GTclear.txt>", "BelgiumTS detection annotations; images= the camera folders",
                       ("images", "on_error")),
    "coco": SpecFormat("<annotations.json>", "COCO detection JSON; images= defaults to the JSON's folder",
                       ("images", "on_error")),
    "voc": SpecFormat("<folder with Annotations/ and JPEGImages/>",
                      "Pascal VOC XML; split= reads ImageSets/Main/<split>.txt", ("images", "on_error"), ()),
    "yolo": SpecFormat("<image folder>", "YOLO txt; classes= defaults to classes.txt in or above the folder, "
                       "labels= to the image folder", ("classes", "labels", "on_error")),
}


def format_help() -> str:
    """The formats, their options and what they load (for error messages and ``--help``)."""
    lines = ["data specs are <format>:<path>[,<option>=<value>]...:"]
    for name, spec_format in FORMATS.items():
        options = [OPTION_HELP[option] for option in spec_format.options]
        if spec_format.splits is not None:
            options.append(f"split={'|'.join(spec_format.splits) or '<name>'}")
        text = f"{name}:{spec_format.path}" + "".join(f"[,{option}]" for option in options)
        lines.append(f"  {text}\n      {spec_format.description}")
    return "\n".join(lines)


def _countries() -> tuple[str, ...]:
    from tlutils.data.synth.countries import COUNTRIES  # on use: importing it loads the whole sign world

    return tuple(COUNTRIES)


@dataclass(frozen=True)
class DataSpec:
    """A parsed data spec (:func:`parse_spec`); constructing one checks and normalizes it the same way.

    Attributes:
        format: a key of :data:`FORMATS`.
        path: the country (synth) or the normalized path.
        options: option -> value, without ``split`` and without options at their default.
        split: the split the spec selects; ``None`` where the format has none or the spec takes all.
    """

    format: str
    path: str
    options: Mapping[str, str] = field(default_factory=dict)
    split: str | None = None

    def __post_init__(self) -> None:
        spec_format = FORMATS.get(self.format)
        if spec_format is None:
            raise ValueError(f"unknown format {self.format!r} (formats: {', '.join(FORMATS)})")
        path = str(self.path).strip()
        if not path:
            raise ValueError(f"{self.format}: the path is missing: write {self.format}:{spec_format.path}")
        if self.format == "synth":
            path = path.lower()
            if path not in _countries():
                raise ValueError(f"synth: unknown country {path!r} (countries: {', '.join(_countries())})")
        else:
            path = os.path.normpath(path)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "options", _checked_options(self.format, dict(self.options)))
        object.__setattr__(self, "split", _checked_split(self.format, self.split))

    def __str__(self) -> str:
        options = {**self.options}
        if self.split is not None and self.split != FORMATS[self.format].default_split:
            options["split"] = self.split
        return f"{self.format}:{self.path}" + "".join(
            f",{name}={options[name]}" for name in OPTION_ORDER if name in options)

    def without_location(self) -> str:
        """The spec with its location left out: ``gtsdb:*,split=test`` for ``gtsdb:/data/GTSDB,split=test``
        (the path becomes ``*``, path options such as ``images=`` are dropped); a ``synth:`` spec is
        unchanged. Run keys hash this beside the data's content fingerprint, so moving the data keeps them."""
        if self.format == "synth":
            return str(self)
        kept = {name: value for name, value in self.options.items() if name not in PATH_OPTIONS}
        return str(DataSpec(self.format, "*", kept, self.split))

    def __hash__(self) -> int:  # options is a dict: hash the canonical spelling
        return hash(str(self))

    @property
    def on_error(self) -> OnError:
        return self.options.get("on_error", "raise")  # type: ignore[return-value]


def _checked_options(format_name: str, options: dict[str, str]) -> dict[str, str]:
    allowed = FORMATS[format_name].options
    checked = {}
    for name, value in options.items():
        if name == "split":
            raise ValueError(f"{format_name}: give split as DataSpec(split=...), not as an option")
        if name not in allowed:
            known = ", ".join((*allowed, *_split_option(format_name))) or "none"
            raise ValueError(f"{format_name}: unknown option {name!r} (options of {format_name}: {known})")
        value = str(value).strip()
        if not value:
            raise ValueError(f"{format_name}: option {name!r} has no value")
        if name == "on_error":
            if value not in ON_ERROR_CHOICES:
                raise ValueError(f"{format_name}: on_error must be raise or skip, got {value!r}")
            if value == "raise":
                continue  # the default: left out of the canonical spec
        checked[name] = os.path.normpath(value) if name in PATH_OPTIONS else value
    return checked


def _split_option(format_name: str) -> tuple[str, ...]:
    return () if FORMATS[format_name].splits is None else ("split",)


def _checked_split(format_name: str, split: str | None) -> str | None:
    spec_format = FORMATS[format_name]
    if split is None:
        return spec_format.default_split
    split = str(split).strip()
    if spec_format.splits is None:
        raise ValueError(f"{format_name}: has no split option (its split is the file or folder you name); "
                         f"use split_dataset for train/val/test")
    if not split or (spec_format.splits and split not in spec_format.splits):
        allowed = " or ".join(spec_format.splits) or "a name"
        raise ValueError(f"{format_name}: split must be {allowed}, got {split!r}")
    return split


def parse_spec(text: str | DataSpec) -> DataSpec:
    """Parse ``<format>:<path>[,<option>=<value>]...`` (a bare country name is ``synth:<country>``).

    Raises:
        ValueError: naming the wrong part (format, path, option or split), followed by :func:`format_help`.
    """
    if isinstance(text, DataSpec):
        return text
    if not isinstance(text, str):
        raise ValueError(f"a data spec is a string, got {type(text).__name__} {text!r}\n{format_help()}")
    head, *option_parts = [part.strip() for part in text.strip().split(",")]
    try:
        format_name, path = _split_head(head)
        options: dict[str, str] = {}
        for part in option_parts:
            name, equals, value = part.partition("=")
            name = name.strip().lower()
            if not equals or not name:
                raise ValueError(f"option {part!r} is not <option>=<value>")
            if name in options:
                raise ValueError(f"option {name!r} is given twice")
            options[name] = value
        split = options.pop("split", None)
        return DataSpec(format_name, path, options, split)
    except ValueError as error:
        raise ValueError(f"bad data spec {text!r}: {error}\n{format_help()}") from None


def _split_head(head: str) -> tuple[str, str]:
    """``(format, path)`` of ``<format>:<path>``; a bare country name is ``("synth", country)``."""
    format_name, colon, path = head.partition(":")
    if colon:
        return format_name.strip().lower(), path
    if head.lower() in _countries():
        return "synth", head
    if not head:
        raise ValueError("the spec is empty")
    raise ValueError(f"{head!r} has no format and is no country of the sign world "
                     f"({', '.join(_countries())}): write <format>:<path>")


# --- loading ---------------------------------------------------------------------------------------

def load_spec(
    spec: str | DataSpec,
    *,
    num_images: int | None = None,
    image_size: int | None = None,
    data_dir: str | os.PathLike | None = None,
    on_error: OnError | None = None,
) -> DetectionDataset:
    """Load the dataset a spec names.

    Args:
        spec: a spec string or :class:`DataSpec`.
        num_images, image_size: for ``synth`` specs (both required): how many images to render, and
            their side in pixels. Real data keeps its images; the input pipeline resizes them.
        data_dir: where ``synth`` sets are cached (default: the project's ``data/``).
        on_error: ``"skip"`` loads a spec without ``on_error=skip`` as if it had it; ``"raise"`` for a
            spec that says ``on_error=skip`` raises ValueError, since the spec says what the data is.
            Better put ``on_error=skip`` in the spec itself, so that its ``str`` and :func:`fingerprint`
            record it.

    Raises:
        ValueError: a bad spec, missing ``num_images`` / ``image_size`` for synth, conflicting on_error.
        AnnotationError: bad data (file and line); with ``on_error=raise`` the message says how to skip.
        FileNotFoundError: the path does not exist.
    """
    spec = parse_spec(spec)
    if on_error is not None:
        if on_error not in ON_ERROR_CHOICES:
            raise ValueError(f'on_error must be "raise" or "skip", got {on_error!r}')
        if "on_error" in spec.options and on_error != spec.on_error:
            raise ValueError(f"on_error={on_error!r} contradicts the spec {str(spec)!r}")
        if on_error != spec.on_error:
            spec = replace(spec, options={**spec.options, "on_error": on_error})
    if spec.format == "synth":
        return _load_synth(spec, num_images, image_size, data_dir)
    try:
        return _LOADERS[spec.format](spec)
    except AnnotationError as error:
        if spec.on_error == "skip":
            raise
        hint = f" (or add ,on_error=skip to the data spec {str(spec)!r} to leave bad items out)"
        raise type(error)(error.reason + hint, error.file, error.line) from error


def _load_synth(spec: DataSpec, num_images: int | None, image_size: int | None,
                data_dir: str | os.PathLike | None) -> DetectionDataset:
    from tlutils.data.synth import synth_dataset

    missing = [name for name, value in {"num_images": num_images, "image_size": image_size}.items() if value is None]
    if missing:
        raise ValueError(f"{spec}: a synth set is rendered on demand: give {' and '.join(missing)}")
    return synth_dataset(spec.path, spec.split, int(num_images), int(image_size), data_dir)


def _path(value: str) -> Path:
    return Path(value).expanduser()


def _path_option(spec: DataSpec, name: str) -> Path | None:
    return _path(spec.options[name]) if name in spec.options else None


def _load_gtsdb(spec: DataSpec) -> DetectionDataset:
    from tlutils.data.gtsdb import load_gtsdb

    return load_gtsdb(_path(spec.path), split=spec.split, on_error=spec.on_error)


def _load_btsd(spec: DataSpec) -> DetectionDataset:
    from tlutils.data.btsd import load_btsd

    return load_btsd(_path(spec.path), image_root=_path_option(spec, "images"), on_error=spec.on_error)


def _load_coco(spec: DataSpec) -> DetectionDataset:
    from tlutils.data.formats import load_coco

    return load_coco(_path(spec.path), image_root=_path_option(spec, "images"), on_error=spec.on_error)


def _voc_folders(spec: DataSpec) -> tuple[Path, Path]:
    """``(annotation folder, image folder)``: ``Annotations/``, ``JPEGImages/`` when present, else the folder."""
    root = _path(spec.path)
    annotations = root / "Annotations" if (root / "Annotations").is_dir() else root
    images = _path_option(spec, "images")
    if images is not None:
        return annotations, images
    return annotations, root / "JPEGImages" if (root / "JPEGImages").is_dir() else root


def _voc_split_file(spec: DataSpec) -> Path:
    return _path(spec.path) / "ImageSets" / "Main" / f"{spec.split}.txt"


def _load_voc(spec: DataSpec) -> DetectionDataset:
    from tlutils.data.formats import load_voc

    annotations, images = _voc_folders(spec)
    dataset = load_voc(annotations, images, on_error=spec.on_error, split=spec.split)
    if spec.split is None:
        return dataset
    split_file = _voc_split_file(spec)
    if not split_file.is_file():
        raise FileNotFoundError(f"{split_file} not found: split={spec.split} names an ImageSets/Main list")
    line_of = {}
    for line, text in enumerate(split_file.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if text.split():
            line_of.setdefault(text.split()[0], line)
    found = {Path(record.image_path).stem for record in dataset}
    missing = [image_id for image_id in line_of if image_id not in found]
    if missing and spec.on_error == "raise":
        raise AnnotationError(f"image {missing[0]!r} has no annotation in {annotations} "
                              f"({len(missing)} listed images have none)", split_file, line_of[missing[0]])
    return dataset.with_records([record for record in dataset if Path(record.image_path).stem in line_of],
                                name=f"{dataset.name} {spec.split}")


def _yolo_classes_file(spec: DataSpec) -> Path:
    if "classes" in spec.options:
        return _path(spec.options["classes"])
    image_dir = _path(spec.path)
    for candidate in (image_dir / "classes.txt", image_dir.parent / "classes.txt"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no classes.txt in {image_dir} or its parent: add ,classes=<file> to the spec")


def _load_yolo(spec: DataSpec) -> DetectionDataset:
    from tlutils.data.formats import load_yolo

    return load_yolo(_path(spec.path), _yolo_classes_file(spec), label_dir=_path_option(spec, "labels"),
                     on_error=spec.on_error)


_LOADERS = {"gtsdb": _load_gtsdb, "btsd": _load_btsd, "coco": _load_coco, "voc": _load_voc, "yolo": _load_yolo}


# --- fingerprints ----------------------------------------------------------------------------------

def _annotation_files(spec: DataSpec, dataset: DetectionDataset) -> list[Path]:
    """The files whose content is the dataset's annotations."""
    if spec.format == "synth":
        return sorted({Path(record.image_path).parent / "annotations.json" for record in dataset})
    if spec.format == "gtsdb":
        return [_path(spec.path) / "gt.txt"]
    if spec.format in ("btsd", "coco"):
        return [_path(spec.path)]
    if spec.format == "voc":
        files = sorted(_voc_folders(spec)[0].glob("*.xml"))
        return files + ([_voc_split_file(spec)] if spec.split is not None else [])
    classes_file = _yolo_classes_file(spec)
    label_dir = _path(spec.options.get("labels", spec.path))
    labels = [path for path in sorted(label_dir.glob("*.txt")) if path.resolve() != classes_file.resolve()]
    return [classes_file, *labels]


def _relative_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Each path relative to their common folder (POSIX spelling): the same wherever the data lives."""
    if not paths:
        return []
    common = os.path.commonpath([os.path.dirname(os.path.abspath(path)) for path in paths])
    return [Path(os.path.relpath(os.path.abspath(path), common)).as_posix() for path in paths]


def fingerprint(dataset: DetectionDataset, spec: str | DataSpec) -> dict[str, str | int]:
    """What identifies a loaded dataset, so that results from two datasets never mix.

    Returns:
        ``spec`` (canonical), ``num_images``, ``num_boxes``, ``num_classes``, ``annotations_sha256`` (the
        annotation files, each by its name relative to the others and its content) and ``records_sha256``
        (what was loaded: class table, image names, sizes, boxes, labels; it tells a split or a skipped
        item apart). Hashes are the first :data:`HASH_LENGTH` hex digits; neither depends on where the
        data lives nor on the run.
    """
    spec = parse_spec(spec)
    files = _annotation_files(spec, dataset)
    annotations = hashlib.sha256()
    for name, path in sorted(zip(_relative_names(files), files)):
        annotations.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    records = hashlib.sha256(json.dumps(sorted(dataset.classes.items())).encode())
    for name, record in zip(_relative_names([record.image_path for record in dataset]), dataset):
        records.update(f"\0{name}\0{record.width}x{record.height}\0".encode())
        records.update(record.boxes.astype("<f4").tobytes() + record.labels.astype("<i8").tobytes())
    return {"spec": str(spec), "num_images": len(dataset), "num_boxes": dataset.num_boxes,
            "num_classes": len(dataset.classes), "annotations_sha256": annotations.hexdigest()[:HASH_LENGTH],
            "records_sha256": records.hexdigest()[:HASH_LENGTH]}


# --- splits ----------------------------------------------------------------------------------------

SPLIT_NAMES = ("train", "val", "test")


class DataSplits(Mapping[str, DetectionDataset]):
    """``"train"``, ``"val"``, ``"test"`` -> :class:`DetectionDataset` (possibly empty), and the ``rule`` used.

    Draw few-shot training sets with ``tlutils.data.subset(splits["train"], n, seed)``: for one seed the
    smaller set lies inside the larger, and val and test do not depend on ``n``.
    """

    def __init__(self, splits: Mapping[str, DetectionDataset], rule: str):
        self._splits = {name: splits[name] for name in SPLIT_NAMES}
        self.rule = rule

    def __getitem__(self, name: str) -> DetectionDataset:
        return self._splits[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._splits)

    def __len__(self) -> int:
        return len(self._splits)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}: {len(dataset)}" for name, dataset in self._splits.items())
        return f"<DataSplits {sizes}; {self.rule}>"


def _checked_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(value) for value in fractions)
    if len(values) != 3 or not all(math.isfinite(v) and v >= 0 for v in values) or abs(sum(values) - 1) > 1e-6:
        raise ValueError(f"fractions must be three shares (train, val, test) >= 0 summing to 1, got {fractions!r}")
    return values  # type: ignore[return-value]


def rarest_class_strata(dataset: DetectionDataset) -> dict[int | None, list[int]]:
    """Image indices by each image's rarest class (fewest images; ties: lower id); ``None``: background images.

    Strata come rarest first, background last; indices in dataset order.
    """
    classes_in = [set(record.labels.tolist()) for record in dataset]
    images_per_class = Counter(class_id for present in classes_in for class_id in present)

    def rarity(class_id: int) -> tuple[int, int]:
        return images_per_class[class_id], class_id

    strata: dict[int | None, list[int]] = defaultdict(list)
    for index, present in enumerate(classes_in):
        strata[min(present, key=rarity) if present else None].append(index)
    order = sorted((key for key in strata if key is not None), key=rarity) + ([None] if None in strata else [])
    return {key: strata[key] for key in order}


def stratified_assignment(dataset: DetectionDataset, fractions: Sequence[float], seed: int) -> list[int]:
    """The split (an index into ``fractions``) of each image: seeded, stratified by the rarest class.

    Strata (:func:`rarest_class_strata`) are shuffled with ``seed`` and laid end to end; walking that
    order, each image goes to the split furthest behind its share (``position * fraction - count``,
    ties to the earlier split). So every stratum is divided in proportion, within one image, and the
    whole within one image of ``fraction * len(dataset)``.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    assignment = [0] * len(dataset)
    counts = [0] * len(fractions)
    position = 0
    for indices in rarest_class_strata(dataset).values():
        for index in rng.permutation(indices).tolist():
            position += 1
            behind = [position * share - count for share, count in zip(fractions, counts)]
            chosen = max(range(len(fractions)), key=lambda split: (behind[split], -split))
            assignment[index], counts[chosen] = chosen, counts[chosen] + 1
    return assignment


def _as_split(dataset: DetectionDataset, indices: Sequence[int], name: str, seed: int) -> DetectionDataset:
    records = [replace(dataset[index], split=name) for index in sorted(indices)]
    return dataset.with_records(records, name=f"{dataset.name} {name} (seed {seed})")


def split_dataset(
    dataset: DetectionDataset, spec: str | DataSpec, seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> DataSplits:
    """Train, val and test sets of a loaded dataset; ``.rule`` says how they were made.

    - GTSDB: the official split. Frames 00600-00899 are test (whatever ``fractions`` says); frames
      00000-00599 (and any file not named by frame number) are divided into train and val in the ratio
      ``fractions[0] : fractions[1]`` by the seeded rule below. A folder without test frames (many
      copies hold only the 600 training frames) has its test set carved from the training frames like
      any other source's, in the shares ``fractions``, and the rule says so: a study that reports on a
      test split (``RunConfig.evaluate_test``) needs one.
    - every other source: a seeded split stratified by each image's rarest class
      (:func:`stratified_assignment`), in the shares ``fractions``.

    Records keep everything but ``split``, which becomes the new split's name.

    Raises:
        ValueError: ``fractions`` are not three shares >= 0 summing to 1.
    """
    spec = parse_spec(spec)
    fractions = _checked_fractions(fractions)
    indices: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    official_test = spec.format == "gtsdb" and any(record.split == "test" for record in dataset)
    if official_test:
        pool = [index for index, record in enumerate(dataset) if record.split != "test"]
        indices["test"] = [index for index, record in enumerate(dataset) if record.split == "test"]
        train_share = fractions[0] / (fractions[0] + fractions[1]) if fractions[0] + fractions[1] else 1.0
        shares = (train_share, 1.0 - train_share)
        rule = (f"GTSDB official split: frames 00600-00899 test; frames 00000-00599 divided train:val = "
                f"{shares[0]:.3g}:{shares[1]:.3g}, seeded (seed {seed}), stratified by each image's "
                f"rarest class")
    else:
        pool, shares = list(range(len(dataset))), fractions
        why = "no test frames (00600-00899) in the folder" if spec.format == "gtsdb" else "no official split"
        rule = (f"{spec.format}: {why}; seeded (seed {seed}) train:val:test = "
                f"{':'.join(f'{share:.3g}' for share in fractions)}, stratified by each image's rarest class")
    pool_dataset = dataset.with_records([dataset[index] for index in pool])
    for index, split in zip(pool, stratified_assignment(pool_dataset, shares, seed)):
        indices[SPLIT_NAMES[split]].append(index)
    return DataSplits({name: _as_split(dataset, indices[name], name, seed) for name in SPLIT_NAMES}, rule)
