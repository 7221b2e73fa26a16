"""Run the notebook course with papermill: ``make course`` = ``tlutils course --profile cpu``.

Every notebook in ``notebooks/`` named ``NN_*.ipynb`` runs in order with the papermill parameter
``PROFILE``; executed copies go to ``runs/<profile>/notebooks/``, the results table to
``runs/<profile>/results.csv`` (written by the notebooks through ``tlutils.experiment``) and figures to
``figures/``, TensorBoard logs to ``runs/<profile>/runs/<run name>/logs``. Before the first notebook
it prints the plan (:mod:`tlutils.plan`); while they run, what they print and one progress bar over the
whole course. With ``check=True`` the executed notebooks are then validated with nbval in lax mode:
nbval re-runs each one and compares the outputs of cells marked ``# NBVAL_CHECK_OUTPUT``, so a
deterministic cell that changes its output fails the check.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tlutils.paths import project_root, runs_dir


def notebooks_dir() -> Path:
    """``notebooks/`` of the project root, else of the checkout tlutils is imported from: a
    ``$TLUTILS_ROOT`` folder holds runs/, data/ and figures/, and the course still runs the checkout's
    notebooks (``TLUTILS_ROOT=~/tlutils-work tlutils course`` from a read-only checkout)."""
    own = project_root() / "notebooks"
    return own if own.is_dir() else Path(__file__).resolve().parents[1] / "notebooks"


def course_notebooks(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks of :func:`notebooks_dir` in order; ``only`` keeps those whose number
    prefix is listed."""
    folder = notebooks_dir()
    notebooks = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if only:
        notebooks = [nb for nb in notebooks if nb.name[:2] in {str(n).zfill(2) for n in only}]
    if not notebooks:
        raise ValueError(f"no notebooks match {only!r} in {folder}")
    return notebooks


#: Environment of the notebooks' kernels (and of the plan's child): TensorFlow's C++ INFO and WARNING
#: lines off, set before anything imports TensorFlow (the setup cell sets it too, for JupyterLab and Colab).
KERNEL_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}
#: ipykernel copies what C++ libraries write to the kernel's stderr into the notebook, and TensorFlow
#: prints a oneDNN INFO line at import whatever TF_CPP_MIN_LOG_LEVEL says: without the copy, such lines
#: go to the terminal of ``tlutils course``, not into the executed notebooks.
KERNEL_ARGUMENTS = ["--IPKernelApp.capture_fd_output=False"]


class StreamedLines:
    """A file for papermill's ``stdout_file``: whole lines of a notebook's output, each printed with a
    prefix through ``write`` (``tqdm.write`` keeps them above the progress bar). A line's carriage
    returns (a progress bar redrawn in place) keep only its last state."""

    def __init__(self, write: Callable[[str], Any], prefix: str = "") -> None:
        self.write_line, self.prefix, self.pending = write, prefix, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.write_line(self.prefix + line.rstrip("\r").rsplit("\r", 1)[-1])
        return len(text)

    def flush(self) -> None:
        """Lines are printed as soon as they end; a partial line waits for its end (see :meth:`close`)."""

    def close(self) -> None:
        if self.pending:
            self.write("\n")


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


def declared(parameters: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The ``overrides`` a notebook with these ``parameters`` declares: the course passes a parameter
    such as ``SCOPE`` only to the notebooks that have it (papermill would add it to the others too)."""
    return {name: value for name, value in overrides.items() if name in parameters}


def code_cells(notebook: Path) -> int:
    """The code cells papermill executes in ``notebook``: its own and the injected parameters cell."""
    import nbformat

    cells = nbformat.read(notebook, as_version=4).cells
    return sum(cell.cell_type == "code" and bool(cell.source.strip()) for cell in cells) + 1


def execute_notebook(notebook: Path, output: Path, profile: str, stream: StreamedLines | None = None,
                     on_cell_executed: Callable[..., Any] | None = None,
                     overrides: Mapping[str, Any] | None = None) -> float:
    """Execute one notebook with papermill (``PROFILE=profile``); returns seconds taken.

    ``stream`` receives what the notebook prints, as it prints it; ``on_cell_executed(cell=, cell_index=,
    execute_reply=)`` is called after each code cell (nbclient's hook). ``overrides``: more parameters,
    passed where the notebook declares them (e.g. ``{"SCOPE": "full"}``).
    """
    import papermill

    start = time.perf_counter()
    hooks = {"on_cell_executed": on_cell_executed} if on_cell_executed is not None else {}
    papermill.execute_notebook(
        str(notebook),
        str(output),
        parameters={"PROFILE": profile, **(declared(notebook_parameters(notebook), overrides) if overrides else {})},
        cwd=str(notebook.parent),
        progress_bar=False,
        kernel_name="python3",
        stdout_file=stream,
        stderr_file=stream,
        extra_arguments=KERNEL_ARGUMENTS,
        **hooks,
    )
    if stream is not None:
        stream.close()
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


def print_plan(profile: str, only: list[str] | None = None, estimate: bool = True, scope: str | None = None) -> int:
    """Print the course's plan (and with ``estimate`` the time it takes here) from a child process
    (``python -m tlutils.plan``), so that this process never holds the accelerator the kernels need.
    Returns the child's exit code; a failed plan prints why and does not stop the course."""
    command = [sys.executable, "-m", "tlutils.plan", "--profile", profile]
    command += (["--only", *only] if only else []) + ([] if estimate else ["--no-estimate"])
    command += ["--scope", scope] if scope else []
    done = subprocess.run(command, cwd=str(project_root()), env={**os.environ, **KERNEL_ENV},
                          stdout=None, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        tail = "\n".join(done.stderr.strip().splitlines()[-10:])
        print(f"[course:{profile}] no plan (exit {done.returncode}); the course runs anyway:\n{tail}", flush=True)
    return done.returncode


def run_course(profile: str = "cpu", check: bool = False, only: list[str] | None = None,
               check_workers: int = 1, estimate: bool = True, scope: str | None = None) -> int:
    """Run the course on ``profile``; print where everything went. Returns a process exit code.

    ``scope``: notebook 05's ``SCOPE`` (``tlutils.experiment.sweeps.SCOPES``; ``None``: the profile's,
    ``Profile.scope``). First the plan (runs, steps, images; with ``estimate`` the time it takes here, from a few timed
    steps). Then each notebook in turn, with what it prints streamed here line by line (prefixed by its
    number) and one progress bar over the code cells of the whole course (on a terminal). With
    ``check`` the executed notebooks are then validated by nbval in ``check_workers`` processes.
    """
    from tqdm.auto import tqdm

    from tlutils.experiment.sweeps import SCOPES  # here: importing tlutils.course stays light

    os.environ.update(KERNEL_ENV)  # the kernels inherit it
    notebooks = course_notebooks(only)
    out_dir = runs_dir(profile) / "notebooks"  # first: it creates a new $TLUTILS_ROOT, the plan's folder
    out_dir.mkdir(parents=True, exist_ok=True)
    if scope is not None and scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    overrides = {"SCOPE": scope} if scope else {}
    print_plan(profile, only, estimate, scope)
    executed, total = [], 0.0
    with tqdm(total=sum(code_cells(nb) for nb in notebooks), unit="cell", desc=f"course {profile}",
              file=sys.stdout, disable=None, dynamic_ncols=True) as bar:
        say = lambda line: bar.write(line, file=sys.stdout)  # noqa: E731 - printed above the bar
        for number, notebook in enumerate(notebooks, start=1):
            say(f"[course:{profile}] {number}/{len(notebooks)} {notebook.stem} ...")
            bar.set_postfix_str(notebook.stem)
            output = out_dir / notebook.name
            seconds = execute_notebook(notebook, output, profile, StreamedLines(say, f"{notebook.name[:2]}| "),
                                       on_cell_executed=lambda **_: bar.update(1), overrides=overrides)
            total += seconds
            executed.append(output)
            say(f"[course:{profile}] {notebook.name:40s} {seconds:7.1f} s")
    root = project_root()
    print(f"[course:{profile}] all {len(executed)} notebooks ran in {total / 60:.1f} min")
    print(f"  executed notebooks: {out_dir.relative_to(root)}/")
    print(f"  results table:      {(runs_dir(profile) / 'results.csv').relative_to(root)}")
    print(f"  figures:            figures/")
    print(f"  TensorBoard logs:   {(runs_dir(profile) / 'runs').relative_to(root)}/<run name>/logs "
          f"(.venv/bin/tensorboard --logdir {(runs_dir(profile) / 'runs').relative_to(root)})")
    return check_notebooks(executed, check_workers) if check else 0
