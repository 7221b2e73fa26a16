"""Weight transfer between two SSDs, with class-mapped classification heads.

A class head's kernel ``(3, 3, C_in, k * (C + 1))`` holds, for box slot ``b`` and class ``c``, the
filter at last-axis index ``b * (C + 1) + c`` (class 0 = background). Mapping target class ``t`` to
source class ``s`` copies slice ``b * (C_s + 1) + s`` of the source into ``b * (C_t + 1) + t`` of the
target for every slot ``b`` (kernel and bias), so the target's logit ``t`` equals the source's logit
``s`` wherever the layers below were copied too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import keras
import numpy as np

from tlutils.model.ssd import PREDICTION_LAYERS, num_classes_of

ClassMap = Mapping[int, "int | None"]


@dataclass
class TransferReport:
    """What :func:`transfer_weights` did to each layer of the target that has weights.

    Attributes:
        copied: layers whose weights were copied unchanged (same name, same shapes).
        remapped: ``(class head, detail)`` pairs, kernels and biases copied slice by slice per class.
        initialized: ``(layer, reason)``: the source has no such layer; the target's weights stay.
        skipped: ``(layer, reason)``: the source has the layer but its weights do not fit.
        class_map: the full target -> source class map used (``None`` = new class), or ``None``.
    """

    copied: list[str] = field(default_factory=list)
    remapped: list[tuple[str, str]] = field(default_factory=list)
    initialized: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    class_map: dict[int, int | None] | None = None

    def __str__(self) -> str:
        lines = [
            f"weight transfer: {len(self.copied)} copied, {len(self.remapped)} remapped, "
            f"{len(self.initialized)} initialized, {len(self.skipped)} skipped"
        ]
        if self.class_map is not None:
            pairs = (f"{t} <- {s}" if s is not None else f"{t} new" for t, s in self.class_map.items() if t)
            lines.append("class map (target <- source): " + ", ".join(pairs))
        if self.copied:
            lines.append("copied: " + ", ".join(self.copied))
        for title, entries in (("remapped", self.remapped), ("initialized", self.initialized),
                               ("skipped", self.skipped)):
            lines.extend(f"{title}: {name}: {detail}" for name, detail in entries)
        return "\n".join(lines)


def transfer_weights(source: keras.Model, target: keras.Model,
                     class_map: ClassMap | None = None) -> TransferReport:
    """Copy weights from ``source`` into ``target`` (in place) layer by layer, matched by name.

    - A layer whose name exists in both and whose weight shapes all match is copied.
    - With ``class_map``, the class heads (``{p}_class_head``) are copied slice-wise instead:
      background to background, target class ``t`` from source class ``class_map[t]`` in every box
      slot; target classes mapped to ``None`` or left out of the map keep the target's fresh
      initialization (new classes).
    - Box heads, like every other layer, copy when their shapes match, i.e. when the anchor layout
      (boxes per cell) and the width match.

    Args:
        source: a trained SSD from :func:`build_ssd_vgg16`, or any model with its layer names
            (``keras.applications.VGG16(include_top=False)`` fills the backbone only).
        target: the SSD to initialize (any input size; same width for the backbone to copy).
        class_map: ``{target class (1..C_t): source class (1..C_s) or None}``.

    Returns:
        A :class:`TransferReport`.

    Raises:
        ValueError: a class id out of range in ``class_map``.
    """
    full_map = None
    if class_map is not None:
        full_map = _complete_class_map(class_map, num_classes_of(target), num_classes_of(source))
    class_heads = {f"{spec.name}_class_head" for spec in PREDICTION_LAYERS}
    source_layers = {layer.name: layer for layer in source.layers}
    report = TransferReport(class_map=full_map)
    for target_layer in target.layers:
        name = target_layer.name
        if not target_layer.weights:
            continue
        source_layer = source_layers.get(name)
        if source_layer is None:
            report.initialized.append((name, "not in the source model"))
        elif full_map is not None and name in class_heads:
            _remap_class_head(source_layer, target_layer, full_map, num_classes_of(source), report)
        elif _shapes(source_layer) == _shapes(target_layer):
            target_layer.set_weights(source_layer.get_weights())
            report.copied.append(name)
        else:
            reason = f"weight shapes differ: source {_shapes(source_layer)}, target {_shapes(target_layer)}"
            if name in class_heads:
                reason += " (if only the classes differ, pass class_map to copy them slice by slice)"
            report.skipped.append((name, reason))
    return report


def _complete_class_map(class_map: ClassMap, num_target: int, num_source: int) -> dict[int, int | None]:
    """``{0: 0, 1: ..., C_t: ...}``: background to background, unmapped target classes ``None``."""
    full: dict[int, int | None] = {0: 0, **{t: None for t in range(1, num_target + 1)}}
    for target_class, source_class in class_map.items():
        if target_class == 0:
            if source_class != 0:
                raise ValueError(f"class_map: background (0) always maps to background, got 0 -> {source_class}")
            continue
        if not isinstance(target_class, (int, np.integer)) or not 1 <= target_class <= num_target:
            raise ValueError(f"class_map: target class {target_class!r} is not in 1..{num_target} (the target's classes)")
        if source_class is not None and (
            not isinstance(source_class, (int, np.integer)) or not 1 <= source_class <= num_source
        ):
            raise ValueError(
                f"class_map[{target_class}] = {source_class!r} is not in 1..{num_source} "
                "(the source's classes) or None (a new class)"
            )
        full[int(target_class)] = None if source_class is None else int(source_class)
    return full


def _remap_class_head(source_layer: keras.layers.Layer, target_layer: keras.layers.Layer,
                      full_map: dict[int, int | None], num_source: int, report: TransferReport) -> None:
    """Copy the mapped classes' kernel and bias slices of one class head (see the module docstring)."""
    source_kernel, source_bias = source_layer.get_weights()  # (3, 3, C_in, k_s * (C_s + 1)), (k_s * (C_s + 1),)
    target_kernel, target_bias = target_layer.get_weights()  # (3, 3, C_in, k_t * (C_t + 1)), (k_t * (C_t + 1),)
    source_values, target_values = num_source + 1, len(full_map)
    source_slots = source_kernel.shape[-1] // source_values
    target_slots = target_kernel.shape[-1] // target_values
    if source_kernel.shape[:-1] != target_kernel.shape[:-1] or source_slots != target_slots:
        report.skipped.append((
            target_layer.name,
            f"cannot remap classes: kernels {source_kernel.shape} (source, {source_slots} box slots) and "
            f"{target_kernel.shape} (target, {target_slots} box slots) differ in width or boxes per cell",
        ))
        return
    mapped = [(t, s) for t, s in full_map.items() if s is not None]
    target_index = np.array([b * target_values + t for b in range(target_slots) for t, _ in mapped])
    source_index = np.array([b * source_values + s for b in range(target_slots) for _, s in mapped])
    target_kernel[..., target_index] = source_kernel[..., source_index]
    target_bias[target_index] = source_bias[source_index]
    target_layer.set_weights([target_kernel, target_bias])
    report.remapped.append((target_layer.name, f"{len(mapped) - 1} classes + background copied in {target_slots} box slots"))


def _shapes(layer: keras.layers.Layer) -> list[tuple[int, ...]]:
    return [tuple(w.shape) for w in layer.weights]
