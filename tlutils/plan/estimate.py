"""How long a plan takes: :func:`measure_step` times a few training steps of the profile's model here and
:func:`estimate_seconds` scales them to a plan; :func:`flops_seconds` estimates from counted FLOPs
(:func:`profile_training_flops`) at an assumed :class:`Throughput`, e.g. :data:`T4`. Both price an evaluated
image at :data:`FORWARD_SHARE` of a training image (a forward pass; decoding and mAP are not counted).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Mapping

from tlutils.plan.runs import Plan
from tlutils.profiles import get_profile

#: Forward FLOPs per image over training FLOPs per image (forward + two gradients, tlutils.bench.flops).
FORWARD_SHARE = 1 / 3
#: Training steps timed by :func:`measure_step`, after :data:`WARM_UP_STEPS` untimed ones (the first
#: traces and compiles; the next few still run slower while caches and thread pools settle: three
#: steps after one warm-up made the cpu course's estimate 24.8 min for a measured 20.1).
TIMED_STEPS = 5
WARM_UP_STEPS = 2


@dataclass(frozen=True)
class Throughput:
    """An assumed training throughput of a device, for :func:`flops_seconds`.

    Attributes:
        name: the device, e.g. "Colab T4".
        peak_tflops: its peak rate at the precision training uses (dense, tensor cores).
        achieved_fraction: the share of the peak a training step reaches (an assumption until measured).
        run_overhead_seconds: per run: building the detector, tracing and compiling each phase's step,
            saving the state every epoch, rendering its data.
    """

    name: str
    peak_tflops: float
    achieved_fraction: float
    run_overhead_seconds: float

    @property
    def achieved_tflops(self) -> float:
        return self.peak_tflops * self.achieved_fraction


#: Colab's NVIDIA T4: 65 TFLOPS float16 tensor-core peak (NVIDIA's T4 datasheet; bf16 is emulated there,
#: so "auto" trains in mixed_float16). Assumed: 15 % of it while training SSD300 (a 70 W card that lowers
#: its clock under load; NVIDIA's own ResNet-50 mixed-precision training on a T4, about 250 images/s at
#: about 25 GFLOP per image, reaches about 10 %, and VGG16's wide 3x3 convolutions use tensor cores
#: better), and 30 s per run for building, compiling and saving. Not measured: replace with a measured
#: run (issue 22, item 6).
T4 = Throughput("Colab T4 (assumed 15 % of 65 TFLOPS float16)", 65.0, 0.15, 30.0)


@dataclass(frozen=True)
class StepTiming:
    """Training steps of a profile's model timed on this machine (:func:`measure_step`).

    Attributes:
        batch_size: images per timed step.
        step_seconds: median seconds of the timed steps.
        setup_seconds: building the detector plus its first (tracing, compiling) step, less one step.
        precision: the dtype policy the steps ran under; ``device``: where ("CPU" or the accelerator).
    """

    batch_size: int
    step_seconds: float
    setup_seconds: float
    precision: str
    device: str


def measure_step(profile: str, steps: int = TIMED_STEPS, precision: str | None = None) -> StepTiming:
    """Build the profile's detector under ``precision`` (default: the profile's, resolved here) and time
    ``steps`` training steps on one fixed batch after :data:`WARM_UP_STEPS`, as the runner trains
    (:class:`tlutils.training.SSDTrainer`, Adam, the runner's ``jit_compile``). Costs about a build and
    ``steps + WARM_UP_STEPS`` steps."""
    import keras

    from tlutils.anchors import generate_anchors
    from tlutils.bench.inputs import training_batch
    from tlutils.data.synth import SIGN_CLASSES
    from tlutils.experiment.runner import _jit_compile
    from tlutils.model import anchor_config_for, build_ssd_vgg16
    from tlutils.profiles import accelerator, resolve_precision
    from tlutils.training import SSDTrainer

    settings = get_profile(profile)
    device = accelerator()
    precision = precision or resolve_precision(settings.mixed_precision, device=device)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        started = time.perf_counter()
        detector = build_ssd_vgg16(len(SIGN_CLASSES), settings.input_size, settings.width)
        images, targets, _ = training_batch(generate_anchors(anchor_config_for(detector)), settings.batch_size,
                                            settings.input_size, len(SIGN_CLASSES))
        trainer = SSDTrainer(detector)
        trainer.compile(optimizer=keras.optimizers.Adam(settings.learning_rate), jit_compile=_jit_compile())
        for _ in range(WARM_UP_STEPS):
            trainer.train_on_batch(images, targets)
        setup = time.perf_counter() - started
        seconds = []
        for _ in range(steps):
            started = time.perf_counter()
            trainer.train_on_batch(images, targets)  # returns the logs as numbers: the step has finished
            seconds.append(time.perf_counter() - started)
    finally:
        keras.config.set_dtype_policy(previous)
        keras.backend.clear_session()
    step = statistics.median(seconds)
    where = "CPU" if device is None else device.name
    return StepTiming(settings.batch_size, step, max(setup - WARM_UP_STEPS * step, 0.0), precision, where)


def estimate_seconds(plan: Plan, timing: StepTiming | Mapping[str, StepTiming]) -> float:
    """Seconds to train the plan's remaining runs at ``timing``'s rate: every image of a step costs
    ``step_seconds / batch_size``, an evaluated image :data:`FORWARD_SHARE` of that, and every phase of
    a run ``setup_seconds`` (building and compiling).

    Args:
        plan: the runs.
        timing: one timing for every run, or one per precision (``PlannedRun.precision``); a run whose
            precision has none is priced at the first.
    """
    timings = {timing.precision: timing} if isinstance(timing, StepTiming) else dict(timing)
    if not timings:
        raise ValueError("estimate_seconds needs at least one step timing")
    first = next(iter(timings.values()))
    seconds = 0.0
    for run in plan.to_train:
        used = timings.get(run.precision, first)
        per_image = used.step_seconds / used.batch_size
        seconds += (run.train_images * per_image + run.eval_images * per_image * FORWARD_SHARE
                    + run.phases * used.setup_seconds)
    return seconds


def measure_plan_steps(plan: Plan, steps: int = TIMED_STEPS) -> dict[str, StepTiming]:
    """:func:`measure_step` once per precision the plan's remaining runs train under."""
    precisions = dict.fromkeys(run.precision for run in plan.to_train) or {"": None}
    return {precision: measure_step(plan.profile, steps, precision or None) for precision in precisions}


def flops_seconds(plan: Plan, train_flops_per_image: float, device: Throughput = T4) -> float:
    """Seconds to train the plan's remaining runs at ``device``'s assumed throughput:
    ``(train images + FORWARD_SHARE x eval images) x training FLOPs per image / achieved FLOP/s``,
    plus ``device.run_overhead_seconds`` per run."""
    totals = plan.totals()
    flops = (totals["train_images"] + FORWARD_SHARE * totals["eval_images"]) * train_flops_per_image
    return flops / (device.achieved_tflops * 1e12) + totals["runs"] * device.run_overhead_seconds


def profile_training_flops(profile: str) -> int:
    """Counted training FLOPs per image of the profile's detector (:func:`tlutils.bench.flops.training_flops`)."""
    from tlutils.bench.flops import training_flops
    from tlutils.data.synth import SIGN_CLASSES
    from tlutils.model import build_ssd_vgg16

    settings = get_profile(profile)
    return training_flops(build_ssd_vgg16(len(SIGN_CLASSES), settings.input_size, settings.width))
