"""``tlutils bench``: the FLOP counter on a hand-worked model, and a ``--quick`` run's table and JSON."""

from __future__ import annotations

import json
import math

import keras
import pytest

from dataclasses import asdict

from tlutils.bench import (TABLE_ROWS, bf16_skip_note, configurations, forward_flops, layer_macs, measure_training,
                           ratios, run_bench, training_flops)

#: Keys every configuration of bench.json carries as finite positive numbers.
NUMBER_KEYS = (
    "train_images_per_s",
    "train_images_per_s_bf16",
    "train_images_per_cpu_s",
    "backbone_train_images_per_s",
    "backbone_train_images_per_s_bf16",
    "pipeline_images_per_s",
    "encode_ms_per_image",
    "decode_ms_per_batch32",
    "train_gflop_per_image",
    "train_gflops",
    "train_gflops_bf16",
    "peak_memory_mb",
)


def tiny_conv_model() -> keras.Model:
    """8x8x3 -> conv 3x3 "same" 4 ch -> conv 1x1 stride 2, 2 ch -> depthwise 3x3 "valid" -> dense 5."""
    images = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(images)  # (8, 8, 4)
    x = keras.layers.Conv2D(2, 1, strides=2)(x)  # (4, 4, 2)
    x = keras.layers.MaxPooling2D(2)(x)  # (2, 2, 2): no MACs
    x = keras.layers.DepthwiseConv2D(2)(x)  # (1, 1, 2)
    x = keras.layers.Flatten()(x)  # (2,)
    return keras.Model(images, keras.layers.Dense(5)(x))


@pytest.mark.core
def test_flops_of_a_tiny_conv_model_by_hand():
    model = tiny_conv_model()
    # Per output position: kernel height x width x input channels x output channels.
    expected_macs = [
        8 * 8 * (3 * 3 * 3 * 4),  # conv 3x3, 3 -> 4 channels, 64 positions: 6912
        4 * 4 * (1 * 1 * 4 * 2),  # conv 1x1, 4 -> 2 channels, 16 positions: 128
        1 * 1 * (2 * 2 * 2 * 1),  # depthwise 2x2 on 2 channels, multiplier 1, 1 position: 8
        2 * 5,  # dense 2 -> 5: 10
    ]
    assert [layer_macs(layer) for layer in model.layers if layer_macs(layer)] == expected_macs
    assert forward_flops(model) == 2 * 7058
    assert training_flops(model) == 3 * 2 * 7058


@pytest.mark.core
def test_flops_count_nested_models_once():
    inner = tiny_conv_model()
    outer_input = keras.Input((8, 8, 3))
    outer = keras.Model(outer_input, keras.layers.Dense(1)(inner(outer_input)))
    assert forward_flops(outer) == 2 * (7058 + 5)


def test_quick_bench_writes_every_key(tmp_path, capsys):
    out = tmp_path / "runs" / "bench.json"
    assert run_bench(out=out, quick=True) == 0
    report = json.loads(out.read_text())

    machine = report["machine"]
    for key in ("matmul_gflops", "matmul_gflops_bf16", "matmul_gflops_per_cpu_s", "cores"):
        assert math.isfinite(machine[key]) and machine[key] > 0, key
    assert len(machine["load_average_start"]) == len(machine["load_average_end"]) == 3
    assert report["configurations"]
    for name in report["configurations"]:
        result = report[name]
        for key in NUMBER_KEYS:
            assert math.isfinite(result[key]) and result[key] > 0, (name, key, result[key])
        assert result["outputs_float32_bf16"], "under mixed_bfloat16 the detector's outputs must be float32"
        peer = result["peer_torchvision_train_images_per_s"]
        assert (peer is not None and math.isfinite(peer) and peer > 0) or result["peer_note"], name
        for key in ("ssd_overhead", "ssd_overhead_cpu", "fraction_of_matmul", "fraction_of_matmul_cpu"):
            assert math.isfinite(result["ratios"][key]), key

    table = capsys.readouterr().out
    for row in TABLE_ROWS:
        assert row[2] in table


def test_triton_is_kept_out_only_where_tensorflow_is_loaded(monkeypatch):
    """Triton's LLVM crashed a process holding TensorFlow's; the peer's import keeps it out there."""
    import sys
    import types

    from tlutils.bench import keep_triton_out

    monkeypatch.delitem(sys.modules, "triton", raising=False)
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    keep_triton_out()
    assert "triton" not in sys.modules
    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    keep_triton_out()
    assert sys.modules["triton"] is None
    with pytest.raises(ImportError):
        import triton  # noqa: F401


def test_ssd300_skips_bf16_only_where_it_would_be_emulated():
    cpu_profile, ssd300 = configurations()
    assert bf16_skip_note(cpu_profile, native=False) is None  # the cheap column still shows the slowdown
    assert bf16_skip_note(ssd300, native=True) is None
    assert "emulated" in bf16_skip_note(ssd300, native=False)


def test_training_without_bf16_times_float32_only():
    spec = {"config": asdict(configurations(quick=True)[0]), "num_classes": 3, "peer": False, "bf16": False}
    results = measure_training(spec)
    assert results["train_images_per_s"] > 0 and results["backbone_train_images_per_s"] > 0
    assert not [key for key in results if key.endswith("_bf16")]


def test_ratios_without_bf16_figures_are_none_and_the_rest_computed():
    result = {"train_gflop_per_image": 2.0, "backbone_train_gflop_per_image": 1.6}
    for unit in ("s", "cpu_s"):
        result.update({f"train_images_per_{unit}": 10.0, f"backbone_train_images_per_{unit}": 12.0,
                       f"ssd_layers_train_images_per_{unit}": 11.0, f"pipeline_images_per_{unit}": 100.0})
    machine = {"matmul_gflops": 40.0, "matmul_gflops_per_cpu_s": 20.0, "matmul_gflops_bf16": 40.0,
               "matmul_gflops_bf16_per_cpu_s": 20.0}
    out = ratios(result, machine)
    assert out["ssd_overhead"] == pytest.approx(0.2) and out["fraction_of_matmul_cpu"] == pytest.approx(1.0)
    assert out["flop_overhead"] == pytest.approx(0.25)
    for key in ("bf16_speedup", "ssd_overhead_bf16", "fraction_of_matmul_bf16"):
        assert out[key] is None and out[key + "_cpu"] is None
