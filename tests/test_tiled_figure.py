"""Figures of notebook 08: detections on whole frames by tiled inference, and the box-size histogram."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_hex
from PIL import Image

from tlutils.data import DetectionDataset, DetectionRecord
from tlutils.plotting import plot_box_sizes, show_tiled_detections
from tlutils.tiling import tile_grid


@pytest.fixture
def frames(tmp_path) -> DetectionDataset:
    """Two 192 x 160 frames (twice a 96 pixel input: several tiles), one sign each."""
    records = []
    for index, box in enumerate([(20, 30, 50, 60), (100, 90, 140, 130)]):
        path = tmp_path / f"frame{index}.png"
        Image.fromarray(np.random.default_rng(index).integers(0, 255, (160, 192, 3), dtype=np.uint8)).save(path)
        records.append(DetectionRecord(str(path), 192, 160, [box], [5], ["stop"], ["other"]))
    return DetectionDataset(records, {2: "yield", 5: "stop"})


def _rectangles(axis, colour: str) -> list:
    return [patch for patch in axis.patches if to_hex(patch.get_edgecolor(), keep_alpha=False) == to_hex(colour)]


def test_tiled_detections_show_the_runners_tiles_the_truth_and_at_most_the_best_detections(frames):
    from tlutils.model import build_ssd_vgg16

    detector = build_ssd_vgg16(2, input_size=96, width=0.125)  # untrained: detections everywhere
    figure = show_tiled_detections(detector, frames, score_threshold=0.0, max_per_image=3)
    # the runner's tiles: an overlap of 0.4 x 96 = 38 input pixels; drawn at native resolution only
    tiles = tile_grid(192, 160, 96, overlap=38, scales=(1.0,))
    assert len(tiles) == 9  # 3 columns (starts 0, 48, 96) x 3 rows (0, 32, 64)
    axes = [axis for axis in figure.axes if axis.get_visible()]
    assert len(axes) == 2
    for axis, record in zip(axes, frames):
        assert len(_rectangles(axis, "#ffff00")) == len(tiles)
        (truth,) = _rectangles(axis, "white")
        x0, y0, x1, y1 = record.boxes[0]  # drawn in the frame's pixels
        assert (truth.get_x(), truth.get_y(), truth.get_width(), truth.get_height()) == (x0, y0, x1 - x0, y1 - y0)
        found = _rectangles(axis, "lime")
        assert len(found) == 3 and axis.get_title().startswith("3 detections >= 0 drawn, 1 sign; 192x160 px")
        captions = [text.get_text() for text in axis.texts]
        assert all(caption.split()[0] in {"yield", "stop"} for caption in captions)  # model classes 1, 2 named
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    for axis in axes:  # whole frames keep their shape; the captions stay on them
        image = axis.images[0].get_window_extent(renderer)
        assert axis.get_aspect() == 1.0 and image.width / image.height == pytest.approx(192 / 160, rel=1e-3)
        for text in axis.texts:
            caption = text.get_bbox_patch().get_window_extent(renderer)
            assert image.padded(0.5).contains(*caption.p0) and image.padded(0.5).contains(*caption.p1)
    plt.close(figure)


def test_the_box_size_histogram_marks_what_it_is_given(frames):
    figure = plot_box_sizes({"frames": frames}, {"smallest default box": 9.6})
    axis = figure.axes[0]
    assert [text.get_text() for text in axis.texts] == ["smallest default box"]
    assert axis.get_xscale() == "log" and axis.get_ylabel() == "% of the boxes"
    plt.close(figure)
    with pytest.raises(ValueError, match="hold no box"):
        plot_box_sizes({"empty": frames.with_records([])})
