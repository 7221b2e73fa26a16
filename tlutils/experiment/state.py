"""A run's checkpoint state after each epoch: weights, optimizer and rows, so a stopped run resumes.

Resuming after epoch ``e`` gives the same numbers as an uninterrupted run: the weights, the
optimizer's variables and the rows so far are saved; batches and augmentation depend only on the seed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    import keras


def _write_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp_path)``, then rename it over ``path``: a reader never sees half a file."""
    tmp = path.with_name(".tmp." + path.name)  # keeps the suffix (Keras wants ".weights.h5")
    write(tmp)
    os.replace(tmp, path)


def save_state(state_dir: Path, epochs_done: int, detector: "keras.Model", optimizer: Any,
               rows: list[dict[str, Any]]) -> None:
    """Save what resuming after epoch ``epochs_done`` needs; ``epoch.json`` last (the commit)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    _write_atomically(state_dir / "detector.weights.h5", lambda p: detector.save_weights(p))
    store: dict[str, np.ndarray] = {}
    optimizer.save_own_variables(store)
    _write_atomically(state_dir / "optimizer.npz", lambda p: np.savez(p, **{k: np.asarray(v) for k, v in store.items()}))
    _write_atomically(state_dir / "rows.json", lambda p: p.write_text(json.dumps(rows, default=_json_number)))
    _write_atomically(state_dir / "epoch.json", lambda p: p.write_text(json.dumps({"epochs_done": epochs_done})))


def _json_number(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def load_state(state_dir: Path) -> tuple[int, list[dict[str, Any]]]:
    """``(epochs done, rows so far)`` of a run's saved state; ``(0, [])`` when there is none."""
    marker = state_dir / "epoch.json"
    if not marker.is_file():
        return 0, []
    epochs_done = int(json.loads(marker.read_text())["epochs_done"])
    rows = json.loads((state_dir / "rows.json").read_text())[:epochs_done]
    return epochs_done, rows


def restore_weights(state_dir: Path, detector: "keras.Model") -> None:
    """Load the saved detector weights into ``detector``."""
    detector.load_weights(state_dir / "detector.weights.h5")


def restore_optimizer(state_dir: Path, optimizer: Any) -> None:
    """Load the saved optimizer variables into a built ``optimizer``."""
    with np.load(state_dir / "optimizer.npz") as stored:
        optimizer.load_own_variables({key: stored[key] for key in stored.files})
