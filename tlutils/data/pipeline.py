"""Training batches for ``model.fit``: augmented images and SSD targets, as a ``keras.utils.PyDataset``.

:class:`DetectionSequence` turns records (or in-memory ``(image, boxes, labels)`` samples) into
batches

    ``(images float32 (B, H, W, 3) raw RGB 0-255,
       {"class_targets": int32 (B, A), "box_targets": float32 (B, A, 4)})``

where ``(H, W)`` is the model's input size (``input_size``: a side ``S`` for a square input, or
``(height, width)``) and ``A`` the number of its default boxes (anchors). Per image it runs the
augmentation (:class:`tlutils.data.augment.Augmenter`, or only a resize for validation), normalizes
the boxes to [0, 1] (x by ``W``, y by ``H``) and calls :func:`tlutils.encoding.encode` against the
model's anchors.

Conventions: records keep **pixel** corners ``(xmin, ymin, xmax, ymax)`` and the dataset's own class
ids; ``label_map`` maps those ids to the model's classes ``1..C`` (0 = background). Anchors are
centroids ``(cx, cy, w, h)`` normalized to [0, 1] (``tlutils.anchors.generate_anchors``).

Determinism: the augmentation of image ``i`` in epoch ``e`` draws from
``np.random.default_rng([seed, e, i])`` and the epoch's order from ``np.random.default_rng([seed,
e])``, so a batch depends on ``(seed, epoch, batch index)`` only — not on which worker thread or process
builds it — and an image's augmentation not even on the batch size. ``on_epoch_end`` moves to the next
epoch; ``fit`` calls it after every epoch (Keras 3 also once before the first, so ``fit`` trains on
epochs 1, 2, ...: the same ones on every run). Keras' ``fit(shuffle=True)`` additionally permutes
the order in which it *asks* for the batches (Python's ``random``; ``keras.utils.set_random_seed``
fixes it); their contents stay the same.

The augmenter sees **model classes** (labels are mapped first, so unmapped boxes never steer the
crop): give ``Augmenter.flip_label_map`` in model classes, e.g. ``{label_map[turn_left]:
label_map[turn_right]}``.

Parallelism (Keras 3 ``PyDataset``): pass ``workers=N`` to build batches in ``N`` threads (Pillow's
resampling and NumPy release the GIL for part of the work), add ``use_multiprocessing=True`` for
processes (the sequence is picklable). The default is :data:`DEFAULT_WORKERS` threads even where one
keeps up: see there why one is slower on TensorFlow. Images are decoded once, when the sequence is
built, and kept in memory at a working size (longest side twice the input's longer side by default),
which keeps the sign world and few-shot subsets small and lets forked worker processes share the cache.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, Union

import keras
import numpy as np

from tlutils.anchors import Size, canonical_size, height_width
from tlutils.data.augment import Augmenter, resize_image
from tlutils.data.records import DetectionRecord, load_image
from tlutils.encoding import encode

Sample = tuple[np.ndarray, np.ndarray, np.ndarray]
"""An in-memory sample ``(image uint8 (H, W, 3), boxes (K, 4) pixel corners, labels (K,))``, e.g.
what ``tlutils.data.synth.render_scene`` returns."""

Data = Union[Sequence[DetectionRecord], Sequence[Sample]]
Unmapped = Literal["raise", "drop"]

# Cached images are kept with their longest side at most this many times the input size: crops of
# down to 1 / WORKING_SIZE_FACTOR of the image side are then not upsampled.
WORKING_SIZE_FACTOR = 2
#: Threads that build the batches ``fit`` reads. With more than one, Keras reads them through its own
#: ordered enqueuer and switches tf.data autotuning off. With one, TensorFlow autotunes a prefetch
#: whose optimization thread sleeps in periods that double up to a minute, and each epoch's iterator,
#: freed at the next epoch's first step, waits that sleep out (idle epoch starts of up to 40 s, see
#: docs/performance.md).
DEFAULT_WORKERS = 2


def make_label_map(
    classes: Mapping[int, str] | Iterable[int],
    superclass_of: Mapping[int, str | None] | None = None,
) -> dict[int, int]:
    """Map dataset class ids to contiguous model classes ``1..C`` (0 stays background).

    Args:
        classes: the dataset's class ids (``dataset.classes`` or any iterable of ids). They are
            numbered in ascending id order.
        superclass_of: optional class id -> superclass (``dataset.superclass_of``): then every class of
            one superclass maps to the same model class, superclasses numbered in
            ``tlutils.data.records.SUPERCLASSES`` order (those present only); classes whose superclass
            is ``None`` are left out of the map.

    Returns:
        ``{dataset_id: model_class}``. Example: ``make_label_map({0: "a", 7: "b", 3: "c"})`` gives
        ``{0: 1, 3: 2, 7: 3}``.
    """
    ids = sorted({int(class_id) for class_id in classes})
    if not ids:
        raise ValueError("classes is empty: there is nothing to map")
    if superclass_of is None:
        return {class_id: model_class for model_class, class_id in enumerate(ids, start=1)}
    from tlutils.data.records import SUPERCLASSES

    present = {superclass_of.get(class_id) for class_id in ids} - {None}
    unknown = present - set(SUPERCLASSES)
    if unknown:
        raise ValueError(f"superclasses {sorted(unknown)} are not in SUPERCLASSES = {SUPERCLASSES}")
    number = {name: index for index, name in enumerate((s for s in SUPERCLASSES if s in present), start=1)}
    return {class_id: number[superclass_of[class_id]] for class_id in ids if superclass_of.get(class_id) is not None}


class DetectionSequence(keras.utils.PyDataset):
    """Batches of augmented images and SSD targets for ``fit`` / ``evaluate`` / ``predict``.

    Example::

        anchors = generate_anchors(anchor_config_for(model))
        label_map = make_label_map(train_set.classes)
        train = DetectionSequence(train_set, anchors, label_map, batch_size=16,
                                  augmenter=Augmenter(160, max_zoom=TRAFFIC_SIGN_MAX_ZOOM))
        val = DetectionSequence(val_set, anchors, label_map, batch_size=16, input_size=160, shuffle=False)
        trainer.fit(train, validation_data=val, epochs=10)

    Args:
        data: a ``DetectionDataset`` / sequence of ``DetectionRecord``, or in-memory samples
            ``(image uint8 (H, W, 3), boxes (K, 4) pixel corners, labels (K,))``.
        anchors: ``(A, 4)`` the model's default boxes, normalized centroids.
        label_map: dataset class id -> model class ``1..C``; ``None``: the labels are model classes
            already.
        batch_size: images per batch; the last batch is smaller unless ``drop_remainder``.
        augmenter: the training augmentation; ``None``: resize only (validation, test, prediction).
        input_size: the model's input size (``tlutils.model.input_size_of``): a side ``S`` or
            ``(height, width)``; needed without an augmenter, and must equal ``augmenter.output_size``
            with one.
        shuffle: a new order every epoch (from ``seed`` and the epoch); ``False``: dataset order.
        seed: seed of the order and of the augmentation.
        cache_images: decode every image once, now, and keep it in memory at ``working_size``;
            ``False``: decode on every use (for data that does not fit in memory).
        working_size: longest side of the kept images (never enlarged); default twice the input's
            longer side. Memory is about ``num_images * working_size**2 * 3 * height / width`` bytes.
        unmapped: boxes whose label is not in ``label_map``: ``"raise"`` a ValueError, or ``"drop"``
            them (they become background: the detector learns *not* to fire on those signs).
        drop_remainder: leave out the last, smaller batch.
        pos_iou, neg_iou: matching thresholds passed to ``encode``.
        workers, use_multiprocessing, max_queue_size: Keras ``PyDataset`` parallelism, used by ``fit``.
    """

    def __init__(
        self,
        data: Data,
        anchors: np.ndarray,
        label_map: Mapping[int, int] | None = None,
        batch_size: int = 16,
        augmenter: Augmenter | None = None,
        input_size: Size | None = None,
        shuffle: bool = True,
        seed: int = 0,
        cache_images: bool = True,
        working_size: int | None = None,
        unmapped: Unmapped = "raise",
        drop_remainder: bool = False,
        pos_iou: float = 0.5,
        neg_iou: float = 0.5,
        workers: int = DEFAULT_WORKERS,
        use_multiprocessing: bool = False,
        max_queue_size: int = 10,
    ):
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)
        self.input_size = _input_size(augmenter, input_size)
        self.augmenter = augmenter if augmenter is not None else Augmenter.validation(self.input_size)
        self.anchors = np.asarray(anchors, dtype=np.float32)
        # An image without boxes costs encode nothing: this checks anchors and thresholds now.
        encode(np.zeros((0, 4)), np.zeros(0, dtype=np.int32), self.anchors, pos_iou=pos_iou, neg_iou=neg_iou)
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_remainder = bool(drop_remainder)
        self.pos_iou, self.neg_iou = pos_iou, neg_iou
        if working_size is None:
            working_size = WORKING_SIZE_FACTOR * max(self.input_shape)
        self.working_size = int(working_size)
        if self.working_size < 1:
            raise ValueError(f"working_size must be a positive integer, got {working_size!r}")

        samples = _as_samples(data)
        self.label_map = None if label_map is None else _check_label_map(label_map)
        self._sources = [source for source, _, _ in samples]  # record (decoded on use) or image array
        self._image_sizes = [_image_size(source) for source in self._sources]  # (width, height)
        self._boxes, self._labels = [], []  # pixel corners in the original image; model classes
        for index, (source, boxes, labels) in enumerate(samples):
            boxes, labels = _map_labels(index, source, boxes, labels, self.label_map, unmapped)
            self._boxes.append(boxes)
            self._labels.append(labels)
        self._images = [self._load(index) for index in range(len(samples))] if cache_images else None

        if len(self) < 1:
            raise ValueError(
                f"{len(samples)} images make no full batch of {self.batch_size}: lower batch_size or "
                "set drop_remainder=False"
            )
        self.epoch = 0
        self._order = self._epoch_order(0)

    # -- the PyDataset protocol -------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of batches per epoch."""
        whole, remainder = divmod(len(self._sources), self.batch_size)
        return whole + int(remainder > 0 and not self.drop_remainder)

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Batch ``index`` of the current epoch: ``(images, {"class_targets", "box_targets"})``."""
        return self.batch(index)

    def batch(self, index: int, epoch: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Batch ``index`` of ``epoch`` (default: the current one), as ``__getitem__`` returns it.

        With ``epoch`` given this reads no state that ``set_epoch`` changes, so several threads may
        build batches of different epochs at the same time (the runner's few-shot epochs do).
        """
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        if epoch is None:
            epoch, order = self.epoch, self._order
        else:
            epoch = int(epoch)
            order = self._epoch_order(epoch)
        positions = order[index * self.batch_size : (index + 1) * self.batch_size]
        (height, width), num_anchors = self.input_shape, len(self.anchors)
        normalizer = np.array([width, height, width, height], dtype=np.float32)  # pixel corners -> [0, 1]
        images = np.empty((len(positions), height, width, 3), dtype=np.float32)
        class_targets = np.empty((len(positions), num_anchors), dtype=np.int32)
        box_targets = np.empty((len(positions), num_anchors, 4), dtype=np.float32)
        for row, position in enumerate(positions):
            image, boxes, labels = self.sample(int(position), epoch)
            images[row] = image
            box_targets[row], class_targets[row] = encode(
                boxes / normalizer, labels, self.anchors, pos_iou=self.pos_iou, neg_iou=self.neg_iou
            )
        return images, {"class_targets": class_targets, "box_targets": box_targets}

    def on_epoch_end(self) -> None:
        """Move to the next epoch: new order (with ``shuffle``) and new augmentation draws."""
        self.set_epoch(self.epoch + 1)

    # -- helpers for notebooks and evaluation -------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Jump to ``epoch`` (e.g. to resume training, or to replay an epoch's batches)."""
        self.epoch = int(epoch)
        self._order = self._epoch_order(self.epoch)

    @property
    def input_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the batches' images."""
        return height_width(self.input_size)

    @property
    def num_images(self) -> int:
        return len(self._sources)

    @property
    def cache_nbytes(self) -> int:
        """Bytes held by the image cache (0 without ``cache_images``)."""
        return 0 if self._images is None else sum(image.nbytes for image, _ in self._images)

    def sample(self, index: int, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image ``index`` (dataset order) as the model sees it in ``epoch`` (default: the current one).

        Returns:
            ``(image uint8 (H, W, 3), boxes float32 (K, 4) pixel corners in that image, labels int32
            (K,) model classes)`` — what the batch holds before the boxes are normalized and encoded.
        """
        epoch = self.epoch if epoch is None else int(epoch)
        image, boxes = self._images[index] if self._images is not None else self._load(index)
        rng = np.random.default_rng([self.seed, epoch, index]) if self.augmenter.is_random else None
        try:
            return self.augmenter(image, boxes, self._labels[index], rng)
        except ValueError as error:
            raise ValueError(f"{_describe(index, self._sources[index])}: {error}") from None

    # -- internals --------------------------------------------------------------------------------

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self._sources))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self._sources))

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``index`` at the working size and its boxes in that image's pixels."""
        source = self._sources[index]
        image = load_image(source) if isinstance(source, DetectionRecord) else source
        width, height = self._image_sizes[index]
        factor = min(1.0, self.working_size / max(width, height))
        working = (max(1, round(width * factor)), max(1, round(height * factor)))
        return resize_image(image, self._boxes[index], *working)

    def __repr__(self) -> str:
        return (
            f"<DetectionSequence: {self.num_images} images, {len(self)} batches of {self.batch_size}, "
            f"input {self.input_size}, {len(self.anchors)} anchors, "
            f"{'augmented' if self.augmenter.is_random else 'resize only'}, epoch {self.epoch}>"
        )


def ground_truths_for_eval(
    data: DetectionSequence | Data,
    label_map: Mapping[int, int] | None = None,
    unmapped: Unmapped = "raise",
) -> list[dict[str, np.ndarray]]:
    """Ground truth per image for mAP: ``{"boxes": float32 (K, 4) normalized corners, "labels": int32
    (K,) model classes}``, in dataset order.

    Normalized corners are the same at every input size (the pipeline warps the whole image to the
    input, x by its width and y by its height), so they compare directly with decoded detections of a
    model of any input size, square or not.
    Predict on a sequence built with ``shuffle=False`` so that detections come in the same order.

    Args:
        data: a :class:`DetectionSequence` (its ``label_map`` and ``unmapped`` apply; the arguments
            here must then be left out), records, or in-memory samples.
        label_map, unmapped: as for :class:`DetectionSequence`.
    """
    if isinstance(data, DetectionSequence):
        if label_map is not None:
            raise ValueError("a DetectionSequence has its own label_map: leave label_map out")
        boxes, labels, sizes = data._boxes, data._labels, data._image_sizes
    else:
        label_map = None if label_map is None else _check_label_map(label_map)
        samples = _as_samples(data)
        mapped = [_map_labels(index, *sample, label_map, unmapped) for index, sample in enumerate(samples)]
        boxes, labels = (list(column) for column in zip(*mapped))
        sizes = [_image_size(source) for source, _, _ in samples]
    return [
        {"boxes": image_boxes / np.array(size * 2, dtype=np.float32), "labels": image_labels.copy()}
        for image_boxes, image_labels, size in zip(boxes, labels, sizes)
    ]


def _input_size(augmenter: Augmenter | None, input_size: Size | None) -> Size:
    """The input size as stored: a side for a square, else ``(height, width)``."""
    if augmenter is None and input_size is None:
        raise ValueError("give input_size (the model's input side or (height, width)) or an augmenter")
    if input_size is not None:
        input_size = canonical_size(input_size, "input_size")
    if augmenter is not None and input_size is not None and augmenter.output_size != input_size:
        raise ValueError(f"input_size {input_size} differs from augmenter.output_size {augmenter.output_size}")
    return augmenter.output_size if augmenter is not None else input_size


def _check_label_map(label_map: Mapping[int, int]) -> dict[int, int]:
    checked = {int(dataset_id): int(model_class) for dataset_id, model_class in label_map.items()}
    bad = {dataset_id: model_class for dataset_id, model_class in checked.items() if model_class < 1}
    if bad:
        raise ValueError(f"label_map sends {bad} to classes < 1; model classes are 1..C (0 is background)")
    return checked


def _as_samples(data: Data) -> list[tuple[DetectionRecord | np.ndarray, np.ndarray, np.ndarray]]:
    """``(source, boxes, labels)`` per image: the record (decoded later) or the image array itself."""
    samples = []
    for index, item in enumerate(data):
        if isinstance(item, DetectionRecord):
            samples.append((item, item.boxes, item.labels))
        elif isinstance(item, (tuple, list)) and len(item) == 3:
            image, boxes, labels = item
            image = np.asarray(image)
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"sample {index}: image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
            boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
            samples.append((image, boxes, np.asarray(labels, dtype=np.int64).reshape(-1)))
        else:
            raise ValueError(
                f"item {index} is a {type(item).__name__}: give DetectionRecords or (image, boxes, labels) samples"
            )
    if not samples:
        raise ValueError("data is empty")
    return samples


def _image_size(source: DetectionRecord | np.ndarray) -> tuple[int, int]:
    """``(width, height)`` of a record's image or of an image array."""
    if isinstance(source, DetectionRecord):
        return source.width, source.height
    return source.shape[1], source.shape[0]


def _describe(index: int, source: DetectionRecord | np.ndarray) -> str:
    return f"image {index} ({source.image_path})" if isinstance(source, DetectionRecord) else f"sample {index}"


def _map_labels(
    index: int,
    source: DetectionRecord | np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    label_map: Mapping[int, int] | None,
    unmapped: Unmapped,
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(K', 4)`` float32 and model classes ``(K',)`` int32 of one image, per ``label_map``."""
    if unmapped not in ("raise", "drop"):
        raise ValueError(f'unmapped must be "raise" or "drop", got {unmapped!r}')
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    labels = np.asarray(labels).reshape(-1)
    if label_map is None:
        if (labels < 1).any():
            raise ValueError(
                f"{_describe(index, source)} has labels {sorted(set(labels[labels < 1].tolist()))} < 1 "
                "and no label_map: model classes are 1..C (make_label_map builds a map)"
            )
        return boxes, labels.astype(np.int32)
    known = np.array([int(label) in label_map for label in labels.tolist()], dtype=bool)
    if not known.all() and unmapped == "raise":
        missing = sorted(set(labels[~known].tolist()))
        raise ValueError(
            f"{_describe(index, source)} has labels {missing} that label_map does not map: add them, or "
            'pass unmapped="drop" to treat those boxes as background'
        )
    mapped = np.array([label_map[int(label)] for label in labels[known].tolist()], dtype=np.int32)
    return boxes[known], mapped
