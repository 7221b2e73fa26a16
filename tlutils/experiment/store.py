"""Where finished runs live: ``results.csv`` (written whole, under a lock), each run's classes and per-class AP.

The table is rewritten atomically (:mod:`tlutils.experiment.atomic`) under ``results_dir/.results.lock``,
so a crash mid-write leaves the previous table and two processes never lose each other's rows. A run
is trained under its own lock (:func:`run_lock`): a second process asking for the same run waits, then
reads the rows the first one stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager, Mapping

from tlutils.experiment.atomic import locked, remove_stale, write_file, write_text
from tlutils.experiment.results import PER_CLASS_FILE, RESULT_COLUMNS, load_results, per_class_table, read_per_class

if TYPE_CHECKING:
    import pandas as pd

TABLE = "results.csv"
TABLE_LOCK = ".results.lock"


def stored_rows(results_dir: Path, key: str) -> "pd.DataFrame":
    """The rows of run ``key`` in ``results_dir/results.csv`` (empty unless the run finished)."""
    table = load_results(results_dir)
    return table[table["run_key"] == key].reset_index(drop=True)


def run_lock(results_dir: Path, run_name: str, verbose: int = 0) -> ContextManager[None]:
    """The lock held while run ``run_name`` trains (``runs/<run name>.lock``)."""
    return locked(results_dir / "runs" / f"{run_name}.lock", f"run {run_name}", verbose)


def store_rows(results_dir: Path, key: str, rows: list[dict[str, Any]]) -> None:
    """Put a finished run's rows into ``results.csv``, replacing any earlier rows of run ``key``.

    The new table is written beside the old one and renamed over it, under the table's lock.
    """
    import pandas as pd

    path = results_dir / TABLE
    with locked(results_dir / TABLE_LOCK, str(path)):
        remove_stale(results_dir)
        table = load_results(results_dir)
        table = table[table["run_key"] != key]
        frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
        combined = frame if table.empty else pd.concat([table, frame], ignore_index=True)
        write_file(path, lambda side: _write_table(side, combined))


def _write_table(path: Path, table: "pd.DataFrame") -> None:
    table.to_csv(path, index=False)


def write_classes(run_dir: Path, class_names: Mapping[int, str]) -> None:
    """``classes.json``: model class -> name, so later runs can map their classes onto this detector's."""
    write_text(run_dir / "classes.json", json.dumps({str(k): v for k, v in sorted(class_names.items())}, indent=1))


def read_classes(run_dir: Path) -> dict[int, str]:
    """The class table :func:`write_classes` stored in ``run_dir``.

    Raises:
        ValueError: the folder holds no ``classes.json``.
    """
    path = run_dir / "classes.json"
    if not path.is_file():
        raise ValueError(f"{path} is missing: the source run folder must hold its class table")
    return {int(k): v for k, v in json.loads(path.read_text()).items()}


def write_per_class(run_dir: Path, scores: Mapping[str, Any], epoch: int) -> None:
    """Record the per-class scores of the evaluation after ``epoch`` (0: zero-shot) in ``per_class.csv``.

    Rows of earlier epochs stay; rows of this epoch and later ones (left by an attempt that stopped
    and is now resumed or restarted) are replaced. The file is rewritten atomically.
    """
    import pandas as pd

    earlier = read_per_class(run_dir)
    earlier = earlier[earlier["epoch"] < epoch]
    table = per_class_table(dict(scores), epoch)
    table = table if earlier.empty else pd.concat([earlier, table], ignore_index=True)
    write_text(run_dir / PER_CLASS_FILE, table.to_csv(index=False))
