"""Figure basics: human labels of the results columns, saving with a fixed name and dpi, drawing boxes
with readable captions, grids of panels.

``save_figure(fig, "05_transfer_map_vs_images")`` writes ``figures/05_transfer_map_vs_images.png``.
Boxes passed to the drawing helpers are corners ``(xmin, ymin, xmax, ymax)``, in pixels unless
``normalized=True``. Images are always drawn with ``aspect="equal"``: a 1360x800 GTSDB frame stays
1360x800, never stretched to fill a square panel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from tlutils.paths import figures_dir

__all__ = ["FIGURE_DPI", "LABELS", "QUANTITIES", "course_figures_dir", "draw_boxes", "label_of", "save_figure",
           "share_y_by_quantity"]

FIGURE_DPI = 110

#: How figures (axis labels, titles, legends) name the results table's columns
#: (``tlutils.experiment.RESULT_COLUMNS``) and the columns the notebooks derive from it. The one place
#: that maps a column to its label: use :func:`label_of`. Strategy names are not translated: they are
#: the canonical strings a user types (``"freeze:block3"``).
LABELS: dict[str, str] = {
    # what a run measured
    "val_map50": "val mAP@0.5",
    "coco_map": "COCO mAP@[.5:.95]",
    "test_map50": "test mAP@0.5",
    "source_map50": "source mAP@0.5 (after transfer)",
    "best_epoch": "best epoch by val mAP@0.5",
    "stopped_early": "stopped early",
    "map50_small": "mAP@0.5, small signs",
    "map50_medium": "mAP@0.5, medium signs",
    "map50_large": "mAP@0.5, large signs",
    "loss": "training loss",
    "val_loss": "validation loss",
    "localization": "localization loss",
    "confidence": "confidence loss",
    "regularization": "L2 term",
    "val_localization": "validation localization loss",
    "val_confidence": "validation confidence loss",
    "num_positives": "matched anchors per batch",
    "images_per_s": "training images/s",
    "epoch_seconds": "seconds per epoch",
    "eval_seconds": "seconds per evaluation",
    "trainable_params": "trainable parameters",
    # how a run was configured
    "num_target_images": "target images",
    "learning_rate": "learning rate",
    "phase_learning_rate": "learning rate of the phase",
    "l2_regularization": "L2 factor",
    "step": "optimizer steps",
    "epoch": "epoch",
    "seed": "seed",
    "strategy": "strategy",
    "country": "country",
    "num_seeds": "seeds",
    # derived in notebook 06
    "keras2_loss": "training loss as Keras 2 logs it",
    "frozen_l2": "L2 term of the frozen weights",
    "data_loss": "data loss (localization + confidence)",
}

#: Columns that measure the same quantity, in the same unit: panels showing them share a y-scale
#: (:func:`share_y_by_quantity`), so a reader compares heights honestly. Every AP is a share in
#: [0, 1]; every loss column is a part of (or the whole of) the minimized loss.
QUANTITIES: dict[str, str] = {
    **dict.fromkeys(("val_map50", "coco_map", "test_map50", "source_map50", "map50_small", "map50_medium",
                     "map50_large"), "average precision"),
    **dict.fromkeys(("loss", "val_loss", "keras2_loss", "localization", "confidence", "regularization",
                     "val_localization", "val_confidence", "frozen_l2", "data_loss"), "loss"),
}

#: What ``summarize`` appends to a column, and how a label says it.
_SUMMARY_SUFFIXES = {"_mean": "mean over seeds", "_std": "std over seeds"}


def label_of(column: str) -> str:
    """The human label of a results column: ``label_of("val_map50") == "val mAP@0.5"``.

    ``<column>_mean`` / ``<column>_std`` (``summarize``'s columns) get "(mean over seeds)" /
    "(std over seeds)"; a column not in :data:`LABELS` is shown with spaces for underscores.
    """
    if column in LABELS:
        return LABELS[column]
    for suffix, words in _SUMMARY_SUFFIXES.items():
        if column.endswith(suffix) and column[: -len(suffix)] in LABELS:
            return f"{LABELS[column[: -len(suffix)]]} ({words})"
    return column.replace("_", " ")


def share_y_by_quantity(axes: Sequence, columns: Sequence[str]) -> None:
    """Share the y-axis of the panels whose ``columns`` measure the same quantity (:data:`QUANTITIES`).

    Call it before plotting, so the shared axes scale to all their data. A column of no known
    quantity keeps its own scale.
    """
    first_of: dict[str, object] = {}
    for ax, column in zip(axes, columns):
        quantity = QUANTITIES.get(column)
        if quantity is None:
            continue
        if quantity in first_of:
            ax.sharey(first_of[quantity])
        else:
            first_of[quantity] = ax


def save_figure(fig, name: str, directory: str | Path | None = None) -> Path:
    """Save ``fig`` as ``<directory or figures/>/<name>.png`` at ``FIGURE_DPI``; returns the path."""
    if not name or "/" in name or name.endswith(".png"):
        raise ValueError(f"figure name must be a bare stem like '05_transfer_map', got {name!r}")
    path = Path(directory) if directory is not None else figures_dir()
    path.mkdir(parents=True, exist_ok=True)
    target = path / f"{name}.png"
    fig.savefig(target, dpi=FIGURE_DPI, bbox_inches="tight", metadata={"Software": None})
    return target


def course_figures_dir(profile: str) -> Path:
    """Where a notebook run on ``profile`` saves its figures.

    ``figures/`` (committed, embedded by the README) for the ``cpu`` and ``gpu`` profiles;
    ``runs/ci/figures/`` for ``ci``, whose tiny runs must never overwrite the committed figures.
    """
    from tlutils.paths import runs_dir

    if profile == "ci":
        path = runs_dir(profile) / "figures"
        path.mkdir(parents=True, exist_ok=True)
        return path
    return figures_dir()


def _subplots(num_panels: int, columns: int, panel_width: float, panel_height: float, sharey: bool = False):
    """``(figure, flat list of axes)`` for a grid of ``num_panels`` (unused axes hidden); ``sharey``: one
    y-scale for all panels (tick labels on the first column only)."""
    import matplotlib.pyplot as plt

    columns = max(1, min(columns, num_panels))
    rows = -(-num_panels // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(panel_width * columns, panel_height * rows),
                                squeeze=False, sharey=sharey, layout="constrained")
    axes = list(axes.flat)
    for axis in axes[num_panels:]:
        axis.set_visible(False)
    return figure, axes[:num_panels]


# --- images, boxes and their captions ----------------------------------------------------------------

def _show_image(ax, image: np.ndarray) -> tuple[int, int]:
    """Draw ``image`` (H, W, 3) on ``ax`` with square pixels; returns ``(width, height)``."""
    pixels = np.asarray(image)
    if pixels.dtype != np.uint8:
        pixels = pixels.astype(np.uint8)
    ax.imshow(pixels, aspect="equal")
    return pixels.shape[1], pixels.shape[0]


def draw_boxes(
    ax,
    image: np.ndarray,
    boxes: np.ndarray,
    labels: Sequence[int] | None = None,
    class_names: dict[int, str] | None = None,
    scores: Sequence[float] | None = None,
    normalized: bool = False,
    color: str = "lime",
) -> None:
    """Show ``image`` (H, W, 3) on ``ax`` (``aspect="equal"``) with corners ``boxes`` (K, 4) and captions
    (``class score``) that stay inside the image (``tlutils.plotting.captions``)."""
    width, height = _show_image(ax, image)
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    if normalized:
        boxes = boxes * np.array([width, height, width, height])
    _add_boxes(ax, boxes, [_caption(index, labels, class_names, scores) for index in range(len(boxes))], color)
    ax.set_axis_off()


def _caption(index: int, labels, class_names, scores) -> str:
    parts = []
    if labels is not None:
        label = int(labels[index])
        parts.append(class_names.get(label, str(label)) if class_names else str(label))
    if scores is not None:
        parts.append(f"{float(scores[index]):.2f}")
    return " ".join(parts)


def _add_boxes(ax, boxes: np.ndarray, captions: Sequence[str] | None, color: str, linestyle: str = "-") -> None:
    """Draw pixel corners ``boxes`` (K, 4) on ``ax`` with optional captions (``captions.BoxCaption``)."""
    from matplotlib.patches import Rectangle

    from tlutils.plotting.captions import BoxCaption

    for index, (xmin, ymin, xmax, ymax) in enumerate(np.asarray(boxes, dtype=float).reshape(-1, 4)):
        ax.add_patch(Rectangle((xmin, ymin), xmax - xmin, ymax - ymin, fill=False, edgecolor=color,
                               linewidth=1.2, linestyle=linestyle))
        if captions is not None and captions[index]:
            ax.add_artist(BoxCaption((xmin, ymin, xmax, ymax), captions[index], color))
