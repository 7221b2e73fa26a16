"""Plotting helpers: figures are written by code with stable names and a fixed dpi, never by hand.

``save_figure(fig, "05_transfer_map_vs_images")`` writes ``figures/05_transfer_map_vs_images.png``.
Boxes passed to the drawing helpers are corners ``(xmin, ymin, xmax, ymax)``, in pixels unless
``normalized=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

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


# ------------------------------------------------------------------------------------------------
# Course figures: one function per figure kind of the notebooks. Each returns a pyplot figure (shown
# inline by Jupyter at the end of the cell); save it with ``save_figure``. Heavy imports (seaborn,
# keras, the model and data modules) happen inside the functions, so importing this module stays cheap.
# ------------------------------------------------------------------------------------------------

#: Box colour of a box without a superclass (the others: ``tlutils.data.synth.SUPERCLASS_COLOURS``).
UNKNOWN_COLOR = "#999999"
#: Order of the transfer strategies in legends and tables (``tlutils.transfer``), scratch first.
STRATEGY_ORDER = ("scratch", "imagenet", "freeze:block1", "freeze:block2", "freeze:block3", "freeze:block4",
                  "freeze:block5", "freeze:fc", "freeze:extras", "finetune", "two_stage", "head_only")


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


def show_records(records: Sequence[Any], columns: int = 4, panel_size: float = 3.0, captions: bool = True):
    """Images of ``records`` (``DetectionRecord`` s) with their boxes, coloured by superclass.

    Boxes are the records' pixel corners, captioned with their class names (``captions=False``: no
    text). Each panel is titled with the image file name and its number of boxes.
    """
    from tlutils.data.records import load_image
    from tlutils.data.synth import SUPERCLASS_COLOURS

    records = list(records)
    if not records:
        raise ValueError("show_records needs at least one record")
    aspect = records[0].height / records[0].width
    figure, axes = _subplots(len(records), columns, panel_size, panel_size * aspect + 0.3)
    for ax, record in zip(axes, records):
        ax.imshow(load_image(record))
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


def plot_anchors(image: np.ndarray, config: Any, max_grid_points: int = 400):
    """One panel per prediction layer: the default boxes of the cell at the image centre and the cell grid.

    Args:
        image: ``(S, S, 3)`` uint8, the model's input (``S = config.image_size``).
        config: a ``tlutils.anchors.AnchorConfig``.
        max_grid_points: cell centres are drawn as dots when the layer has at most this many cells.
    """
    from keras import ops

    from tlutils.anchors import generate_anchors
    from tlutils.boxes import to_corners

    anchors = generate_anchors(config)
    size = config.image_size
    figure, axes = _subplots(len(config.feature_map_sizes), 3, 3.2, 3.4)
    start = 0
    for layer, (ax, cells, boxes) in enumerate(zip(axes, config.feature_map_sizes, config.boxes_per_cell)):
        layer_anchors = anchors[start : start + cells * cells * boxes].reshape(cells, cells, boxes, 4)
        start += cells * cells * boxes
        centre = cells // 2
        corners = ops.convert_to_numpy(to_corners(layer_anchors[centre, centre])) * size
        ax.imshow(np.asarray(image).astype(np.uint8))
        if cells * cells <= max_grid_points:
            grid = layer_anchors[:, :, 0, :2].reshape(-1, 2) * size
            ax.scatter(grid[:, 0], grid[:, 1], s=2, c="white")
        _add_boxes(ax, corners, None, "yellow")
        ax.set_xlim(-0.25 * size, 1.25 * size)
        ax.set_ylim(1.25 * size, -0.25 * size)
        ax.set_title(f"layer {layer}: {cells}x{cells} cells, {boxes} boxes/cell\nscale {config.scales[layer]:.2f}",
                     fontsize=8)
        ax.set_axis_off()
    return figure


def plot_parameters_per_block(summary: Any):
    """Stacked horizontal bars of trainable and frozen parameters per block (``trainable_summary``)."""
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6.5, 3.2), layout="constrained")
    blocks = list(summary["block"])[::-1]
    trainable = np.asarray(summary["trainable"], dtype=float)[::-1] / 1e6
    frozen = np.asarray(summary["frozen"], dtype=float)[::-1] / 1e6
    ax.barh(blocks, trainable, color="#377eb8", label="trainable")
    ax.barh(blocks, frozen, left=trainable, color="#bbbbbb", label="frozen")
    ax.set(xlabel="parameters (millions)", title="parameters per block")
    ax.set_xlim(0, 1.05 * float((trainable + frozen).max()))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def plot_feature_maps(model: Any, image: np.ndarray, layer_names: Sequence[str], channels: int = 4):
    """For each layer in ``layer_names`` (rows): ``channels`` of its feature maps on ``image`` (columns).

    The first panel of a row is the mean over all channels; titles give the map's shape.
    """
    import keras

    probe = keras.Model(model.input, [model.get_layer(name).output for name in layer_names])
    outputs = probe(np.asarray(image, dtype=np.float32)[None], training=False)
    outputs = outputs if len(layer_names) > 1 else [outputs]
    outputs = [keras.ops.convert_to_numpy(output)[0] for output in outputs]
    figure, axes = _subplots(len(layer_names) * (channels + 1), channels + 1, 1.7, 1.8)
    for row, (name, maps) in enumerate(zip(layer_names, outputs)):
        panels = [maps.mean(axis=-1)] + [maps[..., c] for c in range(min(channels, maps.shape[-1]))]
        for column, panel in enumerate(panels):
            ax = axes[row * (channels + 1) + column]
            ax.imshow(panel, cmap="viridis")
            ax.set_axis_off()
            shape = "x".join(str(size) for size in maps.shape)
            ax.set_title(f"{name} {shape}\nmean" if column == 0 else f"channel {column - 1}", fontsize=7)
    return figure


def plot_matched_anchors(image: np.ndarray, gt_boxes: np.ndarray, anchors: np.ndarray, class_targets: np.ndarray):
    """The result of matching on one image: ground truth (lime), positive anchors (yellow), ignored (grey).

    Args:
        image: ``(S, S, 3)`` the model's input.
        gt_boxes: ``(G, 4)`` normalized corners.
        anchors: ``(A, 4)`` normalized centroids (``generate_anchors``).
        class_targets: ``(A,)`` from ``tlutils.encoding.encode``: ``> 0`` positive, ``-1`` ignored.
    """
    import matplotlib.pyplot as plt
    from keras import ops

    from tlutils.boxes import to_corners

    height, width = np.asarray(image).shape[:2]
    scale = np.array([width, height, width, height], dtype=float)
    corners = ops.convert_to_numpy(to_corners(np.asarray(anchors, dtype=np.float32))) * scale
    class_targets = np.asarray(class_targets)
    figure, ax = plt.subplots(figsize=(5, 5), layout="constrained")
    ax.imshow(np.asarray(image).astype(np.uint8))
    _add_boxes(ax, corners[class_targets == -1], None, "#bbbbbb", linestyle=":")
    _add_boxes(ax, corners[class_targets > 0], None, "yellow")
    _add_boxes(ax, np.asarray(gt_boxes, dtype=float) * scale, None, "lime")
    ax.set_title(f"{int((class_targets > 0).sum())} positive anchors (yellow), "
                 f"{int((class_targets == -1).sum())} ignored (dotted)", fontsize=9)
    ax.set_axis_off()
    return figure


# ------------------------------------------------------------------------------------------------
# Training runs and transfer studies: figures from the experiment runner's results table
# (``tlutils.experiment.RESULT_COLUMNS``: one row per run and epoch).
# ------------------------------------------------------------------------------------------------


def strategy_labels(results: Any) -> Any:
    """The ``strategy`` column as one label per row: ``"freeze:block3"`` for the freeze strategy, else the name."""
    import pandas as pd

    points = results["freeze_point"] if "freeze_point" in results else pd.Series(None, index=results.index)
    return pd.Series([f"freeze:{point}" if strategy == "freeze" and isinstance(point, str) else strategy
                      for strategy, point in zip(results["strategy"], points)], index=results.index, name="strategy")


def _ordered(labels: Any) -> list[str]:
    """Strategy labels in :data:`STRATEGY_ORDER`, unknown ones last."""
    present = list(dict.fromkeys(labels))
    return sorted(present, key=lambda label: (STRATEGY_ORDER.index(label) if label in STRATEGY_ORDER
                                              else len(STRATEGY_ORDER), label))


def final_epochs(results: Any) -> Any:
    """The last epoch's row of every run (``run_key``), ``strategy`` as one label (:func:`strategy_labels`)."""
    table = results.assign(strategy=strategy_labels(results))
    return table.loc[table.groupby("run_key")["epoch"].idxmax()].reset_index(drop=True)


def plot_history(results: Any, metrics: Sequence[str] = ("loss", "val_loss", "val_map50"),
                 hue: str | None = "strategy", x: str = "epoch"):
    """One panel per metric against ``x``, a line per value of ``hue`` (mean over seeds, band = std).

    Args:
        results: rows of the results table (``run``, ``sweep`` or ``load_results``).
        metrics: columns to plot, e.g. ``("loss", "regularization", "val_map50")``.
        hue: column that tells the lines apart (``"strategy"``, ``"learning_rate"``, ...); ``None``: one line.
        x: ``"epoch"`` or ``"step"``.
    """
    import seaborn as sns

    table = results.assign(strategy=strategy_labels(results)) if "strategy" in results else results.copy()
    order = None
    if hue is not None:
        if hue == "strategy":
            order = _ordered(table[hue])
        else:
            table[hue] = [f"{value:g}" if isinstance(value, float) else str(value) for value in table[hue]]
            order = list(dict.fromkeys(table.sort_values(hue)[hue]))
    figure, axes = _subplots(len(metrics), 3, 4.0, 3.2)
    for index, (ax, metric) in enumerate(zip(axes, metrics)):
        sns.lineplot(data=table, x=x, y=metric, hue=hue, hue_order=order, marker="o", errorbar="sd", ax=ax,
                     legend=index == len(metrics) - 1)
        ax.set_title(metric)
    if hue is not None and len(order) > 0:
        sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.02, 1.0), title=hue)
    return figure


def show_detections(detector: Any, dataset: Any, score_threshold: float = 0.3, max_images: int = 6,
                    columns: int = 3, panel_size: float = 3.0, max_per_image: int = 10):
    """The detector's detections (lime, ``class score``) and the ground truth (white, dashed) on a few images.

    Args:
        detector: an SSD from ``tlutils.model.build_ssd_vgg16`` (or ``tlutils.transfer.load_detector``).
        dataset: a ``DetectionDataset``; its first ``max_images`` images are shown, resized to the
            detector's input. Its classes, numbered as the experiment runner does
            (``make_label_map(dataset.classes)``), name the detector's classes.
        score_threshold: detections scoring below this are not drawn (mAP uses all of them).
        max_per_image: at most this many detections are drawn per image, the best first (an untrained
            detector has hundreds above any threshold).
    """
    from tlutils.anchors import generate_anchors
    from tlutils.data.pipeline import DetectionSequence, ground_truths_for_eval, make_label_map
    from tlutils.decoding import decode_detections
    from tlutils.model import anchor_config_for

    records = dataset[:max_images]
    anchors = generate_anchors(anchor_config_for(detector))
    size = int(detector.input_shape[1])
    label_map = make_label_map(dataset.classes)
    names = {model_class: dataset.classes[class_id] for class_id, model_class in label_map.items()}
    sequence = DetectionSequence(records, anchors, label_map, batch_size=len(records), input_size=size, shuffle=False)
    images, _ = sequence[0]
    outputs = detector(images, training=False)
    detections = decode_detections(outputs["class_logits"], outputs["box_offsets"], anchors)
    figure, axes = _subplots(len(records), columns, panel_size, panel_size + 0.3)
    for ax, image, found, truth in zip(axes, images, detections, ground_truths_for_eval(sequence)):
        keep = np.asarray(found["scores"]) >= score_threshold  # scores come sorted, best first
        keep[max_per_image:] = False
        captions = [f"{names.get(int(label), label)} {score:.2f}"
                    for label, score in zip(found["labels"][keep], found["scores"][keep])]
        ax.imshow(image.astype(np.uint8))
        _add_boxes(ax, truth["boxes"] * size, None, "white", linestyle="--")
        _add_boxes(ax, found["boxes"][keep] * size, captions, "lime")
        signs = "1 sign" if len(truth["boxes"]) == 1 else f"{len(truth['boxes'])} signs"
        drawn = "1 detection" if keep.sum() == 1 else f"{int(keep.sum())} detections"
        ax.set_title(f"{drawn} >= {score_threshold:g} drawn, {signs}", fontsize=8)
        ax.set_axis_off()
    return figure


def _country_order(countries: Sequence[str]) -> list[str]:
    """Countries by their shift from the source (``tlutils.data.synth.COUNTRIES`` order), unknown ones last."""
    from tlutils.data.synth import COUNTRIES

    known = list(COUNTRIES)
    present = list(dict.fromkeys(countries))
    return sorted(present, key=lambda country: (known.index(country) if country in known else len(known), country))


def plot_map_vs_images(summary: Any, metric: str = "val_map50"):
    """mAP against the number of target images, a line per strategy, a panel per country.

    Args:
        summary: ``tlutils.experiment.summarize(results)`` (target rows): ``<metric>_mean`` and
            ``<metric>_std`` per country, strategy and number of images; error bars are the std over seeds.
    """
    from tlutils.data.synth import COUNTRY_SHIFT

    table = summary[summary["stage"] == "target"] if "stage" in summary else summary
    countries = _country_order(table["country"])
    figure, axes = _subplots(len(countries), len(countries), 4.0, 3.4)
    for ax, country in zip(axes, countries):
        rows = table[table["country"] == country]
        for strategy in _ordered(rows["strategy"]):
            line = rows[rows["strategy"] == strategy].sort_values("num_target_images")
            ax.errorbar(line["num_target_images"], line[f"{metric}_mean"], yerr=line[f"{metric}_std"], marker="o",
                        capsize=3, label=strategy)
        ax.set_xscale("log")
        sizes = sorted(rows["num_target_images"].unique())
        ax.set_xticks(sizes, [str(size) for size in sizes])
        ax.minorticks_off()
        ax.set(title=f"{country} ({COUNTRY_SHIFT.get(country, '?')} shift)", xlabel="target training images",
               ylabel=metric)
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), title="strategy")
    return figure


def plot_map_by_shift(summary: Any, num_target_images: int | None = None, metric: str = "val_map50"):
    """Grouped bars: ``metric`` per country (ordered by shift) and strategy, at one number of target images.

    ``num_target_images`` defaults to the largest in ``summary``. Error bars: std over seeds.
    """
    import matplotlib.pyplot as plt

    from tlutils.data.synth import COUNTRY_SHIFT

    table = summary[summary["stage"] == "target"] if "stage" in summary else summary
    size = int(num_target_images or table["num_target_images"].max())
    table = table[table["num_target_images"] == size]
    countries, strategies = _country_order(table["country"]), _ordered(table["strategy"])
    figure, ax = plt.subplots(figsize=(1.6 + 1.4 * len(countries) * max(1, len(strategies)) / 4, 3.6),
                              layout="constrained")
    width = 0.8 / max(1, len(strategies))
    for index, strategy in enumerate(strategies):
        rows = table[table["strategy"] == strategy].set_index("country").reindex(countries)
        ax.bar(np.arange(len(countries)) + (index - (len(strategies) - 1) / 2) * width, rows[f"{metric}_mean"],
               width, yerr=rows[f"{metric}_std"], capsize=2, label=strategy)
    ax.set_xticks(np.arange(len(countries)), [f"{c}\n({COUNTRY_SHIFT.get(c, '?')})" for c in countries])
    ax.set(ylabel=metric, title=f"{metric} by country shift, {size} target images")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), title="strategy")
    return figure


def plot_loss_components(results: Any):
    """Final training loss split into its parts per strategy (stacked), next to the final validation mAP.

    The stacked parts are ``localization``, ``confidence`` and ``regularization`` (the L2 penalty that
    Keras adds to the displayed ``loss``); means over seeds of each run's last epoch.
    """
    import matplotlib.pyplot as plt

    final = final_epochs(results)
    strategies = _ordered(final["strategy"])
    means = final.groupby("strategy")[["localization", "confidence", "regularization", "val_map50"]].mean()
    means = means.reindex(strategies)
    figure, axes = plt.subplots(1, 2, figsize=(3.0 + 1.1 * len(strategies), 3.6), layout="constrained")
    bottom = np.zeros(len(strategies))
    for part, color in (("localization", "#377eb8"), ("confidence", "#4daf4a"), ("regularization", "#999999")):
        axes[0].bar(strategies, means[part], bottom=bottom, color=color, label=part)
        bottom += np.asarray(means[part], dtype=float)
    axes[0].set(title="final training loss = sum of the parts", ylabel="loss")
    axes[0].legend()
    axes[1].bar(strategies, means["val_map50"], color="#ff7f00")
    axes[1].set(title="final validation mAP@0.5", ylabel="mAP")
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=30)
    return figure


def plot_loss_vs_map(results: Any):
    """Each run's final training loss and validation loss against its validation mAP, coloured by strategy."""
    import seaborn as sns

    final = final_epochs(results)
    order = _ordered(final["strategy"])
    figure, axes = _subplots(2, 2, 4.2, 3.4)
    for index, (ax, column) in enumerate(zip(axes, ("loss", "val_loss"))):
        sns.scatterplot(data=final, x=column, y="val_map50", hue="strategy", hue_order=order, s=50, ax=ax,
                        legend=index == 1)
        ax.set(title=f"final {column} vs validation mAP", xlabel=column, ylabel="val_map50")
    sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.02, 1.0))
    return figure


def training_speed(results: Any) -> Any:
    """Training speed per run and phase: the median over its epochs, the first epoch of a phase left out
    (it includes tracing the new training step) when the phase has more than one.

    Returns:
        A ``pandas.DataFrame`` with ``run_key``, ``strategy`` (one label), ``phase``, ``trainable_params``,
        ``images_per_s``, ``epoch_seconds`` and ``epochs`` (how many epochs the median is over).
    """
    import pandas as pd

    table = results.assign(strategy=strategy_labels(results)).sort_values(["run_key", "epoch"])
    rows = []
    for (key, phase), group in table.groupby(["run_key", "phase"], sort=False):
        steady = group.iloc[1:] if len(group) > 1 else group
        rows.append({"run_key": key, "strategy": group["strategy"].iloc[0], "phase": phase,
                     "trainable_params": int(group["trainable_params"].iloc[0]),
                     "images_per_s": float(steady["images_per_s"].median()),
                     "epoch_seconds": float(steady["epoch_seconds"].median()), "epochs": len(steady)})
    return pd.DataFrame(rows)


def plot_training_speed(speed: Any, total_params: int):
    """Images per second against the trainable share of the parameters (``training_speed``'s table)."""
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    share = speed["trainable_params"] / float(total_params)
    ax.scatter(share, speed["images_per_s"], s=40, color="#377eb8")
    for x, y, label, phase in zip(share, speed["images_per_s"], speed["strategy"], speed["phase"]):
        text = f"{label} ({phase})" if label == "two_stage" else label
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax.set(xlabel="trainable share of the parameters", ylabel="training images / s",
           title="does freezing speed up training?", xlim=(0, 1.05))
    ax.set_ylim(bottom=0)
    return figure


#: Freeze depths from shallow to deep: fine-tuning freezes nothing, ``head_only`` everything but the heads.
FREEZE_DEPTH_ORDER = ("finetune", "freeze:block1", "freeze:block2", "freeze:block3", "freeze:block4", "freeze:block5",
                      "freeze:fc", "freeze:extras", "head_only")


def plot_freeze_depth(summary: Any, metric: str = "val_map50"):
    """``metric`` against how deep the transferred detector is frozen (Yosinski et al.'s AnB curve).

    Args:
        summary: ``summarize(results)`` rows of one country and one number of target images; the
            strategies of :data:`FREEZE_DEPTH_ORDER` present form the curve and ``scratch``, when present,
            is drawn as a horizontal reference line. Error bars: std over seeds.
    """
    import matplotlib.pyplot as plt

    table = summary.set_index("strategy")
    depths = [label for label in FREEZE_DEPTH_ORDER if label in table.index]
    figure, ax = plt.subplots(figsize=(6.5, 3.6), layout="constrained")
    ax.errorbar(range(len(depths)), table.loc[depths, f"{metric}_mean"], yerr=table.loc[depths, f"{metric}_std"],
                marker="o", capsize=3, label="transferred from the source")
    if "scratch" in table.index:
        ax.axhline(table.loc["scratch", f"{metric}_mean"], color="grey", linestyle="--", label="scratch")
    ax.set_xticks(range(len(depths)), [label.replace("freeze:", "up to ") for label in depths], rotation=30)
    ax.set(xlabel="frozen part (shallow -> deep)", ylabel=metric, title="how deep to freeze?")
    ax.legend()
    return figure
