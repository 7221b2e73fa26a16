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
    assert chosen.loc["finetune", "test_map50_std"] == pytest.approx(0.02 / 2 ** 0.5)  # sample std, as summarize
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
    longer = build_parser().parse_args(["sweep", "--profile", "ci", "--total-steps", "48", "--steps-per-epoch", "12"])
    assert (cli_grid(longer)[1].total_steps, cli_grid(longer)[1].steps_per_epoch) == (48, 12)
    assert "learning_rate" not in cli_grid(build_parser().parse_args(["sweep", "--profile", "ci"]))[0]


def test_runs_of_other_budgets_are_other_settings_and_a_rate_without_the_metric_is_skipped():
    results = pd.concat([table([("finetune", 1e-2, 0, 0.9, 0.1)]).assign(total_steps=12),
                         table([("finetune", 1e-3, 0, 0.5, 0.5)]).assign(total_steps=1200),
                         table([("head_only", 1e-3, 0, float("nan"), 0.5)]).assign(total_steps=1200)],
                        ignore_index=True)
    chosen = select_learning_rates(results)
    assert sorted(zip(chosen["total_steps"], chosen["learning_rate"])) == [(12, 1e-2), (1200, 1e-3)]
    assert "head_only" not in set(chosen["strategy"])


def runs_with_epochs(rows):
    """Rows of whole runs: (strategy, rate, seed, val, test, source at epoch 0, source at the end);
    epoch 0 holds the zero-shot scores, epoch 3 the final ones, epochs 1-2 no held-out scores."""
    frames = []
    for strategy, rate, seed, val, test, source_start, source_end in rows:
        for epoch, source, held_out in ((0, source_start, test), (1, float("nan"), float("nan")),
                                        (3, source_end, test)):
            frames.append({"run_key": f"{strategy}-{rate}-{seed}", "stage": "target", "country": "usa",
                           "num_target_images": 50, "strategy": strategy, "learning_rate": rate, "seed": seed,
                           "epoch": epoch, "val_map50": val if epoch == 3 else 0.0, "test_map50": held_out,
                           "source_map50": source, "evaluate_test": True, "total_steps": 200})
    return pd.DataFrame(frames)


def test_forgetting_is_the_source_score_at_epoch_0_minus_at_the_end():
    from tlutils.experiment.results import add_forgetting

    results = runs_with_epochs([("finetune", 1e-3, 0, 0.5, 0.4, 0.80, 0.60),
                                ("head_only", 1e-3, 0, 0.5, 0.4, 0.80, 0.85)])
    shuffled = results.sample(frac=1.0, random_state=0)  # row order must not matter, only epochs
    forgetting = add_forgetting(shuffled).groupby("strategy")["forgetting"].agg(["min", "max"])
    assert forgetting.loc["finetune"].tolist() == pytest.approx([0.20, 0.20])
    assert forgetting.loc["head_only"].tolist() == pytest.approx([-0.05, -0.05])  # gained on the source
    with pytest.raises(ValueError, match="source_map50"):
        add_forgetting(results.drop(columns="source_map50"))
    doubled = pd.concat([results.iloc[:3], results.iloc[3:]])  # a repeated index, as concat without ignore_index
    doubled.index = [0, 1, 2, 0, 1, 2]
    assert add_forgetting(doubled)["forgetting"].tolist() == pytest.approx([0.2] * 3 + [-0.05] * 3)
    no_epoch_0 = results[results["epoch"] > 0]  # no score before training: no forgetting to report
    assert add_forgetting(no_epoch_0)["forgetting"].isna().all()


def test_the_learning_rate_table_reports_test_and_forgetting_at_the_rate_val_chose():
    from tlutils.experiment.selection import learning_rate_table

    results = runs_with_epochs([
        ("finetune", 1e-3, 0, 0.50, 0.30, 0.8, 0.6), ("finetune", 1e-3, 1, 0.52, 0.34, 0.8, 0.4),  # val's choice
        ("finetune", 3e-3, 0, 0.40, 0.60, 0.8, 0.7), ("finetune", 3e-3, 1, 0.40, 0.60, 0.8, 0.7),
        ("head_only", 1e-3, 0, 0.45, 0.44, 0.8, 0.8), ("head_only", 3e-3, 0, 0.46, 0.40, 0.8, 0.75),
    ])
    table = learning_rate_table(results, default_rate=3e-3).set_index("strategy")
    assert table.loc["finetune", "learning_rate"] == 1e-3
    assert table.loc["finetune", "test_map50_mean"] == pytest.approx(0.32)
    assert table.loc["finetune", "forgetting_mean"] == pytest.approx(0.3)
    assert table.loc["finetune", "forgetting_std"] == pytest.approx(0.2 / 2 ** 0.5)
    assert table.loc["finetune", "test_map50_at_default"] == pytest.approx(0.60)
    assert table.loc["head_only", "learning_rate"] == 3e-3 and table.loc["head_only", "num_seeds"] == 1
    assert table.loc["head_only", "test_map50_at_default"] == pytest.approx(0.40)
    assert table["at_edge"].all()  # two rates tried: either choice is an end of the range
    middle = pd.concat([results, runs_with_epochs([("finetune", 1e-4, 0, 0.1, 0.1, 0.8, 0.1)])])
    assert not learning_rate_table(middle).set_index("strategy").loc["finetune", "at_edge"]
    # runs that never scored the test split, or at one rate only, make no table
    assert learning_rate_table(results.assign(evaluate_test=False)).empty
    assert learning_rate_table(results[results["learning_rate"] == 1e-3]).empty


def test_the_equal_time_view_keeps_each_run_up_to_its_last_evaluation_within_the_seconds():
    from tlutils.experiment.results import summarize, within_training_seconds

    rows = []
    for strategy, per_epoch, maps in (("head_only", 2.0, [0.1, 0.3, 0.5, 0.6]),  # fast: 3 epochs in 6 s
                                      ("finetune", 5.0, [0.1, 0.4, 0.7, 0.8])):  # slow: 1 epoch in 6 s
        for epoch, value in enumerate(maps):
            rows.append({"run_key": strategy, "stage": "target", "country": "usa", "num_target_images": 50,
                         "strategy": strategy, "learning_rate": 1e-3, "seed": 0, "epoch": epoch,
                         "epoch_seconds": 0.0 if epoch == 0 else per_epoch, "val_map50": value})
    results = pd.DataFrame(rows).sample(frac=1.0, random_state=1)
    view = within_training_seconds(results, 6.0)
    assert view.groupby("run_key")["epoch"].max().to_dict() == {"head_only": 3, "finetune": 1}
    at_equal_time = summarize(view).set_index("strategy")["val_map50_mean"]
    assert at_equal_time.to_dict() == {"head_only": 0.6, "finetune": 0.4}  # at equal steps finetune leads
    assert set(within_training_seconds(results, 0.0)["epoch"]) == {0}
    with pytest.raises(ValueError, match="seconds"):
        within_training_seconds(results, -1.0)


def test_budget_views_read_long_runs_after_the_short_budget_at_their_end_and_at_equal_time():
    from tlutils.experiment.results import budget_views

    rows = []
    for strategy, per_epoch, maps in (("head_only", 2.0, [0.1, 0.3, 0.5, 0.6, 0.65]),
                                      ("finetune", 4.0, [0.1, 0.4, 0.6, 0.7, 0.8])):
        for epoch, value in enumerate(maps):  # evaluated every 10 of 40 steps
            rows.append({"run_key": strategy, "stage": "target", "country": "usa", "num_target_images": 50,
                         "strategy": strategy, "learning_rate": 1e-3, "seed": 0, "epoch": epoch, "step": 10 * epoch,
                         "epoch_seconds": 0.0 if epoch == 0 else per_epoch, "val_map50": value})
    views = budget_views(pd.DataFrame(rows), short_steps=10)
    assert list(views) == ["after 10 of 40 steps", "40 steps", "4 s of training"]  # finetune's 10 steps: 4 s
    by_view = {label: view.set_index("strategy")[["val_map50_mean", "steps"]].to_dict("index")
               for label, view in views.items()}
    assert by_view["after 10 of 40 steps"]["finetune"] == {"val_map50_mean": 0.4, "steps": 10}
    assert by_view["40 steps"]["head_only"] == {"val_map50_mean": 0.65, "steps": 40}
    assert by_view["4 s of training"]["head_only"] == {"val_map50_mean": 0.5, "steps": 20}  # two epochs in 4 s
    with pytest.raises(ValueError, match="no evaluation at step 15"):
        budget_views(pd.DataFrame(rows), short_steps=15)
    # a slower seed of the slowest strategy sets the time: every run of it still reaches the short budget
    slower = [dict(row, run_key="finetune-1", seed=1, epoch_seconds=row["epoch_seconds"] * 1.25)
              for row in rows if row["strategy"] == "finetune"]
    views = budget_views(pd.DataFrame(rows + slower), short_steps=10)
    equal_time = views["5 s of training"].set_index("strategy")
    assert equal_time.loc["finetune", "steps"] == 10 and equal_time.loc["finetune", "num_seeds"] == 2
    assert equal_time.loc["head_only", "steps"] == 20


def test_training_speed_leaves_out_the_start_and_each_phases_first_epoch():
    """Epoch 0 trains nothing (no speed); the first trained epoch of a phase includes tracing."""
    from tlutils.experiment import training_speed

    rows = pd.DataFrame([{"run_key": "k", "strategy": "scratch", "phase": "train", "trainable_params": 5,
                          "epoch": epoch, "images_per_s": speed, "epoch_seconds": 1.0}
                         for epoch, speed in [(0, float("nan")), (1, 10.0), (2, 100.0), (3, 100.0)]])
    (speed,) = training_speed(rows).to_dict("records")
    assert (speed["images_per_s"], speed["epochs"]) == (100.0, 2)
