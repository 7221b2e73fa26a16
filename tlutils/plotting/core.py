"""Figure basics: saving with a fixed name and dpi, drawing boxes, grids of panels.

``save_figure(fig, "05_transfer_map_vs_images")`` writes ``figures/05_transfer_map_vs_images.png``.
Boxes passed to the drawing helpers are corners ``(xmin, ymin, xmax, ymax)``, in pixels unless
``normalized=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from tlutils.paths import figures_dir

__all__ = ["FIGURE_DPI", "course_figures_dir", "draw_boxes", "save_figure"]

FIGURE_DPI = 110


def save_figure(fig, name: str, directory: str | Path | None = None) -> Path:
    """Save ``fig`` as ``<directory or figures/>/<name>.png`` at ``FIGURE_DPI``; returns the path."""
    if not name or "/" in name or name.endswith(".png"):
        raise ValueError(f"figure name must be a bare stem like '05_transfer_map', got {name!r}")
    path = Path(directory) if directory is not None else figures_dir()
    path.mkdir(parents=True, exist_ok=True)
    target = path / f"{name}.png"
    fig.savefig(target, dpi=FIGURE_DPI, bbox_inches="tight", metadata={"Software": None})
    return target


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
    """Show ``image`` (H, W, 3) on ``ax`` with corners ``boxes`` (K, 4) and optional labels/scores."""
    ax.imshow(np.asarray(image).astype(np.uint8))
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    if normalized:
        height, width = np.asarray(image).shape[:2]
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


def _subplots(num_panels: int, columns: int, panel_width: float, panel_height: float):
    """``(figure, flat list of axes)`` for a grid of ``num_panels`` (unused axes hidden)."""
    import matplotlib.pyplot as plt

    columns = max(1, min(columns, num_panels))
    rows = -(-num_panels // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(panel_width * columns, panel_height * rows),
                                squeeze=False, layout="constrained")
    axes = list(axes.flat)
    for axis in axes[num_panels:]:
        axis.set_visible(False)
    return figure, axes[:num_panels]


def _add_boxes(ax, boxes: np.ndarray, captions: Sequence[str] | None, color: str, linestyle: str = "-") -> None:
    """Draw pixel corners ``boxes`` (K, 4) on ``ax`` with optional captions above them."""
    from matplotlib.patches import Rectangle

    for index, (xmin, ymin, xmax, ymax) in enumerate(np.asarray(boxes, dtype=float).reshape(-1, 4)):
        ax.add_patch(Rectangle((xmin, ymin), xmax - xmin, ymax - ymin, fill=False, edgecolor=color,
                               linewidth=1.2, linestyle=linestyle))
        if captions is not None and captions[index]:
            ax.text(xmin, ymin - 1, captions[index], color="black", fontsize=6, va="bottom", clip_on=True,
                    bbox=dict(facecolor=color, alpha=0.7, pad=1, linewidth=0))
