"""How runs converge (tlutils.experiment.convergence) and the source-start sentences built from it."""

import math

import pandas as pd
import pytest

from tlutils.experiment.claims import BEATS, BEHIND, WITHIN, start_sentences
from tlutils.experiment.convergence import (OVERFIT_DROP, convergence_facts, convergence_table, overfits,
                                            steps_to_reach)

pytestmark = pytest.mark.core


def history(key, maps, losses, strategy="scratch", seed=0, start_l2=2.0, step=10, l2=None, val_losses=None):
    """One run's rows: epoch 0 (the start: no training loss) and one row per value of ``maps``."""
    rows = [{"run_key": key, "strategy": strategy, "seed": seed, "epoch": 0, "step": 0, "loss": math.nan,
             "localization": math.nan, "confidence": math.nan, "regularization": start_l2, "val_loss": 50.0,
             "val_map50": 0.0}]
    for epoch, (value, loss) in enumerate(zip(maps, losses), start=1):
        reg = l2[epoch - 1] if l2 else start_l2 / (1 + epoch)
        rows.append({"run_key": key, "strategy": strategy, "seed": seed, "epoch": epoch, "step": step * epoch,
                     "loss": loss, "localization": 0.25 * (loss - reg), "confidence": 0.75 * (loss - reg),
                     "regularization": reg, "val_loss": val_losses[epoch - 1] if val_losses else 10.0 - epoch,
                     "val_map50": value})
    return pd.DataFrame(rows)


def test_steps_to_reach_is_the_first_step_at_the_threshold_or_nan():
    run = history("a", [0.2, 0.7, 0.6, 0.8], [9, 8, 7, 6])
    assert steps_to_reach(run, 0.7) == 20 and steps_to_reach(run, 0.75) == 40
    assert math.isnan(steps_to_reach(run, 0.9))
    run.loc[run["epoch"] == 0, "val_map50"] = 0.95  # a start that scores high as loaded has trained no step
    assert math.isnan(steps_to_reach(run, 0.9)) and steps_to_reach(run, 0.7) == 20
    with pytest.raises(ValueError, match="one run"):
        steps_to_reach(pd.concat([run, history("b", [0.1], [9])]), 0.5)


@pytest.mark.parametrize(("maps", "losses", "expected"), [
    ([0.3, 0.6, 0.5], [9, 8, 7], True),  # val mAP fell 0.1 below its best while the training loss fell
    ([0.3, 0.6, 0.5], [9, 8, 8.5], False),  # the training loss rose too: unstable, not over-fitting
    ([0.3, 0.6, 0.5], [9, 8.0, 7.9], False),  # the displayed loss fell only by its L2 term: the data loss rose
    ([0.3, 0.6, 0.6 - OVERFIT_DROP / 2], [9, 8, 7], False),  # within OVERFIT_DROP: one noisy evaluation
    ([0.3, 0.6, 0.7], [9, 8, 7], False),  # still improving
])
def test_overfitting_needs_a_real_drop_while_the_training_loss_falls(maps, losses, expected):
    assert overfits(history("a", maps, losses)) is expected


def test_epoch_0_is_never_the_best_epoch_and_a_run_without_training_is_refused():
    run = history("a", [0.1, 0.05], [9, 8])
    run.loc[run["epoch"] == 0, "val_map50"] = 0.9  # a start that scores well must not count as the best
    assert overfits(run) is True  # best is epoch 1 (0.1), the last 0.05 is more than 0.02 below
    with pytest.raises(ValueError, match="trained epoch"):
        overfits(run[run["epoch"] == 0])
    with pytest.raises(ValueError, match="no val mAP"):
        convergence_facts(run.assign(val_map50=math.nan))


def test_facts_read_the_start_from_epoch_0_and_split_the_displayed_loss():
    run = history("a", [0.2, 0.7, 0.6], [9.0, 8.0, 7.0], start_l2=4.0, l2=[3.0, 2.5, 2.0])
    (facts,) = convergence_facts(run, threshold=0.7).to_dict("records")
    assert (facts["start_l2"], facts["end_l2"], facts["start_map50"]) == (4.0, 2.0, 0.0)
    assert (facts["early_map50"], facts["early_step"], facts["best_map50"], facts["best_step"]) == (0.2, 10, 0.7, 20)
    assert (facts["final_map50"], facts["final_loss"], facts["final_data_loss"]) == (0.6, 7.0, 5.0)
    assert facts["steps_to_threshold"] == 20 and facts["min_val_loss_step"] == 30 and facts["overfits"]
    without_start = convergence_facts(run[run["epoch"] >= 1]).iloc[0]
    assert math.isnan(without_start["start_l2"]) and math.isnan(without_start["start_map50"])


def test_the_table_averages_seeds_and_counts_who_reached_and_who_overfitted():
    runs = pd.concat([
        history("s0", [0.5, 0.8], [5, 3], seed=0), history("s1", [0.4, 0.6], [5, 4], seed=1),
        history("d0", [0.6, 0.5], [9, 7], strategy="detector", seed=0, start_l2=6.0),
        history("d1", [0.6, 0.55], [9, 7], strategy="detector", seed=1, start_l2=8.0),
    ])
    table = convergence_table(convergence_facts(runs, threshold=0.7))
    assert list(table.index) == ["scratch", "detector"]
    assert table.loc["scratch", "best_map50"] == pytest.approx(0.7)
    assert table.loc["scratch", "best_map50_std"] == pytest.approx(pd.Series([0.8, 0.6]).std(ddof=1))
    assert (table.loc["scratch", "reached"], table.loc["scratch", "steps_to_threshold"]) == (1, 20)
    assert math.isnan(table.loc["detector", "steps_to_threshold"]) and table.loc["detector", "reached"] == 0
    assert (table.loc["detector", "overfit"], table.loc["scratch", "overfit"]) == (2, 0)
    assert table.loc["detector", "start_l2"] == 7.0 and table.loc["detector", "seeds"] == 2


def table_of(**starts):
    """A convergence table by hand: start -> (final_loss, final_data_loss, best_map50, best std)."""
    rows = {}
    for start, (loss, data_loss, best, std) in starts.items():
        rows[start] = {"start_l2": loss - data_loss + 1, "end_l2": loss - data_loss, "early_map50": best / 2,
                       "early_map50_std": std, "early_step": 10, "best_map50": best, "best_map50_std": std,
                       "final_map50": best - 0.01,
                       "best_step": 40, "final_loss": loss, "final_data_loss": data_loss,
                       "steps_to_threshold": math.nan, "reached": 0, "overfit": 1, "seeds": 3}
    return pd.DataFrame.from_dict(rows, orient="index")


def test_start_sentences_follow_the_numbers_and_flip_with_them():
    student = table_of(scratch=(3.0, 2.5, 0.60, 0.01), detector=(9.0, 2.0, 0.70, 0.01))
    lines = start_sentences(student, 0.7)
    assert "scratch ends with the lowest displayed loss (3.00; lowest: scratch, 3.00)" in lines[1]
    assert "a different order" in lines[0]  # lowest loss: scratch; highest mAP: detector
    assert f"detector (0.700 ± 0.010) {BEATS} scratch (0.600 ± 0.010)" in lines[4]
    assert "scratch 1.50 -> 0.50; detector 8.00 -> 7.00" in lines[2]
    flipped = start_sentences(table_of(scratch=(9.5, 2.5, 0.75, 0.01), detector=(9.0, 2.0, 0.70, 0.01)), 0.7)
    assert "scratch ends without the lowest displayed loss (9.50; lowest: detector, 9.00)" in flipped[1]
    assert f"{BEHIND} scratch" in flipped[4] and "a different order" in flipped[0]
    agreeing = start_sentences(table_of(scratch=(3.0, 2.5, 0.75, 0.01), detector=(9.0, 2.0, 0.70, 0.01)), 0.7)
    assert "the same order" in agreeing[0] and f"{BEHIND} scratch" in agreeing[4]
    close = start_sentences(table_of(scratch=(3.0, 2.5, 0.70, 0.05), detector=(9.0, 2.0, 0.71, 0.01)), 0.7)
    assert f"{WITHIN} scratch" in close[4]
    assert "scratch in 0 of 3 seeds; detector in 0 of 3 seeds" in close[5] and "scratch 1 of 3" in close[6]


def test_start_sentences_need_the_reference_and_another_start():
    with pytest.raises(ValueError, match="'scratch' and another start"):
        start_sentences(table_of(detector=(9.0, 2.0, 0.7, 0.01)), 0.7)
