"""Freeze points of SSD-VGG16: which block every layer belongs to, freezing up to a point, and a
per-block summary of trainable vs frozen parameters.

Blocks, bottom to top (:data:`FREEZE_POINTS`):

- ``block1`` ... ``block5``: VGG16's conv blocks with their pools (``block1`` also holds the input and
  the preprocessing layer, which have no weights);
- ``fc``: ``fc6`` and ``fc7`` (VGG16's fully connected layers turned into convolutions);
- ``extras``: layers SSD adds to the base network: ``conv4_3_norm`` (its scale starts at 20, it is
  not an ImageNet weight) and ``conv8_1`` ... ``conv11_2``;
- ``heads``: the class and box prediction convs, their reshapes and the two output concatenations.

Freezing up to ``"fc"`` keeps all of VGG16 (ImageNet weights) fixed and trains SSD's own layers.
"""

from __future__ import annotations

from typing import Any

import keras

from tlutils.model.ssd import EXTRA_LAYERS, FC_LAYERS, PREDICTION_LAYERS, VGG16_CONVS

FREEZE_POINTS: tuple[str, ...] = ("block1", "block2", "block3", "block4", "block5", "fc", "extras", "heads")


def _layer_names_by_block() -> dict[str, tuple[str, ...]]:
    """Every layer name of :func:`build_ssd_vgg16`'s model, grouped by freeze point."""
    blocks: dict[str, tuple[str, ...]] = {}
    for block, convs in enumerate(VGG16_CONVS, start=1):
        stem = ("image", "preprocessing") if block == 1 else ()
        blocks[f"block{block}"] = stem + tuple(spec.name for spec in convs) + (f"block{block}_pool",)
    blocks["fc"] = tuple(spec.name for spec in FC_LAYERS)
    blocks["extras"] = ("conv4_3_norm",) + tuple(spec.name for spec in EXTRA_LAYERS)
    blocks["heads"] = tuple(
        f"{spec.name}_{kind}_{part}"
        for spec in PREDICTION_LAYERS
        for kind in ("class", "box")
        for part in ("head", "reshape")
    ) + ("class_logits", "box_offsets")
    return blocks


LAYERS_BY_BLOCK: dict[str, tuple[str, ...]] = _layer_names_by_block()
_BLOCK_OF_LAYER: dict[str, str] = {name: block for block, names in LAYERS_BY_BLOCK.items() for name in names}


def block_of(layer_name: str) -> str:
    """The freeze point (one of :data:`FREEZE_POINTS`) that layer ``layer_name`` belongs to.

    Raises:
        ValueError: not a layer name of :func:`build_ssd_vgg16`'s model.
    """
    try:
        return _BLOCK_OF_LAYER[layer_name]
    except KeyError:
        raise ValueError(
            f"layer {layer_name!r} is not a layer of build_ssd_vgg16's model, so it has no freeze point"
        ) from None


def freeze(model: keras.Model, up_to: str | None) -> keras.Model:
    """Make every layer up to and including block ``up_to`` non-trainable and the rest trainable.

    ``up_to=None`` makes everything trainable. Changes ``model`` in place (and returns it); compile
    again afterwards, ``trainable`` is read when the train step is built.

    Raises:
        ValueError: ``up_to`` is not one of :data:`FREEZE_POINTS`, or the model has a layer that
            belongs to no block.
    """
    if up_to is not None and up_to not in FREEZE_POINTS:
        raise ValueError(f"up_to must be None or one of {FREEZE_POINTS}, got {up_to!r}")
    last_frozen = FREEZE_POINTS.index(up_to) if up_to is not None else -1
    model.trainable = True  # a model set non-trainable as a whole would hide trainable layers
    for layer in model.layers:
        layer.trainable = FREEZE_POINTS.index(block_of(layer.name)) > last_frozen
    return model


def frozen_regularization(model: keras.Model, up_to: str) -> float:
    """The L2 term of the kernels frozen when freezing ``model`` up to block ``up_to``: what Keras 2 adds
    to every displayed loss and Keras 3 leaves out (it collects regularizers of trainable weights only).
    Frozen weights never move, so under Keras 2 this is a floor the displayed loss cannot go below.
    ``model``'s trainable flags are left as they were.

    Raises:
        ValueError: ``up_to`` is not one of :data:`FREEZE_POINTS`.
    """
    from tlutils.model.ssd import regularization_loss

    if up_to not in FREEZE_POINTS:
        raise ValueError(f"up_to must be one of {FREEZE_POINTS}, got {up_to!r}")
    flags = [(layer, layer.trainable) for layer in model.layers]
    whole = model.trainable
    try:
        total = regularization_loss(freeze(model, None))
        return total - regularization_loss(freeze(model, up_to))
    finally:
        model.trainable = whole
        for layer, trainable in flags:
            layer.trainable = trainable


def trainable_summary(model: keras.Model) -> Any:
    """Trainable and frozen parameters per block, one row per freeze point in :data:`FREEZE_POINTS` order.

    Returns:
        A ``pandas.DataFrame`` with columns ``block``, ``trainable``, ``frozen``, ``total``
        (``summary[["trainable", "frozen"]].sum()`` gives the model's totals).
    """
    import pandas as pd

    counts = {block: {"trainable": 0, "frozen": 0} for block in FREEZE_POINTS}
    for layer in model.layers:
        block = counts[block_of(layer.name)]
        block["trainable"] += sum(_size(w) for w in layer.trainable_weights)
        block["frozen"] += sum(_size(w) for w in layer.non_trainable_weights)
    rows = [{"block": block, **count, "total": count["trainable"] + count["frozen"]}
            for block, count in counts.items()]
    return pd.DataFrame(rows, columns=["block", "trainable", "frozen", "total"])


def _size(variable: Any) -> int:
    """Number of scalars in a variable."""
    size = 1
    for dim in variable.shape:
        size *= int(dim)
    return size
