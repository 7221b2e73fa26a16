"""The MultiBox loss of SSD: softmax confidence loss with hard negative mining + Smooth L1 localization.

Liu et al., "SSD: Single Shot MultiBox Detector", ECCV 2016, section 2.2 "Training objective" and
"Hard negative mining" (page 6):

    L = (L_conf + alpha * L_loc) / N,

where N is the number of positive (matched) anchors. ``L_conf`` is the softmax cross-entropy over the
positives and the hardest negatives, at most ``neg_pos_ratio`` (3) negatives per positive, chosen
**per image** by their background loss. ``L_loc`` is the Smooth L1 loss between the predicted and the
target offsets of the positives (the targets come from ``tlutils.encoding.encode``).

Target conventions (``class_targets``, from ``tlutils.encoding``): ``0`` background (a negative),
``-1`` ignored (neither positive nor negative), ``1..C`` object classes (a positive).

Shapes: ``B`` images, ``A`` anchors, ``C`` object classes.

Everything is written with ``keras.ops`` on fixed shapes (negatives are mined by ranking, not by
gathering a data-dependent number of them), so the loss runs on every backend and under ``jit``.
The loss is computed in float32 whatever the dtype of the network outputs (mixed precision).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

Tensor = Any  # a NumPy array or a backend tensor

#: Negatives kept per positive by hard negative mining (SSD paper, page 6: "at most 3:1").
NEG_POS_RATIO = 3.0
#: Weight alpha of the localization term (SSD paper, equation 1: "alpha is set to 1").
LOC_WEIGHT = 1.0
#: Transition point of the Smooth L1 loss (Fast R-CNN, Girshick 2015, equation 3).
SMOOTH_L1_BETA = 1.0


def _check_shapes(class_targets: Tensor, box_targets: Tensor, class_logits: Tensor, box_offsets: Tensor) -> None:
    """Raise ``ValueError`` naming the argument and axis whose (static) shape does not fit."""
    expected = {
        "class_targets": (class_targets, 2),
        "box_targets": (box_targets, 3),
        "class_logits": (class_logits, 3),
        "box_offsets": (box_offsets, 3),
    }
    for name, (tensor, rank) in expected.items():
        if len(tensor.shape) != rank:
            raise ValueError(f"{name} must have rank {rank}, got shape {tuple(tensor.shape)}")
    for name, tensor in (("box_targets", box_targets), ("box_offsets", box_offsets)):
        if tensor.shape[-1] is not None and tensor.shape[-1] != 4:
            raise ValueError(f"{name} must end in 4 box offsets, got shape {tuple(tensor.shape)}")
    if class_logits.shape[-1] is not None and class_logits.shape[-1] < 2:
        raise ValueError(f"class_logits needs background + at least 1 class, got shape {tuple(class_logits.shape)}")
    reference = tuple(class_targets.shape)
    for name, (tensor, _) in expected.items():
        for axis in (0, 1):
            size = tensor.shape[axis]
            if size is not None and reference[axis] is not None and size != reference[axis]:
                raise ValueError(
                    f"{name} has {size} entries on axis {axis} but class_targets has {reference[axis]} "
                    f"(shapes: class_targets {reference}, {name} {tuple(tensor.shape)})"
                )


def smooth_l1(difference: Tensor, beta: float = SMOOTH_L1_BETA) -> Tensor:
    """Elementwise Smooth L1: ``0.5 x² / beta`` for ``|x| < beta``, else ``|x| - 0.5 beta``; same shape."""
    absolute = ops.abs(difference)
    return ops.where(absolute < beta, 0.5 * ops.square(difference) / beta, absolute - 0.5 * beta)


def hard_negative_mask(
    class_targets: Tensor, background_losses: Tensor, neg_pos_ratio: float = NEG_POS_RATIO
) -> Tensor:
    """Pick the hardest negatives of every image (SSD paper, page 6, "Hard negative mining").

    In image ``b`` the ``k_b = min(floor(neg_pos_ratio * positives_b), negatives_b)`` negatives
    (``class_targets == 0``) with the highest background loss are kept; ignored anchors (``-1``) and
    positives never are. Selection by rank keeps the shapes fixed (no gather of a data-dependent size).

    Args:
        class_targets: ``(B, A)`` int, 0 background, -1 ignored, 1..C positives.
        background_losses: ``(B, A)`` float, the cross-entropy of each anchor against background,
            ``-log softmax(logits)[..., 0]``.
        neg_pos_ratio: at most this many negatives per positive, per image.

    Returns:
        ``(B, A)`` bool, True for the mined negatives.
    """
    class_targets = ops.cast(class_targets, "int32")
    negatives = ops.equal(class_targets, 0)
    num_positives = ops.sum(ops.cast(class_targets > 0, "float32"), axis=1, keepdims=True)  # (B, 1)
    num_negatives = ops.sum(ops.cast(negatives, "float32"), axis=1, keepdims=True)  # (B, 1)
    num_to_keep = ops.minimum(ops.floor(neg_pos_ratio * num_positives), num_negatives)  # (B, 1)
    # Losses are >= 0, so -1 ranks every non-negative anchor below every negative.
    ranking_key = ops.where(negatives, ops.stop_gradient(ops.cast(background_losses, "float32")), -1.0)
    order = ops.argsort(-ranking_key, axis=1)  # (B, A): anchor indices, hardest negative first
    rank = ops.argsort(order, axis=1)  # (B, A): position of each anchor in that order
    return ops.logical_and(negatives, ops.cast(rank, "float32") < num_to_keep)


def multibox_loss(
    class_targets: Tensor,
    box_targets: Tensor,
    class_logits: Tensor,
    box_offsets: Tensor,
    neg_pos_ratio: float = NEG_POS_RATIO,
    loc_weight: float = LOC_WEIGHT,
) -> dict[str, Tensor]:
    """The SSD MultiBox loss of a batch (SSD paper, equation 1).

    Args:
        class_targets: ``(B, A)`` int, 0 background, -1 ignored, ``1..C`` object classes.
        box_targets: ``(B, A, 4)`` encoded target offsets (only positives' rows are used).
        class_logits: ``(B, A, C + 1)`` raw scores, background first; any float dtype.
        box_offsets: ``(B, A, 4)`` predicted offsets; any float dtype.
        neg_pos_ratio: hard negatives kept per positive, per image.
        loc_weight: alpha, the weight of the localization term.

    Returns:
        dict of float32 scalars: ``loss = confidence + loc_weight * localization``;
        ``confidence`` = cross-entropy summed over positives and mined negatives / N;
        ``localization`` = Smooth L1 summed over the positives' 4 offsets / N;
        ``num_positives`` = N, the positives of the whole batch (the divisor is ``max(N, 1)``).
    """
    class_targets = ops.convert_to_tensor(class_targets)
    box_targets = ops.convert_to_tensor(box_targets)
    class_logits = ops.convert_to_tensor(class_logits)
    box_offsets = ops.convert_to_tensor(box_offsets)
    _check_shapes(class_targets, box_targets, class_logits, box_offsets)

    class_targets = ops.cast(class_targets, "int32")
    log_probs = ops.log_softmax(ops.cast(class_logits, "float32"), axis=-1)  # (B, A, C+1)
    safe_targets = ops.maximum(class_targets, 0)  # ignored (-1) -> 0; masked out below
    cross_entropy = -ops.take_along_axis(log_probs, safe_targets[..., None], axis=-1)[..., 0]  # (B, A)

    positives = class_targets > 0
    mined_negatives = hard_negative_mask(class_targets, -log_probs[..., 0], neg_pos_ratio)
    confidence_mask = ops.logical_or(positives, mined_negatives)

    num_positives = ops.sum(ops.cast(positives, "float32"))
    divisor = ops.maximum(num_positives, 1.0)
    difference = ops.cast(box_offsets, "float32") - ops.cast(box_targets, "float32")
    box_losses = ops.sum(smooth_l1(difference), axis=-1)  # (B, A)
    # where() rather than a product: a NaN/inf target row of an unused anchor must not leak in.
    localization = ops.sum(ops.where(positives, box_losses, 0.0)) / divisor
    confidence = ops.sum(ops.where(confidence_mask, cross_entropy, 0.0)) / divisor
    return {
        "loss": confidence + loc_weight * localization,
        "localization": localization,
        "confidence": confidence,
        "num_positives": num_positives,
    }


class MultiBoxLoss(keras.losses.Loss):
    """``multibox_loss`` as a ``keras.losses.Loss`` over dicts.

    Called as ``loss(y_true, y_pred)`` with ``y_true = {"class_targets": (B, A) int, "box_targets":
    (B, A, 4)}`` and ``y_pred = {"class_logits": (B, A, C+1), "box_offsets": (B, A, 4)}``; returns the
    total loss (a scalar). ``components(y_true, y_pred)`` returns the whole dict of ``multibox_loss``.

    Keras 3 ``compile(loss=...)`` applies one loss per output, so a joint loss over both outputs is
    trained through ``tlutils.training.SSDTrainer``, which uses this object.
    """

    def __init__(
        self,
        neg_pos_ratio: float = NEG_POS_RATIO,
        loc_weight: float = LOC_WEIGHT,
        name: str = "multibox_loss",
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        if neg_pos_ratio < 0:
            raise ValueError(f"neg_pos_ratio must be >= 0, got {neg_pos_ratio}")
        self.neg_pos_ratio = float(neg_pos_ratio)
        self.loc_weight = float(loc_weight)

    def components(self, y_true: dict[str, Tensor], y_pred: dict[str, Tensor]) -> dict[str, Tensor]:
        """The dict of ``multibox_loss`` (``loss``, ``localization``, ``confidence``, ``num_positives``)."""
        for name, given, keys in (
            ("y_true", y_true, ("class_targets", "box_targets")),
            ("y_pred", y_pred, ("class_logits", "box_offsets")),
        ):
            if not isinstance(given, dict) or any(key not in given for key in keys):
                found = sorted(given) if isinstance(given, dict) else type(given).__name__
                raise ValueError(f"{name} must be a dict with keys {keys}, got {found}")
        return multibox_loss(
            y_true["class_targets"],
            y_true["box_targets"],
            y_pred["class_logits"],
            y_pred["box_offsets"],
            neg_pos_ratio=self.neg_pos_ratio,
            loc_weight=self.loc_weight,
        )

    def call(self, y_true: dict[str, Tensor], y_pred: dict[str, Tensor]) -> Tensor:
        return self.components(y_true, y_pred)["loss"]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(neg_pos_ratio=self.neg_pos_ratio, loc_weight=self.loc_weight)
        return config
