"""The plan of a course or sweep: runs, steps and images counted exactly, the estimates' arithmetic,
and a short timing of real steps."""

from __future__ import annotations

import json

import pytest

from conftest import REPO_ROOT
from tlutils import plan as planning
from tlutils.experiment import RunConfig, expand_grid, resolve, run_key, source_config
from tlutils.experiment.config import DEFAULT_STRATEGIES
from tlutils.experiment.sweeps import COURSE_STRATEGIES
from tlutils.profiles import PRECISION_VARIABLE
from tlutils.plan import (FORWARD_SHARE, Plan, PlannedRun, StepTiming, Throughput, course_plan, estimate_seconds,
                          flops_seconds, format_plan, notebook_parameters, plan_of)
from tlutils.plan.notebooks import declared

pytestmark = pytest.mark.core


def test_a_source_initialized_run_brings_its_source_and_a_repeated_run_counts_once():
    # ci: the source trains 32 images in batches of 8 = 4 steps an epoch, 2 epochs, evaluated before
    # training and after each epoch on 16 images; a target run trains 12 steps of min(8, 10 images) and evaluates 12 / (12 // 3) = 3 epochs
    # plus once before training.
    base = RunConfig(profile="ci", num_target_images=10)
    finetune, scratch = base.replace(strategy="finetune"), base.replace(strategy="scratch")
    plan = plan_of("ci", {"05": [finetune, scratch], "06": [finetune]})
    source = plan.runs[0]
    assert [run.key for run in plan.runs] == [run_key(source_config(base)), run_key(finetune), run_key(scratch)]
    assert [run.notebook for run in plan.runs] == ["05", "05", "05"]
    assert (source.steps, source.batch_size, source.evaluations, source.val_images) == (8, 8, 3, 16)
    assert (source.train_images, source.eval_images) == (64, 48)
    assert [(run.steps, run.train_images, run.evaluations, run.eval_images) for run in plan.runs[1:]] == [
        (12, 96, 4, 64), (12, 96, 4, 64)]
    assert plan.totals() == {"runs": 3, "steps": 32, "train_images": 256, "eval_images": 176}


def test_few_images_shrink_the_batch_and_two_stage_has_two_phases():
    (run,) = plan_of("ci", {"x": [RunConfig(profile="ci", num_target_images=5, strategy="two_stage")]}).runs[1:]
    assert (run.batch_size, run.steps, run.train_images, run.phases) == (5, 12, 60, 2)


def test_finished_runs_are_read_back_not_planned():
    config = RunConfig(profile="ci", num_target_images=10, strategy="finetune")
    plan = plan_of("ci", {"05": [config]}, done_keys={run_key(source_config(config))})
    assert [run.done for run in plan.runs] == [True, False]
    assert plan.totals() == {"runs": 1, "steps": 12, "train_images": 96, "eval_images": 64}
    assert plan.totals(plan.runs)["runs"] == 2
    assert "1 runs to train, 1 read back from results.csv or installed as shipped" in format_plan(plan)
    done = plan_of("ci", {"05": [config]}, done_keys={run.key for run in plan.runs})
    assert format_plan(done) == "plan (ci profile): nothing to train (2 runs read back from results.csv or installed as shipped)"


def test_the_ci_course_plan_follows_the_notebooks(tmp_path):
    # Worked by hand from the notebooks' parameters on the ci profile (one country, 10 images, one seed):
    # 04 the source run (8 steps, evaluated 1 + 2 times on 16 images); 05 the course scope's four
    # strategies (ci has one country and one size) + two freeze depths (12 steps each); 06 its
    # variants are 05's runs, plus scratch with the other preprocessing,
    # fine-tuning at 10x and 100x the rate, and section 6's three source starts (no shipped study at ci:
    # 16 steps of 8 images each, evaluated 1 + 4 times on 16 images); 07 one Train click of 2 epochs of
    # 12 // 3 = 4 steps; 08 three strategies on its stand-in (24 frames of 192 px split 17 train, 4 val,
    # 3 test), 12 steps each, evaluated 3 + 1 times on the 4 val frames' 6 crops each (96), and at the
    # zero-shot and the last evaluation tiled whole: 10 tiles of 96 px a frame (3 x 3 at scale 1, 1 at
    # scale 0.5), 2 x 40 = 80; 176 a run.
    plan = course_plan("ci", results_dir=tmp_path)
    assert plan.by_notebook() == {
        "04_source_detector": {"runs": 1, "steps": 8, "train_images": 64, "eval_images": 48},
        "05_transfer_study": {"runs": 6, "steps": 72, "train_images": 576, "eval_images": 384},
        "06_loss_curve_diagnosis": {"runs": 6, "steps": 84, "train_images": 672, "eval_images": 432},
        "07_interactive_explorer": {"runs": 1, "steps": 8, "train_images": 64, "eval_images": 48},
        "08_your_own_data": {"runs": 3, "steps": 36, "train_images": 288, "eval_images": 528},
    }
    assert plan.totals() == {"runs": 17, "steps": 208, "train_images": 1664, "eval_images": 1440}


def test_notebook_05s_runs_are_its_comparison_and_depth_curve():
    notebook = REPO_ROOT / "notebooks" / "05_transfer_study.ipynb"
    params = notebook_parameters(notebook)
    plan = course_plan("cpu", [notebook])
    profile = planning.get_profile("cpu")
    # course scope: four strategies, the nearest country at both sizes, the USA at the most images
    assert params["SCOPE"] is None and params["STRATEGIES"] is None and profile.scope == "course"
    comparison = len(COURSE_STRATEGIES) * (len(profile.target_sizes) + len(profile.countries) - 1)
    depth = len(params["FREEZE_DEPTHS"])
    sources = [run for run in plan.runs if run.label.startswith("source")]
    assert len(sources) == 1 and len(plan.runs) == 1 + (comparison + depth) * len(profile.seeds)
    transfers = [index for index, run in enumerate(plan.runs) if run.label.startswith("target")
                 and "_scratch_" not in run.label]
    assert transfers[0] - 1 == plan.runs.index(sources[0])  # trained right before the first run that transfers
    assert {run.steps for run in plan.runs if run not in sources} == {profile.target_steps}
    # the full scope, as `make course SCOPE=full` passes it: every strategy, country and size; the
    # course's runs are among its runs, key for key
    full = course_plan("cpu", [notebook], overrides={"SCOPE": "full", "NOT_DECLARED": 1})
    grid = len(DEFAULT_STRATEGIES) * len(profile.countries) * len(profile.target_sizes)
    assert len(full.runs) == 1 + (grid + depth) * len(profile.seeds)
    assert {run.key for run in plan.runs} < {run.key for run in full.runs}
    # the GPU profiles were sized for the full comparison, and keep it
    gpu = planning.get_profile("gpu")
    assert gpu.scope == planning.get_profile("thesis").scope == "full"
    grid = len(DEFAULT_STRATEGIES) * len(gpu.countries) * len(gpu.target_sizes)
    assert len(course_plan("gpu", [notebook]).runs) == 1 + (grid + depth) * len(gpu.seeds)


def test_the_course_passes_a_parameter_to_the_notebooks_that_declare_it():
    study = notebook_parameters(REPO_ROOT / "notebooks" / "05_transfer_study.ipynb")
    explorer = notebook_parameters(REPO_ROOT / "notebooks" / "07_interactive_explorer.ipynb")
    assert declared(study, {"SCOPE": "full"}) == {"SCOPE": "full"}
    assert declared(explorer, {"SCOPE": "full"}) == {}


def test_notebook_05s_rate_and_budget_sections_plan_their_runs_only_when_asked():
    params = notebook_parameters(REPO_ROOT / "notebooks" / "05_transfer_study.ipynb")
    study_runs, cpu = planning.NOTEBOOK_RUNS["05_transfer_study"], planning.get_profile("cpu")
    plain = study_runs(params, cpu)
    assert params["LEARNING_RATES"] is None and not any(config.evaluate_test for config in plain)
    asked = study_runs({**params, "LEARNING_RATES": [3e-4, 1e-3]}, cpu)
    extra = asked[len(plain):]
    assert asked[:len(plain)] == plain
    assert len(extra) == len(params["RATE_STRATEGIES"]) * len(cpu.countries) * 2 * len(cpu.seeds)
    assert {(config.learning_rate, config.num_target_images) for config in extra} == {
        (3e-4, cpu.target_sizes[-1]), (1e-3, cpu.target_sizes[-1])}
    assert all(config.evaluate_test and config.evaluate_source for config in extra)
    longer = study_runs({**params, "LONG_BUDGET": 4}, cpu)[len(plain):]
    assert len(longer) == len(params["RATE_STRATEGIES"]) * len(cpu.countries) * len(cpu.seeds)
    assert {(config.total_steps, config.steps_per_epoch) for config in longer} == {(4 * cpu.target_steps,
                                                                                    cpu.target_steps)}


def test_the_plan_of_notebooks_05_07_and_08_follows_their_data_and_anchor_parameters():
    cpu = planning.get_profile("cpu")
    study = notebook_parameters(REPO_ROOT / "notebooks" / "05_transfer_study.ipynb")
    configs = planning.NOTEBOOK_RUNS["05_transfer_study"](
        {**study, "SOURCE_DATA": "synth:sweden", "TARGET_DATA": "synth:usa", "CLASSES": "superclass"}, cpu)
    assert {(config.source_data, config.target_data, config.classes) for config in configs} == {
        ("synth:sweden", "synth:usa", "superclass")}
    explorer = notebook_parameters(REPO_ROOT / "notebooks" / "07_interactive_explorer.ipynb")
    [config] = planning.NOTEBOOK_RUNS["07_interactive_explorer"]({**explorer, "TARGET_DATA": "synth:usa"}, cpu)
    assert config.target_data == "synth:usa"
    own = notebook_parameters(REPO_ROOT / "notebooks" / "08_your_own_data.ipynb")
    configs = planning.NOTEBOOK_RUNS["08_your_own_data"]({**own, "SMALLEST_SCALE": 0.05}, cpu)
    assert {config.smallest_scale for config in configs} == {0.05}


def test_notebook_08_trains_the_sizes_its_train_split_holds():
    # cpu asks for 10 and 50 target images; the stand-in's 24 frames leave 17 for training, so only 10;
    # 6 frames leave 4 (split 0.7 : 0.15 : 0.15 within an image), fewer than any size: all 4 then
    params = notebook_parameters(REPO_ROOT / "notebooks" / "08_your_own_data.ipynb")
    own_data_runs, cpu = planning.NOTEBOOK_RUNS["08_your_own_data"], planning.get_profile("cpu")
    assert params["TARGET_DATA"] is None and cpu.target_sizes == (10, 50)
    configs = own_data_runs(params, cpu)
    assert [(config.strategy, config.num_target_images) for config in configs] == [
        (strategy, 10) for strategy in params["STRATEGIES"]]
    assert {config.target_data for config in configs} == {configs[0].target_data}
    assert configs[0].target_data.startswith("yolo:") and "germany_24x320_s0" in configs[0].target_data
    few = own_data_runs({**params, "EXAMPLE_FRAMES": 6, "STRATEGIES": ["finetune"]}, cpu)
    assert [config.num_target_images for config in few] == [4]


def test_parameters_are_read_as_literals(tmp_path):
    def notebook(source: str):
        path = tmp_path / "01_x.ipynb"
        cell = {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": source}
        path.write_text(json.dumps({"cells": [{"cell_type": "markdown", "metadata": {}, "source": "# x"}, cell]}))
        return path

    assert notebook_parameters(notebook('PROFILE = "cpu"\nSIZES = [10, 50]\nCOUNTRY = None\n')) == {
        "PROFILE": "cpu", "SIZES": [10, 50], "COUNTRY": None}
    with pytest.raises(ValueError, match="SIZES is not a literal"):
        notebook_parameters(notebook("SIZES = list(range(3))\n"))
    empty = tmp_path / "02_y.ipynb"
    empty.write_text(json.dumps({"cells": []}))
    with pytest.raises(ValueError, match="no cell tagged 'parameters'"):
        notebook_parameters(empty)


def _plan(*runs: PlannedRun) -> Plan:
    return Plan("ci", runs)


def test_the_estimate_from_timed_steps_adds_images_evaluations_and_set_up():
    runs = (PlannedRun("04", "a", "k1", steps=10, batch_size=8, evaluations=2, val_images=30, phases=1),
            PlannedRun("05", "b", "k2", steps=5, batch_size=4, evaluations=3, val_images=30, phases=2),
            PlannedRun("05", "c", "k3", steps=99, batch_size=8, evaluations=9, val_images=30, done=True))
    timing = StepTiming(batch_size=8, step_seconds=0.4, setup_seconds=6.0, precision="float32", device="CPU")
    per_image = 0.4 / 8  # 80 + 20 training images, 60 + 90 evaluated at a third of the cost, 3 phases
    expected = (80 + 20) * per_image + (60 + 90) * per_image * FORWARD_SHARE + 3 * 6.0
    assert estimate_seconds(_plan(*runs), timing) == pytest.approx(expected)
    assert expected == pytest.approx(5.0 + 2.5 + 18.0)


def test_each_run_is_priced_at_the_timing_of_its_precision():
    """The cpu profile's source runs train in float32, its target runs in bf16: one rate for both was
    wrong by the ratio of the two."""
    runs = (PlannedRun("04", "source", "k1", steps=10, batch_size=8, evaluations=0, val_images=0, precision="float32"),
            PlannedRun("05", "target", "k2", steps=10, batch_size=8, evaluations=0, val_images=0,
                       precision="mixed_bfloat16"),
            PlannedRun("05", "other", "k3", steps=10, batch_size=8, evaluations=0, val_images=0, precision="x"))
    timings = {"float32": StepTiming(8, 0.8, 1.0, "float32", "CPU"),
               "mixed_bfloat16": StepTiming(8, 0.4, 2.0, "mixed_bfloat16", "CPU")}
    # 10 steps each: 8 s + 1 s, 4 s + 2 s, and an unknown precision at the first timing, 8 s + 1 s
    assert estimate_seconds(_plan(*runs), timings) == pytest.approx(9.0 + 6.0 + 9.0)
    line = planning.format_estimate(_plan(*runs), timings)
    assert "0.8 s a step of 8 images in float32" in line and "0.4 s a step of 8 images in mixed_bfloat16" in line
    # and per notebook, where a slow machine would cut first: 04 9 s, 05 6 s + 9 s
    assert line.splitlines()[1] == "  per notebook: 04 9 s, 05 15 s"
    assert "per notebook" not in planning.format_estimate(_plan(*runs[1:]), timings)  # one notebook: the total says it
    with pytest.raises(ValueError, match="at least one step timing"):
        estimate_seconds(_plan(*runs), {})


def test_the_plan_times_every_precision_its_runs_train_under(monkeypatch, tmp_path):
    timed = []

    def measure(profile, steps, precision):
        timed.append(precision)
        return StepTiming(8, 0.1, 0.0, precision, "CPU")

    monkeypatch.setattr(planning.estimate, "measure_step", measure)
    monkeypatch.setenv(PRECISION_VARIABLE, "mixed_bfloat16")  # targets in bf16 on any CPU, the source float32
    target = RunConfig(profile="cpu", num_target_images=10, strategy="finetune")
    other_source = RunConfig(stage="source", profile="cpu", seed=1)  # not shipped: it trains, in float32
    plan = planning.sweep_plan([other_source, target], tmp_path)  # + the target's source, shipped: done, not timed
    assert [(run.precision, run.done) for run in plan.runs] == [
        ("float32", False), ("float32", True), ("mixed_bfloat16", False)]
    assert list(planning.measure_plan_steps(plan)) == timed == ["float32", "mixed_bfloat16"]


def test_the_flops_estimate_divides_counted_flops_by_the_assumed_rate():
    runs = (PlannedRun("04", "a", "k1", steps=100, batch_size=10, evaluations=3, val_images=100),)
    device = Throughput("test card", peak_tflops=10.0, achieved_fraction=0.5, run_overhead_seconds=20.0)
    # (1000 training + 300 / 3 evaluated images) x 5 GFLOP at 5 TFLOPS = 1.1 s, + 20 s for the run
    assert flops_seconds(_plan(*runs), 5e9, device) == pytest.approx(21.1)
    assert planning.T4.achieved_tflops == pytest.approx(65.0 * 0.15)


def test_a_sweep_plan_marks_the_runs_its_results_table_holds(tmp_path):
    configs = expand_grid({"strategy": ["finetune", "head_only"]}, RunConfig(profile="ci", num_target_images=10))
    plan = planning.sweep_plan(configs, tmp_path)
    assert [run.notebook for run in plan.runs] == ["sweep"] * 3 and not any(run.done for run in plan.runs)
    with pytest.raises(ValueError, match="at least one configuration"):
        planning.sweep_plan([], tmp_path)


@pytest.mark.slow
def test_timing_a_few_steps_of_the_ci_model():
    import keras

    if keras.backend.backend() != "tensorflow":  # the same Keras calls; XLA compiling takes 40 s on a CPU
        pytest.skip("run on the TensorFlow backend only")
    timing = planning.measure_step("ci", steps=2)
    assert timing.batch_size == 8 and timing.precision == "float32" and timing.device == "CPU"
    assert 0 < timing.step_seconds < 60 and timing.setup_seconds >= 0


def test_tlutils_sweep_prints_its_plan_before_it_trains(monkeypatch, capsys, tmp_path):
    import tlutils.experiment
    from tlutils.cli import main

    monkeypatch.setattr(tlutils.experiment, "sweep_from_cli", lambda args: print("sweeping") or 0)
    assert main(["sweep", "--profile", "ci", "--strategies", "finetune", "head_only", "--num-target-images", "10",
                 "--seeds", "0", "--out", str(tmp_path), "--no-estimate"]) == 0
    out = capsys.readouterr().out
    # the source run and two target runs of 12 steps, for the profile's one country
    assert out.index("plan (ci profile): 3 runs to train") < out.index("sweeping")
    assert "  total      3         32            256           176" in out.splitlines()


def test_a_real_data_run_prices_its_tiled_whole_frame_evaluations(tmp_path):
    """Real frames: val crops at every evaluation, and every tile of every whole val frame at the
    zero-shot and the last evaluation (what costs the time, ~140 tiles a GTSDB frame at 160 px)."""
    from tlutils.data.synth import generate
    from tlutils.experiment import resolve
    from tlutils.experiment.datasets import load_split
    from tlutils.experiment.run_data import (REAL_BACKGROUND_CROPS, REAL_POSITIVE_CROPS, REAL_TILE_OVERLAP_SHARE,
                                             REAL_TILE_SCALES)
    from tlutils.plan.runs import planned_run
    from tlutils.tiling import tile_grid

    generate("germany", 24, tmp_path / "coco", seed=5, image_size=192)
    config = RunConfig(profile="ci", target_data=f"coco:{tmp_path / 'coco' / 'annotations.json'}", strategy="finetune",
                       num_target_images=10)
    resolved, planned = resolve(config), planned_run(config, "sweep")
    frames = load_split(resolved.data, "val", "name", resolved.num_val_images, 96, None)
    tiles = sum(len(tile_grid(f.width, f.height, 96, round(REAL_TILE_OVERLAP_SHARE * 96), REAL_TILE_SCALES))
                for f in frames)
    assert tiles > len(frames)  # 192-px frames: several 96-px tiles each
    crops = len(frames) * (REAL_POSITIVE_CROPS + REAL_BACKGROUND_CROPS)
    assert planned.eval_images == pytest.approx(planned.evaluations * crops + 2 * tiles, abs=planned.evaluations)
    synth = planned_run(config.replace(target_data="germany"), "sweep")
    assert synth.val_images == resolve(config.replace(target_data="germany")).num_val_images
    held_out = planned_run(config.replace(evaluate_test=True), "sweep")  # + all tiles of the test frames, twice
    assert held_out.eval_images == pytest.approx(planned.eval_images + 2 * tiles, abs=2 * planned.evaluations)


def test_held_out_scores_are_priced_like_the_val_set():
    from tlutils.plan.runs import planned_run

    config = RunConfig(profile="cpu", target_data="germany", strategy="finetune", num_target_images=50)
    plain, both = planned_run(config, "sweep"), planned_run(config.replace(evaluate_test=True, evaluate_source=True),
                                                            "sweep")
    val = plain.val_images  # the sign world's val set, scored at every evaluation
    assert plain.eval_images == plain.evaluations * val
    assert both.eval_images == plain.eval_images + 2 * 2 * val  # test and source, at epoch 0 and the last


def test_the_shipped_source_is_planned_as_done_unless_notebook_04_trains_it(tmp_path):
    import json

    from tlutils.experiment.shipped import shipped_keys

    source_key = run_key(RunConfig(stage="source", source_data="belgium", strategy="scratch", profile="cpu"))
    assert source_key in shipped_keys()
    notebook = REPO_ROOT / "notebooks" / "04_source_detector.ipynb"
    plan = course_plan("cpu", [notebook], results_dir=tmp_path)
    assert [(run.key, run.done) for run in plan.runs] == [(source_key, True)]
    trains = json.loads(notebook.read_text())
    for cell in trains["cells"]:
        if "parameters" in cell["metadata"].get("tags", []):
            cell["source"] = "".join(cell["source"]).replace("TRAIN_SOURCE = False", "TRAIN_SOURCE = True")
    (tmp_path / "04_source_detector.ipynb").write_text(json.dumps(trains))
    plan = course_plan("cpu", [tmp_path / "04_source_detector.ipynb"], results_dir=tmp_path)
    assert [(run.key, run.done) for run in plan.runs] == [(source_key, False)]
