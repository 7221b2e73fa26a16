"""The experiment runner: one configuration in, one tidy row per epoch out; sweeps; result tables.

``run(RunConfig(...), results_dir)`` does everything one transfer experiment needs:

1. **Configuration** (:mod:`~tlutils.experiment.config`) -- a short :class:`RunConfig`;
   :func:`resolve` (:mod:`~tlutils.experiment.resolved`) fills in the profile's defaults **once** and
   the resolved run is handed down; its ``key`` is a stable hash of it.
2. **Data** (:mod:`~tlutils.experiment.datasets`, :mod:`~tlutils.experiment.run_data`) -- any data
   spec (``synth:germany``, ``gtsdb:<folder>``, ``coco:<file>``, ...): the sign world rendered once,
   real data loaded and split once; a target run trains on a stratified, nested subset of
   ``num_target_images`` images; real frames are trained on as crops and evaluated tiled.
3. **Source detector** -- a source-initialized target run first runs (or finds) the source-stage run
   of the same profile (``source_config``); its ``detector.keras`` is the source.
4. **Training** (:mod:`~tlutils.experiment.runner`) -- ``tlutils.transfer.prepare`` builds the
   detector and its phases; each phase is compiled and trained for its epochs. Every strategy gets the
   same budget.
5. **Evaluation, every epoch** -- ``tlutils.evaluation.evaluate_detector``: ``val_loss`` (and its
   parts) and ``val_map50`` (Pascal VOC all-points mAP at IoU 0.5, named in the ``map_metric``
   column); COCO mAP (0.5:0.95), mAP by object size and AP per class after the last epoch.
6. **Results** (:mod:`~tlutils.experiment.results`, :mod:`~tlutils.experiment.store`) -- one row per
   epoch (``RESULT_COLUMNS``) in ``results_dir/results.csv``, keyed by the run key.

Re-running a finished configuration returns its stored rows without training. A run that stops
resumes from its last finished epoch (:mod:`~tlutils.experiment.state`) and ends with the same
numbers as an uninterrupted run. Sweeps: :mod:`~tlutils.experiment.sweeps`.

Layout of ``results_dir``::

    results.csv                      the tidy table of every finished run
    runs/<run name>/config.json      the resolved configuration (what the run key hashes)
    runs/<run name>/classes.json     model class -> name of the run's detector
    runs/<run name>/per_class.csv    AP@0.5 per class (and object size) at epoch 0 and the last epoch
    runs/<run name>/state/           the last finished epoch: weights, optimizer, rows so far
    runs/<run name>/detector.keras   the trained detector (``checkpoint`` column, relative path)
    runs/<run name>/logs/            TensorBoard logs (when TensorFlow is installed)
"""

from tlutils.experiment.config import (
    AUGMENTATIONS,
    DEFAULT_STRATEGIES,
    OPTIMIZERS,
    SCHEDULES,
    CLASS_MODES,
    SOURCE_DATA,
    STAGES,
    RunConfig,
    default_augmentation,
    default_preprocessing,
    source_config,
)
from tlutils.data.synth import WORLD_SEEDS, synth_dataset
from tlutils.experiment.resolved import RUNNER_VERSION, ResolvedRun, resolve, run_key, run_name
from tlutils.experiment.results import (
    COMPARABILITY_COLUMNS,
    RESULT_COLUMNS,
    final_epochs,
    load_per_class,
    load_results,
    ordered_strategies,
    summarize,
    training_speed,
)
from tlutils.experiment.runner import make_optimizer, run
from tlutils.experiment.sweeps import expand_grid, sweep, sweep_from_cli
from tlutils.experiment.convergence import OVERFIT_DROP, convergence_facts, convergence_table
from tlutils.experiment.start_study import KERAS_SSD_L2, pretrained_lines, source_study, study_size

__all__ = [
    "AUGMENTATIONS",
    "KERAS_SSD_L2",
    "OVERFIT_DROP",
    "COMPARABILITY_COLUMNS",
    "DEFAULT_STRATEGIES",
    "OPTIMIZERS",
    "RESULT_COLUMNS",
    "RUNNER_VERSION",
    "ResolvedRun",
    "RunConfig",
    "SCHEDULES",
    "SOURCE_DATA",
    "CLASS_MODES",
    "STAGES",
    "WORLD_SEEDS",
    "default_augmentation",
    "default_preprocessing",
    "convergence_facts",
    "convergence_table",
    "expand_grid",
    "final_epochs",
    "load_per_class",
    "load_results",
    "make_optimizer",
    "ordered_strategies",
    "pretrained_lines",
    "resolve",
    "run",
    "run_key",
    "run_name",
    "source_config",
    "source_study",
    "study_size",
    "summarize",
    "sweep",
    "sweep_from_cli",
    "synth_dataset",
    "training_speed",
]
