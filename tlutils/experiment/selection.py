"""Choosing a learning rate per strategy on one split and reporting it on another.

A table that gives every strategy the same learning rate compares the rates as much as the
strategies (fine-tuning at a tenth of the base rate against frozen variants at the full rate). The
fair comparison sweeps the rate per strategy, picks each strategy's best on the **validation** split,
and reports the picked run on a **test** split that took no part in the choice: choosing and
reporting on one split rewards the luckiest of several tries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import pandas as pd

#: What tells settings apart (with ``COMPARABILITY_COLUMNS``: data, budget, optimizer, ...), besides the
#: learning rate and the seed.
SETTING_COLUMNS = ("stage", "country", "num_target_images", "strategy")


def select_learning_rates(results: "pd.DataFrame", choose_by: str = "val_map50",
                          report: Sequence[str] = ("test_map50",)) -> "pd.DataFrame":
    """Each setting's learning rate with the best mean ``choose_by`` over seeds, and its ``report`` numbers.

    Args:
        results: the results table (any epochs; each run's last epoch is used), runs of one setting at
            several ``learning_rate`` values and seeds.
        choose_by: the column the rate is chosen on (the validation metric, higher is better).
        report: the columns reported for the chosen rate (mean and std over its seeds).

    Returns:
        One row per setting (:data:`SETTING_COLUMNS` and ``COMPARABILITY_COLUMNS`` present in the
        table; settings where no rate has ``choose_by`` are left out): ``learning_rate`` (the
        chosen one), ``rates_tried``, ``<choose_by>_mean``, then ``<column>_mean`` / ``<column>_std``
        per ``report`` column, and ``num_seeds`` of the chosen rate.

    Raises:
        ValueError: a column is missing, or ``choose_by`` is also reported (choosing and reporting on
            the same numbers is the bias this function exists to avoid).
    """
    from tlutils.experiment.results import COMPARABILITY_COLUMNS, final_epochs

    if choose_by in report:
        raise ValueError(f"{choose_by!r} both chooses and is reported: report another split's metric")
    missing = sorted({choose_by, *report, "learning_rate", "seed", "run_key"} - set(results.columns))
    if missing:
        raise ValueError(f"the results table has no {missing}")
    final = final_epochs(results)
    keys = [column for column in (*SETTING_COLUMNS, *COMPARABILITY_COLUMNS) if column in final.columns]
    by_rate = final.groupby([*keys, "learning_rate"], dropna=False)
    stats = by_rate[choose_by].mean().rename(f"{choose_by}_mean").to_frame()
    for column in report:
        stats[f"{column}_mean"] = by_rate[column].mean()
        stats[f"{column}_std"] = by_rate[column].std(ddof=1)  # as summarize: the sample std over seeds
    stats["num_seeds"] = by_rate["seed"].nunique()
    stats = stats.reset_index()
    stats["rates_tried"] = stats.groupby(keys, dropna=False)["learning_rate"].transform("count")
    stats = stats[stats[f"{choose_by}_mean"].notna()]  # a rate without the metric cannot be chosen
    best = stats.loc[stats.groupby(keys, dropna=False)[f"{choose_by}_mean"].idxmax()]
    columns = [*keys, "learning_rate", "rates_tried", f"{choose_by}_mean",
               *(f"{column}_{what}" for column in report for what in ("mean", "std")), "num_seeds"]
    return best[columns].reset_index(drop=True)


def learning_rate_table(results: "pd.DataFrame", default_rate: float | None = None) -> "pd.DataFrame":
    """The supervisor's table: each setting's strategy at the base learning rate chosen on val, scored on
    the **test** split, with the forgetting on the source (``forgetting``: epoch 0 minus last
    ``source_map50``), beside the test mAP at ``default_rate`` (the profile's rate, the one the plain
    study uses) when given.

    Reads the runs that scored the test split (``evaluate_test``) at two or more rates; returns an
    empty table when there are none.

    Returns:
        :func:`select_learning_rates`' columns for ``test_map50`` and ``forgetting``, ``at_edge`` (the
        chosen rate is the lowest or highest tried: the best may lie outside the range), and with
        ``default_rate`` ``test_map50_at_default`` (mean over seeds; NaN where that rate was not run).
    """
    from tlutils.experiment.results import add_forgetting, final_epochs

    if "evaluate_test" not in results.columns:
        return results.iloc[:0]
    studied = results[results["evaluate_test"].fillna(False).astype(bool)]
    if studied.empty or studied["learning_rate"].nunique() < 2:
        return studied.iloc[:0]
    from tlutils.experiment.results import COMPARABILITY_COLUMNS

    studied = add_forgetting(studied)
    table = select_learning_rates(studied, choose_by="val_map50", report=("test_map50", "forgetting"))
    final = final_epochs(studied)
    keys = [column for column in (*SETTING_COLUMNS, *COMPARABILITY_COLUMNS) if column in final.columns]
    tried = final.groupby(keys, dropna=False)["learning_rate"].agg(lowest="min", highest="max").reset_index()
    table = table.merge(tried, on=keys, how="left")
    # the best rate at either end of the range tried: the optimum may lie outside it
    table["at_edge"] = (table["learning_rate"] == table.pop("lowest")) | (table["learning_rate"] == table.pop("highest"))
    if default_rate is not None:
        at_default = final[final["learning_rate"] == default_rate]
        means = at_default.groupby(keys, dropna=False)["test_map50"].mean().rename("test_map50_at_default")
        table = table.merge(means.reset_index(), on=keys, how="left")
    return table
