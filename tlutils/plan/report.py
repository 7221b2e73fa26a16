"""What is printed of a plan: a table of its runs, steps and images per notebook (:func:`format_plan`), the
estimate from timed steps (:func:`format_estimate`), and both together (:func:`announce`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Mapping

from tlutils.plan.estimate import TIMED_STEPS, StepTiming, estimate_seconds, measure_plan_steps
from tlutils.plan.runs import Plan


def format_minutes(seconds: float) -> str:
    """``"42 s"``, ``"12.5 min"`` or ``"3.2 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def format_plan(plan: Plan) -> str:
    """The plan as a table: per notebook and in total, runs to train, steps, training and evaluation images."""
    if not plan.to_train:
        return (f"plan ({plan.profile} profile): nothing to train"
                + (f" ({len(plan.runs)} runs read back from results.csv or installed as shipped)" if plan.runs else ""))
    rows = [(name, totals) for name, totals in plan.by_notebook().items()] + [("total", plan.totals())]
    width = max(len(name) for name, _ in rows)
    lines = [f"plan ({plan.profile} profile): {len(plan.to_train)} runs to train"
             + (f", {len(plan.runs) - len(plan.to_train)} read back from results.csv or installed as shipped"
                if plan.to_train != plan.runs else ""),
             f"  {'':{width}s}  {'runs':>5s}  {'steps':>9s}  {'train images':>13s}  {'eval images':>12s}"]
    for name, totals in rows:
        lines.append(f"  {name:{width}s}  {totals['runs']:5d}  {totals['steps']:9,d}  "
                     f"{totals['train_images']:13,d}  {totals['eval_images']:12,d}")
    return "\n".join(lines)


def format_estimate(plan: Plan, timing: StepTiming | Mapping[str, StepTiming]) -> str:
    """The estimated time on this machine and what it rests on (each precision's timing); with runs
    of more than one notebook, a second line per notebook (where a slow machine would cut first)."""
    timings = [timing] if isinstance(timing, StepTiming) else list(timing.values())
    rests_on = "; ".join(f"{t.step_seconds:.3g} s a step of {t.batch_size} images in {t.precision} on {t.device}, "
                         f"{t.setup_seconds:.0f} s building and compiling per phase" for t in timings)
    line = (f"estimated time here: {format_minutes(estimate_seconds(plan, timing))} of training and evaluation "
            f"({TIMED_STEPS} timed steps each: {rests_on})")
    names = list(plan.by_notebook())
    if len(names) < 2:
        return line
    parts = [f"{name} {format_minutes(estimate_seconds(notebook_part(plan, name), timing))}" for name in names]
    return line + "\n  per notebook: " + ", ".join(parts)


def notebook_part(plan: Plan, notebook: str) -> Plan:
    """The runs of ``plan`` that ``notebook`` asks for first."""
    return replace(plan, runs=tuple(run for run in plan.runs if run.notebook == notebook))


def announce(plan: Plan, estimate: bool = True, print_: Callable[[str], Any] = print) -> None:
    """Print the plan and, with ``estimate`` (and runs left to train), the estimate from timed steps."""
    print_(format_plan(plan))
    if estimate and plan.to_train:
        print_(format_estimate(plan, measure_plan_steps(plan)))
