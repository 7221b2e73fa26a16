"""Procedural drawings of the traffic signs of the embedded sign world (NumPy + Pillow only).

Every sign is drawn from primitives (discs, rings, polygons, arrows, stick figures) and a small
stroke font for digits and capital letters, so nothing is downloaded and every pixel is
reproducible. A :class:`SignStyle` holds what differs between countries: colours, border widths, the
stroke font, the shape family of warning / speed / mandatory signs ("european" or "us").

``draw_sign(name, style, height)`` returns an upright RGBA drawing, transparent outside the sign,
``height`` pixels tall; width follows the sign's shape (a triangle is wider than tall, a US speed limit
sign narrower). :func:`sign_template` caches drawings at a few power-of-two heights so that the scene
renderer only resamples them.

Class ids follow :data:`SIGN_CLASSES`: 1..C, class 0 being background everywhere in ``tlutils``. The
superclasses are GTSDB's: ``prohibitory``, ``danger``, ``mandatory`` and ``other``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
from PIL import Image, ImageDraw

RGB = tuple[int, int, int]
Point = tuple[float, float]


class SignClass(NamedTuple):
    """One row of :data:`SIGN_CLASSES`."""

    id: int
    name: str
    superclass: str


#: The ordered class table of the sign world: ``(id, name, superclass)``, ids ``1..C``. Superclasses as
#: in GTSDB (stop, give way, no entry and priority road are "other" there too). The last class,
#: ``priority_road_ends``, exists only in Germany (see ``tlutils.data.synth.COUNTRIES``), so a head
#: transferred from Belgium has to learn it.
SIGN_CLASSES: tuple[SignClass, ...] = (
    SignClass(1, "speed_limit_30", "prohibitory"),
    SignClass(2, "speed_limit_50", "prohibitory"),
    SignClass(3, "speed_limit_70", "prohibitory"),
    SignClass(4, "no_overtaking", "prohibitory"),
    SignClass(5, "general_danger", "danger"),
    SignClass(6, "pedestrian_crossing", "danger"),
    SignClass(7, "ahead_only", "mandatory"),
    SignClass(8, "turn_left", "mandatory"),
    SignClass(9, "turn_right", "mandatory"),
    SignClass(10, "stop", "other"),
    SignClass(11, "give_way", "other"),
    SignClass(12, "no_entry", "other"),
    SignClass(13, "priority_road", "other"),
    SignClass(14, "priority_road_ends", "other"),
)

CLASS_BY_NAME: dict[str, SignClass] = {sign.name: sign for sign in SIGN_CLASSES}

# ---------------------------------------------------------------------------------------------------
# Stroke font: glyphs are polylines on a 4 x 6 grid (x right, y down), drawn with round caps.
# ---------------------------------------------------------------------------------------------------
Glyph = tuple[tuple[Point, ...], ...]

_ZERO: Glyph = (((2, 0), (3.4, 0.5), (4, 2), (4, 4), (3.4, 5.5), (2, 6), (0.6, 5.5), (0, 4), (0, 2),
                 (0.6, 0.5), (2, 0)),)
_SIX: Glyph = (((3.7, 0.7), (2.7, 0), (1.6, 0.1), (0.6, 0.9), (0, 2.6), (0, 4.2), (0.6, 5.5), (2, 6),
                (3.4, 5.5), (4, 4.3), (3.6, 3), (2.3, 2.4), (1.2, 2.6), (0.3, 3.3), (0, 4.2)),)


def _rotate_half_turn(glyph: Glyph) -> Glyph:
    """The glyph turned by 180 degrees on its 4 x 6 grid (6 -> 9)."""
    return tuple(tuple((4 - x, 6 - y) for x, y in line) for line in glyph)


_GLYPHS: dict[str, Glyph] = {
    "0": _ZERO,
    "1": (((0.8, 1.3), (2.6, 0), (2.6, 6)),),
    "2": (((0.2, 1.2), (1, 0.2), (2.2, 0), (3.3, 0.4), (3.9, 1.4), (3.6, 2.6), (0, 6), (4, 6)),),
    "3": (((0.2, 0.8), (1.2, 0), (2.8, 0), (3.8, 0.8), (3.8, 2), (2.8, 2.8), (1.6, 2.8)),
          ((2.8, 2.8), (4, 3.8), (4, 5), (3, 6), (1.2, 6), (0, 5.2))),
    "4": (((3, 6), (3, 0), (0, 4.2), (4, 4.2)),),
    "5": (((3.8, 0), (0.5, 0), (0.2, 2.7), (1.4, 2.2), (2.6, 2.2), (3.6, 2.8), (4, 4), (3.6, 5.4),
           (2.4, 6), (1.2, 6), (0, 5.2)),),
    "6": _SIX,
    "7": (((0, 0), (4, 0), (1.4, 6)),),
    "8": (((2, 0), (3.3, 0.4), (3.6, 1.4), (3.2, 2.4), (2, 2.8), (0.8, 2.4), (0.4, 1.4), (0.7, 0.4),
           (2, 0)),
          ((2, 2.8), (3.5, 3.4), (4, 4.4), (3.6, 5.5), (2, 6), (0.4, 5.5), (0, 4.4), (0.5, 3.4),
           (2, 2.8))),
    "9": _rotate_half_turn(_SIX),
    "A": (((0, 6), (2, 0), (4, 6)), ((0.7, 4), (3.3, 4))),
    "B": (((0, 3), (3, 3), (4, 3.8), (4, 5.2), (3, 6), (0, 6), (0, 0), (2.8, 0), (3.7, 0.6), (3.7, 2.3),
           (3, 3)),),
    "C": (((4, 0.9), (3, 0), (1.4, 0), (0.4, 0.8), (0, 2.2), (0, 3.8), (0.4, 5.2), (1.4, 6), (3, 6),
           (4, 5.1)),),
    "D": (((0, 0), (0, 6), (2, 6), (3.4, 5.4), (4, 4), (4, 2), (3.4, 0.6), (2, 0), (0, 0)),),
    "E": (((4, 0), (0, 0), (0, 6), (4, 6)), ((0, 3), (3, 3))),
    "H": (((0, 0), (0, 6)), ((4, 0), (4, 6)), ((0, 3), (4, 3))),
    "I": (((2, 0), (2, 6)),),
    "K": (((0, 0), (0, 6)), ((4, 0), (0, 3.6)), ((1.4, 2.5), (4, 6))),
    "L": (((0, 0), (0, 6), (4, 6)),),
    "M": (((0, 6), (0, 0), (2, 3.6), (4, 0), (4, 6)),),
    "N": (((0, 6), (0, 0), (4, 6), (4, 0)),),
    "O": _ZERO,
    "P": (((0, 6), (0, 0), (2.8, 0), (3.8, 0.7), (4, 1.6), (3.8, 2.5), (2.8, 3.2), (0, 3.2)),),
    "R": (((0, 6), (0, 0), (2.8, 0), (3.8, 0.7), (4, 1.6), (3.8, 2.5), (2.8, 3.2), (0, 3.2)),
          ((2, 3.2), (4, 6))),
    "S": (((3.8, 0.8), (2.8, 0), (1.2, 0), (0.2, 0.8), (0.2, 2.2), (1, 2.8), (3, 3.2), (3.8, 3.8),
           (4, 5), (3, 6), (1, 6), (0, 5.2)),),
    "T": (((0, 0), (4, 0)), ((2, 0), (2, 6))),
    "U": (((0, 0), (0, 4.4), (0.6, 5.6), (2, 6), (3.4, 5.6), (4, 4.4), (4, 0)),),
    "Y": (((0, 0), (2, 3), (4, 0)), ((2, 3), (2, 6))),
    "Z": (((0, 0), (4, 0), (0, 6), (4, 6)),),
}

#: Letters the stroke font can draw (boards with text use them too).
FONT_LETTERS = "ABCDEHIKLMNOPRSTUYZ"
_NARROW = {"1": 0.75, "I": 0.35}


@dataclass(frozen=True)
class FontStyle:
    """A variant of the stroke font.

    Attributes:
        width: glyph width / glyph height.
        stroke: stroke width / glyph height.
        overrides: ``(character, glyph)`` pairs replacing the default glyphs (a German "1" and "7").
    """

    width: float = 0.55
    stroke: float = 0.13
    overrides: tuple[tuple[str, Glyph], ...] = ()

    def glyph(self, char: str) -> Glyph:
        """The polylines of ``char`` in this font."""
        return dict(self.overrides).get(char, _GLYPHS[char])


@dataclass(frozen=True)
class SignStyle:
    """How one country draws its signs (colours as RGB, widths as fractions of the sign height).

    Attributes:
        family: ``"european"`` (round speed limits, triangular warnings, round mandatory signs) or
            ``"us"`` (white rectangular speed limits and lane-use signs, yellow diamond warnings).
        ring_width: red ring of prohibitory signs, fraction of the diameter.
        border_width: red border of triangles, fraction of the height.
        rim_width: white outer rim around every sign.
        prohibitory_fill, danger_fill, give_way_fill: inner colour of those signs.
        arrow_width: shaft width of mandatory arrows.
        pedestrian: ``"zebra"`` (walker on a crossing), ``"adult_child"`` or ``"walker"``.
    """

    family: str
    red: RGB
    blue: RGB
    yellow: RGB
    font: FontStyle
    ring_width: float = 0.12
    border_width: float = 0.12
    rim_width: float = 0.03
    prohibitory_fill: RGB = (245, 245, 240)
    danger_fill: RGB = (245, 245, 240)
    give_way_fill: RGB = (245, 245, 240)
    arrow_width: float = 0.11
    pedestrian: str = "zebra"
    white: RGB = (245, 245, 240)
    black: RGB = (22, 22, 24)


# ---------------------------------------------------------------------------------------------------
# Drawing canvas in unit coordinates.
# ---------------------------------------------------------------------------------------------------
class _Canvas:
    """An RGBA drawing addressed in unit coordinates: x in [0, 1] of the width, y of the height."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.image = Image.new("RGBA", (width, height), (128, 128, 128, 0))
        self.draw = ImageDraw.Draw(self.image)

    def px(self, points: list[Point] | tuple[Point, ...]) -> list[Point]:
        return [(x * self.width, y * self.height) for x, y in points]

    def polygon(self, points: list[Point] | tuple[Point, ...], fill: RGB) -> None:
        self.draw.polygon(self.px(points), fill=fill)

    def ellipse(self, x0: float, y0: float, x1: float, y1: float, fill: RGB) -> None:
        self.draw.ellipse([x0 * self.width, y0 * self.height, x1 * self.width - 1, y1 * self.height - 1],
                          fill=fill)

    def polyline(self, points: list[Point] | tuple[Point, ...], width: float, fill: RGB) -> None:
        """A polyline with round joints and caps; ``width`` in units of the height."""
        pixels = self.px(points)
        stroke = max(1.0, width * self.height)
        self.draw.line(pixels, fill=fill, width=int(round(stroke)), joint="curve")
        radius = stroke / 2
        for x, y in (pixels[0], pixels[-1]):
            self.draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill)


def _inset(points: list[Point], distance: float, aspect: float) -> list[Point]:
    """Shrink a convex, centred polygon (unit coordinates) by ``distance`` (fraction of the height).

    The polygon is scaled about its vertex centroid so that its inradius shrinks by ``distance``; exact
    for regular polygons, which is all the sign shapes are (the canvas aspect is undone first).
    """
    pts = np.array(points, dtype=np.float64) * [aspect, 1.0]
    centre = pts.mean(axis=0)
    edges = np.roll(pts, -1, axis=0) - pts
    normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1) / np.linalg.norm(edges, axis=1)[:, None]
    inradius = np.abs(((pts - centre) * normals).sum(axis=1)).min()
    scaled = centre + (pts - centre) * (1.0 - distance / inradius)
    return [(x / aspect, y) for x, y in scaled]


def _nested_polygon(canvas: _Canvas, outline: list[Point], layers: list[tuple[float, RGB]]) -> None:
    """Fill ``outline`` with successive insets: ``layers`` = (inset from the outline, colour)."""
    aspect = canvas.width / canvas.height
    for distance, colour in layers:
        canvas.polygon(_inset(outline, distance, aspect) if distance else outline, colour)


def _nested_disc(canvas: _Canvas, layers: list[tuple[float, RGB]]) -> None:
    """Concentric discs: ``layers`` = (inset from the edge as a fraction of the diameter, colour)."""
    for distance, colour in layers:
        canvas.ellipse(distance, distance, 1 - distance, 1 - distance, colour)


def _draw_text(canvas: _Canvas, text: str, centre: Point, height: float, colour: RGB, font: FontStyle,
               max_width: float = 0.9) -> None:
    """Stroke-font text centred at ``centre``; ``height`` and ``max_width`` in units of the canvas.

    Text wider than ``max_width`` (of the canvas width) is condensed horizontally.
    """
    glyph_height = height * canvas.height
    stroke = font.stroke * glyph_height
    advances = [(_NARROW.get(c, 1.0) * font.width + (0.35 * font.width if c == " " else 0.0))
                * glyph_height for c in text]
    gap = 0.22 * font.width * glyph_height
    total = sum(advances) + gap * (len(text) - 1)
    squeeze = min(1.0, max_width * canvas.width / total)
    x = centre[0] * canvas.width - total * squeeze / 2
    top = centre[1] * canvas.height - glyph_height / 2
    for char, advance in zip(text, advances):
        if char != " ":
            box_width = advance * squeeze
            for line in font.glyph(char):
                points = [((x + stroke / 2 + gx / 4 * max(box_width - stroke, 1.0)) / canvas.width,
                           (top + stroke / 2 + gy / 6 * (glyph_height - stroke)) / canvas.height)
                          for gx, gy in line]
                canvas.polyline(points, stroke / canvas.height, colour)
        x += (advance + gap) * squeeze


# ---------------------------------------------------------------------------------------------------
# Pictograms (unit coordinates of the canvas).
# ---------------------------------------------------------------------------------------------------
def _draw_arrow(canvas: _Canvas, direction: str, colour: RGB, width: float, box: tuple[float, ...]) -> None:
    """A mandatory arrow ("ahead", "left", "right") inside ``box`` = (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    head = 2.6 * width * canvas.height / canvas.width  # head half-width in x units

    def at(u: float, v: float) -> Point:
        return (x0 + u * w, y0 + v * h)

    if direction == "ahead":
        canvas.polyline([at(0.5, 1.0), at(0.5, 0.38)], width, colour)
        canvas.polygon([at(0.5, 0.0), (x0 + 0.5 * w + head, y0 + 0.42 * h), (x0 + 0.5 * w - head, y0 + 0.42 * h)],
                       colour)
        return
    sign = 1.0 if direction == "right" else -1.0

    def at_signed(u: float, v: float) -> Point:  # u measured from the centre, mirrored for "left"
        return at(0.5 + sign * u, v)

    canvas.polyline([at_signed(-0.18, 1.0), at_signed(-0.18, 0.55), at_signed(-0.1, 0.38),
                     at_signed(0.08, 0.32), at_signed(0.14, 0.32)], width, colour)
    head_v = 2.6 * width / h
    canvas.polygon([at_signed(0.5, 0.32), at_signed(0.12, 0.32 - head_v), at_signed(0.12, 0.32 + head_v)], colour)


def _draw_figure(canvas: _Canvas, cx: float, bottom: float, height: float, colour: RGB, stride: float = 1.0) -> None:
    """A walking stick figure whose feet stand at ``(cx, bottom)``, ``height`` tall (unit coordinates)."""
    h = height
    stroke = 0.12 * h
    head_r = 0.11  # in units of the figure height
    aspect = canvas.height / canvas.width

    def at(u: float, v: float) -> Point:  # u, v in units of the figure height
        return (cx + u * h * aspect, bottom - v * h)

    canvas.ellipse(at(-head_r, 0)[0], bottom - h, at(head_r, 0)[0], bottom - h + 2 * head_r * h, colour)
    canvas.polyline([at(0.02, 0.76), at(-0.04, 0.4)], stroke, colour)  # body
    canvas.polyline([at(-0.04, 0.42), at(-0.22 * stride, 0.0)], stroke, colour)  # back leg
    canvas.polyline([at(-0.04, 0.42), at(0.08, 0.22), at(0.22 * stride, 0.02)], stroke, colour)  # front leg
    canvas.polyline([at(-0.2 * stride, 0.44), at(-0.08, 0.62), at(0.02, 0.72), at(0.16, 0.58),
                     at(0.24 * stride, 0.46)], stroke * 0.8, colour)  # arms


def _draw_car(canvas: _Canvas, box: tuple[float, float, float, float], colour: RGB) -> None:
    """A car seen from behind (no-overtaking pictogram) inside ``box``."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    canvas.polygon([(x0 + 0.2 * w, y0), (x1 - 0.2 * w, y0), (x1 - 0.05 * w, y0 + 0.45 * h),
                    (x0 + 0.05 * w, y0 + 0.45 * h)], colour)
    canvas.polygon([(x0, y0 + 0.4 * h), (x1, y0 + 0.4 * h), (x1, y0 + 0.85 * h), (x0, y0 + 0.85 * h)], colour)
    canvas.polygon([(x0 + 0.05 * w, y0 + 0.8 * h), (x0 + 0.3 * w, y0 + 0.8 * h), (x0 + 0.3 * w, y1),
                    (x0 + 0.05 * w, y1)], colour)
    canvas.polygon([(x1 - 0.3 * w, y0 + 0.8 * h), (x1 - 0.05 * w, y0 + 0.8 * h), (x1 - 0.05 * w, y1),
                    (x1 - 0.3 * w, y1)], colour)


# ---------------------------------------------------------------------------------------------------
# Sign shapes.
# ---------------------------------------------------------------------------------------------------
_TRIANGLE_UP: list[Point] = [(0.5, 0.0), (1.0, 1.0), (0.0, 1.0)]
_TRIANGLE_DOWN: list[Point] = [(0.0, 0.0), (1.0, 0.0), (0.5, 1.0)]
_DIAMOND: list[Point] = [(0.5, 0.0), (1.0, 0.5), (0.5, 1.0), (0.0, 0.5)]
_OCTAGON: list[Point] = [(0.5 + 0.5 * np.cos(a), 0.5 + 0.5 * np.sin(a))
                         for a in np.pi / 8 + np.arange(8) * np.pi / 4]
_RECTANGLE: list[Point] = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]
_TRIANGLE_ASPECT = 1.0 / 0.866  # equilateral: width / height

_GREY: RGB = (150, 150, 150)


def _ring_sign(canvas: _Canvas, style: SignStyle, fill: RGB) -> None:
    _nested_disc(canvas, [(0.0, style.white), (style.rim_width, style.red),
                          (style.rim_width + style.ring_width, fill)])


def _us_panel(canvas: _Canvas, style: SignStyle, fill: RGB, ink: RGB) -> None:
    """A US regulatory panel: rounded rectangle with a thin inner border line."""
    w, h = canvas.width, canvas.height
    r = 0.08 * min(w, h)
    canvas.draw.rounded_rectangle([0, 0, w - 1, h - 1], radius=r, fill=ink)
    b = 0.03 * h
    canvas.draw.rounded_rectangle([b, b, w - 1 - b, h - 1 - b], radius=r * 0.8, fill=fill)
    b2 = 0.055 * h
    canvas.draw.rounded_rectangle([b2, b2, w - 1 - b2, h - 1 - b2], radius=r * 0.6, fill=ink)
    b3 = b2 + max(1.0, 0.018 * h)
    canvas.draw.rounded_rectangle([b3, b3, w - 1 - b3, h - 1 - b3], radius=r * 0.5, fill=fill)


def _us_diamond(canvas: _Canvas, style: SignStyle) -> None:
    _nested_polygon(canvas, _DIAMOND, [(0.0, style.black), (0.015, style.yellow), (0.045, style.black),
                                       (0.065, style.yellow)])


def _speed_limit(canvas: _Canvas, style: SignStyle, number: str) -> None:
    if style.family == "us":
        _us_panel(canvas, style, style.white, style.black)
        _draw_text(canvas, "SPEED", (0.5, 0.19), 0.12, style.black, style.font, 0.75)
        _draw_text(canvas, "LIMIT", (0.5, 0.36), 0.12, style.black, style.font, 0.75)
        _draw_text(canvas, number, (0.5, 0.68), 0.36, style.black, style.font, 0.8)
        return
    _ring_sign(canvas, style, style.prohibitory_fill)
    _draw_text(canvas, number, (0.5, 0.5), 0.42, style.black, style.font, 0.62)


def _no_overtaking(canvas: _Canvas, style: SignStyle) -> None:
    if style.family == "us":
        _us_panel(canvas, style, style.white, style.black)
        for text, y in (("DO", 0.24), ("NOT", 0.5), ("PASS", 0.76)):
            _draw_text(canvas, text, (0.5, y), 0.17, style.black, style.font, 0.75)
        return
    _ring_sign(canvas, style, style.prohibitory_fill)
    _draw_car(canvas, (0.56, 0.33, 0.8, 0.64), style.red)
    _draw_car(canvas, (0.2, 0.33, 0.44, 0.64), style.black)


def _general_danger(canvas: _Canvas, style: SignStyle) -> None:
    if style.family == "us":
        _us_diamond(canvas, style)
        top, bottom = 0.24, 0.62
    else:
        _nested_polygon(canvas, _TRIANGLE_UP, [(0.0, style.white), (style.rim_width, style.red),
                                               (style.rim_width + style.border_width, style.danger_fill)])
        top, bottom = 0.34, 0.74
    canvas.polygon([(0.5 - 0.05, top), (0.5 + 0.05, top), (0.5 + 0.025, bottom), (0.5 - 0.025, bottom)],
                   style.black)
    canvas.ellipse(0.5 - 0.045, bottom + 0.04, 0.5 + 0.045, bottom + 0.13, style.black)


def _pedestrian_crossing(canvas: _Canvas, style: SignStyle) -> None:
    if style.family == "us":
        _us_diamond(canvas, style)
        _draw_figure(canvas, 0.5, 0.72, 0.46, style.black)
        canvas.polyline([(0.3, 0.78), (0.7, 0.78)], 0.03, style.black)
        return
    _nested_polygon(canvas, _TRIANGLE_UP, [(0.0, style.white), (style.rim_width, style.red),
                                           (style.rim_width + style.border_width, style.danger_fill)])
    if style.pedestrian == "adult_child":
        _draw_figure(canvas, 0.43, 0.8, 0.42, style.black)
        _draw_figure(canvas, 0.6, 0.8, 0.27, style.black, stride=0.8)
    elif style.pedestrian == "zebra":
        _draw_figure(canvas, 0.5, 0.7, 0.4, style.black)
        for x in (0.33, 0.45, 0.57):
            canvas.polygon([(x, 0.74), (x + 0.09, 0.74), (x + 0.1, 0.8), (x + 0.01, 0.8)], style.black)
    else:
        _draw_figure(canvas, 0.5, 0.8, 0.46, style.black)


def _mandatory(canvas: _Canvas, style: SignStyle, direction: str) -> None:
    if style.family == "us":
        _us_panel(canvas, style, style.white, style.black)
        _draw_arrow(canvas, direction, style.black, style.arrow_width, (0.25, 0.12, 0.75, 0.66))
        _draw_text(canvas, "ONLY", (0.5, 0.81), 0.14, style.black, style.font, 0.7)
        return
    _nested_disc(canvas, [(0.0, style.white), (style.rim_width, style.blue)])
    _draw_arrow(canvas, direction, style.white, style.arrow_width, (0.24, 0.18, 0.76, 0.82))


def _stop(canvas: _Canvas, style: SignStyle) -> None:
    _nested_polygon(canvas, _OCTAGON, [(0.0, style.white), (0.035, style.red)])
    _draw_text(canvas, "STOP", (0.5, 0.5), 0.27, style.white, style.font, 0.74)


def _give_way(canvas: _Canvas, style: SignStyle) -> None:
    border = 0.16 if style.family == "us" else style.border_width
    _nested_polygon(canvas, _TRIANGLE_DOWN, [(0.0, style.white), (style.rim_width, style.red),
                                             (style.rim_width + border, style.give_way_fill)])
    if style.family == "us":
        _draw_text(canvas, "YIELD", (0.5, 0.34), 0.1, style.red, style.font, 0.46)


def _no_entry(canvas: _Canvas, style: SignStyle) -> None:
    if style.family == "us":
        canvas.draw.rounded_rectangle([0, 0, canvas.width - 1, canvas.height - 1],
                                      radius=0.06 * canvas.height, fill=style.white)
        _nested_disc(canvas, [(0.05, style.red)])
        canvas.polygon([(0.17, 0.43), (0.83, 0.43), (0.83, 0.57), (0.17, 0.57)], style.white)
        _draw_text(canvas, "DO NOT", (0.5, 0.3), 0.1, style.white, style.font, 0.55)
        _draw_text(canvas, "ENTER", (0.5, 0.7), 0.1, style.white, style.font, 0.55)
        return
    _nested_disc(canvas, [(0.0, style.white), (style.rim_width, style.red)])
    canvas.polygon([(0.2, 0.42), (0.8, 0.42), (0.8, 0.58), (0.2, 0.58)], style.white)


def _priority_road(canvas: _Canvas, style: SignStyle, ends: bool = False) -> None:
    _nested_polygon(canvas, _DIAMOND, [(0.0, style.black), (0.012, style.white), (0.11, style.black),
                                       (0.12, style.yellow)])
    if ends:  # black diagonal bars across the sign, cut to its outline
        for offset in (-0.14, -0.05, 0.04, 0.13):
            canvas.polyline([(0.05 + offset, 0.95 + offset), (0.95 + offset, 0.05 + offset)], 0.03,
                            (35, 35, 35))
        outline = Image.new("L", canvas.image.size, 0)
        ImageDraw.Draw(outline).polygon(canvas.px(_DIAMOND), fill=255)
        canvas.image.putalpha(outline)


#: class name -> (draw function, canvas aspect = width / height for the european and the US family)
_DRAWERS: dict[str, tuple[Callable[[_Canvas, SignStyle], None], float, float]] = {
    "speed_limit_30": (lambda c, s: _speed_limit(c, s, "30"), 1.0, 0.8),
    "speed_limit_50": (lambda c, s: _speed_limit(c, s, "50"), 1.0, 0.8),
    "speed_limit_70": (lambda c, s: _speed_limit(c, s, "70"), 1.0, 0.8),
    "no_overtaking": (_no_overtaking, 1.0, 0.8),
    "general_danger": (_general_danger, _TRIANGLE_ASPECT, 1.0),
    "pedestrian_crossing": (_pedestrian_crossing, _TRIANGLE_ASPECT, 1.0),
    "ahead_only": (lambda c, s: _mandatory(c, s, "ahead"), 1.0, 0.8),
    "turn_left": (lambda c, s: _mandatory(c, s, "left"), 1.0, 0.8),
    "turn_right": (lambda c, s: _mandatory(c, s, "right"), 1.0, 0.8),
    "stop": (_stop, 1.0, 1.0),
    "give_way": (_give_way, _TRIANGLE_ASPECT, _TRIANGLE_ASPECT),
    "no_entry": (_no_entry, 1.0, 1.0),
    "priority_road": (_priority_road, 1.0, 1.0),
    "priority_road_ends": (lambda c, s: _priority_road(c, s, ends=True), 1.0, 1.0),
}


def sign_aspect(name: str, style: SignStyle) -> float:
    """Width / height of the drawing of sign ``name`` in ``style``."""
    _, european, us = _DRAWERS[name]
    return us if style.family == "us" else european


def draw_sign(name: str, style: SignStyle, height: int) -> Image.Image:
    """An upright drawing of sign ``name``: RGBA, ``height`` pixels tall, transparent outside the sign.

    Pillow draws without anti-aliasing; resample the drawing down (as the scene renderer does) for
    smooth edges.
    """
    if name not in _DRAWERS:
        raise ValueError(f"unknown sign class {name!r}; expected one of {sorted(_DRAWERS)}")
    if height < 8:
        raise ValueError(f"sign height must be at least 8 pixels, got {height}")
    draw, _, _ = _DRAWERS[name]
    canvas = _Canvas(max(8, int(round(height * sign_aspect(name, style)))), int(height))
    draw(canvas, style)
    return canvas.image


#: Heights at which drawings are cached; the renderer picks the smallest one at least twice the size it
#: needs, so that resampling only ever shrinks by at most 2 before a final 2 x 2 box filter.
TEMPLATE_HEIGHTS: tuple[int, ...] = (48, 96, 192, 384, 768)


@functools.lru_cache(maxsize=96)
def sign_template(name: str, style: SignStyle, height: int) -> Image.Image:
    """Cached :func:`draw_sign` with premultiplied alpha (mode "RGBa", ready for resampling).

    Callers must not modify the returned image.
    """
    return draw_sign(name, style, height).convert("RGBa")


def template_level(needed_height: float) -> int:
    """The smallest of :data:`TEMPLATE_HEIGHTS` that is at least ``needed_height`` (else the largest)."""
    return next((h for h in TEMPLATE_HEIGHTS if h >= needed_height), TEMPLATE_HEIGHTS[-1])


def template_for(name: str, style: SignStyle, needed_height: float) -> Image.Image:
    """The cached drawing of sign ``name`` at :func:`template_level` of ``needed_height``."""
    return sign_template(name, style, template_level(needed_height))


# ---------------------------------------------------------------------------------------------------
# Distractors: sign-like objects of no class (parking signs, boards with text, shop logos, backs of
# signs, traffic lights), drawn and resampled exactly like the signs so that neither colour nor edge
# sharpness gives a sign away.
# ---------------------------------------------------------------------------------------------------
_PANEL_COLOURS: tuple[tuple[RGB, RGB], ...] = (  # (panel, ink)
    ((245, 245, 240), (30, 30, 30)), ((20, 90, 170), (245, 245, 240)), ((20, 110, 60), (245, 245, 240)),
    ((120, 70, 40), (245, 235, 210)), ((250, 200, 30), (30, 30, 30)), ((200, 30, 40), (245, 245, 240)),
)
_LOGO_COLOURS: tuple[RGB, ...] = ((205, 30, 40), (25, 85, 170), (240, 130, 20), (20, 120, 60),
                                  (235, 235, 230), (120, 40, 130))
_SIGN_BACK_SHAPES: tuple[list[Point], ...] = (_OCTAGON, _TRIANGLE_UP, _TRIANGLE_DOWN, _DIAMOND, _RECTANGLE)

#: Distractor kind -> (number of variants, width / height).
DISTRACTORS: dict[str, tuple[int, float]] = {
    "parking": (2, 1.0),
    "no_parking": (2, 1.0),
    "one_way": (4, 2.2),
    "board": (12, 1.8),
    "logo": (12, 1.0),
    "sign_back": (6, 1.0),
    "traffic_light": (3, 0.42),
    "ball": (6, 1.0),
}


def _random_word(rng: np.random.Generator, length: int) -> str:
    return "".join(rng.choice(list(FONT_LETTERS), size=length))


def _distractor_board(canvas: _Canvas, variant: int) -> None:
    panel, ink = _PANEL_COLOURS[variant % len(_PANEL_COLOURS)]
    canvas.draw.rounded_rectangle([0, 0, canvas.width - 1, canvas.height - 1], radius=0.08 * canvas.height,
                                  fill=ink)
    inset = 0.05 * canvas.height
    canvas.draw.rounded_rectangle([inset, inset, canvas.width - 1 - inset, canvas.height - 1 - inset],
                                  radius=0.06 * canvas.height, fill=panel)
    words = np.random.default_rng(variant)
    lines = 1 + variant % 2
    for line in range(lines):
        y = (line + 0.5) / lines
        _draw_text(canvas, _random_word(words, 3 + (variant + line) % 5), (0.5, 0.1 + 0.8 * y),
                   0.5 / lines, ink, FontStyle(0.5, 0.12), 0.85)


def _draw_distractor(canvas: _Canvas, kind: str, variant: int, style: SignStyle) -> None:
    if kind == "parking":
        canvas.draw.rounded_rectangle([0, 0, canvas.width - 1, canvas.height - 1],
                                      radius=0.1 * canvas.height, fill=style.white)
        inset = 0.05 * canvas.height
        canvas.draw.rounded_rectangle([inset, inset, canvas.width - 1 - inset, canvas.height - 1 - inset],
                                      radius=0.08 * canvas.height, fill=style.blue)
        _draw_text(canvas, "P" if variant == 0 else "H", (0.5, 0.5), 0.62, style.white, style.font)
    elif kind == "no_parking":
        _nested_disc(canvas, [(0.0, style.white), (style.rim_width, style.red),
                              (style.rim_width + style.ring_width, style.blue)])
        canvas.polyline([(0.25, 0.25), (0.75, 0.75)], style.ring_width, style.red)
        if variant == 1:
            canvas.polyline([(0.75, 0.25), (0.25, 0.75)], style.ring_width, style.red)
    elif kind == "one_way":
        panel, ink = (style.blue, style.white) if variant < 2 else (style.black, style.white)
        canvas.draw.rectangle([0, 0, canvas.width - 1, canvas.height - 1], fill=ink)
        inset = 0.06 * canvas.height
        canvas.draw.rectangle([inset, inset, canvas.width - 1 - inset, canvas.height - 1 - inset], fill=panel)
        x0, x1 = (0.12, 0.88) if variant % 2 == 0 else (0.88, 0.12)
        canvas.polyline([(x0, 0.5), ((x0 + 2 * x1) / 3, 0.5)], 0.2, ink)
        canvas.polygon([(x1, 0.5), ((x0 + 2 * x1) / 3, 0.18), ((x0 + 2 * x1) / 3, 0.82)], ink)
    elif kind == "board":
        _distractor_board(canvas, variant)
    elif kind == "logo":
        colour = _LOGO_COLOURS[variant % len(_LOGO_COLOURS)]
        ink = (30, 30, 30) if sum(colour) > 600 else (245, 245, 240)
        _nested_disc(canvas, [(0.0, colour)] + ([(0.16, ink), (0.24, colour)] if variant % 3 == 0 else []))
        letter = FONT_LETTERS[(variant * 7) % len(FONT_LETTERS)]
        _draw_text(canvas, letter, (0.5, 0.5), 0.38, ink, FontStyle(0.6, 0.16))
    elif kind == "sign_back":
        shape = _SIGN_BACK_SHAPES[variant % len(_SIGN_BACK_SHAPES)] if variant < 5 else None
        grey = (150 + 8 * variant, 152 + 8 * variant, 155 + 8 * variant)
        if shape is None:
            _nested_disc(canvas, [(0.0, (110, 112, 115)), (0.04, grey)])
        else:
            _nested_polygon(canvas, shape, [(0.0, (110, 112, 115)), (0.03, grey)])
    elif kind == "traffic_light":
        canvas.draw.rounded_rectangle([0, 0, canvas.width - 1, canvas.height - 1],
                                      radius=0.15 * canvas.width, fill=(35, 35, 35))
        lit = ((230, 40, 30), (245, 180, 20), (40, 210, 90))
        for lamp in range(3):
            colour = lit[lamp] if lamp == variant else (60, 60, 55)
            cy = (lamp + 0.5) / 3
            canvas.ellipse(0.15, cy - 0.13, 0.85, cy + 0.13, colour)
    elif kind == "ball":
        colour = _LOGO_COLOURS[variant % len(_LOGO_COLOURS)]
        _nested_disc(canvas, [(0.0, colour)])
        highlight = tuple(min(255, c + 50) for c in colour)
        canvas.ellipse(0.25, 0.2, 0.45, 0.4, highlight)  # type: ignore[arg-type]
    else:
        raise ValueError(f"unknown distractor kind {kind!r}; expected one of {sorted(DISTRACTORS)}")


@functools.lru_cache(maxsize=192)
def distractor_template(kind: str, variant: int, style: SignStyle, height: int) -> Image.Image:
    """An upright drawing of a sign-like distractor, "RGBa" like :func:`sign_template` (cached)."""
    if kind not in DISTRACTORS:
        raise ValueError(f"unknown distractor kind {kind!r}; expected one of {sorted(DISTRACTORS)}")
    canvas = _Canvas(max(8, int(round(height * DISTRACTORS[kind][1]))), int(height))
    _draw_distractor(canvas, kind, variant % DISTRACTORS[kind][0], style)
    return canvas.image.convert("RGBa")
