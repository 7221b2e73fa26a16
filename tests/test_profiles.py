"""Profiles: the dtype policy a profile trains with follows the CPU's bf16 units ("auto")."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from tlutils import experiment, profiles
from tlutils.experiment import RunConfig, resolve
from tlutils.profiles import (Accelerator, accelerator, bf16_is_native, cpu_has_bfloat16, get_profile,
                              has_accelerator, resolve_precision)

pytestmark = pytest.mark.core

AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse2 avx fma avx2 sha_ni\n\nprocessor\t: 1\nflags\t\t: fpu avx avx2\n"
AVX512_BF16 = "processor\t: 0\nflags\t\t: fpu avx avx2 avx512f avx512_bf16 avx512_vnni\n"
AMX = "processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile amx_int8\n"


@pytest.fixture
def cpuinfo(tmp_path):
    def write(text: str):
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        return path

    return write


@pytest.mark.parametrize("text, expected", [(AVX2_ONLY, False), (AVX512_BF16, True), (AMX, True),
                                            ("model name\t: avx512_bf16 in a name is not a flag\n", False)])
def test_bf16_units_are_read_from_the_cpu_flags(cpuinfo, text, expected):
    assert cpu_has_bfloat16(cpuinfo(text)) is expected


def test_an_unreadable_cpuinfo_means_no_bf16(tmp_path):
    assert cpu_has_bfloat16(tmp_path / "missing") is False


def test_auto_trains_in_bf16_only_where_the_cpu_has_bf16_units(cpuinfo):
    assert resolve_precision("auto", cpuinfo(AVX512_BF16)) == "mixed_bfloat16"
    assert resolve_precision("auto", cpuinfo(AVX2_ONLY)) == "float32"
    for fixed in ("float32", "mixed_bfloat16"):  # a named policy is kept whatever the CPU
        assert resolve_precision(fixed, cpuinfo(AVX2_ONLY)) == fixed
    with pytest.raises(ValueError, match="mixed_precision"):
        resolve_precision("float16")


def test_the_cpu_profile_resolves_auto_for_the_machine_and_keys_runs_by_it(monkeypatch):
    assert get_profile("cpu").mixed_precision == "auto"
    config = RunConfig(target_data="germany", strategy="finetune", num_target_images=10, profile="cpu")
    keys = {}
    for has_bf16, policy in ((True, "mixed_bfloat16"), (False, "float32")):
        monkeypatch.setattr(profiles, "cpu_has_bfloat16", lambda *args, has_bf16=has_bf16: has_bf16)
        assert resolve(config).mixed_precision == policy
        keys[policy] = experiment.run_key(config)
    assert keys["mixed_bfloat16"] != keys["float32"], "results of the two policies must not share a key"


def test_the_cpu_source_detector_trains_in_float32_on_every_cpu(monkeypatch):
    """One source run (one key, one shipped detector) for every reader; the target runs it starts
    still key on the machine's precision."""
    source = RunConfig(stage="source", source_data="belgium", profile="cpu")
    target = RunConfig(target_data="germany", strategy="finetune", num_target_images=10, profile="cpu")
    keys = set()
    for has_bf16 in (True, False):
        monkeypatch.setattr(profiles, "cpu_has_bfloat16", lambda *args, has_bf16=has_bf16: has_bf16)
        assert resolve(source).mixed_precision == "float32"
        keys.add((experiment.run_key(source), resolve(target).source_run_key))
    assert len(keys) == 1
    assert get_profile("gpu").source_precision is None  # elsewhere the source follows the profile


def test_the_environment_variable_decides_auto_and_keys_by_it(monkeypatch, cpuinfo):
    monkeypatch.setenv(profiles.PRECISION_VARIABLE, "float32")
    assert resolve_precision("auto", cpuinfo(AVX512_BF16)) == "float32"
    assert resolve_precision("mixed_bfloat16", cpuinfo(AVX2_ONLY)) == "mixed_bfloat16"  # a named policy stays
    monkeypatch.setattr(profiles, "cpu_has_bfloat16", lambda *args: True)
    config = RunConfig(target_data="germany", strategy="finetune", num_target_images=10, profile="cpu")
    assert resolve(config).mixed_precision == "float32"
    for wrong in ("auto", "bf16"):
        monkeypatch.setenv(profiles.PRECISION_VARIABLE, wrong)
        with pytest.raises(ValueError, match=profiles.PRECISION_VARIABLE):
            resolve_precision("auto", cpuinfo(AVX2_ONLY))


T4 = Accelerator("gpu", "Tesla T4", (7, 5))
V100 = Accelerator("gpu", "Tesla V100-SXM2-16GB", (7, 0))
A100 = Accelerator("gpu", "NVIDIA A100-SXM4-40GB", (8, 0))
H100 = Accelerator("gpu", "NVIDIA H100 80GB HBM3", (9, 0))
P100 = Accelerator("gpu", "Tesla P100-PCIE-16GB", (6, 0))
TPU = Accelerator("tpu", "TPU v4")


@pytest.mark.parametrize("accelerator, text, expected", [(None, AVX2_ONLY, False), (None, AVX512_BF16, True),
                                                         (A100, AVX2_ONLY, True), (None, AMX, True),
                                                         (T4, AVX512_BF16, False), (TPU, AVX2_ONLY, True)])
def test_bf16_is_native_on_a_bf16_accelerator_or_cpu_bf16_units(monkeypatch, cpuinfo, accelerator, text, expected):
    monkeypatch.setattr(profiles, "accelerator", lambda: accelerator)
    assert bf16_is_native(cpuinfo(text)) is expected


@pytest.mark.parametrize("device, expected", [(T4, "mixed_float16"), (V100, "mixed_float16"),
                                              (A100, "mixed_bfloat16"), (H100, "mixed_bfloat16"),
                                              (P100, "float32"), (TPU, "mixed_bfloat16"),
                                              (Accelerator("gpu", "unknown"), "float32")])
def test_auto_on_an_accelerator_uses_its_tensor_cores(cpuinfo, device, expected):
    # the CPU's bf16 units do not matter once training runs on an accelerator
    for text in (AVX2_ONLY, AVX512_BF16):
        assert resolve_precision("auto", cpuinfo(text), device=device) == expected
    assert resolve_precision("float32", cpuinfo(AVX2_ONLY), device=T4) == "float32"


def test_auto_asks_the_backend_for_its_accelerator(monkeypatch, cpuinfo):
    for device, expected in ((T4, "mixed_float16"), (None, "float32")):
        monkeypatch.setattr(profiles, "accelerator", lambda device=device: device)
        assert resolve_precision("auto", cpuinfo(AVX2_ONLY)) == expected


def test_the_gpu_profiles_resolve_auto_per_device_and_key_runs_by_it(monkeypatch):
    config = RunConfig(profile="gpu", num_target_images=10)
    keys = {}
    for device in (T4, A100):
        monkeypatch.setattr(profiles, "accelerator", lambda device=device: device)
        keys[resolve(config).mixed_precision] = experiment.run_key(config)
    assert sorted(keys) == ["mixed_bfloat16", "mixed_float16"] and len(set(keys.values())) == 2
    assert get_profile("thesis").mixed_precision == get_profile("gpu").mixed_precision == "auto"


def test_thesis_is_the_full_study_and_gpu_a_smaller_one_on_the_same_model():
    gpu, thesis = get_profile("gpu"), get_profile("thesis")
    assert (gpu.width, gpu.input_size) == (thesis.width, thesis.input_size) == (1.0, 300)
    assert (thesis.countries, thesis.target_sizes, thesis.seeds) == (("germany", "sweden", "usa"), (10, 50, 200),
                                                                      (0, 1, 2))
    assert (thesis.target_steps, thesis.batch_size, thesis.source_epochs) == (1500, 32, 40)
    assert len(gpu.countries) * len(gpu.target_sizes) * len(gpu.seeds) < len(thesis.countries) * 9


def fake_keras(monkeypatch, backend: str) -> None:
    """``import keras`` gives a stand-in whose ``keras.backend.backend()`` is ``backend``."""
    keras = types.ModuleType("keras")
    keras.backend = types.SimpleNamespace(backend=lambda: backend)
    monkeypatch.setitem(sys.modules, "keras", keras)


@pytest.mark.parametrize("platforms, expected", [(["cpu"], False), (["cpu", "gpu"], True), (["tpu"], True)])
def test_jax_has_an_accelerator_when_a_device_is_not_the_cpu(monkeypatch, platforms, expected):
    fake_keras(monkeypatch, "jax")
    jax = types.ModuleType("jax")
    jax.devices = lambda: [types.SimpleNamespace(platform=platform) for platform in platforms]
    monkeypatch.setitem(sys.modules, "jax", jax)
    assert has_accelerator() is expected


def test_jax_names_a_cuda_device_and_its_compute_capability(monkeypatch):
    fake_keras(monkeypatch, "jax")
    jax = types.ModuleType("jax")
    gpu = types.SimpleNamespace(platform="gpu", device_kind="Tesla T4", compute_capability="7.5")
    jax.devices = lambda: [gpu]
    monkeypatch.setitem(sys.modules, "jax", jax)
    assert accelerator() == T4
    assert resolve_precision("auto") == "mixed_float16"


def test_tensorflow_reads_the_compute_capability_from_the_device_details(monkeypatch):
    fake_keras(monkeypatch, "tensorflow")
    tensorflow = types.ModuleType("tensorflow")
    details = {"device_name": "NVIDIA A100-SXM4-40GB", "compute_capability": (8, 0)}
    tensorflow.config = types.SimpleNamespace(
        list_physical_devices=lambda kind: ["/physical_device:GPU:0"] if kind == "GPU" else [],
        experimental=types.SimpleNamespace(get_device_details=lambda device: details))
    monkeypatch.setitem(sys.modules, "tensorflow", tensorflow)
    assert accelerator() == A100
    assert resolve_precision("auto") == "mixed_bfloat16"


def test_torch_reads_the_cuda_capability(monkeypatch):
    fake_keras(monkeypatch, "torch")
    torch = types.ModuleType("torch")
    torch.cuda = types.SimpleNamespace(is_available=lambda: True, get_device_name=lambda index: "Tesla V100-SXM2-16GB",
                                       get_device_capability=lambda index: (7, 0))
    monkeypatch.setitem(sys.modules, "torch", torch)
    assert accelerator() == V100


@pytest.mark.parametrize("gpus, expected", [([], False), (["/physical_device:GPU:0"], True)])
def test_tensorflow_has_an_accelerator_when_it_lists_a_gpu(monkeypatch, gpus, expected):
    fake_keras(monkeypatch, "tensorflow")
    tensorflow = types.ModuleType("tensorflow")
    tensorflow.config = types.SimpleNamespace(list_physical_devices=lambda kind: gpus if kind == "GPU" else ["cpu"])
    monkeypatch.setitem(sys.modules, "tensorflow", tensorflow)
    assert has_accelerator() is expected


def test_an_unknown_backend_has_no_accelerator(monkeypatch):
    fake_keras(monkeypatch, "numpy")
    assert has_accelerator() is False


def test_importing_profiles_imports_no_keras():
    code = "import sys, tlutils.profiles; print(sorted({'keras', 'tensorflow', 'jax', 'torch'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_mixed_float16_trains_the_ssd_with_keras_loss_scaling():
    """What "auto" picks on a T4: Keras wraps the optimizer in a LossScaleOptimizer, whose first steps
    overflow in float16 (the untrained SSD's loss is hundreds) and are skipped while the scale halves;
    then the detector trains, with float32 outputs."""
    import keras
    import numpy as np

    from tlutils.anchors import generate_anchors
    from tlutils.bench.inputs import training_batch
    from tlutils.model import anchor_config_for, build_ssd_vgg16
    from tlutils.training import SSDTrainer

    if keras.backend.backend() != "tensorflow":  # the same Keras optimizer; XLA compiles float16 for 50 s on a CPU
        pytest.skip("run on the TensorFlow backend only")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        detector = build_ssd_vgg16(3, input_size=96, width=0.125)
        images, targets, _ = training_batch(generate_anchors(anchor_config_for(detector)), 2, 96, 3)
        trainer = SSDTrainer(detector)
        trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
        before = [np.array(weight) for weight in detector.trainable_weights]
        losses = [float(trainer.train_on_batch(images, targets, return_dict=True)["loss"]) for _ in range(12)]
    finally:
        keras.config.set_dtype_policy(previous)
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    assert all(str(output.dtype) == "float32" for output in detector.outputs)
    assert float(trainer.optimizer.dynamic_scale) < 2**15, "the scale never came down: every step was skipped"
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    assert any(not np.array_equal(np.array(weight), start) for weight, start in zip(detector.trainable_weights, before))
