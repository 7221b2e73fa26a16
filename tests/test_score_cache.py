"""Remembered scores: the same weights and inputs give the stored number; anything that changes it
(one weight, the inputs) is evaluated again; what cannot change it (frozen layers) shares it."""

from __future__ import annotations

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
