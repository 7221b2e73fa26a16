"""The plan of a course or a sweep before it starts: which runs train, how many steps and images, how long.

- :func:`course_plan` lists the runs the notebooks train with their default parameters, read from each
  notebook's ``parameters`` cell (so the plan follows the notebooks), in the order they first ask for
  them; :func:`sweep_plan` lists a sweep's. A :class:`Plan` adds up runs, optimizer steps, training
  images (steps x batch) and evaluation images (passes over the validation set x its images), and
  knows which runs ``results.csv`` already holds (those are read back, not trained).
- :func:`measure_step` times a few training steps of the profile's model here; :func:`estimate_seconds`
  scales them to a plan. ``tlutils course`` prints both before the first notebook (``--no-estimate``
  skips the timing), from a child process, so that the notebooks' kernels find the accelerator free.
- :func:`flops_seconds` estimates from counted FLOPs (:func:`tlutils.bench.flops.training_flops`) at
  an assumed throughput, e.g. :data:`T4`; how ``gpu`` was sized for one Colab session
  (docs/performance.md, ``python -m tlutils.plan --flops``).

A target run evaluates once before training (its zero-shot row) and after every epoch; a source run
after every epoch. Evaluation is a forward pass: a third of a training step's FLOPs per image
(:mod:`tlutils.bench.flops`); decoding and mAP are not counted.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlutils.paths import project_root, runs_dir
from tlutils.profiles import Profile, get_profile

if TYPE_CHECKING:
    from tlutils.experiment import RunConfig

#: Forward FLOPs per image over training FLOPs per image (forward + two gradients, tlutils.bench.flops).
FORWARD_SHARE = 1 / 3
#: Training steps timed by :func:`measure_step`, after one untimed warm-up step (tracing, compiling).
TIMED_STEPS = 3


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
class PlannedRun:
    """One run of a plan.

    Attributes:
        notebook: who asks for it first ("04_source_detector", ..., or "sweep").
        label: the run's folder name without its key, and what differs from the defaults.
        key: the run key (``results.csv``'s ``run_key``).
        steps: optimizer steps; ``batch_size``: images per step.
        evaluations: passes over the validation set; ``val_images``: its images.
        phases: training phases (each compiles its own step; ``two_stage`` has two).
        done: whether ``results.csv`` already holds the finished run (it is read back, not trained).
    """

    notebook: str
    label: str
    key: str
    steps: int
    batch_size: int
    evaluations: int
    val_images: int
    phases: int = 1
    done: bool = False

    @property
    def train_images(self) -> int:
        return self.steps * self.batch_size

    @property
    def eval_images(self) -> int:
        return self.evaluations * self.val_images


@dataclass(frozen=True)
class Plan:
    """The runs of a course or sweep on one profile, in the order they train."""

    profile: str
    runs: tuple[PlannedRun, ...] = field(default_factory=tuple)

    @property
    def to_train(self) -> tuple[PlannedRun, ...]:
        """The runs not yet finished (what will train)."""
        return tuple(run for run in self.runs if not run.done)

    def totals(self, runs: Iterable[PlannedRun] | None = None) -> dict[str, int]:
        """``runs`` (default: those to train), ``steps``, ``train_images``, ``eval_images`` added up."""
        runs = list(self.to_train if runs is None else runs)
        return {"runs": len(runs), "steps": sum(run.steps for run in runs),
                "train_images": sum(run.train_images for run in runs),
                "eval_images": sum(run.eval_images for run in runs)}

    def by_notebook(self) -> dict[str, dict[str, int]]:
        """:meth:`totals` of the runs to train, per notebook (in order; notebooks with none left out)."""
        names = list(dict.fromkeys(run.notebook for run in self.to_train))
        return {name: self.totals(run for run in self.to_train if run.notebook == name) for name in names}


# --- which runs -----------------------------------------------------------------------------------------

def planned_run(config: "RunConfig", notebook: str, done_keys: Iterable[str] = ()) -> PlannedRun:
    """The :class:`PlannedRun` of one configuration (resolved as the runner resolves it)."""
    from tlutils.experiment import resolve
    from tlutils.transfer import training_plan

    resolved = resolve(config)
    epochs = resolved.total_steps // resolved.steps_per_epoch
    phases = training_plan(resolved.strategy, resolved.total_steps, resolved.learning_rate, resolved.steps_per_epoch)
    extras = [f"{name}={getattr(config, name)}" for name in ("preprocessing", "learning_rate")
              if getattr(config, name) is not None]
    label = " ".join([resolved.name.removesuffix(f"_{resolved.key}"), *extras])
    return PlannedRun(notebook=notebook, label=label, key=resolved.key,
                      steps=resolved.total_steps, batch_size=resolved.batch_size,
                      evaluations=epochs + (resolved.stage == "target"), val_images=resolved.num_val_images,
                      phases=len(phases), done=resolved.key in set(done_keys))


def plan_of(profile: str, configs_by_notebook: Mapping[str, Sequence["RunConfig"]],
            done_keys: Iterable[str] = ()) -> Plan:
    """A :class:`Plan` of configurations grouped by who asks for them: a source-initialized run brings
    its source run first (as the runner trains it), and a run asked for twice counts once, where first."""
    from tlutils.experiment import source_config

    done_keys = set(done_keys)
    runs: dict[str, PlannedRun] = {}
    for notebook, configs in configs_by_notebook.items():
        for config in configs:
            for needed in ([source_config(config)] if config.uses_source else []) + [config]:
                run = planned_run(needed, notebook, done_keys)
                runs.setdefault(run.key, run)
    return Plan(profile, tuple(runs.values()))


def finished_keys(results_dir: str | os.PathLike) -> set[str]:
    """The run keys of the finished runs in ``results_dir/results.csv`` (none when there is no table)."""
    from tlutils.experiment import load_results

    return set(load_results(results_dir)["run_key"])


def notebook_parameters(notebook: str | os.PathLike) -> dict[str, Any]:
    """The defaults of a notebook's ``parameters`` cell: ``NAME = literal`` lines, evaluated.

    Raises:
        ValueError: no ``parameters`` cell, or a value that is not a Python literal.
    """
    cells = json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"])
            values = {}
            for node in ast.parse(source).body:
                if not isinstance(node, ast.Assign) or not isinstance(node.targets[0], ast.Name):
                    raise ValueError(f"{notebook}: the parameters cell may only assign names, line {node.lineno}")
                try:
                    values[node.targets[0].id] = ast.literal_eval(node.value)
                except ValueError:
                    raise ValueError(f"{notebook}: parameter {node.targets[0].id} is not a literal "
                                     f"(line {node.lineno})") from None
            return values
    raise ValueError(f"{notebook}: no cell tagged 'parameters'")


def _source_detector_runs(params: Mapping[str, Any], profile: Profile) -> list["RunConfig"]:
    """Notebook 04: the Belgian source detector, and from ImageNet weights where the width allows it."""
    from tlutils.experiment import RunConfig, source_config

    config = source_config(RunConfig(profile=profile.name, num_target_images=1))  # the one every target run needs
    with_imagenet = params.get("TRY_IMAGENET") and profile.width == 1.0
    return [config, config.replace(strategy="imagenet")] if with_imagenet else [config]


def _transfer_study_runs(params: Mapping[str, Any], profile: Profile) -> list["RunConfig"]:
    """Notebook 05: the strategy grid, then the freeze depths for the nearest country at the most images."""
    from tlutils.experiment import RunConfig, expand_grid

    countries = list(params["COUNTRIES"] or profile.countries)
    sizes = list(params["NUM_TARGET_IMAGES"] or profile.target_sizes)
    seeds = list(params["SEEDS"] or profile.seeds)
    base = RunConfig(profile=profile.name, num_target_images=sizes[0],
                     l2_regularization=params["L2_REGULARIZATION"])
    grid = {"country": countries, "strategy": params["STRATEGIES"], "num_target_images": sizes, "seed": seeds}
    depth = {"country": countries[:1], "strategy": params["FREEZE_DEPTHS"], "num_target_images": sizes[-1:],
             "seed": seeds}
    return expand_grid(grid, base) + expand_grid(depth, base)


def _diagnosis_runs(params: Mapping[str, Any], profile: Profile) -> list["RunConfig"]:
    """Notebook 06: its variants, scratch with the other preprocessing, fine-tuning at higher rates."""
    from tlutils.experiment import RunConfig, expand_grid, resolve

    seeds = list(params["SEEDS"] or profile.seeds)
    base = RunConfig(profile=profile.name, num_target_images=params["NUM_TARGET_IMAGES"] or max(profile.target_sizes),
                     l2_regularization=params["L2_REGULARIZATION"])
    base = expand_grid({"country": [params["COUNTRY"] or profile.countries[0]]}, base)[0]
    other = "tf" if resolve(base).preprocessing == "caffe" else "caffe"
    rates = [profile.learning_rate * factor for factor in params["LEARNING_RATE_FACTORS"]]
    return (expand_grid({"strategy": params["VARIANTS"], "seed": seeds}, base)
            + [base.replace(strategy="scratch", preprocessing=other)]
            + expand_grid({"learning_rate": rates}, base.replace(strategy="finetune", seed=seeds[0])))


def _explorer_runs(params: Mapping[str, Any], profile: Profile) -> list["RunConfig"]:
    """Notebook 07: one click on Train with the controls where they start."""
    from tlutils.widgets import TransferExplorer

    explorer = TransferExplorer(profile=profile.name, country=params["COUNTRY"],
                                l2_regularization=params["L2_REGULARIZATION"], train_epochs=params["TRAIN_EPOCHS"])
    return [explorer.config()]


#: Notebook name -> the runs it trains, from its parameters and the profile. Notebooks not named here
#: train nothing (01-03 build models and show data only); a notebook that starts training must be added.
NOTEBOOK_RUNS: dict[str, Callable[[Mapping[str, Any], Profile], list["RunConfig"]]] = {
    "04_source_detector": _source_detector_runs,
    "05_transfer_study": _transfer_study_runs,
    "06_loss_curve_diagnosis": _diagnosis_runs,
    "07_interactive_explorer": _explorer_runs,
}


def course_plan(profile: str, notebooks: Sequence[str | os.PathLike] | None = None,
                results_dir: str | os.PathLike | None = None) -> Plan:
    """The runs of the course's ``notebooks`` (default: all of ``notebooks/``) on ``profile``.

    Runs that ``results_dir/results.csv`` (default ``runs/<profile>/``) holds are marked ``done``.
    """
    from tlutils.course import course_notebooks

    settings = get_profile(profile)
    paths = [Path(path) for path in notebooks] if notebooks is not None else course_notebooks()
    configs = {path.stem: NOTEBOOK_RUNS[path.stem](notebook_parameters(path), settings)
               for path in paths if path.stem in NOTEBOOK_RUNS}
    done = finished_keys(results_dir if results_dir is not None else runs_dir(profile))
    return plan_of(profile, configs, done)


def sweep_plan(configs: Sequence["RunConfig"], results_dir: str | os.PathLike | None = None) -> Plan:
    """The runs of a sweep (:func:`tlutils.experiment.expand_grid`'s configurations)."""
    if not configs:
        raise ValueError("a sweep plan needs at least one configuration")
    profile = configs[0].profile
    done = finished_keys(results_dir if results_dir is not None else runs_dir(profile))
    return plan_of(profile, {"sweep": configs}, done)


# --- how long -------------------------------------------------------------------------------------------

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


def measure_step(profile: str, steps: int = TIMED_STEPS) -> StepTiming:
    """Build the profile's detector under its precision and time ``steps`` training steps on one fixed
    batch after a warm-up step, as the runner trains (:class:`tlutils.training.SSDTrainer`, Adam, the
    runner's ``jit_compile``). Costs about a build and ``steps + 1`` steps."""
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
    precision = resolve_precision(settings.mixed_precision, device=device)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        started = time.perf_counter()
        detector = build_ssd_vgg16(len(SIGN_CLASSES), settings.input_size, settings.width)
        images, targets, _ = training_batch(generate_anchors(anchor_config_for(detector)), settings.batch_size,
                                            settings.input_size, len(SIGN_CLASSES))
        trainer = SSDTrainer(detector)
        trainer.compile(optimizer=keras.optimizers.Adam(settings.learning_rate), jit_compile=_jit_compile())
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
    return StepTiming(settings.batch_size, step, max(setup - step, 0.0), precision, where)


def estimate_seconds(plan: Plan, timing: StepTiming) -> float:
    """Seconds to train the plan's remaining runs at ``timing``'s rate: every image of a step costs
    ``step_seconds / batch_size``, an evaluated image :data:`FORWARD_SHARE` of that, and every phase of
    a run ``setup_seconds`` (building and compiling)."""
    per_image = timing.step_seconds / timing.batch_size
    return sum(run.train_images * per_image + run.eval_images * per_image * FORWARD_SHARE
               + run.phases * timing.setup_seconds for run in plan.to_train)


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


# --- what is printed ------------------------------------------------------------------------------------

def format_minutes(seconds: float) -> str:
    """``"42 s"``, ``"12.5 min"`` or ``"3.2 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def format_plan(plan: Plan) -> str:
    """The plan as a table: per notebook and in total, runs to train, steps, training and evaluation images."""
    if not plan.to_train:
        return (f"plan ({plan.profile} profile): nothing to train"
                + (f" ({len(plan.runs)} runs read back from results.csv)" if plan.runs else ""))
    rows = [(name, totals) for name, totals in plan.by_notebook().items()] + [("total", plan.totals())]
    width = max(len(name) for name, _ in rows)
    lines = [f"plan ({plan.profile} profile): {len(plan.to_train)} runs to train"
             + (f", {len(plan.runs) - len(plan.to_train)} read back from results.csv" if plan.to_train != plan.runs
                else ""),
             f"  {'':{width}s}  {'runs':>5s}  {'steps':>9s}  {'train images':>13s}  {'eval images':>12s}"]
    for name, totals in rows:
        lines.append(f"  {name:{width}s}  {totals['runs']:5d}  {totals['steps']:9,d}  "
                     f"{totals['train_images']:13,d}  {totals['eval_images']:12,d}")
    return "\n".join(lines)


def format_estimate(plan: Plan, timing: StepTiming) -> str:
    """One line: the estimated time on this machine and what it rests on."""
    return (f"estimated time here: {format_minutes(estimate_seconds(plan, timing))} of training and evaluation "
            f"({TIMED_STEPS} timed steps of {timing.batch_size} images: {timing.step_seconds:.3g} s each, "
            f"{timing.precision} on {timing.device}; {timing.setup_seconds:.0f} s building and compiling per phase)")


def announce(plan: Plan, estimate: bool = True, print_: Callable[[str], Any] = print) -> None:
    """Print the plan and, with ``estimate`` (and runs left to train), the estimate from timed steps."""
    print_(format_plan(plan))
    if estimate and plan.to_train:
        print_(format_estimate(plan, measure_step(plan.profile)))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tlutils.plan --profile P [--only NN ...] [--no-estimate] [--flops]``: print the course's
    plan and estimate (``tlutils course`` runs this in a child process); ``--flops`` adds the estimate
    on :data:`T4` from counted FLOPs."""
    from tlutils.course import course_notebooks
    from tlutils.profiles import PROFILES

    parser = argparse.ArgumentParser(prog="python -m tlutils.plan", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    parser.add_argument("--only", nargs="*", default=None, help="notebook numbers, e.g. 04 05")
    parser.add_argument("--no-estimate", action="store_true", help="skip timing training steps here")
    parser.add_argument("--flops", action="store_true", help=f"also estimate on a {T4.name} from counted FLOPs")
    args = parser.parse_args(argv)
    plan = course_plan(args.profile, course_notebooks(args.only))
    announce(plan, estimate=not args.no_estimate)
    if args.flops:
        everything = replace(plan, runs=tuple(replace(run, done=False) for run in plan.runs))
        flops = profile_training_flops(args.profile)
        print(f"on a {T4.name}, {flops / 1e9:.0f} GFLOP per training image: "
              f"{format_minutes(flops_seconds(everything, flops))} for all {len(everything.runs)} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
