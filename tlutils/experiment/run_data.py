"""The data of one run: its training batches (exactly ``steps_per_epoch`` per epoch) and validation set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tlutils.experiment.datasets import is_synth, load_split
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
    """A ``keras.utils.PyDataset`` of :class:`StepBatches` (its ``.steps``), read by ``fit``.

    ``fit``'s callback sets ``steps.epoch`` when an epoch begins, so a batch must be made after that.
    On TensorFlow Keras' enqueuer makes them (:data:`~tlutils.data.pipeline.DEFAULT_WORKERS` threads,
    started with the epoch). Elsewhere ``fit`` reads them one by one as it trains (one worker, no
    enqueuer): JAX's ``fit`` first reads a batch to build the model, and the batches the enqueuer had
    made ahead for that read were handed out first in the next epoch, so every epoch began with
    batches of the one before (ci: 3 of its 4) and a resumed run trained on others than an
    uninterrupted one.
    """
    import keras

    from tlutils.data.pipeline import DEFAULT_WORKERS

    workers = DEFAULT_WORKERS if keras.backend.backend() == "tensorflow" else 1

    class StepDataset(keras.utils.PyDataset):
        def __init__(self) -> None:  # threads on TensorFlow: see DEFAULT_WORKERS for why more than one
            super().__init__(workers=workers, use_multiprocessing=False)
            self.steps = StepBatches(sequence, steps_per_epoch)

        def __len__(self) -> int:
            return steps_per_epoch

        def __getitem__(self, index: int) -> Any:
            return self.steps.batch(index)

    return StepDataset()


#: Training crops per frame of real data (``tlutils.tiling.crop_samples``): around signs, then background.
REAL_POSITIVE_CROPS = 4
REAL_BACKGROUND_CROPS = 2
#: Scale jitter of those crops for the "ssd" augmentation: windows of 1-2x the input side, shrunk to it,
#: as the tiles of scale 0.5 that evaluation also uses (the other augmentations crop at scale 1).
REAL_SCALE_JITTER = (0.5, 1.0)
#: Tiled evaluation of real frames: a tile at native resolution and one at half, sharing this share of
#: the input side, so a sign up to that many pixels lies whole in a native tile and one up to twice that
#: in a half-scale tile (64 pixels at the cpu profile's 160: GTSDB's signs are 16-128; tlutils.tiling).
REAL_TILE_SCALES = (1.0, 0.5)
REAL_TILE_OVERLAP_SHARE = 0.4


def real_tile_options(input_size: int) -> dict[str, Any]:
    """``scales`` and ``overlap`` (input pixels) of whole-frame tiled inference for a detector of
    ``input_size`` (``tlutils.tiling.tile_grid`` / ``evaluate_tiled``)."""
    return {"scales": REAL_TILE_SCALES, "overlap": round(REAL_TILE_OVERLAP_SHARE * input_size)}


@dataclass
class RunData:
    """Everything a run reads: training batches, what it is evaluated on, anchors, classes.

    ``evaluate(model, final, losses)`` scores a detector on the validation set: for the sign world one
    pass over the rendered val images (``tlutils.evaluation.evaluate_detector``) every epoch; for real
    data the losses come from fixed validation crops every epoch, and mAP from tiled inference on the
    whole val frames (``tlutils.evaluation.evaluate_tiled``, small signs at their real size) at epoch
    0 and the last epoch only -- it costs seconds per frame on a CPU -- and is NaN in between.
    """

    train: Any  # the PyDataset fit reads
    steps: StepBatches
    val: "DetectionSequence"
    val_truths: list[dict[str, np.ndarray]]
    anchors: np.ndarray
    label_map: dict[int, int]  # dataset id -> model class
    class_names: dict[int, str]  # model class -> name
    num_train_images: int
    val_frames: "DetectionDataset | None" = None  # real data: the whole val frames
    score_folder: Path | None = None  # where whole-frame scores are remembered (``score_cache``)

    def evaluate(self, model: Any, final: bool, losses: bool = True, shared: bool = False) -> dict[str, Any]:
        """``map50`` (see above) and its per-class scores (``tlutils.evaluation.PER_CLASS_KEYS``, keyed
        by class name), with ``final`` also ``coco_map`` and by object size, with ``losses`` the val loss
        terms. ``shared``: weights that other runs start from too (a zero-shot evaluation), so the sign
        world's scores are remembered in ``score_folder`` as whole-frame scores always are."""
        from tlutils.evaluation import PER_CLASS_KEYS, add_regularization, evaluate_detector, evaluate_tiled
        from tlutils.experiment.score_cache import cached_scores

        if self.val_frames is None:
            if not shared:
                return evaluate_detector(model, self.val, self.val_truths, self.anchors, coco=final,
                                         losses=losses, class_names=self.class_names)
            scores = cached_scores(self.score_folder, model, self._val_context(model, final, losses),
                                   lambda: evaluate_detector(model, self.val, self.val_truths, self.anchors,
                                                             coco=final, losses=losses, class_names=self.class_names,
                                                             regularization=False))
            return add_regularization(scores, model) if losses else scores  # the L2 term is the run's own
        crops = evaluate_detector(model, self.val, self.val_truths, self.anchors, losses=losses)
        scores = {name: value for name, value in crops.items() if name not in PER_CLASS_KEYS}  # losses only
        scores.update(map50=float("nan"))
        if not final:
            return scores
        frames = cached_scores(self.score_folder, model, self._frames_context(), lambda: evaluate_tiled(
            model, list(self.val_frames), self.anchors, self.label_map, tile_size=self.val.input_size,
            class_names=self.class_names, **real_tile_options(self.val.input_size)))
        scores.update(map50=frames["map50"], coco_map=frames["coco_map"],
                      **{f"map50_{name}": value for name, value in frames["by_size"].items()},
                      **{name: frames[name] for name in PER_CLASS_KEYS})
        return scores

    def _val_context(self, model: Any, final: bool, losses: bool) -> str:
        """What a sign-world score depends on besides the weights: the val batches as the detector sees
        them (images and encoded targets), the boxes mAP is scored against, anchors, label map and class
        names, which scores are asked for and the MultiBox loss's settings."""
        from tlutils.experiment.score_cache import context_digest
        from tlutils.losses import MultiBoxLoss

        multibox = getattr(model, "multibox", None) or MultiBoxLoss()
        settings = sorted((name, value) for name, value in vars(multibox).items()
                          if isinstance(value, (int, float, str)))
        parts: list[Any] = [final, losses, type(multibox).__name__, settings, self.anchors,
                            sorted(self.label_map.items()), sorted(self.class_names.items())]
        for index in range(len(self.val)):
            images, targets = self.val[index]
            parts += [images, targets["class_targets"], targets["box_targets"]]
        for truth in self.val_truths:
            parts += [np.asarray(truth[name]) for name in sorted(truth)]
        return context_digest(*parts)

    def _frames_context(self) -> str:
        """What the whole-frame score depends on besides the weights: the frames (files, their size and
        time, the boxes), the label map and class names, anchors and tiling."""
        from tlutils.experiment.score_cache import context_digest

        parts: list[Any] = [sorted(self.label_map.items()), sorted(self.class_names.items()), self.anchors,
                            self.val.input_size, REAL_TILE_SCALES, REAL_TILE_OVERLAP_SHARE]
        for record in self.val_frames:
            stat = Path(record.image_path).stat()
            parts += [str(record.image_path), stat.st_size, stat.st_mtime_ns, record.boxes, record.labels]
        return context_digest(*parts)


def training_pool(resolved: ResolvedRun, data_dir: Path | None) -> "DetectionDataset":
    """The training images of the run's data (a target run draws its subset from them)."""
    return load_split(resolved.data, "train", resolved.classes, resolved.pool_size, resolved.input_size, data_dir)


def build_data(resolved: ResolvedRun, detector: "keras.Model", pool: "DetectionDataset",
               data_dir: Path | None) -> RunData:
    """Training batches and validation set of a run, for ``detector``'s anchors.

    ``pool`` is :func:`training_pool`'s set: the source stage trains on all of it, a target run on a
    stratified, nested subset of ``num_target_images`` images drawn with the run's seed. Real frames
    are trained on as crops at native resolution (``tlutils.tiling.crop_samples``) made once per run.
    """
    from tlutils.anchors import generate_anchors
    from tlutils.data import subset
    from tlutils.data.pipeline import DetectionSequence, ground_truths_for_eval
    from tlutils.model import anchor_config_for

    size, synth = resolved.input_size, is_synth(resolved.data)
    train_set = pool if resolved.stage == "source" else subset(pool, resolved.num_target_images, resolved.seed)
    val_set = load_split(resolved.data, "val", resolved.classes, resolved.num_val_images, size, data_dir)
    label_map, class_names, _ = label_maps(pool)
    anchors = np.asarray(generate_anchors(anchor_config_for(detector, resolved.smallest_scale)), dtype=np.float32)
    if synth:
        train_data, train_augmenter, val_data = train_set, augmenter(resolved.augmentation, size), val_set
    else:
        train_data = _crops(train_set, size, resolved.seed, resolved.augmentation)
        train_augmenter = augmenter("photometric" if resolved.augmentation != "none" else "none", size)
        val_data = _crops(val_set, size, 0, "none")
    train = DetectionSequence(train_data, anchors, label_map, batch_size=resolved.batch_size,
                              augmenter=train_augmenter, seed=resolved.seed, drop_remainder=True)
    val = DetectionSequence(val_data, anchors, label_map, batch_size=resolved.batch_size, input_size=size,
                            shuffle=False)
    dataset = step_dataset(train, resolved.steps_per_epoch)
    return RunData(dataset, dataset.steps, val, ground_truths_for_eval(val), anchors, label_map, class_names,
                   len(train_set), None if synth else val_set)


def _crops(frames: "DetectionDataset", size: int, seed: int, augmentation: str) -> list[Any]:
    """Crops of real frames at the input size (see :data:`REAL_POSITIVE_CROPS`)."""
    from tlutils.tiling import crop_samples

    jitter = REAL_SCALE_JITTER if augmentation == "ssd" else (1.0, 1.0)
    return crop_samples(frames, size, seed=seed, num_positive=REAL_POSITIVE_CROPS,
                        num_background=REAL_BACKGROUND_CROPS, scale_jitter=jitter)
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
