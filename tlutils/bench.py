"""``tlutils bench``: how fast SSD-VGG16 trains here, measured against the hardware and a peer.

``run_bench(out="runs/bench.json")`` (``tlutils bench``, ``make bench``) measures, for each
configuration (:data:`CONFIGURATIONS`: the ``cpu`` run profile's model, and SSD300 itself), and
prints as a table:

- ``train_images_per_s``: a full SSD training step (:class:`tlutils.training.SSDTrainer`, MultiBox
  loss included, Adam) on one fixed in-memory batch, steady state: the first steps (tracing,
  compilation) are left out and the **median** step time is reported (the SSD and backbone steps,
  float32 and bf16, take turns step by step, so load from other processes hits them alike). ``jit_compile`` is left to
  Keras (``"auto"``: XLA off on a CPU-only TensorFlow) and recorded; ``_bf16``: the same step under
  the ``mixed_bfloat16`` policy (the model's outputs and the loss stay float32);
- ``backbone_train_images_per_s``: the same for the detector's VGG16 base (input to ``fc7``, the
  sub-model of the built detector) with a trivial loss (the mean of its output). ``ratios.ssd_overhead``
  = backbone images/s / SSD images/s - 1 is the time the extra layers, the heads and the loss add;
- ``pipeline_images_per_s``: the input pipeline alone, one process: a :class:`DetectionSequence`
  over sign-world scenes, SSD augmentation (``TRAFFIC_SIGN_MAX_ZOOM``) + ``encode`` per image;
- ``encode_ms_per_image``: ``encode`` of 10 boxes against the configuration's anchors (8732 for
  SSD300); ``decode_ms_per_batch32``: ``decode_detections`` of 32 images of detector-like outputs;
- ``train_gflops``: counted training FLOPs per image (:func:`training_flops`) x train images/s;
  ``machine.matmul_gflops``: the best rate of a large float32 ``keras.ops.matmul`` here.
  ``ratios.fraction_of_matmul`` = their ratio: how close training runs to what this machine's
  matrix units deliver (bf16 figures against ``matmul_gflops_bf16``);
- ``peak_memory_mb``: peak resident memory (``ru_maxrss``) of the subprocess that trains in float32,
  Python and the backend included;
- ``peer_torchvision_train_images_per_s``: torchvision's ``ssd300_vgg16`` (random weights) training
  step, same input size, batch and classes, float32, when ``torch`` and ``torchvision`` are installed
  (``pip install -e ".[bench]"``); otherwise ``None`` and a ``peer_note`` saying why.

FLOP convention: a convolution or dense layer costs ``2 x MACs`` per image forward (a multiply and
an add per weight use; biases, activations, pooling, normalization and the loss are not counted),
and a training step ``3 x`` the forward (the backward pass computes the gradients of the inputs and
of the weights, each as costly as the forward). torchvision's own FLOP counter, run on the peer's
training step, gives the peer's count for comparison (``peer_train_gflop_per_image``).

Each training measurement runs in a fresh subprocess (``python -m tlutils.bench --child ...``), so
its peak memory is its own and a dtype policy never leaks. Images/s are wall-clock: on a shared
machine they include waiting for a core, so the load average is recorded (``machine``) and
``cpu_cores_busy`` (CPU seconds / wall seconds of the training steps, at most the number of cores)
says how much of the machine the step had.

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

    def describe(self) -> str:
        return f"width {self.width:g} @ {self.input_size} px, batch {self.batch_size}"


def configurations(quick: bool = False) -> list[BenchConfig]:
    """The cpu profile's model and SSD300 (batch 8 on a CPU); tiny sizes with ``quick``."""
    from tlutils.profiles import PROFILES

    if quick:
        return [BenchConfig("cpu_profile", 0.125, 96, 4, warmup_steps=1, min_steps=1, min_seconds=0.0,
                            max_steps=1, pipeline_images=4, pipeline_epochs=1)]
    cpu = PROFILES["cpu"]
    return [
        BenchConfig("cpu_profile", cpu.width, cpu.input_size, cpu.batch_size),
        BenchConfig("ssd300", 1.0, 300, 8, warmup_steps=1, min_steps=3, min_seconds=20.0, max_steps=6,
                    pipeline_images=32, peer=True),
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
        Per name: ``seconds``, the median wall-clock seconds of a step; ``cores_busy``, CPU seconds of
        this process (all threads) per wall second of its steps (at most the number of cores).
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
    return {name: {"seconds": float(np.median(walls[name])), "cores_busy": sum(cpus[name]) / sum(walls[name])}
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

    Anchors matched to a sign (``encode``) score its class high (logit ~ N(6, 1)) with offsets near the
    targets (noise 0.3); every other anchor is confidently background (logit ~ N(8, 1.5)), with enough
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
        logits[image, ~matched, 0] = rng.normal(8.0, 1.5, size=(~matched).sum())
        logits[image, matched, class_targets[matched]] = rng.normal(6.0, 1.0, size=matched.sum())
        offsets[image] = box_targets + rng.normal(0, 0.3, size=box_targets.shape)
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
    encode_wall, _ = median_seconds(lambda: encode(boxes, labels, anchors), repeat, number=20)
    logits, offsets = detector_like_outputs(np.random.default_rng(0), DECODE_BATCH, anchors, num_classes)
    decode_wall, _ = median_seconds(lambda: decode_detections(logits, offsets, anchors), repeat)
    return {"encode_ms_per_image": encode_wall * 1e3, "decode_ms_per_batch32": decode_wall * 1e3}


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


def measure_matmul(size: int, repeat: int, dtype: str = "float32") -> float:
    """Best GFLOP/s (``2 n^3`` per product) of ``keras.ops.matmul`` of two ``n x n`` matrices."""
    from keras import ops

    rng = np.random.default_rng(0)
    a = ops.cast(ops.convert_to_tensor(rng.standard_normal((size, size), dtype=np.float32)), dtype)
    b = ops.cast(ops.convert_to_tensor(rng.standard_normal((size, size), dtype=np.float32)), dtype)
    best = math.inf

    def product() -> None:  # reading one element waits for the product (JAX dispatches asynchronously)
        ops.convert_to_numpy(ops.cast(ops.matmul(a, b)[0, 0], "float32"))

    product()  # warm-up
    for _ in range(repeat):
        start = time.perf_counter()
        product()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


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
    """Trivial loss of the backbone: the mean of its output per image, float32."""
    from keras import ops

    return ops.mean(ops.cast(y_pred, "float32"), axis=(1, 2, 3))


def measure_keras_training(spec: dict[str, Any]) -> dict[str, Any]:
    """Training images/s of the SSD and its backbone, float32 and mixed_bfloat16 (the ``--child keras`` job).

    ``spec``: a :class:`BenchConfig` as a dict plus ``num_classes``. The float32 SSD is built and
    warmed up first, so the recorded peak memory is that of a float32 training run; then the four
    models take their timed steps in turns (:func:`interleaved_steps`).
    """
    import keras
    from keras import ops

    from tlutils.anchors import generate_anchors
    from tlutils.model import anchor_config_for, build_ssd_vgg16
    from tlutils.training import SSDTrainer

    config = BenchConfig(**spec["config"])
    results: dict[str, Any] = {"backend": keras.backend.backend()}
    steps: dict[str, Callable[[], Any]] = {}
    batch: tuple[Any, Any] | None = None
    for precision, suffix in (("float32", ""), ("mixed_bfloat16", "_bf16")):
        keras.utils.set_random_seed(0)
        with dtype_policy(precision):
            detector = build_ssd_vgg16(spec["num_classes"], config.input_size, config.width)
        if batch is None:
            anchors = generate_anchors(anchor_config_for(detector))
            images, targets, _ = training_batch(anchors, config.batch_size, config.input_size, spec["num_classes"])
            batch = ops.convert_to_tensor(images), {key: ops.convert_to_tensor(value) for key, value in targets.items()}
        results[f"outputs_float32{suffix}"] = all(str(output.dtype) == "float32" for output in detector.outputs)
        trainer = SSDTrainer(detector)
        trainer.compile(optimizer=keras.optimizers.Adam(1e-3))  # jit_compile left to Keras ("auto")
        steps[f"train{suffix}"] = lambda trainer=trainer: trainer.train_on_batch(*batch)
        if precision == "float32":
            for _ in range(config.warmup_steps):
                steps["train"]()
            results["peak_memory_mb"] = peak_memory_mb()
        results[f"jit_compile{suffix}"] = bool(trainer.jit_compile)
        backbone = backbone_of(detector)
        backbone.compile(optimizer=keras.optimizers.Adam(1e-3), loss=_mean_output)
        zeros = ops.zeros((config.batch_size,))
        steps[f"backbone{suffix}"] = lambda backbone=backbone: backbone.train_on_batch(batch[0], zeros)
    timings = interleaved_steps(steps, config.warmup_steps, config.min_steps, config.min_seconds,
                                config.max_steps)
    for suffix in ("", "_bf16"):
        results[f"train_images_per_s{suffix}"] = config.batch_size / timings[f"train{suffix}"]["seconds"]
        results[f"backbone_train_images_per_s{suffix}"] = config.batch_size / timings[f"backbone{suffix}"]["seconds"]
        results[f"cpu_cores_busy{suffix}"] = timings[f"train{suffix}"]["cores_busy"]
    return results


#: Schemas of the two torchvision operators whose "fake" kernels ``import torchvision`` registers.
_TORCHVISION_OPS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_torchvision_library: Any = None  # kept alive: dropping a torch.library.Library undoes its definitions


def import_torchvision() -> tuple[Any, str]:
    """``import torchvision``, working around a torchvision wheel whose C++ ops cannot load.

    PyPI's Linux torchvision is built against the CUDA torch; next to the CPU-only torch its ``_C``
    extension (nms, roi_align, ...) does not load and the import then fails registering a kernel for
    ``torchvision::nms``. Training an SSD uses none of those ops (only inference's NMS does), so the two
    schemas are declared and the import retried. Returns the module and a note ("" when not needed).
    """
    global _torchvision_library
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


def measure_torchvision_training(spec: dict[str, Any]) -> dict[str, Any]:
    """Train steps/s of torchvision's ``ssd300_vgg16`` (the ``--child torchvision`` job), float32, Adam."""
    import torch

    torchvision, note = import_torchvision()
    from torch.utils.flop_counter import FlopCounterMode
    from torchvision.models.detection import ssd300_vgg16

    config = BenchConfig(**spec["config"])
    size, num_classes = config.input_size, spec["num_classes"]
    torch.manual_seed(0)
    model = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=num_classes + 1)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    images = [torch.from_numpy(rng.uniform(0, 1, (3, size, size)).astype(np.float32)) for _ in range(config.batch_size)]
    truths = [random_ground_truth(int(rng.integers(3, 7)), index, num_classes) for index in range(config.batch_size)]
    targets = [{"boxes": torch.from_numpy(boxes * size), "labels": torch.from_numpy(labels.astype(np.int64))}
               for boxes, labels in truths]

    def step(count: int = config.batch_size) -> None:
        losses = model(images[:count], targets[:count])
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()

    with FlopCounterMode(display=False) as counter:
        step(1)  # one image: forward + backward, counted by torch (2 FLOPs per multiply-add)
    timing = interleaved_steps({"peer": step}, config.warmup_steps, config.min_steps, config.min_seconds,
                               config.max_steps)["peer"]
    return {
        "peer_torchvision_train_images_per_s": config.batch_size / timing["seconds"],
        "peer_cpu_cores_busy": timing["cores_busy"],
        "peer_train_gflop_per_image": counter.get_total_flops() / 1e9,
        "peer_peak_memory_mb": peak_memory_mb(),
        "peer_note": f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
                     f"{torch.get_num_threads()} threads" + (f"; {note}" if note else ""),
    }


_CHILD_JOBS = {"keras": measure_keras_training, "torchvision": measure_torchvision_training}
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


def _peer_missing() -> str | None:
    """Why the torchvision peer cannot run here, or ``None`` when torch and torchvision are installed."""
    import importlib.util

    missing = [name for name in ("torch", "torchvision") if importlib.util.find_spec(name) is None]
    if missing:
        return f"skipped: {' and '.join(missing)} not installed (pip install -e \".[bench]\")"
    return None


def measure_config(config: BenchConfig, num_classes: int, quick: bool) -> dict[str, Any]:
    """Every figure of one configuration (see the module docstring)."""
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
    spec = {"config": asdict(config), "num_classes": num_classes}
    result.update(run_child("keras", spec, timeout=300 if quick else 1800))
    for suffix in ("", "_bf16"):
        result[f"train_gflops{suffix}"] = result["train_gflop_per_image"] * result[f"train_images_per_s{suffix}"]
    reason = _peer_missing() or (None if config.peer else
                                 "not comparable: torchvision's SSD300 exists only at width 1.0 and 300 px")
    if reason is None:
        try:
            result.update(run_child("torchvision", spec, timeout=1800))
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            reason = f"failed: {str(error).splitlines()[0]}"
    if reason is not None:
        result.update(peer_torchvision_train_images_per_s=None, peer_note=reason)
    return result


def ratios(result: dict[str, Any], machine: dict[str, Any]) -> dict[str, float | None]:
    """The figures the issue's targets are about (see :data:`TARGETS`)."""
    train, peer = result["train_images_per_s"], result.get("peer_torchvision_train_images_per_s")
    return {
        "pipeline_over_train": result["pipeline_images_per_s"] / train,
        "ssd_overhead": result["backbone_train_images_per_s"] / train - 1,
        "ssd_overhead_bf16": result["backbone_train_images_per_s_bf16"] / result["train_images_per_s_bf16"] - 1,
        "train_over_peer": train / peer if peer else None,
        "bf16_speedup": result["train_images_per_s_bf16"] / train,
        "fraction_of_matmul": result["train_gflops"] / machine["matmul_gflops"],
        "fraction_of_matmul_bf16": result["train_gflops_bf16"] / machine["matmul_gflops_bf16"],
    }


#: (ratio key, comparison, threshold, what the issue asks).
TARGETS = (
    ("pipeline_over_train", ">=", 2.0, "input pipeline >= 2 x training throughput"),
    ("ssd_overhead", "<=", 0.15, "SSD layers + heads + loss <= 15 % over the backbone"),
    ("train_over_peer", ">=", 1.0, "training at least as fast as torchvision's SSD300"),
)

#: (key, label, format) of the table's rows.
TABLE_ROWS = (
    ("train_images_per_s", "train images/s, float32", "{:.2f}"),
    ("train_images_per_s_bf16", "train images/s, mixed_bfloat16", "{:.2f}"),
    ("backbone_train_images_per_s", "backbone (VGG16 to fc7) train images/s", "{:.2f}"),
    ("backbone_train_images_per_s_bf16", "backbone train images/s, bf16", "{:.2f}"),
    ("peer_torchvision_train_images_per_s", "torchvision ssd300_vgg16 train images/s", "{:.2f}"),
    ("pipeline_images_per_s", "pipeline images/s (augment + encode)", "{:.1f}"),
    ("encode_ms_per_image", "encode ms/image (10 boxes)", "{:.2f}"),
    ("decode_ms_per_batch32", "decode ms/batch of 32", "{:.1f}"),
    ("num_anchors", "anchors", "{}"),
    ("train_gflop_per_image", "train GFLOP/image (3 x forward)", "{:.2f}"),
    ("peer_train_gflop_per_image", "torchvision train GFLOP/image", "{:.2f}"),
    ("train_gflops", "train GFLOP/s, float32", "{:.1f}"),
    ("train_gflops_bf16", "train GFLOP/s, bf16", "{:.1f}"),
    ("peak_memory_mb", "peak memory MiB (float32 training)", "{:.0f}"),
    ("cpu_cores_busy", "CPU cores busy during train steps", "{:.2f}"),
    ("jit_compile", "jit_compile (Keras default)", "{}"),
)


def _cell(value: Any, template: str) -> str:
    return "-" if value is None else template.format(value)


def format_table(report: dict[str, Any]) -> str:
    """The benchmark as a plain-text table, targets and machine figures below it."""
    names = [name for name in report["configurations"]]
    configs = [report[name] for name in names]
    label_width = 42
    lines = [f"{'':{label_width}}" + "".join(f"{name:>22}" for name in names),
             f"{'':{label_width}}" + "".join(f"{BenchConfig(**_config_fields(c)).describe():>22}" for c in configs)]
    for key, label, template in TABLE_ROWS:
        lines.append(f"{label:{label_width}}" + "".join(f"{_cell(c.get(key), template):>22}" for c in configs))
    lines.append("")
    ratio_rows = [("bf16_speedup", "bf16 speed-up"), ("fraction_of_matmul", "fraction of matmul rate, float32"),
                  ("fraction_of_matmul_bf16", "fraction of bf16 matmul rate, bf16"),
                  ("ssd_overhead_bf16", "SSD overhead over backbone, bf16")]
    for key, comparison, threshold, meaning in TARGETS:
        cells = []
        for config in configs:
            value = config["ratios"][key]
            passed = value is not None and (value >= threshold if comparison == ">=" else value <= threshold)
            cells.append("-" if value is None else f"{value:.2f} {'ok' if passed else 'MISS'}")
        lines.append(f"{meaning:{label_width}}" + "".join(f"{cell:>22}" for cell in cells))
    for key, label in ratio_rows:
        lines.append(f"{label:{label_width}}" + "".join(f"{_cell(c['ratios'][key], '{:.2f}'):>22}" for c in configs))
    machine = report["machine"]
    lines += ["", f"machine: {machine['cpu']}, {machine['cores']} cores, avx512_bf16 {machine['avx512_bf16']}, "
              f"amx_bf16 {machine['amx_bf16']}; matmul {machine['matmul_size']}^2: "
              f"{machine['matmul_gflops']:.0f} GFLOP/s float32, {machine['matmul_gflops_bf16']:.0f} bf16",
              f"load average at start {machine['load_average_start']}, at end {machine['load_average_end']}; "
              f"{machine['backend']} backend, keras {machine['keras']}"]
    for name, config in zip(names, configs):
        if config.get("peer_note"):
            lines.append(f"peer ({name}): {config['peer_note']}")
    return "\n".join(lines)


def _config_fields(result: dict[str, Any]) -> dict[str, Any]:
    fields = BenchConfig.__dataclass_fields__
    return {key: value for key, value in result.items() if key in fields}


def run_bench(out: str | os.PathLike = "runs/bench.json", quick: bool = False) -> int:
    """Measure every configuration, print the table, write ``out`` (JSON); returns 0 (an exit status)."""
    from tlutils.data.synth import SIGN_CLASSES

    started = time.perf_counter()
    machine = machine_info()
    matmul_size = 256 if quick else 2048
    machine["matmul_size"] = matmul_size
    machine["matmul_gflops"] = measure_matmul(matmul_size, repeat=3 if quick else 7)
    machine["matmul_gflops_bf16"] = measure_matmul(matmul_size, repeat=3 if quick else 7, dtype="bfloat16")
    report: dict[str, Any] = {"quick": quick, "configurations": [], "machine": machine}
    for config in configurations(quick):
        print(f"measuring {config.name}: {config.describe()} ...", flush=True)
        result = measure_config(config, len(SIGN_CLASSES), quick)
        report["configurations"].append(config.name)
        report[config.name] = result
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
