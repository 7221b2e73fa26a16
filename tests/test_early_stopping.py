"""Early stopping on val mAP: the run stops where its rule says, is scored as finished there, keeps its
best epoch's detector, and counts as a whole run."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tlutils.experiment import RunConfig, load_results, resolve, run
from tlutils.experiment.results import _whole_runs

PATIENCE = 1


@pytest.mark.slow
def test_a_run_stops_after_patience_evaluations_without_a_better_map(tmp_path):
    config = RunConfig(profile="ci", target_data="germany", strategy="finetune", num_target_images=10,
                       early_stopping=PATIENCE, total_steps=24, steps_per_epoch=4)  # up to 6 epochs
    rows = run(config, tmp_path / "results", data_dir=tmp_path / "data", verbose=0, tensorboard=False)
    trained = rows[rows["epoch"] >= 1]
    history = trained["val_map50"].tolist()
    # the rule, computed here: stop at the first epoch that lies PATIENCE evaluations after the best so far
    expected_stop = next((e for e in range(1, 7) if e - 1 - int(np.argmax(history[:e])) >= PATIENCE), 6)
    assert trained["epoch"].tolist() == list(range(1, expected_stop + 1))
    last = trained.iloc[-1]
    assert bool(last["stopped_early"]) == (expected_stop < 6) and math.isfinite(last["coco_map"])
    assert last["best_epoch"] == 1 + int(np.argmax(history))
    run_dir = tmp_path / "results" / rows["checkpoint"].iloc[-1]
    assert (run_dir.parent / "best.keras").is_file() and run_dir.is_file()
    assert load_results(tmp_path / "results")["run_key"].nunique() == 2  # the source and this run, whole


def test_a_table_keeps_a_stopped_run_and_drops_a_cut_one():
    base = {"run_key": "k", "checkpoint": "runs/x/detector.keras", "total_steps": 24}
    stopped = pd.DataFrame([base | {"epoch": e, "step": 4 * e, "stopped_early": e == 3} for e in (1, 2, 3)])
    assert len(_whole_runs(stopped)) == 3
    assert _whole_runs(stopped.assign(stopped_early=False)).empty  # 12 of 24 steps and no stop: unfinished


def test_early_stopping_is_keyed_only_when_set_and_needs_map_every_epoch(tmp_path):
    plain = resolve(RunConfig(profile="ci", strategy="finetune", num_target_images=10))
    assert "early_stopping" not in plain.to_dict()
    assert resolve(RunConfig(profile="ci", strategy="finetune", num_target_images=10, early_stopping=2)).key != plain.key
    with pytest.raises(ValueError, match="early_stopping must be a positive integer"):
        RunConfig(profile="ci", strategy="finetune", num_target_images=10, early_stopping=0)
    with pytest.raises(ValueError, match="whole frames at the first and last evaluation only"):
        RunConfig(profile="ci", target_data=f"coco:{tmp_path / 'a.json'}", strategy="finetune", num_target_images=10,
                  early_stopping=2)


def test_the_sweep_command_takes_a_patience():
    from tlutils.cli import build_parser
    from tlutils.experiment.sweeps import cli_grid

    args = build_parser().parse_args(["sweep", "--profile", "ci", "--stage", "source", "--early-stopping", "3"])
    assert cli_grid(args)[1].early_stopping == 3
