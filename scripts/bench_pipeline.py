"""Measure the input pipeline's images/s (augmentation + encoding, steady state) at 160 and 300 px.

Target: at least twice the CPU-profile model's training images/s (SSD-VGG16 width 0.25 at 160 px) on
one core, so that the input pipeline never makes training wait. The images are sign-world scenes
rendered in memory (``tlutils.data.synth.render_scene``; random painted boxes if the synth module is
missing), cached by a :class:`DetectionSequence` like any dataset; the anchors are the model's own
(``anchor_config_for(build_ssd_vgg16(...))``).

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
import multiprocessing
import time
from collections.abc import Callable, Iterator
from multiprocessing.pool import ThreadPool

import numpy as np

from tlutils.anchors import AnchorConfig, generate_anchors
from tlutils.data.augment import TRAFFIC_SIGN_MAX_ZOOM, Augmenter
from tlutils.data.pipeline import DetectionSequence
from tlutils.encoding import encode

CPU_PROFILE_WIDTH = 0.25  # tlutils.profiles.PROFILES["cpu"].width


def sign_world(num_images: int, size: int, seed: int = 0) -> tuple[list, str]:
    """``num_images`` in-memory scenes ``(image, boxes, labels)`` and where they came from."""
    try:
        from tlutils.data.synth import render_scene
    except ImportError:
        return painted_scenes(num_images, size, seed), "painted boxes (tlutils.data.synth not found)"
    rng = np.random.default_rng(seed)
    scenes = [render_scene("belgium", rng, size) for _ in range(num_images)]
    return [scene for scene in scenes if len(scene[1])] or scenes, "sign world (belgium)"


def painted_scenes(num_images: int, size: int, seed: int) -> list:
    """Random images with 1-6 painted boxes of sign-like sizes (3-20 % of the side)."""
    rng = np.random.default_rng(seed)
    scenes = []
    for _ in range(num_images):
        image = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        count = int(rng.integers(1, 7))
        top_left = rng.uniform(0, 0.75 * size, size=(count, 2))
        boxes = np.concatenate([top_left, top_left + rng.uniform(0.03, 0.2, size=(count, 2)) * size], axis=1)
        scenes.append((image, boxes.astype(np.float32), rng.integers(1, 15, size=count)))
    return scenes


def model_anchors(size: int, num_classes: int) -> tuple[np.ndarray, object]:
    """The anchors of the CPU-profile SSD-VGG16 at input ``size`` (and the model)."""
    from tlutils.model import anchor_config_for, build_ssd_vgg16

    model = build_ssd_vgg16(num_classes, input_size=size, width=CPU_PROFILE_WIDTH)
    return generate_anchors(anchor_config_for(model)), model


def timed(run: Callable[[], int]) -> tuple[float, float]:
    """(images per wall-clock second, images per CPU second of this process) of ``run()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    count = run()
    return count / (time.perf_counter() - wall), count / max(time.process_time() - cpu, 1e-9)


def epochs(
    sequence: DetectionSequence, num_epochs: int, workers: int = 0, processes: bool = False
) -> Callable[[], int]:
    """A run over ``num_epochs`` whole epochs; returns the number of images.

    With ``workers``, batches are built by a thread pool, or (``processes``) by a process pool started
    afresh each epoch with the sequence inherited by fork: what Keras' ``OrderedEnqueuer`` does.
    """

    def batches() -> Iterator:
        indices = range(len(sequence))
        if not workers:
            yield from (sequence[index] for index in indices)
        elif processes:
            with multiprocessing.get_context("fork").Pool(workers, _share, (sequence,)) as pool:
                yield from pool.imap(_shared_batch, indices)
        else:
            with ThreadPool(workers) as pool:
                yield from pool.imap(sequence.__getitem__, indices)

    def run() -> int:
        count = 0
        for _ in range(num_epochs):
            count += sum(len(images) for images, _ in batches())
            sequence.on_epoch_end()
        return count

    return run


_SHARED: dict[str, DetectionSequence] = {}


def _share(sequence: DetectionSequence) -> None:
    _SHARED["sequence"] = sequence


def _shared_batch(index: int):
    return _SHARED["sequence"][index]


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
    scenes, source = sign_world(args.images, size)
    try:
        anchors, model = model_anchors(size, num_classes=14)
        anchor_source = f"SSD-VGG16 width {CPU_PROFILE_WIDTH}"
    except ImportError:  # the model module is not there
        anchors, model = generate_anchors(AnchorConfig.ssd300()), None
        anchor_source = "SSD300's, tlutils.model not found"
    print(f"\n{size} px: {len(scenes)} images of {source}, {len(anchors)} anchors ({anchor_source}), "
          f"batch {args.batch_size}")

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
    if args.model and model is not None:
        rows["model train step"] = train_speed(model, sequence(full), args)
    print(f"{'':>22} {'images/s':>9} {'per CPU s':>10}")
    for name, (wall, cpu) in rows.items():
        cpu_text = "-" if name.startswith(("threads", "processes", "model")) else f"{cpu:10.0f}"
        print(f"{name:>22} {wall:9.0f} {cpu_text:>10}")
    if "model train step" in rows:
        print(f"{'':>22} pipeline 'full' / model train = {rows['full'][0] / rows['model train step'][0]:.1f}x")


def train_speed(model, sequence: DetectionSequence, args: argparse.Namespace) -> tuple[float, float]:
    """Training images/s of ``model`` with ``SSDTrainer`` on batches built beforehand."""
    import keras

    from tlutils.training import SSDTrainer

    images, targets = sequence[0]
    trainer = SSDTrainer(model)
    trainer.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9))
    trainer.fit(images, targets, batch_size=len(images), epochs=1, verbose=0)  # compile the step
    steps = args.model_steps
    stacked = np.concatenate([images] * steps)
    stacked_targets = {key: np.concatenate([value] * steps) for key, value in targets.items()}
    wall = time.perf_counter()
    trainer.fit(stacked, stacked_targets, batch_size=len(images), epochs=1, verbose=0, shuffle=False)
    return len(stacked) / (time.perf_counter() - wall), float("nan")


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
