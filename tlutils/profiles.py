"""Run profiles: one place that says how big everything is on CI, on a laptop CPU and on a GPU.

``ci`` runs each notebook in seconds (tests), ``cpu`` is sized for the whole course on a 2-core laptop
(aimed at 20 minutes; measured times per machine in docs/performance.md), ``gpu`` is the paper's
SSD300 (width 1.0, input 300). Notebooks take ``PROFILE`` as a
papermill parameter and read the rest from here, so a rerun with another profile changes every knob
consistently.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

#: Keras dtype policies a profile may name; "auto" picks one for the machine (:func:`resolve_precision`).
PRECISIONS = ("float32", "mixed_bfloat16", "auto")
#: Linux CPU flags of bf16 arithmetic units: AVX-512 BF16 (AMD Zen 4, Intel Cooper Lake and later) and
#: AMX (Intel Sapphire Rapids and later). Without them oneDNN emulates bf16 convolutions, which then
#: train several times *slower* than float32 (measured in docs/performance.md).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
#: Where Linux lists the CPU's flags.
CPUINFO = "/proc/cpuinfo"


@dataclass(frozen=True)
class Profile:
    """Sizes and budgets of one run profile.

    Attributes:
        name: "ci", "cpu" or "gpu".
        input_size: square model input in pixels (the sign world is rendered at this size).
        width: channel multiplier of SSD-VGG16 (1.0 = the paper's SSD300).
        batch_size: training batch size.
        num_source_images: training images of the source country (belgium).
        num_val_images: validation images per country.
        source_epochs: epochs of the source detector trained from scratch.
        target_steps: optimizer steps of every target-country run (the same budget for every
            strategy, so the comparison is fair).
        target_sizes: numbers of target-country training images of the transfer study.
        seeds: seeds of the transfer study.
        countries: target countries of the transfer study, nearest shift first.
        learning_rate: base learning rate (Adam) for training from scratch.
        mixed_precision: Keras dtype policy for training: "float32", "mixed_bfloat16" (bf16 compute,
            float32 weights; the loss and the detector's outputs stay float32) or "auto" (bf16 where
            the CPU has bf16 units, see :func:`resolve_precision`). The cpu profile is "auto": native
            bf16 trains faster to about the same mAP, emulated bf16 is far slower than float32
            (docs/performance.md, docs/results.md). ``ci`` stays float32 (exact tests), ``gpu`` too
            until bf16 is measured on a GPU (pre-Ampere GPUs such as a T4 lack bf16).
        target_epochs: evaluations of a target run: its budget is split into this many "epochs" of
            ``target_steps / target_epochs`` steps (a few-shot set is far smaller than a step count).
    """

    name: str
    input_size: int
    width: float
    batch_size: int
    num_source_images: int
    num_val_images: int
    source_epochs: int
    target_steps: int
    target_sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    countries: tuple[str, ...]
    learning_rate: float = 1e-3
    mixed_precision: str = "float32"
    target_epochs: int = 5

    def replace(self, **changes) -> "Profile":
        """A copy with some fields changed (e.g. a notebook's papermill overrides)."""
        return dataclasses.replace(self, **changes)


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci", input_size=96, width=0.125, batch_size=8, num_source_images=32,
        num_val_images=16, source_epochs=2, target_steps=12, target_sizes=(10,), seeds=(0,),
        countries=("germany",), target_epochs=3,
    ),
    # cpu: the belgium source run (12 passes over 2400 scenes, 3600 steps of 8) reaches val mAP@0.5 0.80
    # (10 passes stopped short of it); its time per machine is in docs/performance.md.
    "cpu": Profile(
        name="cpu", input_size=160, width=0.25, batch_size=8, num_source_images=2400,
        num_val_images=200, source_epochs=12, target_steps=200, target_sizes=(10, 50),
        seeds=(0,), countries=("germany", "usa"), target_epochs=4, mixed_precision="auto",
    ),
    "gpu": Profile(
        name="gpu", input_size=300, width=1.0, batch_size=32, num_source_images=5000,
        num_val_images=500, source_epochs=40, target_steps=1500, target_sizes=(10, 50, 200),
        seeds=(0, 1, 2), countries=("germany", "sweden", "usa"), target_epochs=10,
        # float32: bf16 has been measured on CPUs only, and Colab's T4 has no bf16 units
    ),
}


def cpu_has_bfloat16(cpuinfo: str | os.PathLike = CPUINFO) -> bool:
    """Whether the CPU has bf16 arithmetic units (any of :data:`BF16_CPU_FLAGS` among its Linux flags).

    Reads up to the first ``flags`` line only (every core lists the same, and ``resolve`` asks for
    every run key). False where ``cpuinfo`` cannot be read (macOS, Windows): float32 is the safe choice there.
    """
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            flags = next((line.split() for line in handle if line.startswith("flags")), [])
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def has_accelerator() -> bool:
    """Whether the Keras backend computes on a GPU (or another accelerator) rather than the CPU.

    Imports Keras (and its backend) only when called.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return any(device.platform != "cpu" for device in jax.devices())
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "torch":
        import torch

        return bool(torch.cuda.is_available())
    return False


def bf16_is_native(cpuinfo: str | os.PathLike = CPUINFO) -> bool:
    """Whether bf16 arithmetic runs on real units here: an accelerator (:func:`has_accelerator`), or a
    CPU with bf16 units (:func:`cpu_has_bfloat16`); elsewhere bf16 is emulated, and slower than float32."""
    return has_accelerator() or cpu_has_bfloat16(cpuinfo)


def resolve_precision(policy: str, cpuinfo: str | os.PathLike = CPUINFO) -> str:
    """The Keras dtype policy to train with: ``policy``, or for "auto" ``mixed_bfloat16`` where the CPU
    has bf16 units (:func:`cpu_has_bfloat16`) and ``float32`` elsewhere.

    Raises:
        ValueError: ``policy`` is not one of :data:`PRECISIONS`.
    """
    if policy not in PRECISIONS:
        raise ValueError(f"unknown mixed_precision {policy!r}; choose one of {PRECISIONS}")
    if policy != "auto":
        return policy
    return "mixed_bfloat16" if cpu_has_bfloat16(cpuinfo) else "float32"


def get_profile(name: str, **overrides) -> Profile:
    """The profile called ``name`` with optional field overrides.

    Raises:
        ValueError: unknown profile name or unknown field.
    """
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    fields = {field.name for field in dataclasses.fields(Profile)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown profile field(s) {unknown}; valid fields: {sorted(fields)}")
    return PROFILES[name].replace(**overrides)
