"""Training an SSD detector with ``compile()``/``fit()``: a model that owns the joint MultiBox loss.

Keras 3 applies one ``compile(loss=...)`` per output, but the MultiBox loss (``tlutils.losses``) needs
both outputs at once (hard negative mining uses the classification output, the positives select the
box offsets, one divisor N for both). Keras' documented way to do that is to override
``Model.compute_loss`` ("Customizing what happens in fit()", keras.io guides), which is what
``SSDTrainer`` does; ``fit``, ``evaluate``, callbacks and the optimizer stay Keras' own.

Logged by ``fit``/``evaluate`` (``val_`` versions on validation data), each averaged over the batches
of an epoch, weighted by batch size like Keras' own ``loss``:

- ``loss``: multibox + regularization, the quantity the optimizer minimizes;
- ``localization``, ``confidence``: the two MultiBox terms (already divided by N);
- ``regularization``: the sum of the detector's ``losses`` (L2 kernel regularizers), kept separate
  because it is not comparable across models and is why a pretrained Keras SSD can seem to "stall";
- ``num_positives``: matched anchors per batch.

Data: ``x`` images ``(B, S, S, 3)``; ``y`` the dict ``{"class_targets": (B, A) int32,
"box_targets": (B, A, 4) float32}`` from ``tlutils.encoding.encode`` (see ``tlutils.data.pipeline``).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tlutils.losses import MultiBoxLoss

Tensor = Any  # a NumPy array or a backend tensor

#: The keys of the detector's output dict.
OUTPUT_KEYS = ("class_logits", "box_offsets")
#: Metrics logged besides Keras' own ``loss``.
LOGGED_COMPONENTS = ("localization", "confidence", "regularization", "num_positives")


class SSDTrainer(keras.Model):
    """A ``keras.Model`` that wraps a detector and trains it on the MultiBox loss.

    Args:
        detector: any Keras model mapping images ``(B, S, S, 3)`` to the dict
            ``{"class_logits": (B, A, C+1), "box_offsets": (B, A, 4)}`` (``tlutils.model``).
        loss: the ``MultiBoxLoss`` to use; ``MultiBoxLoss()`` (ratio 3:1, alpha 1) when ``None``.

    The trainer's weights *are* the detector's weights, so ``trainer.trainable_weights`` follows the
    ``trainable`` flags of the detector's layers. As with any Keras model, **call ``compile()`` again
    after changing ``trainable``** (freezing or unfreezing), or ``fit`` keeps the old set of weights.
    Save ``trainer.detector`` (the trainer adds no weights of its own).

    Example::

        trainer = SSDTrainer(detector)
        trainer.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9))
        history = trainer.fit(train_batches, validation_data=val_batches, epochs=10)
        history.history["val_confidence"]
    """

    def __init__(self, detector: keras.Model, loss: MultiBoxLoss | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(detector, keras.layers.Layer):
            raise ValueError(f"detector must be a Keras model, got {type(detector).__name__}")
        if loss is None:
            loss = MultiBoxLoss()
        if not isinstance(loss, MultiBoxLoss):
            raise ValueError(f"loss must be a tlutils.losses.MultiBoxLoss, got {type(loss).__name__}")
        self.detector = detector
        self.multibox = loss
        # Metric attributes are tracked by Keras and reported by `fit`/`evaluate` after `loss`.
        self.component_trackers = {name: keras.metrics.Mean(name=name) for name in LOGGED_COMPONENTS}

    def call(self, images: Tensor, training: bool = False) -> dict[str, Tensor]:
        """The detector's outputs: ``{"class_logits": (B, A, C+1), "box_offsets": (B, A, 4)}``."""
        outputs = self.detector(images, training=training)
        if not isinstance(outputs, dict) or any(key not in outputs for key in OUTPUT_KEYS):
            found = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
            raise ValueError(f"the detector must return a dict with keys {OUTPUT_KEYS}, got {found}")
        return outputs

    def compute_loss(
        self,
        x: Tensor = None,
        y: dict[str, Tensor] | None = None,
        y_pred: dict[str, Tensor] | None = None,
        sample_weight: Tensor = None,
        training: bool = True,
    ) -> Tensor:
        """MultiBox loss of the batch + regularization; updates the component metrics.

        ``sample_weight`` is not supported (the loss is already normalized by the positives) and
        must be ``None``; a ``loss`` given to ``compile()`` is ignored.
        """
        if sample_weight is not None:
            raise ValueError("SSDTrainer does not support sample_weight (the loss is normalized by positives)")
        components = self.multibox.components(y, y_pred)
        # `self.losses` = the detector's regularizers (on JAX, the values of this forward pass).
        regularization = ops.zeros((), "float32")
        for term in self.losses:
            regularization = regularization + ops.cast(ops.sum(term), "float32")
        components["regularization"] = regularization
        batch_size = ops.shape(y_pred["class_logits"])[0]
        for name, tracker in self.component_trackers.items():
            tracker.update_state(components[name], sample_weight=batch_size)
        return components["loss"] + regularization
