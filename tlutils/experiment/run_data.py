"""The data of one run: its training batches (exactly ``steps_per_epoch`` per epoch) and validation set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tlutils.data.synth import synth_dataset
from tlutils.experiment.resolved import ResolvedRun

if TYPE_CHECKING:
    import keras

    from tlutils.data.pipeline import DetectionSequence
    from tlutils.data.records import DetectionDataset


class StepBatches:
    """Epochs of exactly ``steps_per_epoch`` batches over a ``DetectionSequence`` of any length.

    Batch ``i`` of epoch ``e`` is global batch ``g = e * steps_per_epoch + i``: batch ``g mod n`` of
    pass ``g // n`` over the data (``n`` batches a pass), so a tiny few-shot set is simply passed over
    several times per epoch, each pass in a new order with new augmentation. A batch depends on ``g``
    only, so worker threads may build the batches of an epoch in any order.
    """

    def __init__(self, sequence: "DetectionSequence", steps_per_epoch: int):
        self.sequence = sequence
        self.steps_per_epoch = steps_per_epoch
        self.epoch = 0

    def batch(self, index: int) -> Any:
        passes, batch = divmod(self.epoch * self.steps_per_epoch + index, len(self.sequence))
        return self.sequence.batch(batch, epoch=passes)


def step_dataset(sequence: "DetectionSequence", steps_per_epoch: int) -> Any:
    """A ``keras.utils.PyDataset`` of :class:`StepBatches` (its ``.steps``), read by ``fit``."""
    import keras

    from tlutils.data.pipeline import DEFAULT_WORKERS

    class StepDataset(keras.utils.PyDataset):
        def __init__(self) -> None:  # threads: see DEFAULT_WORKERS for why more than one
            super().__init__(workers=DEFAULT_WORKERS, use_multiprocessing=False)
            self.steps = StepBatches(sequence, steps_per_epoch)

        def __len__(self) -> int:
            return steps_per_epoch

        def __getitem__(self, index: int) -> Any:
            return self.steps.batch(index)

    return StepDataset()


@dataclass
class RunData:
    """Everything a run reads: training batches, validation batches and truths, anchors, classes."""

    train: Any  # the PyDataset fit reads
    steps: StepBatches
    val: "DetectionSequence"
    val_truths: list[dict[str, np.ndarray]]
    anchors: np.ndarray
    class_names: dict[int, str]  # model class -> name
    superclasses: dict[str, str]  # class name -> superclass
    num_train_images: int


def training_pool(resolved: ResolvedRun, data_dir: Path | None) -> "DetectionDataset":
    """The rendered training images of the run's country (a target run draws its subset from them)."""
    return synth_dataset(resolved.country, "train", resolved.pool_size, resolved.input_size, data_dir)


def build_data(resolved: ResolvedRun, detector: "keras.Model", pool: "DetectionDataset",
               data_dir: Path | None) -> RunData:
    """Training batches and validation set of a run, for ``detector``'s anchors.

    ``pool`` is :func:`training_pool`'s set: the source stage trains on all of it, a target run on a
    stratified, nested subset of ``num_target_images`` images drawn with the run's seed.
    """
    from tlutils.anchors import generate_anchors
    from tlutils.data import subset
    from tlutils.data.pipeline import DetectionSequence, ground_truths_for_eval
    from tlutils.model import anchor_config_for

    size = resolved.input_size
    train_set = pool if resolved.stage == "source" else subset(pool, resolved.num_target_images, resolved.seed)
    val_set = synth_dataset(resolved.country, "val", resolved.num_val_images, size, data_dir)
    label_map, class_names, superclasses = label_maps(pool)
    anchors = np.asarray(generate_anchors(anchor_config_for(detector)), dtype=np.float32)
    train = DetectionSequence(
        train_set, anchors, label_map, batch_size=resolved.batch_size,
        augmenter=augmenter(resolved.augmentation, size), seed=resolved.seed, drop_remainder=True,
    )
    val = DetectionSequence(val_set, anchors, label_map, batch_size=resolved.batch_size, input_size=size,
                            shuffle=False)
    dataset = step_dataset(train, resolved.steps_per_epoch)
    return RunData(dataset, dataset.steps, val, ground_truths_for_eval(val), anchors, class_names, superclasses,
                   len(train_set))


def augmenter(augmentation: str, size: int) -> Any:
    """The ``Augmenter`` of one of ``AUGMENTATIONS`` for a ``size`` x ``size`` input."""
    from tlutils.data.augment import TRAFFIC_SIGN_MAX_ZOOM, Augmenter

    if augmentation == "ssd":
        return Augmenter(size, max_zoom=TRAFFIC_SIGN_MAX_ZOOM)
    return Augmenter(size, photometric=augmentation == "photometric", zoom_out=False, crop=False)


def label_maps(dataset: "DetectionDataset") -> tuple[dict[int, int], dict[int, str], dict[str, str]]:
    """``(dataset id -> model class, model class -> name, name -> superclass)`` of a dataset."""
    from tlutils.data.pipeline import make_label_map

    label_map = make_label_map(dataset.classes)
    names = {model_class: dataset.classes[class_id] for class_id, model_class in label_map.items()}
    superclass_of = getattr(dataset, "superclass_of", {}) or {}
    superclasses = {dataset.classes[i]: s for i, s in superclass_of.items() if s is not None and i in dataset.classes}
    return label_map, names, superclasses
