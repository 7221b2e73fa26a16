"""Figures a reader can trust: human labels for the results columns, one y-scale where panels compare the
same quantity, images with square pixels and box captions that are readable and lie inside the image.

Matplotlib's Agg backend; every figure is tiny, so the file runs in seconds.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from tlutils.experiment import RESULT_COLUMNS  # noqa: E402
from tlutils.plotting import (draw_boxes, plot_history, plot_loss_components, plot_loss_vs_map,  # noqa: E402
                              plot_map_vs_images, show_records)
from tlutils.plotting.captions import (LABEL_FONT_SHARE, LABEL_MAX_POINTS, LABEL_MIN_POINTS, BoxCaption,  # noqa: E402
                                       text_colour)
from tlutils.plotting.core import LABELS, label_of  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _results(strategies=("scratch", "finetune"), epochs=3) -> pd.DataFrame:
    """A results table of two strategies whose losses and mAPs live on different ranges."""
    rows = []
    for index, strategy in enumerate(strategies):
        for epoch in range(1, epochs + 1):
            rows.append({"run_key": f"run-{strategy}", "stage": "target", "strategy": strategy, "seed": 0,
                         "learning_rate": 0.001, "epoch": epoch, "step": 10 * epoch,
                         "loss": 20.0 - epoch - 5 * index, "val_loss": 8.0 - epoch, "localization": 2.0 - 0.1 * epoch,
                         "confidence": 4.0 - 0.2 * epoch, "regularization": 3.0 + index,
                         "val_map50": 0.1 * epoch + 0.3 * index})
    return pd.DataFrame(rows)


def _visible_axes(figure) -> list:
    return [axis for axis in figure.axes if axis.get_visible()]


# --- labels -------------------------------------------------------------------------------------------
def test_label_of_names_columns_for_humans():
    assert label_of("val_map50") == "val mAP@0.5"
    assert label_of("coco_map") == "COCO mAP@[.5:.95]"
    assert label_of("regularization") == "L2 term"
    assert label_of("step") == "optimizer steps"
    assert label_of("map50_small") == "mAP@0.5, small signs"
    assert label_of("val_map50_mean") == "val mAP@0.5 (mean over seeds)"
    assert label_of("some_new_column") == "some new column"


def test_every_measured_column_of_the_results_table_has_a_label():
    measured = RESULT_COLUMNS[RESULT_COLUMNS.index("loss"): RESULT_COLUMNS.index("trainable_params") + 1]
    missing = [column for column in measured if column != "map_metric" and column not in LABELS]
    assert not missing, f"give these results columns a label in tlutils.plotting.core.LABELS: {missing}"
    assert not [label for label in LABELS.values() if "_" in label]  # no column name slipped in as a label


def test_plot_history_labels_its_axes_and_legend_with_human_labels():
    figure = plot_history(_results(), metrics=["loss", "val_loss", "val_map50"], x="step")
    axes = _visible_axes(figure)
    assert [axis.get_ylabel() for axis in axes] == ["training loss", "validation loss", "val mAP@0.5"]
    assert {axis.get_xlabel() for axis in axes} == {"optimizer steps"}
    legend = axes[-1].get_legend()
    assert legend.get_title().get_text() == "strategy"
    assert [text.get_text() for text in legend.get_texts()] == ["scratch", "finetune"]  # strategies stay canonical
    figure = plot_history(_results(), metrics=["val_map50"], hue="learning_rate")
    assert figure.axes[0].get_legend().get_title().get_text() == "learning rate"


# --- shared scales ------------------------------------------------------------------------------------
def test_plot_history_shares_the_y_scale_of_panels_of_the_same_quantity_only():
    metrics = ["loss", "regularization", "val_loss", "val_map50"]
    loss, regularization, val_loss, val_map = _visible_axes(plot_history(_results(), metrics=metrics))
    assert loss.get_ylim() == regularization.get_ylim() == val_loss.get_ylim()  # every loss on one scale
    assert loss.get_ylim()[1] > 15  # the scale holds the largest loss
    assert val_map.get_ylim()[1] < 1.0  # mAP keeps its own
    loss, _, val_loss, _ = _visible_axes(plot_history(_results(), metrics=metrics, share_y=False))
    assert loss.get_ylim() != val_loss.get_ylim()


def test_plot_map_vs_images_puts_every_country_on_one_y_scale():
    rows = [{"country": country, "strategy": strategy, "num_target_images": size, "stage": "target",
             "val_map50_mean": top * size / 50, "val_map50_std": 0.01}
            for country, top in (("germany", 0.8), ("usa", 0.2)) for strategy in ("scratch", "finetune")
            for size in (10, 50)]
    germany, usa = _visible_axes(plot_map_vs_images(pd.DataFrame(rows)))
    assert germany.get_ylim() == usa.get_ylim() and germany.get_ylim()[1] > 0.8
    assert germany.get_ylabel() == "val mAP@0.5" and germany.get_xlabel() == "target images"


def test_plot_loss_vs_map_compares_both_losses_on_one_map_scale():
    results = _results(strategies=("scratch", "finetune", "head_only"))
    results.loc[results["strategy"] == "head_only", "val_loss"] = np.nan  # a point the right panel lacks
    training, validation = _visible_axes(plot_loss_vs_map(results))
    assert training.get_ylim() == validation.get_ylim()
    assert (training.get_xlabel(), validation.get_xlabel()) == ("training loss", "validation loss")
    assert training.get_ylabel() == "val mAP@0.5"


def test_plot_loss_components_names_the_parts():
    parts, val_map = _visible_axes(plot_loss_components(_results()))
    assert [text.get_text() for text in parts.get_legend().get_texts()] == ["localization loss", "confidence loss",
                                                                            "L2 term"]
    assert val_map.get_ylabel() == "val mAP@0.5"


# --- images and captions ------------------------------------------------------------------------------
def _drawn(figure):
    figure.canvas.draw()
    return figure.canvas.get_renderer()


def _captions(axis) -> list[BoxCaption]:
    return [text for text in axis.texts if isinstance(text, BoxCaption)]


def _assert_captions_inside_the_image(axis, renderer):
    image = axis.images[0].get_window_extent(renderer)
    drawn = []
    for caption in _captions(axis):
        box = caption.get_bbox_patch().get_window_extent(renderer)
        assert image.x0 - 0.5 <= box.x0 and box.x1 <= image.x1 + 0.5, caption.get_text()
        assert image.y0 - 0.5 <= box.y0 and box.y1 <= image.y1 + 0.5, caption.get_text()
        assert caption.get_fontsize() >= LABEL_MIN_POINTS or box.width >= image.width - 1  # readable, or as wide
        drawn.append(box)
    return drawn


def test_draw_boxes_keeps_a_wide_frame_undistorted_and_its_captions_inside_it():
    frame = np.zeros((80, 136, 3), dtype=np.uint8)  # GTSDB's 1360x800, a tenth of the size
    figure, axis = plt.subplots(figsize=(4, 4))  # a square panel: stretching would fill it
    boxes = [[128, 0, 136, 6],    # top right corner: no room above, none right of it
             [0, 74, 6, 80],      # bottom left corner
             [60, 30, 70, 40], [62, 28, 72, 38]]  # two boxes nearly on top of each other
    names = {1: "speed limit 70", 2: "priority at next intersection", 3: "bend", 4: "no overtaking"}
    draw_boxes(axis, frame, boxes, labels=[1, 2, 3, 4], class_names=names, scores=[0.9, 0.8, 0.7, 0.6])
    renderer = _drawn(figure)
    assert axis.get_aspect() == 1.0
    image = axis.images[0].get_window_extent(renderer)
    assert image.width / image.height == pytest.approx(136 / 80, rel=1e-3)  # square pixels
    drawn = _assert_captions_inside_the_image(axis, renderer)
    assert [caption.get_text() for caption in _captions(axis)] == ["speed limit 70 0.90",
                                                                    "priority at next intersection 0.80",
                                                                    "bend 0.70", "no overtaking 0.60"]
    assert not any(first.overlaps(second) for index, first in enumerate(drawn) for second in drawn[index + 1:])


def test_caption_font_scales_with_the_image_as_drawn_and_text_contrasts_with_its_box():
    sizes = []
    for inches in (3.0, 8.0):
        figure = plt.figure(figsize=(inches, inches))
        axis = figure.add_axes((0.0, 0.0, 1.0, 1.0))
        draw_boxes(axis, np.zeros((100, 100, 3)), [[40, 40, 60, 60]], labels=[1], color="#377eb8")
        _drawn(figure)
        sizes.append(_captions(axis)[0].get_fontsize())
    assert sizes[0] == pytest.approx(LABEL_FONT_SHARE * 3.0 * 72)  # 7.6 points on a 3 inch image
    assert sizes[1] == LABEL_MAX_POINTS
    caption = _captions(axis)[0]
    assert caption.get_bbox_patch().get_facecolor()[:3] == pytest.approx(matplotlib.colors.to_rgb("#377eb8"))
    assert (text_colour("lime"), text_colour("#000080"), text_colour("white")) == ("black", "white", "black")


def test_show_records_draws_non_square_frames_with_square_pixels(tmp_path):
    from tlutils.data import DetectionRecord

    path = tmp_path / "frame.png"
    Image.fromarray(np.zeros((80, 136, 3), dtype=np.uint8)).save(path)
    record = DetectionRecord(str(path), 136, 80, [(120, 0, 136, 10)], [5], ["priority at next intersection"],
                             ["other"])
    figure = show_records([record, record], columns=2, panel_size=3.0)
    renderer = _drawn(figure)
    for axis in _visible_axes(figure):
        image = axis.images[0].get_window_extent(renderer)
        assert axis.get_aspect() == 1.0 and image.width / image.height == pytest.approx(136 / 80, rel=1e-3)
        assert len(_assert_captions_inside_the_image(axis, renderer)) == 1
