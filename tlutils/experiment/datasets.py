"""The datasets of a run, for any data spec: the training pool, validation and test sets, the class table.

The sign world (``synth:<country>``) is rendered at the model's input size: a training pool (world
seed ``WORLD_SEEDS["train"]``) and a validation set (``WORLD_SEEDS["val"]``) of the profile's sizes. Real data (``gtsdb:``, ``coco:``, ...) is loaded once and split by
``tlutils.data.specs.split_dataset`` with a fixed seed, so every run of a study sees the same val and
test images whatever its own seed; a target run's few-shot set is drawn from the train part.
With ``classes="superclass"`` every set is relabelled to the four superclasses.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tlutils.data.records import DetectionDataset
    from tlutils.data.specs import DataSplits

#: Seed of the train/val/test split of real data: the same split for every run (not the run's seed).
SPLIT_SEED = 0


@dataclass(frozen=True)
class DataInfo:
    """What a run needs to know about its data before loading it: sizes and identity.

    Attributes:
        pool_size: training images available (the sign world: rendered for the run; real data: the
            train split).
        num_val_images: validation images.
        fingerprint: ``"<annotations sha>-<records sha>"`` of real data (``tlutils.data.specs.fingerprint``);
            for the sign world its generator version.
        split: how train / val / test were made.
    """

    pool_size: int
    num_val_images: int
    fingerprint: str
    split: str


def is_synth(spec: str) -> bool:
    """Whether ``spec`` (canonical) names the rendered sign world."""
    return spec.startswith("synth:")


def synth_info(pool_size: int, num_val_images: int) -> DataInfo:
    """The sign world's :class:`DataInfo`: sizes chosen by the profile."""
    from tlutils.data.synth import GENERATOR_VERSION, WORLD_SEEDS

    return DataInfo(pool_size, num_val_images, f"sign world v{GENERATOR_VERSION}",
                    f"rendered: train world seed {WORLD_SEEDS['train']}, val {WORLD_SEEDS['val']}")


def real_info(spec: str, classes: str, max_val_images: int) -> DataInfo:
    """Load real data (once per spec and file state) and describe its split; at most ``max_val_images``
    of the val split are evaluated on (the profile's ``real_val_images``: tiled inference is costly).

    Raises:
        ValueError: a split without training or validation images.
    """
    state = _state_of(spec)
    _, splits = _cached_splits(spec, classes, state)
    for name in ("train", "val"):
        if len(splits[name]) == 0:
            raise ValueError(f"{spec}: the {name} split is empty ({splits.rule}); give more images")
    prints = _cached_fingerprint(spec, classes, state)
    return DataInfo(len(splits["train"]), min(len(splits["val"]), max_val_images),
                    f"{prints['annotations_sha256']}-{prints['records_sha256']}", splits.rule)


def real_splits(spec: str, classes: str) -> tuple["DetectionDataset", "DataSplits"]:
    """``(whole dataset, splits)`` of a real data spec, cached while its files are unchanged."""
    return _cached_splits(spec, classes, _state_of(spec))


def _state_of(spec: str) -> tuple[str, int]:
    """The spec's path and its modification time: a changed file is loaded again."""
    from tlutils.data.specs import parse_spec

    path = Path(os.path.expanduser(parse_spec(spec).path))
    return str(path), path.stat().st_mtime_ns if path.exists() else 0


@functools.lru_cache(maxsize=8)
def _cached_fingerprint(spec: str, classes: str, state: tuple[str, int]) -> dict[str, str | int]:
    """``tlutils.data.specs.fingerprint`` of the loaded data: hashed once, not at every ``resolve``."""
    from tlutils.data.specs import fingerprint

    return fingerprint(_cached_splits(spec, classes, state)[0], spec)


@functools.lru_cache(maxsize=8)
def _cached_splits(spec: str, classes: str, state: tuple[str, int]) -> tuple["DetectionDataset", "DataSplits"]:
    from tlutils.data.specs import load_spec, split_dataset

    dataset = relabelled(load_spec(spec), classes)
    return dataset, split_dataset(dataset, spec, seed=SPLIT_SEED)


def relabelled(dataset: "DetectionDataset", classes: str) -> "DetectionDataset":
    """``dataset`` in the class mode of the run (``"superclass"`` relabels every box)."""
    from tlutils.data.classes import relabel_by_superclass

    return relabel_by_superclass(dataset) if classes == "superclass" else dataset


def load_split(spec: str, split: str, classes: str, num_images: int, image_size: int,
               data_dir: str | os.PathLike | None) -> "DetectionDataset":
    """One split (``"train"``, ``"val"``, ``"test"``) of the run's data.

    The sign world renders ``num_images`` images at ``image_size`` (the train pool, val or test set);
    real data returns its split (the whole train split; the first ``num_images`` of val or test).
    """
    if is_synth(spec):
        from tlutils.data.synth import synth_dataset

        country = spec.split(":", 1)[1].split(",", 1)[0]
        return relabelled(synth_dataset(country, split, num_images, image_size, data_dir), classes)
    data = real_splits(spec, classes)[1][split]
    return data if split == "train" else data.with_records(list(data)[:num_images])


def label(spec: str) -> str:
    """A short name of the data for tables and folders: the country, or ``<format>-<folder name>``
    (``gtsdb:data/FullIJCNN2013`` -> ``gtsdb-FullIJCNN2013``, ``yolo:export/images`` -> ``yolo-export``)."""
    from tlutils.data.specs import parse_spec

    parsed = parse_spec(spec)
    if parsed.format == "synth":
        return parsed.path
    path = Path(parsed.path)  # a file (annotations.json) or a generic folder (images/): its folder says more
    name = path.parent.name if path.suffix or path.name.lower() in _GENERIC_FOLDERS else path.name
    return f"{parsed.format}-{name or 'data'}"


#: Folder names that say nothing about the data (a YOLO ``images`` folder): the label uses their parent.
_GENERIC_FOLDERS = frozenset({"images", "labels", "train", "val", "valid", "test", "annotations", "jpegimages"})
