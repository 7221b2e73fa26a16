"""Run the notebook course with papermill: ``make course`` = ``tlutils course --profile cpu``.

Every notebook in ``notebooks/`` named ``NN_*.ipynb`` runs in order with the papermill parameter
``PROFILE``; executed copies go to ``runs/<profile>/notebooks/``, the results table to
``runs/<profile>/results.csv`` (written by the notebooks through ``tlutils.experiment``) and figures to
``figures/``. With ``check=True`` the executed notebooks are then validated with nbval in lax mode:
nbval re-runs each one and compares the outputs of cells marked ``# NBVAL_CHECK_OUTPUT``, so a
deterministic cell that changes its output fails the check.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tlutils.paths import project_root, runs_dir


def course_notebooks(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks in order; ``only`` keeps those whose number prefix is listed."""
    notebooks = sorted((project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if only:
        notebooks = [nb for nb in notebooks if nb.name[:2] in {str(n).zfill(2) for n in only}]
    if not notebooks:
        raise ValueError(f"no notebooks match {only!r} in {project_root() / 'notebooks'}")
    return notebooks


def execute_notebook(notebook: Path, output: Path, profile: str) -> float:
    """Execute one notebook with papermill (``PROFILE=profile``); returns seconds taken."""
    import papermill

    start = time.perf_counter()
    papermill.execute_notebook(
        str(notebook),
        str(output),
        parameters={"PROFILE": profile},
        cwd=str(notebook.parent),
        progress_bar=False,
        kernel_name="python3",
    )
    return time.perf_counter() - start


def nbval_command(executed: list[Path], workers: int = 1) -> list[str]:
    """The pytest command that validates ``executed`` notebooks with nbval (lax mode).

    With ``workers > 1`` pytest-xdist spreads the notebooks over that many processes, a whole notebook
    per worker (``--dist loadfile``: its cells share one kernel, in order). That is safe here because
    the check re-runs notebooks whose experiments the course run has just finished: the runner reads
    them back from ``results.csv`` instead of training again.

    Raises:
        ValueError: ``workers`` < 1.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax"]
    if workers > 1:
        command += ["-n", str(workers), "--dist", "loadfile"]
    return command + [str(path) for path in executed]


def check_notebooks(executed: list[Path], workers: int = 1) -> int:
    """Validate executed notebooks with nbval (:func:`nbval_command`); returns pytest's exit code."""
    return subprocess.call(nbval_command(executed, workers), cwd=str(project_root()))


def run_course(profile: str = "cpu", check: bool = False, only: list[str] | None = None,
               check_workers: int = 1) -> int:
    """Run the course on ``profile``; print where everything went. Returns a process exit code.

    With ``check`` the executed notebooks are then validated by nbval in ``check_workers`` processes.
    """
    out_dir = runs_dir(profile) / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    executed, total = [], 0.0
    for notebook in course_notebooks(only):
        output = out_dir / notebook.name
        seconds = execute_notebook(notebook, output, profile)
        total += seconds
        executed.append(output)
        print(f"[course:{profile}] {notebook.name:40s} {seconds:7.1f} s", flush=True)
    root = project_root()
    print(f"[course:{profile}] all {len(executed)} notebooks ran in {total / 60:.1f} min")
    print(f"  executed notebooks: {out_dir.relative_to(root)}/")
    print(f"  results table:      {(runs_dir(profile) / 'results.csv').relative_to(root)}")
    print(f"  figures:            figures/")
    return check_notebooks(executed, check_workers) if check else 0
