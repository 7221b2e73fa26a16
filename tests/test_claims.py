"""Sentences computed from results: each verdict follows the numbers, and flips when they do."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from tlutils.experiment.claims import (BEATS, BEHIND, WITHIN, change_sentence, compare, compare_strategies,
                                       falls_first, finetune_against_frozen, rank_agreement, setting_verdicts,
                                       transfer_against_scratch, worst_and_best)

pytestmark = pytest.mark.core


def summary(**cells: tuple[float, float]) -> pd.DataFrame:
    """A one-setting summary: strategy -> (mean, std) of val_map50."""
    return pd.DataFrame([{"country": "germany", "num_target_images": 10, "strategy": name,
                          "val_map50_mean": mean, "val_map50_std": std} for name, (mean, std) in cells.items()])


@pytest.mark.parametrize(("a", "b", "verdict"), [
    ((0.5, 0.01), (0.4, 0.02), BEATS),
    ((0.4, 0.01), (0.5, 0.02), BEHIND),
    ((0.41, 0.02), (0.40, 0.01), WITHIN),  # gap 0.01 < the larger std 0.02
    ((0.41, float("nan")), (0.40, float("nan")), BEATS),  # one seed each: no spread to exceed
])
def test_compare_counts_a_gap_only_beyond_the_larger_spread(a, b, verdict):
    assert compare(*a, *b) == verdict


def test_compare_refuses_a_missing_mean():
    with pytest.raises(ValueError, match="NaN"):
        compare(float("nan"), 0.0, 0.5, 0.0)


def test_finetune_against_the_best_frozen_variant_flips_with_the_numbers():
    table = summary(finetune=(0.30, 0.01), head_only=(0.20, 0.01), **{"freeze:block3": (0.25, 0.01)})
    assert finetune_against_frozen(table) == "finetune (0.300 ± 0.010) beats freeze:block3 (0.250 ± 0.010)"
    table = summary(finetune=(0.10, 0.01), head_only=(0.20, 0.01), **{"freeze:block3": (0.15, 0.01)})
    assert finetune_against_frozen(table) == "finetune (0.100 ± 0.010) falls behind head_only (0.200 ± 0.010)"


def test_transfer_against_scratch_names_the_best_transfer():
    table = summary(scratch=(0.05, 0.01), finetune=(0.30, 0.02), head_only=(0.35, 0.02))
    assert transfer_against_scratch(table).startswith("head_only (0.350 ± 0.020) beats scratch")


def test_setting_verdicts_give_only_the_comparisons_the_strategies_allow():
    assert setting_verdicts(summary(scratch=(0.1, 0.0), finetune=(0.2, 0.0))) == [
        "finetune (0.200 ± 0.000) beats scratch (0.100 ± 0.000)"]
    assert len(setting_verdicts(summary(scratch=(0.1, 0.0), finetune=(0.2, 0.0), head_only=(0.3, 0.0)))) == 2
    assert setting_verdicts(summary(head_only=(0.3, 0.0))) == []


def test_a_summary_of_several_settings_is_refused():
    table = pd.concat([summary(finetune=(0.3, 0.0)), summary(finetune=(0.4, 0.0)).assign(num_target_images=50)])
    with pytest.raises(ValueError, match="several settings"):
        compare_strategies(table, "finetune", "finetune")
    with pytest.raises(ValueError, match="no 'scratch' row"):
        compare_strategies(summary(finetune=(0.3, 0.0)), "finetune", "scratch")


def test_rank_agreement_says_whether_loss_orders_like_map():
    values = pd.DataFrame({"loss": [1.0, 2.0, 3.0], "val_map50": [0.5, 0.4, 0.3]}, index=["a", "b", "c"])
    assert rank_agreement(values, "loss").endswith("-- the same order")
    values["val_map50"] = [0.3, 0.4, 0.5]
    assert "highest val_map50 first: c, b, a -- a different order" in rank_agreement(values, "loss")


def test_small_helpers():
    assert change_sentence("finetune", 0.5, 0.25) == "finetune: val mAP@0.5 0.500 -> 0.250 (-50%)"
    assert change_sentence("scratch", 0.0, 0.1) == "scratch: val mAP@0.5 0.000 -> 0.100"
    # a random start's mAP of 4e-6 prints as 0.000: no "+359660%" relative to it
    assert change_sentence("scratch", 4.17e-6, 0.015) == "scratch: val mAP@0.5 0.000 -> 0.015"
    assert change_sentence("head_only", 0.0006, 0.003) == "head_only: val mAP@0.5 0.001 -> 0.003 (+400%)"
    assert falls_first([3.0, 2.0, 2.5]) and not falls_first([2.0, 3.0])
    # a curve cut out of a longer one keeps its labels (1, 2, ...): read by position, not label 0
    assert not falls_first(pd.Series([float("nan"), 2.0, 3.0]).iloc[1:])
    assert falls_first(pd.Series([9.0, 3.0, 2.0], index=[1, 2, 3]))
    assert worst_and_best({"a": 2.0, "b": 1.0, "c": 3.0}) == ("b", "c")


def test_sentences_quote_the_summary_they_were_computed_from():
    """Every number in a verdict is the summary's mean and std of the strategy it names."""
    table = summary(scratch=(0.0123, 0.004), finetune=(0.4567, 0.0321), head_only=(0.3999, float("nan")))
    table["num_seeds"] = [3, 3, 1]
    for sentence in setting_verdicts(table):
        for name, mean, std in re.findall(r"(\S+) \((\d\.\d{3})(?: ± (\d\.\d{3})|, one seed)\)", sentence):
            row = table.set_index("strategy").loc[name]
            assert float(mean) == round(row["val_map50_mean"], 3)
            assert (std == "") == math.isnan(row["val_map50_std"])


def test_a_single_seed_is_said_and_has_no_spread():
    table = summary(finetune=(0.30, 0.0), head_only=(0.29, 0.0)).assign(num_seeds=1)
    assert compare_strategies(table, "finetune", "head_only") == "finetune (0.300, one seed) beats head_only (0.290, one seed)"


def test_rate_confound_names_both_leaders_and_says_whether_they_differ():
    from tlutils.experiment.claims import rate_confound

    setting = pd.DataFrame({"strategy": ["finetune", "head_only"], "country": "usa", "num_target_images": 50,
                            "test_map50_mean": [0.40, 0.30], "test_map50_std": [0.01, 0.02], "num_seeds": 3,
                            "test_map50_at_default": [0.20, 0.35]})
    assert rate_confound(setting) == ("at its own rate finetune leads on test (0.400 ± 0.010); at the profile's "
                                      "rate head_only led (0.350): the leader changes")
    same = setting.assign(test_map50_at_default=[0.36, 0.35])
    assert rate_confound(same).endswith("finetune led (0.360): the same leader")
    close = setting.assign(test_map50_mean=[0.40, 0.39], test_map50_std=[0.05, 0.01])  # gap 0.01 < std 0.05
    assert rate_confound(close).endswith("head_only led (0.350): another leader, within the seed spread")
    # a strategy without a run at the profile's rate is left out of both rankings
    partial = setting.assign(test_map50_at_default=[float("nan"), 0.35])
    assert rate_confound(partial).endswith("head_only led (0.350): the same leader")
    missing = setting.assign(test_map50_at_default=float("nan"))
    assert rate_confound(missing) == "no strategy has test scores both at its own rate and at the profile's"
