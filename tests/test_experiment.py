"""The experiment runner on the ci profile: tiny end-to-end runs per strategy, resume, skip, tables.

One module-scoped results folder holds the source run and one target run per strategy (germany, 10
images, the ci budget of 3 epochs of 4 steps); the tests read those runs. The whole file trains seven
tiny detectors.

``make test`` runs the cases marked ``backends`` again on JAX: freezing and weight transfer
(freeze:block3: the frozen blocks are the source's bit for bit), finetune, both phases of two_stage,
and a resume inside two_stage's first phase. They ask :func:`trained` for their strategy's run alone,
so on JAX only the source run and those three train (scratch is the source run's kind, and head_only
is test_crash_safety's JAX target).
"""

from __future__ import annotations

import shutil

import keras
import numpy as np
import pandas as pd
import pytest

from tlutils.anchors import FIRST_LAYER_SCALE, AnchorConfig, generate_anchors
from tlutils.data.augment import Augmenter
from tlutils.data.pipeline import DetectionSequence
from tlutils.evaluation import MAP_METRIC
from tlutils.experiment import (
    RESULT_COLUMNS,
    RunConfig,
    expand_grid,
    load_per_class,
    load_results,
    run,
    run_key,
    source_config,
    summarize,
    sweep_from_cli,
)
from tlutils.experiment.run_data import StepBatches, step_dataset
from tlutils.experiment.store import read_classes
from tlutils.model import FREEZE_POINTS, LAYERS_BY_BLOCK, block_of, build_ssd_vgg16, freeze, trainable_summary
from tlutils.profiles import get_profile

pytestmark = pytest.mark.slow

STRATEGIES = ("scratch", "freeze:block3", "finetune", "two_stage", "head_only")
TIMING_COLUMNS = ("epoch_seconds", "eval_seconds", "images_per_s")
CI = get_profile("ci")


def target(strategy: str) -> RunConfig:
    """A ci target run: germany, 10 images, the ci budget (12 steps in 3 epochs of 4)."""
    return RunConfig(target_data="germany", strategy=strategy, num_target_images=10, profile="ci")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def runs(results_dir, data_dir):
    """Rows of one ci target run per strategy (the source run comes first, by itself)."""
    return {strategy: run(target(strategy), results_dir, data_dir=data_dir, verbose=0) for strategy in STRATEGIES}


@pytest.fixture(scope="module")
def trained(results_dir, data_dir):
    """``trained(strategy)``: the rows of that strategy's ci run in ``runs``' folder, trained at the first
    call (and the source run with it); a later call, or one after ``runs``, reads them back."""
    return lambda strategy: run(target(strategy), results_dir, data_dir=data_dir, verbose=0)


#: A strategy of :data:`STRATEGIES` whose cases also run on JAX (module docstring).
ON_BOTH_BACKENDS = ("freeze:block3", "finetune", "two_stage")


def on_both_backends(strategy: str, *values):
    """A case parameter, marked ``backends`` when its strategy is one of :data:`ON_BOTH_BACKENDS`."""
    return pytest.param(strategy, *values, marks=[pytest.mark.backends] if strategy in ON_BOTH_BACKENDS else [])


def _detector(results_dir, rows: pd.DataFrame) -> keras.Model:
    return keras.saving.load_model(results_dir / rows["checkpoint"].iloc[-1], compile=False)


# --- configurations ------------------------------------------------------------------------------


def test_run_config_normalizes_the_strategy_and_keys_are_stable():
    a = RunConfig(strategy="freeze:block3", num_target_images=10)
    b = RunConfig(strategy=" Freeze:Block3 ", num_target_images=10)
    assert (a.strategy, b.strategy) == ("freeze:block3", "freeze:block3")
    assert a == b and run_key(a) == run_key(b)
    assert run_key(a) != run_key(a.replace(seed=1)) != run_key(a.replace(num_target_images=11))
    # resolved defaults count: an explicit value equal to the profile's default is the same run
    assert run_key(a.replace(learning_rate=CI.learning_rate)) == run_key(a)


def test_defaults_follow_the_initial_weights_and_the_stage():
    from tlutils.experiment import resolve

    scratch_source = resolve(RunConfig(stage="source", source_data="belgium"))
    assert (scratch_source.preprocessing, scratch_source.augmentation) == ("tf", "photometric")
    transfer = RunConfig(strategy="finetune", num_target_images=10)
    assert (resolve(transfer).preprocessing, resolve(transfer).augmentation) == ("tf", "ssd")
    assert resolve(RunConfig(strategy="imagenet", num_target_images=10)).preprocessing == "caffe"
    assert resolve(transfer.replace(source_strategy="imagenet")).preprocessing == "caffe"
    # the source run shares an explicit preprocessing, so transferred weights see what they learned on
    assert resolve(source_config(transfer.replace(preprocessing="caffe"))).preprocessing == "caffe"
    assert resolve(transfer).source_run_key == run_key(source_config(transfer))


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"stage": "pretrain"}, "stage"),
        ({"strategy": "finetune"}, "num_target_images"),
        ({"strategy": "freeze", "num_target_images": 5}, "freeze point"),
        ({"stage": "source", "strategy": "head_only"}, "source stage"),
        ({"optimizer": "rmsprop", "num_target_images": 5}, "optimizer"),
        ({"augmentation": "mixup", "num_target_images": 5}, "augmentation"),
        ({"preprocessing": "torch", "num_target_images": 5}, "preprocessing"),
        ({"profile": "tpu", "num_target_images": 5}, "profile"),
        ({"num_target_images": 0}, "num_target_images"),
        ({"num_target_images": 5, "total_steps": 10, "steps_per_epoch": 4}, "whole number"),
        ({"num_target_images": 5, "learning_rate": "[0.001]"}, "learning_rate"),  # papermill -p passes text
        ({"num_target_images": 5, "learning_rate": 0.0}, "learning_rate"),
    ],
)
def test_bad_configurations_raise(fields, fragment):
    with pytest.raises(ValueError, match=fragment):
        run_key(RunConfig(**fields))


def test_expand_grid_multiplies_only_freeze_by_its_points():
    base = RunConfig(num_target_images=10)
    grid = {"strategies": ["scratch", "freeze:block2", "freeze:fc"], "num_target_images": [10, 50], "seed": [0, 1]}
    configs = expand_grid(grid, base)
    labels = sorted({c.strategy for c in configs})
    assert labels == ["freeze:block2", "freeze:fc", "scratch"]
    assert len(configs) == 3 * 2 * 2
    with pytest.raises(ValueError, match="valid keys"):
        expand_grid({"epochs": [1]}, base)
    with pytest.raises(ValueError, match="valid keys"):  # one spelling: the point is part of the strategy
        expand_grid({"strategy": ["freeze"], "freeze_point": ["block2"]}, base)


def test_summarize_takes_the_final_epoch_mean_and_std_over_seeds():
    rows = []
    for seed, final in ((0, 0.5), (1, 0.7)):
        for epoch, value in ((1, 0.1), (2, final)):
            rows.append(dict(run_key=f"k{seed}", stage="target", country="germany", strategy="freeze:block3",
                             num_target_images=50, seed=seed, learning_rate=1e-3,
                             epoch=epoch, val_map50=value, epoch_seconds=2.0))
    summary = summarize(pd.DataFrame(rows))
    assert len(summary) == 1
    row = summary.iloc[0]
    assert row["strategy"] == "freeze:block3" and row["num_seeds"] == 2 and row["seconds"] == 4.0
    assert row["val_map50_mean"] == pytest.approx(0.6)
    assert row["val_map50_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))


def test_summarize_counts_only_the_seeds_that_have_the_metric():
    rows = [dict(run_key=f"k{seed}", stage="target", country="gtsdb", strategy="finetune", num_target_images=50,
                 seed=seed, learning_rate=1e-4, epoch=4, val_map50=0.2, map50_small=small, epoch_seconds=1.0)
            for seed, small in ((0, float("nan")), (1, 0.3), (2, 0.2))]
    summary = summarize(pd.DataFrame(rows), metric="map50_small").iloc[0]
    assert summary["num_seeds"] == 2 and summary["map50_small_mean"] == pytest.approx(0.25)
    assert summarize(pd.DataFrame(rows)).iloc[0]["num_seeds"] == 3


def test_summarize_keeps_runs_that_differ_in_more_than_the_seed_apart():
    rows = [dict(run_key=f"k{l2}-{seed}", stage="target", country="germany", strategy="finetune",
                 num_target_images=50, seed=seed, learning_rate=1e-4, epoch=1,
                 l2_regularization=l2, profile="cpu", val_map50=value, epoch_seconds=1.0)
            for l2, seed, value in ((0.0, 0, 0.7), (0.0, 1, 0.6), (0.0005, 0, 0.2))]
    summary = summarize(pd.DataFrame(rows)).set_index("l2_regularization")
    assert list(summary["num_seeds"].sort_index()) == [2, 1]
    assert summary.loc[0.0, "val_map50_mean"] == pytest.approx(0.65)
    assert summary.loc[0.0005, "val_map50_mean"] == pytest.approx(0.2)


def test_summarize_never_averages_transfers_from_two_sources():
    rows = [dict(run_key=f"k-{source}", stage="target", country="usa", strategy="finetune", num_target_images=50,
                 seed=0, learning_rate=1e-4, epoch=1, source_data=source, val_map50=value, epoch_seconds=1.0)
            for source, value in (("synth:belgium", 0.3), ("synth:sweden", 0.5))]
    assert sorted(summarize(pd.DataFrame(rows))["val_map50_mean"]) == [0.3, 0.5]


def test_study_targets_take_one_spec_a_list_or_the_countries():
    from tlutils.experiment.sweeps import study_targets

    assert study_targets("synth:usa", ["germany"], "ci") == ["synth:usa"]  # papermill -p passes one string
    assert study_targets(["usa", "synth:sweden"], None, "ci") == ["usa", "synth:sweden"]
    assert study_targets(None, ["sweden"], "ci") == ["sweden"]
    assert study_targets(None, None, "ci") == list(CI.countries)
    with pytest.raises(ValueError, match="share the results table's name"):  # both are "coco-coco"
        study_targets(["coco:/a/coco/annotations.json", "coco:/b/coco/annotations.json"], None, "ci")


def test_the_course_comparison_is_the_nearest_target_at_every_size_and_the_others_at_the_most_images():
    from tlutils.experiment.config import DEFAULT_STRATEGIES
    from tlutils.experiment.sweeps import COURSE_STRATEGIES, comparison_configs

    base = RunConfig(profile="cpu", num_target_images=10)
    cells = lambda configs: [(c.target_data.split(":")[-1], c.strategy, c.num_target_images, c.seed)  # noqa: E731
                             for c in configs]
    course = comparison_configs("course", ["germany", "usa"], [10, 50], [0, 1], base)
    assert cells(course) == [("germany", strategy, size, seed) for strategy in COURSE_STRATEGIES
                             for size in (10, 50) for seed in (0, 1)] + [
                                ("usa", strategy, 50, seed) for strategy in COURSE_STRATEGIES for seed in (0, 1)]
    full = comparison_configs("full", ["germany", "usa"], [10, 50], [0, 1], base)
    assert cells(full) == cells(expand_grid({"country": ["germany", "usa"], "strategy": list(DEFAULT_STRATEGIES),
                                             "num_target_images": [10, 50], "seed": [0, 1]}, base))
    assert {run_key(config) for config in course} < {run_key(config) for config in full}
    # one target: every size; strategies named: those
    mine = comparison_configs("course", ["usa"], [10, 50], [0], base, ["two_stage"])
    assert cells(mine) == [("usa", "two_stage", 10, 0), ("usa", "two_stage", 50, 0)]
    with pytest.raises(ValueError, match="scope must be one of"):
        comparison_configs("quick", ["usa"], [10], [0], base)


# --- the training batches ------------------------------------------------------------------------


def tiny_sequence() -> DetectionSequence:
    """5 one-box images: 3 batches of 2 a pass, augmented and shuffled per pass."""
    rng = np.random.default_rng(0)
    samples = [(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8), np.array([[8.0, 8.0, 30.0, 30.0]]),
                np.array([1])) for _ in range(5)]
    anchors = generate_anchors(AnchorConfig.from_feature_maps(32, (4, 2)))
    return DetectionSequence(samples, anchors, None, batch_size=2, augmenter=Augmenter(32), seed=3)


def test_step_batches_depend_on_the_global_step_only():
    sequence = tiny_sequence()
    steps = StepBatches(sequence, steps_per_epoch=4)  # 4 steps an epoch over 3 batches a pass
    steps.epoch = 2  # global steps 8..11: pass 2 batches 2, pass 3 batches 0, 1, 2
    got = [steps.batch(index)[0] for index in reversed(range(4))][::-1]
    for image, (passes, batch) in zip(got, [(2, 2), (3, 0), (3, 1), (3, 2)]):
        reference = tiny_sequence()
        reference.set_epoch(passes)
        np.testing.assert_array_equal(image, reference[batch][0])
    assert sequence.epoch == 0


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.data is TensorFlow's")
def test_fit_reads_the_runner_batches_without_tf_data_autotuning():
    # Autotuning's optimization thread made the next epoch's first step wait up to ~40 s (see
    # tlutils.data.pipeline.DEFAULT_WORKERS); Keras switches it off for a PyDataset read by its enqueuer.
    from keras.src.trainers.data_adapters import get_data_adapter

    dataset = get_data_adapter(step_dataset(tiny_sequence(), steps_per_epoch=4)).get_tf_dataset()
    assert dataset.options().autotune.enabled is False


class ImageRecorder(keras.Model):
    """A one-weight model whose (eager) loss records the images of every batch ``fit`` trains on."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = keras.layers.Dense(1)
        self.images: list[np.ndarray] = []

    def call(self, images):
        return self.dense(keras.ops.mean(images, axis=(1, 2)))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        self.images.append(np.asarray(x))
        return keras.ops.mean(y_pred)


@pytest.mark.backends
@pytest.mark.parametrize("initial_epoch", [0, 2])
def test_fit_trains_each_epoch_on_its_own_batches(initial_epoch):
    # JAX's fit reads one batch to build an unbuilt model before the first epoch; Keras' enqueuer then
    # handed out the batches it had made ahead for that read first, so every epoch began with batches
    # of the one before and a resumed run with batches of epoch 0 (run_data.step_dataset).
    dataset = step_dataset(tiny_sequence(), steps_per_epoch=4)
    model = ImageRecorder()
    model.compile(optimizer="sgd", run_eagerly=True)
    # what the runner's epoch callback does when an epoch begins
    set_epoch = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, _: setattr(dataset.steps, "epoch", epoch))
    model.fit(dataset, epochs=initial_epoch + 2, initial_epoch=initial_epoch, shuffle=False, verbose=0,
              callbacks=[set_epoch])
    expected = StepBatches(tiny_sequence(), steps_per_epoch=4)
    want = []
    for epoch in range(initial_epoch, initial_epoch + 2):
        expected.epoch = epoch
        want += [expected.batch(index)[0] for index in range(4)]
    assert len(model.images) == len(want)
    for step, (got, image) in enumerate(zip(model.images, want)):
        np.testing.assert_array_equal(got, image, err_msg=f"global step {initial_epoch * 4 + step}")


# --- end-to-end runs -----------------------------------------------------------------------------


def test_results_csv_has_one_row_per_epoch_and_every_column(runs, results_dir):
    table = load_results(results_dir)
    assert list(table.columns) == list(RESULT_COLUMNS)
    required = ["stage", "country", "strategy", "num_target_images", "seed", "epoch", "loss",
                "localization", "confidence", "regularization", "val_loss", "val_map50", "epoch_seconds",
                "run_key", "checkpoint"]
    assert set(required) <= set(table.columns)
    assert set(table["stage"]) == {"source", "target"}
    # every run: an epoch-0 row (before training), then its epochs (target runs: 3)
    assert len(table) == (1 + CI.source_epochs) + (1 + 3) * len(STRATEGIES)
    for key, rows in table.groupby("run_key"):
        assert list(rows["epoch"]) == list(range(len(rows))), key
        trained = rows[rows["epoch"] >= 1]
        assert trained["coco_map"].iloc[:-1].isna().all() and np.isfinite(trained["coco_map"].iloc[-1])
        assert (results_dir / rows["checkpoint"].iloc[-1]).is_file()
    trained = table[table["epoch"] >= 1]
    numbers = trained[["loss", "localization", "confidence", "val_loss", "val_map50", "epoch_seconds"]]
    assert np.isfinite(numbers.to_numpy(dtype=float)).all()
    assert ((table["val_map50"] >= 0) & (table["val_map50"] <= 1)).all()
    target_rows = table[table["stage"] == "target"]
    assert set(target_rows["source_run_key"].dropna()) == {run_key(source_config(target("finetune")))}


def test_every_target_run_starts_with_a_zero_shot_row(runs):
    """Epoch 0 scores the detector before training: every source-initialized strategy starts from the
    same class-mapped source detector (same seed, same fresh rows), so their epoch 0 is the same."""
    zero = {strategy: rows[rows["epoch"] == 0].iloc[0] for strategy, rows in runs.items()}
    for row in zero.values():
        assert row["step"] == 0 and np.isnan(row["loss"]) and np.isfinite(row["regularization"])
        assert np.isfinite(row["val_loss"]) and np.isfinite(row["coco_map"]) and 0 <= row["val_map50"] <= 1
    transferred = [s for s in STRATEGIES if s != "scratch"]
    for strategy in transferred[1:]:
        # val_loss differs: it adds the L2 term of the *trainable* kernels, and each freezes others
        for column in ("val_localization", "val_confidence", "val_map50", "coco_map"):
            assert zero[strategy][column] == zero[transferred[0]][column], (strategy, column)
    assert zero["scratch"]["val_confidence"] != zero["finetune"]["val_confidence"]


def test_every_run_keeps_its_per_class_table(runs, results_dir):
    """``per_class.csv`` of each run: the zero-shot (target runs) and the final evaluation, one row per
    class of the run, whose AP@0.5 average to the row's val_map50 (classes without ground truth: NaN)."""
    table = load_results(results_dir)
    assert set(table["map_metric"]) == {MAP_METRIC}
    per_class = load_per_class(results_dir)
    assert set(per_class["run_key"]) == set(table["run_key"])
    for key, rows in table.groupby("run_key"):
        classes = read_classes((results_dir / rows["checkpoint"].iloc[-1]).parent)
        evaluations = per_class[per_class["run_key"] == key]
        for _, row in rows[rows["epoch"].isin([0, rows["epoch"].max()])].iterrows():
            scored = evaluations[evaluations["epoch"] == row["epoch"]]
            assert scored["class"].tolist() == list(classes.values()), (key, row["epoch"])
            counted = scored[scored["num_ground_truths"] > 0]
            assert scored.loc[scored["num_ground_truths"] == 0, "ap50"].isna().all()
            assert counted["ap50"].mean() == pytest.approx(row["val_map50"], abs=1e-9)
            assert scored["ap50_small"].mean() == pytest.approx(row["map50_small"], abs=1e-9, nan_ok=True)
    assert len(load_per_class(results_dir, table["run_key"].iloc[-1])) > 0
    with pytest.raises(ValueError, match="no finished runs"):
        load_per_class(results_dir, "not-a-run")


def test_a_table_written_before_the_metric_column_loads(runs, results_dir, tmp_path):
    table = pd.read_csv(results_dir / "results.csv").drop(columns=["map_metric", "smallest_scale"])
    table.to_csv(tmp_path / "results.csv", index=False)
    loaded = load_results(tmp_path)
    assert len(loaded) == len(table) and set(loaded["map_metric"]) == {MAP_METRIC}
    assert set(loaded["smallest_scale"]) == {FIRST_LAYER_SCALE}, "every run before the parameter had SSD's boxes"


def test_a_table_written_before_the_source_data_column_reads_it_from_its_source_runs(runs, results_dir, tmp_path):
    table = load_results(results_dir)
    transfers = table["source_run_key"].notna()
    assert set(table.loc[transfers, "source_data"]) == {"synth:belgium"}
    assert table.loc[~transfers, "source_data"].isna().all()
    pd.read_csv(results_dir / "results.csv").drop(columns=["source_data"]).to_csv(tmp_path / "results.csv", index=False)
    assert load_results(tmp_path)["source_data"].fillna("-").tolist() == table["source_data"].fillna("-").tolist()


def test_a_runs_rows_record_its_smallest_default_box(runs, results_dir, data_dir, tmp_path):
    default = load_results(results_dir)
    assert set(default["smallest_scale"]) == {FIRST_LAYER_SCALE}
    rows = run(target("scratch").replace(smallest_scale=0.05), tmp_path, data_dir=data_dir, verbose=0)
    assert set(rows["smallest_scale"]) == {0.05} and rows["run_key"].iloc[0] not in set(default["run_key"])
    scratch = default[(default["strategy"] == "scratch") & (default["stage"] == "target")]
    summary = summarize(pd.concat([scratch, load_results(tmp_path)]))  # one seed of each: never averaged
    assert sorted(summary["smallest_scale"]) == [0.05, FIRST_LAYER_SCALE] and set(summary["num_seeds"]) == {1}


@pytest.mark.parametrize("strategy", [on_both_backends(strategy) for strategy in STRATEGIES])
def test_training_lowers_the_loss(trained, strategy):
    losses = trained(strategy).query("epoch >= 1")["loss"].to_numpy()
    assert losses[-1] < losses[0], losses


def _expected_trainable(freeze_point: str | None) -> int:
    detector = build_ssd_vgg16(14, input_size=CI.input_size, width=CI.width)  # germany's 14 classes
    freeze(detector, freeze_point)
    return int(trainable_summary(detector)["trainable"].sum())


@pytest.mark.parametrize(
    ("strategy", "freeze_points"),
    [
        on_both_backends("scratch", [None] * 4),  # epoch 0 (zero-shot) counts what the first phase trains
        on_both_backends("freeze:block3", ["block3"] * 4),
        on_both_backends("finetune", [None] * 4),
        on_both_backends("head_only", ["extras"] * 4),
        on_both_backends("two_stage", ["extras", "extras", "extras", None]),  # 3 epochs * 0.5 rounds to 2 of heads
    ],
)
def test_trainable_counts_per_strategy(trained, strategy, freeze_points):
    rows = trained(strategy)
    assert rows["trainable_params"].tolist() == [_expected_trainable(point) for point in freeze_points]
    if strategy == "two_stage":
        assert rows["phase"].tolist() == ["heads", "heads", "heads", "finetune"]
        assert rows["phase_learning_rate"].iloc[-1] < rows["phase_learning_rate"].iloc[0]


@pytest.mark.parametrize(
    ("strategy", "frozen_blocks"),
    [
        on_both_backends("freeze:block3", {"block1", "block2", "block3"}),  # and the rest came from the source
        on_both_backends("head_only", set(FREEZE_POINTS) - {"heads"}),
        on_both_backends("finetune", set()),
        on_both_backends("two_stage", set()),  # the second phase trains what the first had frozen
    ],
)
def test_frozen_weights_stay_bit_for_bit_and_the_rest_moves(trained, results_dir, strategy, frozen_blocks):
    rows = trained(strategy)
    source = _detector(results_dir, load_results(results_dir).query("stage == 'source'"))
    detector = _detector(results_dir, rows)
    compared = 0
    for layer in detector.layers:
        if not layer.weights or layer.name.endswith("_class_head"):  # 14 vs 13 classes: shapes differ
            continue
        before = source.get_layer(layer.name).get_weights()
        after = layer.get_weights()
        same = all(np.array_equal(a, b) for a, b in zip(before, after))
        assert same == (block_of(layer.name) in frozen_blocks), layer.name
        compared += 1
    assert compared > 20


def test_a_finished_config_is_skipped(runs, results_dir, data_dir):
    class MustNotTrain(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            raise AssertionError("a finished configuration was trained again")

    again = run(target("head_only"), results_dir, data_dir=data_dir, verbose=0, callbacks=[MustNotTrain()])
    pd.testing.assert_frame_equal(again, runs["head_only"], check_dtype=False)
    assert len(load_results(results_dir)) == (1 + CI.source_epochs) + (1 + 3) * len(STRATEGIES)


class Disconnect(Exception):
    """Stands in for a Colab session that goes away."""


class StopAtEpoch(keras.callbacks.Callback):
    """Raises when ``epoch`` (0-based) begins, i.e. after the previous epoch was saved."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Disconnect(f"disconnected before epoch {epoch + 1}")


class SeenEpochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


@pytest.mark.backends
def test_an_interrupted_run_resumes_and_ends_identical(trained, results_dir, data_dir, tmp_path):
    """two_stage: interrupted inside its heads phase after epoch 1, resumed, compared with `runs`."""
    config = target("two_stage")
    reference = trained("two_stage")
    # a fresh results folder that already holds the finished source run
    resumed_dir = tmp_path / "results"
    source = load_results(results_dir).query("stage == 'source'")
    source_folder = (results_dir / source["checkpoint"].iloc[0]).parent
    shutil.copytree(source_folder, resumed_dir / source_folder.relative_to(results_dir))
    source.to_csv(resumed_dir / "results.csv", index=False)

    with pytest.raises(Disconnect):
        run(config, resumed_dir, data_dir=data_dir, verbose=0, callbacks=[StopAtEpoch(1)])
    assert len(load_results(resumed_dir)) == len(source)  # nothing reported for an unfinished run
    seen = SeenEpochs()
    rows = run(config, resumed_dir, data_dir=data_dir, verbose=0, callbacks=[seen])
    assert seen.epochs == [1, 2]  # continued with the second epoch, not from the start

    numbers = [c for c in RESULT_COLUMNS if c not in TIMING_COLUMNS and pd.api.types.is_float_dtype(reference[c])]
    np.testing.assert_allclose(rows[numbers].to_numpy(float), reference[numbers].to_numpy(float), atol=1e-6,
                               equal_nan=True)
    assert rows["run_key"].tolist() == reference["run_key"].tolist()
    pd.testing.assert_frame_equal(load_per_class(resumed_dir, rows["run_key"].iloc[0]),
                                  load_per_class(results_dir, rows["run_key"].iloc[0]), atol=1e-6)
    for got, want in zip(_detector(resumed_dir, rows).get_weights(), _detector(results_dir, reference).get_weights()):
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)


def test_sweep_from_the_command_line_skips_what_is_done(runs, results_dir, capsys, monkeypatch):
    from tlutils.cli import build_parser

    import tlutils.experiment as experiment

    keys = []
    real_run = experiment.run

    def recording_run(config, *args, **kwargs):
        keys.append(run_key(config))
        return real_run(config, *args, **kwargs)

    monkeypatch.setattr(experiment.sweeps, "run", recording_run)
    args = build_parser().parse_args(["sweep", "--profile", "ci", "--strategies", "scratch", "head_only",
                                      "--out", str(results_dir)])
    before = len(load_results(results_dir))
    assert sweep_from_cli(args) == 0
    # the ci defaults (germany, 10 images, seed 0) name exactly the runs done above: nothing trains
    assert keys == [run_key(target("scratch")), run_key(target("head_only"))]
    assert len(load_results(results_dir)) == before
    out = capsys.readouterr().out
    assert "val_map50_mean" in out and "head_only" in out and "results.csv" in out


def test_sweep_command_line_names_the_profile_grid_and_the_l2_factor(monkeypatch, capsys):
    from tlutils.cli import build_parser

    import tlutils.experiment as experiment

    seen = {}

    def fake_sweep(grid, results_dir, base=None):
        seen.update(grid=grid, base=base)
        return pd.DataFrame(columns=list(experiment.RESULT_COLUMNS))

    monkeypatch.setattr(experiment.sweeps, "sweep", fake_sweep)
    monkeypatch.setattr(experiment.sweeps, "summarize", lambda results: results)
    args = build_parser().parse_args(["sweep", "--profile", "cpu", "--seeds", "0", "1", "2",
                                      "--l2-regularization", "0.0005"])
    assert sweep_from_cli(args) == 0
    profile = get_profile("cpu")
    assert seen["grid"]["target_data"] == list(profile.countries)
    assert seen["grid"]["num_target_images"] == list(profile.target_sizes)
    assert seen["grid"]["seed"] == [0, 1, 2]
    assert seen["base"].l2_regularization == 0.0005
    assert build_parser().parse_args(["sweep"]).l2_regularization == 0.0


def test_a_mixed_bfloat16_profile_trains_in_bfloat16_and_restores_the_policy(monkeypatch, data_dir, tmp_path):
    import json

    import tlutils.profiles as profiles

    monkeypatch.setitem(profiles.PROFILES, "ci", CI.replace(mixed_precision="mixed_bfloat16"))
    config = RunConfig(stage="source", source_data="belgium", profile="ci")
    rows = run(config, tmp_path, data_dir=data_dir, verbose=0, tensorboard=False)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is given back
    assert json.loads((tmp_path / rows["checkpoint"].iloc[-1]).parent.joinpath("config.json").read_text()
                      )["mixed_precision"] == "mixed_bfloat16"
    detector = _detector(tmp_path, rows)
    assert detector.get_layer("block3_conv1").compute_dtype == "bfloat16"
    assert all(weight.dtype == "float32" for weight in detector.weights)  # float32 master weights
    trained = rows[rows["epoch"] >= 1]  # epoch 0 is the start, evaluated before training
    assert np.isfinite(trained["loss"]).all() and trained["loss"].iloc[-1] < trained["loss"].iloc[0]
    monkeypatch.undo()
    assert run_key(config) != rows["run_key"].iloc[0], "the dtype policy must be part of the run key"


def test_no_tensorflow_means_no_tensorboard_and_a_note(monkeypatch, capsys, tmp_path):
    import importlib.util

    from tlutils.experiment.runner import _tensorboard

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "tensorflow" else real_find_spec(name, *args))
    assert _tensorboard(tmp_path, verbose=1) == []
    assert "TensorBoard" in capsys.readouterr().out


def test_the_notebooks_verdicts_match_the_ci_table(runs):
    """Issue 19: sentences of notebooks 05-06 come from ``tlutils.experiment.claims``; on a real ci table
    each verdict agrees with the final-epoch numbers computed here independently."""
    from tlutils.experiment.claims import compare, setting_verdicts

    table = pd.concat(runs.values(), ignore_index=True)
    target_rows = table[table["stage"] == "target"]
    finals = target_rows.loc[target_rows.groupby("run_key")["epoch"].idxmax()].set_index("strategy")["val_map50"]
    verdicts = setting_verdicts(summarize(target_rows))
    assert len(verdicts) == 2  # transfer against scratch, finetune against the best frozen variant
    best_transfer = finals.drop("scratch").idxmax()
    best_frozen = finals[["freeze:block3", "head_only"]].idxmax()
    nan = float("nan")
    # one seed: no spread, said so in the sentence
    assert verdicts[0] == (f"{best_transfer} ({finals[best_transfer]:.3f}, one seed) "
                           f"{compare(finals[best_transfer], nan, finals['scratch'], nan)} scratch "
                           f"({finals['scratch']:.3f}, one seed)")
    assert verdicts[1].startswith(f"finetune ({finals['finetune']:.3f}, one seed) "
                                  f"{compare(finals['finetune'], nan, finals[best_frozen], nan)} {best_frozen}")
