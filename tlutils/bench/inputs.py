"""Synthetic inputs of the measurements: random ground truth, sign-world scenes, a training batch,
detector-like outputs. Boxes are normalized corners ``(xmin, ymin, xmax, ymax)`` unless a name says
``pixel``; labels are ``1..num_classes`` (0 is background). Shared with ``scripts/bench_*.py``.
"""

from __future__ import annotations

import numpy as np

#: Country of the sign-world scenes of the pipeline timing (the course's source domain).
PIPELINE_COUNTRY = "belgium"
#: Detector-like outputs: background logit of unmatched anchors (mean, spread; a confident but
#: imperfect detector), logit of the right class on matched anchors, noise on their offsets.
BACKGROUND_LOGIT = (8.0, 1.5)
MATCHED_LOGIT = (6.0, 1.0)
OFFSET_NOISE = 0.3


def random_ground_truth(num_boxes: int, seed: int = 0, num_classes: int = 43) -> tuple[np.ndarray, np.ndarray]:
    """``num_boxes`` random corners ``(num_boxes, 4)`` (sides 0.02 .. 0.3, sign-sized and larger) and
    labels ``(num_boxes,)`` in ``1..num_classes``."""
    rng = np.random.default_rng(seed)
    top_left = rng.uniform(0.0, 0.7, size=(num_boxes, 2))
    boxes = np.concatenate([top_left, top_left + rng.uniform(0.02, 0.3, size=(num_boxes, 2))], axis=1)
    return boxes.astype(np.float32), rng.integers(1, num_classes + 1, size=num_boxes)


def sign_world(num_images: int, size: int, seed: int = 0, country: str = PIPELINE_COUNTRY) -> list:
    """``num_images`` in-memory sign-world scenes ``(image, pixel boxes, labels)`` with at least one sign
    (all scenes if none has one)."""
    from tlutils.data.synth import render_scene

    rng = np.random.default_rng(seed)
    scenes = [render_scene(country, rng, size) for _ in range(num_images)]
    return [scene for scene in scenes if len(scene[1])] or scenes


def training_batch(anchors: np.ndarray, batch_size: int, input_size: int, num_classes: int,
                   seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
    """A fixed batch: random images 0-255, 3-6 random boxes each, their SSD targets.

    Returns:
        ``images (B, S, S, 3)`` float32, ``{"class_targets": (B, A) int32, "box_targets": (B, A, 4)}``,
        and the ground truth ``[(boxes (K, 4), labels (K,))]`` per image (for the peer).
    """
    from tlutils.encoding import encode

    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, size=(batch_size, input_size, input_size, 3)).astype(np.float32)
    truths = [random_ground_truth(int(rng.integers(3, 7)), seed + index, num_classes) for index in range(batch_size)]
    encoded = [encode(boxes, labels, anchors) for boxes, labels in truths]
    targets = {
        "class_targets": np.stack([classes for _, classes in encoded]),
        "box_targets": np.stack([boxes for boxes, _ in encoded]),
    }
    return images, targets, truths


def detector_like_outputs(rng: np.random.Generator, batch: int, anchors: np.ndarray,
                          num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Outputs of a trained detector around 3-6 random signs per image, ``(B, A, C + 1)`` and ``(B, A, 4)``.

    Anchors matched to a sign (``encode``) score its class high (:data:`MATCHED_LOGIT`) with offsets
    near the targets (:data:`OFFSET_NOISE`); every other anchor is confidently background
    (:data:`BACKGROUND_LOGIT`), with enough spread that hundreds of low-score candidates per image pass
    the 0.01 threshold, as in a real SSD.
    """
    from tlutils.encoding import encode

    num_anchors = len(anchors)
    logits = rng.normal(size=(batch, num_anchors, num_classes + 1)).astype(np.float32)
    offsets = np.empty((batch, num_anchors, 4), np.float32)
    for image in range(batch):
        count = rng.integers(3, 7)
        top_left = rng.uniform(0.0, 0.85, size=(count, 2))
        boxes = np.concatenate([top_left, top_left + rng.uniform(0.03, 0.15, size=(count, 2))], axis=1)
        box_targets, class_targets = encode(np.clip(boxes, 0, 1), rng.integers(1, num_classes + 1, count), anchors)
        matched = class_targets > 0
        logits[image, ~matched, 0] = rng.normal(*BACKGROUND_LOGIT, size=(~matched).sum())
        logits[image, matched, class_targets[matched]] = rng.normal(*MATCHED_LOGIT, size=matched.sum())
        offsets[image] = box_targets + rng.normal(0, OFFSET_NOISE, size=box_targets.shape)
        offsets[image, ~matched] = rng.normal(size=((~matched).sum(), 4))
    return logits, offsets
