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

import keras
from keras import ops

from tlutils.anchors import AnchorConfig, generate_anchors
from tlutils.bench import median_seconds, random_ground_truth
from tlutils.boxes import iou, to_corners
from tlutils.encoding import _iou_with_anchors, encode


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
        wall, cpu = median_seconds(function, args.repeat, number=args.number)
        print(f"{name:>32}: {wall * 1e6:8.1f}  {cpu * 1e6:8.1f}")


if __name__ == "__main__":
    main()
