"""Captions of boxes drawn on images: readable at any image size, on a background of the box's colour,
always inside the image (:class:`BoxCaption`).

A caption is placed when it is drawn, once the figure's layout is known: only then is it known how
many points an image pixel takes. Positions are worked out in display pixels; boxes are pixel
corners ``(xmin, ymin, xmax, ymax)`` of the axes' image.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from matplotlib.text import Text

__all__ = ["LABEL_BACKGROUND_ALPHA", "LABEL_FIT_POINTS", "LABEL_FONT_SHARE", "LABEL_MAX_POINTS", "LABEL_MAX_SHIFT_ROWS",
           "LABEL_MIN_POINTS", "LABEL_PAD_POINTS", "BoxCaption", "text_colour"]

#: A caption's font size is this share of the shorter side of the image as drawn, within
#: [LABEL_MIN_POINTS, LABEL_MAX_POINTS] points (7.6 pt on a 3 inch panel); a caption wider than the
#: image shrinks to fit it, down to LABEL_FIT_POINTS.
LABEL_FONT_SHARE = 0.035
LABEL_MIN_POINTS, LABEL_MAX_POINTS, LABEL_FIT_POINTS = 6.0, 10.0, 4.0
#: Space between a caption's text and the edge of its background box, in points.
LABEL_PAD_POINTS = 1.5
#: Opacity of a caption's background box (the box's colour).
LABEL_BACKGROUND_ALPHA = 0.85
#: Rows above (and below) its box that a caption may move by to avoid an earlier caption.
LABEL_MAX_SHIFT_ROWS = 2


def text_colour(background) -> str:
    """Black or white, whichever contrasts more with ``background`` (WCAG relative luminance)."""
    from matplotlib.colors import to_rgb

    channels = np.asarray(to_rgb(background))
    linear = np.where(channels <= 0.04045, channels / 12.92, ((channels + 0.055) / 1.055) ** 2.4)
    luminance = float(linear @ np.array([0.2126, 0.7152, 0.0722]))
    return "black" if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) else "white"


class BoxCaption(Text):
    """A box's caption that places itself each time it is drawn, once the figure's layout is known.

    Its font size is :data:`LABEL_FONT_SHARE` of the image as drawn (so a caption reads the same on a
    96 px crop and on a 1360x800 frame), its text sits on a box of the box's colour, and the whole
    lies inside the image: above the box where there is room, else below it, else inside its top
    edge, pushed sideways at the image's edges, and moved to clear earlier captions (:func:`_place`).
    ``box`` is the box's pixel corners ``(xmin, ymin, xmax, ymax)`` on the axes' image.
    """

    def __init__(self, box: Sequence[float], text: str, colour: str):
        super().__init__(0.0, 0.0, text, color=text_colour(colour), ha="left", va="bottom")
        self.box = tuple(float(value) for value in box)
        self.colour = colour
        self.placed = None  # this draw's background box (display pixels), read by later captions
        self.set_in_layout(False)

    def draw(self, renderer) -> None:
        self.placed = None
        if not self.get_visible() or self.axes is None or not self.get_text():
            return
        ax = self.axes
        image = _image_window(ax, renderer)
        points = renderer.points_to_pixels(1.0)  # display pixels per point
        size = float(np.clip(LABEL_FONT_SHARE * min(image.width, image.height) / points, LABEL_MIN_POINTS,
                             LABEL_MAX_POINTS))
        self.set_fontsize(size)
        pad = LABEL_PAD_POINTS * points
        width = self._text_width(renderer) + 2 * pad
        if width > image.width:  # shrink to fit the image, not below LABEL_FIT_POINTS
            size = max(LABEL_FIT_POINTS, size * (image.width - 2 * pad) / (width - 2 * pad))
            self.set_fontsize(size)
            width = self._text_width(renderer) + 2 * pad
        self.set_bbox(dict(facecolor=self.colour, alpha=LABEL_BACKGROUND_ALPHA, edgecolor="none",
                           pad=LABEL_PAD_POINTS))
        self.set_position((0.0, 0.0))
        height = super().get_window_extent(renderer).height + 2 * pad
        # display y grows upwards while image rows grow downwards: sort to [[left, bottom], [right, top]]
        corners = np.sort(ax.transData.transform([self.box[:2], self.box[2:]]), axis=0)
        earlier = [text.placed for text in ax.texts if isinstance(text, BoxCaption) and text is not self
                   and text.placed is not None]
        x, y = _place(corners, width, height, image, earlier)
        self.placed = (x, y, width, height)
        self._move_to(x + pad, y + pad, renderer)
        super().draw(renderer)

    def _text_width(self, renderer) -> float:
        return super().get_window_extent(renderer).width

    def _move_to(self, x: float, y: float, renderer) -> None:
        """Put the text's lower left corner at display ``(x, y)``."""
        inverse = self.axes.transData.inverted()
        self.set_position(tuple(inverse.transform((x, y))))
        extent = super().get_window_extent(renderer)  # the alignment's offset, measured once
        self.set_position(tuple(inverse.transform((2 * x - extent.x0, 2 * y - extent.y0))))


def _image_window(ax, renderer):
    """Where the axes' first image is drawn (display pixels), cut to the axes; the axes without image."""
    from matplotlib.transforms import Bbox

    if not ax.images:
        return ax.bbox
    return Bbox.intersection(ax.images[0].get_window_extent(renderer), ax.bbox) or ax.bbox


def _place(corners: np.ndarray, width: float, height: float, image, earlier: Sequence[tuple]) -> tuple[float, float]:
    """The lower left corner (display pixels) of a caption ``width`` x ``height`` for the box with display
    ``corners`` ``[[left, bottom], [right, top]]``.

    Rows, in order: above the box, below it, inside its top edge, then one and more rows further
    above / below (up to :data:`LABEL_MAX_SHIFT_ROWS`); in each, the caption starts at the box's left
    or ends at its right, pushed inside the image's width. The first that lies inside ``image`` and
    overlaps none of the ``earlier`` captions ``(x, y, width, height)`` wins; else the one inside that
    overlaps them least; else the first row, clamped into the image.
    """
    (left, bottom), (right, top) = corners
    rows = [top, bottom - height, top - height]
    for shift in range(1, LABEL_MAX_SHIFT_ROWS + 1):
        rows += [top + shift * height, bottom - (shift + 1) * height]
    highest_x, highest_y = max(image.x0, image.x1 - width), max(image.y0, image.y1 - height)
    starts = [float(np.clip(x, image.x0, highest_x)) for x in (left, right - width)]
    inside = [(x, y) for y in rows if image.y0 <= y <= highest_y for x in starts]
    if not inside:
        return starts[0], float(np.clip(top, image.y0, highest_y))
    overlaps = [_overlap((x, y, width, height), earlier) for x, y in inside]
    return inside[int(np.argmin(overlaps))]  # the first of the least overlapping


def _overlap(rectangle: tuple[float, float, float, float], others: Iterable[tuple]) -> float:
    """Area of ``rectangle`` ``(x, y, width, height)`` covered by ``others`` (summed over them)."""
    x, y, width, height = rectangle
    return sum(max(0.0, min(x + width, ox + ow) - max(x, ox)) * max(0.0, min(y + height, oy + oh) - max(y, oy))
               for ox, oy, ow, oh in others)
