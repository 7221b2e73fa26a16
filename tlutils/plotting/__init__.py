"""Plotting helpers: figures are written by code with stable names and a fixed dpi, never by hand.

- ``core``        :data:`LABELS` / :func:`label_of` (the human label of a results column: "val mAP@0.5",
  not ``val_map50``), :func:`save_figure`, :data:`FIGURE_DPI`, :func:`course_figures_dir`, :func:`draw_boxes`
- ``captions``    box captions that stay readable and inside the image (``BoxCaption``)
- ``sign_world``  the data: sign-world gallery and sign table, records with boxes, box statistics
- ``model``       default boxes, feature maps, parameters per block, matched anchors, detections (also
  tiled, on whole frames)
- ``results``     training histories, transfer studies, loss components, speed, freeze depth

``save_figure(fig, "05_transfer_map_vs_images")`` writes ``figures/05_transfer_map_vs_images.png``.
Boxes are corners ``(xmin, ymin, xmax, ymax)``, in pixels unless ``normalized=True``; images are drawn
with square pixels (``aspect="equal"``), and panels that compare the same quantity share a y-scale
(``core.QUANTITIES``). Heavy imports (matplotlib, seaborn, keras, the model and data modules) happen
inside the functions, so importing this package stays cheap.
"""

from tlutils.plotting.core import FIGURE_DPI, LABELS, course_figures_dir, draw_boxes, label_of, save_figure
from tlutils.plotting.model import (
    plot_anchors,
    plot_feature_maps,
    plot_matched_anchors,
    plot_parameters_per_block,
    show_detections,
    show_tiled_detections,
)
from tlutils.plotting.results import (
    plot_freeze_depth,
    plot_history,
    plot_loss_components,
    plot_loss_vs_map,
    plot_map_by_shift,
    plot_map_vs_images,
    plot_training_speed,
)
from tlutils.plotting.sign_world import (
    SUPERCLASS_COLOURS,
    UNKNOWN_COLOR,
    box_table,
    plot_box_sizes,
    plot_box_statistics,
    save_gallery,
    save_sign_table,
    show_records,
)

__all__ = [
    "FIGURE_DPI",
    "LABELS",
    "SUPERCLASS_COLOURS",
    "UNKNOWN_COLOR",
    "box_table",
    "course_figures_dir",
    "draw_boxes",
    "label_of",
    "plot_anchors",
    "plot_box_sizes",
    "plot_box_statistics",
    "plot_feature_maps",
    "plot_freeze_depth",
    "plot_history",
    "plot_loss_components",
    "plot_loss_vs_map",
    "plot_map_by_shift",
    "plot_map_vs_images",
    "plot_matched_anchors",
    "plot_parameters_per_block",
    "plot_training_speed",
    "save_figure",
    "save_gallery",
    "save_sign_table",
    "show_detections",
    "show_records",
    "show_tiled_detections",
]
