"""Training steps timed in the child process: our SSD, its backbone, its layers, and the peer.

One fresh process per configuration (:func:`tlutils.bench.child.run_child`), so its memory is its own
and a dtype policy never leaks. Every model takes its timed steps in turns
(:func:`tlutils.bench.timing.interleaved_steps`), so load from other processes hits them alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from tlutils.bench.config import BenchConfig
from tlutils.bench.inputs import training_batch
from tlutils.bench.timing import interleaved_steps, peak_memory_mb

#: Step names (before an optional ``_bf16``) -> the prefix of their figures in ``bench.json``.
STEP_FIGURES = {"train": "train", "backbone": "backbone_train", "layers": "ssd_layers_train",
                "peer": "peer_torchvision_train"}


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Build layers under the Keras dtype policy ``name`` ("float32", "mixed_bfloat16")."""
    import keras

    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def backbone_of(detector: Any) -> Any:
    """The detector's VGG16 base as a model of its own: input -> ``fc7`` (shares the layers)."""
    import keras

    return keras.Model(detector.input, detector.get_layer("fc7").output, name="vgg16_base")


def _mean_output(y_true: Any, y_pred: Any) -> Any:
    """Trivial loss: the mean of an output per image, float32; ``(B, ...) -> (B,)``."""
    from keras import ops

    return ops.mean(ops.cast(y_pred, "float32"), axis=tuple(range(1, len(y_pred.shape))))


def _trivial_loss_step(model: Any, images: Any, batch_size: int) -> Callable[[], Any]:
    """A training step of ``model`` (any outputs) with :func:`_mean_output` on each output."""
    import keras
    from keras import ops

    zeros = keras.tree.map_structure(lambda _: ops.zeros((batch_size,)), model.output)
    loss = keras.tree.map_structure(lambda _: _mean_output, model.output)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    return lambda: model.train_on_batch(images, zeros)


def step_rates(timings: dict[str, dict[str, float]], batch_size: int) -> dict[str, float]:
    """``bench.json`` figures of :func:`interleaved_steps`' timings: step ``"peer_bf16"`` ->
    ``peer_torchvision_train_images_per_s_bf16``, ``..._images_per_cpu_s_bf16``, ``..._cores_busy_bf16``."""
    results: dict[str, float] = {}
    for step_name, timing in timings.items():
        base, _, precision = step_name.partition("_")
        prefix, suffix = STEP_FIGURES[base], f"_{precision}" if precision else ""
        results[f"{prefix}_images_per_s{suffix}"] = batch_size / timing["seconds"]
        results[f"{prefix}_images_per_cpu_s{suffix}"] = batch_size / timing["cpu_seconds"]
        results[f"{prefix}_cores_busy{suffix}"] = timing["cores_busy"]
    return results


def torchvision_peer_steps(images: Any, truths: list, num_classes: int,
                           bf16: bool) -> tuple[dict[str, Callable[[], Any]], dict[str, Any]]:
    """The peer's training steps: ``"peer"`` in float32 and, with ``bf16``, ``"peer_bf16"`` under bf16
    autocast (:func:`tlutils.bench.peer.torchvision_peer`), and their figures (the float32 peer's note)."""
    from tlutils.bench import peer

    steps: dict[str, Callable[[], Any]] = {}
    results: dict[str, Any] = {}
    for suffix in ("", "_bf16") if bf16 else ("",):
        steps[f"peer{suffix}"], peer_results = peer.torchvision_peer(images, truths, num_classes, bf16=bool(suffix))
        for key, value in peer_results.items():  # the float32 peer's note says how torchvision loaded
            results.setdefault(key, value)
    return steps, results


def measure_training(spec: dict[str, Any]) -> dict[str, Any]:
    """Training images/s of the SSD, its backbone (float32 and mixed_bfloat16) and the peer (the child job).

    ``spec``: a :class:`BenchConfig` as a dict, ``num_classes``, ``peer`` (time torchvision's SSD300
    too) and ``bf16`` (time the bf16 steps, ours and the peer's). The float32 SSD is built and takes its
    first step before anything else, so the recorded peak memory is that of a float32 training run.
    """
    import keras
    from keras import ops

    from tlutils.anchors import generate_anchors
    from tlutils.model import anchor_config_for, build_ssd_vgg16
    from tlutils.training import SSDTrainer

    config, num_classes = BenchConfig(**spec["config"]), spec["num_classes"]
    bf16 = spec.get("bf16", True)
    results: dict[str, Any] = {"backend": keras.backend.backend()}
    steps: dict[str, Callable[[], Any]] = {}
    batch: tuple[Any, Any] | None = None
    precisions = (("float32", ""), ("mixed_bfloat16", "_bf16")) if bf16 else (("float32", ""),)
    for precision, suffix in precisions:
        keras.utils.set_random_seed(0)
        with dtype_policy(precision):
            detector = build_ssd_vgg16(num_classes, config.input_size, config.width)
        if batch is None:
            anchors = generate_anchors(anchor_config_for(detector))
            images, targets, truths = training_batch(anchors, config.batch_size, config.input_size, num_classes)
            batch = ops.convert_to_tensor(images), {key: ops.convert_to_tensor(value) for key, value in targets.items()}
        results[f"outputs_float32{suffix}"] = all(str(output.dtype) == "float32" for output in detector.outputs)
        trainer = SSDTrainer(detector)
        trainer.compile(optimizer=keras.optimizers.Adam(1e-3))  # jit_compile left to Keras ("auto")
        steps[f"train{suffix}"] = lambda trainer=trainer: trainer.train_on_batch(*batch)
        if precision == "float32":
            steps["train"]()  # traces the step and allocates what training needs
            results["peak_memory_mb"] = peak_memory_mb()
        results[f"jit_compile{suffix}"] = bool(trainer.jit_compile)
        steps[f"backbone{suffix}"] = _trivial_loss_step(backbone_of(detector), batch[0], config.batch_size)
        if precision == "float32":  # the SSD's layers without the MultiBox loss: splits the overhead
            layers_only = keras.Model(detector.input, detector.output, name="ssd_layers")
            steps["layers"] = _trivial_loss_step(layers_only, batch[0], config.batch_size)
    if spec.get("peer"):
        peer_steps, peer_results = torchvision_peer_steps(images, truths, num_classes, bf16)
        steps.update(peer_steps)
        results.update(peer_results)
    timings = interleaved_steps(steps, config.warmup_steps, config.min_steps, config.min_seconds, config.max_steps)
    results.update(step_rates(timings, config.batch_size))
    return results
