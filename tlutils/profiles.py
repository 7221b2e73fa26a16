"""Run profiles: one place that says how big everything is on CI, on a laptop CPU and on a GPU.

``ci`` runs each notebook in seconds (tests), ``cpu`` is sized for the whole course on a 2-core laptop
(aimed at 20 minutes; measured times per machine in docs/performance.md), ``gpu`` is the paper's
SSD300 (width 1.0, input 300) on a study sized for one Colab T4 session (under an hour, estimated from
counted FLOPs: :mod:`tlutils.plan`), and ``thesis`` the full study on SSD300 (three countries, three
sizes, three seeds; about a day on a T4). Notebooks take ``PROFILE`` as a papermill parameter and read
the rest from here, so a rerun with another profile changes every knob consistently.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

#: Keras dtype policies a profile may name; "auto" picks one for the machine (:func:`resolve_precision`).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")
#: NVIDIA compute capability from which a GPU has float16 tensor cores: 7.0 (Volta V100; Turing T4 is 7.5).
FP16_TENSOR_CORES = (7, 0)
#: NVIDIA compute capability from which a GPU also has bf16 tensor cores: 8.0 (Ampere A100, then Ada L4,
#: Hopper H100). Between the two, bf16 is emulated and float16 (with loss scaling) is the fast choice.
BF16_TENSOR_CORES = (8, 0)
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
        real_val_images: at most this many whole frames of real data are scored by tiled inference
            (it costs seconds per frame on a CPU; the sign world uses ``num_val_images``).
        source_epochs: epochs of the source detector trained from scratch.
        target_steps: optimizer steps of every target-country run (the same budget for every
            strategy, so the comparison is fair).
        target_sizes: numbers of target-country training images of the transfer study.
        seeds: seeds of the transfer study.
        countries: target countries of the transfer study, nearest shift first.
        learning_rate: base learning rate (Adam) for training from scratch.
        mixed_precision: Keras dtype policy for training: "float32", "mixed_bfloat16" (bf16 compute,
            float32 weights; the loss and the detector's outputs stay float32), "mixed_float16" (the
            same in float16; Keras scales the loss) or "auto" (what the machine computes fastest, see
            :func:`resolve_precision`). The cpu, gpu and thesis profiles are "auto": native bf16 trains
            faster to about the same mAP, emulated bf16 is far slower than float32 (docs/performance.md,
            docs/results.md). ``ci`` stays float32 (exact tests).
        source_precision: the dtype policy of the source stage, ``None``: ``mixed_precision``. The cpu
            profile trains its source detector in float32 on every machine, so that its run key (and
            weights) do not depend on the CPU: one shipped detector serves every reader
            (``tlutils.experiment.shipped``).
        target_epochs: evaluations of a target run: its budget is split into this many "epochs" of
            ``target_steps / target_epochs`` steps (a few-shot set is far smaller than a step count).
        scope: notebook 05's comparison when its ``SCOPE`` is ``None``
            (``tlutils.experiment.sweeps.comparison_configs``): "course" for the CPU profiles, sized for
            the course's time on 2 cores; "full" for gpu and thesis, whose budgets were sized for it.
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
    source_precision: str | None = None
    target_epochs: int = 5
    real_val_images: int = 100
    scope: str = "full"

    def replace(self, **changes) -> "Profile":
        """A copy with some fields changed (e.g. a notebook's papermill overrides)."""
        return dataclasses.replace(self, **changes)


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci", real_val_images=4, input_size=96, width=0.125, batch_size=8, num_source_images=32,
        num_val_images=16, source_epochs=2, target_steps=12, target_sizes=(10,), seeds=(0,),
        countries=("germany",), target_epochs=3, scope="course",
    ),
    # cpu: the belgium source run (12 passes over 2400 scenes, 3600 steps of 8) reaches val mAP@0.5 0.80
    # (10 passes stopped short of it); its time per machine is in docs/performance.md.
    "cpu": Profile(
        name="cpu", real_val_images=40, input_size=160, width=0.25, batch_size=8, num_source_images=2400,
        num_val_images=200, source_epochs=12, target_steps=200, target_sizes=(10, 50),
        seeds=(0,), countries=("germany", "usa"), target_epochs=4, mixed_precision="auto",
        source_precision="float32", scope="course",
    ),
    # gpu: SSD300 on the cpu profile's study (Germany and the USA, 10 and 50 images, one seed), sized so
    # that the whole course fits one Colab T4 session: about 42 min estimated from counted FLOPs at an
    # assumed 15 % of the T4's float16 peak (tlutils.plan.T4; table in docs/performance.md).
    "gpu": Profile(
        name="gpu", input_size=300, width=1.0, batch_size=16, num_source_images=1600,
        num_val_images=100, source_epochs=10, target_steps=150, target_sizes=(10, 50),
        seeds=(0,), countries=("germany", "usa"), target_epochs=3, mixed_precision="auto",
    ),
    # thesis: the full study (three countries, three sizes, three seeds; what `gpu` was before it was
    # sized for Colab), about a day on a T4 by the same estimate (docs/performance.md).
    "thesis": Profile(
        name="thesis", input_size=300, width=1.0, batch_size=32, num_source_images=5000,
        num_val_images=500, source_epochs=40, target_steps=1500, target_sizes=(10, 50, 200),
        seeds=(0, 1, 2), countries=("germany", "sweden", "usa"), target_epochs=10, mixed_precision="auto",
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


@dataclass(frozen=True)
class Accelerator:
    """The accelerator the Keras backend trains on.

    Attributes:
        platform: ``"gpu"`` or ``"tpu"`` (as JAX names them).
        name: the device's name, e.g. ``"Tesla T4"``.
        compute_capability: an NVIDIA GPU's compute capability, e.g. ``(7, 5)``; ``None`` elsewhere.
    """

    platform: str
    name: str
    compute_capability: tuple[int, int] | None = None


def _capability(value: object) -> tuple[int, int] | None:
    """``(major, minor)`` of a compute capability given as ``"7.5"``, ``(7, 5)`` or ``None``."""
    if value is None:
        return None
    parts = str(value).split(".") if isinstance(value, str) else list(value)
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except (ValueError, IndexError):
        return None


def accelerator() -> Accelerator | None:
    """The first GPU or TPU the Keras backend computes on, or ``None`` where it computes on the CPU.

    Asks the backend itself (JAX's devices, TensorFlow's GPUs, torch's CUDA device), so a CPU-only build
    on a machine with a GPU counts as a CPU. Imports Keras (and its backend) only when called.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        devices = [device for device in jax.devices() if device.platform != "cpu"]
        if not devices:
            return None
        device = devices[0]
        return Accelerator(device.platform, str(getattr(device, "device_kind", device.platform)),
                           _capability(getattr(device, "compute_capability", None)))
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return None
        details_of = getattr(getattr(tf.config, "experimental", None), "get_device_details", None)
        details = details_of(gpus[0]) if details_of else {}
        return Accelerator("gpu", str(details.get("device_name", "GPU")),
                           _capability(details.get("compute_capability")))
    if backend == "torch":
        import torch

        if not torch.cuda.is_available():
            return None
        return Accelerator("gpu", torch.cuda.get_device_name(0), _capability(torch.cuda.get_device_capability(0)))
    return None


def has_accelerator() -> bool:
    """Whether the Keras backend computes on a GPU (or another accelerator) rather than the CPU.

    Imports Keras (and its backend) only when called.
    """
    return accelerator() is not None


def accelerator_precision(device: Accelerator) -> str:
    """The fastest dtype policy of an accelerator: ``mixed_bfloat16`` on a TPU and on NVIDIA GPUs of
    compute capability 8.0 and later (:data:`BF16_TENSOR_CORES`), ``mixed_float16`` on 7.x (float16 tensor
    cores without bf16: V100, T4), ``float32`` on older GPUs and on GPUs of unknown kind."""
    if device.platform == "tpu":
        return "mixed_bfloat16"
    capability = device.compute_capability
    if capability is None:
        return "float32"
    if capability >= BF16_TENSOR_CORES:
        return "mixed_bfloat16"
    return "mixed_float16" if capability >= FP16_TENSOR_CORES else "float32"


def bf16_is_native(cpuinfo: str | os.PathLike = CPUINFO) -> bool:
    """Whether bf16 arithmetic runs on real units here: an accelerator whose fastest policy is
    bf16 (:func:`accelerator_precision`), or, computing on the CPU, a CPU with bf16 units
    (:func:`cpu_has_bfloat16`); elsewhere bf16 is emulated, and slower than float32."""
    device = accelerator()
    if device is not None:
        return accelerator_precision(device) == "mixed_bfloat16"
    return cpu_has_bfloat16(cpuinfo)


#: ``resolve_precision``'s default ``device``: ask the backend (:func:`accelerator`).
DETECT = "detect"
#: Environment variable that decides "auto" instead of the machine, e.g. ``TLUTILS_PRECISION=float32``
#: to time the course as a CPU without bf16 units would train it (the run keys then say float32).
PRECISION_VARIABLE = "TLUTILS_PRECISION"


def resolve_precision(policy: str, cpuinfo: str | os.PathLike = CPUINFO,
                      device: Accelerator | None | str = DETECT) -> str:
    """The Keras dtype policy to train with: ``policy``, or for "auto" the machine's fastest one.

    "auto": on an accelerator (``device``; by default the backend's, :func:`accelerator`) its
    :func:`accelerator_precision` (``mixed_float16`` on a T4 or V100, ``mixed_bfloat16`` from Ampere on);
    on the CPU ``mixed_bfloat16`` where it has bf16 units (:func:`cpu_has_bfloat16`), else ``float32``.
    The environment variable :data:`PRECISION_VARIABLE`, when set, decides "auto" instead.

    Raises:
        ValueError: ``policy`` (or the environment variable) is not one of :data:`PRECISIONS`.
    """
    if policy not in PRECISIONS:
        raise ValueError(f"unknown mixed_precision {policy!r}; choose one of {PRECISIONS}")
    if policy != "auto":
        return policy
    forced = os.environ.get(PRECISION_VARIABLE)
    if forced:
        if forced not in PRECISIONS or forced == "auto":
            raise ValueError(f"{PRECISION_VARIABLE}={forced!r}: choose one of {PRECISIONS[:-1]}")
        return forced
    if device == DETECT:
        device = accelerator()
    if device is not None:
        return accelerator_precision(device)
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
