"""The pretrained starts (tlutils.pretrain): sign crops, the classifier's convs in a detector bit for bit,
a pretrained detector's classes mapped onto the source classes, the file cache, the command."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from PIL import Image

from tlutils.data.records import DetectionDataset, DetectionRecord
from tlutils.data.synth import SIGN_CLASSES
from tlutils.model import PREDICTION_LAYERS, build_sign_classifier, build_ssd_vgg16, load_classifier_into
from tlutils.model.ssd import vgg16_conv_names
from tlutils.pretrain import (
    PretrainConfig,
    load_detector_start,
    load_pretrain_data,
    merge_datasets,
    pretrained,
    pretrained_summary,
    sign_crops,
)
from tlutils.pretrain.crops import crop_corners, default_crop_size
from tlutils.transfer import parse_strategy, prepare, training_plan, valid_strategies

WIDTH, INPUT_SIZE, CROP_SIZE = 0.125, 64, 32
CONVS = vgg16_conv_names()
# Every layer of the detector with weights that is not one of VGG16's 13 convs.
NOT_FROM_THE_CLASSIFIER = ("fc6", "fc7", "conv4_3_norm", "conv8_1", "conv8_2", "conv9_1", "conv9_2", "conv10_1",
                           "conv10_2", "conv11_1", "conv11_2",
                           *(f"{s.name}_{kind}_head" for s in PREDICTION_LAYERS for kind in ("class", "box")))


def _weights(model: keras.Model) -> dict[str, list[np.ndarray]]:
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers if layer.weights}


def _assert_equal(actual: list[np.ndarray], expected: list[np.ndarray], what: str) -> None:
    assert len(actual) == len(expected), what
    for a, e in zip(actual, expected):
        assert a.dtype == e.dtype and np.array_equal(a, e), what


# --- sign crops (NumPy, Pillow) --------------------------------------------------------------------


@pytest.mark.core
def test_crop_corners_hand_worked():
    boxes = np.array([[10, 20, 30, 30],  # 20 x 10: side ceil(1.2 * 20) = 24 around (20, 25)
                      [0, 0, 10, 10],  # side 12 around (5, 5), moved inside the image
                      [95, 40, 100, 50]])  # side 12 around (97.5, 45), moved left and up
    assert crop_corners(boxes, 1.2, width=100, height=50).tolist() == [
        [8, 13, 32, 37], [0, 0, 12, 12], [88, 38, 100, 50]]
    # A crop larger than the image stays centred on the box (Pillow pads it with black).
    assert crop_corners(np.array([[0, 0, 20, 20]]), 1.2, width=20, height=20).tolist() == [[-2, -2, 22, 22]]


@pytest.mark.core
def test_default_crop_size_follows_the_input():
    assert [default_crop_size(size) for size in (96, 160, 300, 512)] == [32, 32, 64, 96]


@pytest.mark.core
def test_sign_crops_cut_each_box_once_with_its_label(tmp_path):
    pixels = np.arange(40 * 60 * 3, dtype=np.uint32).reshape(40, 60, 3).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    Image.fromarray(pixels[::-1].copy()).save(tmp_path / "empty.png")
    boxes = np.array([[10, 5, 20, 15], [30, 10, 50, 30]], dtype=np.float32)
    records = [
        DetectionRecord(str(tmp_path / "empty.png"), 60, 40, np.zeros((0, 4)), [], [], []),
        DetectionRecord(str(tmp_path / "a.png"), 60, 40, boxes, [7, 3], ["seven", "three"], [None, None]),
    ]
    crops = sign_crops(DetectionDataset(records, {3: "three", 7: "seven", 9: "nine"}), crop_size=12, context=1.2)
    assert crops.images.shape == (2, 12, 12, 3) and crops.images.dtype == np.uint8
    assert crops.labels.tolist() == [7, 3] and crops.classes == {3: "three", 7: "seven", 9: "nine"}
    # Box 0: side 12 around (15, 10) -> pixels [9, 21) x [4, 16), already 12 px: copied unchanged.
    np.testing.assert_array_equal(crops.images[0], pixels[4:16, 9:21])
    with pytest.raises(ValueError, match="no boxes"):
        sign_crops(DetectionDataset(records[:1], {3: "three"}), crop_size=12)


@pytest.mark.core
def test_merge_keeps_agreeing_ids_and_renumbers_by_name_otherwise():
    def dataset(classes, labels, name):
        names = [classes[label] for label in labels]
        record = DetectionRecord(f"{name}.png", 10, 10, np.zeros((len(labels), 4)) + [0, 0, 5, 5], labels, names,
                                 [None] * len(labels))
        return DetectionDataset([record], classes, name=name)

    a, b = dataset({1: "stop", 2: "give_way"}, [1, 2], "a"), dataset({1: "stop", 3: "ahead_only"}, [3], "b")
    merged = merge_datasets([a, b])
    assert merged.classes == {1: "stop", 2: "give_way", 3: "ahead_only"} and len(merged) == 2
    # c numbers stop 5 and spells give way "Yield": renumbered by canonical name, first seen first.
    c = dataset({5: "Stop", 2: "ahead_only", 7: "Yield"}, [5, 2, 7], "c")
    merged = merge_datasets([a, c])
    assert merged.classes == {1: "stop", 2: "give_way", 3: "ahead_only"}
    assert [record.labels.tolist() for record in merged] == [[1, 2], [1, 3, 2]]
    assert [list(record.class_names) for record in merged] == [["stop", "give_way"], ["stop", "ahead_only", "give_way"]]


@pytest.mark.core
def test_real_data_is_split_for_pretraining_and_keyed_by_its_content(tmp_path):
    from tlutils.data.synth import generate

    annotations = generate("sweden", 10, tmp_path / "coco", seed=4, image_size=64)
    spec = f"coco:{annotations}"
    train, val = (load_pretrain_data([spec], split, 0, 64, seed=1) for split in ("train", "val"))
    assert (len(train), len(val)) == (9, 1)  # PRETRAIN_FRACTIONS: 0.9, 0.1, no test
    assert not {r.image_path for r in train} & {r.image_path for r in val}
    mixed = load_pretrain_data([spec, "usa"], "train", 3, 64, data_dir=tmp_path / "data")
    assert len(mixed) == 9 + 3 and set(mixed.classes.values()) <= {sign.name for sign in SIGN_CLASSES}

    key = PretrainConfig("detector", profile="ci", data=[spec]).key
    annotations.write_text(annotations.read_text() + "\n")  # other bytes: the data may have changed
    assert PretrainConfig("detector", profile="ci", data=[spec]).key != key


# --- configuration and keys (no backend) -----------------------------------------------------------


@pytest.mark.core
def test_config_defaults_and_keys():
    classifier = PretrainConfig("classifier", profile="ci").resolve()
    detector = PretrainConfig("detector", profile="ci").resolve()
    assert classifier.data == ("synth:belgium",) and len(detector.data) >= 2
    assert "synth:belgium" not in detector.data and all(spec.startswith("synth:") for spec in detector.data)
    assert (classifier.crop_size, detector.crop_size) == (32, None)
    assert PretrainConfig("classifier", profile="ci").key == classifier.key  # stable
    changed = {PretrainConfig("classifier", profile="ci", **change).key for change in (
        {"seed": 1}, {"epochs": 3}, {"l2_regularization": 5e-4}, {"data": ("germany",)}, {"preprocessing": "caffe"})}
    assert len(changed) == 5 and classifier.key not in changed and detector.key != classifier.key
    # the source country only chooses the default data
    assert PretrainConfig("detector", profile="ci", source_country="germany").resolve().data[0] == "synth:belgium"
    for spelling in ("belgium", "synth:Belgium", "synth:belgium,split=train"):  # one dataset, one key
        assert PretrainConfig("classifier", profile="ci", data=[spelling]).key == classifier.key


@pytest.mark.core
@pytest.mark.parametrize("kwargs, fragment", [
    ({"kind": "vgg"}, "kind"), ({"kind": "classifier", "data": "germany"}, "list of data specs"),
    ({"kind": "detector", "data": ("atlantis",)}, "bad data spec"), ({"kind": "detector", "data": ("voc:",)}, "path"), ({"kind": "detector", "epochs": 0}, "epochs"),
    ({"kind": "detector", "preprocessing": "torch"}, "preprocessing"),
])
def test_config_rejects(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        PretrainConfig(**kwargs)


# --- the classifier's convs in a detector ----------------------------------------------------------


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    """A sign classifier with weights of its own (random ones stand in for trained ones), saved."""
    keras.utils.set_random_seed(1)
    classifier = build_sign_classifier(13, CROP_SIZE, WIDTH)
    path = tmp_path_factory.mktemp("classifier") / "classifier.keras"
    classifier.save(path)
    return path, _weights(classifier)


def test_classifier_convs_load_into_a_detector_bit_for_bit(classifier_file):
    path, classifier_weights = classifier_file
    keras.utils.set_random_seed(2)
    detector = build_ssd_vgg16(5, input_size=INPUT_SIZE, width=WIDTH, preprocessing="tf")
    fresh = _weights(detector)
    assert not np.array_equal(fresh["block3_conv2"][0], classifier_weights["block3_conv2"][0])  # the test can fail

    report = load_classifier_into(detector, path)

    loaded = _weights(detector)
    assert sorted(report.copied) == sorted(CONVS)
    for name in CONVS:
        _assert_equal(loaded[name], classifier_weights[name], name)
    assert set(loaded) == set(CONVS) | set(NOT_FROM_THE_CLASSIFIER)
    for name in NOT_FROM_THE_CLASSIFIER:  # fc6 and fc7 start fresh (documented), like everything above
        _assert_equal(loaded[name], fresh[name], name)
    assert {name for name, _ in report.initialized} == set(NOT_FROM_THE_CLASSIFIER)


def test_classifier_of_another_width_or_preprocessing_is_refused(classifier_file):
    path, _ = classifier_file
    with pytest.raises(ValueError, match="same width"):
        load_classifier_into(build_ssd_vgg16(5, input_size=INPUT_SIZE, width=0.25, preprocessing="tf"), path)
    with pytest.raises(ValueError, match="preprocessing='tf'"):
        load_classifier_into(build_ssd_vgg16(5, input_size=INPUT_SIZE, width=WIDTH, preprocessing="caffe"), path)
    with pytest.raises(ValueError, match="no such classifier"):
        load_classifier_into(build_ssd_vgg16(5, input_size=INPUT_SIZE, width=WIDTH), path.with_name("none.keras"))


def test_prepare_classifier_start(classifier_file):
    path, classifier_weights = classifier_file
    sizes = dict(input_size=INPUT_SIZE, width=WIDTH, total_steps=4, learning_rate=1e-3, preprocessing="tf")
    with pytest.raises(ValueError, match="pretrained_path"):
        prepare("classifier", None, 5, **sizes)
    detector, plan = prepare("classifier", None, 5, pretrained_path=path, **sizes)
    assert plan == training_plan("scratch", 4, 1e-3)
    _assert_equal(_weights(detector)["block5_conv3"], classifier_weights["block5_conv3"], "block5_conv3")


@pytest.mark.core
def test_the_pretrained_starts_are_strategies_after_imagenet():
    strategies = valid_strategies()
    assert strategies[:4] == ("scratch", "imagenet", "classifier", "detector")
    for name in ("classifier", "detector"):
        strategy = parse_strategy(name)
        assert strategy.uses_pretrained and not strategy.uses_source
        assert training_plan(name, 10, 1e-3) == training_plan("scratch", 10, 1e-3)
    assert not parse_strategy("imagenet").uses_pretrained


# --- a pretrained detector mapped onto the source classes ------------------------------------------


def test_detector_start_maps_classes_exactly(tmp_path):
    keras.utils.set_random_seed(3)
    pretrained_detector = build_ssd_vgg16(3, input_size=INPUT_SIZE, width=WIDTH, preprocessing="tf")
    path = tmp_path / "detector_x.keras"
    pretrained_detector.save(path)
    (tmp_path / "detector_x.json").write_text(json.dumps({"classes": {"1": "stop", "2": "give_way", "3": "zebra"}}))
    source_weights = _weights(pretrained_detector)

    source_classes = {1: "give_way", 2: "no_entry", 3: "stop", 4: "turn_left"}  # 2 and 4: unknown to it
    detector = build_ssd_vgg16(4, input_size=96, width=WIDTH, preprocessing="tf")  # another input size
    fresh = _weights(detector)
    report = load_detector_start(detector, path, source_classes)

    assert report.class_map == {0: 0, 1: 2, 2: None, 3: 1, 4: None}
    loaded = _weights(detector)
    for spec in PREDICTION_LAYERS:
        name = f"{spec.name}_class_head"
        (kernel, bias), (source_kernel, source_bias) = loaded[name], source_weights[name]
        fresh_kernel, fresh_bias = fresh[name]
        for slot in range(spec.boxes_per_cell):
            for target_class, source_class in report.class_map.items():
                t, s = slot * 5 + target_class, slot * 4 + (source_class or 0)
                expected_kernel, expected_bias = ((fresh_kernel[..., t], fresh_bias[t]) if source_class is None
                                                  else (source_kernel[..., s], source_bias[s]))
                assert np.array_equal(kernel[..., t], expected_kernel), (name, slot, target_class)
                assert bias[t] == expected_bias, (name, slot, target_class)
        assert not np.array_equal(kernel, fresh_kernel)  # the test can fail
    for name in set(loaded) - {f"{spec.name}_class_head" for spec in PREDICTION_LAYERS}:
        _assert_equal(loaded[name], source_weights[name], name)  # every other layer, box heads and fc6/fc7 included

    with pytest.raises(ValueError, match="class_map"):
        prepare("detector", None, 4, input_size=96, width=WIDTH, total_steps=2, learning_rate=1e-3,
                preprocessing="tf", pretrained_path=path)
    with pytest.raises(ValueError, match="same width"):
        load_detector_start(build_ssd_vgg16(4, input_size=96, width=0.25, preprocessing="tf"), path, source_classes)


# --- the cache and the command ---------------------------------------------------------------------


def test_pretrained_files_are_cached_by_config(tmp_path, monkeypatch):
    """Same config: the same file, not trained again; another config: another file. Deterministic."""
    import tlutils.pretrain.training as training

    config = PretrainConfig("classifier", profile="ci", num_images=8, epochs=1)
    first = pretrained(config, tmp_path / "a", data_dir=tmp_path / "data", verbose=0)
    assert first.name == f"classifier_{config.key}.keras" and first.parent == tmp_path / "a" / "pretrained"
    summary = pretrained_summary(first)
    assert summary["config"]["epochs"] == 1 and summary["num_train"] > 0 and len(summary["classes"]) == 13

    elsewhere = pretrained(config, tmp_path / "b", data_dir=tmp_path / "data", verbose=0)  # trained again
    one, two = (keras.saving.load_model(path, compile=False) for path in (first, elsewhere))
    for name in CONVS:
        _assert_equal(_weights(one)[name], _weights(two)[name], name)  # the same seed, the same weights

    def must_not_train(*args, **kwargs):
        raise AssertionError("a cached file was trained again")

    monkeypatch.setattr(training, "train_classifier", must_not_train)
    assert pretrained(config, tmp_path / "a", verbose=0) == first
    with pytest.raises(AssertionError, match="trained again"):
        pretrained(PretrainConfig("classifier", profile="ci", num_images=8, epochs=2), tmp_path / "a",
                   data_dir=tmp_path / "data", verbose=0)


def test_pretrained_detector_starts_a_source_detector(tmp_path):
    from tlutils.data.synth import COUNTRIES

    path = pretrained(PretrainConfig("detector", profile="ci", num_images=6, epochs=1), tmp_path,
                      data_dir=tmp_path / "data", verbose=0)
    summary = pretrained_summary(path)
    assert summary["config"]["data"] == [f"synth:{c}" for c in COUNTRIES if c != "belgium"]
    assert summary["val_map50"] is not None and set(summary["classes"].values()) <= {s.name for s in SIGN_CLASSES}
    belgian = {i: s.name for i, s in enumerate(SIGN_CLASSES[:13], start=1)}
    detector = build_ssd_vgg16(13, input_size=96, width=WIDTH, preprocessing="tf")
    report = load_detector_start(detector, path, belgian)
    assert all(report.class_map[i] is not None for i in belgian) and not report.skipped


@pytest.mark.core
def test_cli_parses_pretrain():
    from tlutils.cli import build_parser

    args = build_parser().parse_args(["pretrain", "detector", "--profile", "ci", "--data", "germany", "coco:a.json",
                                      "--out", "o", "--seed", "2", "--l2-regularization", "5e-4"])
    assert (args.kind, args.profile, args.data, args.out, args.seed, args.l2_regularization) == (
        "detector", "ci", ["germany", "coco:a.json"], "o", 2, 5e-4)
    assert build_parser().parse_args(["pretrain", "classifier"]).data is None


@pytest.mark.core
def test_cli_pretrain_reports_a_bad_spec(capsys):
    from tlutils.cli import USAGE_ERROR, main

    assert main(["pretrain", "classifier", "--profile", "ci", "--data", "atlantis"]) == USAGE_ERROR
    assert "atlantis" in capsys.readouterr().err


@pytest.mark.core
def test_the_package_and_its_configuration_import_no_backend():
    """``resolve`` may key a run by its pretrained file without importing a deep-learning backend."""
    import subprocess
    import sys

    code = "import sys, tlutils.pretrain, tlutils.pretrain.config; print(sorted(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert not {"keras", "tensorflow", "jax", "torch"} & {name.split(".")[0] for name in eval(loaded)}


# --- through the runner and the sweep command ------------------------------------------------------


def test_a_source_run_from_the_classifier_starts_with_its_convs_bit_for_bit(tmp_path):
    """The runner's ``classifier`` start: the pretrained file is made (cached under the results folder),
    recorded in the run's key, and the detector the runner builds holds its 13 convs exactly."""
    from tlutils.experiment import RunConfig, resolve
    from tlutils.experiment.resolved import pretrain_config
    from tlutils.experiment.runner import Training

    config = RunConfig(stage="source", source_data="belgium", strategy="classifier", profile="ci")
    resolved = resolve(config)
    assert resolved.pretrained_key == pretrain_config(config).key
    assert resolved.key != resolve(config.replace(strategy="scratch")).key
    results, run_dir = tmp_path / "results", tmp_path / "results" / "runs" / resolved.name
    run_dir.mkdir(parents=True)
    training = Training(resolved, run_dir, results, tmp_path / "data", None)
    (classifier_path,) = (results / "pretrained").glob("classifier_*.keras")
    classifier = keras.saving.load_model(classifier_path, compile=False)
    classifier_weights, detector_weights = _weights(classifier), _weights(training.detector)
    for name in CONVS:
        _assert_equal(detector_weights[name], classifier_weights[name], name)


@pytest.mark.core
def test_the_sweep_command_compares_source_starts():
    from tlutils.cli import build_parser
    from tlutils.experiment.sweeps import SOURCE_STARTS, cli_grid

    args = build_parser().parse_args(["sweep", "--profile", "ci", "--stage", "source", "--seeds", "0", "1",
                                      "--total-steps", "16", "--l2-regularization", "0.0005"])
    grid, base = cli_grid(args)
    assert "target_data" not in grid and grid["strategy"] == list(SOURCE_STARTS)
    assert grid["num_target_images"] == [None] and grid["seed"] == [0, 1]
    assert (base.stage, base.total_steps, base.l2_regularization) == ("source", 16, 0.0005)
    args = build_parser().parse_args(["sweep", "--profile", "ci", "--strategies", "finetune"])
    assert cli_grid(args)[1].stage == "target"
