"""``tlutils bench``: the FLOP counter on a hand-worked model, a ``--quick`` run's table and JSON, and the
child and peer plumbing (bf16 autocast beside float32) with a stand-in peer where torch is absent."""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
from dataclasses import asdict

import keras
import pytest

from tlutils.bench import (TABLE_ROWS, bf16_skip_note, configurations, forward_flops, layer_macs, measure_training,
                           ratios, run_bench, step_rates, training_flops)
from tlutils.bench import peer as bench_peer
from tlutils.bench.child import child_main
from tlutils.bench.training import torchvision_peer_steps

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


@pytest.fixture
def fake_peer(monkeypatch):
    """Stands in for torchvision's SSD300 (torch need not be installed); records each ``bf16`` asked for."""
    calls = []

    def torchvision_peer(images, truths, num_classes, bf16=False):
        calls.append(bf16)
        return (lambda: None), {"peer_note": f"fake peer, bf16 {bf16}"}

    monkeypatch.setattr(bench_peer, "torchvision_peer", torchvision_peer)
    return calls


def test_training_without_bf16_times_float32_only_the_peer_too(fake_peer):
    spec = {"config": asdict(configurations(quick=True)[0]), "num_classes": 3, "peer": True, "bf16": False}
    results = measure_training(spec)
    assert results["train_images_per_s"] > 0 and results["backbone_train_images_per_s"] > 0
    assert results["peer_torchvision_train_images_per_s"] > 0
    assert fake_peer == [False], "where ours skips bf16, the peer's bf16 autocast is skipped too"
    assert not [key for key in results if key.endswith("_bf16")]


def test_with_bf16_the_peer_trains_in_float32_and_under_bf16_autocast(fake_peer):
    steps, results = torchvision_peer_steps(None, [], 3, bf16=True)
    assert sorted(steps) == ["peer", "peer_bf16"] and fake_peer == [False, True]
    assert results["peer_note"] == "fake peer, bf16 False", "the float32 peer's note says how torchvision loaded"
    assert sorted(torchvision_peer_steps(None, [], 3, bf16=False)[0]) == ["peer"]


def test_step_rates_name_each_step_and_precision():
    timings = {"train": {"seconds": 0.5, "cpu_seconds": 1.0, "cores_busy": 2.0},
               "peer_bf16": {"seconds": 2.0, "cpu_seconds": 4.0, "cores_busy": 1.5}}
    assert step_rates(timings, batch_size=4) == {
        "train_images_per_s": 8.0, "train_images_per_cpu_s": 4.0, "train_cores_busy": 2.0,
        "peer_torchvision_train_images_per_s_bf16": 2.0, "peer_torchvision_train_images_per_cpu_s_bf16": 1.0,
        "peer_torchvision_train_cores_busy_bf16": 1.5,
    }


def test_the_peer_runs_its_float32_step_outside_autocast():
    assert isinstance(bench_peer.peer_precision_context(False), contextlib.nullcontext)  # no torch needed


def test_the_peer_runs_its_bf16_forward_under_cpu_autocast():
    torch = pytest.importorskip("torch")
    with bench_peer.peer_precision_context(True):
        product = torch.ones(2, 3) @ torch.ones(3, 2)
    assert product.dtype == torch.bfloat16 and (torch.ones(2, 3) @ torch.ones(3, 2)).dtype == torch.float32


def test_an_unknown_child_job_is_refused():
    with pytest.raises(ValueError, match="training"):
        child_main("no_such_job", "{}")


def test_the_bench_runs_as_a_module_without_the_cli():
    code = "import sys, tlutils.bench; print('tlutils.cli' in sys.modules, 'keras' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
    done = subprocess.run([sys.executable, "-m", "tlutils.bench", "--help"], capture_output=True, text=True,
                          check=True)
    assert "--quick" in done.stdout and "--out" in done.stdout


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
    for key in ("bf16_speedup", "ssd_overhead_bf16", "fraction_of_matmul_bf16", "train_over_peer",
                "train_over_peer_bf16"):
        assert out[key] is None and out[key + "_cpu"] is None


def test_ratios_against_the_peer_in_each_precision():
    result = {"train_gflop_per_image": 2.0, "backbone_train_gflop_per_image": 1.6}
    for unit in ("s", "cpu_s"):
        result.update({f"train_images_per_{unit}": 10.0, f"backbone_train_images_per_{unit}": 12.0,
                       f"ssd_layers_train_images_per_{unit}": 11.0, f"pipeline_images_per_{unit}": 100.0,
                       f"train_images_per_{unit}_bf16": 16.0, f"backbone_train_images_per_{unit}_bf16": 20.0,
                       f"peer_torchvision_train_images_per_{unit}": 8.0,
                       f"peer_torchvision_train_images_per_{unit}_bf16": 4.0})
    machine = {"matmul_gflops": 40.0, "matmul_gflops_per_cpu_s": 20.0, "matmul_gflops_bf16": 80.0,
               "matmul_gflops_bf16_per_cpu_s": 40.0}
    out = ratios(result, machine)
    assert out["train_over_peer"] == pytest.approx(1.25) and out["train_over_peer_bf16"] == pytest.approx(4.0)
    assert out["bf16_speedup_cpu"] == pytest.approx(1.6) and out["ssd_overhead_bf16"] == pytest.approx(0.25)
