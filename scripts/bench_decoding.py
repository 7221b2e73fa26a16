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

import keras
import numpy as np
from keras import ops

from tlutils.anchors import AnchorConfig, generate_anchors
from tlutils.bench import detector_like_outputs as realistic_outputs
from tlutils.bench import median_seconds
from tlutils.decoding import _as_numpy, decode_detections


def random_outputs(rng: np.random.Generator, batch: int, num_anchors: int, num_classes: int) -> tuple:
    """Worst case: standard normal logits, offsets N(0, 1)."""
    logits = rng.normal(size=(batch, num_anchors, num_classes + 1)).astype(np.float32)
    offsets = rng.normal(size=(batch, num_anchors, 4)).astype(np.float32)
    return logits, offsets


def softmax_part(logits) -> list[np.ndarray]:
    """What ``decode_detections`` computes on the backend: probabilities and their per-anchor maximum."""
    probabilities = ops.softmax(logits, axis=-1)
    return [_as_numpy(probabilities), _as_numpy(ops.max(probabilities[..., 1:], axis=-1))]


def median_milliseconds(function, repeat: int) -> tuple[float, float]:
    """Median wall-clock and CPU milliseconds of ``repeat`` calls (after one warm-up call)."""
    wall, cpu = median_seconds(function, repeat)
    return wall * 1e3, cpu * 1e3


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
