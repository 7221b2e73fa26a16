"""Measurement helpers: wall-clock and CPU seconds, steps timed in turns, peak memory.

Every rate comes twice: per wall-clock second, and per CPU second of this process (all threads), which
leaves out waiting for a core on a shared machine. Shared with ``scripts/bench_*.py``.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def median_seconds(function: Callable[[], Any], repeat: int, number: int = 1,
                   warmup: int = 1) -> tuple[float, float]:
    """Median wall-clock and CPU seconds per call over ``repeat`` runs of ``number`` calls each."""
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
        step; ``cores_busy``, CPU seconds per wall second of its steps (at most the number of cores).
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
