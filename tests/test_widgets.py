"""The explorer of notebook 07: its callbacks, driven by setting widget values from Python.

One tiny ci-profile Train run (source stage included) is shared by the tests that need it.
"""

from __future__ import annotations

import pandas as pd
import pytest

from tlutils.experiment import RESULT_COLUMNS, resolve
from tlutils.widgets import FREEZE_OPTIONS, TransferExplorer, strategy_for

pytestmark = pytest.mark.slow

PNG = b"\x89PNG"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An explorer after one click of Train with freeze point fc, learning rate 3e-3, 10 target images."""
    root = tmp_path_factory.mktemp("explorer")
    explorer = TransferExplorer(profile="ci", results_dir=root / "runs", data_dir=root / "data", train_epochs=2,
                                shown_images=2)
    explorer.freeze_point.value = "fc"
    explorer.learning_rate.value = 3e-3
    explorer.num_images.value = 10
    explorer.train_button.click()
    return explorer


def test_train_click_runs_the_run_the_sliders_describe(trained):
    rows = trained.last_results
    assert list(rows["epoch"]) == [0, 1, 2]  # the zero-shot row, then the two trained epochs
    final = rows.iloc[-1]
    assert (final["strategy"], final["num_target_images"]) == ("freeze:fc", 10)
    assert final["learning_rate"] == pytest.approx(3e-3)
    assert final["total_steps"] == trained.train_steps and final["country"] == "germany"
    assert rows["loss"].iloc[1:].notna().all() and rows["val_map50"].between(0, 1).all()


def test_curves_were_redrawn_live_after_every_epoch_and_detections_at_the_end(trained):
    assert [entry["epoch"] for entry in trained.history] == [1, 2]
    assert all("val_map50" in entry for entry in trained.history), "the runner's evaluation precedes the live update"
    assert bytes(trained.curves.value).startswith(PNG) and bytes(trained.detections.value).startswith(PNG)
    assert "val mAP@0.5" in trained.status.value and "trained" in trained.status.value
    assert not trained.train_button.disabled


def test_the_progress_bar_counts_the_source_detector_then_the_run(trained):
    """The first click trains the missing source detector: its epochs are counted before the run's."""
    source = resolve(trained.config().replace(stage="source", strategy="scratch", num_target_images=None,
                                               learning_rate=None, total_steps=None, steps_per_epoch=None,
                                               l2_regularization=0.0))
    epochs = source.total_steps // source.steps_per_epoch
    assert trained.progress_log == ([("source", e, epochs) for e in range(1, epochs + 1)]
                                    + [("target", 1, 2), ("target", 2, 2)])
    assert trained.progress.layout.visibility == "hidden"  # hidden again once done


def test_a_setting_trained_before_is_read_back_without_training(trained):
    trained.train_button.click()
    assert trained.history == [], "no epoch ran"
    assert "read from results.csv" in trained.status.value
    assert len(trained.last_results) == 3


def test_the_status_line_follows_the_sliders_with_the_effective_rate(trained):
    trained.freeze_point.value = "none"
    trained.learning_rate.value = 1e-2
    assert trained.config().strategy == "finetune"
    assert "finetune" in trained.status.value and "1e-03" in trained.status.value  # fine-tuning runs at 0.1x
    trained.freeze_point.value = "block3"
    assert "freeze:block3" in trained.status.value and "1e-02" in trained.status.value


def _study_table(explorer: TransferExplorer, budget: int) -> pd.DataFrame:
    """A results table of finished runs with the explorer's study knobs but ``budget`` steps, as a sweep
    writes it (only the columns browse reads matter)."""
    resolved = resolve(explorer.base)
    study = {knob: getattr(resolved, knob)
             for knob in ("learning_rate", "l2_regularization", "preprocessing", "optimizer", "schedule")}
    rows = []
    for index, (strategy, images, value) in enumerate([("scratch", 10, 0.1), ("scratch", 50, 0.3),
                                                        ("finetune", 10, 0.4), ("finetune", 50, 0.5)]):
        rows.append({column: None for column in RESULT_COLUMNS} | {
            "run_key": f"key{index}", "stage": "target", "country": "germany", "data": "synth:germany",
            "source_data": None if strategy == "scratch" else "synth:belgium", "strategy": strategy,
            "num_target_images": images, "seed": 0, "profile": "ci", **study, "total_steps": budget, "epoch": 1,
            "step": budget, "checkpoint": f"runs/key{index}/detector.keras",
            "val_map50": value, "coco_map": value / 2, "val_loss": 1.0, "loss": 2.0, "epoch_seconds": 1.0})
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def test_browse_shows_only_runs_comparable_with_the_study(tmp_path):
    explorer = TransferExplorer(profile="ci", results_dir=tmp_path, data_dir=tmp_path / "data")
    study = _study_table(explorer, budget=explorer.profile.target_steps)
    other = _study_table(explorer, budget=8).assign(run_key=lambda t: "short" + t["run_key"], val_map50=0.9)
    swedish = study[study["strategy"] == "finetune"].assign(run_key=lambda t: "sweden" + t["run_key"],
                                                             source_data="synth:sweden", coco_map=0.95)
    pd.concat([study, other, swedish]).to_csv(tmp_path / "results.csv", index=False)
    explorer.browse_metric.value = "coco_map"  # a change of a control redraws at once
    assert bytes(explorer.browse_plot.value).startswith(PNG)
    summary = explorer.browse()
    assert set(summary["strategy"]) == {"scratch", "finetune"}
    assert summary["num_seeds"].max() == 1, "the short runs and another source's were not averaged in as seeds"
    finetune_50 = summary[(summary["strategy"] == "finetune") & (summary["num_target_images"] == 50)]
    assert finetune_50["coco_map_mean"].item() == pytest.approx(0.25)
    assert "finetune" in explorer.browse_table.value
    assert explorer.browse_metric.label == "COCO mAP@[.5:.95]"  # human labels, column names underneath
    assert "COCO mAP@[.5:.95] (mean over seeds)" in explorer.browse_table.value
    assert "target images" in explorer.browse_table.value


def test_browse_without_results_says_what_to_run(tmp_path):
    explorer = TransferExplorer(profile="ci", results_dir=tmp_path)
    assert explorer.browse() is None
    assert "notebook 05" in explorer.browse_table.value


def test_freeze_options_map_to_strategies():
    assert strategy_for("none") == "finetune" and strategy_for("extras") == "freeze:extras"
    assert "heads" not in FREEZE_OPTIONS
    with pytest.raises(ValueError, match="freeze point"):
        strategy_for("heads")


def test_the_explorer_trains_on_a_real_target_given_as_a_data_spec(tmp_path, monkeypatch):
    """A COCO export as the target: the run trains on it, and its val frames are shown whole (tiled)."""
    import tlutils.plotting
    from tlutils.data.export import real_format_example
    from tlutils.experiment import RunConfig

    shown = []
    tiled = tlutils.plotting.show_tiled_detections
    monkeypatch.setattr(tlutils.plotting, "show_tiled_detections",
                        lambda detector, frames, **options: shown.append(frames) or tiled(detector, frames, **options))

    coco = real_format_example("germany", 6, 192, data_dir=tmp_path / "mine").coco  # 4 frames for training
    explorer = TransferExplorer(profile="ci", target_data=coco, results_dir=tmp_path / "runs",
                                data_dir=tmp_path / "data", train_epochs=1, shown_images=1)
    spec = RunConfig(target_data=coco, num_target_images=1).target_data
    assert explorer.config().target_data == spec and explorer.config().source_data == "synth:belgium"
    assert explorer.country == "coco-coco" and explorer.browse_country.value == spec
    assert explorer.num_images.max == explorer.num_images.value == 4, "the train split's 4 frames, not ci's 10"
    explorer.freeze_point.value = "extras"
    explorer.train_button.click()
    assert set(explorer.last_results["data"]) == {spec}
    assert bytes(explorer.detections.value).startswith(PNG)
    assert len(shown) == 1 and shown[0][0].width == 192, "whole 192 px frames, tile by tile"
