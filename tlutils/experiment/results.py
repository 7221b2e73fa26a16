"""The results table (one row per run and epoch) and its analysis: final epochs, summaries, speed.

``results.csv`` is tidy: the configuration columns, then what each epoch measured. ``strategy`` holds
the canonical strategy string (``"freeze:block3"``), the one spelling every plot and table uses.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

#: Configuration columns besides stage, country, images, strategy and learning rate that make two runs
#: different experiments (not seeds of one); :func:`summarize` never averages across them.
COMPARABILITY_COLUMNS = ("data", "data_fingerprint", "source_data", "classes", "profile", "optimizer", "schedule",
                         "l2_regularization", "preprocessing", "total_steps", "map_metric", "augmentation",
                         "cache_features", "evaluate_test", "evaluate_source", "smallest_scale")

#: Columns of the results table, in order; one row per run and epoch.
RESULT_COLUMNS: tuple[str, ...] = (
    "run_key", "stage", "country", "data", "data_fingerprint", "source_data", "classes", "strategy",
    "num_target_images", "seed", "profile",
    "optimizer", "learning_rate", "schedule", "l2_regularization", "preprocessing", "total_steps",
    "augmentation", "cache_features", "evaluate_test", "evaluate_source", "smallest_scale",
    "epoch", "step", "phase", "phase_learning_rate",
    "loss", "localization", "confidence", "regularization", "num_positives",
    "val_loss", "val_localization", "val_confidence", "val_map50", "map_metric", "coco_map",
    "map50_small", "map50_medium", "map50_large", "test_map50", "source_map50", "best_epoch", "stopped_early",
    "epoch_seconds", "eval_seconds", "images_per_s", "trainable_params",
    "source_run_key", "checkpoint",
)
#: VOC mAP@0.5 of COCO's small (< 32^2 px), medium and large objects (``tlutils.evaluation.map_by_size``),
#: on the frames as evaluated (the sign world at the input size; real data on whole frames); final
#: evaluations only, NaN elsewhere.
SIZE_COLUMNS = ("map50_small", "map50_medium", "map50_large")
#: Held-out evaluations (``tlutils.experiment.held_out``): the test split, the source data; epoch 0 and
#: the last epoch of runs that ask for them, NaN elsewhere.
HELD_OUT_COLUMNS = ("test_map50", "source_map50")
#: The per-class table of a run's zero-shot and final evaluations, in its folder (:func:`per_class_table`).
PER_CLASS_FILE = "per_class.csv"
#: Its columns: the epoch (0: zero-shot), the class (name, or model class where the run has no names),
#: AP@0.5 (``tlutils.evaluation.MAP_METRIC``; NaN without ground truth), the ground truths that count,
#: and AP@0.5 of COCO's small, medium and large objects.
PER_CLASS_COLUMNS = ("epoch", "class", "ap50", "num_ground_truths", "ap50_small", "ap50_medium", "ap50_large")
#: Columns copied from the resolved run into every row.
CONFIG_COLUMNS = ("stage", "country", "data", "data_fingerprint", "source_data", "classes", "strategy",
                  "num_target_images", "seed",
                  "profile", "optimizer", "learning_rate", "schedule", "l2_regularization", "preprocessing",
                  "total_steps", "augmentation", "cache_features", "evaluate_test", "evaluate_source")


def empty_results() -> "pd.DataFrame":
    """A results table with no rows."""
    import pandas as pd

    return pd.DataFrame(columns=list(RESULT_COLUMNS))


def load_results(path: str | os.PathLike) -> "pd.DataFrame":
    """The finished runs of the results table at ``path`` (a ``results.csv`` or the folder holding one).

    Returns an empty table with :data:`RESULT_COLUMNS` when there is no file yet. Only whole runs are
    returned: a run counts once it has one complete row for each of its epochs 1..N, the last at
    ``step == total_steps``, plus its epoch-0 row (the detector before training: zero-shot for a target run;
    :func:`final_epochs` never picks it) (a row is complete when its last column, ``checkpoint``, names a ``.keras``
    file). Anything else -- a row cut short or run together with the next by a crash, a run with
    missing epochs, a repeated epoch -- is left out with a warning naming the runs; the runner then
    trains (or resumes) them again. A table written before the strategy became one column
    (``strategy="freeze"`` plus ``freeze_point``) is read into the one-column form, one written
    before data specs gets ``data = "synth:<country>"``, and one written before ``map_metric`` gets
    ``tlutils.evaluation.MAP_METRIC`` (what the runner has computed from its first version on).

    Raises:
        ValueError: the file is not a tlutils results table.
    """
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        path = path / "results.csv"
    if not path.is_file():
        return empty_results()
    bad_lines: list[list[str]] = []
    table = pd.read_csv(path, dtype={"freeze_point": "string", "run_key": "string", "strategy": "string"},
                        engine="python", on_bad_lines=lambda line: bad_lines.append(line))
    if "freeze_point" in table.columns:
        table["strategy"] = [f"freeze:{point}" if name == "freeze" and isinstance(point, str) else name
                             for name, point in zip(table["strategy"], table["freeze_point"])]
        table = table.drop(columns="freeze_point")
    if "data" not in table.columns and "country" in table.columns:  # written before data specs: the sign world
        table["data"] = "synth:" + table["country"].astype(str)
        table["data_fingerprint"] = None
        table["classes"] = "name"
    for column in (*SIZE_COLUMNS, *HELD_OUT_COLUMNS, "best_epoch"):  # written before these were recorded
        if column not in table.columns:
            table[column] = float("nan")
    if "stopped_early" not in table.columns:
        table["stopped_early"] = False
    if "augmentation" not in table.columns:  # written before it was a column: unknown, never averaged with known
        table["augmentation"] = None
    for column in ("cache_features", "evaluate_test", "evaluate_source"):  # options that did not exist yet
        if column not in table.columns:
            table[column] = False
    if "map_metric" not in table.columns:  # written before the metric was named; the runner's val_map50
        from tlutils.evaluation import MAP_METRIC  # (here only: it imports the backend) was always this one

        table["map_metric"] = MAP_METRIC
    if "source_data" not in table.columns:  # written before it was a column: the source run's own rows say it
        table["source_data"] = _source_data_of(table)
    if "smallest_scale" not in table.columns:
        table["smallest_scale"] = float("nan")
    if table["smallest_scale"].isna().any():  # rows written before it was a parameter (also those a shipped
        from tlutils.anchors import FIRST_LAYER_SCALE  # run of then installs) had SSD's default boxes

        table["smallest_scale"] = table["smallest_scale"].fillna(FIRST_LAYER_SCALE)
    missing = [column for column in RESULT_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"{path}: not a tlutils results table, columns {missing} are missing")
    whole = _whole_runs(table)
    dropped = sorted(set(table["run_key"].dropna()) - set(whole["run_key"]))
    if bad_lines or dropped or len(whole) < len(table):
        warnings.warn(f"{path}: left out {len(table) - len(whole)} rows of unfinished or damaged runs "
                      f"{dropped} and {len(bad_lines)} malformed lines; those runs will be trained again",
                      stacklevel=2)
    return whole


def _whole_runs(table: "pd.DataFrame") -> "pd.DataFrame":
    """The rows of the runs that have exactly one complete row per epoch 1..N (and at most one zero-shot
    row, epoch 0), the last at total_steps."""
    complete = table["checkpoint"].map(lambda value: isinstance(value, str) and value.endswith(".keras"))
    rows = table[complete & table["run_key"].notna()]
    keep = []
    for key, group in rows.groupby("run_key", sort=False):
        epochs = sorted(group["epoch"].tolist())
        trained = epochs[1:] if epochs[:2] == [0, 1] else epochs
        last = group.loc[group["epoch"].idxmax()]
        stopped = str(last["stopped_early"]).lower() == "true"  # early stopping ended it there
        if trained == list(range(1, len(trained) + 1)) and (int(last["step"]) == int(last["total_steps"]) or stopped):
            keep.append(key)
    return rows[rows["run_key"].isin(keep)].reset_index(drop=True)


def per_class_table(scores: dict[str, Any], epoch: int) -> "pd.DataFrame":
    """The per-class scores of ``tlutils.evaluation.evaluate_detector`` / ``evaluate_tiled`` (their
    ``per_class``, ``num_ground_truths`` and ``per_class_by_size``) as :data:`PER_CLASS_COLUMNS` rows,
    one per class; the size columns are NaN where sizes were not scored."""
    import pandas as pd

    by_size = scores.get("per_class_by_size", {})
    rows = [{"epoch": epoch, "class": key, "ap50": value, "num_ground_truths": scores["num_ground_truths"][key],
             **{f"ap50_{size}": by_size.get(size, {}).get(key, float("nan")) for size in ("small", "medium", "large")}}
            for key, value in scores["per_class"].items()]
    return pd.DataFrame(rows, columns=list(PER_CLASS_COLUMNS))


def read_per_class(run_dir: str | os.PathLike) -> "pd.DataFrame":
    """One run's :data:`PER_CLASS_FILE` (:data:`PER_CLASS_COLUMNS`); no rows where the folder has none."""
    import pandas as pd

    path = Path(run_dir) / PER_CLASS_FILE
    if not path.is_file():
        return pd.DataFrame(columns=list(PER_CLASS_COLUMNS))
    numbers = {column: [""] for column in PER_CLASS_COLUMNS if column != "class"}  # a class may be named "NA"
    return pd.read_csv(path, dtype={"class": "string"}, keep_default_na=False, na_values=numbers)


def load_per_class(path: str | os.PathLike, run_keys: str | Iterable[str] | None = None) -> "pd.DataFrame":
    """The per-class AP tables (:data:`PER_CLASS_FILE`) of finished runs of a results table.

    Args:
        path: a ``results.csv`` or the folder holding one (as for :func:`load_results`).
        run_keys: one run key, several, or ``None`` for every run of the table.

    Returns:
        One row per run, evaluation and class: the run's ``run_key``, ``stage``, ``data``,
        ``strategy``, ``num_target_images``, ``seed`` and ``map_metric``, then
        :data:`PER_CLASS_COLUMNS` (``epoch``: 0 for the evaluation before training, zero-shot for a target
        run, the last epoch for the final one). Runs finished before the runner kept the table have no rows.

    Raises:
        ValueError: a requested run key is not a finished run of the table.
    """
    import pandas as pd

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    final = final_epochs(load_results(path))
    if run_keys is not None:
        wanted = [run_keys] if isinstance(run_keys, str) else list(run_keys)
        unknown = sorted(set(wanted) - set(final["run_key"]))
        if unknown:
            raise ValueError(f"{folder}: no finished runs {unknown} in its results table")
        final = final[final["run_key"].isin(wanted)]
    described = ["run_key", "stage", "data", "strategy", "num_target_images", "seed", "map_metric"]
    tables = [read_per_class(folder / Path(row["checkpoint"]).parent).assign(**row[described].to_dict())
              for _, row in final.iterrows()]
    tables = [table for table in tables if not table.empty]
    if not tables:
        return pd.DataFrame(columns=described + list(PER_CLASS_COLUMNS))
    return pd.concat(tables, ignore_index=True)[described + list(PER_CLASS_COLUMNS)]


def ordered_strategies(labels: Iterable[str]) -> list[str]:
    """The distinct strategies of ``labels`` in ``tlutils.transfer.valid_strategies()`` order, unknown last."""
    from tlutils.transfer import valid_strategies

    order = valid_strategies()
    present = list(dict.fromkeys(labels))
    return sorted(present, key=lambda label: (order.index(label) if label in order else len(order), label))


def _source_data_of(table: "pd.DataFrame") -> "pd.Series":
    """Per row, the data its source run trained on (that run's ``data``, from its rows in the same table);
    ``None`` for runs without a source and where the source run is not in the table."""
    sources = table[table["stage"] == "source"].drop_duplicates("run_key").set_index("run_key")["data"]
    return table["source_run_key"].map(sources).astype(object).where(lambda data: data.notna(), None)


def final_epochs(results: "pd.DataFrame") -> "pd.DataFrame":
    """The last epoch's row of every run (``run_key``), also of tables concatenated with their indexes
    (``pd.concat`` of two results tables repeats row labels: one label would pick several rows)."""
    results = results.reset_index(drop=True)
    return results.loc[results.groupby("run_key")["epoch"].idxmax()].reset_index(drop=True)


def add_forgetting(results: "pd.DataFrame") -> "pd.DataFrame":
    """A copy with ``forgetting`` on every row of a run: its ``source_map50`` at epoch 0 minus at its
    last epoch (what the transfer lost on the source data; negative: it gained). NaN where the run did
    not score the source (``RunConfig.evaluate_source``; a source run has no transfer to measure) or has no
    epoch-0 row.

    Raises:
        ValueError: the table has no ``source_map50`` column.
    """
    if "source_map50" not in results.columns:
        raise ValueError("the results table has no source_map50 column (runs with evaluate_source=True)")
    table = results.reset_index(drop=True)  # positions: the caller's index may repeat (concatenated tables)
    by_run = table.sort_values("epoch").groupby("run_key")["source_map50"]
    change = by_run.transform(lambda values: values.iloc[0]) - by_run.transform(lambda values: values.iloc[-1])
    has_epoch_0 = table.groupby("run_key")["epoch"].transform("min") == 0  # the score before any training
    return results.assign(forgetting=change.sort_index().where(has_epoch_0).to_numpy())


def within_training_seconds(results: "pd.DataFrame", seconds: float) -> "pd.DataFrame":
    """The equal-wall-clock view: each run's rows up to its last evaluation within ``seconds`` of
    training (``epoch_seconds`` summed; evaluations are not counted, epoch 0 takes none).

    A strategy that trains fewer weights takes more steps in the same seconds; :func:`summarize` of the
    result compares strategies at equal training time instead of equal steps. A run whose first epoch
    already takes longer keeps only its epoch-0 row (or none).

    Raises:
        ValueError: ``seconds`` is negative.
    """
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    ordered = results.sort_values(["run_key", "epoch"])
    spent = ordered.groupby("run_key")["epoch_seconds"].cumsum()
    return ordered[spent <= seconds].sort_index()


def budget_views(long_runs: "pd.DataFrame", short_steps: int) -> dict[str, "pd.DataFrame"]:
    """Long-budget runs seen three ways, each as :func:`summarize` rows with ``steps`` (the mean step
    the runs reached there): ``"after <short_steps> of <N>
    steps"`` (their evaluation at ``short_steps``), ``"<N> steps"`` (their end) and ``"<T> s of
    training"`` (:func:`within_training_seconds` at T, the longest any run took for ``short_steps``: the
    slowest strategy's runs all reach ``short_steps`` there, the others what they reach in the same time).

    Raises:
        ValueError: the runs have no evaluation at step ``short_steps`` (evaluate every ``short_steps``).
    """
    ordered = long_runs.sort_values(["run_key", "epoch"])
    spent = ordered.groupby("run_key")["epoch_seconds"].cumsum()
    at_short = ordered.assign(spent=spent)[ordered["step"] == short_steps]
    if at_short.empty:
        raise ValueError(f"the runs have no evaluation at step {short_steps}; give them steps_per_epoch "
                         f"{short_steps}")
    seconds = float(at_short["spent"].max())  # every run of the slowest strategy reaches short_steps in it
    long_steps = int(long_runs["step"].max())
    views = {f"after {short_steps} of {long_steps} steps": ordered[ordered["step"] <= short_steps],
             f"{long_steps} steps": ordered,
             f"{seconds:.0f} s of training": within_training_seconds(ordered, seconds)}
    return {label: _summary_with_steps(rows) for label, rows in views.items()}


def _summary_with_steps(rows: "pd.DataFrame") -> "pd.DataFrame":
    """:func:`summarize` of ``rows`` with ``steps``: the mean step of the runs' last rows."""
    keys = ["country", "num_target_images", "strategy"]
    steps = final_epochs(rows).groupby(keys)["step"].mean().rename("steps")
    return summarize(rows).join(steps, on=keys)


def summarize(results: "pd.DataFrame", metric: str = "val_map50") -> "pd.DataFrame":
    """Final-epoch ``metric`` per stage x country x strategy x images x learning rate: mean, std, seeds.

    Runs are averaged only when they differ in nothing but the seed: the columns of
    :data:`COMPARABILITY_COLUMNS` that the table has are grouping keys too, so runs with another L2
    factor, optimizer, schedule, preprocessing or budget in the same file stay apart.

    Args:
        results: a table from :func:`load_results` or the runner.
        metric: the column to summarize (``val_map50``, ``coco_map``, ``val_loss`` ...).

    Returns:
        One row per group with ``<metric>_mean``, ``<metric>_std`` (0 for a single seed),
        ``num_seeds`` (runs whose ``metric`` is not NaN: the mean and std are over these) and the mean
        ``seconds`` of a run; best mean first within each country and size.
    """
    import pandas as pd

    if metric not in results.columns:
        raise ValueError(f"no column {metric!r} in the results; columns: {list(results.columns)}")
    if results.empty:
        return pd.DataFrame()
    seconds = results.groupby("run_key")["epoch_seconds"].sum().rename("seconds")
    final = final_epochs(results).join(seconds, on="run_key")
    keys = ["stage", "country", "num_target_images", "strategy", "learning_rate"]
    keys += [column for column in COMPARABILITY_COLUMNS if column in results.columns]
    summary = (
        final.groupby(keys, dropna=False)
        .agg(**{
            f"{metric}_mean": (metric, "mean"),
            f"{metric}_std": (metric, lambda values: float(np.std(values, ddof=1)) if len(values) > 1 else 0.0),
            "num_seeds": (metric, "count"),  # the runs (seeds) with a value: NaN is no seed
            "seconds": ("seconds", "mean"),
        })
        .reset_index()
    )
    return summary.sort_values(
        ["stage", "country", "num_target_images", f"{metric}_mean"], ascending=[True, True, True, False]
    ).reset_index(drop=True)


def training_speed(results: "pd.DataFrame") -> "pd.DataFrame":
    """Training speed per run and phase: the median over its trained epochs (epoch 0, the start, trains
    nothing), the first epoch of a phase left out (it includes tracing the new training step) when the
    phase has more than one.

    Returns:
        A ``pandas.DataFrame`` with ``run_key``, ``strategy``, ``phase``, ``trainable_params``,
        ``images_per_s``, ``epoch_seconds`` and ``epochs`` (how many epochs the median is over).
    """
    import pandas as pd

    rows = []
    trained = results[results["epoch"] >= 1].sort_values(["run_key", "epoch"])
    for (key, phase), group in trained.groupby(["run_key", "phase"], sort=False):
        steady = group.iloc[1:] if len(group) > 1 else group
        rows.append({"run_key": key, "strategy": group["strategy"].iloc[0], "phase": phase,
                     "trainable_params": int(group["trainable_params"].iloc[0]),
                     "images_per_s": float(steady["images_per_s"].median()),
                     "epoch_seconds": float(steady["epoch_seconds"].median()), "epochs": len(steady)})
    return pd.DataFrame(rows)


class wide_pandas:
    """Context manager: print whole tables."""

    def __enter__(self) -> None:
        import pandas as pd

        self._context = pd.option_context("display.width", 200, "display.max_columns", 50)
        self._context.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._context.__exit__(*exc)
