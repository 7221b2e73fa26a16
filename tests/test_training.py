"""SSDTrainer: fit/evaluate with the MultiBox loss on a tiny detector, logged metrics, freezing."""

import keras
import numpy as np
import pytest
from keras import layers, ops

from tlutils.losses import multibox_loss
from tlutils.training import SSDTrainer

pytestmark = pytest.mark.core

IMAGE_SIZE = 8
NUM_CLASSES = 2
BOXES_PER_CELL = 6
NUM_ANCHORS = (IMAGE_SIZE // 2) ** 2 * BOXES_PER_CELL  # 4 x 4 cells x 6 boxes = 96
BATCH_SIZE = 4
L2 = 1e-2


def tiny_detector(seed=0):
    """A 3-conv "SSD": one 4x4 feature map, 6 boxes per cell, L2 on every kernel."""
    keras.utils.set_random_seed(seed)
    conv = {"kernel_size": 3, "padding": "same", "kernel_regularizer": keras.regularizers.L2(L2)}
    images = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    features = layers.Conv2D(8, strides=2, activation="relu", name="backbone", **conv)(images)
    logits = layers.Conv2D(BOXES_PER_CELL * (NUM_CLASSES + 1), name="class_head", **conv)(features)
    offsets = layers.Conv2D(BOXES_PER_CELL * 4, name="box_head", **conv)(features)
    outputs = {
        "class_logits": layers.Reshape((NUM_ANCHORS, NUM_CLASSES + 1))(logits),
        "box_offsets": layers.Reshape((NUM_ANCHORS, 4))(offsets),
    }
    return keras.Model(images, outputs, name="tiny_ssd")


class Batches(keras.utils.PyDataset):
    """Fixed random images and targets (a few positives, some ignored anchors per image)."""

    def __init__(self, num_batches, seed):
        super().__init__()
        rng = np.random.default_rng(seed)
        count = num_batches * BATCH_SIZE
        self.images = rng.uniform(0, 255, (count, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
        draw = rng.uniform(size=(count, NUM_ANCHORS))
        self.class_targets = np.where(draw < 0.1, rng.integers(1, NUM_CLASSES + 1, draw.shape), 0).astype("int32")
        self.class_targets[draw > 0.95] = -1
        self.box_targets = rng.normal(0, 0.5, (count, NUM_ANCHORS, 4)).astype("float32")
        self.batch_count = num_batches

    def __len__(self):
        return self.batch_count

    def __getitem__(self, index):
        part = slice(index * BATCH_SIZE, (index + 1) * BATCH_SIZE)
        targets = {"class_targets": self.class_targets[part], "box_targets": self.box_targets[part]}
        return self.images[part] / 255.0, targets


def regularization_of(model):
    return float(sum(ops.convert_to_numpy(ops.sum(term)) for term in model.losses))


@pytest.fixture(scope="module")
def trained():
    detector = tiny_detector()
    trainer = SSDTrainer(detector)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = trainer.fit(Batches(3, seed=1), validation_data=Batches(1, seed=2), epochs=6, verbose=0)
    return trainer, history.history


def test_fit_logs_every_component_and_loss_decreases(trained):
    _, history = trained
    for name in ("loss", "localization", "confidence", "regularization", "num_positives"):
        assert len(history[name]) == 6 and len(history["val_" + name]) == 6, name
    assert np.all(np.diff(history["loss"]) < 0) and history["loss"][-1] < 0.8 * history["loss"][0]
    assert history["val_loss"][-1] < history["val_loss"][0]
    assert np.all(np.isfinite(history["loss"]))


def test_logged_values_are_the_multibox_loss_and_the_regularizers(trained):
    trainer, _ = trained
    batch = Batches(1, seed=2)
    images, targets = batch[0]
    logs = trainer.evaluate(batch, verbose=0, return_dict=True)
    outputs = trainer.detector(images)
    expected = multibox_loss(
        targets["class_targets"], targets["box_targets"], outputs["class_logits"], outputs["box_offsets"]
    )
    for name in ("localization", "confidence", "num_positives"):
        np.testing.assert_allclose(logs[name], float(ops.convert_to_numpy(expected[name])), rtol=1e-5, err_msg=name)
    assert logs["num_positives"] == (targets["class_targets"] > 0).sum()
    regularization = regularization_of(trainer.detector)
    assert regularization > 0
    np.testing.assert_allclose(logs["regularization"], regularization, rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], logs["localization"] + logs["confidence"] + regularization, rtol=1e-5)


def test_evaluate_detector_gives_keras_evaluate_losses_from_its_one_pass(trained):
    """The runner's validation pass (detections + losses together) reports what ``evaluate`` does."""
    from tlutils.evaluation import evaluate_detector

    trainer, _ = trained
    batches = Batches(3, seed=5)  # unequal batches are not needed: Keras weights by batch size anyway
    batches.input_size = IMAGE_SIZE
    rng = np.random.default_rng(3)
    anchors = np.concatenate([rng.uniform(0.2, 0.8, (NUM_ANCHORS, 2)), rng.uniform(0.1, 0.3, (NUM_ANCHORS, 2))], 1)
    truths = [{"boxes": np.array([[0.1, 0.1, 0.5, 0.5]]), "labels": np.array([1])}] * (3 * BATCH_SIZE)
    expected = trainer.evaluate(batches, verbose=0, return_dict=True)
    scores = evaluate_detector(trainer, batches, truths, anchors.astype("float32"), losses=True)
    assert regularization_of(trainer.detector) > 0.01 * expected["loss"]  # the L2 part is really checked
    for name in ("loss", "localization", "confidence"):
        np.testing.assert_allclose(scores[name], expected[name], rtol=1e-5, err_msg=name)
    assert 0.0 <= scores["map50"] <= 1.0
    assert "loss" not in evaluate_detector(trainer, batches, truths, anchors.astype("float32"))


def test_call_returns_the_detector_outputs(trained):
    trainer, _ = trained
    images, _ = Batches(1, seed=3)[0]
    got, expected = trainer(images), trainer.detector(images)
    assert sorted(got) == ["box_offsets", "class_logits"]
    for key in expected:
        np.testing.assert_array_equal(ops.convert_to_numpy(got[key]), ops.convert_to_numpy(expected[key]))


def test_frozen_detector_layers_are_frozen_in_the_trainer():
    detector = tiny_detector(seed=4)
    trainer = SSDTrainer(detector)
    detector.get_layer("backbone").trainable = False
    assert len(trainer.trainable_weights) == 4  # the two heads' kernels and biases
    backbone_ids = {id(weight) for weight in detector.get_layer("backbone").weights}
    assert not backbone_ids & {id(weight) for weight in trainer.trainable_weights}
    before = [ops.convert_to_numpy(weight) for weight in detector.weights]
    trainer.compile(optimizer=keras.optimizers.SGD(1e-2))  # compile after changing `trainable`
    logs = trainer.fit(Batches(1, seed=5), epochs=1, verbose=0).history
    after = {id(weight): ops.convert_to_numpy(weight) for weight in detector.weights}
    for weight, old in zip(detector.weights, before):
        changed = not np.array_equal(after[id(weight)], old)
        assert changed == (id(weight) not in backbone_ids), weight.path
    # Keras 3 counts regularizers of trainable weights only: the frozen backbone's L2 term is gone.
    assert logs["regularization"][0] > 0
    head_kernels = [after[id(weight)] for weight in trainer.trainable_weights if weight.path.endswith("kernel")]
    np.testing.assert_allclose(regularization_of(detector), sum(L2 * np.sum(k**2) for k in head_kernels), rtol=1e-5)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="detector must be a Keras model"):
        SSDTrainer(lambda images: images)
    with pytest.raises(ValueError, match="loss must be a tlutils.losses.MultiBoxLoss"):
        SSDTrainer(tiny_detector(), loss="mse")
    trainer = SSDTrainer(tiny_detector())
    images, targets = Batches(1, seed=6)[0]
    with pytest.raises(ValueError, match="y_true must be a dict with keys"):
        trainer.compute_loss(images, {"labels": targets["class_targets"]}, trainer(images))
