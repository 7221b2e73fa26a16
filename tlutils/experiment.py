"""The experiment runner: one configuration in, one tidy row per epoch out; sweeps; result tables.

``run(RunConfig(...), results_dir)`` does everything one transfer experiment needs:

1. **Data** -- renders the sign world (``tlutils.data.synth.generate``) into ``data/synth/<...>/``, once
   per set of arguments: the training pool and the validation set of the run's country. A target run
   trains on a stratified, nested subset of ``num_target_images`` images of the pool
   (``tlutils.data.subset`` with the run's seed).
2. **Source detector** -- a target run with a source-initialized strategy first runs (or finds) the
   source-stage run of the same profile (``source_config``); its ``detector.keras`` is the source.
3. **Training** -- ``tlutils.transfer.prepare`` builds the detector and its plan of phases; each phase is
   compiled (a fresh optimizer; Keras must recompile after ``trainable`` changes) and trained with
   ``SSDTrainer.fit`` for its epochs of ``steps_per_epoch`` steps. Every strategy gets the same budget.
4. **Evaluation, every epoch** -- one pass of the detector over the country's validation set gives
   ``val_loss`` (and its parts) and ``val_map50``: Pascal VOC all-points mAP at IoU 0.5; COCO mAP
   (0.5:0.95) after the last epoch (:func:`evaluate_detector`).
5. **Results** -- one row per epoch (:data:`RESULT_COLUMNS`) appended to ``results_dir/results.csv``
   when the run finishes, keyed by ``run_key``: a stable hash of the resolved configuration.

Re-running a finished configuration returns its stored rows without training. A run that stops (a
Colab session disconnects) resumes from its last finished epoch and ends with the same numbers as an
uninterrupted run: after every epoch the detector's weights, the optimizer's state and the rows so far
are saved; all randomness comes from the seed (``keras.utils.set_random_seed``; batch order and
augmentation from ``(seed, pass over the data, image)``, see ``tlutils.data.pipeline``).

Layout of ``results_dir``::

    results.csv                      the tidy table of every finished run
    runs/<run name>/config.json      the resolved configuration (what run_key hashes)
    runs/<run name>/state/           the last finished epoch: weights, optimizer, rows so far
    runs/<run name>/detector.keras   the trained detector (``checkpoint`` column, relative path)
    runs/<run name>/logs/            TensorBoard logs (when TensorFlow is installed)
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import itertools
import json
import math
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from tlutils.profiles import Profile, get_profile, resolve_precision
from tlutils.transfer import Phase, epochs_of, parse_strategy

if TYPE_CHECKING:
    import keras
    import pandas as pd

    from tlutils.data.pipeline import DetectionSequence
    from tlutils.data.records import DetectionDataset

#: Bump when the runner's meaning of a configuration changes: old results then no longer match.
RUNNER_VERSION = 1
SOURCE_COUNTRY = "belgium"
STAGES = ("source", "target")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "step", "cosine")
#: "step" schedule: the rate drops STEP_DECAY_FACTOR-fold for the last STEP_DECAY_FRACTION of a phase
#: (the SSD paper's recipe: 1e-3, then 1e-4 for the last part).
STEP_DECAY_FRACTION = 0.2
STEP_DECAY_FACTOR = 0.1
PREPROCESSING_CHOICES = ("caffe", "tf", "none")  # tlutils.model.PREPROCESSING_MODES, without importing keras
#: Training augmentation (``tlutils.data.augment.Augmenter``): "ssd" = the paper's chain (photometric,
#: zoom-out up to 2x, IoU-constrained crop; no flip), "photometric" = colours only, "none" = resize only.
AUGMENTATIONS = ("ssd", "photometric", "none")
SGD_MOMENTUM = 0.9  # SSD paper, section 3: SGD with momentum 0.9
#: Seeds of the rendered sign world (scene i of a set depends on (world seed, country, i)); the run's
#: own seed picks the subset, the initialization, the batch order and the augmentation.
WORLD_SEEDS = {"train": 0, "val": 1}
MAP_IOU = 0.5
#: Strategies a sweep runs when none are named (``imagenet`` needs width 1.0 and a download).
DEFAULT_STRATEGIES = ("scratch", "freeze:block3", "finetune", "two_stage", "head_only")

#: Configuration columns besides stage, country, images, strategy and learning rate that make two runs
#: different experiments (not seeds of one); :func:`summarize` never averages across them.
COMPARABILITY_COLUMNS = ("profile", "optimizer", "schedule", "l2_regularization", "preprocessing", "total_steps")

#: Columns of the results table, in order; one row per run and epoch.
RESULT_COLUMNS: tuple[str, ...] = (
    "run_key", "stage", "country", "strategy", "freeze_point", "num_target_images", "seed", "profile",
    "optimizer", "learning_rate", "schedule", "l2_regularization", "preprocessing", "total_steps",
    "epoch", "step", "phase", "phase_learning_rate",
    "loss", "localization", "confidence", "regularization", "num_positives",
    "val_loss", "val_localization", "val_confidence", "val_map50", "coco_map",
    "epoch_seconds", "eval_seconds", "images_per_s", "trainable_params",
    "source_run_key", "checkpoint",
)
_CONFIG_COLUMNS = ("stage", "country", "num_target_images", "seed", "profile", "optimizer", "learning_rate",
                   "schedule", "l2_regularization", "preprocessing", "total_steps")
_TRAIN_LOGS = ("loss", "localization", "confidence", "regularization", "num_positives")
_VAL_LOGS = ("loss", "localization", "confidence")


@dataclass(frozen=True)
class RunConfig:
    """One experiment: which detector is trained on what, how, for how long.

    ``None`` fields take their value from the profile (see :func:`resolve`), so a configuration
    stays short: ``RunConfig(country="germany", strategy="finetune", num_target_images=50)``.

    Attributes:
        stage: ``"source"`` (train the source-country detector) or ``"target"`` (transfer it).
        country: the country trained and evaluated on (``tlutils.data.synth.COUNTRIES``).
        strategy: a transfer strategy (``tlutils.transfer``): ``"scratch"``, ``"imagenet"``,
            ``"freeze:block3"``, ``"finetune"``, ``"two_stage"``, ``"head_only"``. The source stage
            takes ``scratch`` or ``imagenet``.
        freeze_point: the point of ``strategy="freeze"`` (``"freeze:block3"`` sets it too).
        num_target_images: training images of a target run (required there); for the source stage
            ``None`` means the profile's ``num_source_images``.
        seed: seed of the initialization, the subset, the batch order and the augmentation.
        profile: run profile name (``tlutils.profiles``): sizes and budgets.
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9).
        learning_rate: base learning rate; ``None``: the profile's. ``finetune`` and ``two_stage``
            scale it (``tlutils.transfer.FINETUNE_LR_FACTOR``).
        schedule: ``"constant"``, ``"step"`` (a tenth of the rate for the last fifth of each phase,
            as in the SSD paper) or ``"cosine"`` (cosine decay to 0 over each phase).
        total_steps: training budget in optimizer steps, the same for every strategy; ``None``: the
            profile's (``source_epochs`` passes over the source data, or ``target_steps``).
        steps_per_epoch: steps between evaluations; ``None``: one pass over the source data, or
            ``target_steps / target_epochs``.
        l2_regularization: L2 factor on every conv kernel (logged apart as ``regularization``).
        preprocessing: input preprocessing of the detector (``"caffe"``, ``"tf"``, ``"none"``);
            ``None``: what the initial weights expect (:func:`default_preprocessing`).
        augmentation: training augmentation, one of :data:`AUGMENTATIONS`; ``None``: "photometric"
            for the source stage, "ssd" for target runs (see :func:`default_augmentation`).
        source_country, source_strategy, source_seed: the source run a target run starts from.
        backbone_weights: what ``imagenet`` loads: ``"imagenet"`` (download) or a VGG16 weights file.
    """

    stage: str = "target"
    country: str = "germany"
    strategy: str = "scratch"
    freeze_point: str | None = None
    num_target_images: int | None = None
    seed: int = 0
    profile: str = "ci"
    optimizer: str = "adam"
    learning_rate: float | None = None
    schedule: str = "step"
    total_steps: int | None = None
    steps_per_epoch: int | None = None
    l2_regularization: float = 0.0
    preprocessing: str | None = None
    augmentation: str | None = None
    source_country: str = SOURCE_COUNTRY
    source_strategy: str = "scratch"
    source_seed: int = 0
    backbone_weights: str | None = "imagenet"

    def __post_init__(self) -> None:
        text = self.strategy if self.freeze_point is None else f"{self.strategy}:{self.freeze_point}"
        if ":" in self.strategy and self.freeze_point is not None:
            raise ValueError(f"give the freeze point once: strategy={self.strategy!r}, freeze_point={self.freeze_point!r}")
        strategy = parse_strategy(text)
        object.__setattr__(self, "strategy", strategy.name)
        object.__setattr__(self, "freeze_point", strategy.freeze_point)
        _check_choice("stage", self.stage, STAGES)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        if self.augmentation is not None:
            _check_choice("augmentation", self.augmentation, AUGMENTATIONS)
        if self.preprocessing is not None:
            _check_choice("preprocessing", self.preprocessing, PREPROCESSING_CHOICES)
        get_profile(self.profile)
        if self.stage == "source" and strategy.uses_source:
            raise ValueError(f"the source stage trains from scratch or imagenet, not {str(strategy)!r}")
        if parse_strategy(self.source_strategy).uses_source:
            raise ValueError(f"source_strategy must be 'scratch' or 'imagenet', got {self.source_strategy!r}")
        if self.stage == "target" and self.num_target_images is None:
            raise ValueError("a target run needs num_target_images (its number of training images)")
        for name in ("num_target_images", "total_steps", "steps_per_epoch"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0 or None, got {self.learning_rate!r}")

    @property
    def strategy_label(self) -> str:
        """The strategy as one string, ``"freeze:block3"`` or ``"finetune"``."""
        return str(parse_strategy(self.strategy if self.freeze_point is None else f"freeze:{self.freeze_point}"))

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def _check_country(country: str) -> None:
    from tlutils.data.synth import COUNTRIES

    if country not in COUNTRIES:
        raise ValueError(f"unknown country {country!r}; choose one of {sorted(COUNTRIES)}")


def source_config(config: RunConfig) -> RunConfig:
    """The source-stage run a target run starts from (shared by all target runs of the profile)."""
    return RunConfig(
        stage="source", country=config.source_country, strategy=config.source_strategy,
        num_target_images=None, seed=config.source_seed, profile=config.profile,
        preprocessing=config.preprocessing, backbone_weights=config.backbone_weights,
    )


def default_preprocessing(config: RunConfig) -> str:
    """The preprocessing the run's initial weights want, when ``config.preprocessing`` is ``None``.

    ``"caffe"`` wherever VGG16's ImageNet weights are involved (the ``imagenet`` strategy, or a source
    run that used it): they were trained on BGR, mean-subtracted pixels. Otherwise ``"tf"`` (pixels
    scaled to [-1, 1]): a model trained from scratch learns any scaling, but unit-scale inputs start
    it sane -- caffe's 0-255 scale makes a He-initialized SSD's first logits hundreds large (first-epoch
    loss 28 vs 10). On the cpu profile (Belgian source, photometric augmentation, 900 steps) "tf"
    reached val mAP@0.5 0.62 where "caffe" reached 0.27. Source and target runs share the value, so
    transferred weights always see the preprocessing they were trained with.
    """
    uses_source = config.stage == "target" and parse_strategy(config.strategy_label).uses_source
    imagenet = config.strategy == "imagenet" or (uses_source and config.source_strategy == "imagenet")
    return "caffe" if imagenet else "tf"


def default_augmentation(config: RunConfig) -> str:
    """The training augmentation when ``config.augmentation`` is ``None``.

    The source stage renders as many scenes as it needs, so colour changes suffice and it converges
    fastest without zoom-out and crops (cpu profile, 300 steps: val mAP@0.5 0.10 vs 0.003 with the
    full chain). A few-shot target set needs the full SSD chain against over-fitting.
    """
    return "photometric" if config.stage == "source" else "ssd"


def resolve(config: RunConfig) -> dict[str, Any]:
    """Every knob of ``config`` with the profile's defaults filled in: what a run really does.

    Returns a JSON-able dict; :func:`run_key` hashes it, ``config.json`` stores it.

    Raises:
        ValueError: a budget that is not a whole number of epochs, or an unknown country.
    """
    _check_country(config.country)
    _check_country(config.source_country)
    profile = get_profile(config.profile)
    source = config.stage == "source"
    num_images = config.num_target_images or profile.num_source_images
    batch_size = min(profile.batch_size, num_images)
    if source:
        steps_per_epoch = config.steps_per_epoch or max(1, num_images // batch_size)
        total_steps = config.total_steps or profile.source_epochs * steps_per_epoch
    else:
        total_steps = config.total_steps or profile.target_steps
        steps_per_epoch = config.steps_per_epoch or max(1, total_steps // profile.target_epochs)
    if total_steps % steps_per_epoch:
        raise ValueError(
            f"total_steps ({total_steps}) must be a whole number of epochs of steps_per_epoch ({steps_per_epoch})"
        )
    pool = num_images if source else max(num_images, *profile.target_sizes)
    resolved = dataclasses.asdict(config)
    resolved.update(
        runner_version=RUNNER_VERSION,
        num_target_images=num_images,
        learning_rate=config.learning_rate or profile.learning_rate,
        preprocessing=config.preprocessing or default_preprocessing(config),
        augmentation=config.augmentation or default_augmentation(config),
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        batch_size=batch_size,
        pool_size=pool,
        input_size=profile.input_size,
        width=profile.width,
        num_val_images=profile.num_val_images,
        mixed_precision=resolve_precision(profile.mixed_precision),
        world_seeds=dict(WORLD_SEEDS),
    )
    uses_source = not source and parse_strategy(config.strategy_label).uses_source
    resolved["backbone_weights"] = str(config.backbone_weights) if config.strategy == "imagenet" else None
    for name in ("source_country", "source_strategy", "source_seed"):
        resolved[name] = getattr(config, name) if uses_source else None
    # a source-initialized run depends on everything its source run did
    resolved["source_run_key"] = run_key(source_config(config)) if uses_source else None
    return resolved


def run_key(config: RunConfig) -> str:
    """A stable 12-character hash of the resolved configuration (same config -> same key)."""
    text = json.dumps(resolve(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def run_name(config: RunConfig) -> str:
    """Folder name of a run: readable prefix plus its key, e.g. ``target_germany_freeze-block3_n50_s0_<key>``."""
    resolved = resolve(config)
    label = re.sub(r"[^A-Za-z0-9_-]+", "-", config.strategy_label)
    return f"{config.stage}_{config.country}_{label}_n{resolved['num_target_images']}_s{config.seed}_{run_key(config)}"


# ------------------------------------------------------------------------------------------------
# Results table.
# ------------------------------------------------------------------------------------------------


def load_results(path: str | os.PathLike) -> "pd.DataFrame":
    """The results table at ``path`` (a ``results.csv`` or the folder holding one).

    Returns an empty table with :data:`RESULT_COLUMNS` when there is no file yet.
    """
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        path = path / "results.csv"
    if not path.is_file():
        return pd.DataFrame(columns=list(RESULT_COLUMNS))
    table = pd.read_csv(path, dtype={"freeze_point": "string", "run_key": "string"})
    missing = [column for column in RESULT_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"{path}: not a tlutils results table, columns {missing} are missing")
    return table


def _stored_rows(results_dir: Path, key: str) -> "pd.DataFrame":
    table = load_results(results_dir)
    return table[table["run_key"] == key].reset_index(drop=True)


def _append_rows(results_dir: Path, rows: list[dict[str, Any]]) -> None:
    import pandas as pd

    path = results_dir / "results.csv"
    frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    frame.to_csv(path, mode="a", header=not path.is_file(), index=False)


def summarize(results: "pd.DataFrame", metric: str = "val_map50") -> "pd.DataFrame":
    """Final-epoch ``metric`` per stage x country x strategy x images x learning rate: mean, std, seeds.

    Runs are averaged only when they differ in nothing but the seed: the columns of
    :data:`COMPARABILITY_COLUMNS` (profile, L2 factor, optimizer, schedule, preprocessing, budget) that
    the table has are grouping keys too, so notebook 05's runs (L2 0.0005) and a ``tlutils sweep``
    (L2 0 by default) in one results file stay apart.

    Args:
        results: a table from :func:`load_results` / :func:`run` / :func:`sweep`.
        metric: the column to summarize (``val_map50``, ``coco_map``, ``val_loss`` ...).

    Returns:
        One row per group with ``<metric>_mean``, ``<metric>_std`` (0 for a single seed),
        ``num_seeds`` and the mean ``seconds`` of a run; best mean first within each country and size.
    """
    import pandas as pd

    if metric not in results.columns:
        raise ValueError(f"no column {metric!r} in the results; columns: {list(results.columns)}")
    if results.empty:
        return pd.DataFrame()
    table = results.copy()
    table["strategy"] = [
        f"freeze:{point}" if strategy == "freeze" and isinstance(point, str) else strategy
        for strategy, point in zip(table["strategy"], table["freeze_point"])
    ]
    seconds = table.groupby("run_key")["epoch_seconds"].sum().rename("seconds")
    final = table.loc[table.groupby("run_key")["epoch"].idxmax()].join(seconds, on="run_key")
    keys = ["stage", "country", "num_target_images", "strategy", "learning_rate"]
    keys += [column for column in COMPARABILITY_COLUMNS if column in table.columns]
    summary = (
        final.groupby(keys, dropna=False)
        .agg(**{
            f"{metric}_mean": (metric, "mean"),
            f"{metric}_std": (metric, lambda values: float(np.std(values, ddof=1)) if len(values) > 1 else 0.0),
            "num_seeds": ("seed", "nunique"),
            "seconds": ("seconds", "mean"),
        })
        .reset_index()
    )
    return summary.sort_values(
        ["stage", "country", "num_target_images", f"{metric}_mean"], ascending=[True, True, True, False]
    ).reset_index(drop=True)


# ------------------------------------------------------------------------------------------------
# Data.
# ------------------------------------------------------------------------------------------------


def synth_dataset(country: str, split: str, num_images: int, image_size: int,
                  data_dir: str | os.PathLike | None = None) -> "DetectionDataset":
    """The rendered sign-world set ``(country, split)``: generated on first use, then read from disk.

    Files go to ``<data_dir>/synth/<country>_<split>_s<seed>_<size>px_n<num>/`` (default data_dir:
    the project's ``data/``); a folder whose ``annotations.json`` exists is reused. Safe when several
    processes or threads ask for the same set at once (two notebooks open in JupyterLab): each renders
    into its own side folder, the first to finish renames it into place and the others drop theirs
    (the renderer is deterministic, so every copy is the same set).
    """
    from tlutils.data import load_coco
    from tlutils.data.synth import GENERATOR_VERSION, generate
    from tlutils.paths import data_dir as default_data_dir

    seed = WORLD_SEEDS[split]
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    folder = root / "synth" / f"{country}_{split}_s{seed}_{image_size}px_n{num_images}_v{GENERATOR_VERSION}"
    annotations = folder / "annotations.json"
    if not annotations.is_file():  # render into a side folder of our own, then rename: never half a set
        partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}-{threading.get_ident()}")
        generate(country, num_images, partial, seed=seed, image_size=image_size)
        try:
            os.replace(partial, folder)
        except OSError:  # the folder exists: another process or thread finished the same set first
            if not annotations.is_file():
                raise
            shutil.rmtree(partial)
    return load_coco(annotations, split=split)


class _StepBatches:
    """Epochs of exactly ``steps_per_epoch`` batches over a ``DetectionSequence`` of any length.

    Batch ``i`` of epoch ``e`` is global batch ``g = e * steps_per_epoch + i``: batch ``g mod n`` of
    pass ``g // n`` over the data (``n`` batches a pass), so a tiny few-shot set is simply passed over
    several times per epoch, each pass in a new order with new augmentation. A batch depends on ``g``
    only, so worker threads may build the batches of an epoch in any order.
    """

    def __init__(self, sequence: "DetectionSequence", steps_per_epoch: int):
        self.sequence = sequence
        self.steps_per_epoch = steps_per_epoch
        self.epoch = 0

    def batch(self, index: int) -> Any:
        passes, batch = divmod(self.epoch * self.steps_per_epoch + index, len(self.sequence))
        return self.sequence.batch(batch, epoch=passes)


def _step_dataset(sequence: "DetectionSequence", steps_per_epoch: int) -> Any:
    """A ``keras.utils.PyDataset`` of :class:`_StepBatches` (keras is imported only here)."""
    import keras

    from tlutils.data.pipeline import DEFAULT_WORKERS

    class StepDataset(keras.utils.PyDataset):
        def __init__(self) -> None:  # threads: see DEFAULT_WORKERS for why more than one
            super().__init__(workers=DEFAULT_WORKERS, use_multiprocessing=False)
            self.steps = _StepBatches(sequence, steps_per_epoch)

        def __len__(self) -> int:
            return steps_per_epoch

        def __getitem__(self, index: int) -> Any:
            return self.steps.batch(index)

    return StepDataset()


@dataclass
class _RunData:
    train: Any  # the PyDataset fit reads
    steps: _StepBatches
    val: "DetectionSequence"
    val_truths: list[dict[str, np.ndarray]]
    anchors: np.ndarray
    class_names: dict[int, str]  # model class -> name
    superclasses: dict[str, str]  # class name -> superclass
    num_train_images: int


def _build_data(resolved: Mapping[str, Any], detector: "keras.Model", data_dir: Path | None) -> _RunData:
    """Training batches and validation set of a run, for ``detector``'s anchors."""
    from tlutils.anchors import generate_anchors
    from tlutils.data import subset
    from tlutils.data.pipeline import DetectionSequence, ground_truths_for_eval
    from tlutils.model import anchor_config_for

    size, country = resolved["input_size"], resolved["country"]
    pool = synth_dataset(country, "train", resolved["pool_size"], size, data_dir)
    train_set = pool if resolved["stage"] == "source" else subset(pool, resolved["num_target_images"], resolved["seed"])
    val_set = synth_dataset(country, "val", resolved["num_val_images"], size, data_dir)
    label_map, class_names, superclasses = _label_map(pool)
    anchors = np.asarray(generate_anchors(anchor_config_for(detector)), dtype=np.float32)
    batch_size = resolved["batch_size"]
    train = DetectionSequence(
        train_set, anchors, label_map, batch_size=batch_size,
        augmenter=_augmenter(resolved["augmentation"], size), seed=resolved["seed"],
        drop_remainder=True,
    )
    val = DetectionSequence(val_set, anchors, label_map, batch_size=batch_size, input_size=size, shuffle=False)
    dataset = _step_dataset(train, resolved["steps_per_epoch"])
    return _RunData(dataset, dataset.steps, val, ground_truths_for_eval(val), anchors, class_names, superclasses,
                    len(train_set))


def _augmenter(augmentation: str, size: int) -> Any:
    """The ``Augmenter`` of one of :data:`AUGMENTATIONS` for a ``size`` x ``size`` input."""
    from tlutils.data.augment import TRAFFIC_SIGN_MAX_ZOOM, Augmenter

    if augmentation == "ssd":
        return Augmenter(size, max_zoom=TRAFFIC_SIGN_MAX_ZOOM)
    return Augmenter(size, photometric=augmentation == "photometric", zoom_out=False, crop=False)


def _label_map(dataset: "DetectionDataset") -> tuple[dict[int, int], dict[int, str], dict[str, str]]:
    """``(dataset id -> model class, model class -> name, name -> superclass)`` of a sign-world set."""
    from tlutils.data.pipeline import make_label_map

    label_map = make_label_map(dataset.classes)
    names = {model_class: dataset.classes[class_id] for class_id, model_class in label_map.items()}
    superclass_of = getattr(dataset, "superclass_of", {}) or {}
    superclasses = {dataset.classes[i]: s for i, s in superclass_of.items() if s is not None and i in dataset.classes}
    return label_map, names, superclasses


# ------------------------------------------------------------------------------------------------
# Checkpoints.
# ------------------------------------------------------------------------------------------------


def _write_atomically(path: Path, write: Any) -> None:
    """``write(tmp_path)``, then rename it over ``path``: a reader never sees half a file."""
    tmp = path.with_name(".tmp." + path.name)  # keeps the suffix (Keras wants ".weights.h5")
    write(tmp)
    os.replace(tmp, path)


def _save_state(state_dir: Path, epochs_done: int, detector: "keras.Model", optimizer: Any,
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
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _load_state(state_dir: Path) -> tuple[int, list[dict[str, Any]]]:
    """``(epochs done, rows so far)`` of a run's saved state; ``(0, [])`` when there is none."""
    marker = state_dir / "epoch.json"
    if not marker.is_file():
        return 0, []
    epochs_done = int(json.loads(marker.read_text())["epochs_done"])
    rows = json.loads((state_dir / "rows.json").read_text())[:epochs_done]
    return epochs_done, rows


def _restore_optimizer(state_dir: Path, optimizer: Any) -> None:
    with np.load(state_dir / "optimizer.npz") as stored:
        optimizer.load_own_variables({key: stored[key] for key in stored.files})


# ------------------------------------------------------------------------------------------------
# Training.
# ------------------------------------------------------------------------------------------------


def _make_optimizer(name: str, phase: Phase, schedule: str) -> Any:
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
    """XLA for JAX (``"auto"``), not for TensorFlow: on a CPU, XLA made the cpu profile's training
    step 3.5x slower (2.9 vs 0.83 s) and its first compile 5x longer (51 vs 11 s)."""
    import keras

    return False if keras.backend.backend() == "tensorflow" else "auto"


def _num_params(weights: Iterable[Any]) -> int:
    return int(sum(math.prod(int(d) for d in w.shape) for w in weights))


def evaluate_detector(model: "keras.Model", sequence: "DetectionSequence", truths: list[dict[str, np.ndarray]],
                      anchors: np.ndarray, coco: bool = False, losses: bool = False) -> dict[str, float]:
    """``map50`` (VOC all-points mAP at IoU 0.5) and, with ``coco``, ``coco_map`` on a validation set.

    With ``losses``, also the validation loss from the same forward pass (what ``SSDTrainer.evaluate``
    reports, without a second pass over the data): ``localization`` and ``confidence`` (the MultiBox
    terms) and ``loss`` (their weighted sum + the detector's L2 regularization), each averaged over
    the batches weighted by batch size, like Keras' ``evaluate``.

    Args:
        model: a detector or an ``SSDTrainer`` (a compiled trainer predicts with its compiled step;
            its ``MultiBoxLoss`` gives the losses, a plain detector uses ``MultiBoxLoss()``).
        sequence: validation batches built with ``shuffle=False``, so predictions line up with ``truths``.
        truths: ``tlutils.data.pipeline.ground_truths_for_eval(sequence)``.
        anchors: the detector's anchors ``(A, 4)``.
    """
    from tlutils.decoding import decode_detections
    from tlutils.evaluation import coco_map, mean_average_precision

    detections: list[dict[str, np.ndarray]] = []
    loss_sums = _LossSums(model) if losses else None
    for index in range(len(sequence)):
        images, targets = sequence[index]
        outputs = model.predict_on_batch(images)
        detections.extend(decode_detections(outputs["class_logits"], outputs["box_offsets"], anchors))
        if loss_sums is not None:
            loss_sums.add(targets, outputs)
    scores = {"map50": float(mean_average_precision(detections, truths, iou_threshold=MAP_IOU,
                                                    method="all_points")["map"])}
    if coco:
        scores["coco_map"] = float(coco_map(detections, truths, image_size=sequence.input_size)["map"])
    if loss_sums is not None:
        scores.update(loss_sums.means())
    return scores


class _LossSums:
    """Batch-size-weighted sums of the MultiBox terms over a validation pass (see ``evaluate_detector``)."""

    def __init__(self, model: "keras.Model") -> None:
        from tlutils.losses import MultiBoxLoss

        self.model = model
        self.multibox = getattr(model, "multibox", None) or MultiBoxLoss()
        self.sums = {name: 0.0 for name in _VAL_LOGS}
        self.images = 0

    def add(self, targets: Mapping[str, np.ndarray], outputs: Mapping[str, Any]) -> None:
        components = self.multibox.components(dict(targets), dict(outputs))
        batch = len(targets["class_targets"])
        for name in self.sums:
            self.sums[name] += float(components[name]) * batch
        self.images += batch

    def means(self) -> dict[str, float]:
        """``{"loss", "localization", "confidence"}``; ``loss`` includes the model's regularization."""
        from tlutils.model import regularization_loss

        means = {name: total / max(self.images, 1) for name, total in self.sums.items()}
        means["loss"] += float(regularization_loss(self.model))
        return means


def _epoch_callback(**kwargs: Any) -> Any:
    """The runner's ``keras.callbacks.Callback``: ``steps`` (a :class:`_StepBatches`) learns the epoch
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


def run(
    config: RunConfig,
    results_dir: str | os.PathLike | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    verbose: int = 1,
    callbacks: Sequence[Any] = (),
    tensorboard: bool = True,
) -> "pd.DataFrame":
    """Run one experiment (or return its stored rows) and return its rows of the results table.

    Args:
        config: the experiment.
        results_dir: where ``results.csv`` and ``runs/`` live; default ``runs/<profile>/`` of the project.
        data_dir: where the sign world is rendered (``<data_dir>/synth/``); default the project's ``data/``.
        verbose: 0 silent, 1 Keras progress bars and a line per epoch, 2 one Keras line per epoch.
        callbacks: extra Keras callbacks for ``fit`` (after the runner's own, which saves the state).
        tensorboard: write TensorBoard logs to ``runs/<run name>/logs`` (needs TensorFlow).

    Returns:
        A ``pandas.DataFrame`` with :data:`RESULT_COLUMNS`, one row per epoch (1-based ``epoch``).

    Raises:
        ValueError: an invalid configuration (see :class:`RunConfig`, :func:`resolve`).
    """
    import keras

    from tlutils.paths import runs_dir

    resolved = resolve(config)
    key = run_key(config)
    results_dir = Path(results_dir) if results_dir is not None else runs_dir(config.profile)
    results_dir.mkdir(parents=True, exist_ok=True)
    stored = _stored_rows(results_dir, key)
    if not stored.empty:
        if verbose:
            print(f"[{key}] {run_name(config)}: finished before, {len(stored)} epochs read from results.csv")
        return stored

    source_key, source_path = None, None
    if config.stage == "target" and parse_strategy(config.strategy_label).uses_source:
        source = source_config(config)
        source_rows = run(source, results_dir, data_dir=data_dir, verbose=verbose, tensorboard=tensorboard)
        source_key = run_key(source)
        source_path = results_dir / str(source_rows["checkpoint"].iloc[-1])

    run_dir = results_dir / "runs" / run_name(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(resolved, indent=1, sort_keys=True) + "\n")
    data_path = Path(data_dir) if data_dir is not None else None
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(resolved["mixed_precision"])
    try:
        training = _Training(config, resolved, run_dir, results_dir, data_path, source_path, source_key)
        if training.epochs_done and verbose:
            print(f"[{key}] resuming {run_name(config)} after epoch {training.epochs_done} of "
                  f"{len(training.per_epoch)}")
        extra = _tensorboard(run_dir / "logs", verbose) if tensorboard else []
        rows = training.fit(verbose, [*extra, *callbacks])
    finally:
        keras.config.set_dtype_policy(policy)
    _append_rows(results_dir, rows)
    return _stored_rows(results_dir, key)  # as read back: the same types as a skipped run's


class _Training:
    """One run's training: the detector, its data and plan, and what happens at the end of an epoch."""

    def __init__(self, config: RunConfig, resolved: dict[str, Any], run_dir: Path, results_dir: Path,
                 data_dir: Path | None, source_path: Path | None, source_key: str | None) -> None:
        import keras

        from tlutils.training import SSDTrainer
        from tlutils.transfer import class_map_for, load_detector, prepare

        self.config, self.resolved, self.results_dir = config, resolved, results_dir
        self.source_key = source_key
        self.key = run_key(config)
        self.state_dir = run_dir / "state"
        self.checkpoint = run_dir / "detector.keras"
        source_detector = load_detector(source_path) if source_path is not None else None
        pool = synth_dataset(config.country, "train", resolved["pool_size"], resolved["input_size"], data_dir)
        _, class_names, superclasses = _label_map(pool)
        _write_classes(run_dir, class_names)
        class_map = None
        if source_path is not None:
            class_map = class_map_for(_read_classes(source_path.parent), class_names, superclasses)
        keras.utils.set_random_seed(config.seed)  # the initialization, then everything else, from the seed
        self.detector, self.plan = prepare(
            config.strategy_label, source_detector, len(class_names), class_map, get_profile(config.profile),
            total_steps=resolved["total_steps"], steps_per_epoch=resolved["steps_per_epoch"],
            learning_rate=resolved["learning_rate"], backbone_weights=config.backbone_weights,
            preprocessing=resolved["preprocessing"], l2_regularization=config.l2_regularization,
        )
        self.data = _build_data(resolved, self.detector, data_dir)
        self.trainer = SSDTrainer(self.detector)
        self.steps_per_epoch = resolved["steps_per_epoch"]
        self.per_epoch = epochs_of(self.plan, self.steps_per_epoch)
        self.epochs_done, self.rows = _load_state(self.state_dir)
        if self.epochs_done:
            self.detector.load_weights(self.state_dir / "detector.weights.h5")

    def fit(self, verbose: int, callbacks: list[Any]) -> list[dict[str, Any]]:
        """Train the phases that are not done yet (one compile each); returns all rows of the run."""
        from tlutils.transfer import apply_phase

        first_epoch = 0
        for phase in self.plan:
            last_epoch = first_epoch + phase.steps // self.steps_per_epoch
            if last_epoch > self.epochs_done:
                start = max(first_epoch, self.epochs_done)
                apply_phase(self.detector, phase)
                self.trainer.compile(optimizer=_make_optimizer(self.config.optimizer, phase, self.config.schedule),
                                     jit_compile=_jit_compile())
                # Built here, not inside the first traced step: TensorFlow traces a step that creates
                # variables twice (4 s each for the cpu profile's SSD on a 2-core CPU).
                self.trainer.optimizer.build(self.trainer.trainable_variables)
                if start > first_epoch:  # resuming inside this phase: its optimizer state continues
                    _restore_optimizer(self.state_dir, self.trainer.optimizer)
                self.trainer.fit(
                    self.data.train, epochs=last_epoch, initial_epoch=start, shuffle=False,
                    verbose=verbose if verbose in (0, 2) else 1,
                    callbacks=[_epoch_callback(steps=self.data.steps, finish_epoch=self.finish_epoch), *callbacks],
                )
            first_epoch = last_epoch
        return self.rows

    def finish_epoch(self, epoch: int, logs: dict[str, Any], train_seconds: float) -> None:
        """Evaluate, add the val numbers to ``logs`` (for TensorBoard), record the row, save the state."""
        last = epoch == len(self.per_epoch) - 1
        started = time.perf_counter()
        scores = evaluate_detector(self.trainer, self.data.val, self.data.val_truths, self.data.anchors,
                                   coco=last, losses=True)
        eval_seconds = time.perf_counter() - started
        logs.update({f"val_{name}": scores[name] for name in _VAL_LOGS}, val_map50=scores["map50"])
        self.rows.append(self._row(epoch, logs, scores, train_seconds, eval_seconds))
        if last:
            self.detector.save(self.checkpoint)
        _save_state(self.state_dir, epoch + 1, self.detector, self.trainer.optimizer, self.rows)

    def _row(self, epoch: int, logs: Mapping[str, Any], scores: Mapping[str, float], train_seconds: float,
             eval_seconds: float) -> dict[str, Any]:
        phase, resolved = self.per_epoch[epoch], self.resolved
        return {
            **{name: resolved[name] for name in _CONFIG_COLUMNS},
            "run_key": self.key, "strategy": self.config.strategy, "freeze_point": self.config.freeze_point,
            "epoch": epoch + 1, "step": (epoch + 1) * self.steps_per_epoch, "phase": phase.name,
            "phase_learning_rate": phase.learning_rate,
            **{name: float(logs[name]) for name in (*_TRAIN_LOGS, *(f"val_{n}" for n in _VAL_LOGS))},
            "val_map50": scores["map50"], "coco_map": scores.get("coco_map", float("nan")),
            "epoch_seconds": train_seconds, "eval_seconds": eval_seconds,
            "images_per_s": self.steps_per_epoch * resolved["batch_size"] / train_seconds,
            "trainable_params": _num_params(self.detector.trainable_weights),
            "source_run_key": self.source_key,
            "checkpoint": self.checkpoint.relative_to(self.results_dir).as_posix(),
        }


def _write_classes(run_dir: Path, class_names: Mapping[int, str]) -> None:
    """``classes.json``: model class -> name, so later runs can map their classes onto this detector's."""
    (run_dir / "classes.json").write_text(json.dumps({str(k): v for k, v in sorted(class_names.items())}, indent=1))


def _read_classes(run_dir: Path) -> dict[int, str]:
    path = run_dir / "classes.json"
    if not path.is_file():
        raise ValueError(f"{path} is missing: the source run folder must hold its class table")
    return {int(k): v for k, v in json.loads(path.read_text()).items()}


# ------------------------------------------------------------------------------------------------
# Sweeps.
# ------------------------------------------------------------------------------------------------

_GRID_FIELDS = ("country", "strategy", "num_target_images", "seed", "freeze_point", "learning_rate")


def expand_grid(grid: Mapping[str, Sequence[Any]], base: RunConfig | None = None) -> list[RunConfig]:
    """The configurations of a sweep: the product of ``grid``'s lists over ``base``.

    Keys of ``grid``: ``country``, ``strategy``, ``num_target_images``, ``seed``, ``freeze_point`` and
    ``learning_rate`` (singular, like :class:`RunConfig`'s fields; plural spellings such as
    ``strategies`` are accepted too). ``freeze_point`` multiplies only the bare ``"freeze"`` strategy;
    ``"freeze:block3"`` names its point itself. Every configuration keeps ``base``'s budget.

    Raises:
        ValueError: an unknown key or an empty list.
    """
    aliases = {"countries": "country", "strategies": "strategy", "seeds": "seed", "freeze_points": "freeze_point",
               "learning_rates": "learning_rate", "num_images": "num_target_images"}
    base = base or RunConfig(num_target_images=1)
    values: dict[str, list[Any]] = {}
    for name, options in grid.items():
        field = aliases.get(name, name)
        if field not in _GRID_FIELDS:
            raise ValueError(f"unknown sweep key {name!r}; valid keys: {list(_GRID_FIELDS)}")
        options = [options] if isinstance(options, (str, int, float)) else list(options)
        if not options:
            raise ValueError(f"sweep key {name!r} has no values")
        values[field] = options
    points = values.pop("freeze_point", [base.freeze_point])
    configs: list[RunConfig] = []
    names = list(values)
    for combination in itertools.product(*(values[name] for name in names)):
        changes = dict(zip(names, combination))
        strategy = str(changes.pop("strategy", base.strategy_label))
        if strategy.strip().lower() == "freeze":
            for point in points:
                configs.append(base.replace(**changes, strategy="freeze", freeze_point=point))
        else:
            configs.append(base.replace(**changes, strategy=strategy, freeze_point=None))
    return list(dict.fromkeys(configs))  # drop duplicates, keep order


def sweep(
    grid: Mapping[str, Sequence[Any]],
    results_dir: str | os.PathLike | None = None,
    base: RunConfig | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    verbose: int = 0,
    progress: bool = True,
) -> "pd.DataFrame":
    """Run every configuration of ``grid`` (see :func:`expand_grid`); finished ones are skipped.

    Example::

        sweep({"strategy": ["scratch", "finetune", "head_only"], "num_target_images": [10, 50],
               "seed": [0, 1, 2]}, base=RunConfig(profile="cpu", country="germany", num_target_images=10))

    Returns:
        The rows of all the sweep's runs (a ``pandas.DataFrame`` with :data:`RESULT_COLUMNS`).
    """
    import pandas as pd

    configs = expand_grid(grid, base)
    iterator: Iterable[RunConfig] = configs
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(configs, desc="sweep", unit="run")
    frames = []
    for config in iterator:
        if progress and hasattr(iterator, "set_postfix_str"):
            iterator.set_postfix_str(f"{config.country} {config.strategy_label} n={config.num_target_images} s={config.seed}")
        frames.append(run(config, results_dir, data_dir=data_dir, verbose=verbose))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(RESULT_COLUMNS))


def sweep_from_cli(args: Any) -> int:
    """``tlutils sweep``: run the sweep the command line names and print its summary; exit code 0."""
    profile = get_profile(args.profile)
    grid = {
        "country": list(args.countries or profile.countries),
        "strategy": list(args.strategies or DEFAULT_STRATEGIES),
        "num_target_images": list(args.num_target_images or profile.target_sizes),
        "seed": list(args.seeds if args.seeds is not None else profile.seeds),
    }
    base = RunConfig(profile=args.profile, num_target_images=grid["num_target_images"][0],
                     l2_regularization=getattr(args, "l2_regularization", 0.0))
    results = sweep(grid, args.out, base=base)
    with _wide_pandas():
        print(summarize(results[results["stage"] == "target"]).to_string(index=False))
    where = Path(args.out) if args.out else None
    if where is None:
        from tlutils.paths import runs_dir

        where = runs_dir(args.profile)
    print(f"results: {where / 'results.csv'}")
    return 0


class _wide_pandas:
    """Context manager: print whole tables."""

    def __enter__(self) -> None:
        import pandas as pd

        self._context = pd.option_context("display.width", 200, "display.max_columns", 50)
        self._context.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._context.__exit__(*exc)


__all__ = [
    "DEFAULT_STRATEGIES",
    "COMPARABILITY_COLUMNS",
    "RESULT_COLUMNS",
    "RunConfig",
    "evaluate_detector",
    "expand_grid",
    "load_results",
    "resolve",
    "run",
    "run_key",
    "run_name",
    "source_config",
    "summarize",
    "sweep",
    "sweep_from_cli",
    "synth_dataset",
]
