"""Time ``tlutils.encoding.encode`` for one image against the 8732 SSD300 anchors.

Target: <= 1 ms per image with 10 ground-truth boxes on one CPU core (encode runs per image in the
input pipeline). Also times the IoU through ``tlutils.boxes.iou`` (keras.ops) for comparison, which is
why encode carries its own NumPy IoU.

Usage: ``python scripts/bench_encoding.py [--boxes 10] [--number 200] [--repeat 7]``
(set ``KERAS_BACKEND`` to compare backends; encode itself is NumPy only). On a shared machine the
wall-clock figure includes waiting for a core; the CPU-time figure does not.
"""

from __future__ import annotations

import argparse
import time
import timeit

import keras
import numpy as np
from keras import ops

from tlutils.anchors import AnchorConfig, generate_anchors
from tlutils.boxes import iou, to_corners
from tlutils.encoding import _iou_with_anchors, encode


def random_ground_truth(num_boxes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``num_boxes`` random normalized corners (sides 0.02 .. 0.3, sign-sized and larger) and labels."""
    rng = np.random.default_rng(seed)
    top_left = rng.uniform(0.0, 0.7, size=(num_boxes, 2))
    boxes = np.concatenate([top_left, top_left + rng.uniform(0.02, 0.3, size=(num_boxes, 2))], axis=1)
    return boxes.astype(np.float32), rng.integers(1, 44, size=num_boxes)


def median_microseconds(function, number: int, repeat: int, timer=time.perf_counter) -> float:
    """Median over ``repeat`` runs of the mean time of ``number`` calls, in microseconds."""
    return float(np.median(timeit.repeat(function, number=number, repeat=repeat, timer=timer)) / number * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=10, help="ground-truth boxes in the image")
    parser.add_argument("--number", type=int, default=200, help="calls per timing run")
    parser.add_argument("--repeat", type=int, default=7, help="timing runs (the median is reported)")
    args = parser.parse_args()

    anchors = generate_anchors(AnchorConfig.ssd300())
    boxes, labels = random_ground_truth(args.boxes)
    anchor_corners = ops.convert_to_numpy(to_corners(anchors))
    timings = {
        "encode": lambda: encode(boxes, labels, anchors),
        "NumPy IoU inside encode": lambda: _iou_with_anchors(boxes, anchors),
        "tlutils.boxes.iou (keras.ops)": lambda: ops.convert_to_numpy(iou(boxes, anchor_corners)),
    }
    print(f"{args.boxes} ground-truth boxes x {len(anchors)} anchors, backend {keras.backend.backend()}")
    print(f"{'':>32}  {'wall':>8}  {'CPU':>8}  (median us per call; CPU time leaves out waiting for a core)")
    for name, function in timings.items():
        function()  # warm-up
        wall = median_microseconds(function, args.number, args.repeat)
        cpu = median_microseconds(function, args.number, args.repeat, timer=time.process_time)
        print(f"{name:>32}: {wall:8.1f}  {cpu:8.1f}")


if __name__ == "__main__":
    main()
