"""SSD-VGG16: architecture (SSD300 numbers), preprocessing, L2 normalization, backbone weights,
regularization, freezing, save/load and the JAX backend.

Most tests use width 0.125 and small inputs (channels 8..128) to stay fast on a 2-core CPU; the
width-1.0 SSD300 is built once per module and only inspected, never run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tlutils.anchors import AnchorConfig, generate_anchors
from tlutils.model import (
    FREEZE_POINTS,
    frozen_regularization,
    IMAGENET_MEAN_RGB,
    AtrousConv2D,
    ImagePreprocessing,
    L2Normalization,
    block_of,
    boxes_per_cell,
    anchor_config_for,
    build_ssd_vgg16,
    feature_map_sizes,
    freeze,
    regularization_loss,
    trainable_summary,
)

# VGG channels 8, 16, 32, 64, 64; fc 128; extras 16..64. Tests of the JAX pass (``core``) also keep
# num_classes=2: JAX compiles the random initializer once per kernel shape (~1 s each), so sharing
# shapes keeps that cost to the first build.
TINY = dict(width=0.125)


def _conv_kernels(model: keras.Model, trainable_only: bool = False) -> list[np.ndarray]:
    return [
        np.asarray(layer.kernel) for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D) and (layer.trainable or not trainable_only)
    ]


def _images(rng: np.random.Generator, size: int, batch: int = 2) -> np.ndarray:
    return rng.uniform(0.0, 255.0, size=(batch, size, size, 3)).astype("float32")


@pytest.fixture(scope="module")
def ssd300() -> keras.Model:
    """The paper's SSD300 (width 1.0, input 300) with 20 classes (VOC); built, never run."""
    return build_ssd_vgg16(20)


@pytest.fixture(scope="module")
def keras_vgg16() -> keras.Model:
    return keras.applications.VGG16(include_top=False, weights=None)


# --- SSD300 architecture -------------------------------------------------------------------------


def test_ssd300_has_8732_anchors_and_the_papers_feature_maps(ssd300):
    assert feature_map_sizes(ssd300) == (38, 19, 10, 5, 3, 1)
    assert boxes_per_cell(ssd300) == (4, 6, 6, 6, 4, 4)
    assert tuple(ssd300.output["class_logits"].shape) == (None, 8732, 21)
    assert tuple(ssd300.output["box_offsets"].shape) == (None, 8732, 4)
    assert tuple(ssd300.input_shape) == (None, 300, 300, 3)
    assert anchor_config_for(ssd300) == AnchorConfig.ssd300()


def test_vgg16_part_equals_keras_applications_vgg16(ssd300, keras_vgg16):
    vgg_layers = [layer for layer in keras_vgg16.layers if layer.weights]
    assert [layer.name for layer in vgg_layers] == [f"block{b}_conv{i}" for b, n in
                                                    ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
                                                    for i in range(1, n + 1)]
    for layer in vgg_layers:
        ours = ssd300.get_layer(layer.name)
        assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in layer.weights], layer.name
    ours_count = sum(ssd300.get_layer(layer.name).count_params() for layer in vgg_layers)
    assert ours_count == keras_vgg16.count_params() == 14_714_688


def test_ssd_layers_follow_the_paper(ssd300):
    # (kernel shape, strides, dilation) of SSD's own layers at width 1.0, from the paper's figure 2.
    expected = {
        "fc6": ((3, 3, 512, 1024), (1, 1), (6, 6)),
        "fc7": ((1, 1, 1024, 1024), (1, 1), (1, 1)),
        "conv8_1": ((1, 1, 1024, 256), (1, 1), (1, 1)),
        "conv8_2": ((3, 3, 256, 512), (2, 2), (1, 1)),
        "conv9_1": ((1, 1, 512, 128), (1, 1), (1, 1)),
        "conv9_2": ((3, 3, 128, 256), (2, 2), (1, 1)),
        "conv10_1": ((1, 1, 256, 128), (1, 1), (1, 1)),
        "conv10_2": ((3, 3, 128, 256), (1, 1), (1, 1)),
        "conv11_1": ((1, 1, 256, 128), (1, 1), (1, 1)),
        "conv11_2": ((3, 3, 128, 256), (1, 1), (1, 1)),
        "conv4_3_class_head": ((3, 3, 512, 4 * 21), (1, 1), (1, 1)),
        "fc7_box_head": ((3, 3, 1024, 6 * 4), (1, 1), (1, 1)),
        "conv11_2_class_head": ((3, 3, 256, 4 * 21), (1, 1), (1, 1)),
    }
    for name, (kernel_shape, strides, dilation) in expected.items():
        layer = ssd300.get_layer(name)
        assert (tuple(layer.kernel.shape), tuple(layer.strides), tuple(layer.dilation_rate)) == (
            kernel_shape, strides, dilation), name
    assert ssd300.get_layer("conv10_2").padding == ssd300.get_layer("conv11_2").padding == "valid"
    pool5 = ssd300.get_layer("block5_pool")
    assert (tuple(pool5.pool_size), tuple(pool5.strides), pool5.padding) == ((3, 3), (1, 1), "same")
    assert isinstance(ssd300.get_layer("fc6"), AtrousConv2D)
    norm = ssd300.get_layer("conv4_3_norm")
    assert isinstance(norm, L2Normalization) and np.array_equal(np.asarray(norm.scale), np.full(512, 20.0))


@pytest.mark.parametrize(
    "input_size, maps, valid_convs",
    [
        (160, (20, 10, 5, 3, 1, 1), ("conv10_2",)),  # conv11_2's input is 1x1: same padding
        (512, (64, 32, 16, 8, 6, 4), ("conv10_2", "conv11_2")),
        (32, (4, 2, 1, 1, 1, 1), ()),
    ],
)
def test_other_input_sizes_build(input_size, maps, valid_convs):
    model = build_ssd_vgg16(2, input_size=input_size, **TINY)
    assert feature_map_sizes(model) == maps
    expected_anchors = sum(size * size * k for size, k in zip(maps, (4, 6, 6, 6, 4, 4)))
    assert model.output["class_logits"].shape[1] == expected_anchors
    assert tuple(name for name in ("conv10_2", "conv11_2") if model.get_layer(name).padding == "valid") == valid_convs


@pytest.mark.parametrize("input_size, num_anchors", [(160, 2412), (300, 8732), (512, 24656)])
def test_anchor_config_matches_the_output_length(input_size, num_anchors):
    model = build_ssd_vgg16(2, input_size=input_size, **TINY)
    config = anchor_config_for(model)
    assert config.num_anchors == generate_anchors(config).shape[0] == num_anchors
    assert model.output["class_logits"].shape[1] == model.output["box_offsets"].shape[1] == num_anchors
    assert config.image_size == input_size and config.feature_map_sizes == feature_map_sizes(model)


def test_anchor_config_for_rejects_other_models():
    with pytest.raises(ValueError, match="expected an SSD from build_ssd_vgg16"):
        anchor_config_for(keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3)]))


def test_width_scales_channels_with_a_floor_of_8():
    model = build_ssd_vgg16(1, input_size=32, width=0.25)
    filters = {name: model.get_layer(name).filters for name in ("block1_conv1", "block4_conv3", "fc6", "conv9_1")}
    assert filters == {"block1_conv1": 16, "block4_conv3": 128, "fc6": 256, "conv9_1": 32}
    narrow = build_ssd_vgg16(1, input_size=32, width=0.01)
    assert narrow.get_layer("block1_conv1").filters == 8 and narrow.get_layer("fc6").filters == 10


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_classes=0), "num_classes"),
        (dict(num_classes=2.0), "num_classes"),
        (dict(num_classes=2, input_size=0), "input_size"),
        (dict(num_classes=2, width=0.0), "width"),
        (dict(num_classes=2, width=float("nan")), "width"),
        (dict(num_classes=2, preprocessing="torch"), "preprocessing"),
        (dict(num_classes=2, l2_regularization=-1e-4), "l2_regularization"),
        (dict(num_classes=2, width=0.5, backbone_weights="imagenet"), "width=1.0"),
        (dict(num_classes=2, input_size=32, backbone_weights="/no/such/vgg16.weights.h5"), "no such file"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_ssd_vgg16(**kwargs)


# --- layers --------------------------------------------------------------------------------------


@pytest.mark.core
def test_preprocessing_values_are_exact():
    image = np.array([[[[10.0, 20.0, 30.0], [255.0, 0.0, 127.5]]]], dtype="float32")  # (1, 1, 2, 3) RGB
    f = np.float32
    mean_r, mean_g, mean_b = (f(m) for m in IMAGENET_MEAN_RGB)
    caffe = np.array([[[[f(30) - mean_b, f(20) - mean_g, f(10) - mean_r],
                        [f(127.5) - mean_b, f(0) - mean_g, f(255) - mean_r]]]])  # BGR order
    tf = np.array([[[[f(10) / f(127.5) - 1, f(20) / f(127.5) - 1, f(30) / f(127.5) - 1],
                     [1.0, -1.0, 0.0]]]], dtype="float32")
    assert np.array_equal(np.asarray(ImagePreprocessing("caffe")(image)), caffe)
    assert np.array_equal(np.asarray(ImagePreprocessing("tf")(image)), tf)
    assert np.array_equal(np.asarray(ImagePreprocessing("none")(image)), image)
    # what keras.applications.vgg16.preprocess_input gives, i.e. what VGG16's ImageNet weights expect
    reference = keras.applications.vgg16.preprocess_input(image.copy())
    assert np.array_equal(np.asarray(ImagePreprocessing("caffe")(image)), reference)


@pytest.mark.core
def test_l2_normalization_scales_every_location_to_norm_20():
    features = np.array([[[[3.0, 4.0], [0.0, 0.0]]]], dtype="float32")  # (1, 1, 2, 2): norms 5 and 0
    layer = L2Normalization()
    out = keras.ops.convert_to_numpy(layer(features))
    assert np.array_equal(out, np.array([[[[12.0, 16.0], [0.0, 0.0]]]], dtype="float32"))
    layer.scale.assign(np.array([1.0, 2.0], dtype="float32"))  # the learned per-channel scale
    assert np.allclose(keras.ops.convert_to_numpy(layer(features)), [[[[0.6, 1.6], [0.0, 0.0]]]], atol=1e-7)


@pytest.mark.core
@pytest.mark.parametrize(
    "size, dilation, padding",
    [(10, 6, "same"), (5, 6, "same"), (4, 6, "same"), (9, 2, "same"), (15, 6, "valid"), (6, 1, "same")],
)
def test_atrous_conv_equals_keras_conv2d(rng, size, dilation, padding):
    """Same weights, same outputs (up to float rounding) as Conv2D, also where taps fall off the map."""
    features = rng.normal(size=(2, size, size, 5)).astype("float32")
    reference = keras.layers.Conv2D(7, 3, padding=padding, dilation_rate=dilation, activation="relu")
    atrous = AtrousConv2D(7, 3, padding=padding, dilation_rate=dilation, activation="relu")
    for layer in (reference, atrous):
        layer.build(features.shape)
    atrous.set_weights([rng.normal(size=(3, 3, 5, 7)).astype("float32"), rng.normal(size=7).astype("float32")])
    reference.set_weights(atrous.get_weights())
    expected = keras.ops.convert_to_numpy(reference(features))
    out_size = size - 2 * dilation if padding == "valid" else size
    assert expected.shape == (2, out_size, out_size, 7)
    assert np.allclose(keras.ops.convert_to_numpy(atrous(features)), expected, rtol=1e-5, atol=1e-5)
    assert AtrousConv2D.from_config(atrous.get_config()).get_config() == atrous.get_config()


@pytest.mark.core
def test_forward_pass_outputs_finite_logits_and_offsets(rng):
    model = build_ssd_vgg16(2, input_size=64, **TINY)
    outputs = model(_images(rng, 64))
    anchors = 8 * 8 * 4 + 4 * 4 * 6 + 2 * 2 * 6 + 1 * 6 + 1 * 4 + 1 * 4
    assert tuple(outputs["class_logits"].shape) == (2, anchors, 3)
    assert tuple(outputs["box_offsets"].shape) == (2, anchors, 4)
    assert all(np.isfinite(keras.ops.convert_to_numpy(tensor)).all() for tensor in outputs.values())


@pytest.mark.core
def test_heads_order_anchors_row_then_column_then_box(rng):
    model = build_ssd_vgg16(2, input_size=32, **TINY)
    probe = keras.Model(model.input, [model.get_layer("conv4_3_class_head").output, model.output["class_logits"]])
    head, logits = (keras.ops.convert_to_numpy(t) for t in probe(_images(rng, 32, batch=1)))
    # conv4_3 is 4x4 with 4 boxes per cell and 3 values per box: channel b * 3 + v of cell (i, j)
    i, j, b, v = 2, 1, 3, 1
    anchor = (i * 4 + j) * 4 + b
    assert logits[0, anchor, v] == head[0, i, j, b * 3 + v]
    # ... and the anchor with that index sits in cell (row i, column j) of the 4x4 map
    cx, cy = generate_anchors(anchor_config_for(model))[anchor, :2]
    assert (cx, cy) == pytest.approx(((j + 0.5) / 4, (i + 0.5) / 4))


@pytest.fixture
def mixed_bfloat16():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    yield
    keras.config.set_dtype_policy(previous)


def test_mixed_precision_keeps_outputs_and_normalization_in_float32(mixed_bfloat16, rng):
    model = build_ssd_vgg16(2, input_size=32, **TINY)
    assert model.get_layer("block1_conv1").compute_dtype == "bfloat16"
    assert model.get_layer("preprocessing").compute_dtype == "float32"
    assert model.get_layer("conv4_3_norm").compute_dtype == "float32"
    outputs = model(_images(rng, 32))
    assert {keras.backend.standardize_dtype(t.dtype) for t in outputs.values()} == {"float32"}


# --- backbone weights ----------------------------------------------------------------------------


def _save_legacy_h5_weights(model: keras.Model, path) -> None:
    """Weights in Keras 2's HDF5 layout, the format of the ImageNet ``..._notop.h5`` Keras downloads."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, model)


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras", ".h5"])
def test_local_vgg16_weights_reproduce_its_conv5_3_outputs(tmp_path, rng, keras_vgg16, suffix):
    path = tmp_path / f"vgg16_notop{suffix}"
    if suffix == ".keras":
        keras_vgg16.save(path)
    elif suffix == ".h5":
        _save_legacy_h5_weights(keras_vgg16, path)
    else:
        keras_vgg16.save_weights(path)
    ssd = build_ssd_vgg16(2, input_size=64, backbone_weights=path)
    images = _images(rng, 64)
    # 64 -> 32 -> 16 -> 8 -> 4: even sizes, where SSD's "same" pools equal VGG16's "valid" ones
    ours = keras.Model(ssd.input, ssd.get_layer("block5_conv3").output)(images)
    vgg = keras.Model(keras_vgg16.input, keras_vgg16.get_layer("block5_conv3").output)
    theirs = vgg(keras.applications.vgg16.preprocess_input(images.copy()))
    assert np.array_equal(np.asarray(ours), np.asarray(theirs))


@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_weights_of_another_model_are_rejected(tmp_path):
    path = tmp_path / "tiny.weights.h5"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save_weights(path)
    with pytest.raises(ValueError, match="cannot load"):
        build_ssd_vgg16(2, input_size=32, backbone_weights=path)


# --- regularization ------------------------------------------------------------------------------


def test_l2_regularizer_on_every_conv_kernel(rng):
    model = build_ssd_vgg16(2, input_size=32, l2_regularization=5e-4, **TINY)
    kernels = _conv_kernels(model)
    assert len(kernels) == len(model.losses) == 13 + 2 + 8 + 12  # VGG, fc, extras, heads
    expected = 5e-4 * sum(float(np.sum(np.square(k, dtype=np.float64))) for k in kernels)
    assert float(regularization_loss(model)) == pytest.approx(expected, rel=1e-5)


def test_frozen_layers_l2_disappears_from_model_losses():
    """Keras 3 collects regularization from trainable weights only (Keras 2 kept frozen layers' terms)."""
    model = build_ssd_vgg16(2, input_size=32, l2_regularization=5e-4, **TINY)
    freeze(model, up_to="fc")
    assert len(model.losses) == 8 + 12  # extras and heads
    expected = 5e-4 * sum(float(np.sum(np.square(k, dtype=np.float64)))
                          for k in _conv_kernels(model, trainable_only=True))
    assert float(regularization_loss(model)) == pytest.approx(expected, rel=1e-5)
    freeze(model, up_to="heads")
    assert model.losses == [] and float(regularization_loss(model)) == 0.0


def test_the_frozen_l2_term_is_the_frozen_kernels_penalty_and_leaves_the_flags_alone():
    """What Keras 2 adds to the displayed loss for frozen layers: the L2 penalty of exactly the kernels
    frozen up to the point, computed by hand here; the model's trainable flags are given back."""
    model = build_ssd_vgg16(2, input_size=32, l2_regularization=5e-4, **TINY)
    freeze(model, up_to="block3")
    before = [layer.trainable for layer in model.layers]
    frozen_names = {layer.name for layer in freeze(build_ssd_vgg16(2, input_size=32, **TINY), "fc").layers
                    if not layer.trainable}
    expected = 5e-4 * sum(float(np.sum(np.square(layer.kernel, dtype=np.float64))) for layer in model.layers
                          if layer.name in frozen_names and hasattr(layer, "kernel"))
    assert frozen_regularization(model, "fc") == pytest.approx(expected, rel=1e-5) and expected > 0
    assert [layer.trainable for layer in model.layers] == before
    assert frozen_regularization(model, "heads") == pytest.approx(regularization_loss(freeze(model, None)), rel=1e-6)
    with pytest.raises(ValueError, match="up_to must be one of"):
        frozen_regularization(model, None)


def test_no_regularization_by_default():
    model = build_ssd_vgg16(2, input_size=32, **TINY)
    assert model.losses == [] and float(regularization_loss(model)) == 0.0


# --- freeze points -------------------------------------------------------------------------------

# Parameters of the width-0.125 VGG16 blocks (channels 8, 16, 32, 64, 64; fc 128): 3x3 convs.
TINY_BLOCK1 = (27 * 8 + 8) + (72 * 8 + 8)  # 808
TINY_BLOCK2 = (72 * 16 + 16) + (144 * 16 + 16)  # 3488
TINY_BLOCK3 = (144 * 32 + 32) + 2 * (288 * 32 + 32)  # 23136
TINY_BLOCK4 = (288 * 64 + 64) + 2 * (576 * 64 + 64)  # 92352
TINY_BLOCK5 = 3 * (576 * 64 + 64)  # 110784
TINY_FC = (9 * 64 * 128 + 128) + (128 * 128 + 128)  # 90368


@pytest.mark.core
def test_every_layer_belongs_to_exactly_one_block():
    model = build_ssd_vgg16(2, input_size=32, **TINY)
    blocks = [block_of(layer.name) for layer in model.layers]
    assert set(blocks) == set(FREEZE_POINTS)
    assert block_of("conv4_3_norm") == "extras" and block_of("fc7_box_head") == "heads"
    with pytest.raises(ValueError, match="dense_1"):
        block_of("dense_1")


@pytest.mark.core
@pytest.mark.parametrize(
    "up_to, frozen",
    [
        (None, 0),
        ("block1", TINY_BLOCK1),
        ("block3", TINY_BLOCK1 + TINY_BLOCK2 + TINY_BLOCK3),
        ("fc", TINY_BLOCK1 + TINY_BLOCK2 + TINY_BLOCK3 + TINY_BLOCK4 + TINY_BLOCK5 + TINY_FC),
    ],
)
def test_freeze_changes_exactly_the_expected_parameter_counts(up_to, frozen):
    model = build_ssd_vgg16(2, input_size=32, **TINY)
    total = model.count_params()
    freeze(model, up_to=up_to)
    assert sum(int(np.prod(w.shape)) for w in model.non_trainable_weights) == frozen
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == total - frozen


@pytest.mark.core
def test_freeze_can_unfreeze_and_rejects_unknown_points():
    model = build_ssd_vgg16(2, input_size=32, **TINY)
    model.trainable = False
    freeze(model, up_to="block2")
    assert not model.get_layer("block2_conv2").trainable and model.get_layer("block3_conv1").trainable
    freeze(model, up_to=None)
    assert model.non_trainable_weights == []
    with pytest.raises(ValueError, match="up_to"):
        freeze(model, up_to="block6")


def test_trainable_summary_per_block():
    model = build_ssd_vgg16(2, input_size=32, **TINY)
    freeze(model, up_to="block2")
    summary = trainable_summary(model)
    assert list(summary["block"]) == list(FREEZE_POINTS)
    rows = summary.set_index("block")
    assert list(rows.loc["block1"]) == [0, TINY_BLOCK1, TINY_BLOCK1]
    assert list(rows.loc["block2"]) == [0, TINY_BLOCK2, TINY_BLOCK2]
    assert list(rows.loc["block4"]) == [TINY_BLOCK4, 0, TINY_BLOCK4]
    assert list(rows.loc["fc"]) == [TINY_FC, 0, TINY_FC]
    assert rows["total"].sum() == model.count_params()


# --- saving and other backends -------------------------------------------------------------------


def test_keras_file_round_trip_gives_identical_outputs(tmp_path, rng):
    model = build_ssd_vgg16(3, input_size=64, l2_regularization=5e-4, preprocessing="tf", **TINY)
    model.get_layer("conv4_3_norm").scale.assign(np.linspace(1.0, 30.0, 64).astype("float32"))
    path = tmp_path / "ssd.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # custom layers are registered: no custom_objects
    images = _images(rng, 64)
    before, after = model(images), loaded(images)
    for key in ("class_logits", "box_offsets"):
        assert np.array_equal(np.asarray(before[key]), np.asarray(after[key])), key
    assert loaded.get_layer("preprocessing").mode == "tf"
    assert anchor_config_for(loaded) == anchor_config_for(model)
    assert float(regularization_loss(loaded)) == float(regularization_loss(model))


JAX_SCRIPT = """
import json, sys
import keras, numpy as np
import tlutils.model  # registers the custom layers
assert keras.backend.backend() == "jax", keras.backend.backend()
model = keras.saving.load_model(sys.argv[1])
outputs = model.predict(np.load(sys.argv[2]), verbose=0)
np.save(sys.argv[3], np.asarray(outputs["class_logits"]))
print(json.dumps({"backend": keras.backend.backend()}))
"""


def test_forward_pass_on_jax_matches_tensorflow(tmp_path, rng):
    """Build and save here, load and run in a JAX process: same outputs up to float rounding.

    Width 0.008 gives 8 channels everywhere: 6 distinct kernel shapes for JAX to compile an
    initializer for (each costs seconds on a busy CPU).
    """
    model = build_ssd_vgg16(1, input_size=64, width=0.008)
    images = _images(rng, 64)
    model.save(tmp_path / "ssd.keras")
    np.save(tmp_path / "images.npy", images)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT, str(tmp_path / "ssd.keras"), str(tmp_path / "images.npy"),
         str(tmp_path / "logits.npy")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"backend": "jax"}
    jax_logits = np.load(tmp_path / "logits.npy")
    assert np.allclose(jax_logits, np.asarray(model(images)["class_logits"]), rtol=1e-4, atol=1e-4)
