"""Where finished runs live: the rows of ``results.csv``, and the class table of each run's detector."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from tlutils.experiment.results import RESULT_COLUMNS, load_results

if TYPE_CHECKING:
    import pandas as pd


def stored_rows(results_dir: Path, key: str) -> "pd.DataFrame":
    """The rows of run ``key`` in ``results_dir/results.csv`` (empty when it never finished)."""
    table = load_results(results_dir)
    return table[table["run_key"] == key].reset_index(drop=True)


def append_rows(results_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Add a finished run's rows to ``results_dir/results.csv``."""
    import pandas as pd

    path = results_dir / "results.csv"
    frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    frame.to_csv(path, mode="a", header=not path.is_file(), index=False)


def write_classes(run_dir: Path, class_names: Mapping[int, str]) -> None:
    """``classes.json``: model class -> name, so later runs can map their classes onto this detector's."""
    (run_dir / "classes.json").write_text(json.dumps({str(k): v for k, v in sorted(class_names.items())}, indent=1))


def read_classes(run_dir: Path) -> dict[int, str]:
    """The class table :func:`write_classes` stored in ``run_dir``.

    Raises:
        ValueError: the folder holds no ``classes.json``.
    """
    path = run_dir / "classes.json"
    if not path.is_file():
        raise ValueError(f"{path} is missing: the source run folder must hold its class table")
    return {int(k): v for k, v in json.loads(path.read_text()).items()}
