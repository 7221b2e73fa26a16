"""Time ``tlutils.decoding.decode_detections`` on a batch of SSD300 outputs (8732 anchors).

Target: <= 50 ms for a batch of 32 (softmax, box decoding, per-class NMS, top 200 per image), for 4
and 20 object classes, on two kinds of outputs:

- ``random``: logits and offsets drawn at random, the worst case: nearly every (anchor, class) pair
  scores above the 0.01 threshold, so every class of every image has far more than ``nms_top_k``
  candidates;
- ``realistic``: what a trained detector gives: 3-6 signs per image; the anchors matched to them
  (``tlutils.encoding.encode``) score their class high with offsets close to the targets, every other
  anchor is confidently background, with enough spread that hundreds of low-score candidates per image
  pass 0.01 (as in a real SSD, which is why the paper keeps the top 200).

Usage: ``python scripts/bench_decoding.py [--batch 32] [--repeat 15]`` (set ``KERAS_BACKEND`` to compare
backends). Reports the median wall-clock and CPU time per batch, and the wall-clock time of the
backend part alone (softmax and per-anchor maximum, to NumPy); on a shared machine the wall clock
includes waiting for a core.
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
from keras import ops

from tlutils.anchors import AnchorConfig, generate_anchors
from tlutils.decoding import decode_detections
from tlutils.encoding import encode

#: Background logit of unmatched anchors: mean and spread (a confident but imperfect detector).
BACKGROUND_LOGIT = (8.0, 1.5)
#: Logit of the right class on matched anchors, and the noise on their offsets.
MATCHED_LOGIT = (6.0, 1.0)
OFFSET_NOISE = 0.3


def random_outputs(rng: np.random.Generator, batch: int, num_anchors: int, num_classes: int) -> tuple:
    """Worst case: standard normal logits, offsets N(0, 1)."""
    logits = rng.normal(size=(batch, num_anchors, num_classes + 1)).astype(np.float32)
    offsets = rng.normal(size=(batch, num_anchors, 4)).astype(np.float32)
    return logits, offsets


def realistic_outputs(rng: np.random.Generator, batch: int, anchors: np.ndarray, num_classes: int) -> tuple:
    """A trained detector's outputs around 3-6 random signs per image (see the module docstring)."""
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


def softmax_part(logits) -> list[np.ndarray]:
    """What ``decode_detections`` computes on the backend: probabilities and their per-anchor maximum."""
    probabilities = ops.softmax(logits, axis=-1)
    return [ops.convert_to_numpy(probabilities), ops.convert_to_numpy(ops.max(probabilities[..., 1:], axis=-1))]


def median_milliseconds(function, repeat: int) -> tuple[float, float]:
    """Median wall-clock and CPU milliseconds of ``repeat`` calls (after one warm-up call)."""
    function()
    wall, cpu = [], []
    for _ in range(repeat):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        function()
        wall.append(time.perf_counter() - wall_start)
        cpu.append(time.process_time() - cpu_start)
    return float(np.median(wall) * 1e3), float(np.median(cpu) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32, help="images per batch")
    parser.add_argument("--repeat", type=int, default=15, help="timed calls (the median is reported)")
    parser.add_argument("--classes", type=int, nargs="+", default=[4, 20], help="object classes C")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    anchors = generate_anchors(AnchorConfig.ssd300())
    print(f"batch {args.batch} x {len(anchors)} anchors, backend {keras.backend.backend()}")
    print(f"{'':>16}  {'wall':>7}  {'CPU':>7}  {'backend part':>12}  detections/image  (median ms per batch)")
    for num_classes in args.classes:
        cases = {
            "random": random_outputs(rng, args.batch, len(anchors), num_classes),
            "realistic": realistic_outputs(rng, args.batch, anchors, num_classes),
        }
        for name, (logits, offsets) in cases.items():
            logits, offsets = ops.convert_to_tensor(logits), ops.convert_to_tensor(offsets)
            wall, cpu = median_milliseconds(lambda: decode_detections(logits, offsets, anchors), args.repeat)
            backend_part, _ = median_milliseconds(lambda: softmax_part(logits), args.repeat)
            found = np.mean([len(d["scores"]) for d in decode_detections(logits, offsets, anchors)])
            print(f"{name:>9} C={num_classes:<3}: {wall:7.1f}  {cpu:7.1f}  {backend_part:12.1f}  {found:16.1f}")


if __name__ == "__main__":
    main()
