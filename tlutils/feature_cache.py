"""Frozen-feature caching: freezing as real speed.

A frozen part of the detector never changes, and when its inputs are not augmented its outputs do not
change either: every epoch recomputes the same features. This module splits a detector at its
frozen/trainable border into two Keras models, runs the frozen one **once** per training image, and
trains the trainable one on the stored features (the "bottleneck features" recipe of the Keras
transfer-learning guide, for a detector). The frozen forward pass then costs one pass over the data
instead of one per step; what remains per step is the trainable part, forward and backward.

Only valid when the frozen part's inputs are the same every epoch: no augmentation at all (colour
changes alter the pixels the frozen convs see as much as crops do). The caller checks that
(``tlutils.experiment`` does: the run's augmentation must be ``"none"``).

Memory: ``N`` images x the border's feature maps, e.g. 50 images, freeze:block3 at 160 px and width
0.25: 50 x 20 x 20 x 64 float32 = 5 MB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import keras
import numpy as np

if TYPE_CHECKING:
    from tlutils.data.pipeline import DetectionSequence

__all__ = ["FeatureBatches", "cache_features", "frozen_layers", "split_frozen"]


def _inbound_layers(model: keras.Model, layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """The layers whose outputs ``layer`` reads in ``model``'s graph (a layer also called elsewhere,
    e.g. by a training wrapper, has other nodes too).

    Raises:
        ValueError: ``layer`` is called more than once inside ``model``.
    """
    nodes = [node for nodes in model._nodes_by_depth.values() for node in nodes if node.operation is layer]
    if len(nodes) > 1:
        raise ValueError(f"layer {layer.name!r} is called more than once; cannot split the model there")
    return [tensor._keras_history.operation for tensor in nodes[0].input_tensors] if nodes else []


def frozen_layers(detector: keras.Model) -> list[keras.layers.Layer]:
    """The layers of the frozen part: ``trainable=False`` (``tlutils.model.freeze`` sets every layer's
    flag), in model order.

    Raises:
        ValueError: nothing is frozen, or a frozen layer reads a
            trainable one (then its output changes while training: not a frozen part).
    """
    frozen = [layer for layer in detector.layers if not layer.trainable]
    if not any(layer.weights for layer in frozen):
        raise ValueError("the detector has no frozen layer with weights: nothing to cache (freeze first)")
    names = {layer.name for layer in frozen}
    for layer in frozen:
        trainable_inputs = [inbound.name for inbound in _inbound_layers(detector, layer) if inbound.name not in names]
        if trainable_inputs:
            raise ValueError(f"frozen layer {layer.name!r} reads trainable {trainable_inputs}: "
                             "the frozen part must come first")
    return frozen


def split_frozen(detector: keras.Model) -> tuple[keras.Model, keras.Model]:
    """``(frozen, trainable)``: ``frozen`` maps images to the border's feature maps (a list, one per
    tensor that a trainable layer reads); ``trainable`` maps that list to the detector's outputs
    (``{"class_logits": (B, A, C+1), "box_offsets": (B, A, 4)}``). Both share the detector's layers
    and weights: training ``trainable`` trains the detector.
    """
    frozen = frozen_layers(detector)
    names = {layer.name for layer in frozen}
    border: list[Any] = []
    for layer in detector.layers:
        if layer.name in names:
            continue
        for inbound in _inbound_layers(detector, layer):
            if inbound.name in names and not any(inbound.output is tensor for tensor in border):
                border.append(inbound.output)
    if not border:
        raise ValueError("every layer is frozen: nothing would train")
    head = keras.Model(detector.inputs, border, name=f"{detector.name}_frozen")
    tail = keras.Model(border, detector.output, name=f"{detector.name}_trainable")
    return head, tail


def cache_features(frozen: keras.Model, sequence: "DetectionSequence",
                   batch_size: int = 32) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Run ``frozen`` once over every image of ``sequence`` (dataset order) and encode its targets.

    Args:
        frozen: :func:`split_frozen`'s first model.
        sequence: the training images as the model sees them; its augmenter must draw nothing at
            random (resizing only), or the features would differ from epoch to epoch.
        batch_size: images per ``predict`` call (memory only; the features do not depend on it).

    Returns:
        ``(features, targets)``: one array ``(N, ...)`` per border tensor of ``frozen`` (its outputs'
        dtype: float32, or the compute dtype under mixed precision), and
        ``{"class_targets": (N, A) int32, "box_targets": (N, A, 4) float32}`` as the sequence's batches hold them.

    Raises:
        ValueError: the sequence augments at random.
    """
    from tlutils.encoding import encode

    if sequence.augmenter.is_random:
        raise ValueError("the sequence augments at random: cached features would freeze one draw "
                         "(use augmentation 'none')")
    height, width = sequence.input_shape
    normalizer = np.array([width, height, width, height], dtype=np.float32)  # pixel corners -> [0, 1]
    features: list[list[np.ndarray]] = []
    class_targets, box_targets = [], []
    for start in range(0, sequence.num_images, batch_size):
        samples = [sequence.sample(index) for index in range(start, min(start + batch_size, sequence.num_images))]
        images = np.stack([image for image, _, _ in samples]).astype(np.float32)
        outputs = frozen.predict_on_batch(images)
        features.append([np.asarray(output) for output in (outputs if isinstance(outputs, (list, tuple)) else [outputs])])
        for _, boxes, labels in samples:
            boxes_target, classes_target = encode(boxes / normalizer, labels, sequence.anchors,
                                                  pos_iou=sequence.pos_iou, neg_iou=sequence.neg_iou)
            box_targets.append(boxes_target)
            class_targets.append(classes_target)
    return ([np.concatenate(parts) for parts in zip(*features)],
            {"class_targets": np.stack(class_targets).astype(np.int32), "box_targets": np.stack(box_targets)})


class FeatureBatches(keras.utils.PyDataset):
    """Shuffled batches ``(features tuple, targets)`` of cached features, a new order every epoch.

    Has the ``batch(index, epoch)`` of ``tlutils.data.pipeline.DetectionSequence``, so the runner's
    ``step_dataset`` reads it the same way.

    Args:
        features, targets: :func:`cache_features`' arrays (``N`` rows each).
        batch_size: rows per batch; the last partial batch is dropped (every step one shape).
        seed: seed of the order (epoch ``e`` draws from ``[seed, e]``, as ``DetectionSequence`` does).
    """

    def __init__(self, features: Sequence[np.ndarray], targets: dict[str, np.ndarray], batch_size: int,
                 seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        sizes = {len(array) for array in [*features, *targets.values()]}
        if len(sizes) != 1:
            raise ValueError(f"features and targets must have the same number of rows, got {sorted(sizes)}")
        (self.num_rows,) = sizes
        if not 1 <= batch_size <= self.num_rows:
            raise ValueError(f"batch_size must be in 1..{self.num_rows}, got {batch_size}")
        self.features, self.targets = list(features), dict(targets)
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0

    def __len__(self) -> int:
        return self.num_rows // self.batch_size

    def batch(self, index: int, epoch: int | None = None) -> tuple[tuple[np.ndarray, ...], dict[str, np.ndarray]]:
        """Batch ``index`` of ``epoch`` (default: the current one); depends on nothing else."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        order = np.random.default_rng([self.seed, self.epoch if epoch is None else int(epoch)])
        rows = order.permutation(self.num_rows)[index * self.batch_size:(index + 1) * self.batch_size]
        return tuple(array[rows] for array in self.features), {name: value[rows] for name, value in self.targets.items()}

    def __getitem__(self, index: int) -> tuple[tuple[np.ndarray, ...], dict[str, np.ndarray]]:
        return self.batch(index)

    def on_epoch_end(self) -> None:
        self.epoch += 1
