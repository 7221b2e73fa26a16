"""Held-out evaluations: a test split that chooses nothing, and the source data (forgetting)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tlutils.data.synth import HELD_OUT_SEEDS, WORLD_SEEDS, synth_dataset
from tlutils.experiment import RunConfig, resolve, run
from tlutils.experiment.held_out import by_name


def test_classes_are_matched_by_canonical_name():
    model_classes = {1: "speed_limit_50", 2: "stop", 3: "priority_road"}
    gtsdb = {2: "speed limit 50", 14: "stop", 40: "keep left"}
    assert by_name(gtsdb, model_classes) == {2: 1, 14: 2}  # "keep left" has no model class: left out


def test_the_sign_worlds_test_split_is_its_own_set(tmp_path):
    assert set(HELD_OUT_SEEDS.values()).isdisjoint(WORLD_SEEDS.values())
    test, val = (synth_dataset("germany", split, 3, 64, tmp_path) for split in ("test", "val"))
    assert len(test) == 3 and not np.array_equal(test[0].boxes, val[0].boxes)
    with pytest.raises(ValueError, match="unknown split 'holdout'"):
        synth_dataset("germany", "holdout", 3, 64, tmp_path)


def test_held_out_flags_enter_the_key_only_when_set_and_need_a_source():
    plain = resolve(RunConfig(profile="ci", strategy="finetune", num_target_images=10))
    assert not {"evaluate_test", "evaluate_source"} & set(plain.to_dict())  # earlier runs keep their keys
    assert resolve(RunConfig(profile="ci", strategy="finetune", num_target_images=10, evaluate_test=True)).key != plain.key
    with pytest.raises(ValueError, match="evaluate_source scores a target run"):
        RunConfig(profile="ci", stage="source", evaluate_source=True)


@pytest.mark.slow
def test_a_run_scores_the_test_split_and_the_source_at_its_start_and_end(tmp_path):
    config = RunConfig(profile="ci", target_data="germany", strategy="finetune", num_target_images=10,
                       evaluate_test=True, evaluate_source=True)
    rows = run(config, tmp_path / "results", data_dir=tmp_path / "data", verbose=0, tensorboard=False)
    for column in ("test_map50", "source_map50"):
        finite = [math.isfinite(value) for value in rows[column]]
        assert finite == [True, False, False, True], column
        assert rows[column].dropna().between(0, 1).all()
    plain = run(config.replace(evaluate_test=False, evaluate_source=False), tmp_path / "results",
                data_dir=tmp_path / "data", verbose=0, tensorboard=False)
    assert plain[["test_map50", "source_map50"]].isna().all().all()
    # the flags add evaluations, they change no training: the same losses, bit for bit
    assert np.array_equal(plain["loss"].to_numpy(), rows["loss"].to_numpy(), equal_nan=True)


def test_scratch_can_be_scored_on_the_source_data(tmp_path):
    """A scratch run keeps its source data when it asks for source_map50 (the reference of a detector
    that never saw it); without the flag its key holds no source."""
    from tlutils.experiment.held_out import held_out_sets

    config = RunConfig(profile="ci", strategy="scratch", num_target_images=10, evaluate_source=True)
    resolved = resolve(config)
    assert resolved.source_data == "synth:belgium"
    assert resolve(config.replace(evaluate_source=False)).source_data is None
    (held_out,) = held_out_sets(resolved, {1: "stop", 2: "give_way"}, tmp_path)
    assert held_out.column == "source_map50" and held_out.synthetic and set(held_out.label_map.values()) <= {1, 2}
