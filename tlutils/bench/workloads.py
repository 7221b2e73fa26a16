"""The measurements outside training: the input pipeline, box coding, and this machine's matmul rate.

Run in the bench's own process (training runs in a child, :mod:`tlutils.bench.training`).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from multiprocessing.pool import ThreadPool
from typing import Any

import numpy as np

from tlutils.bench.config import BenchConfig
from tlutils.bench.inputs import detector_like_outputs, random_ground_truth, sign_world
from tlutils.bench.timing import images_per_second, interleaved_steps, median_seconds

#: Ground-truth boxes per image for the encode timing (the issue's "10 boxes").
ENCODE_BOXES = 10
#: Images in the decode timing.
DECODE_BATCH = 32


def pipeline_run(sequence: Any, num_epochs: int, workers: int = 0, processes: bool = False) -> Callable[[], int]:
    """A run over ``num_epochs`` whole epochs of a ``DetectionSequence``; returns the number of images.

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


_SHARED: dict[str, Any] = {}


def _share(sequence: Any) -> None:
    _SHARED["sequence"] = sequence


def _shared_batch(index: int) -> Any:
    return _SHARED["sequence"][index]


def measure_pipeline(config: BenchConfig, anchors: np.ndarray) -> dict[str, float]:
    """Images/s of augmentation + encoding (one process, image cache filled) on the sign world."""
    from tlutils.data.augment import TRAFFIC_SIGN_MAX_ZOOM, Augmenter
    from tlutils.data.pipeline import DetectionSequence

    scenes = sign_world(config.pipeline_images, config.input_size)
    sequence = DetectionSequence(scenes, anchors, None, batch_size=config.batch_size,
                                 augmenter=Augmenter(config.input_size, max_zoom=TRAFFIC_SIGN_MAX_ZOOM))
    wall, cpu = images_per_second(pipeline_run(sequence, config.pipeline_epochs))
    return {"pipeline_images_per_s": wall, "pipeline_images_per_cpu_s": cpu}


def measure_box_coding(config: BenchConfig, anchors: np.ndarray, num_classes: int, repeat: int) -> dict[str, float]:
    """Milliseconds of ``encode`` (10 boxes, one image) and ``decode_detections`` (a batch of 32)."""
    from tlutils.decoding import decode_detections
    from tlutils.encoding import encode

    boxes, labels = random_ground_truth(ENCODE_BOXES, num_classes=num_classes)
    encode_wall, encode_cpu = median_seconds(lambda: encode(boxes, labels, anchors), repeat, number=20)
    logits, offsets = detector_like_outputs(np.random.default_rng(0), DECODE_BATCH, anchors, num_classes)
    decode_wall, decode_cpu = median_seconds(lambda: decode_detections(logits, offsets, anchors), repeat)
    return {"encode_ms_per_image": encode_wall * 1e3, "encode_cpu_ms_per_image": encode_cpu * 1e3,
            "decode_ms_per_batch32": decode_wall * 1e3, "decode_cpu_ms_per_batch32": decode_cpu * 1e3}


def measure_matmul(size: int, repeat: int, dtype: str = "float32") -> dict[str, float]:
    """GFLOP/s (``2 n^3`` per product) of ``keras.ops.matmul`` of two ``n x n`` matrices of ``dtype``.

    Returns ``{"gflops": best wall-clock rate, "gflops_per_cpu_s": median rate per CPU second of this
    process}``; the second leaves out waiting for a core (on an idle machine it is ``gflops / cores``).
    """
    from keras import ops

    rng = np.random.default_rng(0)
    a = ops.cast(ops.convert_to_tensor(rng.standard_normal((size, size), dtype=np.float32)), dtype)
    b = ops.cast(ops.convert_to_tensor(rng.standard_normal((size, size), dtype=np.float32)), dtype)

    def product() -> None:  # reading one element waits for the product (JAX dispatches asynchronously)
        ops.convert_to_numpy(ops.cast(ops.matmul(a, b)[0, 0], "float32"))

    timing = interleaved_steps({"matmul": product}, 1, repeat, 0.0, repeat)["matmul"]
    flops = 2 * size**3
    return {"gflops": flops / timing["fastest"] / 1e9, "gflops_per_cpu_s": flops / timing["cpu_seconds"] / 1e9}
