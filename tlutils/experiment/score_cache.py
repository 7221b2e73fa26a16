"""Scores of a detector remembered by what they depend on, so an evaluation is never paid twice.

Every transfer run of one target starts from the same transferred weights (the source detector, its
classes mapped, fresh rows drawn from the seed), so its zero-shot evaluation -- tiled inference over
whole real frames, about a minute on a CPU, or a pass over the sign world's val images, a few seconds
-- is the same number for head_only, freeze:* and finetune and for every training-set size (the L2
term of the val loss is not: it counts the run's trainable kernels, and is added after reading).
The key is a hash of everything the number depends on: the weights
(bit for bit), the detector's preprocessing and precision policy, the Keras backend, and the
evaluation's own inputs (frames, boxes, label map, tiling). Anything else -- which layers are frozen,
the run's name -- does not enter, because it cannot change the number.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from tlutils.experiment.atomic import write_text

if TYPE_CHECKING:
    import keras

#: Bump when the evaluation code changes what it returns for the same inputs.
CACHE_VERSION = 2  # 2: per-class scores (``tlutils.evaluation.PER_CLASS_KEYS``) are kept too
#: Folder of the remembered scores, inside a results folder.
CACHE_FOLDER = "scores"


def weights_digest(model: "keras.Model") -> str:
    """SHA-256 of the model's weights in order (values, shapes and dtypes), its preprocessing and dtype
    policy. A training wrapper (``tlutils.training.SSDTrainer``) is hashed by the detector it holds."""
    import keras

    from tlutils.model.classifier import preprocessing_of

    model = getattr(model, "detector", model)
    digest = hashlib.sha256()
    for variable in model.weights:
        values = np.asarray(keras.ops.convert_to_numpy(variable))
        digest.update(f"{values.dtype}{values.shape}".encode())
        digest.update(np.ascontiguousarray(values).tobytes())
    digest.update(f"{preprocessing_of(model)}|{model.dtype_policy.name}|{keras.backend.backend()}".encode())
    return digest.hexdigest()


def cached_scores(folder: Path | None, model: "keras.Model", context: str,
                  compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``compute()``'s scores, or the ones stored for the same weights and ``context``.

    Args:
        folder: where scores are kept (``<results>/scores``); ``None`` computes without remembering.
        model: the detector being scored; its weights enter the key.
        context: a digest of the evaluation's inputs (see :func:`context_digest`).
        compute: the evaluation; returns a JSON-able dict (floats, nested dicts of floats).
    """
    if folder is None:
        return compute()
    key = hashlib.sha256(f"{CACHE_VERSION}|{context}|{weights_digest(model)}".encode()).hexdigest()[:24]
    path = folder / f"{key}.json"
    if path.is_file():
        try:
            return _decode(json.loads(path.read_text()))
        except (OSError, ValueError):  # torn by a crash: recompute and overwrite
            pass
    scores = compute()
    folder.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(_encode(scores)))  # keys in their order: per-class scores go by model class
    return scores


def context_digest(*parts: Any) -> str:
    """A digest of evaluation inputs: arrays by their bytes, everything else by ``repr``."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(f"{part.dtype}{part.shape}".encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(repr(part).encode())
        digest.update(b"|")
    return digest.hexdigest()


def _encode(value: Any) -> Any:
    """JSON has no NaN: store it as ``None``."""
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _decode(item) for key, item in value.items()}
    return float("nan") if value is None else value
