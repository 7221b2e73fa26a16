"""Sentences computed from a run's numbers, so a notebook's prose can never contradict its own rerun.

A notebook that says "fine-tuning overtakes the frozen variants" is right for one run and wrong for
the next seed, profile or machine. These functions read the results table (or a summary of it) and
return the sentence the numbers support, with the numbers in it. Two means count as different only
when their gap exceeds the seed spread (:func:`compare`), because on short CPU runs many differences
are within it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping, Sequence

if TYPE_CHECKING:
    import pandas as pd

#: Verdicts of :func:`compare`, by the sign of the gap once it exceeds the spread.
BEATS, WITHIN, BEHIND = "beats", "is within the seed spread of", "falls behind"


def compare(mean_a: float, std_a: float, mean_b: float, std_b: float) -> str:
    """:data:`BEATS` when ``a - b`` exceeds the larger of the two standard deviations (NaN counts as 0,
    one seed), :data:`BEHIND` when ``b - a`` does, else :data:`WITHIN`.

    Raises:
        ValueError: a mean is NaN (nothing to compare).
    """
    if math.isnan(mean_a) or math.isnan(mean_b):
        raise ValueError("compare needs two measured means, got NaN")
    spread = max(0.0 if math.isnan(std_a) else std_a, 0.0 if math.isnan(std_b) else std_b)
    gap = mean_a - mean_b
    return BEATS if gap > spread else BEHIND if -gap > spread else WITHIN


def _cell(summary: "pd.DataFrame", strategy: str, metric: str) -> tuple[float, float]:
    """``(mean, std)`` of a strategy's row; the std is NaN for a single seed (``summarize`` gives 0 there,
    which is no measured spread)."""
    row = summary[summary["strategy"] == strategy]
    if row.empty:
        raise ValueError(f"no {strategy!r} row in the summary; it has {sorted(summary['strategy'].unique())}")
    seeds = int(row["num_seeds"].iloc[0]) if "num_seeds" in row else 2
    std = float(row[f"{metric}_std"].iloc[0]) if seeds > 1 else float("nan")
    return float(row[f"{metric}_mean"].iloc[0]), std


def _number(mean: float, std: float) -> str:
    return f"{mean:.3f}, one seed" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def compare_strategies(summary: "pd.DataFrame", first: str, second: str, metric: str = "val_map50") -> str:
    """"finetune (0.412 ± 0.020) beats head_only (0.301 ± 0.015)" for one setting.

    Args:
        summary: :func:`~tlutils.experiment.results.summarize` rows of **one** setting (country, size):
            one row per strategy with ``<metric>_mean`` and ``<metric>_std``.
        first, second: the strategies compared.
    """
    _check_one_setting(summary)
    mean_a, std_a = _cell(summary, first, metric)
    mean_b, std_b = _cell(summary, second, metric)
    return f"{first} ({_number(mean_a, std_a)}) {compare(mean_a, std_a, mean_b, std_b)} {second} ({_number(mean_b, std_b)})"


def best_of(summary: "pd.DataFrame", strategies: Sequence[str], metric: str = "val_map50") -> str:
    """The strategy of ``strategies`` (those present in the one-setting ``summary``) with the best mean."""
    _check_one_setting(summary)
    present = summary[summary["strategy"].isin(strategies)]
    if present.empty:
        raise ValueError(f"none of {list(strategies)} is in the summary")
    return str(present.loc[present[f"{metric}_mean"].idxmax(), "strategy"])


def transfer_against_scratch(summary: "pd.DataFrame", metric: str = "val_map50") -> str:
    """Whether the best source-initialized strategy beats scratch in one setting, with the numbers."""
    transferred = [name for name in summary["strategy"] if name != "scratch"]
    return compare_strategies(summary, best_of(summary, transferred, metric), "scratch", metric)


def finetune_against_frozen(summary: "pd.DataFrame", metric: str = "val_map50") -> str:
    """finetune against the best frozen variant (``freeze:*``, ``head_only``) of one setting."""
    frozen = [name for name in summary["strategy"] if name.startswith("freeze:") or name == "head_only"]
    return compare_strategies(summary, "finetune", best_of(summary, frozen, metric), metric)


def setting_verdicts(summary: "pd.DataFrame", metric: str = "val_map50") -> list[str]:
    """The comparisons one setting's strategies allow: :func:`transfer_against_scratch` when scratch and
    a transfer ran, :func:`finetune_against_frozen` when finetune and a frozen variant ran."""
    names = set(summary["strategy"])
    verdicts = []
    if "scratch" in names and len(names) > 1:
        verdicts.append(transfer_against_scratch(summary, metric))
    if "finetune" in names and any(name.startswith("freeze:") or name == "head_only" for name in names):
        verdicts.append(finetune_against_frozen(summary, metric))
    return verdicts


def rate_confound(setting: "pd.DataFrame") -> str:
    """Whether one setting's leader on the test split changes when every strategy gets its own learning
    rate: ``setting`` is :func:`tlutils.experiment.selection.learning_rate_table`'s rows of one country
    and size (``test_map50_mean`` at the rate val chose, ``test_map50_at_default`` at the profile's).
    Only strategies with both numbers are compared; a different leader counts as a change only where
    it beats the other beyond the seed spread (:func:`compare`)."""
    _check_one_setting(setting)
    both = setting.dropna(subset=["test_map50_mean", "test_map50_at_default"])
    if both.empty:
        return "no strategy has test scores both at its own rate and at the profile's"
    own = best_of(both, list(both["strategy"]), "test_map50")
    default = str(both.loc[both["test_map50_at_default"].idxmax(), "strategy"])
    sentence = (f"at its own rate {own} leads on test ({_number(*_cell(both, own, 'test_map50'))}); at the "
                f"profile's rate {default} led ({both['test_map50_at_default'].max():.3f})")
    if default == own:
        return f"{sentence}: the same leader"
    changed = compare(*_cell(both, own, "test_map50"), *_cell(both, default, "test_map50")) == BEATS
    return f"{sentence}: {'the leader changes' if changed else 'another leader, within the seed spread'}"


def rank_agreement(values: "pd.DataFrame", by: str, against: str = "val_map50") -> str:
    """Whether ranking rows (one per strategy, indexed by it) by ``by`` (lower is better: a loss)
    gives the order of ``against`` (higher is better: mAP); names both orders.
    """
    if len(values) < 2:
        raise ValueError(f"ranking needs at least two rows, got {len(values)}")
    by_loss = list(values.sort_values(by).index)
    by_map = list(values.sort_values(against, ascending=False).index)
    verdict = "the same order" if by_loss == by_map else "a different order"
    return (f"lowest {by} first: {', '.join(by_loss)}; highest {against} first: {', '.join(by_map)} "
            f"-- {verdict}")


#: Below this a start value prints as 0.000, and a change relative to it (e.g. "+359660%" for a random
#: initialization's mAP of 4e-6) says nothing: :func:`change_sentence` leaves it out.
RELATIVE_FLOOR = 0.0005


def change_sentence(name: str, before: float, after: float, what: str = "val mAP@0.5") -> str:
    """"<name>: <what> 0.512 -> 0.104 (-80 %)"; the relative change is left out when ``before`` prints
    as 0.000 (:data:`RELATIVE_FLOOR`)."""
    relative = "" if abs(before) < RELATIVE_FLOOR else f" ({(after - before) / abs(before):+.0%})"
    return f"{name}: {what} {before:.3f} -> {after:.3f}{relative}"


def falls_first(history: Sequence[float]) -> bool:
    """Whether the first value of a per-epoch curve is its largest (a loss that falls from the start)."""
    values = [float(value) for value in history]  # by position: a sliced Series keeps its index labels
    if not values:
        raise ValueError("an empty curve")
    return values[0] >= max(values)


def worst_and_best(values: Mapping[str, float]) -> tuple[str, str]:
    """The keys of the smallest and the largest value."""
    if not values:
        raise ValueError("nothing to compare")
    return min(values, key=values.__getitem__), max(values, key=values.__getitem__)


def start_sentences(table: "pd.DataFrame", threshold: float, reference: str = "scratch") -> list[str]:
    """The source-start study (``tlutils.experiment.convergence.convergence_table``, one row per start)
    in sentences: the displayed loss against mAP, whether ``reference`` ends lowest by the displayed loss
    (the student saw scratch lowest), each start's L2 term from start to end, early and best mAP against
    ``reference`` beyond the seed spread (He et al. 2019: pre-training mainly speeds early convergence),
    the steps to ``threshold`` and over-fitting."""
    if reference not in table.index or len(table) < 2:
        raise ValueError(f"start_sentences needs {reference!r} and another start, got {list(table.index)}")
    seeds = table["seeds"].astype(int)
    by_loss = list(table.sort_values("final_loss").index)
    sentences = [
        rank_agreement(table, by="final_loss", against="final_map50"),
        f"{reference} ends {'with the lowest' if by_loss[0] == reference else 'without the lowest'} displayed "
        f"loss ({table.loc[reference, 'final_loss']:.2f}; lowest: {by_loss[0]}, "
        f"{table.loc[by_loss[0], 'final_loss']:.2f}); the student saw scratch lowest",
        "L2 term before -> after training: " + "; ".join(
            f"{start} {row.start_l2:.2f} -> {row.end_l2:.2f}" for start, row in table.iterrows()),
    ]
    for what, column, step in (("early", "early_map50", "early_step"), ("best", "best_map50", "best_step")):
        cell = {start: (row[column], row[f"{column}_std"] if seeds[start] > 1 else math.nan)
                for start, row in table.iterrows()}
        for start in table.index.drop(reference):
            sentences.append(f"{what} val mAP@0.5 (step {table.loc[start, step]:.0f}): {start} "
                             f"({_number(*cell[start])}) {compare(*cell[start], *cell[reference])} "
                             f"{reference} ({_number(*cell[reference])})")
    sentences.append(f"reached val mAP@0.5 {threshold:g}: " + "; ".join(
        f"{start} in {int(row.reached)} of {int(row.seeds)} seeds"
        + (f" (step {row.steps_to_threshold:.0f} on average)" if row.reached else "") for start, row in table.iterrows()))
    overfit = "; ".join(f"{start} {int(row.overfit)} of {int(row.seeds)}" for start, row in table.iterrows())
    sentences.append(f"over-fitted (val mAP fell from its best while the training data loss kept falling): {overfit}")
    return sentences


def _check_one_setting(summary: "pd.DataFrame") -> None:
    for column in ("country", "num_target_images"):
        if column in summary and summary[column].nunique() > 1:
            raise ValueError(f"the summary holds several settings ({column}: {sorted(summary[column].unique())}); "
                             "select one first")
    if summary["strategy"].duplicated().any():
        raise ValueError("the summary has several rows per strategy (other learning rates or L2?); select one")
