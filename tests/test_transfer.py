"""Transfer strategies: parsing, training plans, class maps and what ``prepare`` builds."""

from __future__ import annotations

import numpy as np
import pytest

from tlutils.model import FREEZE_POINTS, LAYERS_BY_BLOCK, build_ssd_vgg16
from tlutils.profiles import get_profile
from tlutils.transfer import (
    FINETUNE_LR_FACTOR,
    HEADS_ONLY_FREEZE_POINT,
    Phase,
    Strategy,
    class_map_for,
    epochs_of,
    parse_strategy,
    prepare,
    training_plan,
    valid_strategies,
)

CI = get_profile("ci")
CI_SIZES = {"input_size": CI.input_size, "width": CI.width}


# --- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "point"),
    [
        ("scratch", "scratch", None),
        (" Freeze:Block3 ", "freeze", "block3"),
        ("two-stage", "two_stage", None),
        ("head_only", "head_only", None),
        ("freeze:extras", "freeze", "extras"),
    ],
)
def test_parse_strategy(text, name, point):
    strategy = parse_strategy(text)
    assert (strategy.name, strategy.freeze_point) == (name, point)
    assert parse_strategy(str(strategy)) == strategy


@pytest.mark.parametrize("text", ["transfer", "freeze", "freeze:block9", "freeze:heads", "finetune:block2", ""])
def test_parse_strategy_rejects_with_the_valid_choices(text):
    with pytest.raises(ValueError) as error:
        parse_strategy(text)
    message = str(error.value)
    assert "scratch" in message or "block1" in message


def test_valid_strategies_round_trip_and_cover_every_trainable_freeze_point():
    strings = valid_strategies()
    assert [parse_strategy(s) for s in strings] == [parse_strategy(str(parse_strategy(s))) for s in strings]
    assert {f"freeze:{p}" for p in FREEZE_POINTS if p != "heads"} <= set(strings)
    assert Strategy("finetune").uses_source and not Strategy("imagenet").uses_source


# --- training plans ------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["scratch", "imagenet", "freeze:block4", "finetune", "two_stage", "head_only"])
def test_every_plan_spends_exactly_the_budget(strategy):
    plan = training_plan(strategy, total_steps=120, learning_rate=1e-3, steps_per_epoch=20)
    assert sum(phase.steps for phase in plan) == 120
    assert len(epochs_of(plan, 20)) == 6


def test_plans_follow_the_table():
    assert training_plan("freeze:block3", 10, 1e-3) == [Phase("train", 10, 1e-3, "block3")]
    assert training_plan("head_only", 10, 1e-3) == [Phase("heads", 10, 1e-3, HEADS_ONLY_FREEZE_POINT)]
    (finetune,) = training_plan("finetune", 10, 1e-3)
    assert finetune.freeze_point is None and finetune.learning_rate == pytest.approx(1e-3 * FINETUNE_LR_FACTOR)


def test_two_stage_switches_on_an_epoch_boundary():
    heads, finetune = training_plan("two_stage", 100, 2e-3, steps_per_epoch=20, head_fraction=0.5)
    # 5 epochs * 0.5 = 2.5 -> rounds to 2 whole epochs of heads, then 3 of fine-tuning
    assert (heads.steps, finetune.steps) == (40, 60)
    assert heads.freeze_point == HEADS_ONLY_FREEZE_POINT and finetune.freeze_point is None
    assert finetune.learning_rate == pytest.approx(2e-3 * FINETUNE_LR_FACTOR)
    assert heads.learning_rate == 2e-3
    assert [phase.name for phase in epochs_of([heads, finetune], 20)] == ["heads"] * 2 + ["finetune"] * 3


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"total_steps": 0}, "total_steps"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"steps_per_epoch": 7}, "divide"),
        ({"head_fraction": 1.0}, "head_fraction"),
    ],
)
def test_training_plan_rejects_bad_budgets(kwargs, fragment):
    arguments = {"strategy": "two_stage", "total_steps": 20, "learning_rate": 1e-3, **kwargs}
    with pytest.raises(ValueError, match=fragment):
        training_plan(**arguments)


def test_two_stage_needs_two_epochs():
    with pytest.raises(ValueError, match="two epochs"):
        training_plan("two_stage", 10, 1e-3, steps_per_epoch=10)


# --- class maps ----------------------------------------------------------------------------------


def test_class_map_by_name_with_new_classes():
    source = {1: "stop", 2: "Give Way", 3: "no_entry"}
    target = {1: "give-way", 2: "moose_crossing", 3: "STOP"}
    assert class_map_for(source, target) == {1: 2, 2: None, 3: 1}


def test_class_map_through_superclasses():
    source = {1: "prohibitory", 2: "danger", 3: "mandatory"}
    target = {1: "speed_limit_50", 2: "danger", 3: "priority_road"}
    superclasses = {"speed_limit_50": "prohibitory", "priority_road": "other"}
    # 1 goes to its superclass's source class, 2 matches by name, 3's superclass is not a source class
    assert class_map_for(source, target, superclasses) == {1: 1, 2: 2, 3: None}


def test_class_map_rejects_duplicate_names_and_background_ids():
    with pytest.raises(ValueError, match="share the name"):
        class_map_for({1: "stop", 2: "STOP"}, {1: "stop"})
    with pytest.raises(ValueError, match="background"):
        class_map_for({1: "stop"}, {0: "stop"})


# --- prepare -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def source_detector():
    return build_ssd_vgg16(3, input_size=CI.input_size, width=CI.width)


def _weight_count(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def _trainable_blocks(detector) -> set[str]:
    block_of = {name: block for block, names in LAYERS_BY_BLOCK.items() for name in names}
    return {block_of[layer.name] for layer in detector.layers if layer.trainable and layer.weights}


@pytest.mark.parametrize(
    ("strategy", "trainable"),
    [
        ("scratch", set(FREEZE_POINTS)),
        ("finetune", set(FREEZE_POINTS)),
        ("freeze:block3", {"block4", "block5", "fc", "extras", "heads"}),
        ("freeze:fc", {"extras", "heads"}),
        ("head_only", {"heads"}),
        ("two_stage", {"heads"}),  # the first phase trains the heads only
    ],
)
def test_prepare_freezes_the_first_phase(strategy, trainable, source_detector):
    detector, plan = prepare(strategy, source_detector, num_classes=3, **CI_SIZES, learning_rate=CI.learning_rate,
                             total_steps=8, steps_per_epoch=4)
    assert _trainable_blocks(detector) == trainable
    frozen = _weight_count(detector.non_trainable_weights)
    assert _weight_count(detector.trainable_weights) + frozen == detector.count_params()
    assert (frozen == 0) == (trainable == set(FREEZE_POINTS))
    assert sum(phase.steps for phase in plan) == 8


def test_prepare_copies_the_source_and_maps_classes(source_detector):
    head = source_detector.get_layer("conv4_3_class_head")
    kernel, bias = head.get_weights()
    head.set_weights([kernel, np.arange(1, bias.size + 1, dtype="float32")])  # every logit slot distinct
    detector, _ = prepare("finetune", source_detector, num_classes=2, class_map={1: 3, 2: None},
                          **CI_SIZES, learning_rate=CI.learning_rate, total_steps=8)
    for name in ("block1_conv1", "conv8_2", "conv4_3_norm"):
        for got, want in zip(detector.get_layer(name).get_weights(), source_detector.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)
    # per box slot: target logit 0 <- source 0 (background), 1 <- source 3, 2 stays fresh (zero bias)
    source_bias = np.arange(1, bias.size + 1, dtype="float32").reshape(-1, 4)
    target_bias = detector.get_layer("conv4_3_class_head").get_weights()[1].reshape(-1, 3)
    np.testing.assert_array_equal(target_bias[:, 0], source_bias[:, 0])
    np.testing.assert_array_equal(target_bias[:, 1], source_bias[:, 3])
    assert not np.isin(target_bias[:, 2], source_bias).any()


def test_prepare_scratch_needs_no_source_and_source_strategies_do():
    detector, plan = prepare("scratch", None, num_classes=2, **CI_SIZES, learning_rate=CI.learning_rate, total_steps=4)
    assert plan == [Phase("train", 4, CI.learning_rate, None)]
    assert detector.outputs[0].shape[-1] in (3, 4)
    with pytest.raises(ValueError, match="source detector"):
        prepare("head_only", None, num_classes=2, **CI_SIZES, learning_rate=CI.learning_rate, total_steps=4)


def test_prepare_imagenet_fails_clearly_on_a_narrow_profile():
    with pytest.raises(ValueError, match="width"):
        prepare("imagenet", None, num_classes=2, **CI_SIZES, learning_rate=CI.learning_rate, total_steps=4)


def test_prepare_imagenet_without_internet_says_what_to_do(monkeypatch):
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3]")

    monkeypatch.setattr(keras.applications, "VGG16", offline)
    with pytest.raises(RuntimeError, match="backbone_weights"):
        prepare("imagenet", None, num_classes=2, input_size=32, width=1.0, learning_rate=1e-3, total_steps=4)
