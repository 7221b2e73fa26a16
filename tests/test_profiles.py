"""Profiles: the dtype policy a profile trains with follows the CPU's bf16 units ("auto")."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from tlutils import experiment, profiles
from tlutils.experiment import RunConfig, resolve
from tlutils.profiles import bf16_is_native, cpu_has_bfloat16, get_profile, has_accelerator, resolve_precision

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
    config = RunConfig(stage="source", country="belgium", profile="cpu")
    keys = {}
    for has_bf16, policy in ((True, "mixed_bfloat16"), (False, "float32")):
        monkeypatch.setattr(profiles, "cpu_has_bfloat16", lambda *args, has_bf16=has_bf16: has_bf16)
        assert resolve(config).mixed_precision == policy
        keys[policy] = experiment.run_key(config)
    assert keys["mixed_bfloat16"] != keys["float32"], "results of the two policies must not share a key"


@pytest.mark.parametrize("accelerator, text, expected", [(False, AVX2_ONLY, False), (False, AVX512_BF16, True),
                                                         (True, AVX2_ONLY, True), (False, AMX, True)])
def test_bf16_is_native_on_an_accelerator_or_cpu_bf16_units(monkeypatch, cpuinfo, accelerator, text, expected):
    monkeypatch.setattr(profiles, "has_accelerator", lambda: accelerator)
    assert bf16_is_native(cpuinfo(text)) is expected


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
