"""Figures of the model: default boxes per layer, feature maps, parameters per block, matching, detections
(on the detector's input, and on whole frames by tiled inference).

Each function returns a pyplot figure (shown inline by Jupyter at the end of the cell); save it with
``save_figure``. Keras, the model and data modules are imported inside the functions.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tlutils.plotting.core import _add_boxes, _show_image, _subplots

__all__ = ["plot_anchors", "plot_feature_maps", "plot_matched_anchors", "plot_parameters_per_block",
           "show_detections", "show_tiled_detections"]


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
        _show_image(ax, image)
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
            ax.imshow(panel, cmap="viridis", aspect="equal")
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
    _show_image(ax, image)
    _add_boxes(ax, corners[class_targets == -1], None, "#bbbbbb", linestyle=":")
    _add_boxes(ax, corners[class_targets > 0], None, "yellow")
    _add_boxes(ax, np.asarray(gt_boxes, dtype=float) * scale, None, "lime")
    ax.set_title(f"{int((class_targets > 0).sum())} positive anchors (yellow), "
                 f"{int((class_targets == -1).sum())} ignored (dotted)", fontsize=9)
    ax.set_axis_off()
    return figure


def show_detections(detector: Any, dataset: Any, score_threshold: float = 0.3, max_images: int = 6,
                    columns: int = 3, panel_size: float = 3.0, max_per_image: int = 10,
                    smallest_scale: float | None = None):
    """The detector's detections (lime, ``class score``) and the ground truth (white, dashed) on a few images.

    Args:
        detector: an SSD from ``tlutils.model.build_ssd_vgg16`` (or ``tlutils.transfer.load_detector``).
        dataset: a ``DetectionDataset``; its first ``max_images`` images are shown, resized to the
            detector's input. Its classes, numbered as the experiment runner does
            (``make_label_map(dataset.classes)``), name the detector's classes.
        score_threshold: detections scoring below this are not drawn (mAP uses all of them).
        max_per_image: at most this many detections are drawn per image, the best first (an untrained
            detector has hundreds above any threshold).
        smallest_scale: the smallest default box the detector was trained with (its run's
            ``RunConfig.smallest_scale``; ``None``: SSD's 0.1): its boxes are decoded against those anchors.
    """
    from tlutils.anchors import generate_anchors
    from tlutils.data.pipeline import DetectionSequence, ground_truths_for_eval, make_label_map
    from tlutils.decoding import decode_detections
    from tlutils.model import anchor_config_for

    records = dataset[:max_images]
    anchors = generate_anchors(anchor_config_for(detector, smallest_scale))
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
        _show_image(ax, image)
        _add_boxes(ax, truth["boxes"] * size, None, "white", linestyle="--")
        _add_boxes(ax, found["boxes"][keep] * size, captions, "lime")
        signs = "1 sign" if len(truth["boxes"]) == 1 else f"{len(truth['boxes'])} signs"
        drawn = "1 detection" if keep.sum() == 1 else f"{int(keep.sum())} detections"
        ax.set_title(f"{drawn} >= {score_threshold:g} drawn, {signs}", fontsize=8)
        ax.set_axis_off()
    return figure


def show_tiled_detections(detector: Any, records: Sequence[Any], class_names: dict[int, str] | None = None,
                          score_threshold: float = 0.3, max_images: int = 4, columns: int = 2,
                          panel_size: float = 4.5, max_per_image: int = 20, overlap: float | None = None,
                          scales: Sequence[float] | None = None, show_tiles: bool = True,
                          smallest_scale: float | None = None):
    """Detections on **whole frames** by tiled inference (``tlutils.tiling.detect_tiled``): detections in lime
    (``class score``), ground truth in white (dashed), the tiles of the first scale in faint yellow.

    Frames keep their own size; the detector sees them tile by tile, at native resolution (scale 1)
    and shrunk (scale < 1), as the experiment runner evaluates real data.

    Args:
        detector: an SSD (``tlutils.transfer.load_detector``); its input side is the tile size.
        records: ``DetectionRecord`` s of the frames, or a ``DetectionDataset``; the first ``max_images``
            are shown.
        class_names: model class (``1..C``) -> name; ``None``: from the dataset's classes numbered as the
            runner numbers them (``make_label_map(dataset.classes)``) when ``records`` is a
            ``DetectionDataset``, else the class numbers.
        score_threshold, max_per_image: detections scoring below the threshold are not drawn, and at most
            ``max_per_image`` per frame, the best first.
        overlap, scales: the tiles (``tlutils.tiling.tile_grid``); ``None``: what the runner evaluates real
            data with (``tlutils.experiment.run_data.REAL_TILE_SCALES``, an overlap of
            ``REAL_TILE_OVERLAP_SHARE`` of the input side).
        smallest_scale: the smallest default box the detector was trained with (see :func:`show_detections`).
    """
    from tlutils.anchors import generate_anchors
    from tlutils.data.pipeline import make_label_map
    from tlutils.data.records import load_image
    from tlutils.experiment.run_data import REAL_TILE_OVERLAP_SHARE, REAL_TILE_SCALES
    from tlutils.model import anchor_config_for
    from tlutils.tiling import detect_tiled, tile_grid

    frames = list(records)[:max_images]
    if not frames:
        raise ValueError("show_tiled_detections needs at least one record")
    if class_names is None and hasattr(records, "classes"):
        class_names = {model_class: records.classes[class_id]
                       for class_id, model_class in make_label_map(records.classes).items()}
    class_names = class_names or {}
    size = int(detector.input_shape[1])
    overlap = round(REAL_TILE_OVERLAP_SHARE * size) if overlap is None else overlap
    scales = tuple(REAL_TILE_SCALES if scales is None else scales)
    anchors = np.asarray(generate_anchors(anchor_config_for(detector, smallest_scale)), dtype=np.float32)
    aspect = frames[0].height / frames[0].width
    figure, axes = _subplots(len(frames), columns, panel_size, panel_size * aspect + 0.3)
    for ax, record in zip(axes, frames):
        image = load_image(record)
        found = detect_tiled(detector.predict_on_batch, image, anchors, size, overlap=overlap, scales=scales)
        keep = np.flatnonzero(found["scores"] >= score_threshold)[:max_per_image]  # sorted by score already
        frame = np.array([record.width, record.height] * 2, dtype=float)
        captions = [f"{class_names.get(int(label), int(label))} {score:.2f}"
                    for label, score in zip(found["labels"][keep], found["scores"][keep])]
        _show_image(ax, image)
        if show_tiles:
            tiles = tile_grid(record.width, record.height, size, overlap, scales[:1])
            _add_boxes(ax, tiles, None, "#ffff0066", linestyle=":")
        _add_boxes(ax, record.boxes, None, "white", linestyle="--")
        _add_boxes(ax, found["boxes"][keep] * frame, captions, "lime")
        signs = "1 sign" if record.num_boxes == 1 else f"{record.num_boxes} signs"
        drawn = "1 detection" if len(keep) == 1 else f"{len(keep)} detections"
        ax.set_title(f"{drawn} >= {score_threshold:g} drawn, {signs}; {record.width}x{record.height} px",
                     fontsize=8)
        ax.set_axis_off()
    return figure
