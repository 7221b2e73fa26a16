"""The thesis' source-start study (tlutils.experiment.source_study): its runs, the shipped table, the
command that makes it, and the cpu table tlutils ships against today's code."""

import json

import pandas as pd
import pytest

from tlutils.cli import main
from tlutils.experiment import resolve
from tlutils.experiment import start_study as study
from tlutils.profiles import PRECISION_VARIABLE

CPU_STARTS = ("scratch", "classifier", "detector")


@pytest.mark.core
def test_the_cpu_study_is_every_start_with_every_seed_at_its_size_with_ssd_keras_l2():
    configs = study.source_study_configs("cpu")
    assert [(c.strategy, c.seed) for c in configs] == [(s, seed) for s in CPU_STARTS for seed in (0, 1, 2)]
    resolved = [resolve(config) for config in configs]
    assert len({run.key for run in resolved}) == 9
    for run in resolved:
        assert (run.stage, run.data, run.l2_regularization) == ("source", "synth:belgium", study.KERAS_SSD_L2)
        assert (run.num_target_images, run.total_steps, run.steps_per_epoch) == (600, 2400, 150)
    assert {run.pretrained_key is None for run in resolved if run.strategy == "scratch"} == {True}
    assert all(run.pretrained_key for run in resolved if run.strategy != "scratch")
    with pytest.raises(ValueError, match="at least one start"):
        study.source_study_configs("cpu", [])


@pytest.mark.core
@pytest.mark.parametrize("machine", ["float32", "mixed_bfloat16"])
def test_the_cpu_study_has_the_same_keys_on_every_cpu(machine, monkeypatch):
    """Its pretrained starts train in the source stage's float32 like its runs, so a CPU without bf16
    units finds the shipped rows too (bf16 units decide only the target runs' "auto")."""
    monkeypatch.delenv(PRECISION_VARIABLE, raising=False)
    here = [resolve(config).key for config in study.source_study_configs("cpu")]
    monkeypatch.setenv(PRECISION_VARIABLE, machine)
    assert [resolve(config).key for config in study.source_study_configs("cpu")] == here
    assert {resolve(config).mixed_precision for config in study.source_study_configs("cpu")} == {"float32"}


@pytest.mark.core
def test_a_profile_without_a_study_size_uses_its_own_source_schedule():
    (config,) = study.source_study_configs("gpu", ["scratch"], seeds=[0])
    assert (config.num_target_images, config.total_steps, config.steps_per_epoch) == (None, None, None)


def write_study(folder, configs, drop=()):
    """A shipped table by hand: two rows per run (epoch 0 and 1) for each config, except ``drop``."""
    rows = [{"run_key": resolve(c).key, "strategy": c.strategy, "seed": c.seed, "epoch": epoch}
            for c in configs if c.strategy not in drop for epoch in (0, 1)]
    path = study.study_path(configs[0].profile, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    path.with_suffix(".json").write_text(json.dumps({"machine": "by hand"}))
    return path


@pytest.mark.core
def test_the_shipped_table_is_used_only_when_it_holds_every_run(tmp_path):
    configs = study.source_study_configs("ci", ["scratch", "detector"])
    assert study.shipped_study(configs, tmp_path) is None  # nothing shipped
    write_study(tmp_path, configs, drop=("detector",))
    assert study.shipped_study(configs, tmp_path) is None  # a run is missing (or its key changed)
    write_study(tmp_path, configs + study.source_study_configs("ci", ["classifier"]))
    rows, manifest = study.shipped_study(configs, tmp_path)
    assert set(rows["strategy"]) == {"scratch", "detector"} and len(rows) == 4  # only the runs asked for
    assert manifest == {"machine": "by hand"}


@pytest.mark.core
def test_the_cpu_study_is_shipped_under_todays_keys():
    """Every run of the cpu study, as today's code keys it, from epoch 0 (the start) to its last epoch
    (a change of a key's meaning must re-run and re-export it: tlutils study source-starts --export)."""
    configs = study.source_study_configs("cpu")
    shipped = study.shipped_study(configs)
    assert shipped is not None, f"{study.study_path('cpu')} lacks runs of today's cpu study"
    rows, manifest = shipped
    for config in configs:
        epochs = rows[rows["run_key"] == resolve(config).key]["epoch"]
        assert list(epochs) == list(range(17)), config
    assert manifest["keys"] == sorted(resolve(config).key for config in configs)
    assert {summary["config"]["kind"] for summary in manifest["pretrained"]} == {"classifier", "detector"}


@pytest.mark.slow
def test_the_command_runs_the_study_and_exports_what_the_notebook_then_reads(tmp_path, monkeypatch, capsys):
    out, studies = tmp_path / "results", tmp_path / "studies"
    (config,) = study.source_study_configs("ci", ["scratch"])
    with pytest.raises(ValueError, match="not finished"):
        study.export_study([config], out, studies)
    assert main(["study", "source-starts", "--profile", "ci", "--starts", "scratch", "--out", str(out),
                 "--studies-dir", str(studies), "--export", "--no-estimate"]) == 0
    printed = capsys.readouterr().out
    assert "plan (ci profile): 1 runs to train" in printed and "exported:" in printed
    table = pd.read_csv(study.study_path("ci", studies))
    assert set(table["run_key"]) == {resolve(config).key} and "checkpoint" not in table
    assert list(table["epoch"]) == [0, 1, 2, 3, 4]  # the start, then 16 steps evaluated every 4
    monkeypatch.setattr(study, "STUDIES_DIR", studies)
    rows, provenance = study.source_study("ci", ["scratch"], tmp_path / "elsewhere")
    assert provenance.startswith("read the 1 runs shipped with tlutils") and not (tmp_path / "elsewhere").exists()
    pd.testing.assert_frame_equal(rows, table)
    rows, provenance = study.source_study("ci", ["scratch"], out, run_here=True)  # read back, not retrained
    assert provenance.startswith("trained here") and rows["val_map50"].tolist() == table["val_map50"].tolist()
