"""What the bench reports: the machine, the ratios the issue's targets are about, and the table.

Every ratio comes from wall-clock rates (``ratios.<name>``) and from rates per CPU second
(``ratios.<name>_cpu``, which leave out waiting for a core); a ratio whose figures were not measured
(bf16 skipped, no peer) is ``None``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np


def machine_info() -> dict[str, Any]:
    """CPU model, cores, matrix-unit flags, load average, library versions."""
    import keras

    flags: set[str] = set()
    model_name = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    return {
        "git": _git_version(),
        "cpu": model_name,
        "cores": os.cpu_count(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "load_average_start": [round(value, 2) for value in os.getloadavg()],
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "numpy": np.__version__,
    }


def _git_version() -> str | None:
    """``git describe --always --dirty`` of the checkout this module runs from (None outside git)."""
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                              timeout=10, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def ratios(result: dict[str, Any], machine: dict[str, Any]) -> dict[str, float | None]:
    """The ratios of one configuration's ``result`` (:data:`TARGETS`, ``flop_overhead``), each also as ``_cpu``."""
    out: dict[str, float | None] = {
        "flop_overhead": result["train_gflop_per_image"] / result["backbone_train_gflop_per_image"] - 1,
    }
    for unit, tag in (("s", ""), ("cpu_s", "_cpu")):
        def rate(name: str, suffix: str = "") -> float | None:
            return result.get(f"{name}_images_per_{unit}{suffix}")

        train, train_bf16 = rate("train"), rate("train", "_bf16")
        peer, peer_bf16 = rate("peer_torchvision_train"), rate("peer_torchvision_train", "_bf16")
        matmul = machine[f"matmul_gflops{'' if unit == 's' else '_per_cpu_s'}"]
        matmul_bf16 = machine[f"matmul_gflops_bf16{'' if unit == 's' else '_per_cpu_s'}"]
        out[f"pipeline_over_train{tag}"] = rate("pipeline") / train
        out[f"ssd_overhead{tag}"] = rate("backbone_train") / train - 1
        out[f"layers_overhead{tag}"] = rate("backbone_train") / rate("ssd_layers_train") - 1
        out[f"loss_overhead{tag}"] = rate("ssd_layers_train") / train - 1
        out[f"train_over_peer{tag}"] = train / peer if peer else None
        out[f"train_over_peer_bf16{tag}"] = train_bf16 / peer_bf16 if train_bf16 and peer_bf16 else None
        out[f"fraction_of_matmul{tag}"] = result["train_gflop_per_image"] * train / matmul
        bf16 = train_bf16 is not None  # not timed where bf16 would be emulated (bf16_skip_note)
        out[f"ssd_overhead_bf16{tag}"] = rate("backbone_train", "_bf16") / train_bf16 - 1 if bf16 else None
        out[f"bf16_speedup{tag}"] = train_bf16 / train if bf16 else None
        out[f"fraction_of_matmul_bf16{tag}"] = (result["train_gflop_per_image"] * train_bf16 / matmul_bf16
                                                if bf16 else None)
    return out


#: (ratio key, comparison, threshold, what the issue asks); ``None`` threshold: reported only.
TARGETS = (
    ("pipeline_over_train", ">=", 2.0, "pipeline / train, target >= 2"),
    ("ssd_overhead", "<=", 0.15, "SSD over backbone - 1, target <= 0.15"),
    ("layers_overhead", None, None, "  of which extras + heads"),
    ("loss_overhead", None, None, "  of which MultiBox loss"),
    ("train_over_peer", ">=", 1.0, "train / torchvision, target >= 1"),
    ("train_over_peer_bf16", None, None, "bf16 train / torchvision bf16 autocast"),
    ("bf16_speedup", None, None, "bf16 / float32 train"),
    ("ssd_overhead_bf16", None, None, "SSD over backbone - 1, bf16"),
    ("fraction_of_matmul", None, None, "train GFLOP/s / matmul GFLOP/s"),
    ("fraction_of_matmul_bf16", None, None, "same, bf16 vs bf16 matmul"),
)

#: (key, key of the per-CPU-second figure or None, label, format) of the table's rows.
TABLE_ROWS = (
    ("train_images_per_s", "train_images_per_cpu_s", "SSD train images/s, float32", "{:.2f}"),
    ("train_images_per_s_bf16", "train_images_per_cpu_s_bf16", "SSD train images/s, mixed_bfloat16", "{:.2f}"),
    ("backbone_train_images_per_s", "backbone_train_images_per_cpu_s", "backbone (to fc7) train images/s", "{:.2f}"),
    ("backbone_train_images_per_s_bf16", "backbone_train_images_per_cpu_s_bf16", "backbone train images/s, bf16",
     "{:.2f}"),
    ("ssd_layers_train_images_per_s", "ssd_layers_train_images_per_cpu_s", "SSD layers, trivial loss, images/s",
     "{:.2f}"),
    ("peer_torchvision_train_images_per_s", "peer_torchvision_train_images_per_cpu_s",
     "torchvision ssd300_vgg16 train images/s", "{:.2f}"),
    ("peer_torchvision_train_images_per_s_bf16", "peer_torchvision_train_images_per_cpu_s_bf16",
     "torchvision train images/s, bf16 autocast", "{:.2f}"),
    ("pipeline_images_per_s", "pipeline_images_per_cpu_s", "pipeline images/s (augment + encode)", "{:.0f}"),
    ("train_gflops", "train_gflops_per_cpu_s", "train GFLOP/s, float32", "{:.1f}"),
    ("train_gflops_bf16", "train_gflops_per_cpu_s_bf16", "train GFLOP/s, bf16", "{:.1f}"),
    ("train_gflop_per_image", None, "train GFLOP/image (3 x forward)", "{:.2f}"),
    ("backbone_train_gflop_per_image", None, "backbone train GFLOP/image", "{:.2f}"),
    ("peer_train_gflop_per_image", None, "torchvision train GFLOP/image (torch)", "{:.2f}"),
    ("encode_ms_per_image", "encode_cpu_ms_per_image", "encode ms/image (10 boxes); CPU ms", "{:.2f}"),
    ("decode_ms_per_batch32", "decode_cpu_ms_per_batch32", "decode ms/batch of 32; CPU ms", "{:.1f}"),
    ("num_anchors", None, "anchors", "{}"),
    ("peak_memory_mb", None, "peak memory MiB (float32 training)", "{:.0f}"),
    ("train_cores_busy", None, "CPU cores busy in float32 train steps", "{:.2f}"),
    ("jit_compile", None, "jit_compile (Keras default)", "{}"),
)

_LABEL_WIDTH = 40
_COLUMN_WIDTH = 11


def _cell(value: Any, template: str) -> str:
    return "" if value is None else template.format(value)


def _row(label: str, cells: list[str]) -> str:
    return f"{label:{_LABEL_WIDTH}}" + "".join(f"{cell:>{_COLUMN_WIDTH}}" for cell in cells)


def format_table(report: dict[str, Any]) -> str:
    """The benchmark as a plain-text table: per configuration a wall-clock and a per-CPU-second column."""
    configs = [report[name] for name in report["configurations"]]
    lines = [
        _row("", [text for c in configs for text in (c["name"], "")]),
        _row("", [text for c in configs for text in (f"w{c['width']:g}@{c['input_size']}", f"batch {c['batch_size']}")]),
        _row("", ["wall", "per CPU s"] * len(configs)),
    ]
    for key, cpu_key, label, template in TABLE_ROWS:
        lines.append(_row(label, [_cell(c.get(k) if k else None, template) for c in configs for k in (key, cpu_key)]))
    lines.append("")
    for key, comparison, threshold, meaning in TARGETS:
        cells = []
        for config in configs:
            for tag in ("", "_cpu"):
                value = config["ratios"][key + tag]
                verdict = ""
                if value is not None and threshold is not None:
                    passed = value >= threshold if comparison == ">=" else value <= threshold
                    verdict = " ok" if passed else " MISS"
                cells.append(_cell(value, "{:.2f}") + verdict)
        lines.append(_row(meaning, cells))
    flop_overheads = [_cell(c["ratios"]["flop_overhead"], "{:.2f}") for c in configs]
    lines.append(_row("FLOPs of SSD over backbone - 1", [text for cell in flop_overheads for text in (cell, "")]))
    machine = report["machine"]
    lines += [
        "",
        f"machine: {machine['cpu']}, {machine['cores']} cores, avx512_bf16 {machine['avx512_bf16']}, amx_bf16 "
        f"{machine['amx_bf16']}; matmul {machine['matmul_size']}^2: {machine['matmul_gflops']:.0f} GFLOP/s float32 "
        f"({machine['matmul_gflops_per_cpu_s']:.0f} per CPU s), {machine['matmul_gflops_bf16']:.0f} bf16 "
        f"({machine['matmul_gflops_bf16_per_cpu_s']:.0f} per CPU s)",
        f"load average at start {machine['load_average_start']}, at end {machine['load_average_end']}; "
        f"{machine['backend']} backend, keras {machine['keras']}; code {machine['git']}",
    ]
    lines += [f"peer ({c['name']}): {c['peer_note']}" for c in configs if c.get("peer_note")]
    lines += [f"bf16 ({c['name']}): {c['bf16_note']}" for c in configs if c.get("bf16_note")]
    return "\n".join(lines)
