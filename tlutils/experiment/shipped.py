"""Finished runs shipped with tlutils, so that a reader does not retrain what is the same for everyone.

The cpu profile's Belgian source detector is the same run for every reader with the same code: the
profile trains it in float32 on every machine (``Profile.source_precision``), so its run key does not
depend on the CPU. ``tlutils pretrain source --profile cpu`` trains it (about 13 minutes on a 2-core
CPU) and exports it here; :func:`tlutils.experiment.run` then *installs* it into a results folder
that lacks the run instead of training it (``run(..., shipped=False)`` trains it).

A shipped run is one folder ``tlutils/shipped/<run key>/``:

- ``manifest.json``: the resolved configuration (whose hash is the key), the weights file's SHA-256,
  the machine and time it trained on, and val mAP@0.5 of the float32 weights and of the shipped ones;
- ``rows.csv``: its rows of the results table, as trained;
- ``classes.json``: model class -> name;
- ``model.json``: the detector's Keras architecture; ``weights.npz``: its weights in float16 (half
  the size of float32; the detector computes in float32 after loading, the rounding moves val mAP by
  what the manifest records).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tlutils.bench.report import machine_info
from tlutils.experiment.atomic import write_file, write_text
from tlutils.experiment.resolved import ResolvedRun, resolve
from tlutils.experiment.store import read_classes, store_rows, stored_rows, write_classes

if TYPE_CHECKING:
    import keras
    import pandas as pd

    from tlutils.experiment.config import RunConfig

#: Where shipped runs live (package data of tlutils).
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "shipped"
#: How shipped weights are stored: float16 halves the file (the detector computes in float32).
SHIPPED_DTYPE = "float16"
FILES = ("manifest.json", "rows.csv", "classes.json", "model.json", "weights.npz")
#: Written into an installed run's folder (a copy of its manifest): the run was installed, not trained here.
SHIPPED_MARKER = "shipped.json"


def machine_description(mixed_precision: str) -> str:
    """This machine in one line for a manifest: CPU, its bf16 units, cores, the dtype policy, Keras and backend."""
    info = machine_info()
    units = [flag for flag in ("avx512_bf16", "amx_bf16") if info[flag]] or ["no bf16 units"]
    return (f"{info['cpu']} ({', '.join(units)}), {info['cores']} cores, {mixed_precision}, "
            f"keras {info['keras']} ({info['backend']})")


def shipped_folder(key: str, shipped_dir: str | Path | None = None) -> Path | None:
    """The folder of the shipped run ``key`` in ``shipped_dir`` (default :data:`SHIPPED_DIR`), or
    ``None`` when there is no such run."""
    folder = Path(shipped_dir or SHIPPED_DIR) / key
    return folder if (folder / "manifest.json").is_file() else None


def shipped_keys(shipped_dir: str | Path | None = None) -> set[str]:
    """The keys of the runs in ``shipped_dir`` (default :data:`SHIPPED_DIR`)."""
    folder = Path(shipped_dir or SHIPPED_DIR)
    return {manifest.parent.name for manifest in folder.glob("*/manifest.json")}


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """``manifest.json`` of a shipped run."""
    return json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_shipped_detector(folder: str | Path) -> "keras.Model":
    """The shipped detector, float32 weights from the float16 file, after checking the file's hash.

    Raises:
        ValueError: the weights file is not the one the manifest names (corrupt or replaced).
    """
    folder = Path(folder)
    if sha256(folder / "weights.npz") != read_manifest(folder)["weights_sha256"]:
        raise ValueError(f"{folder / 'weights.npz'}: SHA-256 differs from manifest.json's; the file is "
                         "corrupt or was replaced (re-export it with tlutils pretrain source)")
    return _detector_from(folder)


def _detector_from(folder: Path) -> "keras.Model":
    """The detector of ``model.json`` with the weights of ``weights.npz`` (as float32)."""
    import keras

    import tlutils.model  # noqa: F401  (registers the detector's custom layers)

    detector = keras.models.model_from_json((folder / "model.json").read_text(encoding="utf-8"))
    with np.load(folder / "weights.npz") as stored:
        detector.set_weights([stored[f"w{index}"].astype("float32") for index in range(len(stored.files))])
    return detector


def _save_weights(path: Path, detector: "keras.Model") -> None:
    """The detector's weights in :data:`SHIPPED_DTYPE`, compressed (a file object: numpy adds no suffix)."""
    arrays = {f"w{index}": np.asarray(weight, dtype=SHIPPED_DTYPE) for index, weight in
              enumerate(detector.get_weights())}
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def val_map50(detector: "keras.Model", resolved: ResolvedRun, class_names: dict[int, str],
              data_dir: str | Path | None = None) -> float:
    """mAP@0.5 of ``detector`` (model class -> name: ``class_names``) on the run's val split, rendered or
    loaded as the run does it."""
    from tlutils.anchors import generate_anchors
    from tlutils.experiment.datasets import is_synth, load_split
    from tlutils.experiment.held_out import HeldOutSet, by_name
    from tlutils.model import anchor_config_for

    frames = load_split(resolved.data, "val", resolved.classes, resolved.num_val_images, resolved.input_size,
                        Path(data_dir) if data_dir is not None else None)
    held_out = HeldOutSet("val_map50", frames, by_name(frames.classes, class_names), is_synth(resolved.data),
                          resolved.input_size, resolved.batch_size)
    anchors = generate_anchors(anchor_config_for(detector, resolved.smallest_scale))
    return held_out.map50(detector, np.asarray(anchors, dtype=np.float32))


def is_installed(run_dir: str | Path) -> bool:
    """Whether the run in ``run_dir`` was installed from a shipped run (not trained there)."""
    return (Path(run_dir) / SHIPPED_MARKER).is_file()


def install_shipped(results_dir: str | Path, resolved: ResolvedRun, verbose: int = 0,
                    shipped_dir: str | Path | None = None) -> bool:
    """Put the shipped run ``resolved.key`` into ``results_dir`` as if it had trained there.

    Writes ``runs/<name>/`` (``config.json``, ``classes.json``, ``detector.keras``) and the run's rows
    of ``results.csv``, and marks the folder as installed (:data:`SHIPPED_MARKER`). Returns ``False`` (and writes nothing) when tlutils ships no run of that key.
    """
    folder = shipped_folder(resolved.key, shipped_dir)
    if folder is None:
        return False
    import pandas as pd

    results_dir = Path(results_dir)
    run_dir = results_dir / "runs" / resolved.name
    run_dir.mkdir(parents=True, exist_ok=True)
    detector = load_shipped_detector(folder)
    write_text(run_dir / "config.json", json.dumps(resolved.to_dict(), indent=1, sort_keys=True) + "\n")
    write_classes(run_dir, read_classes(folder))
    write_file(run_dir / "detector.keras", detector.save)
    rows = pd.read_csv(folder / "rows.csv")
    rows["checkpoint"] = (run_dir / "detector.keras").relative_to(results_dir).as_posix()
    manifest = read_manifest(folder)
    write_text(run_dir / SHIPPED_MARKER, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    store_rows(results_dir, resolved.key, rows.to_dict("records"))
    if verbose:
        print(f"[{resolved.key}] {resolved.name}: installed the shipped run (trained on {manifest['machine']}, "
              f"{manifest['training_minutes']:.1f} min; val mAP@0.5 {manifest['val_map50_shipped']:.3f} with "
              f"its {SHIPPED_DTYPE} weights); run(..., shipped=False) trains it here instead")
    return True


def export_shipped(config: "RunConfig", results_dir: str | Path, shipped_dir: str | Path | None = None,
                   data_dir: str | Path | None = None) -> Path:
    """Export the finished run ``config`` of ``results_dir`` as a shipped run; returns its folder.

    Scores the float32 weights and the float16-rounded ones on the run's val split and records both.

    Raises:
        ValueError: the run has not finished in ``results_dir``, is itself an installed copy, or its val
            mAP cannot be reproduced from its own checkpoint (then the export would not be the run it
            claims to be).
    """
    from tlutils.transfer import load_detector

    resolved = resolve(config)
    results_dir = Path(results_dir)
    rows = stored_rows(results_dir, resolved.key)
    if rows.empty:
        raise ValueError(f"{resolved.name} has not finished in {results_dir}; run it first")
    checkpoint = results_dir / str(rows["checkpoint"].iloc[-1])
    run_dir = checkpoint.parent
    if is_installed(run_dir):
        raise ValueError(f"{resolved.name} in {results_dir} is an installed shipped copy, not a run trained there: "
                         "train it first (run(..., shipped=False), or tlutils pretrain source)")
    detector = load_detector(checkpoint)
    class_names = read_classes(run_dir)
    recorded, float32_map = float(rows["val_map50"].iloc[-1]), val_map50(detector, resolved, class_names, data_dir)
    if abs(float32_map - recorded) > 1e-6:
        raise ValueError(f"{resolved.name}: its checkpoint scores val mAP@0.5 {float32_map:.6f}, its last row "
                         f"says {recorded:.6f}")
    folder = Path(shipped_dir or SHIPPED_DIR) / resolved.key
    folder.mkdir(parents=True, exist_ok=True)
    write_classes(folder, class_names)
    write_text(folder / "model.json", detector.to_json())
    write_file(folder / "weights.npz", lambda path: _save_weights(path, detector))
    rows.drop(columns=["checkpoint"]).to_csv(folder / "rows.csv", index=False)
    manifest = {
        "key": resolved.key, "name": resolved.name, "config": resolved.to_dict(),
        "weights_sha256": sha256(folder / "weights.npz"), "weights_dtype": SHIPPED_DTYPE,
        "machine": machine_description(resolved.mixed_precision), "training_minutes": float(rows["epoch_seconds"].sum()) / 60,
        "val_map50_float32": float32_map, "val_map50_shipped": val_map50(_detector_from(folder), resolved, class_names, data_dir),
        "command": f"tlutils pretrain source --profile {resolved.profile}",
    }
    write_text(folder / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return folder
