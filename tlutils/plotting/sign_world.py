"""Figures of the data: the sign world (gallery, table of signs), records with their boxes, box statistics.

Boxes are coloured by superclass (:data:`SUPERCLASS_COLOURS`). ``python -m tlutils.plotting.sign_world``
regenerates the sign-world figures of notebook 01. The data modules, pandas and seaborn are imported
inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from tlutils.plotting.core import _add_boxes, _show_image, _subplots, save_figure

__all__ = ["SUPERCLASS_COLOURS", "UNKNOWN_COLOR", "box_table", "plot_box_sizes", "plot_box_statistics",
           "save_gallery", "save_sign_table", "show_records"]

#: Box colours of the superclasses in figures.
SUPERCLASS_COLOURS = {"prohibitory": "#e41a1c", "danger": "#ff7f00", "mandatory": "#377eb8", "other": "#4daf4a"}
#: Box colour of a box without a superclass.
UNKNOWN_COLOR = "#999999"


def show_records(records: Sequence[Any], columns: int = 4, panel_size: float = 3.0, captions: bool = True):
    """Images of ``records`` (``DetectionRecord`` s) with their boxes, coloured by superclass.

    Boxes are the records' pixel corners, captioned with their class names (``captions=False``: no
    text). Each panel is titled with the image file name and its number of boxes.
    """
    from tlutils.data.records import load_image

    records = list(records)
    if not records:
        raise ValueError("show_records needs at least one record")
    aspect = records[0].height / records[0].width
    figure, axes = _subplots(len(records), columns, panel_size, panel_size * aspect + 0.3)
    for ax, record in zip(axes, records):
        _show_image(ax, load_image(record))
        for index, box in enumerate(record.boxes):
            color = SUPERCLASS_COLOURS.get(record.superclasses[index], UNKNOWN_COLOR)
            _add_boxes(ax, box[None], [record.class_names[index]] if captions else None, color)
        boxes = "1 box" if record.num_boxes == 1 else f"{record.num_boxes} boxes"
        ax.set_title(f"{Path(record.image_path).name}: {boxes}", fontsize=8)
        ax.set_axis_off()
    return figure


def box_table(datasets: Mapping[str, Any]) -> Any:
    """One row per box of every dataset: a ``pandas.DataFrame`` for box statistics.

    Args:
        datasets: name -> ``DetectionDataset`` (or any sequence of ``DetectionRecord``).

    Returns:
        Columns ``dataset``, ``image`` (index in its dataset), ``class_name``, ``superclass``,
        ``width_px``, ``height_px``, ``side_px`` (``sqrt(width * height)``), ``relative_side``
        (``side_px`` over the image's ``sqrt(W * H)``: the box's size once the image is warped to any
        square model input) and ``aspect`` (width / height).
    """
    import pandas as pd

    frames = []
    for name, dataset in datasets.items():
        for index, record in enumerate(dataset):
            if record.num_boxes == 0:
                continue
            width = record.boxes[:, 2] - record.boxes[:, 0]
            height = record.boxes[:, 3] - record.boxes[:, 1]
            side = np.sqrt(width * height)
            frames.append(pd.DataFrame({
                "dataset": name, "image": index, "class_name": record.class_names,
                "superclass": [s or "unknown" for s in record.superclasses],
                "width_px": width, "height_px": height, "side_px": side,
                "relative_side": side / np.sqrt(record.width * record.height), "aspect": width / height,
            }))
    columns = ["dataset", "image", "class_name", "superclass", "width_px", "height_px", "side_px",
               "relative_side", "aspect"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def plot_box_statistics(datasets: Mapping[str, Any]):
    """Three panels per dataset: box side in pixels, box side relative to the image, boxes per image."""
    import pandas as pd
    import seaborn as sns

    table = box_table(datasets)
    per_image = pd.DataFrame([{"dataset": name, "boxes": record.num_boxes}
                              for name, dataset in datasets.items() for record in dataset])
    order = list(datasets)
    figure, axes = _subplots(3, 3, 4.6, 3.6)
    sns.boxplot(data=table, x="side_px", y="dataset", order=order, ax=axes[0], fliersize=1.5, log_scale=True)
    axes[0].set(title="box side sqrt(w h), pixels of the image", xlabel="pixels (log scale)", ylabel="")
    sns.boxplot(data=table, x="relative_side", y="dataset", order=order, ax=axes[1], fliersize=1.5,
                log_scale=True)
    axes[1].set(title="box side / image side", xlabel="fraction (log scale)", ylabel="")
    sns.histplot(data=per_image, x="boxes", hue="dataset", hue_order=order, stat="probability",
                 common_norm=False, discrete=True, multiple="dodge", shrink=0.85, ax=axes[2])
    axes[2].set(title="boxes per image", xlabel="boxes in the image", ylabel="share of images")
    return figure


def plot_box_sizes(datasets: Mapping[str, Any], marks: Mapping[str, float] | None = None, bins: int = 30):
    """A histogram of box sides ``sqrt(w h)`` in pixels of their images (log scale), a step line per dataset.

    Args:
        datasets: name -> ``DetectionDataset`` (or any sequence of ``DetectionRecord``); each line is the
            percentage of that dataset's boxes, so sets of any size compare.
        marks: label -> pixels, drawn as labelled dashed vertical lines (e.g. the detector's smallest
            default box in a tile at native resolution).

    Raises:
        ValueError: the datasets hold no box.
    """
    import seaborn as sns

    table = box_table(datasets)
    if table.empty:
        raise ValueError("plot_box_sizes: the datasets hold no box")
    figure, (ax,) = _subplots(1, 1, 7.0, 3.6)
    sns.histplot(data=table, x="side_px", hue="dataset", hue_order=list(datasets), bins=bins, log_scale=True,
                 element="step", fill=False, stat="percent", common_norm=False, ax=ax)
    for label, pixels in (marks or {}).items():
        ax.axvline(pixels, color="#444444", linestyle="--", linewidth=1)
        ax.annotate(label, (pixels, 1.0), xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right",
                    fontsize=7, color="#444444")
    ax.set(title="box side sqrt(w h), pixels of the image", xlabel="pixels (log scale)", ylabel="% of the boxes")
    return figure


def _new_figure(width: float, height: float):  # -> matplotlib.figure.Figure
    """A figure outside pyplot (no global state, no GUI backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | Path | None, default_name: str) -> Path:
    """Save with :func:`save_figure` (fixed dpi); ``None`` = the project's figures/."""
    if path is None:
        return save_figure(figure, default_name)
    path = Path(path)
    if path.suffix not in ("", ".png"):
        raise ValueError(f"figures are written as PNG; got {path.name!r}, use a name ending in .png")
    return save_figure(figure, path.stem, path.parent)


def save_gallery(path: str | Path | None = None, countries: Sequence[str] | None = None,
                 per_country: int = 4, image_size: int = 300, seed: int = 0) -> Path:
    """Save a grid of scenes (rows = countries) with their boxes, class names and superclass colours.

    The scenes are images ``0..per_country-1`` of ``generate(country, ..., seed=seed,
    image_size=image_size)``. ``path`` defaults to ``figures/01_sign_world_gallery.png`` of the
    project. Returns the path written.
    """
    from tlutils.data.synth import COUNTRIES, COUNTRY_SHIFT, SIGN_CLASSES, country_style, image_rng, render_scene
    from tlutils.data.synth.scene import check_image_size, check_int

    names = [country_style(c).name for c in (countries or list(COUNTRIES))]
    per_country = check_int("per_country", per_country, 1, 32)
    size = check_image_size(image_size)
    figure = _new_figure(2.6 * per_country, 2.75 * len(names))
    axes = figure.subplots(len(names), per_country, squeeze=False)
    for row, country in enumerate(names):
        for column in range(per_country):
            pixels, boxes, labels = render_scene(country, image_rng(seed, country, column), size)
            axis = axes[row, column]
            _show_image(axis, pixels)
            for box, label in zip(boxes, labels):
                sign = SIGN_CLASSES[label - 1]
                # pixel edges: imshow centres pixel i on i, so its left edge is at i - 0.5
                _add_boxes(axis, np.asarray(box, dtype=float) - 0.5, [sign.name], SUPERCLASS_COLOURS[sign.superclass])
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(f"{country} ({COUNTRY_SHIFT[country]})", fontsize=10)
    figure.suptitle(f"The embedded sign world: {size} px scenes, boxes coloured by superclass", fontsize=11)
    return _save(figure, path, "01_sign_world_gallery")


def save_sign_table(path: str | Path | None = None, countries: Sequence[str] | None = None,
                    height: int = 96) -> Path:
    """Save a table of every class (columns) as each country draws it (rows; "absent" where it has none).

    ``path`` defaults to ``figures/01_sign_classes.png`` of the project. Returns the path written.
    """
    from tlutils.data.synth import COUNTRIES, COUNTRY_SHIFT, SIGN_CLASSES, country_style, render_sign

    names = [country_style(c).name for c in (countries or list(COUNTRIES))]
    figure = _new_figure(1.05 * len(SIGN_CLASSES) + 1.2, 1.25 * len(names) + 0.9)
    axes = figure.subplots(len(names), len(SIGN_CLASSES), squeeze=False)
    for row, country in enumerate(names):
        for column, sign in enumerate(SIGN_CLASSES):
            axis = axes[row, column]
            axis.set_facecolor("#d9d9d9")
            axis.imshow(np.zeros((height, height, 4), dtype=np.uint8), aspect="equal")  # one square frame per cell
            if sign.id in COUNTRIES[country].classes:
                drawing = render_sign(country, sign.id, height)
                left, top = (height - drawing.shape[1]) / 2, (height - drawing.shape[0]) / 2
                axis.imshow(drawing, extent=(left - 0.5, left + drawing.shape[1] - 0.5,
                                             top + drawing.shape[0] - 0.5, top - 0.5), aspect="equal")
                axis.set_xlim(-0.5, height - 0.5)
                axis.set_ylim(height - 0.5, -0.5)
            else:
                axis.text(0.5, 0.5, "absent", ha="center", va="center", fontsize=7, color="#777777",
                          transform=axis.transAxes)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(f"{sign.id} {sign.name}\n({sign.superclass})", fontsize=6.5)
            if column == 0:
                axis.set_ylabel(f"{country}\n({COUNTRY_SHIFT[country]})", fontsize=9)
    return _save(figure, path, "01_sign_classes")


if __name__ == "__main__":  # python -m tlutils.plotting.sign_world: regenerate the figures of notebook 01
    print(save_gallery())
    print(save_sign_table())
