"""Figures of training runs and transfer studies, from the experiment runner's results table
(``tlutils.experiment.RESULT_COLUMNS``: one row per run and epoch).

Each function returns a pyplot figure (shown inline by Jupyter at the end of the cell); save it with
``save_figure``. Columns are named by their human labels (``tlutils.plotting.core.label_of``: "val
mAP@0.5", not ``val_map50``), and panels that show the same quantity share their y-scale. pandas and
seaborn are imported inside the functions.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tlutils.experiment.results import final_epochs, ordered_strategies
from tlutils.plotting.core import _subplots, label_of, share_y_by_quantity
from tlutils.transfer import freeze_depth_order

__all__ = ["plot_freeze_depth", "plot_history", "plot_loss_components",
           "plot_loss_vs_map", "plot_map_by_shift", "plot_map_vs_images", "plot_training_speed"]

def plot_history(results: Any, metrics: Sequence[str] = ("loss", "val_loss", "val_map50"),
                 hue: str | None = "strategy", x: str = "epoch", share_y: bool = True):
    """One panel per metric against ``x``, a line per value of ``hue`` (mean over seeds, band = std).

    Args:
        results: rows of the results table (``run``, ``sweep`` or ``load_results``).
        metrics: columns to plot, e.g. ``("loss", "regularization", "val_map50")``.
        hue: column that tells the lines apart (``"strategy"``, ``"learning_rate"``, ...); ``None``: one line.
        x: ``"epoch"`` or ``"step"``.
        share_y: panels of the same quantity (every loss column; every mAP column:
            ``tlutils.plotting.core.QUANTITIES``) share one y-scale; ``False``: each its own.
    """
    import seaborn as sns

    table = results.copy()
    order = None
    if hue is not None:
        if hue == "strategy":
            order = ordered_strategies(table[hue])
        else:
            table[hue] = [f"{value:g}" if isinstance(value, float) else str(value) for value in table[hue]]
            order = list(dict.fromkeys(table.sort_values(hue)[hue]))
    figure, axes = _subplots(len(metrics), 3, 4.0, 3.2)
    if share_y:
        share_y_by_quantity(axes, metrics)
    for index, (ax, metric) in enumerate(zip(axes, metrics)):
        sns.lineplot(data=table, x=x, y=metric, hue=hue, hue_order=order, marker="o", errorbar="sd", ax=ax,
                     legend=index == len(metrics) - 1)
        ax.set(xlabel=label_of(x), ylabel=label_of(metric))
    if hue is not None and len(order) > 0:
        sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.02, 1.0), title=label_of(hue))
    return figure


def _country_order(countries: Sequence[str]) -> list[str]:
    """Countries by their shift from the source (``tlutils.data.synth.COUNTRIES`` order), unknown ones last."""
    from tlutils.data.synth import COUNTRIES

    known = list(COUNTRIES)
    present = list(dict.fromkeys(countries))
    return sorted(present, key=lambda country: (known.index(country) if country in known else len(known), country))


def plot_map_vs_images(summary: Any, metric: str = "val_map50"):
    """mAP against the number of target images, a line per strategy, a panel per country.

    Args:
        summary: ``tlutils.experiment.summarize(results)`` (target rows): ``<metric>_mean`` and
            ``<metric>_std`` per country, strategy and number of images; error bars are the std over seeds.
    """
    from tlutils.data.synth import COUNTRY_SHIFT

    table = summary[summary["stage"] == "target"] if "stage" in summary else summary
    countries = _country_order(table["country"])
    figure, axes = _subplots(len(countries), len(countries), 4.0, 3.4, sharey=True)  # one mAP scale
    for ax, country in zip(axes, countries):
        rows = table[table["country"] == country]
        for strategy in ordered_strategies(rows["strategy"]):
            line = rows[rows["strategy"] == strategy].sort_values("num_target_images")
            ax.errorbar(line["num_target_images"], line[f"{metric}_mean"], yerr=line[f"{metric}_std"], marker="o",
                        capsize=3, label=strategy)
        ax.set_xscale("log")
        sizes = sorted(rows["num_target_images"].unique())
        ax.set_xticks(sizes, [str(size) for size in sizes])
        ax.minorticks_off()
        ax.set(title=f"{country} ({COUNTRY_SHIFT.get(country, '?')} shift)", xlabel=label_of("num_target_images"))
    axes[0].set_ylabel(label_of(metric))
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), title="strategy")
    return figure


def plot_map_by_shift(summary: Any, num_target_images: int | None = None, metric: str = "val_map50"):
    """Grouped bars: ``metric`` per country (ordered by shift) and strategy, at one number of target images.

    ``num_target_images`` defaults to the largest in ``summary``. Error bars: std over seeds.
    """
    import matplotlib.pyplot as plt

    from tlutils.data.synth import COUNTRY_SHIFT

    table = summary[summary["stage"] == "target"] if "stage" in summary else summary
    size = int(num_target_images or table["num_target_images"].max())
    table = table[table["num_target_images"] == size]
    countries, strategies = _country_order(table["country"]), ordered_strategies(table["strategy"])
    figure, ax = plt.subplots(figsize=(1.6 + 1.4 * len(countries) * max(1, len(strategies)) / 4, 3.6),
                              layout="constrained")
    width = 0.8 / max(1, len(strategies))
    for index, strategy in enumerate(strategies):
        rows = table[table["strategy"] == strategy].set_index("country").reindex(countries)
        ax.bar(np.arange(len(countries)) + (index - (len(strategies) - 1) / 2) * width, rows[f"{metric}_mean"],
               width, yerr=rows[f"{metric}_std"], capsize=2, label=strategy)
    ax.set_xticks(np.arange(len(countries)), [f"{c}\n({COUNTRY_SHIFT.get(c, '?')})" for c in countries])
    ax.set(ylabel=label_of(metric), title=f"{label_of(metric)} by country shift, {size} target images")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), title="strategy")
    return figure


def plot_loss_components(results: Any):
    """Final training loss split into its parts per strategy (stacked), next to the final validation mAP.

    The stacked parts are ``localization``, ``confidence`` and ``regularization`` (the L2 penalty that
    Keras adds to the displayed ``loss``); means over seeds of each run's last epoch.
    """
    import matplotlib.pyplot as plt

    final = final_epochs(results)
    strategies = ordered_strategies(final["strategy"])
    means = final.groupby("strategy")[["localization", "confidence", "regularization", "val_map50"]].mean()
    means = means.reindex(strategies)
    figure, axes = plt.subplots(1, 2, figsize=(3.0 + 1.1 * len(strategies), 3.6), layout="constrained")
    bottom = np.zeros(len(strategies))
    for part, color in (("localization", "#377eb8"), ("confidence", "#4daf4a"), ("regularization", "#999999")):
        axes[0].bar(strategies, means[part], bottom=bottom, color=color, label=label_of(part))
        bottom += np.asarray(means[part], dtype=float)
    axes[0].set(title=f"final {label_of('loss')} = sum of the parts", ylabel=label_of("loss"))
    axes[0].legend()
    axes[1].bar(strategies, means["val_map50"], color="#ff7f00")
    axes[1].set(title=f"final {label_of('val_map50')}", ylabel=label_of("val_map50"))
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=30)
    return figure


def plot_loss_vs_map(results: Any):
    """Each run's final training loss and validation loss against its validation mAP, coloured by strategy."""
    import seaborn as sns

    final = final_epochs(results)
    order = ordered_strategies(final["strategy"])
    figure, axes = _subplots(2, 2, 4.2, 3.4, sharey=True)  # both panels: val mAP@0.5
    for index, (ax, column) in enumerate(zip(axes, ("loss", "val_loss"))):
        sns.scatterplot(data=final, x=column, y="val_map50", hue="strategy", hue_order=order, s=50, ax=ax,
                        legend=index == 1)
        ax.set(title=f"final {label_of(column)} vs {label_of('val_map50')}", xlabel=label_of(column),
               ylabel=label_of("val_map50"))
    axes[1].set_ylabel("")
    sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.02, 1.0), title=label_of("strategy"))
    return figure


def plot_training_speed(speed: Any, total_params: int):
    """Images per second against the trainable share of the parameters (``training_speed``'s table)."""
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    share = speed["trainable_params"] / float(total_params)
    ax.scatter(share, speed["images_per_s"], s=40, color="#377eb8")
    for x, y, label, phase in zip(share, speed["images_per_s"], speed["strategy"], speed["phase"]):
        text = f"{label} ({phase})" if label == "two_stage" else label
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax.set(xlabel="trainable share of the parameters", ylabel=label_of("images_per_s"),
           title="does freezing speed up training?", xlim=(0, 1.05))
    ax.set_ylim(bottom=0)
    return figure


def plot_freeze_depth(summary: Any, metric: str = "val_map50"):
    """``metric`` against how deep the transferred detector is frozen (Yosinski et al.'s AnB curve).

    Args:
        summary: ``summarize(results)`` rows of one country and one number of target images; the
            strategies of ``tlutils.transfer.freeze_depth_order()`` present form the curve and ``scratch``, when present,
            is drawn as a horizontal reference line. Error bars: std over seeds.
    """
    import matplotlib.pyplot as plt

    table = summary.set_index("strategy")
    depths = [label for label in freeze_depth_order() if label in table.index]
    figure, ax = plt.subplots(figsize=(6.5, 3.6), layout="constrained")
    ax.errorbar(range(len(depths)), table.loc[depths, f"{metric}_mean"], yerr=table.loc[depths, f"{metric}_std"],
                marker="o", capsize=3, label="transferred from the source")
    if "scratch" in table.index:
        ax.axhline(table.loc["scratch", f"{metric}_mean"], color="grey", linestyle="--", label="scratch")
    ax.set_xticks(range(len(depths)), [label.replace("freeze:", "up to ") for label in depths], rotation=30)
    ax.set(xlabel="frozen part (shallow -> deep)", ylabel=label_of(metric), title="how deep to freeze?")
    ax.legend()
    return figure
