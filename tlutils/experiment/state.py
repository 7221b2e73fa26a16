"""A run's checkpoint state after each epoch: weights, optimizer and rows, so a stopped run resumes.

Resuming after epoch ``e`` gives the same numbers as an uninterrupted run: the weights, the
optimizer's variables and the rows so far are saved; batches and augmentation depend only on the seed.

The state of epoch ``e`` is one folder, ``state/epoch-<e>/``, written under a side name and renamed
into place when complete (its ``manifest.json`` last, naming what it holds): a crash or a full disk
while saving leaves the previous epoch's state as the one to resume from, never half of a new one.
This is Keras' ``BackupAndRestore`` contract (resume from the last complete epoch) made atomic.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tlutils.experiment.atomic import commit_folder, remove_stale, side_path

if TYPE_CHECKING:
    import keras

WEIGHTS = "detector.weights.h5"
OPTIMIZER = "optimizer.npz"
ROWS = "rows.json"
MANIFEST = "manifest.json"
_EPOCH_FOLDER = re.compile(r"^epoch-(\d+)$")


def epoch_folder(state_dir: Path, epochs_done: int) -> Path:
    """The folder of the state after ``epochs_done`` epochs."""
    return state_dir / f"epoch-{epochs_done:04d}"


def save_state(state_dir: Path, epochs_done: int, detector: "keras.Model", optimizer: Any,
               rows: list[dict[str, Any]]) -> Path:
    """Save what resuming after epoch ``epochs_done`` needs as one folder; returns it.

    Older epochs' folders and side folders of killed writers are removed once the new one is in place.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    final = epoch_folder(state_dir, epochs_done)
    side = side_path(final)
    side.mkdir()
    try:
        _save_weights(side / WEIGHTS, detector)
        _save_optimizer(side / OPTIMIZER, optimizer)
        _save_rows(side / ROWS, rows)
        _save_manifest(side / MANIFEST, epochs_done)
        if final.is_dir():  # the same epoch saved before (a rerun after a crash): it is the same state
            shutil.rmtree(side)
        else:
            commit_folder(side, final)
    except BaseException:
        shutil.rmtree(side, ignore_errors=True)
        raise
    for older in _complete_folders(state_dir):
        if older != final:
            shutil.rmtree(older, ignore_errors=True)
    remove_stale(state_dir)
    return final


def _save_weights(path: Path, detector: "keras.Model") -> None:
    detector.save_weights(path)


def _save_optimizer(path: Path, optimizer: Any) -> None:
    store: dict[str, np.ndarray] = {}
    optimizer.save_own_variables(store)
    np.savez(path, **{key: np.asarray(value) for key, value in store.items()})


def _save_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps(rows, default=_json_number))


def _save_manifest(path: Path, epochs_done: int) -> None:
    """Written last: its presence says the folder is complete."""
    path.write_text(json.dumps({"epochs_done": epochs_done, "files": [WEIGHTS, OPTIMIZER, ROWS]}))


def _json_number(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _complete_folders(state_dir: Path) -> list[Path]:
    """The ``epoch-<e>`` folders of ``state_dir`` that hold a manifest, oldest first."""
    if not state_dir.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in state_dir.iterdir()
             if (match := _EPOCH_FOLDER.match(path.name)) and (path / MANIFEST).is_file()]
    return [path for _, path in sorted(found)]


def load_state(state_dir: Path) -> tuple[int, list[dict[str, Any]], Path | None]:
    """``(epochs done, rows so far, state folder)`` of the newest complete state; ``(0, [], None)`` if none."""
    folders = _complete_folders(state_dir)
    if not folders:
        return 0, [], None
    folder = folders[-1]
    epochs_done = int(json.loads((folder / MANIFEST).read_text())["epochs_done"])
    rows = [row for row in json.loads((folder / ROWS).read_text()) if row["epoch"] <= epochs_done]
    return epochs_done, rows, folder


def restore_weights(folder: Path, detector: "keras.Model") -> None:
    """Load the saved detector weights of a state folder into ``detector``."""
    detector.load_weights(folder / WEIGHTS)


def restore_optimizer(folder: Path, optimizer: Any) -> None:
    """Load the saved optimizer variables of a state folder into a built ``optimizer``."""
    with np.load(folder / OPTIMIZER) as stored:
        optimizer.load_own_variables({key: stored[key] for key in stored.files})
