"""The runner: one configuration in, one tidy row per epoch out (see ``tlutils.experiment``)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from tlutils.experiment.atomic import remove_stale, write_file, write_text
from tlutils.experiment.config import SGD_MOMENTUM, STEP_DECAY_FACTOR, STEP_DECAY_FRACTION, RunConfig, source_config
from tlutils.experiment.resolved import ResolvedRun, resolve
from tlutils.experiment.held_out import held_out_sets
from tlutils.experiment.results import CONFIG_COLUMNS, HELD_OUT_COLUMNS, SIZE_COLUMNS
from tlutils.experiment.run_data import build_data, label_maps, training_pool
from tlutils.experiment.score_cache import CACHE_FOLDER
from tlutils.experiment.shipped import SHIPPED_MARKER, install_shipped, is_installed
from tlutils.experiment.state import load_state, restore_optimizer, restore_weights, save_state
from tlutils.experiment.store import read_classes, run_lock, store_rows, stored_rows, write_classes, write_per_class
from tlutils.transfer import Phase, epochs_of

if TYPE_CHECKING:
    import keras
    import pandas as pd

#: The detector of a run's best epoch by val mAP@0.5, kept beside ``detector.keras`` (the last epoch's)
#: when the run stops early (``RunConfig.early_stopping``).
BEST_CHECKPOINT = "best.keras"

_TRAIN_LOGS = ("loss", "localization", "confidence", "regularization", "num_positives")


def run(
    config: RunConfig,
    results_dir: str | os.PathLike | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    verbose: int = 1,
    callbacks: Sequence[Any] = (),
    tensorboard: bool = True,
    shipped: bool = True,
) -> "pd.DataFrame":
    """Run one experiment (or return its stored rows) and return its rows of the results table.

    A run tlutils ships finished (``tlutils.experiment.shipped``: the cpu profile's source detector)
    is installed instead of trained, unless ``shipped`` is False: then it trains here, replacing an
    installed copy.

    Args:
        config: the experiment.
        results_dir: where ``results.csv`` and ``runs/`` live; default ``runs/<profile>/`` of the project.
        data_dir: where the sign world is rendered (``<data_dir>/synth/``); default the project's ``data/``.
        verbose: 0 silent, 1 Keras progress bars and a line per epoch, 2 one Keras line per epoch.
        callbacks: extra Keras callbacks for ``fit`` (after the runner's own, which saves the state).
        tensorboard: write TensorBoard logs to ``runs/<run name>/logs`` (needs TensorFlow).
        shipped: install a shipped run of this key instead of training it (a target run's source run
            is always installed where one is shipped).

    Returns:
        A ``pandas.DataFrame`` with ``RESULT_COLUMNS``, one row per epoch: ``epoch`` 0 the start,
        evaluated before training, then 1..N (a shipped source run installed from before epoch 0 was
        recorded has no epoch-0 row).

    Raises:
        ValueError: an invalid configuration (see ``RunConfig``, ``resolve``).
    """
    from tlutils.paths import runs_dir

    resolved = resolve(config)
    results_dir = Path(results_dir) if results_dir is not None else runs_dir(config.profile)
    results_dir.mkdir(parents=True, exist_ok=True)
    stored = stored_rows(results_dir, resolved.key)
    if not stored.empty and not shipped and is_installed(results_dir / "runs" / resolved.name):
        stored = stored.iloc[:0]  # trained here below, replacing the installed copy
    if not stored.empty:
        if verbose:
            print(f"[{resolved.key}] {resolved.name}: finished before, {len(stored)} epochs read from results.csv")
        return stored

    source_path = None
    if resolved.uses_source:
        source_rows = run(source_config(config), results_dir, data_dir=data_dir, verbose=verbose,
                          tensorboard=tensorboard)
        source_path = results_dir / str(source_rows["checkpoint"].iloc[-1])

    with run_lock(results_dir, resolved.name, verbose):
        stored = stored_rows(results_dir, resolved.key)  # another process may have finished it meanwhile
        if not stored.empty and (shipped or not is_installed(results_dir / "runs" / resolved.name)):
            return stored
        if not (shipped and install_shipped(results_dir, resolved, verbose)):
            if not stored.empty:  # an installed copy: its rows go first, so a killed retrain resumes, not reads back
                store_rows(results_dir, resolved.key, [])
            rows = _train(resolved, results_dir, data_dir, source_path, verbose, callbacks, tensorboard)
            store_rows(results_dir, resolved.key, rows)
    return stored_rows(results_dir, resolved.key)  # as read back: the same types as a skipped run's


def _train(resolved: ResolvedRun, results_dir: Path, data_dir: str | os.PathLike | None, source_path: Path | None,
           verbose: int, callbacks: Sequence[Any], tensorboard: bool) -> list[dict[str, Any]]:
    """Train (or resume) the run under the resolved dtype policy; returns all its rows."""
    import keras

    run_dir = results_dir / "runs" / resolved.name
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale(run_dir)
    (run_dir / SHIPPED_MARKER).unlink(missing_ok=True)  # trained here now, no longer an installed copy
    write_text(run_dir / "config.json", json.dumps(resolved.to_dict(), indent=1, sort_keys=True) + "\n")
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(resolved.mixed_precision)
    try:
        training = Training(resolved, run_dir, results_dir, Path(data_dir) if data_dir is not None else None,
                            source_path)
        if training.epochs_done and verbose:
            print(f"[{resolved.key}] resuming {resolved.name} after epoch {training.epochs_done} of "
                  f"{len(training.per_epoch)}")
        extra = _tensorboard(run_dir / "logs", verbose) if tensorboard else []
        return training.fit(verbose, [*extra, *callbacks])
    finally:
        keras.config.set_dtype_policy(policy)


class Training:
    """One run's training: the detector, its data and plan, and what happens at the end of an epoch."""

    def __init__(self, resolved: ResolvedRun, run_dir: Path, results_dir: Path, data_dir: Path | None,
                 source_path: Path | None) -> None:
        import keras

        from tlutils.training import SSDTrainer
        from tlutils.data.classes import match_classes
        from tlutils.transfer import load_detector, prepare

        self.resolved, self.results_dir, self.run_dir = resolved, results_dir, run_dir
        self.state_dir = run_dir / "state"
        self.checkpoint = run_dir / "detector.keras"
        source_detector = load_detector(source_path) if source_path is not None else None
        pool = training_pool(resolved, data_dir)
        _, class_names, _ = label_maps(pool)
        write_classes(run_dir, class_names)
        class_map = None
        if source_path is not None:  # by canonical name (synonyms of BTSD, GTSDB, the sign world)
            class_map = match_classes(read_classes(source_path.parent), pool, "name")[1]
        pretrained_path = self._pretrained(run_dir.parent.parent, data_dir)  # before seeding: it trains
        if resolved.strategy == "detector":
            from tlutils.pretrain import pretrained_class_map

            class_map = pretrained_class_map(pretrained_path, class_names)
        keras.utils.set_random_seed(resolved.seed)  # the initialization, then everything else, from the seed
        self.detector, self.plan = prepare(
            resolved.strategy, source_detector, len(class_names), class_map, pretrained_path=pretrained_path,
            input_size=resolved.input_size, width=resolved.width,
            total_steps=resolved.total_steps, steps_per_epoch=resolved.steps_per_epoch,
            learning_rate=resolved.learning_rate, backbone_weights=resolved.backbone_weights,
            preprocessing=resolved.preprocessing, l2_regularization=resolved.l2_regularization,
        )
        self.data = build_data(resolved, self.detector, pool, data_dir)
        self.data.score_folder = results_dir / CACHE_FOLDER  # zero-shot scores are shared by runs
        self.held_out = held_out_sets(resolved, class_names, data_dir)
        self.trainer = SSDTrainer(self.detector)
        self.cache_seconds = 0.0  # seconds spent caching features, added to the next epoch's
        self.stopped = False  # early stopping ended the run
        self.per_epoch = epochs_of(self.plan, resolved.steps_per_epoch)
        self.epochs_done, self.rows, self.state_folder = load_state(self.state_dir)
        if self.state_folder is not None:
            restore_weights(self.state_folder, self.detector)

    def _pretrained(self, results_dir: Path, data_dir: Path | None) -> Path | None:
        """The pretrained file of a ``classifier`` / ``detector`` start (made once, cached), else ``None``."""
        from tlutils.experiment.resolved import pretrain_config

        config = pretrain_config(self.resolved.config)
        if config is None:
            return None
        from tlutils.pretrain import pretrained

        return pretrained(config, results_dir, data_dir=data_dir, verbose=0)

    def fit(self, verbose: int, callbacks: list[Any]) -> list[dict[str, Any]]:
        """Train the phases that are not done yet (one compile each); returns all rows of the run."""
        from tlutils.transfer import apply_phase

        steps_per_epoch = self.resolved.steps_per_epoch
        if self.rows and self.rows[-1].get("stopped_early"):  # stopped, then killed before it was stored
            return self.rows
        if self.epochs_done == 0:
            self.rows = [self.zero_shot_row()]
        first_epoch = 0
        for phase in self.plan:
            last_epoch = first_epoch + phase.steps // steps_per_epoch
            if last_epoch > self.epochs_done and not self.stopped:
                start = max(first_epoch, self.epochs_done)
                apply_phase(self.detector, phase)
                train = self._phase_batches()
                self.trainer.compile(optimizer=make_optimizer(self.resolved.optimizer, phase, self.resolved.schedule),
                                     jit_compile=_jit_compile())
                # Built here, not inside the first traced step: TensorFlow traces a step that creates
                # variables twice.
                self.trainer.optimizer.build(self.trainer.trainable_variables)
                if start > first_epoch:  # resuming inside this phase: its optimizer state continues
                    restore_optimizer(self.state_folder, self.trainer.optimizer)
                self.trainer.fit(
                    train, epochs=last_epoch, initial_epoch=start, shuffle=False,
                    verbose=verbose if verbose in (0, 2) else 1,
                    callbacks=[_epoch_callback(steps=train.steps, finish_epoch=self.finish_epoch), *callbacks],
                )
            first_epoch = last_epoch
        return self.rows

    def _phase_batches(self) -> Any:
        """The training batches of the phase just applied. With ``cache_features`` the frozen part runs
        once over the training images here and ``self.trainer`` becomes a trainer of the trainable part,
        on the stored features (``tlutils.feature_cache``); the seconds this takes are added to the
        phase's first epoch."""
        if not self.resolved.cache_features:
            return self.data.train
        from tlutils.experiment.run_data import step_dataset
        from tlutils.feature_cache import FeatureBatches, cache_features, split_frozen
        from tlutils.training import SSDTrainer

        started = time.perf_counter()
        frozen, trainable = split_frozen(self.detector)
        sequence = self.data.steps.sequence
        features, targets = cache_features(frozen, sequence)
        batches = FeatureBatches(features, targets, batch_size=sequence.batch_size, seed=self.resolved.seed)
        self.trainer = SSDTrainer(trainable)
        self.cache_seconds = time.perf_counter() - started
        return step_dataset(batches, self.resolved.steps_per_epoch)

    def finish_epoch(self, epoch: int, logs: dict[str, Any], train_seconds: float) -> None:
        """Evaluate, add the val numbers to ``logs`` (for TensorBoard), record the row (and after the last
        epoch the per-class table), save the state."""
        from tlutils.evaluation import VAL_LOSS_TERMS

        last = epoch == len(self.per_epoch) - 1
        train_seconds, self.cache_seconds = train_seconds + self.cache_seconds, 0.0
        started = time.perf_counter()
        # the detector itself where the trainer trains a part of it on cached features
        evaluated = self.detector if self.resolved.cache_features else self.trainer
        scores = self.data.evaluate(evaluated, final=last)
        best_epoch, since_best = self._best_epoch(scores["map50"])
        if best_epoch == epoch + 1 and self.resolved.early_stopping:
            write_file(self.run_dir / BEST_CHECKPOINT, self.detector.save)
        stop = not last and bool(self.resolved.early_stopping) and since_best >= self.resolved.early_stopping
        if stop:  # this epoch ends the run: score it as a last epoch is scored
            scores = self.data.evaluate(evaluated, final=True)
            self.trainer.stop_training, self.stopped, last = True, True, True
        if last:
            scores.update(self._held_out_scores(evaluated))
        eval_seconds = time.perf_counter() - started
        logs.update({f"val_{name}": scores[name] for name in VAL_LOSS_TERMS}, val_map50=scores["map50"])
        self.rows.append(self._row(epoch, logs, scores, train_seconds, eval_seconds)
                         | {"best_epoch": best_epoch, "stopped_early": stop})
        if last:
            write_file(self.checkpoint, self.detector.save)
            write_per_class(self.run_dir, scores, epoch + 1)
        self.state_folder = save_state(self.state_dir, epoch + 1, self.detector, self.trainer.optimizer, self.rows)

    def _best_epoch(self, map50: float) -> tuple[float, int]:
        """``(best epoch so far, evaluations since it)`` by val mAP@0.5 including this epoch's ``map50``
        (the first of equal ones; NaN and 0 when no epoch has an mAP yet)."""
        history = [row["val_map50"] for row in self.rows if row["epoch"] >= 1] + [map50]
        if all(math.isnan(value) for value in history):
            return float("nan"), 0
        best = int(np.nanargmax(history))
        return float(best + 1), len(history) - 1 - best

    def _held_out_scores(self, model: Any) -> dict[str, float]:
        """``test_map50`` / ``source_map50`` where the run asks for them (``tlutils.experiment.held_out``)."""
        return {held_out.column: held_out.map50(model, self.data.anchors) for held_out in self.held_out}

    def zero_shot_row(self) -> dict[str, Any]:
        """Epoch 0 of a run: the detector as it starts, evaluated before any training.

        For a source-initialized target strategy that is the source detector on the target ("adapt or
        do nothing?"); for scratch, a random initialization; for a ``classifier`` / ``detector`` source
        start, the pretrained weights as loaded (how large their L2 term is before training). Runs that start
        from the same weights share the evaluation (``RunData.evaluate(shared=True)``, ``score_cache``).
        ``regularization`` is the starting L2 term;
        the training-loss columns are NaN (nothing was trained). Its per-class table is recorded as epoch 0.
        """
        from tlutils.model import regularization_loss

        started = time.perf_counter()
        scores = self.data.evaluate(self.detector, final=True, shared=True)  # the same for every run from these weights
        scores.update(self._held_out_scores(self.detector))
        logs = {name: float("nan") for name in _TRAIN_LOGS}
        logs["regularization"] = float(regularization_loss(self.detector))
        logs.update({f"val_{name}": scores[name] for name in ("loss", "localization", "confidence")})
        row = self._row(-1, logs, scores, 0.0, time.perf_counter() - started)
        write_per_class(self.run_dir, scores, 0)
        return row | {"images_per_s": float("nan")}

    def _row(self, epoch: int, logs: Mapping[str, Any], scores: Mapping[str, Any], train_seconds: float,
             eval_seconds: float) -> dict[str, Any]:
        from tlutils.anchors import FIRST_LAYER_SCALE
        from tlutils.evaluation import MAP_METRIC, VAL_LOSS_TERMS

        phase, resolved = self.per_epoch[max(epoch, 0)], self.resolved
        return {
            **{name: getattr(resolved, name) for name in CONFIG_COLUMNS},
            "smallest_scale": FIRST_LAYER_SCALE if resolved.smallest_scale is None else resolved.smallest_scale,
            "run_key": resolved.key,
            "epoch": epoch + 1, "step": (epoch + 1) * resolved.steps_per_epoch, "phase": phase.name,
            "phase_learning_rate": phase.learning_rate,
            **{name: float(logs[name]) for name in (*_TRAIN_LOGS, *(f"val_{n}" for n in VAL_LOSS_TERMS))},
            "val_map50": scores["map50"], "map_metric": MAP_METRIC, "coco_map": scores.get("coco_map", float("nan")),
            **{column: scores.get(column, float("nan")) for column in (*SIZE_COLUMNS, *HELD_OUT_COLUMNS)},
            "best_epoch": float("nan"), "stopped_early": False,
            "epoch_seconds": train_seconds, "eval_seconds": eval_seconds,
            "images_per_s": resolved.steps_per_epoch * resolved.batch_size / max(train_seconds, 1e-9),
            "trainable_params": _num_params(self.detector.trainable_weights),
            "source_run_key": resolved.source_run_key,
            "checkpoint": self.checkpoint.relative_to(self.results_dir).as_posix(),
        }


def make_optimizer(name: str, phase: Phase, schedule: str) -> Any:
    """The Keras optimizer of one phase: ``"adam"`` or ``"sgd"`` (momentum 0.9) under ``schedule``.

    ``schedule``: ``"constant"``, ``"step"`` (the rate drops ``STEP_DECAY_FACTOR``-fold for the last
    ``STEP_DECAY_FRACTION`` of the phase) or ``"cosine"`` (cosine decay to 0 over the phase).
    """
    import keras

    learning_rate: Any = phase.learning_rate
    if schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(phase.learning_rate, decay_steps=phase.steps)
    elif schedule == "step":
        boundary = max(1, round(phase.steps * (1.0 - STEP_DECAY_FRACTION)))
        learning_rate = keras.optimizers.schedules.PiecewiseConstantDecay(
            [boundary], [phase.learning_rate, phase.learning_rate * STEP_DECAY_FACTOR]
        )
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=SGD_MOMENTUM)
    return keras.optimizers.Adam(learning_rate)


def _jit_compile() -> bool | str:
    """XLA for JAX (``"auto"``), not for TensorFlow: on a CPU XLA made the training step slower
    (docs/performance.md)."""
    import keras

    return False if keras.backend.backend() == "tensorflow" else "auto"


def _num_params(weights: Iterable[Any]) -> int:
    return int(sum(math.prod(int(d) for d in w.shape) for w in weights))


def _epoch_callback(**kwargs: Any) -> Any:
    """The runner's ``keras.callbacks.Callback``: ``steps`` (a ``StepBatches``) learns the epoch
    when it begins; ``finish_epoch(epoch, logs, train_seconds)`` runs when it ends."""
    import keras

    class EpochEnd(keras.callbacks.Callback):
        """Sets the epoch of the batches, then evaluates, records a row and saves the state."""

        def __init__(self) -> None:
            super().__init__()
            self.__dict__.update(kwargs)

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.steps.epoch = epoch
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.finish_epoch(epoch, logs if logs is not None else {}, time.perf_counter() - self.started)

    return EpochEnd()


def _tensorboard(log_dir: Path, verbose: int) -> list[Any]:
    """``[keras.callbacks.TensorBoard]`` when TensorFlow and TensorBoard import, else ``[]`` with a note."""
    import keras

    missing = [name for name in ("tensorflow", "tensorboard") if importlib.util.find_spec(name) is None]
    if missing:
        if verbose:
            print(f"note: {' and '.join(missing)} not installed, so no TensorBoard logs "
                  "(results.csv has every number)")
        return []
    return [keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False, profile_batch=0)]
