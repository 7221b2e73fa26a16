"""``tlutils bench``: how fast SSD-VGG16 trains here, measured against the hardware and a peer.

``run_bench(out="runs/bench.json")`` (``tlutils bench``, ``make bench``) measures each configuration
of :func:`configurations` (the ``cpu`` run profile's model, and SSD300 itself), prints a table and
writes the figures as JSON, one object per configuration plus ``machine``:

- ``train_images_per_s``: a full SSD training step (:class:`tlutils.training.SSDTrainer`, MultiBox
  loss included, Adam) on one fixed in-memory batch, steady state: the first steps (tracing,
  compilation) are left out and the **median** step time is reported. ``jit_compile`` is left to
  Keras (``"auto"``: XLA off on a CPU-only TensorFlow) and recorded. ``_bf16``: the same step under
  the ``mixed_bfloat16`` policy (the detector's outputs and the loss stay float32, checked:
  ``outputs_float32_bf16``); SSD300 skips the bf16 steps where bf16 would be emulated (no bf16
  units: ``bf16_note`` says so, the ``_bf16`` figures are absent and their ratios ``None``);
- ``backbone_train_images_per_s``: the same for the detector's VGG16 base (input to ``fc7``, a
  sub-model sharing the built detector's layers) with a trivial loss (the mean of its output);
  ``ratios.ssd_overhead`` = backbone images/s / SSD images/s - 1 is the time that SSD's extra layers,
  heads and MultiBox loss add;
- ``peer_torchvision_train_images_per_s``: torchvision's ``ssd300_vgg16`` (random weights, Adam,
  float32) training step on the same batch (same input size, batch size and classes), when ``torch``
  and ``torchvision`` are installed (``pip install -e ".[bench]"``) and the configuration is SSD300
  (torchvision has no width multiplier); otherwise ``None`` and a ``peer_note`` saying why;
- ``pipeline_images_per_s``: the input pipeline alone, one process: a :class:`DetectionSequence`
  over sign-world scenes, SSD augmentation (``TRAFFIC_SIGN_MAX_ZOOM``) + ``encode`` per image;
- ``encode_ms_per_image``: ``encode`` of 10 boxes against the configuration's anchors (8732 for
  SSD300); ``decode_ms_per_batch32``: ``decode_detections`` of 32 images of detector-like outputs;
- ``train_gflops``: counted training FLOPs per image (:func:`training_flops`) x train images/s;
  ``machine.matmul_gflops``: the best rate of a large float32 ``keras.ops.matmul`` here.
  ``ratios.fraction_of_matmul`` = their ratio: how close training runs to what this machine's
  matrix units deliver (bf16 figures against ``matmul_gflops_bf16``);
- ``peak_memory_mb``: peak resident memory (``ru_maxrss``) of the training subprocess after its
  first float32 SSD step (before any other model is built), Python and the backend included.

FLOP convention: a convolution or dense layer costs ``2 x MACs`` per image forward (a multiply and
an add per weight use; biases, activations, pooling, normalization and the loss are not counted),
and a training step ``3 x`` the forward (the backward pass computes the gradients of the inputs and
of the weights, each as costly as the forward). torchvision's own FLOP counter, run on the peer's
training step, gives the peer's count for comparison (``peer_train_gflop_per_image``).

The training runs of a configuration happen in one fresh subprocess (``python -m tlutils.bench
--child training SPEC``), so its memory is its own and a dtype policy never leaks; there the SSD, the
backbone (float32 and bf16) and the peer take their timed steps **in turns**, so load from other
processes hits them alike and their ratios hold on a shared machine. Rates are wall-clock and, as
``*_per_cpu_s``, per CPU second of the process (all threads), which leaves out waiting for a core;
``train_cores_busy`` (CPU seconds per wall second of the float32 SSD's steps, at most the number of
cores) says how much of the machine the step had, and the load average is recorded in ``machine``.
Every ratio comes in both kinds (``ratios.<name>``, ``ratios.<name>_cpu``).

The helpers that the per-module scripts share (``scripts/bench_*.py``) live here too:
:func:`random_ground_truth`, :func:`median_seconds`, :func:`interleaved_steps`, :func:`sign_world`,
:func:`images_per_second`, :func:`pipeline_run`, :func:`detector_like_outputs`, :func:`layer_macs`.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Any

import numpy as np

#: Ground-truth boxes per image for the encode timing (the issue's "10 boxes").
ENCODE_BOXES = 10
#: Images in the decode timing.
DECODE_BATCH = 32
#: Country of the sign-world scenes of the pipeline timing (the course's source domain).
PIPELINE_COUNTRY = "belgium"
#: Detector-like outputs: background logit of unmatched anchors (mean, spread; a confident but
#: imperfect detector), logit of the right class on matched anchors, noise on their offsets.
BACKGROUND_LOGIT = (8.0, 1.5)
MATCHED_LOGIT = (6.0, 1.0)
OFFSET_NOISE = 0.3


@dataclass(frozen=True)
class BenchConfig:
    """One measured model configuration and how long to measure it.

    Attributes:
        name: key in ``bench.json``.
        width, input_size, batch_size: SSD-VGG16's channel multiplier, input side, training batch.
        min_steps, min_seconds, max_steps: timed training steps: at least ``min_steps`` and
            ``min_seconds``, at most ``max_steps``, after ``warmup_steps`` untimed ones.
        pipeline_images, pipeline_epochs: sign-world scenes and epochs of the pipeline timing.
        peer: also time torchvision's SSD300 (it exists only at width 1.0 and 300 px).
        emulated_bf16: time ``mixed_bfloat16`` even where bf16 would be emulated (a CPU without bf16
            units, :func:`bf16_is_native`). There it is about 10x slower than float32: the cpu
            profile's column shows that in seconds, SSD300's would take some 20 minutes (2-core AVX2
            EPYC: 133 s per bf16 step of 4 images), so SSD300 skips it.
    """

    name: str
    width: float
    input_size: int
    batch_size: int
    warmup_steps: int = 2
    min_steps: int = 5
    min_seconds: float = 10.0
    max_steps: int = 50
    pipeline_images: int = 48
    pipeline_epochs: int = 2
    peer: bool = False
    emulated_bf16: bool = True

    def describe(self) -> str:
        return f"width {self.width:g} @ {self.input_size} px, batch {self.batch_size}"


def configurations(quick: bool = False) -> list[BenchConfig]:
    """The cpu profile's model and SSD300 (batch 4 on a CPU: 3 timed rounds of five models take a few
    minutes); tiny sizes with ``quick``."""
    from tlutils.profiles import PROFILES

    if quick:
        return [BenchConfig("cpu_profile", 0.125, 96, 4, warmup_steps=1, min_steps=1, min_seconds=0.0,
                            max_steps=1, pipeline_images=4, pipeline_epochs=1)]
    cpu = PROFILES["cpu"]
    return [
        BenchConfig("cpu_profile", cpu.width, cpu.input_size, cpu.batch_size),
        BenchConfig("ssd300", 1.0, 300, 4, warmup_steps=1, min_steps=3, min_seconds=0.0, max_steps=3,
                    pipeline_images=32, peer=True, emulated_bf16=False),
    ]


# -- timing helpers (shared with scripts/bench_*.py) ------------------------------------------------


def median_seconds(function: Callable[[], Any], repeat: int, number: int = 1,
                   warmup: int = 1) -> tuple[float, float]:
    """Median wall-clock and CPU seconds per call over ``repeat`` runs of ``number`` calls each.

    CPU time is this process's (all threads): on a shared machine it leaves out waiting for a core.
    """
    for _ in range(warmup):
        function()
    wall, cpu = [], []
    for _ in range(repeat):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(number):
            function()
        wall.append((time.perf_counter() - wall_start) / number)
        cpu.append((time.process_time() - cpu_start) / number)
    return float(np.median(wall)), float(np.median(cpu))


def images_per_second(run: Callable[[], int]) -> tuple[float, float]:
    """(images per wall-clock second, images per CPU second of this process) of ``run()``, which
    returns the number of images it processed."""
    wall, cpu = time.perf_counter(), time.process_time()
    count = run()
    return count / (time.perf_counter() - wall), count / max(time.process_time() - cpu, 1e-9)


def interleaved_steps(steps: dict[str, Callable[[], Any]], warmup_steps: int, min_steps: int,
                      min_seconds: float, max_steps: int) -> dict[str, dict[str, float]]:
    """Time several training steps taking turns, after ``warmup_steps`` of each (tracing, compiling).

    Rounds (one step of each) run until ``min_steps`` rounds and ``min_seconds`` of steps of the first
    entry are reached, or ``max_steps`` rounds. Taking turns step by step lets a burst of load from
    other processes hit every model alike, so their ratios hold on a shared machine.

    Returns:
        Per name: ``seconds``, the median wall-clock seconds of a step; ``fastest``, the fastest one
        (the least disturbed); ``cpu_seconds``, the median CPU seconds of this process (all threads) per
        step, which leave out waiting for a core; ``cores_busy``, CPU seconds per wall second of its
        steps (at most the number of cores).
    """
    for step in steps.values():
        for _ in range(warmup_steps):
            step()
    walls: dict[str, list[float]] = {name: [] for name in steps}
    cpus: dict[str, list[float]] = {name: [] for name in steps}
    first = next(iter(steps))
    while len(walls[first]) < max_steps and (len(walls[first]) < min_steps or sum(walls[first]) < min_seconds):
        for name, step in steps.items():
            wall, cpu = time.perf_counter(), time.process_time()
            step()
            walls[name].append(time.perf_counter() - wall)
            cpus[name].append(time.process_time() - cpu)
    return {name: {"seconds": float(np.median(walls[name])), "fastest": min(walls[name]),
                   "cpu_seconds": float(np.median(cpus[name])), "cores_busy": sum(cpus[name]) / sum(walls[name])}
            for name in steps}


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- inputs -------------------------------------------------------------------------------------------


def random_ground_truth(num_boxes: int, seed: int = 0, num_classes: int = 43) -> tuple[np.ndarray, np.ndarray]:
    """``num_boxes`` random normalized corners (sides 0.02 .. 0.3, sign-sized and larger) and labels
    in ``1..num_classes``."""
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
        and the ground truth ``[(boxes (K, 4) normalized corners, labels (K,))]`` per image (for the peer).
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
    (:data:`BACKGROUND_LOGIT`), with enough
    spread that hundreds of low-score candidates per image pass the 0.01 threshold, as in a real SSD.
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


# -- the input pipeline ---------------------------------------------------------------------------


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


# -- FLOPs ------------------------------------------------------------------------------------------


def _leaf_layers(model: Any) -> Iterator[Any]:
    """The layers of ``model``, nested models expanded."""
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _leaf_layers(layer)
        else:
            yield layer


def layer_macs(layer: Any) -> int:
    """Multiply-accumulates per image of a convolution or dense layer (0 for any other layer).

    Conv1D/2D/3D and DepthwiseConv2D: output positions x kernel size (``kh * kw * c_in / groups *
    c_out``, resp. ``kh * kw * c_in * multiplier``); Dense: positions x ``c_in * c_out``.
    """
    import keras

    if not isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
                              keras.layers.DepthwiseConv2D, keras.layers.Dense)):
        return 0
    output_shape = tuple(layer.output.shape[1:])
    channels_first = getattr(layer, "data_format", "channels_last") == "channels_first"
    positions = output_shape[1:] if channels_first else output_shape[:-1]
    return math.prod(int(size) for size in positions) * math.prod(int(size) for size in layer.kernel.shape)


def forward_flops(model: Any) -> int:
    """Forward FLOPs per image of ``model``'s conv and dense layers: ``2 x`` their MACs (module docstring)."""
    return 2 * sum(layer_macs(layer) for layer in _leaf_layers(model))


def training_flops(model: Any) -> int:
    """Training FLOPs per image: ``3 x forward_flops`` (forward, input gradients, weight gradients)."""
    return 3 * forward_flops(model)


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


# -- training steps (run in a subprocess) --------------------------------------------------------------


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Build layers under the Keras dtype policy ``name`` ("float32", "mixed_bfloat16")."""
    import keras

    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def backbone_of(detector: Any) -> Any:
    """The detector's VGG16 base as a model of its own: input -> ``fc7`` (shares the layers)."""
    import keras

    return keras.Model(detector.input, detector.get_layer("fc7").output, name="vgg16_base")


def _mean_output(y_true: Any, y_pred: Any) -> Any:
    """Trivial loss: the mean of an output per image, float32; ``(B, ...) -> (B,)``."""
    from keras import ops

    return ops.mean(ops.cast(y_pred, "float32"), axis=tuple(range(1, len(y_pred.shape))))


def _trivial_loss_step(model: Any, images: Any, batch_size: int) -> Callable[[], Any]:
    """A training step of ``model`` (any outputs) with :func:`_mean_output` on each output."""
    import keras
    from keras import ops

    zeros = keras.tree.map_structure(lambda _: ops.zeros((batch_size,)), model.output)
    loss = keras.tree.map_structure(lambda _: _mean_output, model.output)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    return lambda: model.train_on_batch(images, zeros)


def measure_training(spec: dict[str, Any]) -> dict[str, Any]:
    """Training images/s of the SSD, its backbone (float32 and mixed_bfloat16) and the peer (the child job).

    ``spec``: a :class:`BenchConfig` as a dict, ``num_classes`` and ``peer`` (time torchvision's SSD300
    too). The float32 SSD is built and takes its first step before anything else, so the recorded peak
    memory is that of a float32 training run; then every model takes its timed steps in turns
    (:func:`interleaved_steps`), the peer too, so all see the same load.
    """
    import keras
    from keras import ops

    from tlutils.anchors import generate_anchors
    from tlutils.model import anchor_config_for, build_ssd_vgg16
    from tlutils.training import SSDTrainer

    config, num_classes = BenchConfig(**spec["config"]), spec["num_classes"]
    results: dict[str, Any] = {"backend": keras.backend.backend()}
    steps: dict[str, Callable[[], Any]] = {}
    batch: tuple[Any, Any] | None = None
    precisions = (("float32", ""), ("mixed_bfloat16", "_bf16")) if spec.get("bf16", True) else (("float32", ""),)
    for precision, suffix in precisions:
        keras.utils.set_random_seed(0)
        with dtype_policy(precision):
            detector = build_ssd_vgg16(num_classes, config.input_size, config.width)
        if batch is None:
            anchors = generate_anchors(anchor_config_for(detector))
            images, targets, truths = training_batch(anchors, config.batch_size, config.input_size, num_classes)
            batch = ops.convert_to_tensor(images), {key: ops.convert_to_tensor(value) for key, value in targets.items()}
        results[f"outputs_float32{suffix}"] = all(str(output.dtype) == "float32" for output in detector.outputs)
        trainer = SSDTrainer(detector)
        trainer.compile(optimizer=keras.optimizers.Adam(1e-3))  # jit_compile left to Keras ("auto")
        steps[f"train{suffix}"] = lambda trainer=trainer: trainer.train_on_batch(*batch)
        if precision == "float32":
            steps["train"]()  # traces the step and allocates what training needs
            results["peak_memory_mb"] = peak_memory_mb()
        results[f"jit_compile{suffix}"] = bool(trainer.jit_compile)
        steps[f"backbone{suffix}"] = _trivial_loss_step(backbone_of(detector), batch[0], config.batch_size)
        if precision == "float32":  # the SSD's layers without the MultiBox loss: splits the overhead
            layers_only = keras.Model(detector.input, detector.output, name="ssd_layers")
            steps["layers"] = _trivial_loss_step(layers_only, batch[0], config.batch_size)
    if spec.get("peer"):
        steps["peer"], peer_results = torchvision_peer(images, truths, num_classes)
        results.update(peer_results)
    timings = interleaved_steps(steps, config.warmup_steps, config.min_steps, config.min_seconds, config.max_steps)
    names = {"train": "train", "backbone": "backbone_train", "layers": "ssd_layers_train",
             "peer": "peer_torchvision_train"}
    for step_name, timing in timings.items():
        base, _, precision = step_name.partition("_")
        suffix = f"_{precision}" if precision else ""
        results[f"{names[base]}_images_per_s{suffix}"] = config.batch_size / timing["seconds"]
        results[f"{names[base]}_images_per_cpu_s{suffix}"] = config.batch_size / timing["cpu_seconds"]
        results[f"{names[base]}_cores_busy{suffix}"] = timing["cores_busy"]
    return results


#: Schemas of the two torchvision operators whose "fake" kernels ``import torchvision`` registers.
_TORCHVISION_OPS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_torchvision_library: Any = None  # kept alive: dropping a torch.library.Library undoes its definitions


def keep_triton_out() -> None:
    """Make ``import triton`` fail (torch then treats Triton as absent) if TensorFlow is loaded and
    Triton is not yet: see :func:`import_torchvision`."""
    if "tensorflow" in sys.modules and "triton" not in sys.modules:
        sys.modules["triton"] = None  # `import triton` raises ImportError from now on


def import_torchvision() -> tuple[Any, str]:
    """``import torchvision``, working around a torchvision wheel whose C++ ops cannot load.

    PyPI's Linux torchvision is built against the CUDA torch; next to the CPU-only torch its ``_C``
    extension (nms, roi_align, ...) does not load and the import then fails registering a kernel for
    ``torchvision::nms``. Training an SSD uses none of those ops (only inference's NMS does), so the two
    schemas are declared and the import retried. Returns the module and a note ("" when not needed).

    In a process that has loaded TensorFlow, Triton (torch's GPU kernel compiler, imported by
    ``torch._dynamo``) is kept out: its C extension bundles its own LLVM and loading it next to
    TensorFlow's crashed the process (SIGSEGV in ``import triton``; torch 2.14.1 CUDA wheel, TensorFlow
    2.21). A training step on the CPU never uses Triton, and torch treats it as not installed.
    """
    global _torchvision_library
    keep_triton_out()
    import torch

    try:
        import torchvision

        return torchvision, ""
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
    for name in [name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")]:
        del sys.modules[name]
    _torchvision_library = torch.library.Library("torchvision", "DEF")
    for schema in _TORCHVISION_OPS:
        _torchvision_library.define(schema)
    import torchvision

    return torchvision, "torchvision's C++ ops did not load (CUDA wheel next to CPU torch); training does not use them"


def torchvision_peer(images: np.ndarray, truths: list[tuple[np.ndarray, np.ndarray]],
                     num_classes: int) -> tuple[Callable[[], None], dict[str, Any]]:
    """A training step of torchvision's ``ssd300_vgg16`` (random weights, Adam, float32) on a fixed batch.

    Args:
        images: ``(B, S, S, 3)`` float 0-255, the batch our SSD trains on (torchvision takes 0-1, CHW).
        truths: per image ``(boxes (K, 4) normalized corners, labels (K,) in 1..C)``.
        num_classes: object classes C (torchvision counts the background too: C + 1).

    Returns:
        The step, and ``{"peer_train_gflop_per_image": torch's FLOP count of a one-image step,
        "peer_note": versions}``.
    """
    import torch

    torchvision, note = import_torchvision()
    from torch.utils.flop_counter import FlopCounterMode
    from torchvision.models.detection import ssd300_vgg16

    torch.manual_seed(0)
    model = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=num_classes + 1)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    size = images.shape[1]
    tensors = [torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1) / 255, dtype=np.float32))
               for image in images]  # (3, S, S) 0-1
    targets = [{"boxes": torch.from_numpy(boxes * size), "labels": torch.from_numpy(labels.astype(np.int64))}
               for boxes, labels in truths]  # pixel corners

    def step(count: int = len(tensors)) -> None:
        losses = model(tensors[:count], targets[:count])  # transform, matching and loss included
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()

    with FlopCounterMode(display=False) as counter:
        step(1)  # forward + backward of one image, 2 FLOPs per multiply-add
    versions = f"torch {torch.__version__}, torchvision {torchvision.__version__}, {torch.get_num_threads()} threads"
    return step, {"peer_train_gflop_per_image": counter.get_total_flops() / 1e9,
                  "peer_note": versions + (f"; {note}" if note else "")}


_CHILD_JOBS = {"training": measure_training}
_RESULT_PREFIX = "BENCH_RESULT "


def run_child(job: str, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run ``job`` in a fresh Python process and return its result dict.

    Raises:
        RuntimeError: the process failed or printed no result (its last output lines are included).
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    command = [sys.executable, "-m", "tlutils.bench", "--child", job, json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    for line in done.stdout.splitlines():
        if line.startswith(_RESULT_PREFIX):
            return json.loads(line[len(_RESULT_PREFIX):])
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
    raise RuntimeError(f"bench job {job!r} failed (exit {done.returncode}):\n{tail}")


# -- the whole benchmark --------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """CPU model, cores, matrix-unit flags, load average, library versions."""
    import keras

    flags: set[str] = set()
    model_name = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    return {
        "git": _git_version(),
        "cpu": model_name,
        "cores": os.cpu_count(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "load_average_start": [round(value, 2) for value in os.getloadavg()],
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "numpy": np.__version__,
    }


def _git_version() -> str | None:
    """``git describe --always --dirty`` of the checkout this module runs from (None outside git)."""
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                              timeout=10, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def _peer_missing() -> str | None:
    """Why the torchvision peer cannot run here, or ``None`` when torch and torchvision are installed."""
    import importlib.util

    missing = [name for name in ("torch", "torchvision") if importlib.util.find_spec(name) is None]
    if missing:
        return f"skipped: {' and '.join(missing)} not installed (pip install -e \".[bench]\")"
    return None


def has_accelerator() -> bool:
    """Whether the Keras backend computes on a GPU (or another accelerator) rather than the CPU."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return any(device.platform != "cpu" for device in jax.devices())
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "torch":
        import torch

        return bool(torch.cuda.is_available())
    return False


def bf16_is_native() -> bool:
    """Whether bf16 arithmetic runs on real units here: an accelerator, or a CPU with bf16 flags."""
    from tlutils.profiles import cpu_has_bfloat16

    return has_accelerator() or cpu_has_bfloat16()


def bf16_skip_note(config: BenchConfig, native: bool) -> str | None:
    """Why ``config``'s mixed_bfloat16 runs are not timed, or None when they are."""
    if native or config.emulated_bf16:
        return None
    return ("skipped: no bf16 units here, so bf16 is emulated (about 10x slower than float32, as the "
            "cpu profile's bf16 rows show); BenchConfig.emulated_bf16 times it anyway")


def measure_config(config: BenchConfig, num_classes: int, quick: bool, bf16_native: bool = True) -> dict[str, Any]:
    """Every figure of one configuration (see the module docstring); ``bf16_native``: :func:`bf16_is_native`."""
    from tlutils.anchors import generate_anchors
    from tlutils.model import anchor_config_for, build_ssd_vgg16

    detector = build_ssd_vgg16(num_classes, config.input_size, config.width)
    anchors = generate_anchors(anchor_config_for(detector))
    result: dict[str, Any] = {**asdict(config), "num_classes": num_classes, "num_anchors": len(anchors)}
    result["train_gflop_per_image"] = training_flops(detector) / 1e9
    result["backbone_train_gflop_per_image"] = training_flops(backbone_of(detector)) / 1e9
    del detector
    result.update(measure_pipeline(config, anchors))
    result.update(measure_box_coding(config, anchors, num_classes, repeat=2 if quick else 7))
    peer_skipped = _peer_missing() or (None if config.peer else
                                       "not comparable: torchvision's SSD300 exists only at width 1.0, 300 px")
    bf16_skipped = bf16_skip_note(config, bf16_native)
    spec = {"config": asdict(config), "num_classes": num_classes, "peer": peer_skipped is None,
            "bf16": bf16_skipped is None}
    result.update(run_child("training", spec, timeout=300 if quick else 1800))
    if bf16_skipped is not None:
        result["bf16_note"] = bf16_skipped
    if peer_skipped is not None:
        result.update(peer_torchvision_train_images_per_s=None, peer_note=peer_skipped)
    for suffix in ("", "_bf16"):
        for unit in ("s", "cpu_s"):
            rate = result.get(f"train_images_per_{unit}{suffix}")
            gflops = None if rate is None else result["train_gflop_per_image"] * rate
            result[f"train_gflops{'' if unit == 's' else '_per_cpu_s'}{suffix}"] = gflops
    return result


def ratios(result: dict[str, Any], machine: dict[str, Any]) -> dict[str, float | None]:
    """The figures the issue's targets are about (:data:`TARGETS`), from wall-clock rates and, with the
    suffix ``_cpu``, from rates per CPU second (which leave out waiting for a core)."""
    out: dict[str, float | None] = {
        "flop_overhead": result["train_gflop_per_image"] / result["backbone_train_gflop_per_image"] - 1,
    }
    for unit, tag in (("s", ""), ("cpu_s", "_cpu")):
        def rate(name: str, suffix: str = "") -> float | None:
            return result.get(f"{name}_images_per_{unit}{suffix}")

        train, train_bf16, peer = rate("train"), rate("train", "_bf16"), rate("peer_torchvision_train")
        matmul = machine[f"matmul_gflops{'' if unit == 's' else '_per_cpu_s'}"]
        matmul_bf16 = machine[f"matmul_gflops_bf16{'' if unit == 's' else '_per_cpu_s'}"]
        out[f"pipeline_over_train{tag}"] = rate("pipeline") / train
        out[f"ssd_overhead{tag}"] = rate("backbone_train") / train - 1
        out[f"layers_overhead{tag}"] = rate("backbone_train") / rate("ssd_layers_train") - 1
        out[f"loss_overhead{tag}"] = rate("ssd_layers_train") / train - 1
        out[f"train_over_peer{tag}"] = train / peer if peer else None
        out[f"fraction_of_matmul{tag}"] = result["train_gflop_per_image"] * train / matmul
        bf16 = train_bf16 is not None  # not timed where bf16 would be emulated (bf16_skip_note)
        out[f"ssd_overhead_bf16{tag}"] = rate("backbone_train", "_bf16") / train_bf16 - 1 if bf16 else None
        out[f"bf16_speedup{tag}"] = train_bf16 / train if bf16 else None
        out[f"fraction_of_matmul_bf16{tag}"] = (result["train_gflop_per_image"] * train_bf16 / matmul_bf16
                                                if bf16 else None)
    return out


#: (ratio key, comparison, threshold, what the issue asks); ``None`` threshold: reported only.
TARGETS = (
    ("pipeline_over_train", ">=", 2.0, "pipeline / train, target >= 2"),
    ("ssd_overhead", "<=", 0.15, "SSD over backbone - 1, target <= 0.15"),
    ("layers_overhead", None, None, "  of which extras + heads"),
    ("loss_overhead", None, None, "  of which MultiBox loss"),
    ("train_over_peer", ">=", 1.0, "train / torchvision, target >= 1"),
    ("bf16_speedup", None, None, "bf16 / float32 train"),
    ("ssd_overhead_bf16", None, None, "SSD over backbone - 1, bf16"),
    ("fraction_of_matmul", None, None, "train GFLOP/s / matmul GFLOP/s"),
    ("fraction_of_matmul_bf16", None, None, "same, bf16 vs bf16 matmul"),
)

#: (key, key of the per-CPU-second figure or None, label, format) of the table's rows.
TABLE_ROWS = (
    ("train_images_per_s", "train_images_per_cpu_s", "SSD train images/s, float32", "{:.2f}"),
    ("train_images_per_s_bf16", "train_images_per_cpu_s_bf16", "SSD train images/s, mixed_bfloat16", "{:.2f}"),
    ("backbone_train_images_per_s", "backbone_train_images_per_cpu_s", "backbone (to fc7) train images/s", "{:.2f}"),
    ("backbone_train_images_per_s_bf16", "backbone_train_images_per_cpu_s_bf16", "backbone train images/s, bf16",
     "{:.2f}"),
    ("ssd_layers_train_images_per_s", "ssd_layers_train_images_per_cpu_s", "SSD layers, trivial loss, images/s",
     "{:.2f}"),
    ("peer_torchvision_train_images_per_s", "peer_torchvision_train_images_per_cpu_s",
     "torchvision ssd300_vgg16 train images/s", "{:.2f}"),
    ("pipeline_images_per_s", "pipeline_images_per_cpu_s", "pipeline images/s (augment + encode)", "{:.0f}"),
    ("train_gflops", "train_gflops_per_cpu_s", "train GFLOP/s, float32", "{:.1f}"),
    ("train_gflops_bf16", "train_gflops_per_cpu_s_bf16", "train GFLOP/s, bf16", "{:.1f}"),
    ("train_gflop_per_image", None, "train GFLOP/image (3 x forward)", "{:.2f}"),
    ("backbone_train_gflop_per_image", None, "backbone train GFLOP/image", "{:.2f}"),
    ("peer_train_gflop_per_image", None, "torchvision train GFLOP/image (torch)", "{:.2f}"),
    ("encode_ms_per_image", "encode_cpu_ms_per_image", "encode ms/image (10 boxes); CPU ms", "{:.2f}"),
    ("decode_ms_per_batch32", "decode_cpu_ms_per_batch32", "decode ms/batch of 32; CPU ms", "{:.1f}"),
    ("num_anchors", None, "anchors", "{}"),
    ("peak_memory_mb", None, "peak memory MiB (float32 training)", "{:.0f}"),
    ("train_cores_busy", None, "CPU cores busy in float32 train steps", "{:.2f}"),
    ("jit_compile", None, "jit_compile (Keras default)", "{}"),
)

_LABEL_WIDTH = 40
_COLUMN_WIDTH = 11


def _cell(value: Any, template: str) -> str:
    return "" if value is None else template.format(value)


def _row(label: str, cells: list[str]) -> str:
    return f"{label:{_LABEL_WIDTH}}" + "".join(f"{cell:>{_COLUMN_WIDTH}}" for cell in cells)


def format_table(report: dict[str, Any]) -> str:
    """The benchmark as a plain-text table: per configuration a wall-clock and a per-CPU-second column."""
    configs = [report[name] for name in report["configurations"]]
    lines = [
        _row("", [text for c in configs for text in (c["name"], "")]),
        _row("", [text for c in configs for text in (f"w{c['width']:g}@{c['input_size']}", f"batch {c['batch_size']}")]),
        _row("", ["wall", "per CPU s"] * len(configs)),
    ]
    for key, cpu_key, label, template in TABLE_ROWS:
        lines.append(_row(label, [_cell(c.get(k) if k else None, template) for c in configs for k in (key, cpu_key)]))
    lines.append("")
    for key, comparison, threshold, meaning in TARGETS:
        cells = []
        for config in configs:
            for tag in ("", "_cpu"):
                value = config["ratios"][key + tag]
                verdict = ""
                if value is not None and threshold is not None:
                    passed = value >= threshold if comparison == ">=" else value <= threshold
                    verdict = " ok" if passed else " MISS"
                cells.append(_cell(value, "{:.2f}") + verdict)
        lines.append(_row(meaning, cells))
    flop_overheads = [_cell(c["ratios"]["flop_overhead"], "{:.2f}") for c in configs]
    lines.append(_row("FLOPs of SSD over backbone - 1", [text for cell in flop_overheads for text in (cell, "")]))
    machine = report["machine"]
    lines += [
        "",
        f"machine: {machine['cpu']}, {machine['cores']} cores, avx512_bf16 {machine['avx512_bf16']}, amx_bf16 "
        f"{machine['amx_bf16']}; matmul {machine['matmul_size']}^2: {machine['matmul_gflops']:.0f} GFLOP/s float32 "
        f"({machine['matmul_gflops_per_cpu_s']:.0f} per CPU s), {machine['matmul_gflops_bf16']:.0f} bf16 "
        f"({machine['matmul_gflops_bf16_per_cpu_s']:.0f} per CPU s)",
        f"load average at start {machine['load_average_start']}, at end {machine['load_average_end']}; "
        f"{machine['backend']} backend, keras {machine['keras']}; code {machine['git']}",
    ]
    lines += [f"peer ({c['name']}): {c['peer_note']}" for c in configs if c.get("peer_note")]
    lines += [f"bf16 ({c['name']}): {c['bf16_note']}" for c in configs if c.get("bf16_note")]
    return "\n".join(lines)


def run_bench(out: str | os.PathLike = "runs/bench.json", quick: bool = False) -> int:
    """Measure every configuration, print the table, write ``out`` (JSON); returns 0 (an exit status)."""
    from tlutils.data.synth import SIGN_CLASSES

    started = time.perf_counter()
    machine = machine_info()
    machine["matmul_size"] = 256 if quick else 4096
    for dtype, suffix in (("float32", ""), ("bfloat16", "_bf16")):
        rates = measure_matmul(machine["matmul_size"], repeat=3 if quick else 9, dtype=dtype)
        machine[f"matmul_gflops{suffix}"] = rates["gflops"]
        machine[f"matmul_gflops{suffix}_per_cpu_s"] = rates["gflops_per_cpu_s"]
    machine["bf16_native"] = bf16_is_native()
    report: dict[str, Any] = {"quick": quick, "configurations": [], "machine": machine}
    for config in configurations(quick):
        print(f"measuring {config.name}: {config.describe()} ...", flush=True)
        report[config.name] = measure_config(config, len(SIGN_CLASSES), quick, machine["bf16_native"])
        report["configurations"].append(config.name)
    machine["load_average_end"] = [round(value, 2) for value in os.getloadavg()]
    machine["seconds"] = round(time.perf_counter() - started, 1)
    for name in report["configurations"]:
        report[name]["ratios"] = ratios(report[name], machine)
    print(format_table(report))
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path} ({machine['seconds']:.0f} s)")
    return 0


def _child_main(argv: list[str]) -> int:
    """``python -m tlutils.bench --child JOB SPEC_JSON``: run one measurement, print its result line."""
    job, spec = argv[1], json.loads(argv[2])
    print(_RESULT_PREFIX + json.dumps(_CHILD_JOBS[job](spec)), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        sys.exit(_child_main(sys.argv[1:]))
    from tlutils.cli import main

    sys.exit(main(["bench", *sys.argv[1:]]))
