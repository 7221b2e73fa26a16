"""Learning rates chosen on validation, reported on test: never the split that chose."""

from __future__ import annotations

import pandas as pd
import pytest

from tlutils.experiment.selection import select_learning_rates

pytestmark = pytest.mark.core


def table(rows):
    """Final-epoch rows: (strategy, rate, seed, val, test)."""
    return pd.DataFrame([{"run_key": f"{s}-{r}-{seed}", "stage": "target", "country": "germany",
                          "num_target_images": 10, "strategy": s, "learning_rate": r, "seed": seed, "epoch": 3,
                          "val_map50": val, "test_map50": test} for s, r, seed, val, test in rows])


def test_the_rate_is_chosen_on_validation_and_reported_on_test():
    results = table([
        ("finetune", 1e-4, 0, 0.30, 0.50), ("finetune", 1e-4, 1, 0.32, 0.52),  # best on test, not on val
        ("finetune", 1e-3, 0, 0.40, 0.20), ("finetune", 1e-3, 1, 0.42, 0.22),  # best on val
        ("head_only", 1e-3, 0, 0.35, 0.33), ("head_only", 1e-3, 1, 0.37, 0.35),
    ])
    chosen = select_learning_rates(results).set_index("strategy")
    assert chosen.loc["finetune", "learning_rate"] == 1e-3 and chosen.loc["finetune", "rates_tried"] == 2
    assert chosen.loc["finetune", "test_map50_mean"] == pytest.approx(0.21)
    assert chosen.loc["finetune", "test_map50_std"] == pytest.approx(0.01)
    assert chosen.loc["finetune", "val_map50_mean"] == pytest.approx(0.41)
    assert chosen.loc["head_only", "learning_rate"] == 1e-3 and chosen.loc["head_only", "num_seeds"] == 2


def test_only_the_last_epoch_of_a_run_counts():
    results = table([("finetune", 1e-4, 0, 0.9, 0.9), ("finetune", 1e-3, 0, 0.5, 0.4)])
    earlier = results.iloc[[0]].assign(epoch=1, val_map50=0.1)  # run 1e-4 was good only at its end
    chosen = select_learning_rates(pd.concat([earlier, results]))
    assert chosen["learning_rate"].item() == 1e-4


def test_choosing_and_reporting_on_the_same_split_is_refused():
    with pytest.raises(ValueError, match="both chooses and is reported"):
        select_learning_rates(table([("finetune", 1e-4, 0, 0.3, 0.5)]), report=["val_map50"])
    with pytest.raises(ValueError, match="no \\['test_map50'\\]"):
        select_learning_rates(table([("finetune", 1e-4, 0, 0.3, 0.5)]).drop(columns="test_map50"))


def test_the_sweep_command_sweeps_rates_and_asks_for_held_out_scores():
    from tlutils.cli import build_parser
    from tlutils.experiment.sweeps import cli_grid

    args = build_parser().parse_args(["sweep", "--profile", "ci", "--strategies", "finetune", "head_only",
                                      "--learning-rates", "1e-4", "1e-3", "--evaluate-test", "--evaluate-source"])
    grid, base = cli_grid(args)
    assert grid["learning_rate"] == [1e-4, 1e-3] and base.evaluate_test and base.evaluate_source
    assert "learning_rate" not in cli_grid(build_parser().parse_args(["sweep", "--profile", "ci"]))[0]


def test_runs_of_other_budgets_are_other_settings_and_a_rate_without_the_metric_is_skipped():
    results = pd.concat([table([("finetune", 1e-2, 0, 0.9, 0.1)]).assign(total_steps=12),
                         table([("finetune", 1e-3, 0, 0.5, 0.5)]).assign(total_steps=1200),
                         table([("head_only", 1e-3, 0, float("nan"), 0.5)]).assign(total_steps=1200)],
                        ignore_index=True)
    chosen = select_learning_rates(results)
    assert sorted(zip(chosen["total_steps"], chosen["learning_rate"])) == [(12, 1e-2), (1200, 1e-3)]
    assert "head_only" not in set(chosen["strategy"])
