"""Remembered scores: the same weights and inputs give the stored number; anything that changes it
(one weight, the inputs) is evaluated again; what cannot change it (frozen layers) shares it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tlutils.experiment.score_cache import cached_scores, context_digest, weights_digest
from tlutils.model import build_ssd_vgg16
from tlutils.model.freezing import freeze


@pytest.fixture(scope="module")
def detector():
    return build_ssd_vgg16(num_classes=3, input_size=96, width=0.125)


class Counter:
    """An evaluation that counts its calls and returns a score with a NaN and a nested dict."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> dict:
        self.calls += 1
        return {"map50": 0.25 + self.calls, "coco_map": float("nan"), "by_size": {"small": 0.5}}


def test_same_weights_and_context_evaluate_once(tmp_path, detector):
    count = Counter()
    first = cached_scores(tmp_path, detector, "frames-a", count)
    second = cached_scores(tmp_path, detector, "frames-a", count)
    assert count.calls == 1
    assert second["map50"] == first["map50"] == 1.25
    assert np.isnan(second["coco_map"]) and second["by_size"] == {"small": 0.5}


def test_other_context_or_one_changed_weight_evaluates_again(tmp_path, detector):
    count = Counter()
    cached_scores(tmp_path, detector, "frames-a", count)
    cached_scores(tmp_path, detector, "frames-b", count)
    assert count.calls == 2
    kernel = detector.get_layer("block1_conv1").kernel
    saved = np.asarray(kernel.numpy()).copy()
    changed = saved.copy()
    changed.flat[0] = np.nextafter(changed.flat[0], np.float32(np.inf))  # one ulp of one weight
    kernel.assign(changed)
    try:
        cached_scores(tmp_path, detector, "frames-a", count)
    finally:
        kernel.assign(saved)
    assert count.calls == 3


def test_freezing_does_not_change_the_key(detector):
    before = weights_digest(detector)
    freeze(detector, "block3")
    try:
        assert weights_digest(detector) == before
    finally:
        freeze(detector, None)


def test_a_torn_file_is_evaluated_again(tmp_path, detector):
    count = Counter()
    cached_scores(tmp_path, detector, "frames-a", count)
    (stored,) = tmp_path.glob("*.json")
    stored.write_text('{"map50": 0.')
    assert cached_scores(tmp_path, detector, "frames-a", count)["map50"] == 2.25
    assert count.calls == 2


def test_no_folder_never_remembers(detector):
    count = Counter()
    cached_scores(None, detector, "x", count)
    cached_scores(None, detector, "x", count)
    assert count.calls == 2


def test_context_digest_tells_arrays_apart():
    boxes = np.zeros((1, 4), dtype=np.float32)
    assert context_digest(boxes) != context_digest(boxes + 1)
    assert context_digest(boxes) != context_digest(boxes.astype(np.float64))
    assert context_digest("a", 1) == context_digest("a", 1)


def _same(first: dict, second: dict) -> bool:
    """Equal to the last bit, NaN equal to NaN, per-class dicts included."""
    return json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


def test_a_shared_sign_world_evaluation_equals_each_runs_own(tmp_path, monkeypatch):
    """``RunData.evaluate(shared=True)`` (a run's zero-shot evaluation): evaluated once for the weights
    and val set, read back by a run that freezes other layers, with that run's own L2 term in ``loss``
    -- every number as the run's own evaluation gives it."""
    import tlutils.evaluation
    from tlutils.experiment import RunConfig, resolve
    from tlutils.experiment.run_data import build_data, label_maps, training_pool

    resolved = resolve(RunConfig(profile="ci", target_data="germany", strategy="finetune", num_target_images=10))
    pool = training_pool(resolved, tmp_path / "data")
    model = build_ssd_vgg16(len(label_maps(pool)[1]), resolved.input_size, resolved.width, l2_regularization=5e-4)
    data = build_data(resolved, model, pool, tmp_path / "data")
    data.score_folder = tmp_path / "scores"
    calls = []
    evaluate = tlutils.evaluation.evaluate_detector
    monkeypatch.setattr(tlutils.evaluation, "evaluate_detector", lambda *a, **k: calls.append(k) or evaluate(*a, **k))

    own, shared = data.evaluate(model, final=True), data.evaluate(model, final=True, shared=True)
    assert len(calls) == 2 and _same(own, shared)
    freeze(model, "block5")
    try:
        frozen_own = data.evaluate(model, final=True)
        frozen_shared = data.evaluate(model, final=True, shared=True)
    finally:
        freeze(model, None)
    assert len(calls) == 3  # the second shared evaluation was read back
    assert _same(frozen_own, frozen_shared)
    assert frozen_shared["loss"] < shared["loss"]  # frozen kernels leave Keras' L2 term
    assert frozen_shared["localization"] == shared["localization"] and frozen_shared["map50"] == shared["map50"]
    other = data.evaluate(model, final=False, shared=True)  # other scores asked for: evaluated again
    assert len(calls) == 4 and "coco_map" not in other
    data.val_truths = [dict(truth) for truth in data.val_truths]
    data.val_truths[0]["labels"] = np.asarray(data.val_truths[0]["labels"]) + 1  # other ground truth
    data.evaluate(model, final=True, shared=True)
    assert len(calls) == 5
