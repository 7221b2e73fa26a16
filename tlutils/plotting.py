"""Plotting helpers: figures are written by code with stable names and a fixed dpi, never by hand.

``save_figure(fig, "05_transfer_map_vs_images")`` writes ``figures/05_transfer_map_vs_images.png``.
Boxes passed to the drawing helpers are corners ``(xmin, ymin, xmax, ymax)``, in pixels unless
``normalized=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from tlutils.paths import figures_dir

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
    for index, (xmin, ymin, xmax, ymax) in enumerate(boxes):
        ax.add_patch(_rectangle(xmin, ymin, xmax, ymax, color))
        caption = _caption(index, labels, class_names, scores)
        if caption:
            ax.text(xmin, ymin - 1, caption, color="black", fontsize=6, va="bottom",
                    bbox=dict(facecolor=color, alpha=0.7, pad=1, linewidth=0))
    ax.set_axis_off()


def _rectangle(xmin: float, ymin: float, xmax: float, ymax: float, color: str):
    from matplotlib.patches import Rectangle

    return Rectangle((xmin, ymin), xmax - xmin, ymax - ymin, fill=False, edgecolor=color, linewidth=1.2)


def _caption(index: int, labels, class_names, scores) -> str:
    parts = []
    if labels is not None:
        label = int(labels[index])
        parts.append(class_names.get(label, str(label)) if class_names else str(label))
    if scores is not None:
        parts.append(f"{float(scores[index]):.2f}")
    return " ".join(parts)
