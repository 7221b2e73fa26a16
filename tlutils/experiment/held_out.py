"""Held-out evaluations of a run, after training: a **test** split and the **source** data.

- ``test_map50``: mAP@0.5 on the data's test split, which nothing in a run or a sweep looks at to
  choose anything (learning rates are chosen on val: ``tlutils.experiment.selection``). The sign
  world renders its test set from its own seed (``tlutils.data.synth.HELD_OUT_SEEDS``); real data
  uses its test split.
- ``source_map50``: mAP@0.5 of a transferred detector back on the source data's val split, over the
  classes the two share (matched by canonical name): what it kept of the source. Epoch 0 holds the
  same for the detector before training, so ``source_map50`` at epoch 0 minus at the last epoch is
  the forgetting.

Both are computed at epoch 0 (before training) and after the last epoch, NaN in between. Real frames are
scored whole, by tiled inference, as the val mAP is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from tlutils.experiment.datasets import is_synth, load_split
from tlutils.experiment.resolved import ResolvedRun

if TYPE_CHECKING:
    from tlutils.data.records import DetectionDataset

@dataclass(frozen=True)
class HeldOutSet:
    """One held-out evaluation: ``column`` of the results table, its frames and their label map."""

    column: str
    frames: "DetectionDataset"
    label_map: dict[int, int]  # dataset id -> model class; classes the detector lacks are left out
    synthetic: bool  # sign-world images at the input size (else real frames, scored whole)
    input_size: int
    batch_size: int

    def map50(self, model: Any, anchors: np.ndarray) -> float:
        """mAP@0.5 of ``model`` on the frames: the sign world at the input size, real frames tiled;
        NaN when the detector shares no class with them."""
        from tlutils.data.pipeline import DetectionSequence, ground_truths_for_eval
        from tlutils.evaluation import evaluate_detector, evaluate_tiled
        from tlutils.experiment.run_data import real_tile_options

        if not self.label_map:
            return float("nan")
        if self.synthetic:
            sequence = DetectionSequence(self.frames, anchors, self.label_map, batch_size=self.batch_size,
                                         input_size=self.input_size, shuffle=False, unmapped="drop")
            return float(evaluate_detector(model, sequence, ground_truths_for_eval(sequence), anchors)["map50"])
        return float(evaluate_tiled(model, list(self.frames), anchors, self.label_map, tile_size=self.input_size,
                                    unmapped="drop", **real_tile_options(self.input_size))["map50"])


def held_out_sets(resolved: ResolvedRun, class_names: Mapping[int, str], data_dir: Path | None) -> list[HeldOutSet]:
    """The held-out evaluations ``resolved`` asks for (``evaluate_test``, ``evaluate_source``).

    Raises:
        ValueError: the data has no test split (e.g. only GTSDB's official training frames).
    """
    sets = []
    wanted = [("test_map50", resolved.data, "test", resolved.evaluate_test),
              ("source_map50", resolved.source_data, "val", resolved.evaluate_source)]
    for column, data, split, asked in wanted:
        if not asked:
            continue
        frames = load_split(data, split, resolved.classes, resolved.num_val_images, resolved.input_size, data_dir)
        if not len(frames):
            raise ValueError(f"{data} has no {split} images to evaluate {column} on")
        sets.append(HeldOutSet(column, frames, by_name(frames.classes, class_names), is_synth(data),
                               resolved.input_size, resolved.batch_size))
    return sets


def by_name(classes: Mapping[int, str], model_classes: Mapping[int, str]) -> dict[int, int]:
    """``dataset id -> model class`` for the dataset classes whose canonical name is a model class's."""
    from tlutils.data.classes import canonical_name

    model_by_name = {canonical_name(name): model_class for model_class, name in model_classes.items()}
    return {class_id: model_by_name[canonical_name(name)] for class_id, name in classes.items()
            if canonical_name(name) in model_by_name}
