"""``tlutils bench``: how fast SSD-VGG16 trains here, measured against the hardware and a peer.

:func:`run_bench` (``tlutils bench``, ``python -m tlutils.bench``, ``make bench``) measures each
configuration of :func:`configurations`, prints a table and writes ``bench.json``: ``machine`` plus one
object per configuration with

- ``train_images_per_s``: a full SSD training step (:class:`tlutils.training.SSDTrainer`, MultiBox loss,
  Adam) on one fixed in-memory batch, the **median** step after the warm-up steps; ``jit_compile`` is
  Keras' default, recorded. ``_bf16``: the same under ``mixed_bfloat16`` (outputs and loss stay float32:
  ``outputs_float32_bf16``), absent where bf16 would be emulated and skipped (``bf16_note``);
- ``backbone_train_images_per_s``, ``ssd_layers_train_images_per_s``: the VGG16 base (to ``fc7``) and
  the SSD's layers, each with a trivial loss; ``ratios.ssd_overhead`` = backbone / SSD - 1;
- ``peer_torchvision_train_images_per_s`` (``_bf16``: under bf16 autocast, skipped like ours):
  torchvision's ``ssd300_vgg16`` on the same batch, SSD300 only and with torch installed, else ``None``
  and a ``peer_note``;
- ``pipeline_images_per_s``: augmentation + ``encode`` in one process; ``encode_ms_per_image`` (10
  boxes), ``decode_ms_per_batch32``;
- ``train_gflops``: counted training FLOPs (:mod:`tlutils.bench.flops`) x images/s, against
  ``machine.matmul_gflops`` in ``ratios.fraction_of_matmul``;
- ``peak_memory_mb``: peak resident memory of the training child after its first float32 SSD step.

Every rate also comes per CPU second (``*_per_cpu_s``) and every ratio as ``_cpu``. Modules:
:mod:`~tlutils.bench.config` what is measured, :mod:`~tlutils.bench.timing` how,
:mod:`~tlutils.bench.inputs` on what, :mod:`~tlutils.bench.workloads` pipeline, box coding and matmul,
:mod:`~tlutils.bench.flops`, :mod:`~tlutils.bench.training` the child's steps, :mod:`~tlutils.bench.peer`,
:mod:`~tlutils.bench.child` the subprocess, :mod:`~tlutils.bench.report` ratios and table. Whether bf16
is native is :func:`tlutils.profiles.bf16_is_native`'s call.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tlutils.bench.child import child_main, run_child
from tlutils.bench.config import BenchConfig, bf16_skip_note, configurations
from tlutils.bench.flops import forward_flops, layer_macs, training_flops
from tlutils.bench.inputs import detector_like_outputs, random_ground_truth, sign_world, training_batch
from tlutils.bench.peer import import_torchvision, keep_triton_out, peer_missing, torchvision_peer
from tlutils.bench.report import TABLE_ROWS, TARGETS, format_table, machine_info, ratios
from tlutils.bench.timing import images_per_second, interleaved_steps, median_seconds, peak_memory_mb
from tlutils.bench.training import backbone_of, measure_training, step_rates
from tlutils.bench.workloads import measure_box_coding, measure_matmul, measure_pipeline, pipeline_run

__all__ = [
    "BenchConfig", "TABLE_ROWS", "TARGETS", "backbone_of", "bf16_skip_note", "configurations",
    "detector_like_outputs", "format_table", "forward_flops", "images_per_second", "import_torchvision",
    "interleaved_steps", "keep_triton_out", "layer_macs", "machine_info", "main", "measure_box_coding",
    "measure_config", "measure_matmul", "measure_pipeline", "measure_training", "median_seconds",
    "peak_memory_mb", "peer_missing", "pipeline_run", "random_ground_truth", "ratios", "run_bench",
    "run_child", "sign_world", "step_rates", "torchvision_peer", "training_batch", "training_flops",
]

#: Where ``bench.json`` goes unless ``out`` says otherwise.
DEFAULT_OUT = "runs/bench.json"


def measure_config(config: BenchConfig, num_classes: int, quick: bool, bf16_native: bool = True) -> dict[str, Any]:
    """Every figure of one configuration (module docstring); ``bf16_native``: whether bf16 runs on real
    units here (:func:`tlutils.profiles.bf16_is_native`)."""
    from tlutils.anchors import generate_anchors
    from tlutils.model import anchor_config_for, build_ssd_vgg16

    detector = build_ssd_vgg16(num_classes, config.input_size, config.width)
    anchors = generate_anchors(anchor_config_for(detector))
    result: dict[str, Any] = {**asdict(config), "num_classes": num_classes, "num_anchors": len(anchors)}
    result["train_gflop_per_image"] = training_flops(detector) / 1e9
    result["backbone_train_gflop_per_image"] = training_flops(backbone_of(detector)) / 1e9
    del detector
    result.update(measure_pipeline(config, anchors))
    result.update(measure_box_coding(config, anchors, num_classes, repeat=2 if quick else 7))
    peer_skipped = peer_missing() or (None if config.peer else
                                      "not comparable: torchvision's SSD300 exists only at width 1.0, 300 px")
    bf16_skipped = bf16_skip_note(config, bf16_native)
    spec = {"config": asdict(config), "num_classes": num_classes, "peer": peer_skipped is None,
            "bf16": bf16_skipped is None}
    result.update(run_child("training", spec, timeout=300 if quick else 1800))
    if bf16_skipped is not None:
        result["bf16_note"] = bf16_skipped
    if peer_skipped is not None:
        result.update(peer_torchvision_train_images_per_s=None, peer_note=peer_skipped)
    for suffix in ("", "_bf16"):
        for unit in ("s", "cpu_s"):
            rate = result.get(f"train_images_per_{unit}{suffix}")
            gflops = None if rate is None else result["train_gflop_per_image"] * rate
            result[f"train_gflops{'' if unit == 's' else '_per_cpu_s'}{suffix}"] = gflops
    return result


def run_bench(out: str | os.PathLike = DEFAULT_OUT, quick: bool = False) -> int:
    """Measure every configuration, print the table, write ``out`` (JSON); returns 0 (an exit status)."""
    from tlutils.data.synth import SIGN_CLASSES
    from tlutils.profiles import bf16_is_native

    started = time.perf_counter()
    machine = machine_info()
    machine["matmul_size"] = 256 if quick else 4096
    for dtype, suffix in (("float32", ""), ("bfloat16", "_bf16")):
        rates = measure_matmul(machine["matmul_size"], repeat=3 if quick else 9, dtype=dtype)
        machine[f"matmul_gflops{suffix}"] = rates["gflops"]
        machine[f"matmul_gflops{suffix}_per_cpu_s"] = rates["gflops_per_cpu_s"]
    machine["bf16_native"] = bf16_is_native()
    report: dict[str, Any] = {"quick": quick, "configurations": [], "machine": machine}
    for config in configurations(quick):
        print(f"measuring {config.name}: {config.describe()} ...", flush=True)
        report[config.name] = measure_config(config, len(SIGN_CLASSES), quick, machine["bf16_native"])
        report["configurations"].append(config.name)
    machine["load_average_end"] = [round(value, 2) for value in os.getloadavg()]
    machine["seconds"] = round(time.perf_counter() - started, 1)
    for name in report["configurations"]:
        report[name]["ratios"] = ratios(report[name], machine)
    print(format_table(report))
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path} ({machine['seconds']:.0f} s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tlutils.bench [--out PATH] [--quick]``, the options of ``tlutils bench`` (which calls
    :func:`run_bench` itself, so that the bench never imports the CLI); ``--child JOB SPEC`` runs one job
    of :func:`run_child` in this process (internal)."""
    parser = argparse.ArgumentParser(prog="python -m tlutils.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"where the JSON goes (default {DEFAULT_OUT})")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    parser.add_argument("--child", nargs=2, metavar=("JOB", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(*args.child)
    return run_bench(out=args.out, quick=args.quick)
