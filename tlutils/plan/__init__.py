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

Modules: :mod:`~tlutils.plan.runs` what a plan is and the plan of configurations,
:mod:`~tlutils.plan.notebooks` the runs the notebooks train, :mod:`~tlutils.plan.estimate` how long,
:mod:`~tlutils.plan.report` what is printed; :func:`main` is ``python -m tlutils.plan``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace

from tlutils.plan.estimate import (FORWARD_SHARE, T4, TIMED_STEPS, StepTiming, Throughput, estimate_seconds,
                                   flops_seconds, measure_plan_steps, measure_step, profile_training_flops)
from tlutils.plan.notebooks import NOTEBOOK_RUNS, course_plan, notebook_parameters
from tlutils.plan.report import announce, format_estimate, format_minutes, format_plan
from tlutils.plan.runs import Plan, PlannedRun, finished_keys, plan_of, planned_run, sweep_plan
from tlutils.experiment.sweeps import SCOPES
from tlutils.profiles import get_profile

__all__ = [
    "FORWARD_SHARE", "NOTEBOOK_RUNS", "Plan", "PlannedRun", "StepTiming", "T4", "TIMED_STEPS", "Throughput",
    "announce", "course_plan", "estimate_seconds", "finished_keys", "flops_seconds", "format_estimate",
    "format_minutes", "format_plan", "get_profile", "main", "measure_plan_steps", "measure_step",
    "notebook_parameters", "plan_of", "planned_run", "profile_training_flops", "sweep_plan",
]


#: ``--scope`` of ``tlutils course`` and ``tlutils plan``.
SCOPE_HELP = ("notebook 05's SCOPE, default the profile's: 'course' (ci and cpu: 4 strategies, the farther "
              "countries at the most images only) or 'full' (gpu and thesis: two_stage too, every country "
              "at every size)")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tlutils.plan --profile P [--only NN ...] [--no-estimate] [--flops] [--scope S]``: print the course's
    plan and estimate (``tlutils course`` runs this in a child process); ``--flops`` adds the estimate
    on :data:`T4` from counted FLOPs."""
    from tlutils.course import course_notebooks
    from tlutils.profiles import PROFILES

    parser = argparse.ArgumentParser(prog="python -m tlutils.plan", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    parser.add_argument("--only", nargs="*", default=None, help="notebook numbers, e.g. 04 05")
    parser.add_argument("--no-estimate", action="store_true", help="skip timing training steps here")
    parser.add_argument("--flops", action="store_true", help=f"also estimate on a {T4.name} from counted FLOPs")
    parser.add_argument("--scope", choices=SCOPES, default=None, help=SCOPE_HELP)
    args = parser.parse_args(argv)
    overrides = {"SCOPE": args.scope} if args.scope else None
    plan = course_plan(args.profile, course_notebooks(args.only), overrides=overrides)
    announce(plan, estimate=not args.no_estimate)
    if args.flops:
        everything = replace(plan, runs=tuple(replace(run, done=False) for run in plan.runs))
        flops = profile_training_flops(args.profile)
        print(f"on a {T4.name}, {flops / 1e9:.0f} GFLOP per training image: "
              f"{format_minutes(flops_seconds(everything, flops))} for all {len(everything.runs)} runs")
    return 0
