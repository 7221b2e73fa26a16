"""Train-step speed of SSD-VGG16 on this CPU, against its bare VGG16 backbone.

For each setting (width, input size, batch, dtype policy, XLA) these models take SGD training steps on
random data, each timed after one warm-up step (tracing, XLA compilation); they share one detector's
layers and take turns step by step, so bursts of load from other processes hit all of them alike:

- ``backbone``: ``image`` -> ``block5_conv3`` (VGG16's convs) with a trivial loss (mean squared
  output): the floor any VGG16 detector pays;
- ``+fc``, ``+extras`` (with ``--breakdown`` or the setting's default): up to fc7, then up to all six
  prediction sources, trivial losses: where SSD's own layers spend their time;
- ``ssd``: the whole detector (+ heads) with a trivial loss on both outputs;
- ``ssd+multibox``: ``tlutils.training.SSDTrainer``, the MultiBox loss with hard negative mining, as
  ``fit`` runs it (targets: ~1 % positives).

Columns: fastest wall-clock seconds per step and images/s, median **CPU** seconds per step (all
threads of this process), images per CPU-second, CPU cost over the backbone, and giga
multiply-accumulates per image of the convolutions each model runs (forward). On a shared machine
wall-clock includes waiting for a core; the CPU columns are the comparable ones (with two idle cores
wall-clock images/s is about twice images per CPU-second). The target: ``ssd+multibox`` costs at most
15 % more than ``backbone``.

Usage: ``python scripts/bench_model.py [--settings cpu cpu-bf16 ssd300 ...] [--steps N] [--breakdown]``
(the defaults take about 3 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import keras
import numpy as np

from tlutils.bench import interleaved_steps, layer_macs
from tlutils.model import FREEZE_POINTS, PREDICTION_LAYERS, block_of, build_ssd_vgg16
from tlutils.training import SSDTrainer

VGG_BLOCKS = FREEZE_POINTS[:5]


@dataclass(frozen=True)
class Setting:
    """One benchmark setting; ``steps`` timed steps per model, ``breakdown`` adds ``+fc``/``+extras``."""

    width: float
    input_size: int
    batch_size: int
    policy: str = "float32"
    jit_compile: bool = False
    steps: int = 5
    breakdown: bool = True


SETTINGS: dict[str, Setting] = {
    "cpu": Setting(0.25, 160, 16),
    "cpu-bf16": Setting(0.25, 160, 16, policy="mixed_bfloat16"),
    "cpu-xla": Setting(0.25, 160, 16, jit_compile=True),
    "w0.125@224": Setting(0.125, 224, 16, breakdown=False),
    "w0.375@128": Setting(0.375, 128, 16, breakdown=False),
    "ssd300": Setting(1.0, 300, 8, steps=2, breakdown=False),
    "ssd300-bf16": Setting(1.0, 300, 8, policy="mixed_bfloat16", steps=2, breakdown=False),
}
DEFAULT_SETTINGS = ("cpu", "cpu-bf16", "ssd300")


def conv_macs(model: keras.Model) -> dict[str, int]:
    """Multiply-accumulates of one image's forward pass through the convolutions, per freeze point."""
    macs = dict.fromkeys(FREEZE_POINTS, 0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            macs[block_of(layer.name)] += layer_macs(layer)
    return macs


def random_targets(rng: np.random.Generator, batch_size: int, num_anchors: int, num_classes: int) -> dict:
    """MultiBox targets: ~1 % positives (classes 1..C), 2 % ignored, the rest background."""
    draw = rng.uniform(size=(batch_size, num_anchors))
    classes = rng.integers(1, num_classes + 1, size=(batch_size, num_anchors))
    class_targets = np.where(draw < 0.01, classes, np.where(draw < 0.03, -1, 0)).astype("int32")
    box_targets = rng.normal(0.0, 1.0, size=(batch_size, num_anchors, 4)).astype("float32")
    return {"class_targets": class_targets, "box_targets": box_targets}


def time_steps(models: dict[str, tuple], images: np.ndarray, steps: int) -> dict[str, tuple[float, float]]:
    """Per model ``(fastest wall-clock, median CPU seconds)`` of ``steps`` training steps, taken in turns
    after one warm-up step each (which traces, and with XLA compiles, the step)."""
    timings = interleaved_steps(
        {name: lambda model=model, targets=targets: model.train_on_batch(images, targets)
         for name, (model, targets) in models.items()},
        warmup_steps=1, min_steps=steps, min_seconds=0.0, max_steps=steps,
    )
    return {name: (timing["fastest"], timing["cpu_seconds"]) for name, timing in timings.items()}


def _trivial(detector: keras.Model, outputs, batch_size: int) -> tuple[keras.Model, object]:
    """A model from the detector's input to ``outputs`` (sharing its layers) and zero MSE targets."""
    zeros = keras.tree.map_structure(lambda t: np.zeros((batch_size, *t.shape[1:]), "float32"), outputs)
    return keras.Model(detector.input, outputs), zeros


def bench_setting(setting: Setting, num_classes: int, steps: int, breakdown: bool) -> list[dict]:
    """Time the models of one setting; one row per model, in the order of the module docstring."""
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(setting.policy)
    try:
        keras.utils.set_random_seed(0)
        detector = build_ssd_vgg16(num_classes, input_size=setting.input_size, width=setting.width)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    rng = np.random.default_rng(0)
    size, batch = setting.input_size, setting.batch_size
    images = rng.uniform(0.0, 255.0, size=(batch, size, size, 3)).astype("float32")
    num_anchors = int(detector.output["class_logits"].shape[1])

    macs = conv_macs(detector)
    stages = {"backbone": VGG_BLOCKS, "+fc": (*VGG_BLOCKS, "fc"), "+extras": FREEZE_POINTS[:-1],
              "ssd": FREEZE_POINTS, "ssd+multibox": FREEZE_POINTS}
    models = {"backbone": _trivial(detector, detector.get_layer("block5_conv3").output, batch)}
    if breakdown:
        models["+fc"] = _trivial(detector, [detector.get_layer("fc7").output], batch)
        sources = [detector.get_layer(spec.source).output for spec in PREDICTION_LAYERS]
        models["+extras"] = _trivial(detector, sources, batch)
    models["ssd"] = _trivial(detector, detector.output, batch)
    trainer = SSDTrainer(detector)
    models["ssd+multibox"] = (trainer, random_targets(rng, batch, num_anchors, num_classes))
    for model, _ in models.values():
        model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9),
                      loss=None if model is trainer else "mse", jit_compile=setting.jit_compile)

    timings = time_steps(models, images, steps)
    backbone_cpu = timings["backbone"][1]
    return [
        {"model": name, "wall": wall, "images/s": batch / wall, "cpu": cpu, "images/cpu-s": batch / cpu,
         "cpu vs backbone": cpu / backbone_cpu - 1.0, "GMACs/img": sum(macs[b] for b in stages[name]) / 1e9}
        for name, (wall, cpu) in timings.items()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS), choices=sorted(SETTINGS))
    parser.add_argument("--steps", type=int, help="timed steps per model (default: the setting's)")
    parser.add_argument("--breakdown", action="store_true", help="time +fc and +extras in every setting")
    parser.add_argument("--classes", type=int, default=14, help="object classes (the sign world's germany: 14)")
    args = parser.parse_args(argv)
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, {args.classes} classes; "
          "wall: fastest step, cpu: median step")
    print(f"{'setting':<12} {'width':>5} {'size':>4} {'batch':>5} {'policy':<14} {'xla':<5} {'model':<12} "
          f"{'wall s':>7} {'img/s':>6} {'cpu s':>7} {'img/cpu-s':>9} {'cpu vs bb':>9} {'GMAC/img':>8}")
    for name in args.settings:
        setting = SETTINGS[name]
        start = time.perf_counter()
        rows = bench_setting(setting, args.classes, args.steps or setting.steps, args.breakdown or setting.breakdown)
        for row in rows:
            print(f"{name:<12} {setting.width:>5} {setting.input_size:>4} {setting.batch_size:>5} "
                  f"{setting.policy:<14} {str(setting.jit_compile):<5} {row['model']:<12} "
                  f"{row['wall']:>7.3f} {row['images/s']:>6.1f} {row['cpu']:>7.3f} {row['images/cpu-s']:>9.1f} "
                  f"{row['cpu vs backbone']:>+9.0%} {row['GMACs/img']:>8.3f}", flush=True)
        print(f"# {name}: {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
