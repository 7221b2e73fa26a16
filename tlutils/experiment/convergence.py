"""How runs converge: steps to a given mAP, the best epoch, over-fitting, the L2 term from start to end.

The thesis' source-stage question (issue 19) is about curves, not final numbers: which start reaches a
useful detector first, which plateaus and where, which over-fits, and how much of the displayed loss
is the L2 term rather than detection error. These functions turn a run's epoch rows (the results
table, ``tlutils.experiment.RESULT_COLUMNS``; epoch 0 is the start, evaluated before training) into
one row of such facts per run (:func:`convergence_facts`) and a per-strategy summary over seeds
(:func:`convergence_table`). Pure pandas; no backend.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

#: A run over-fits when its last val mAP@0.5 lies more than this below its best while its training data
#: loss kept falling after the best epoch. 0.02 is about twice the seed spread of the cpu profile's mAPs
#: (docs/results.md), so a dip of one noisy evaluation does not count.
OVERFIT_DROP = 0.02

#: The per-run facts :func:`convergence_facts` returns, in order.
FACT_COLUMNS = ("run_key", "strategy", "seed", "start_l2", "end_l2", "start_map50", "early_map50", "early_step",
                "best_map50", "best_step", "final_map50", "final_loss", "final_data_loss", "steps_to_threshold",
                "min_val_loss_step", "overfits")


def steps_to_reach(history: "pd.DataFrame", threshold: float, metric: str = "val_map50") -> float:
    """The first ``step`` of one run's trained epochs (epoch >= 1, like the best epoch) at which
    ``metric`` is at least ``threshold``; NaN if never.

    Args:
        history: one run's rows (any order), with ``step`` and ``metric``.
        threshold: the value to reach, e.g. 0.7 for val mAP@0.5.
        metric: the column.
    """
    if history["run_key"].nunique() > 1:
        raise ValueError(f"steps_to_reach takes one run's rows, got {history['run_key'].nunique()} runs")
    reached = history[(history["epoch"] >= 1) & (history[metric] >= threshold)]
    return float(reached["step"].min()) if not reached.empty else math.nan


def _trained(history: "pd.DataFrame") -> "pd.DataFrame":
    """A run's trained epochs (epoch >= 1) in order; ``ValueError`` when there is none or no val mAP."""
    trained = history[history["epoch"] >= 1].sort_values("epoch")
    if trained.empty:
        raise ValueError("needs a run with at least one trained epoch (epoch >= 1)")
    if trained["val_map50"].isna().all():
        raise ValueError(f"run {trained['run_key'].iloc[0]} has no val mAP@0.5 in any trained epoch")
    return trained


def overfits(history: "pd.DataFrame", drop: float = OVERFIT_DROP) -> bool:
    """Whether one run over-fits: its last val mAP@0.5 is more than ``drop`` below its best, and its
    training data loss (``localization + confidence``; the L2 term can fall on its own) at the end is
    lower than at the best epoch: it kept fitting the training set while getting worse on the validation
    set. Epoch 0 (no training loss) never counts as the best."""
    trained = _trained(history)
    data_loss = trained["localization"] + trained["confidence"]
    best = trained["val_map50"].idxmax()
    last = trained.index[-1]
    return bool(trained.loc[last, "val_map50"] < trained.loc[best, "val_map50"] - drop
                and data_loss[last] < data_loss[best])


def convergence_facts(results: "pd.DataFrame", threshold: float = 0.7) -> "pd.DataFrame":
    """One row per run (``FACT_COLUMNS``) of how it converged.

    - ``start_l2`` / ``end_l2``: the L2 term (``regularization``) before training (epoch 0, NaN where
      the run has no epoch-0 row) and at the last epoch;
    - ``start_map50``, ``early_map50`` (the first trained epoch, at ``early_step``), ``best_map50`` (at
      ``best_step``), ``final_map50``: val mAP@0.5;
    - ``final_loss``: the last epoch's training loss as displayed (data loss + L2 term), and
      ``final_data_loss``: its ``localization + confidence``;
    - ``steps_to_threshold``: :func:`steps_to_reach` of ``threshold``; ``min_val_loss_step``: where the
      validation loss was lowest (trained epochs); ``overfits``: :func:`overfits`.

    Raises:
        ValueError: no rows, or a run without a trained epoch or without any val mAP.
    """
    import pandas as pd

    if results.empty:
        raise ValueError("convergence_facts needs the rows of at least one run")
    facts = []
    for key, history in results.groupby("run_key", sort=False):
        trained = _trained(history)
        start = history[history["epoch"] == 0]
        best = trained.loc[trained["val_map50"].idxmax()]
        last = trained.iloc[-1]
        facts.append({
            "run_key": key, "strategy": last["strategy"], "seed": int(last["seed"]),
            "start_l2": float(start["regularization"].iloc[0]) if not start.empty else math.nan,
            "end_l2": float(last["regularization"]),
            "start_map50": float(start["val_map50"].iloc[0]) if not start.empty else math.nan,
            "early_map50": float(trained["val_map50"].iloc[0]), "early_step": int(trained["step"].iloc[0]),
            "best_map50": float(best["val_map50"]), "best_step": int(best["step"]),
            "final_map50": float(last["val_map50"]), "final_loss": float(last["loss"]),
            "final_data_loss": float(last["localization"] + last["confidence"]),
            "steps_to_threshold": steps_to_reach(history, threshold),
            "min_val_loss_step": int(trained.loc[trained["val_loss"].idxmin(), "step"]),
            "overfits": overfits(history),
        })
    return pd.DataFrame(facts, columns=list(FACT_COLUMNS))


def convergence_table(facts: "pd.DataFrame") -> "pd.DataFrame":
    """Per strategy (rows in ``ordered_strategies`` order): the mean over seeds of every numeric fact of
    :func:`convergence_facts`, ``*_std`` (sample std) for the mAPs and losses, ``reached`` (seeds that
    reached the threshold: the mean of ``steps_to_threshold`` is over those only), ``overfit`` (seeds
    that over-fit) and ``seeds``."""
    from tlutils.experiment.results import ordered_strategies

    numeric = ["start_l2", "end_l2", "start_map50", "early_map50", "early_step", "best_map50", "best_step", "final_map50", "final_loss",
               "final_data_loss", "steps_to_threshold", "min_val_loss_step"]
    grouped = facts.groupby("strategy")
    table = grouped[numeric].mean()
    for column in ("early_map50", "best_map50", "final_map50", "final_loss", "final_data_loss"):
        table[f"{column}_std"] = grouped[column].std(ddof=1)
    table["reached"] = grouped["steps_to_threshold"].count()
    table["overfit"] = grouped["overfits"].sum().astype(int)
    table["seeds"] = grouped.size()
    return table.loc[ordered_strategies(table.index)]
