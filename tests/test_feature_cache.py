"""Frozen-feature caching: the split detector computes exactly what the whole one does, and training
the trainable part on cached features trains the detector."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tlutils.anchors import generate_anchors
from tlutils.data.augment import Augmenter
from tlutils.data.pipeline import DetectionSequence, make_label_map
from tlutils.data.synth import synth_dataset
from tlutils.feature_cache import FeatureBatches, cache_features, frozen_layers, split_frozen
from tlutils.model import anchor_config_for, build_ssd_vgg16, freeze
from tlutils.training import SSDTrainer

# One split and the batch order also run on JAX (`core`); the rest on TensorFlow only (model builds
# are slow on JAX's CPU backend).

SIZE, WIDTH = 64, 0.125


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32")


def _detector(freeze_point):
    keras.utils.set_random_seed(1)
    return freeze(build_ssd_vgg16(4, input_size=SIZE, width=WIDTH), freeze_point)


@pytest.mark.parametrize("freeze_point", [pytest.param("block3", marks=pytest.mark.core), "fc", "extras"])
def test_the_split_detector_computes_the_whole_ones_outputs_bit_for_bit(images, freeze_point):
    detector = _detector(freeze_point)
    frozen, trainable = split_frozen(detector)
    whole = detector.predict_on_batch(images)
    features = frozen.predict_on_batch(images)
    split = trainable.predict_on_batch(features)
    for name in ("class_logits", "box_offsets"):
        assert np.array_equal(np.asarray(split[name]), np.asarray(whole[name])), name
    # the border: exactly the frozen layers' outputs that a trainable layer reads
    assert all(not detector.get_layer(t._keras_history.operation.name).trainable for t in frozen.outputs)


def test_cached_features_are_the_frozen_forward_pass_bit_for_bit(tmp_path):
    dataset = synth_dataset("germany", "train", 6, SIZE, tmp_path)
    detector = _detector("block3")
    anchors = np.asarray(generate_anchors(anchor_config_for(detector)), dtype=np.float32)
    sequence = DetectionSequence(dataset, anchors, make_label_map(dataset.classes), batch_size=4, input_size=SIZE,
                                 shuffle=False)
    frozen, _ = split_frozen(detector)
    features, targets = cache_features(frozen, sequence, batch_size=4)
    assert len(features) == len(frozen.outputs) and len(features[0]) == 6 == len(targets["class_targets"])
    # the uncached pass: the block3_pool output of the whole detector on the sequence's own batches
    probe = keras.Model(detector.inputs, detector.get_layer("block3_pool").output)
    batches = [sequence[i] for i in range(len(sequence))]
    assert features[0].dtype == np.float32
    assert np.array_equal(features[0], np.concatenate([np.asarray(probe.predict_on_batch(x)) for x, _ in batches]))
    for name in ("class_targets", "box_targets"):
        assert np.array_equal(targets[name], np.concatenate([y[name] for _, y in batches])), name
    augmented = DetectionSequence(dataset, anchors, make_label_map(dataset.classes), batch_size=4,
                                  augmenter=Augmenter(SIZE))
    with pytest.raises(ValueError, match="augments at random"):
        cache_features(frozen, augmented)


def test_training_on_cached_features_moves_only_the_trainable_weights(images):
    detector = _detector("fc")
    frozen, trainable = split_frozen(detector)
    features = [np.asarray(f) for f in frozen.predict_on_batch(images)]
    anchors = len(generate_anchors(anchor_config_for(detector)))
    targets = {"class_targets": np.zeros((4, anchors), "int32"), "box_targets": np.zeros((4, anchors, 4), "float32")}
    targets["class_targets"][:, :3] = 1
    before = {w.path: np.array(w) for w in detector.weights}
    trainer = SSDTrainer(trainable)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    trainer.fit(FeatureBatches(features, targets, batch_size=2), epochs=1, verbose=0)
    after = {w.path: np.array(w) for w in detector.weights}
    frozen_paths = {w.path for layer in frozen_layers(detector) for w in layer.weights}
    assert all(np.array_equal(before[p], after[p]) for p in frozen_paths)
    assert any(not np.array_equal(before[p], after[p]) for p in set(before) - frozen_paths)


def test_nothing_frozen_or_a_bad_batch_is_refused(images):
    with pytest.raises(ValueError, match="no frozen layer"):
        split_frozen(_detector(None))
    features = [np.zeros((4, 2))]
    with pytest.raises(ValueError, match="same number of rows"):
        FeatureBatches(features, {"labels": np.zeros((3, 1))}, batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        FeatureBatches(features, {"labels": np.zeros((4, 1))}, batch_size=5)


@pytest.mark.core
def test_every_epoch_has_a_new_order_of_all_rows():
    batches = FeatureBatches([np.arange(6)[:, None]], {"labels": np.arange(6)}, batch_size=3, seed=0)
    first = np.concatenate([batches[i][1]["labels"] for i in range(len(batches))])
    batches.on_epoch_end()
    second = np.concatenate([batches[i][1]["labels"] for i in range(len(batches))])
    assert sorted(first) == sorted(second) == list(range(6)) and list(first) != list(second)


# --- through the runner ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_cached_run_trains_the_trainable_part_and_keeps_the_frozen_one(tmp_path):
    from tlutils.experiment import RunConfig, resolve, run, source_config
    from tlutils.transfer import load_detector

    config = RunConfig(profile="ci", target_data="germany", strategy="freeze:block3", num_target_images=10,
                       cache_features=True)
    resolved = resolve(config)
    assert resolved.augmentation == "none" and resolved.to_dict()["cache_features"] is True
    rows = run(config, tmp_path / "results", data_dir=tmp_path / "data", verbose=0, tensorboard=False)
    assert rows["epoch"].tolist() == [0, 1, 2, 3] and np.isfinite(rows["loss"].iloc[1:]).all()
    results = tmp_path / "results"
    source_rows = run(source_config(config), results, data_dir=tmp_path / "data", verbose=0)  # stored: read back
    source = load_detector(results / source_rows["checkpoint"].iloc[-1])
    trained = load_detector(tmp_path / "results" / rows["checkpoint"].iloc[-1])
    for name in ("block1_conv1", "block3_conv3"):
        assert np.array_equal(trained.get_layer(name).kernel.numpy(), source.get_layer(name).kernel.numpy())
    assert not np.array_equal(trained.get_layer("block4_conv1").kernel.numpy(),
                              source.get_layer("block4_conv1").kernel.numpy())


def test_caching_is_keyed_only_when_set_and_refused_where_it_cannot_hold():
    from tlutils.experiment import RunConfig, resolve

    plain = resolve(RunConfig(profile="ci", strategy="head_only", num_target_images=10))
    assert "cache_features" not in plain.to_dict()  # runs made before the option keep their keys
    assert resolve(RunConfig(profile="ci", strategy="head_only", num_target_images=10, cache_features=True)).key != plain.key
    for fields, fragment in [({"strategy": "finetune"}, "freezes in every phase"),
                             ({"strategy": "two_stage"}, "freezes in every phase"),
                             ({"strategy": "head_only", "augmentation": "photometric"}, "un-augmented")]:
        with pytest.raises(ValueError, match=fragment):
            RunConfig(profile="ci", num_target_images=10, cache_features=True, **fields)


def test_the_sweep_command_takes_cache_features():
    from tlutils.cli import build_parser
    from tlutils.experiment import expand_grid
    from tlutils.experiment.sweeps import cli_grid

    parse = build_parser().parse_args
    grid, base = cli_grid(parse(["sweep", "--profile", "ci", "--strategies", "head_only", "freeze:fc",
                                 "--num-target-images", "10", "--cache-features"]))
    assert base.cache_features and all(config.cache_features for config in expand_grid(grid, base))
    with pytest.raises(ValueError, match="freezes in every phase"):
        expand_grid(*cli_grid(parse(["sweep", "--profile", "ci", "--strategies", "head_only", "finetune",
                                     "--num-target-images", "10", "--cache-features"])))
