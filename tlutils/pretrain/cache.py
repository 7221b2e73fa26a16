"""Pretrained files, made once per configuration: ``runs/<profile>/pretrained/<kind>_<key>.keras``.

Beside each ``.keras`` file lies ``<kind>_<key>.json``: the resolved configuration, the classes (for
the detector, model class -> name, what ``load_detector_start`` maps from), the training history and
the time it took. The JSON is written last, so a file without its JSON (a killed process) is made
again; a lock per file makes two processes asking at once train it once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tlutils.pretrain.config import PretrainConfig, ResolvedPretrain


def pretrained(
    config: PretrainConfig | ResolvedPretrain,
    results_dir: str | os.PathLike | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    verbose: int = 1,
) -> Path:
    """The pretrained file of ``config``: trained now unless a complete one exists.

    Args:
        config: the pretrained start.
        results_dir: holds ``pretrained/``; default ``runs/<profile>/`` of the project.
        data_dir: where the sign world is rendered (``<data_dir>/synth/``); default the project's ``data/``.
        verbose: 0 silent, 1 Keras progress bars and a line at the end, 2 one Keras line per epoch.

    Returns:
        The path of the ``.keras`` file (its summary: :func:`pretrained_summary`).
    """
    from tlutils.experiment.atomic import locked, write_text  # inside: the runner imports this module
    from tlutils.paths import runs_dir

    resolved = config.resolve() if isinstance(config, PretrainConfig) else config
    folder = (Path(results_dir) if results_dir is not None else runs_dir(resolved.profile)) / "pretrained"
    path = folder / resolved.file_name
    if _is_complete(path):
        return path
    with locked(folder / f"{path.stem}.lock", f"the pretrained {resolved.kind} {path.name}", verbose):
        if _is_complete(path):  # another process made it meanwhile
            return path
        _remove_stale_side_files(path)
        summary = _train(resolved, path, data_dir, verbose)
        record = {"config": resolved.to_dict(), **summary}
        write_text(summary_path(path), json.dumps(record, indent=1, sort_keys=True) + "\n")
    if verbose:
        print(f"pretrained {resolved.kind} {path} ({summary['seconds']:.0f} s of training)")
    return path


def summary_path(path: str | os.PathLike) -> Path:
    """The JSON beside a pretrained ``.keras`` file."""
    return Path(path).with_suffix(".json")


def pretrained_summary(path: str | os.PathLike) -> dict[str, Any]:
    """What :func:`pretrained` recorded about the file at ``path`` (its JSON).

    Raises:
        ValueError: no JSON beside ``path`` (not made by :func:`pretrained`, or not finished).
    """
    summary = summary_path(path)
    if not summary.is_file():
        raise ValueError(f"{summary}: no summary beside {Path(path).name}; make the file with "
                         "tlutils.pretrain.pretrained (or `tlutils pretrain`)")
    return json.loads(summary.read_text())


def pretrained_classes(path: str | os.PathLike) -> dict[int, str]:
    """The classes of a pretrained file: model class -> name (detector), logit -> name (classifier)."""
    return {int(key): name for key, name in pretrained_summary(path)["classes"].items()}


def _remove_stale_side_files(path: Path) -> None:
    """Side files of ``path`` and its JSON left by a killed writer (other files' writers keep theirs)."""
    from tlutils.experiment.atomic import SIDE_PREFIX

    for name in (path.name, summary_path(path).name):
        for side in path.parent.glob(f"{SIDE_PREFIX}*.{name}"):
            side.unlink(missing_ok=True)


def _is_complete(path: Path) -> bool:
    return path.is_file() and summary_path(path).is_file()


def _train(resolved: ResolvedPretrain, path: Path, data_dir: str | os.PathLike | None, verbose: int) -> dict[str, Any]:
    """Load the data, train under the resolved dtype policy, save to ``path``; the summary."""
    import keras

    from tlutils.pretrain.crops import sign_crops
    from tlutils.pretrain.data import load_pretrain_data
    from tlutils.pretrain.training import pretrain_detector, train_classifier

    train_set, val_set = (load_pretrain_data(resolved.data, split, num_images, resolved.input_size, data_dir,
                                             seed=resolved.seed)
                          for split, num_images in (("train", resolved.num_images), ("val", resolved.num_val_images)))
    common = dict(width=resolved.width, epochs=resolved.epochs, batch_size=resolved.batch_size,
                  learning_rate=resolved.learning_rate, seed=resolved.seed, preprocessing=resolved.preprocessing,
                  l2_regularization=resolved.l2_regularization, verbose=verbose)
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(resolved.mixed_precision)
    try:
        if resolved.kind == "classifier":
            val_crops = None if val_set is None else sign_crops(val_set, resolved.crop_size)
            return train_classifier(sign_crops(train_set, resolved.crop_size), path, val_crops=val_crops, **common)
        return pretrain_detector(train_set, path, input_size=resolved.input_size, val_set=val_set, **common)
    finally:
        keras.config.set_dtype_policy(policy)
