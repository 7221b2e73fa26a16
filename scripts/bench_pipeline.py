"""Measure the input pipeline's images/s (augmentation + encoding, steady state) at 160 and 300 px.

Target: at least twice the CPU-profile model's training images/s (SSD-VGG16 width 0.25 at 160 px) on
one core, so that the input pipeline never makes training wait. The images are sign-world scenes
rendered in memory (``tlutils.data.synth.render_scene``), cached by a :class:`DetectionSequence` like
any dataset; the anchors are the model's own (``anchor_config_for(build_ssd_vgg16(...))``). The timing
helpers are ``tlutils.bench``'s; ``tlutils bench`` reports the ``full`` row as ``pipeline_images_per_s``.

Rows, each timed over whole epochs after the sequence is built (the image cache filled):

- ``full``: ``Augmenter(S, max_zoom=TRAFFIC_SIGN_MAX_ZOOM)`` + ``encode`` (training batches);
- ``paper``: the paper's ``Augmenter(S)`` (max zoom 4) + ``encode``;
- ``resize``: the validation path, resize + ``encode``;
- ``augment only`` / ``encode only``: the two halves of ``full``;
- ``threads N`` / ``processes N``: ``full`` with batches built by ``N`` workers, as ``fit`` does with
  ``workers=N`` (``use_multiprocessing=True`` for processes).

``--model`` also times training steps of the CPU-profile model on ready-made batches, for the ratio.
On a shared machine the wall-clock figure includes waiting for a core; the CPU figure does not.

Usage: ``python scripts/bench_pipeline.py [--sizes 160 300] [--images 64] [--epochs 3] [--model]``
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from tlutils.anchors import generate_anchors
from tlutils.bench import images_per_second as timed
from tlutils.bench import interleaved_steps, sign_world
from tlutils.bench import pipeline_run as epochs
from tlutils.data.augment import TRAFFIC_SIGN_MAX_ZOOM, Augmenter
from tlutils.data.pipeline import DetectionSequence
from tlutils.encoding import encode
from tlutils.profiles import PROFILES

CPU_PROFILE_WIDTH = PROFILES["cpu"].width


def model_anchors(size: int, num_classes: int) -> tuple[np.ndarray, object]:
    """The anchors of the CPU-profile SSD-VGG16 at input ``size`` (and the model)."""
    from tlutils.model import anchor_config_for, build_ssd_vgg16

    model = build_ssd_vgg16(num_classes, input_size=size, width=CPU_PROFILE_WIDTH)
    return generate_anchors(anchor_config_for(model)), model


def augment_only(sequence: DetectionSequence, num_epochs: int) -> Callable[[], int]:
    def run() -> int:
        for epoch in range(num_epochs):
            for index in range(sequence.num_images):
                sequence.sample(index, epoch)
        return num_epochs * sequence.num_images

    return run


def encode_only(samples: list, anchors: np.ndarray, size: int, num_epochs: int) -> Callable[[], int]:
    def run() -> int:
        for _ in range(num_epochs):
            for _, boxes, labels in samples:
                encode(boxes / size, labels, anchors)
        return num_epochs * len(samples)

    return run


def bench_size(size: int, args: argparse.Namespace) -> None:
    scenes = sign_world(args.images, size)
    anchors, model = model_anchors(size, num_classes=14)
    print(f"\n{size} px: {len(scenes)} images of the sign world (belgium), {len(anchors)} anchors "
          f"(SSD-VGG16 width {CPU_PROFILE_WIDTH}), batch {args.batch_size}")

    def sequence(augmenter: Augmenter | None, **kwargs) -> DetectionSequence:
        return DetectionSequence(scenes, anchors, None, batch_size=args.batch_size, augmenter=augmenter,
                                 input_size=size, **kwargs)

    full = Augmenter(size, max_zoom=TRAFFIC_SIGN_MAX_ZOOM)
    augmented = sequence(full)
    samples = [augmented.sample(index) for index in range(augmented.num_images)]
    rows: dict[str, tuple[float, float]] = {
        "full": timed(epochs(sequence(full), args.epochs)),
        "paper (max zoom 4)": timed(epochs(sequence(Augmenter(size)), args.epochs)),
        "resize": timed(epochs(sequence(None), args.epochs)),
        "augment only": timed(augment_only(augmented, args.epochs)),
        "encode only": timed(encode_only(samples, anchors, size, args.epochs)),
    }
    for workers in args.workers:
        rows[f"threads {workers}"] = timed(epochs(sequence(full), args.epochs, workers))
        rows[f"processes {workers}"] = timed(epochs(sequence(full), args.epochs, workers, processes=True))
    if args.model:
        rows["model train step"] = train_speed(model, sequence(full), args)
    print(f"{'':>22} {'images/s':>9} {'per CPU s':>10}")
    for name, (wall, cpu) in rows.items():
        cpu_text = "-" if name.startswith(("threads", "processes", "model")) else f"{cpu:10.0f}"
        print(f"{name:>22} {wall:9.0f} {cpu_text:>10}")
    if "model train step" in rows:
        print(f"{'':>22} pipeline 'full' / model train = {rows['full'][0] / rows['model train step'][0]:.1f}x")


def train_speed(model, sequence: DetectionSequence, args: argparse.Namespace) -> tuple[float, float]:
    """Training images/s of ``model`` with ``SSDTrainer`` on one batch built beforehand (median step)."""
    import keras

    from tlutils.training import SSDTrainer

    images, targets = sequence[0]
    trainer = SSDTrainer(model)
    trainer.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9))
    steps = args.model_steps
    timing = interleaved_steps({"train": lambda: trainer.train_on_batch(images, targets)}, 1, steps, 0.0, steps)
    return len(images) / timing["train"]["seconds"], float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[160, 300], help="model input sizes")
    parser.add_argument("--images", type=int, default=64, help="scenes in the sequence")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timing")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="*", default=[2], help="worker counts to time")
    parser.add_argument("--model", action="store_true", help="also time the model's training steps")
    parser.add_argument("--model-steps", type=int, default=8, help="training steps timed with --model")
    args = parser.parse_args()
    for size in args.sizes:
        bench_size(size, args)


if __name__ == "__main__":
    main()
