"""The batching pipeline: shapes, targets equal to ``encode`` of the same inputs, determinism, fit.

The batches are NumPy only; the ``fit`` test is core-marked, so it runs under TensorFlow and again
with ``KERAS_BACKEND=jax`` (training through the JAX backend, thread workers included).
"""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np
import pytest
from PIL import Image

from tlutils.anchors import AnchorConfig, generate_anchors
from tlutils.data.augment import Augmenter
from tlutils.data.pipeline import DetectionSequence, ground_truths_for_eval, make_label_map
from tlutils.data.records import DetectionRecord
from tlutils.encoding import encode

SIZE = 64
LABEL_MAP = {10: 1, 20: 2, 30: 3}
NUM_SAMPLES = 10


@pytest.fixture(scope="module")
def anchors() -> np.ndarray:
    return generate_anchors(AnchorConfig.from_feature_maps(SIZE, (8, 4, 2, 1)))


def make_samples(num: int = NUM_SAMPLES, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Images 96 x 80 whose background grey level (5 * index + 20) identifies them, with 1-3 boxes."""
    rng = np.random.default_rng(seed)
    samples = []
    for index in range(num):
        image = np.full((80, 96, 3), 5 * index + 20, dtype=np.uint8)
        count = int(rng.integers(1, 4))
        top_left = rng.uniform(8, 50, size=(count, 2))
        boxes = np.concatenate([top_left, top_left + rng.uniform(12, 30, size=(count, 2))], axis=1)
        labels = rng.choice([10, 20, 30], size=count)
        for (x0, y0, x1, y1), label in zip(boxes.astype(int), labels):
            image[y0:y1, x0:x1] = (200, label * 6, 40)
        samples.append((image, boxes.astype(np.float32), labels))
    return samples


@pytest.fixture(scope="module")
def samples():
    return make_samples()


def identity(image: np.ndarray) -> int:
    """The sample index painted into a resized (not augmented) image's top-left pixel."""
    return int(round((image[0, 0, 0] - 20) / 5))


def test_batch_shapes_and_dtypes(samples, anchors):
    sequence = DetectionSequence(samples, anchors, LABEL_MAP, batch_size=4, augmenter=Augmenter(SIZE))
    assert len(sequence) == 3
    images, targets = sequence[0]
    assert images.shape == (4, SIZE, SIZE, 3) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 255.0
    assert targets["class_targets"].shape == (4, len(anchors)) and targets["class_targets"].dtype == np.int32
    assert targets["box_targets"].shape == (4, len(anchors), 4) and targets["box_targets"].dtype == np.float32
    assert sequence[2][0].shape[0] == 2  # 10 = 4 + 4 + 2
    assert len(DetectionSequence(samples, anchors, LABEL_MAP, batch_size=4, input_size=SIZE, drop_remainder=True)) == 2
    with pytest.raises(IndexError):
        sequence[3]


def test_validation_batches_are_resized_images_and_encode_of_the_scaled_ground_truth(samples, anchors):
    sequence = DetectionSequence(samples, anchors, LABEL_MAP, batch_size=4, input_size=SIZE, shuffle=False)
    row = 0
    for batch in range(len(sequence)):
        images, targets = sequence[batch]
        for image, class_targets, box_targets in zip(images, targets["class_targets"], targets["box_targets"]):
            source, boxes, labels = samples[row]
            expected = np.asarray(Image.fromarray(source).resize((SIZE, SIZE), Image.Resampling.BILINEAR))
            np.testing.assert_array_equal(image, expected.astype(np.float32))
            mapped = np.array([LABEL_MAP[label] for label in labels])
            expected_boxes, expected_classes = encode(boxes / [96, 80, 96, 80], mapped, anchors)
            np.testing.assert_array_equal(class_targets, expected_classes)
            np.testing.assert_allclose(box_targets, expected_boxes, atol=1e-5)
            assert (class_targets > 0).sum() >= len(labels)
            row += 1
    assert row == NUM_SAMPLES


def test_augmented_batches_hold_the_samples_and_their_encoded_boxes(samples, anchors):
    sequence = DetectionSequence(samples, anchors, LABEL_MAP, batch_size=4, augmenter=Augmenter(SIZE), seed=3)
    sequence.set_epoch(2)
    augmented = [sequence.sample(index) for index in range(NUM_SAMPLES)]
    seen = []
    for batch in range(len(sequence)):
        images, targets = sequence[batch]
        for image, class_targets, box_targets in zip(images, targets["class_targets"], targets["box_targets"]):
            index = next(i for i, (img, _, _) in enumerate(augmented) if np.array_equal(img, image))
            _, boxes, labels = augmented[index]
            expected_boxes, expected_classes = encode(boxes / SIZE, labels, anchors)
            np.testing.assert_array_equal(class_targets, expected_classes)
            np.testing.assert_allclose(box_targets, expected_boxes, atol=1e-6)
            seen.append(index)
    assert sorted(seen) == list(range(NUM_SAMPLES))


def test_same_seed_same_batches_new_epoch_new_batches(samples, anchors):
    def batches(sequence):
        return [sequence[index] for index in range(len(sequence))]

    def same(a, b) -> bool:
        return all(
            np.array_equal(x[0], y[0]) and all(np.array_equal(x[1][k], y[1][k]) for k in x[1]) for x, y in zip(a, b)
        )

    first = DetectionSequence(samples, anchors, LABEL_MAP, batch_size=4, augmenter=Augmenter(SIZE), seed=5)
    second = DetectionSequence(samples, anchors, LABEL_MAP, batch_size=4, augmenter=Augmenter(SIZE), seed=5)
    other_seed = DetectionSequence(samples, anchors, LABEL_MAP, batch_size=4, augmenter=Augmenter(SIZE), seed=6)
    epoch_zero = batches(first)
    assert same(epoch_zero, batches(second))
    assert same(list(reversed(epoch_zero)), [first[i] for i in reversed(range(len(first)))])  # any read order
    assert not same(epoch_zero, batches(other_seed))
    first.on_epoch_end()
    second.on_epoch_end()
    assert first.epoch == 1
    epoch_one = batches(first)
    assert same(epoch_one, batches(second))
    assert not same(epoch_zero, epoch_one)
    first.set_epoch(0)
    assert same(epoch_zero, batches(first))
    # Not only the order: each image's augmentation changes with the epoch too.
    redrawn = [np.array_equal(first.sample(i, epoch=0)[0], first.sample(i, epoch=1)[0]) for i in range(NUM_SAMPLES)]
    assert not any(redrawn)


def test_batch_of_an_explicit_epoch_leaves_the_sequence_alone_and_threads_agree(samples, anchors):
    sequence = DetectionSequence(samples, anchors, LABEL_MAP, batch_size=3, augmenter=Augmenter(SIZE), seed=2)
    reference = DetectionSequence(samples, anchors, LABEL_MAP, batch_size=3, augmenter=Augmenter(SIZE), seed=2)
    wanted = []
    for epoch in range(3):
        reference.set_epoch(epoch)
        wanted += [(epoch, index, reference[index]) for index in range(len(reference))]
    with ThreadPoolExecutor(4) as pool:  # mixed epochs, out of order, at the same time
        built = list(pool.map(lambda job: sequence.batch(job[1], epoch=job[0]), reversed(wanted)))
    assert sequence.epoch == 0  # nothing moved the sequence's own epoch
    for (epoch, index, (images, targets)), (got_images, got_targets) in zip(reversed(wanted), built):
        np.testing.assert_array_equal(got_images, images, err_msg=f"epoch {epoch} batch {index}")
        for key in targets:
            np.testing.assert_array_equal(got_targets[key], targets[key])
    assert not np.array_equal(sequence.batch(0, epoch=1)[0], sequence[0][0])


def test_pickled_sequence_gives_the_same_batches(samples, anchors):
    sequence = DetectionSequence(samples, anchors, LABEL_MAP, batch_size=4, augmenter=Augmenter(SIZE), seed=1)
    copy = pickle.loads(pickle.dumps(sequence))
    for index in range(len(sequence)):
        np.testing.assert_array_equal(copy[index][0], sequence[index][0])


def test_shuffle_visits_every_image_once_per_epoch(samples, anchors):
    sequence = DetectionSequence(samples, anchors, LABEL_MAP, batch_size=3, input_size=SIZE, shuffle=True)
    orders = []
    for _ in range(3):
        order = [identity(image) for index in range(len(sequence)) for image in sequence[index][0]]
        assert sorted(order) == list(range(NUM_SAMPLES))
        orders.append(order)
        sequence.on_epoch_end()
    assert orders[0] != orders[1] != orders[2]
    in_order = DetectionSequence(samples, anchors, LABEL_MAP, batch_size=3, input_size=SIZE, shuffle=False)
    in_order.on_epoch_end()
    order = [identity(image) for index in range(len(in_order)) for image in in_order[index][0]]
    assert order == list(range(NUM_SAMPLES))


def test_unmapped_labels_raise_or_are_dropped(samples, anchors):
    with_unknown = list(samples)
    image, boxes, labels = with_unknown[3]
    with_unknown[3] = (image, boxes, np.concatenate([[40], labels[1:]]))
    with pytest.raises(ValueError, match=r"sample 3 has labels \[40\]"):
        DetectionSequence(with_unknown, anchors, LABEL_MAP, input_size=SIZE)
    dropped = DetectionSequence(with_unknown, anchors, LABEL_MAP, input_size=SIZE, unmapped="drop", shuffle=False)
    truth = ground_truths_for_eval(dropped)[3]
    assert len(truth["labels"]) == len(labels) - 1
    np.testing.assert_allclose(truth["boxes"], boxes[1:] / [96, 80, 96, 80], rtol=1e-6)
    assert dropped[0][1]["class_targets"].max() <= 3


def test_records_are_cached_at_the_working_size_and_match_uncached(tmp_path, samples, anchors):
    records = []
    for index, (image, boxes, labels) in enumerate(samples[:5]):
        large = np.asarray(Image.fromarray(image).resize((192, 160), Image.Resampling.NEAREST))
        path = tmp_path / f"{index}.png"
        Image.fromarray(large).save(path)
        records.append(DetectionRecord(
            str(path), 192, 160, boxes * 2, labels, class_names=["x"] * len(labels), superclasses=[None] * len(labels)
        ))
    cached = DetectionSequence(records, anchors, LABEL_MAP, batch_size=2, augmenter=Augmenter(SIZE), seed=4)
    uncached = DetectionSequence(
        records, anchors, LABEL_MAP, batch_size=2, augmenter=Augmenter(SIZE), seed=4, cache_images=False
    )
    assert cached.cache_nbytes == 5 * 128 * 107 * 3 and uncached.cache_nbytes == 0  # longest side 2 * 64
    for index in range(len(cached)):
        np.testing.assert_array_equal(cached[index][0], uncached[index][0])
        np.testing.assert_array_equal(cached[index][1]["class_targets"], uncached[index][1]["class_targets"])
    resized = DetectionSequence(records, anchors, LABEL_MAP, batch_size=5, input_size=SIZE, shuffle=False)
    class_targets = resized[0][1]["class_targets"]
    for record, targets in zip(records, class_targets):  # boxes follow the image to the working size
        mapped = [LABEL_MAP[label] for label in record.labels]
        np.testing.assert_array_equal(targets, encode(record.normalized_boxes(), mapped, anchors)[1])
    truths = ground_truths_for_eval(records, LABEL_MAP)
    np.testing.assert_allclose(truths[1]["boxes"], records[1].boxes / [192, 160, 192, 160], rtol=1e-6)
    np.testing.assert_array_equal(truths[1]["labels"], [LABEL_MAP[label] for label in records[1].labels])


def test_ground_truths_for_eval_agree_between_sequence_and_samples(samples, anchors):
    sequence = DetectionSequence(samples, anchors, LABEL_MAP, input_size=SIZE, augmenter=None)
    from_sequence = ground_truths_for_eval(sequence)
    from_samples = ground_truths_for_eval(samples, LABEL_MAP)
    assert len(from_sequence) == NUM_SAMPLES
    for a, b in zip(from_sequence, from_samples):
        np.testing.assert_array_equal(a["boxes"], b["boxes"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
        assert a["boxes"].dtype == np.float32 and a["labels"].dtype == np.int32
    with pytest.raises(ValueError, match="own label_map"):
        ground_truths_for_eval(sequence, LABEL_MAP)


def test_make_label_map():
    assert make_label_map({7: "b", 0: "a", 3: "c"}) == {0: 1, 3: 2, 7: 3}
    assert make_label_map([20, 10]) == {10: 1, 20: 2}
    superclass_of = {0: "prohibitory", 5: "danger", 7: "prohibitory", 9: None, 11: "mandatory"}
    assert make_label_map(superclass_of, superclass_of) == {0: 1, 7: 1, 5: 2, 11: 3}
    with pytest.raises(ValueError, match="empty"):
        make_label_map([])


def test_bad_arguments_raise_value_error(samples, anchors):
    with pytest.raises(ValueError, match="input_size"):
        DetectionSequence(samples, anchors, LABEL_MAP)
    with pytest.raises(ValueError, match="differs"):
        DetectionSequence(samples, anchors, LABEL_MAP, augmenter=Augmenter(SIZE), input_size=SIZE + 1)
    with pytest.raises(ValueError, match="anchors"):
        DetectionSequence(samples, anchors[:, :3], LABEL_MAP, input_size=SIZE)
    with pytest.raises(ValueError, match="batch_size"):
        DetectionSequence(samples, anchors, LABEL_MAP, input_size=SIZE, batch_size=0)
    with pytest.raises(ValueError, match="no full batch"):
        DetectionSequence(samples, anchors, LABEL_MAP, input_size=SIZE, batch_size=11, drop_remainder=True)
    zero_labels = [(image, boxes, np.zeros_like(labels)) for image, boxes, labels in samples]
    with pytest.raises(ValueError, match=r"sample 0 has labels \[0\] < 1 and no label_map"):
        DetectionSequence(zero_labels, anchors, None, input_size=SIZE)
    with pytest.raises(ValueError, match="classes < 1"):
        DetectionSequence(samples, anchors, {10: 0, 20: 1, 30: 2}, input_size=SIZE)
    with pytest.raises(ValueError, match="empty"):
        DetectionSequence([], anchors, LABEL_MAP, input_size=SIZE)
    with pytest.raises(ValueError, match="item 0"):
        DetectionSequence(["image.png"], anchors, LABEL_MAP, input_size=SIZE)
    with pytest.raises(ValueError, match="unmapped"):
        DetectionSequence(samples, anchors, LABEL_MAP, input_size=SIZE, unmapped="ignore")
    inverted = [(samples[0][0], np.array([[50.0, 10.0, 20.0, 30.0]]), np.array([10]))]
    with pytest.raises(ValueError, match="sample 0: box 0"):
        DetectionSequence(inverted, anchors, LABEL_MAP, input_size=SIZE)[0]


def tiny_detector(num_anchors: int, num_classes: int) -> keras.Model:
    """A stand-in with the detector's output contract, keyed like the targets."""
    inputs = keras.Input((SIZE, SIZE, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, strides=4)(inputs / 255.0))
    logits = keras.layers.Dense(num_anchors * (num_classes + 1))(features)
    logits = keras.layers.Reshape((num_anchors, num_classes + 1))(logits)
    offsets = keras.layers.Reshape((num_anchors, 4))(keras.layers.Dense(num_anchors * 4)(features))
    return keras.Model(inputs, {"class_targets": logits, "box_targets": offsets})


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.data is TensorFlow's")
def test_fit_reads_a_default_sequence_without_tf_data_autotuning(samples, anchors):
    from keras.src.trainers.data_adapters import get_data_adapter  # what fit wraps a PyDataset in

    sequence = DetectionSequence(samples, anchors, LABEL_MAP, batch_size=4, augmenter=Augmenter(SIZE))
    assert get_data_adapter(sequence).get_tf_dataset().options().autotune.enabled is False  # see DEFAULT_WORKERS


@pytest.mark.core
def test_fit_trains_on_the_sequence_with_thread_workers(samples, anchors):
    keras.utils.set_random_seed(0)
    train = DetectionSequence(samples, anchors, LABEL_MAP, batch_size=4, augmenter=Augmenter(SIZE), workers=2)
    validation = DetectionSequence(samples, anchors, LABEL_MAP, batch_size=4, input_size=SIZE, shuffle=False)
    model = tiny_detector(len(anchors), num_classes=3)
    model.compile(
        optimizer="adam",
        loss={
            "class_targets": keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1),
            "box_targets": "mse",
        },
    )
    history = model.fit(train, validation_data=validation, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all() and np.isfinite(history.history["val_loss"]).all()
    # fit calls on_epoch_end after each epoch (Keras 3.15 also once before the first one).
    assert train.epoch >= 2
    predictions = model.predict(validation, verbose=0)
    assert predictions["class_targets"].shape == (NUM_SAMPLES, len(anchors), 4)
