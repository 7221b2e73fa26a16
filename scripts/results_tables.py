"""Print the README's transfer-study tables (Markdown) from a results file.

One table per target country: a row per strategy, a column per number of target images, each cell
the final-epoch val mAP@0.5 as ``mean ± std (n seeds)`` over the runs that differ only in the seed
(``tlutils.experiment.summarize``). Only runs with the given L2 factor are shown (a ``tlutils sweep``
uses 0, notebook 05 0.0005), so the two never mix.

Usage: ``python scripts/results_tables.py [runs/cpu ...] [--l2 0.0]`` (several results files, e.g. of
sweeps run side by side with ``--out``, are read as one).
"""

from __future__ import annotations

import argparse

import pandas as pd

from tlutils.experiment import load_results, summarize


def cell(mean: float, std: float, seeds: int) -> str:
    """``0.693 ± 0.010 (3)``; a single seed has no spread."""
    return f"{mean:.3f} ± {std:.3f} ({seeds})" if seeds > 1 else f"{mean:.3f} (1)"


def country_table(summary, country: str) -> str:
    """The Markdown table of one country: strategies (best at the largest size first) x sizes."""
    rows = summary[summary["country"] == country]
    sizes = sorted(rows["num_target_images"].unique())
    # Best at the largest size first; strategies not run at that size follow in their own order.
    ranked = rows.sort_values(["num_target_images", "val_map50_mean"], ascending=[False, False])
    strategies = list(dict.fromkeys(ranked["strategy"]))
    lines = ["| strategy | " + " | ".join(f"{size} images" for size in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for strategy in strategies:
        cells = []
        for size in sizes:
            match = rows[(rows["strategy"] == strategy) & (rows["num_target_images"] == size)]
            cells.append(cell(*match.iloc[0][["val_map50_mean", "val_map50_std", "num_seeds"]]) if len(match) else "–")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="*", default=["runs/cpu"], help="results.csv files or their folders")
    parser.add_argument("--l2", type=float, default=0.0, help="L2 factor of the runs to show")
    args = parser.parse_args()
    results = pd.concat([load_results(path) for path in args.results], ignore_index=True)
    results = results[(results["stage"] == "target") & (results["l2_regularization"] == args.l2)]
    if results.empty:
        raise SystemExit(f"no target runs with L2 {args.l2} in {args.results}")
    summary = summarize(results)
    for country in summary["country"].unique():
        print(f"**{country}**\n\n{country_table(summary, country)}\n")


if __name__ == "__main__":
    main()
