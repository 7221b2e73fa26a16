"""Training the two pretrained starts: a sign classifier on crops, a whole detector on other data.

Both train with Keras ``fit`` and Adam at the base learning rate, a tenth of it for the last fifth
(``tlutils.experiment.config.STEP_DECAY_*``, the SSD paper's recipe), under the current Keras dtype
policy. Both are deterministic: the seed fixes the initialization (``keras.utils.set_random_seed``)
and the batch order. Each writes its ``.keras`` file atomically and returns a JSON-able summary.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras

    from tlutils.data.records import DetectionDataset
    from tlutils.pretrain.crops import SignCrops


def train_classifier(
    crops: "SignCrops",
    out: str | os.PathLike,
    *,
    width: float,
    epochs: int,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    seed: int = 0,
    preprocessing: str = "tf",
    l2_regularization: float = 0.0,
    val_crops: "SignCrops | None" = None,
    verbose: int = 1,
) -> dict[str, Any]:
    """Train a :func:`tlutils.model.build_sign_classifier` on ``crops`` and save it to ``out`` (``.keras``).

    Classes are the crops' class table in id order: logit ``i`` is the ``i``-th smallest class id.

    Args:
        crops: training crops (:func:`tlutils.pretrain.sign_crops`); their size is the input size.
        out: the ``.keras`` file to write (atomically).
        width: channel multiplier, the detector's.
        epochs, batch_size, learning_rate, seed: the schedule (see the module docstring).
        preprocessing, l2_regularization: passed to ``build_sign_classifier``.
        val_crops: validation crops (the same class table); their accuracy is reported per epoch.
        verbose: Keras' ``fit`` verbosity.

    Returns:
        ``{"classes": {logit: name}, "history": {metric: per-epoch values}, "num_train": ...,
        "num_val": ..., "seconds": ...}``.

    Raises:
        ValueError: an argument out of range, or validation crops with another class table.
    """
    import keras

    from tlutils.model import build_sign_classifier

    class_ids = np.array(sorted(crops.classes), dtype=np.int64)
    if val_crops is not None and dict(val_crops.classes) != dict(crops.classes):
        raise ValueError("val_crops must have the training crops' class table")
    _check_schedule(epochs, batch_size, learning_rate)
    keras.utils.set_random_seed(seed)
    model = build_sign_classifier(len(class_ids), crops.images.shape[1], width, preprocessing, l2_regularization)
    steps = epochs * math.ceil(len(crops.labels) / batch_size)
    model.compile(optimizer=_adam_with_step_decay(learning_rate, steps),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")], jit_compile=_jit_compile())
    validation = None
    if val_crops is not None:
        validation = (val_crops.images, np.searchsorted(class_ids, val_crops.labels))
    started = time.perf_counter()
    history = model.fit(crops.images, np.searchsorted(class_ids, crops.labels), batch_size=batch_size,
                        epochs=epochs, shuffle=True, validation_data=validation, verbose=verbose)
    seconds = time.perf_counter() - started
    _save(model, out)
    return {
        "classes": {index: crops.classes[int(class_id)] for index, class_id in enumerate(class_ids)},
        "history": _floats(history.history), "num_train": len(crops.labels),
        "num_val": 0 if val_crops is None else len(val_crops.labels), "seconds": seconds,
    }


def pretrain_detector(
    train_set: "DetectionDataset",
    out: str | os.PathLike,
    *,
    input_size: int,
    width: float,
    epochs: int,
    batch_size: int,
    learning_rate: float = 1e-3,
    seed: int = 0,
    preprocessing: str = "tf",
    l2_regularization: float = 0.0,
    augmentation: str = "photometric",
    val_set: "DetectionDataset | None" = None,
    verbose: int = 1,
) -> dict[str, Any]:
    """Train a whole SSD-VGG16 on ``train_set`` (all its classes) and save it to ``out`` (``.keras``).

    Args:
        train_set: any detection dataset (e.g. ``tlutils.pretrain.load_pretrain_data``'s merge).
        out: the ``.keras`` file to write (atomically).
        input_size, width, preprocessing, l2_regularization: passed to ``build_ssd_vgg16``.
        epochs, batch_size, learning_rate, seed: the schedule (see the module docstring).
        augmentation: one of ``tlutils.experiment.config.AUGMENTATIONS`` (the source stage's default).
        val_set: validation images; their mAP@0.5 after training goes into the summary.
        verbose: Keras' ``fit`` verbosity.

    Returns:
        ``{"classes": {model class: name}, "superclasses": {name: superclass}, "history": ...,
        "val_map50": float or None, "num_train": ..., "num_val": ..., "seconds": ...}``.
    """
    import keras

    from tlutils.anchors import generate_anchors
    from tlutils.data.pipeline import DetectionSequence, ground_truths_for_eval
    from tlutils.evaluation import evaluate_detector
    from tlutils.experiment.run_data import augmenter, label_maps
    from tlutils.model import anchor_config_for, build_ssd_vgg16
    from tlutils.training import SSDTrainer

    _check_schedule(epochs, batch_size, learning_rate)
    label_map, class_names, superclasses = label_maps(train_set)
    keras.utils.set_random_seed(seed)
    detector = build_ssd_vgg16(len(class_names), input_size=input_size, width=width,
                               preprocessing=preprocessing, l2_regularization=l2_regularization)
    anchors = np.asarray(generate_anchors(anchor_config_for(detector)), dtype=np.float32)
    train = DetectionSequence(train_set, anchors, label_map, batch_size=min(batch_size, len(train_set)),
                              augmenter=augmenter(augmentation, input_size), seed=seed, drop_remainder=True)
    trainer = SSDTrainer(detector)
    trainer.compile(optimizer=_adam_with_step_decay(learning_rate, epochs * len(train)), jit_compile=_jit_compile())
    trainer.optimizer.build(trainer.trainable_variables)  # outside the first traced step (see the runner)
    started = time.perf_counter()
    history = trainer.fit(train, epochs=epochs, shuffle=False, verbose=verbose)
    seconds = time.perf_counter() - started
    val_map50 = None
    if val_set is not None:
        val = DetectionSequence(val_set, anchors, label_map, batch_size=batch_size, input_size=input_size,
                                shuffle=False, unmapped="drop")
        val_map50 = evaluate_detector(trainer, val, ground_truths_for_eval(val), anchors)["map50"]
    _save(detector, out)
    return {
        "classes": class_names, "superclasses": superclasses, "history": _floats(history.history),
        "val_map50": val_map50, "num_train": len(train_set), "num_val": 0 if val_set is None else len(val_set),
        "seconds": seconds,
    }


def _check_schedule(epochs: int, batch_size: int, learning_rate: float) -> None:
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not 0 < learning_rate < float("inf"):
        raise ValueError(f"learning_rate must be a finite number > 0, got {learning_rate!r}")


def _adam_with_step_decay(learning_rate: float, total_steps: int) -> "keras.optimizers.Optimizer":
    """Adam at ``learning_rate``, ``STEP_DECAY_FACTOR`` times it for the last ``STEP_DECAY_FRACTION``."""
    import keras

    from tlutils.experiment.config import STEP_DECAY_FACTOR, STEP_DECAY_FRACTION

    boundary = max(1, round(total_steps * (1.0 - STEP_DECAY_FRACTION)))
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [boundary], [learning_rate, learning_rate * STEP_DECAY_FACTOR])
    return keras.optimizers.Adam(schedule)


def _jit_compile() -> bool | str:
    """XLA except on TensorFlow, where it made CPU training slower (docs/performance.md)."""
    import keras

    return False if keras.backend.backend() == "tensorflow" else "auto"


def _save(model: "keras.Model", out: str | os.PathLike) -> None:
    from tlutils.experiment.atomic import write_file

    out = Path(out)
    if out.suffix != ".keras":
        raise ValueError(f"{out}: a pretrained start is saved as a .keras file")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_file(out, model.save)


def _floats(history: dict[str, list[Any]]) -> dict[str, list[float]]:
    return {name: [float(value) for value in values] for name, values in history.items()}
