"""What a plan is, and the plan of a list of configurations: :class:`PlannedRun` counts one run's steps,
training images and evaluations, :class:`Plan` adds them up and knows which runs ``results.csv`` already
holds; :func:`plan_of` and :func:`sweep_plan` list the runs of configurations the way the runner trains
them (a source-initialized run brings its source run first, a run asked for twice counts once).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TYPE_CHECKING

from tlutils.paths import runs_dir

if TYPE_CHECKING:
    from tlutils.experiment import RunConfig


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
        precision: the dtype policy it trains under ("" where unknown); the estimate times each one
            (the cpu profile's source runs train in float32, its target runs in bf16 where native).
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
    precision: str = ""

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
    evaluations = epochs + 1  # and epoch 0, before training
    return PlannedRun(notebook=notebook, label=label, key=resolved.key,
                      steps=resolved.total_steps, batch_size=resolved.batch_size,
                      evaluations=evaluations, val_images=_val_images_per_evaluation(resolved, evaluations),
                      phases=len(phases), done=resolved.key in set(done_keys), precision=resolved.mixed_precision)


def _val_images_per_evaluation(resolved: Any, evaluations: int) -> int:
    """Detector inputs one evaluation costs, on average over the run's evaluations.

    The sign world: its val images. Real data (``tlutils.experiment.run_data``): the fixed val crops at
    every evaluation, and at the first (epoch 0, before training) and the last the tiles of every
    whole val frame (``tlutils.tiling.tile_grid``, ~140 at 160 px on a 1360 x 800 GTSDB frame). The
    held-out scores a run asks for (``evaluate_test``, ``evaluate_source``: ``tlutils.experiment.held_out``)
    add one more set each at the first evaluation and at the last, priced like the val set.
    """
    from tlutils.experiment.datasets import is_synth, load_split

    held_out_passes = (resolved.evaluate_test + resolved.evaluate_source) * 2
    if is_synth(resolved.data):
        return round(resolved.num_val_images * (1 + held_out_passes / evaluations))
    from tlutils.experiment.run_data import REAL_BACKGROUND_CROPS, REAL_POSITIVE_CROPS, real_tile_options
    from tlutils.tiling import tile_grid

    frames = load_split(resolved.data, "val", resolved.classes, resolved.num_val_images, resolved.input_size, None)
    tiling = real_tile_options(resolved.input_size)
    tiles = sum(len(tile_grid(frame.width, frame.height, resolved.input_size, tiling["overlap"], tiling["scales"]))
                for frame in frames)
    crops = len(frames) * (REAL_POSITIVE_CROPS + REAL_BACKGROUND_CROPS)
    whole_frame_passes = 2 + held_out_passes
    return round(crops + whole_frame_passes * tiles / evaluations)


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


def finished_keys(results_dir: str | os.PathLike, shipped: bool = True) -> set[str]:
    """The run keys of the finished runs in ``results_dir/results.csv`` (none when there is no table),
    and with ``shipped`` of the runs tlutils ships (``tlutils.experiment.shipped``: the runner installs
    them in seconds)."""
    from tlutils.experiment import load_results
    from tlutils.experiment.shipped import shipped_keys

    return set(load_results(results_dir)["run_key"]) | (shipped_keys() if shipped else set())


def sweep_plan(configs: Sequence["RunConfig"], results_dir: str | os.PathLike | None = None) -> Plan:
    """The runs of a sweep (:func:`tlutils.experiment.expand_grid`'s configurations)."""
    if not configs:
        raise ValueError("a sweep plan needs at least one configuration")
    profile = configs[0].profile
    done = finished_keys(results_dir if results_dir is not None else runs_dir(profile))
    return plan_of(profile, {"sweep": configs}, done)

