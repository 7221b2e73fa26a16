"""Print the README's transfer-study tables (Markdown) from a results file.

One table per target country (and class matching, ``name`` or ``superclass``): a row per strategy,
a column per number of target images, each cell the final-epoch val mAP@0.5 as ``mean ± std (n
seeds)`` over the runs that differ only in the seed (``tlutils.experiment.summarize``), and a first
row "zero-shot": the source detector on the target before any training (epoch 0 of the transfer
runs). ``--by-size`` adds the same tables for mAP@0.5 of small, medium and large objects (COCO's
buckets). Only runs with the given L2 factor are shown (a ``tlutils sweep`` uses 0, notebook 05
0.0005), so the two never mix. ``--rates`` prints instead the learning-rate table of issue 20: each
strategy at the base rate chosen on val, scored on the test split, with the forgetting on the source
(``tlutils.experiment.selection.learning_rate_table``; runs of ``tlutils sweep --learning-rates ...
--evaluate-test --evaluate-source``), then every rate tried. ``--budget N`` prints the runs of N steps
seen after the profile's steps, at their end and at equal training time
(``tlutils.experiment.results.budget_views``). ``--starts`` prints the source-start study of notebook 06
(``tlutils study source-starts``): per start, mean ± std over seeds of how it converged
(``tlutils.experiment.convergence``).

Usage: ``python scripts/results_tables.py [runs/cpu ...] [--l2 0.0] [--by-size]`` (several results files, e.g. of
sweeps run side by side with ``--out``, are read as one).
"""

from __future__ import annotations

import argparse

import pandas as pd

from tlutils.experiment import load_results, summarize
from tlutils.experiment.selection import learning_rate_table
from tlutils.profiles import get_profile


def cell(mean: float, std: float, seeds: int) -> str:
    """``0.693 ± 0.010 (3)``; a single seed has no spread."""
    return f"{mean:.3f} ± {std:.3f} ({seeds})" if seeds > 1 else f"{mean:.3f} (1)"


def zero_shot(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Epoch 0 of the source-initialized runs as a summary row per size (strategy "zero-shot"): the same
    detector whatever the strategy, so one value per seed."""
    start = results[(results["epoch"] == 0) & results["source_run_key"].notna()]
    start = start.drop_duplicates(["country", "classes", "num_target_images", "seed"])
    return (start.groupby(["country", "classes", "num_target_images"])[metric]
            .agg(**{f"{metric}_mean": "mean", f"{metric}_std": "std", "num_seeds": "count"})
            .reset_index().assign(strategy="zero-shot"))


def country_table(summary, country: str, metric: str = "val_map50") -> str:
    """The Markdown table of one country: strategies (best at the largest size first) x sizes."""
    rows = summary[summary["country"] == country]
    sizes = sorted(rows["num_target_images"].unique())
    # Best at the largest size first; strategies not run at that size follow in their own order.
    ranked = rows.sort_values(["num_target_images", f"{metric}_mean"], ascending=[False, False])
    strategies = list(dict.fromkeys(["zero-shot"] * int((ranked["strategy"] == "zero-shot").any()) + list(ranked["strategy"])))
    lines = ["| strategy | " + " | ".join(f"{size} images" for size in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for strategy in strategies:
        cells = []
        for size in sizes:
            match = rows[(rows["strategy"] == strategy) & (rows["num_target_images"] == size)]
            cells.append(cell(*match.iloc[0][[f"{metric}_mean", f"{metric}_std", "num_seeds"]]) if len(match) else "–")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rates_table(results: pd.DataFrame) -> str:
    """The Markdown learning-rate table: a row per country and strategy."""
    rates = learning_rate_table(results, default_rate=get_profile(results["profile"].iloc[0]).learning_rate)
    if rates.empty:
        raise SystemExit("no runs that scored the test split at two or more learning rates")
    lines = ["| country | images | strategy | base rate chosen on val (of) | val mAP@0.5 | test mAP@0.5 | "
             "test at the profile's rate | forgetting on the source |", "|---|---|---|---|---|---|---|---|"]
    for row in rates.sort_values(["country", "num_target_images", "test_map50_mean"],
                                 ascending=[True, True, False]).itertuples():
        edge = ", at an end of the range" if row.at_edge else ""
        lines.append(f"| {row.country} | {row.num_target_images} | {row.strategy} | {row.learning_rate:g} "
                     f"({row.rates_tried}{edge}) | {row.val_map50_mean:.3f} | "
                     f"{cell(row.test_map50_mean, row.test_map50_std, row.num_seeds)} | "
                     f"{row.test_map50_at_default:.3f} | {cell(row.forgetting_mean, row.forgetting_std, row.num_seeds)} |")
    return "\n".join(lines)


def per_rate_table(results: pd.DataFrame) -> str:
    """Markdown: val, test and forgetting per country, strategy and base rate (mean ± std (seeds))."""
    from tlutils.experiment.results import add_forgetting, final_epochs

    studied = results[results["evaluate_test"].fillna(False).astype(bool)]
    final = final_epochs(add_forgetting(studied))
    lines = ["| country | strategy | base rate | val mAP@0.5 | test mAP@0.5 | forgetting |", "|---|---|---|---|---|---|"]
    for (country, strategy, rate), runs in final.groupby(["country", "strategy", "learning_rate"]):
        cells = [cell(runs[column].mean(), runs[column].std(), runs[column].count())
                 for column in ("val_map50", "test_map50", "forgetting")]
        lines.append(f"| {country} | {strategy} | {rate:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def budget_table(results: pd.DataFrame, steps: int) -> str:
    """Markdown: the runs of ``steps`` steps, one row per country, view and strategy."""
    from tlutils.experiment.results import budget_views

    long_runs = results[(results["total_steps"] == steps) & ~results["evaluate_test"].fillna(False).astype(bool)]
    if long_runs.empty:
        raise SystemExit(f"no runs of {steps} steps")
    short = get_profile(long_runs["profile"].iloc[0]).target_steps
    lines = ["| country | view | strategy | steps reached | val mAP@0.5 | training seconds |", "|---|---|---|---|---|---|"]
    for country, rows in long_runs.groupby("country"):
        for view, summary in budget_views(rows, short).items():
            for row in summary.itertuples():
                lines.append(f"| {country} | {view} | {row.strategy} | {row.steps:.0f} | "
                             f"{cell(row.val_map50_mean, row.val_map50_std, row.num_seeds)} | {row.seconds:.0f} |")
    return "\n".join(lines)


def starts_table(results: pd.DataFrame, threshold: float = 0.7) -> str:
    """Markdown: the source-start study, one row per start (``convergence_table`` of its runs)."""
    from tlutils.experiment import convergence_facts, convergence_table

    facts = convergence_facts(results, threshold)
    table = convergence_table(facts)
    spread = facts.groupby("strategy")[["start_l2", "end_l2", "final_loss", "final_data_loss"]].std(ddof=1)
    lines = ["| start | seeds | L2 term before -> after | val mAP@0.5 before / after 1 epoch / best (step) / final "
             f"| displayed loss at the end (data loss + L2) | val loss lowest at step | steps to {threshold:g} "
             "| over-fitted |", "|---|---|---|---|---|---|---|---|"]
    for start, row in table.iterrows():
        n = int(row.seeds)
        lines.append(
            f"| {start} | {n} | {row.start_l2:.2f} -> {row.end_l2:.2f} ± {spread.loc[start, 'end_l2']:.2f} | "
            f"{row.start_map50:.3f} / {cell(row.early_map50, row.early_map50_std, n)} / "
            f"{cell(row.best_map50, row.best_map50_std, n)} ({row.best_step:.0f}) / "
            f"{cell(row.final_map50, row.final_map50_std, n)} | "
            f"{row.final_loss:.2f} ± {spread.loc[start, 'final_loss']:.2f} ({row.final_data_loss:.2f} + "
            f"{row.end_l2:.2f}) | {row.min_val_loss_step:.0f} | "
            f"{f'{row.steps_to_threshold:.0f} ({int(row.reached)} of {n})' if row.reached else f'never (0 of {n})'} | "
            f"{int(row.overfit)} of {n} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="*", default=["runs/cpu"], help="results.csv files or their folders")
    parser.add_argument("--l2", type=float, default=0.0, help="L2 factor of the runs to show")
    parser.add_argument("--by-size", action="store_true", help="also mAP@0.5 of small, medium and large objects")
    parser.add_argument("--rates", action="store_true", help="the learning-rate table (chosen on val, test, forgetting)")
    parser.add_argument("--budget", type=int, default=None, help="the runs of this many steps, three views")
    parser.add_argument("--starts", action="store_true", help="the source-start study (tlutils study source-starts)")
    args = parser.parse_args()
    results = pd.concat([load_results(path) for path in args.results], ignore_index=True)
    if args.starts:
        print(starts_table(results[(results["stage"] == "source") & (results["l2_regularization"] == args.l2)]))
        return
    results = results[(results["stage"] == "target") & (results["l2_regularization"] == args.l2)]
    if results.empty:
        raise SystemExit(f"no target runs with L2 {args.l2} in {args.results}")
    if args.rates:
        print(f"{rates_table(results)}\n\n{per_rate_table(results)}")
        return
    if args.budget:
        print(budget_table(results, args.budget))
        return
    metrics = ["val_map50"] + (["map50_small", "map50_medium", "map50_large"] if args.by_size else [])
    for metric in metrics:
        for (country, classes), rows in results.groupby(["country", "classes"]):
            summary = pd.concat([zero_shot(rows, metric), summarize(rows, metric)], ignore_index=True)
            summary = summary[summary[f"{metric}_mean"].notna()]
            print(f"**{country}, classes by {classes}, {metric}**\n\n{country_table(summary, country, metric)}\n")


if __name__ == "__main__":
    main()
