"""The embedded sign world: procedural street scenes with traffic signs in several country styles.

A stand-in for GTSDB / BelgiumTS that needs no download: ``generate("belgium", 500, "data/be", seed=0)``
writes 500 PNG images and a COCO ``annotations.json`` that ``tlutils.data.load_coco`` reads. Other
countries draw the same classes differently (and Germany adds a class), so the course can measure
transfer from a source country to targets at a graded distance (:data:`COUNTRY_SHIFT`):

============  ========  ==================================================================
country       shift     what changes compared with Belgium
============  ========  ==================================================================
belgium       source    (the source domain: 13 classes)
germany       near      darker red, thinner rings, wider and bolder digits, adult-and-child
                        pedestrian pictogram; adds ``priority_road_ends`` (Germany only)
sweden        medium    yellow-filled prohibitory, warning and give-way signs, thin borders,
                        more rural scenes with conifers
usa           large     white rectangular speed limits ("SPEED LIMIT 50"), "DO NOT PASS",
                        lane-use signs with black arrows, yellow diamond warnings, "YIELD",
                        "DO NOT ENTER"; no priority road; wide roads, yellow centre lines
============  ========  ==================================================================

A scene: a sky gradient and a street in one-point perspective (city facades with windows, suburban
houses or a rural tree line), trees, lamp posts and cars with red tail lights; 0 to 6 signs on poles
(12 px up to about 60% of the image; about one image in six has none); sign-like objects of no class
(parking and one-way signs, boards with text, shop logos, backs of signs, traffic lights, balls) so
that colour alone does not find signs; foliage and posts hiding parts of some signs; per-sign fading;
camera effects (exposure, gamma, white balance, ground shadows, blur, shading, noise, JPEG). NumPy and
Pillow only: about 200 scenes per second at 300 px on one core, 120 when written as PNG.

Public API: :data:`SIGN_CLASSES`, :data:`COUNTRIES`, :data:`COUNTRY_SHIFT`, :func:`render_scene`,
:func:`generate`, :func:`image_rng`, :func:`render_sign`, :func:`save_gallery`,
:func:`save_sign_table`.

Conventions: images are square, ``image_size`` pixels; boxes are **pixel** corners ``(xmin, ymin,
xmax, ymax)`` with exclusive maxima (a box ``(3, 4, 15, 16)`` covers columns 3..14), as in
``tlutils.data.records``; COCO files hold ``[x, y, width, height]``. Class ids come from
:data:`SIGN_CLASSES` (``1..C``; 0 is background) and are the same in every country.

Box rule: a box is the tight box of the sign's *visible* pixels (alpha >= 1/2 after rotation and
perspective, minus what an occluder hides). A sign whose visible part is smaller than
:data:`MIN_VISIBLE_FRACTION` of its area, or whose visible box is narrower or lower than
:data:`MIN_BOX_SIZE` pixels, is not drawn at all, so an image never shows a sign without a box.

Determinism: scene ``i`` of ``generate(country, n, out, seed, size)`` is rendered with a generator seeded
from ``(seed, country, i)``, so it does not depend on ``n`` (the first ``k`` images of an ``n``-image
set are the ``k``-image set) and files are byte-identical between runs.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from tlutils.data.signs import (
    CLASS_BY_NAME,
    DISTRACTORS,
    SIGN_CLASSES,
    FontStyle,
    SignClass,
    SignStyle,
    distractor_template,
    template_for,
    template_level,
)

__all__ = [
    "COUNTRIES",
    "COUNTRY_SHIFT",
    "GENERATOR_VERSION",
    "MIN_BOX_SIZE",
    "MIN_SIGN_SIZE",
    "MIN_VISIBLE_FRACTION",
    "SIGN_CLASSES",
    "CountryStyle",
    "SceneStyle",
    "SignClass",
    "generate",
    "image_rng",
    "render_scene",
    "render_sign",
    "save_gallery",
    "save_sign_table",
    "write_png",
]

#: Written into the ``info`` block of every ``annotations.json``; bump when the output changes.
GENERATOR_VERSION = "1.0"
#: Smallest sign drawn (height in pixels before rotation / perspective).
MIN_SIGN_SIZE = 12
#: Signs whose visible box would be narrower or lower than this many pixels are not drawn.
MIN_BOX_SIZE = 8
#: Signs with less than this fraction of their pixels visible (occlusion) are not drawn.
MIN_VISIBLE_FRACTION = 0.5
#: Drawings smaller than this (pixels) are resampled at twice the size and reduced (anti-aliasing).
SUPERSAMPLE_BELOW = 40
MIN_IMAGE_SIZE = 64
MAX_IMAGE_SIZE = 2048
#: Probability of 0, 1, ..., 6 signs in an image (GTSDB: 159 of 900 images have none).
SIGN_COUNT_PROBABILITIES = (0.15, 0.3, 0.22, 0.14, 0.09, 0.06, 0.04)

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class SceneStyle:
    """What the streets of a country look like (colours as RGB).

    Attributes:
        layouts: probabilities of a city street, a suburb and a rural road.
        road_half_width: range of the half width of the road, in camera heights.
        centre_line: colour of the centre line; ``double=True`` draws two solid lines (US style).
        conifers: fraction of trees that are conifers.
    """

    layouts: tuple[float, float, float] = (0.45, 0.35, 0.2)
    sky_top: RGB = (95, 140, 205)
    sky_horizon: RGB = (200, 215, 230)
    facades: tuple[RGB, ...] = ((170, 150, 130), (140, 85, 70), (200, 190, 170), (120, 110, 100),
                                (180, 170, 150), (150, 120, 90), (210, 205, 195))
    foliage: tuple[RGB, ...] = ((60, 95, 45), (80, 115, 50), (45, 75, 40), (95, 120, 60))
    grass: RGB = (95, 125, 65)
    road: RGB = (95, 95, 98)
    sidewalk: RGB = (150, 145, 140)
    centre_line: RGB = (230, 230, 225)
    double_centre_line: bool = False
    road_half_width: tuple[float, float] = (1.4, 2.6)
    conifers: float = 0.1


@dataclass(frozen=True)
class CountryStyle:
    """One country of the sign world: which classes exist there and how signs and streets look.

    Attributes:
        name: the key in :data:`COUNTRIES`.
        shift: distance from the source domain: ``"source"``, ``"near"``, ``"medium"`` or ``"large"``.
        description: one line for tables and plots.
        classes: ids (from :data:`SIGN_CLASSES`) of the classes that exist in this country.
        signs: how the signs are drawn.
        scene: how the streets look.
    """

    name: str
    shift: str
    description: str
    classes: tuple[int, ...]
    signs: SignStyle
    scene: SceneStyle

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of :attr:`classes`, in id order."""
        return tuple(SIGN_CLASSES[i - 1].name for i in self.classes)


_ALL_BUT_GERMAN = tuple(range(1, 14))
_EU_FONT = FontStyle(width=0.52, stroke=0.12)
_GERMAN_FONT = FontStyle(width=0.62, stroke=0.155, overrides=(
    ("1", (((0.6, 1.6), (2.8, 0), (2.8, 6)),)),
    ("7", (((0, 0), (4, 0), (2.2, 3), (1.6, 6)),)),
))
_SWEDISH_FONT = FontStyle(width=0.48, stroke=0.11)
_US_FONT = FontStyle(width=0.5, stroke=0.11)

#: The countries of the sign world; ``COUNTRIES[name].classes`` lists the classes that exist there.
COUNTRIES: dict[str, CountryStyle] = {
    "belgium": CountryStyle(
        "belgium", "source", "source domain: European signs, white fills, thick red rings",
        _ALL_BUT_GERMAN,
        SignStyle("european", red=(200, 30, 45), blue=(20, 80, 165), yellow=(250, 200, 20), font=_EU_FONT,
                  ring_width=0.13, border_width=0.13, pedestrian="zebra"),
        SceneStyle(),
    ),
    "germany": CountryStyle(
        "germany", "near", "near: darker red, thinner rings, bold digits; adds priority_road_ends",
        _ALL_BUT_GERMAN + (14,),
        SignStyle("european", red=(175, 15, 35), blue=(0, 95, 180), yellow=(255, 205, 0),
                  font=_GERMAN_FONT, ring_width=0.095, border_width=0.1, arrow_width=0.13,
                  pedestrian="adult_child"),
        SceneStyle(facades=((215, 210, 195), (180, 170, 155), (150, 140, 130), (200, 180, 150),
                            (170, 110, 90), (230, 225, 210))),
    ),
    "sweden": CountryStyle(
        "sweden", "medium", "medium: yellow-filled prohibitory and warning signs, rural scenes",
        _ALL_BUT_GERMAN,
        SignStyle("european", red=(215, 45, 40), blue=(0, 90, 170), yellow=(255, 210, 0), font=_SWEDISH_FONT,
                  ring_width=0.085, border_width=0.075, rim_width=0.045, prohibitory_fill=(255, 210, 0),
                  danger_fill=(255, 210, 0), give_way_fill=(255, 210, 0), pedestrian="walker"),
        SceneStyle(layouts=(0.25, 0.35, 0.4), sky_top=(120, 155, 200), sky_horizon=(215, 220, 225),
                   facades=((160, 50, 40), (230, 200, 120), (220, 220, 210), (120, 140, 150),
                            (175, 65, 50)),
                   foliage=((40, 70, 40), (55, 90, 45), (35, 60, 35), (70, 100, 55)), conifers=0.6),
    ),
    "usa": CountryStyle(
        "usa", "large", "large: rectangular white regulatory and yellow diamond warning signs",
        tuple(range(1, 13)),
        SignStyle("us", red=(195, 20, 35), blue=(20, 80, 165), yellow=(255, 200, 0), font=_US_FONT,
                  ring_width=0.1, border_width=0.1, rim_width=0.02),
        SceneStyle(layouts=(0.3, 0.5, 0.2), sky_top=(80, 130, 210), sky_horizon=(195, 210, 230),
                   facades=((200, 180, 150), (170, 150, 120), (225, 215, 195), (140, 120, 100),
                            (190, 195, 200)),
                   grass=(110, 130, 70), road=(80, 80, 82), centre_line=(235, 190, 30),
                   double_centre_line=True, road_half_width=(2.2, 3.8)),
    ),
}

#: Country -> distance from the source domain ("source", "near", "medium", "large").
COUNTRY_SHIFT: dict[str, str] = {name: style.shift for name, style in COUNTRIES.items()}


# ---------------------------------------------------------------------------------------------------
# Validation.
# ---------------------------------------------------------------------------------------------------
def _country_style(country: str) -> CountryStyle:
    if not isinstance(country, str) or country.lower() not in COUNTRIES:
        raise ValueError(f"unknown country {country!r}; choose one of {sorted(COUNTRIES)}")
    return COUNTRIES[country.lower()]


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return int(value)


def _check_image_size(image_size: object) -> int:
    return _check_int("image_size", image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)


def image_rng(seed: int, country: str, index: int) -> np.random.Generator:
    """The random generator of image ``index`` of ``country`` for ``seed`` (independent of the set size).

    ``render_scene(country, image_rng(seed, country, i), size)`` is image ``i`` of
    ``generate(country, n, out_dir, seed, size)`` for every ``n > i``.
    """
    country_key = zlib.crc32(country.encode("utf-8"))
    return np.random.default_rng([int(seed), country_key, int(index)])


# ---------------------------------------------------------------------------------------------------
# Street geometry: a pinhole camera one unit above a flat ground. A ground point at depth D (camera
# heights) and lateral offset X lands at x = vp_x + X * G / D, y = horizon + G / D with
# G = size - horizon, so depth 1 is the bottom row; a point Z units high is Z * G / D pixels higher.
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Street:
    size: int
    kind: str  # "city", "suburb" or "rural"
    horizon: float
    vp_x: float
    road_left: float  # lateral offsets (camera heights) of the road edges, left < 0 < right
    road_right: float
    sidewalk: float  # width of the sidewalks / verges

    @property
    def ground_scale(self) -> float:
        return self.size - self.horizon

    def project(self, lateral: float, depth: float, height: float = 0.0) -> tuple[float, float]:
        """Pixel (x, y) of the world point at ``lateral``, ``depth``, ``height`` (camera heights)."""
        scale = self.ground_scale / depth
        return self.vp_x + lateral * scale, self.horizon + (1.0 - height) * scale


def _sample_street(scene: SceneStyle, rng: np.random.Generator, size: int) -> _Street:
    kind = ("city", "suburb", "rural")[rng.choice(3, p=scene.layouts)]
    half = rng.uniform(*scene.road_half_width)
    offset = rng.uniform(-0.5, 0.5) * half
    return _Street(size=size, kind=kind, horizon=rng.uniform(0.36, 0.55) * size,
                   vp_x=rng.uniform(0.3, 0.7) * size, road_left=-half + offset, road_right=half + offset,
                   sidewalk=rng.uniform(1.0, 2.2))


def _jitter(colour: RGB, rng: np.random.Generator, amount: float = 18.0) -> RGB:
    """``colour`` with Gaussian noise of ``amount`` per channel, clipped to 0..255."""
    offsets = rng.normal(0.0, amount, 3).tolist()
    return tuple(min(255, max(0, int(c + o))) for c, o in zip(colour, offsets))  # type: ignore[return-value]


def _base_image(street: _Street, scene: SceneStyle, rng: np.random.Generator) -> Image.Image:
    """Sky gradient above the horizon, ground colour below, as one vectorized (size, size, 3) fill."""
    size = street.size
    overcast = rng.uniform() < 0.25
    top = np.asarray(_jitter((175, 180, 188) if overcast else scene.sky_top, rng), np.float32)
    low = np.asarray(_jitter(scene.sky_horizon, rng, 10.0), np.float32)
    ground = np.asarray(_jitter(scene.sidewalk if street.kind == "city" else scene.grass, rng), np.float32)
    rows = np.arange(size, dtype=np.float32)[:, None]
    mix = np.clip(rows / max(street.horizon, 1.0), 0.0, 1.0) ** 1.5
    column = np.where(rows < street.horizon, top * (1 - mix) + low * mix, ground)  # (size, 3)
    return Image.fromarray(column[:, None, :].astype(np.uint8)).resize((size, size), Image.Resampling.NEAREST)


def _draw_ground(draw: ImageDraw.ImageDraw, street: _Street, scene: SceneStyle, rng: np.random.Generator) -> None:
    """Sidewalks, road and its markings: triangles that meet at the vanishing point."""
    far, near = 400.0, 0.3

    def strip(left: float, right: float, colour: RGB, depth_range: tuple[float, float] = (near, far)) -> None:
        d0, d1 = depth_range
        draw.polygon([street.project(left, d0), street.project(right, d0), street.project(right, d1),
                      street.project(left, d1)], fill=colour)

    walk = _jitter(scene.sidewalk, rng, 12)
    strip(street.road_left - street.sidewalk, street.road_right + street.sidewalk, walk)
    strip(street.road_left, street.road_right, _jitter(scene.road, rng, 8))
    line = _jitter((225, 225, 220), rng, 6)
    for edge in (street.road_left + 0.15, street.road_right - 0.2):
        strip(edge, edge + 0.06, line)
    centre = (street.road_left + street.road_right) / 2
    if scene.double_centre_line:
        for lateral in (centre - 0.1, centre + 0.04):
            strip(lateral, lateral + 0.06, scene.centre_line)
    else:
        depth = rng.uniform(0.5, 1.5)
        while depth < 60:  # dashes 1.5 units long every 4 units, shrinking with depth
            strip(centre - 0.04, centre + 0.04, scene.centre_line, (depth, depth + 1.5))
            depth += 4.0


def _draw_facades(draw: ImageDraw.ImageDraw, street: _Street, scene: SceneStyle, rng: np.random.Generator) -> None:
    """Rows of buildings on both sides of a city street, with windows in perspective."""
    for edge in (street.road_left - street.sidewalk, street.road_right + street.sidewalk):
        depth = rng.uniform(0.4, 1.2)
        while depth < 80:
            length = rng.uniform(3.0, 10.0)
            height = rng.uniform(2.5, 9.0)
            wall = _jitter(scene.facades[rng.integers(len(scene.facades))], rng, 10)
            corners = [street.project(edge, d, z) for d, z in ((depth, 0), (depth + length, 0),
                                                                (depth + length, height), (depth, height))]
            draw.polygon(corners, fill=wall)
            _draw_windows(draw, street, edge, depth, length, height, wall, rng)
            depth += length + (rng.uniform(0.5, 3.0) if rng.uniform() < 0.15 else 0.0)


def _draw_windows(draw: ImageDraw.ImageDraw, street: _Street, edge: float, depth: float, length: float,
                  height: float, wall: RGB, rng: np.random.Generator) -> None:
    # Skip windows that would be smaller than a pixel: the wall's near edge in pixels per unit.
    if street.ground_scale / depth < 4.0:
        return
    glass = _jitter((70, 85, 100), rng, 15)
    frame = tuple(int(c * 0.8) for c in wall)
    for z in np.arange(0.7, height - 0.8, 2.2):
        for d in np.arange(depth + 0.5, depth + length - 1.0, 1.8):
            quad = [street.project(edge, d, z), street.project(edge, d + 1.0, z),
                    street.project(edge, d + 1.0, z + 1.2), street.project(edge, d, z + 1.2)]
            draw.polygon(quad, fill=glass, outline=frame)  # type: ignore[arg-type]


def _draw_skyline(draw: ImageDraw.ImageDraw, street: _Street, scene: SceneStyle, rng: np.random.Generator) -> None:
    """Far buildings or a tree line along the horizon."""
    size, horizon = street.size, street.horizon
    x = -rng.uniform(0, 0.1) * size
    while x < size:
        width = rng.uniform(0.04, 0.15) * size
        if street.kind == "city":
            top = horizon - rng.uniform(0.03, 0.2) * size
            colour = _jitter((150, 155, 165), rng, 15)
            draw.rectangle([x, top, x + width, horizon + 2], fill=colour)
        else:
            top = horizon - rng.uniform(0.02, 0.08) * size
            colour = _jitter(scene.foliage[rng.integers(len(scene.foliage))], rng, 10)
            draw.ellipse([x - width * 0.3, top, x + width * 1.3, horizon + (horizon - top)], fill=colour)
        x += width * rng.uniform(0.6, 1.0)


def _draw_tree(draw: ImageDraw.ImageDraw, street: _Street, scene: SceneStyle, lateral: float, depth: float,
               rng: np.random.Generator) -> None:
    base_x, base_y = street.project(lateral, depth)
    scale = street.ground_scale / depth
    trunk = max(1.0, 0.15 * scale)
    green = scene.foliage[rng.integers(len(scene.foliage))]
    if rng.uniform() < scene.conifers:
        height = rng.uniform(3.0, 6.0) * scale
        draw.rectangle([base_x - trunk / 2, base_y - 0.5 * scale, base_x + trunk / 2, base_y], fill=(70, 50, 35))
        for level in range(3):
            top = base_y - height * (1 - 0.25 * level)
            bottom = base_y - 0.4 * scale - height * 0.25 * (2 - level)
            half = 0.22 * height * (1 + 0.3 * level)
            draw.polygon([(base_x, top), (base_x + half, bottom), (base_x - half, bottom)],
                         fill=_jitter(green, rng, 8))
        return
    height = rng.uniform(2.0, 4.0) * scale
    draw.rectangle([base_x - trunk / 2, base_y - height * 0.6, base_x + trunk / 2, base_y], fill=(80, 60, 45))
    radius = rng.uniform(0.8, 1.6) * scale
    for _ in range(5):
        cx = base_x + rng.normal(0.0, 0.4) * radius
        cy = base_y - height + rng.normal(0.0, 0.3) * radius
        r = radius * rng.uniform(0.5, 0.9)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_jitter(green, rng, 10))


def _draw_house(draw: ImageDraw.ImageDraw, street: _Street, scene: SceneStyle, lateral: float, depth: float,
                rng: np.random.Generator) -> None:
    """A house seen from the front beside the road (suburb)."""
    scale = street.ground_scale / depth
    x, y = street.project(lateral, depth)
    width, height = rng.uniform(3.0, 6.0) * scale, rng.uniform(2.0, 3.5) * scale
    left = x - width if lateral < 0 else x
    wall = _jitter(scene.facades[rng.integers(len(scene.facades))], rng, 10)
    draw.rectangle([left, y - height, left + width, y], fill=wall)
    roof = _jitter((120, 60, 50) if rng.uniform() < 0.6 else (70, 70, 75), rng, 10)
    draw.polygon([(left - 0.05 * width, y - height), (left + 1.05 * width, y - height),
                  (left + width / 2, y - height - rng.uniform(0.8, 1.6) * scale)], fill=roof)
    for u in (0.2, 0.6):
        draw.rectangle([left + u * width, y - 0.75 * height, left + (u + 0.18) * width, y - 0.45 * height],
                       fill=(70, 85, 100))


def _draw_car(draw: ImageDraw.ImageDraw, street: _Street, lateral: float, depth: float,
              rng: np.random.Generator) -> None:
    """A car seen from behind: body, rear window, red tail lights (sign-like red blobs)."""
    scale = street.ground_scale / depth
    x, y = street.project(lateral, depth)
    width, height = 1.2 * scale, rng.uniform(0.9, 1.2) * scale
    colours = ((180, 30, 30), (30, 60, 140), (200, 200, 205), (40, 40, 45), (120, 125, 130), (230, 230, 225))
    body = _jitter(colours[rng.integers(len(colours))], rng, 10)
    draw.rounded_rectangle([x - width / 2, y - height, x + width / 2, y - 0.1 * scale],
                           radius=0.15 * scale, fill=body)
    draw.rectangle([x - 0.38 * width, y - 0.95 * height, x + 0.38 * width, y - 0.62 * height], fill=(50, 60, 70))
    for u in (-0.42, 0.32):
        draw.ellipse([x + u * width, y - 0.5 * height, x + (u + 0.1) * width, y - 0.4 * height],
                     fill=(220, 30, 30))
    draw.rectangle([x - 0.45 * width, y - 0.12 * scale, x - 0.25 * width, y], fill=(20, 20, 20))
    draw.rectangle([x + 0.25 * width, y - 0.12 * scale, x + 0.45 * width, y], fill=(20, 20, 20))


def _draw_lamp(draw: ImageDraw.ImageDraw, street: _Street, lateral: float, depth: float) -> None:
    scale = street.ground_scale / depth
    x, y = street.project(lateral, depth)
    width = max(1.0, 0.08 * scale)
    top = y - 5.0 * scale
    arm = -1.2 * scale if lateral > 0 else 1.2 * scale
    draw.line([(x, y), (x, top), (x + arm, top + 0.2 * scale)], fill=(60, 62, 65), width=int(round(width)))


def _draw_roadside(draw: ImageDraw.ImageDraw, street: _Street, scene: SceneStyle, rng: np.random.Generator) -> None:
    """Trees, houses, lamps and parked cars along the road, far to near (painter's order)."""
    objects: list[tuple[float, str, float]] = []  # (depth, kind, lateral)
    density = {"city": 0.5, "suburb": 0.9, "rural": 0.8}[street.kind]
    for edge, side in ((street.road_left, -1.0), (street.road_right, 1.0)):
        depth = rng.uniform(1.0, 3.0)
        while depth < 50:
            if rng.uniform() < density:
                kind = rng.choice(["tree", "tree", "lamp", "car", "house"])
                if kind == "car":
                    lateral = edge - side * 0.7
                elif kind == "house":
                    if street.kind != "suburb":
                        kind = "tree"
                    lateral = edge + side * (street.sidewalk + rng.uniform(1.0, 4.0))
                else:
                    lateral = edge + side * rng.uniform(0.3, 0.9) * street.sidewalk
                if kind == "tree" and street.kind == "rural":
                    lateral += side * rng.uniform(0.0, 4.0)
                objects.append((depth, str(kind), lateral))
            depth *= rng.uniform(1.25, 1.7)
    for depth, kind, lateral in sorted(objects, reverse=True):
        if kind == "tree":
            _draw_tree(draw, street, scene, lateral, depth, rng)
        elif kind == "house":
            _draw_house(draw, street, scene, lateral, depth, rng)
        elif kind == "car":
            _draw_car(draw, street, lateral, depth, rng)
        else:
            _draw_lamp(draw, street, lateral, depth)


def _shading_image(rng: np.random.Generator, size: int) -> Image.Image:
    """Low-frequency shading (dirt, light, surface texture) as an "RGB" image to multiply with (255 = 1)."""
    coarse = rng.normal(0.0, 0.07, (max(2, size // 24),) * 2).astype(np.float32)
    fine = rng.normal(0.0, 0.04, (max(2, size // 6),) * 2).astype(np.float32)
    fine += np.asarray(Image.fromarray(coarse).resize(fine.shape, Image.Resampling.BILINEAR))
    shade = Image.fromarray(np.clip(230.0 * (1.0 + fine), 0, 255).astype(np.uint8))
    shade = shade.resize((size, size), Image.Resampling.BILINEAR)
    return Image.merge("RGB", (shade, shade, shade))


def _cast_shadow(image: Image.Image, street: _Street, rng: np.random.Generator) -> Image.Image:
    """Sometimes darken a slanted band of the ground, the shadow of a building or tree."""
    if rng.uniform() >= 0.35:
        return image
    size = street.size
    top = street.horizon + rng.uniform(0.0, 0.2) * street.ground_scale
    near_x = rng.uniform(0.1, 0.9) * size  # where the shadow's edge meets the bottom row
    far_x = street.vp_x + (near_x - street.vp_x) * rng.uniform(0.0, 0.5)
    corner = 0 if rng.uniform() < 0.5 else size  # the side the shadow comes from
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).polygon([(corner, top), (far_x, top), (near_x, size), (corner, size)], fill=255)
    factor = rng.uniform(0.5, 0.8)
    return Image.composite(image.point([int(v * factor) for v in range(256)] * 3), image, mask)


def _draw_background(street: _Street, scene: SceneStyle, rng: np.random.Generator) -> Image.Image:
    image = _base_image(street, scene, rng)
    draw = ImageDraw.Draw(image)
    _draw_skyline(draw, street, scene, rng)
    _draw_ground(draw, street, scene, rng)
    if street.kind == "city":
        _draw_facades(draw, street, scene, rng)
    _draw_roadside(draw, street, scene, rng)
    return image


# ---------------------------------------------------------------------------------------------------
# Signs and sign-like distractors: drawings resampled with rotation and perspective.
# ---------------------------------------------------------------------------------------------------
@dataclass
class _Patch:
    """An RGBA drawing placed with its top-left corner at (x, y); ``label`` 0 for distractors."""

    image: Image.Image
    x: int
    y: int
    label: int = 0

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.x + self.image.width, self.y + self.image.height


def _perspective_coefficients(source: np.ndarray, target: np.ndarray) -> tuple[float, ...]:
    """Pillow PERSPECTIVE coefficients mapping output points ``target`` (4, 2) to input ``source`` (4, 2)."""
    rows = []
    for (x, y), (u, v) in zip(target, source):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    return tuple(np.linalg.solve(np.asarray(rows), source.reshape(-1)))


def _warp(template: Image.Image, height: float, rng: np.random.Generator) -> Image.Image:
    """Resize ``template`` ("RGBa") to ``height`` pixels with a random in-plane rotation and a perspective view.

    Small drawings are rendered at twice the size and box-filtered down by 2, which anti-aliases their
    edges; large ones (>= :data:`SUPERSAMPLE_BELOW` pixels) directly, where bilinear sampling suffices.
    """
    factor = 2 if height < SUPERSAMPLE_BELOW else 1
    width_t, height_t = template.size
    scale = factor * height / height_t
    # Seen from the side: narrower, but never below MIN_BOX_SIZE + 2 pixels wide.
    squeeze = rng.uniform(min(1.0, max(0.6, (MIN_BOX_SIZE + 2) / height)), 1.0) if rng.uniform() < 0.5 else 1.0
    taper = rng.uniform(-0.08, 0.08) * (1.0 - squeeze) * 2.5  # the nearer edge is taller
    angle = np.deg2rad(np.clip(rng.normal(0.0, 4.0), -12.0, 12.0))
    half_w, half_h = width_t * scale * squeeze / 2, height_t * scale / 2
    corners = np.array([[-half_w, -half_h * (1 + taper)], [half_w, -half_h * (1 - taper)],
                        [half_w, half_h * (1 - taper)], [-half_w, half_h * (1 + taper)]])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = corners @ rotation.T
    corners -= corners.min(axis=0) - factor  # a transparent margin of 1 output pixel
    out_w, out_h = (int(np.ceil(v / factor)) * factor + factor for v in corners.max(axis=0))
    source = np.array([[0, 0], [width_t, 0], [width_t, height_t], [0, height_t]], dtype=np.float64)
    coefficients = _perspective_coefficients(source, corners)
    # Resampled in premultiplied alpha ("RGBa") so that transparent pixels do not darken the edges.
    warped = template.transform((out_w, out_h), Image.Transform.PERSPECTIVE, coefficients,
                                Image.Resampling.BILINEAR)
    return (warped.reduce(factor) if factor > 1 else warped).convert("RGBA")


def _weather(patch: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Per-sign lighting and fading as one lookup table: brightness, colour cast, washed-out colours."""
    fade = rng.uniform(0.0, 0.35)
    gains = rng.uniform(0.65, 1.1) * rng.normal(1.0, 0.04, 3)
    levels = np.arange(256, dtype=np.float64)
    table = [np.clip((levels * (1 - fade) + 128.0 * fade) * gain, 0, 255) for gain in gains] + [levels]
    return patch.point(np.concatenate(table).astype(np.uint8).tolist())


def _template_height(size: float) -> float:
    """The drawing height needed to warp a ``size``-pixel sign without enlarging it."""
    return 2.0 * size if size < SUPERSAMPLE_BELOW else size


def _sample_sign_size(rng: np.random.Generator, size: int) -> float:
    """Sign height in pixels: log-uniform over small to medium signs, sometimes a close-up."""
    low, high = float(MIN_SIGN_SIZE), max(MIN_SIGN_SIZE + 1.0, 0.3 * size)
    if rng.uniform() < 0.15:
        low, high = high, max(high + 1.0, 0.62 * size)
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _place(patch_image: Image.Image, centre: tuple[float, float], size: int) -> tuple[int, int]:
    """Top-left corner that centres the patch at ``centre``, moved inside the image."""
    x = int(round(centre[0] - patch_image.width / 2))
    y = int(round(centre[1] - patch_image.height / 2))
    return (int(np.clip(x, 0, max(0, size - patch_image.width))),
            int(np.clip(y, 0, max(0, size - patch_image.height))))


def _overlaps(box: tuple[int, int, int, int], others: Sequence[tuple[int, int, int, int]], margin: int = 2) -> bool:
    """Whether corners ``box`` comes within ``margin`` pixels of any of ``others``."""
    return any(box[0] < o[2] + margin and o[0] < box[2] + margin and
               box[1] < o[3] + margin and o[1] < box[3] + margin for o in others)


def _place_signs(street: _Street, country: CountryStyle, rng: np.random.Generator,
                 draw: ImageDraw.ImageDraw) -> list[_Patch]:
    """Choose 0-6 signs, warp them and stand them on poles at the roadside (poles drawn on ``draw``)."""
    count = int(rng.choice(len(SIGN_COUNT_PROBABILITIES), p=SIGN_COUNT_PROBABILITIES))
    placed: list[_Patch] = []
    while len(placed) < count:
        stacked = count - len(placed) >= 2 and rng.uniform() < 0.25  # two signs on one pole
        sizes = [_sample_sign_size(rng, street.size)]
        if stacked:
            sizes.append(sizes[0] * rng.uniform(0.8, 1.0))
        patches = [_sign_patch(country, size, rng) for size in sizes]
        if not _stand_on_pole(patches, sizes, street, rng, placed, draw):
            count -= len(patches)  # no free spot: fewer signs in this image
        placed.extend(p for p in patches if p.x >= 0)
    return placed


def _sign_patch(country: CountryStyle, size: float, rng: np.random.Generator) -> _Patch:
    label = int(rng.choice(country.classes))
    template = template_for(SIGN_CLASSES[label - 1].name, country.signs, _template_height(size))
    return _Patch(_weather(_warp(template, size, rng), rng), -1, -1, label)


def _stand_on_pole(patches: list[_Patch], sizes: list[float], street: _Street, rng: np.random.Generator,
                   placed: Sequence[_Patch], draw: ImageDraw.ImageDraw, tries: int = 10) -> bool:
    """Put ``patches`` one above the other on a pole at a free roadside spot; False if none is found."""
    for _ in range(tries):
        diameter = rng.uniform(0.4, 0.6)  # sign height in camera heights
        depth = diameter * street.ground_scale / sizes[0]
        side = rng.choice([street.road_left - 0.3, street.road_right + 0.3])
        lateral = side + np.sign(side) * rng.uniform(0.0, 1.0) * (street.sidewalk + 2.0)
        bottom = rng.uniform(0.8, 1.5) + diameter * (len(patches) - 1)
        x, y = street.project(lateral, depth, bottom + diameter / 2)
        x += rng.normal(0.0, 0.12) * street.size  # roads bend and signs stand back: spread them out
        y += rng.normal(0.0, 0.05) * street.size
        positions, top = [], y - patches[0].image.height / 2
        for patch, size in zip(patches, sizes):  # stacked signs: one below the other, a small gap apart
            positions.append(_place(patch.image, (x, top + patch.image.height / 2), street.size))
            top += patch.image.height + 0.1 * size
        boxes = [(px, py, px + p.image.width, py + p.image.height) for (px, py), p in zip(positions, patches)]
        taken = [p.box for p in placed]
        if any(_overlaps(box, taken + boxes[:i]) for i, box in enumerate(boxes)):
            continue
        for patch, (px, py) in zip(patches, positions):
            patch.x, patch.y = px, py
        pole_x = positions[-1][0] + patches[-1].image.width / 2
        ground_y = max(street.project(lateral, depth)[1], positions[-1][1] + patches[-1].image.height)
        width = max(1, int(round(0.06 * sizes[0])))
        draw.line([(pole_x, positions[0][1] + patches[0].image.height / 2), (pole_x, ground_y)],
                  fill=_jitter((135, 138, 140), rng, 15), width=width)
        return True
    return False


#: Height of a distractor relative to a sign drawn at the same distance (wide boards are lower).
_DISTRACTOR_SCALE = {"ball": 0.5, "traffic_light": 0.9, "board": 0.6, "one_way": 0.45}


def _place_distractors(street: _Street, country: CountryStyle, rng: np.random.Generator,
                       draw: ImageDraw.ImageDraw) -> list[_Patch]:
    """Sign-like objects of no class on poles and walls: about as many as signs, more in cities."""
    count = int(rng.poisson({"city": 3.0, "suburb": 2.0, "rural": 1.2}[street.kind]))
    kinds = sorted(DISTRACTORS)
    patches = []
    for _ in range(count):
        kind = kinds[rng.integers(len(kinds))]
        size = min(_sample_sign_size(rng, street.size), 0.35 * street.size) * _DISTRACTOR_SCALE.get(kind, 1.0)
        variants, _ = DISTRACTORS[kind]
        template = distractor_template(kind, int(rng.integers(variants)), country.signs,
                                       template_level(_template_height(size)))
        patch = _Patch(_weather(_warp(template, size, rng), rng), 0, 0)
        depth = 0.5 * street.ground_scale / size
        side = rng.choice([street.road_left, street.road_right])
        lateral = side + np.sign(side) * rng.uniform(0.0, 1.5) * street.sidewalk
        x, y = street.project(lateral, depth, rng.uniform(0.8, 3.5))
        patch.x, patch.y = _place(patch.image, (x, y), street.size)
        if rng.uniform() < 0.6 and kind != "ball":
            ground_y = street.project(lateral, depth)[1]
            draw.line([(patch.x + patch.image.width / 2, patch.y + patch.image.height / 2),
                       (patch.x + patch.image.width / 2, ground_y)],
                      fill=_jitter((100, 100, 100), rng, 20), width=max(1, int(0.06 * size)))
        patches.append(patch)
    return patches


# ---------------------------------------------------------------------------------------------------
# Occluders and visibility.
# ---------------------------------------------------------------------------------------------------
def _occluder(sign: _Patch, scene: SceneStyle, rng: np.random.Generator) -> _Patch:
    """Foliage or a pole in front of part of ``sign``, drawn at 2x and reduced like the signs."""
    w, h = sign.image.size
    extent = max(w, h)
    if rng.uniform() < 0.7:  # a leafy branch from one side
        radius = rng.uniform(0.3, 0.55) * extent
        canvas = Image.new("RGBA", (int(4 * radius) + 4,) * 2, (0, 0, 0, 0))
        draw = ImageDraw.Draw(canvas)
        green = scene.foliage[rng.integers(len(scene.foliage))]
        centre = canvas.width / 2
        for _ in range(7):
            cx, cy = centre + rng.normal(0, 0.5) * radius, centre + rng.normal(0, 0.5) * radius
            r = rng.uniform(0.4, 0.8) * radius
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_jitter(green, rng, 12) + (255,))
        image = canvas.reduce(2)
        angle = rng.uniform(0, 2 * np.pi)
        reach = rng.uniform(0.55, 0.8) * extent
        cx = sign.x + w / 2 + np.cos(angle) * reach
        cy = sign.y + h / 2 + np.sin(angle) * reach
    else:  # a pole or post in front
        width = max(2, int(rng.uniform(0.1, 0.25) * w))
        image = Image.new("RGBA", (width, int(h * rng.uniform(1.5, 3.0))), _jitter((70, 70, 72), rng, 20) + (255,))
        cx = sign.x + w * rng.uniform(0.1, 0.9)
        cy = sign.y + h / 2 + image.height * rng.uniform(-0.3, 0.3)
    return _Patch(image, int(round(cx - image.width / 2)), int(round(cy - image.height / 2)))


def _visible_box(sign: _Patch, occluders: Sequence[_Patch], size: int) -> tuple[int, int, int, int] | None:
    """Tight box (image pixels) of the sign's visible pixels, or None if it breaks the box rule."""
    visible = np.asarray(sign.image.getchannel("A")) >= 128
    full = int(visible.sum())
    for occ in occluders:
        x0, y0 = max(sign.x, occ.x), max(sign.y, occ.y)
        x1, y1 = min(sign.box[2], occ.box[2]), min(sign.box[3], occ.box[3])
        if x0 < x1 and y0 < y1:
            hidden = np.asarray(occ.image.getchannel("A"))[y0 - occ.y:y1 - occ.y, x0 - occ.x:x1 - occ.x] >= 128
            visible[y0 - sign.y:y1 - sign.y, x0 - sign.x:x1 - sign.x] &= ~hidden
    rows, cols = np.flatnonzero(visible.any(axis=1)), np.flatnonzero(visible.any(axis=0))
    if full == 0 or visible.sum() < MIN_VISIBLE_FRACTION * full or rows.size == 0:
        return None
    box = (max(0, sign.x + cols[0]), max(0, sign.y + rows[0]),
           min(size, sign.x + cols[-1] + 1), min(size, sign.y + rows[-1] + 1))
    if box[2] - box[0] < MIN_BOX_SIZE or box[3] - box[1] < MIN_BOX_SIZE:
        return None
    return box


# ---------------------------------------------------------------------------------------------------
# Camera effects on the whole image.
# ---------------------------------------------------------------------------------------------------
def _photometric(image: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """Exposure, gamma and white balance, blur, shading, sensor noise and JPEG artifacts.

    Every step is one Pillow call on the whole image (a lookup table, a box blur, a multiplication,
    an addition), which keeps a 300 px image at about a millisecond.
    """
    size = image.size[0]
    gain = float(np.clip(np.exp(rng.normal(0.0, 0.22)), 0.5, 1.5)) * 255.0 / 230.0  # undo the shading mean
    gamma = rng.uniform(0.8, 1.25)
    balance = rng.normal(1.0, 0.05, 3)
    levels = np.arange(256, dtype=np.float64) / 255.0
    table = np.concatenate([np.clip(255.0 * gain * b * levels ** gamma, 0, 255) for b in balance])
    image = image.point(table.astype(np.uint8).tolist())
    blur = rng.uniform()
    if blur < 0.6:  # a one-pass box blur, cheaper than a Gaussian: out of focus or horizontal motion
        radius = rng.uniform(0.3, 1.0) * size / 300
        image = image.filter(ImageFilter.BoxBlur(radius if blur < 0.4 else (2 * radius, 0)))
    image = ImageChops.multiply(image, _shading_image(rng, size))
    amplitude = int(rng.integers(0, 7))  # uniform sensor noise in [-amplitude, amplitude]
    noise = Image.fromarray(rng.integers(128 - amplitude, 129 + amplitude, (size, size), dtype=np.uint8))
    image = ImageChops.add(image, Image.merge("RGB", (noise, noise, noise)), scale=1.0, offset=-128)
    if rng.uniform() < 0.5:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(rng.integers(25, 90)))
        image = Image.open(buffer).convert("RGB")
    return np.array(image)


# ---------------------------------------------------------------------------------------------------
# Public API.
# ---------------------------------------------------------------------------------------------------
def render_scene(country: str, rng: np.random.Generator, image_size: int = 300, *, with_signs: bool = True,
                 photometric: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one street scene of ``country`` in memory.

    Args:
        country: a key of :data:`COUNTRIES`.
        rng: the random generator that decides everything in the scene.
        image_size: side of the square image in pixels (64 to 2048).
        with_signs: ``False`` leaves the signs out but draws everything else identically (poles
            included), which shows exactly which pixels the signs cover.
        photometric: ``False`` skips the camera effects (exposure, blur, shading, noise, JPEG).

    Returns:
        ``image`` uint8 ``(image_size, image_size, 3)``; ``boxes`` float32 ``(K, 4)`` pixel corners
        ``(xmin, ymin, xmax, ymax)`` of the visible signs (``K`` = 0 to 6); ``labels`` int64 ``(K,)``
        class ids of :data:`SIGN_CLASSES`.
    """
    style = _country_style(country)
    size = _check_image_size(image_size)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng)}")
    street = _sample_street(style.scene, rng, size)
    image = _draw_background(street, style.scene, rng)
    draw = ImageDraw.Draw(image)
    distractors = _place_distractors(street, style, rng, draw)
    signs = _place_signs(street, style, rng, draw)
    occluders = [_occluder(sign, style.scene, rng) for sign in signs if rng.uniform() < 0.25]
    boxes, labels = [], []
    for patch in distractors:
        image.paste(patch.image, (patch.x, patch.y), patch.image)
    for sign in signs:
        box = _visible_box(sign, occluders, size)
        if box is not None:
            boxes.append(box)
            labels.append(sign.label)
            if with_signs:
                image.paste(sign.image, (sign.x, sign.y), sign.image)
    for patch in occluders:
        image.paste(patch.image, (patch.x, patch.y), patch.image)
    image = _cast_shadow(image, street, rng)
    pixels = _photometric(image, rng) if photometric else np.array(image)
    return (pixels, np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            np.asarray(labels, dtype=np.int64))


def render_sign(country: str, sign: int | str, height: int = 96) -> np.ndarray:
    """The upright drawing of one sign class as ``country`` draws it: uint8 RGBA ``(height, width, 4)``.

    ``sign`` is a class id or name of :data:`SIGN_CLASSES`; a class that does not exist in ``country``
    raises ``ValueError``.
    """
    style = _country_style(country)
    by_id = {c.id: c for c in SIGN_CLASSES}
    sign_class = by_id.get(sign) if isinstance(sign, (int, np.integer)) else CLASS_BY_NAME.get(str(sign))
    if sign_class is None:
        raise ValueError(f"unknown sign class {sign!r}; use an id 1..{len(SIGN_CLASSES)} or one of "
                         f"{[c.name for c in SIGN_CLASSES]}")
    if sign_class.id not in style.classes:
        raise ValueError(f"class {sign_class.name!r} does not exist in {style.name}; it has {style.class_names}")
    height = _check_int("height", height, 8, 2048)
    template = template_for(sign_class.name, style.signs, 2 * height)  # premultiplied "RGBa"
    width = max(1, int(round(template.width * height / template.height)))
    return np.array(template.resize((width, height), Image.Resampling.LANCZOS).convert("RGBA"))


def write_png(path: str | Path, pixels: np.ndarray, level: int = 1) -> None:
    """Write an RGB uint8 ``(height, width, 3)`` image as a PNG file, byte-identical for the same pixels.

    Every row uses PNG's "up" filter (the difference to the row above) and zlib level 1: lossless like
    Pillow's writer, about half its time, and barely larger.
    """
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"write_png expects uint8 (height, width, 3) pixels, got {pixels.dtype} {pixels.shape}")
    height, width, _ = pixels.shape
    rows = pixels.reshape(height, width * 3)
    filtered = np.empty((height, width * 3 + 1), dtype=np.uint8)
    filtered[:, 0] = 2  # filter type "up"; the row above the first one is zeros
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # uint8 arithmetic wraps modulo 256, as PNG wants

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                           + chunk(b"IDAT", zlib.compress(filtered.tobytes(), level)) + chunk(b"IEND", b""))


def _coco_categories(style: CountryStyle) -> list[dict]:
    return [{"id": c.id, "name": c.name, "supercategory": c.superclass}
            for c in SIGN_CLASSES if c.id in style.classes]


def generate(country: str, num_images: int, out_dir: str | Path, seed: int = 0, image_size: int = 300) -> Path:
    """Write ``num_images`` scenes of ``country`` as PNG files plus a COCO ``annotations.json``.

    Files: ``out_dir/<country>_<index:06d>.png`` and ``out_dir/annotations.json`` (``file_name`` is
    relative to ``out_dir``; other files there are left alone). COCO fields: images (id, file_name,
    width, height), annotations (id, image_id, category_id, bbox ``[x, y, w, h]`` pixels, area,
    iscrowd 0), categories (id, name, supercategory = superclass; only the classes of ``country``,
    with the global ids of :data:`SIGN_CLASSES`) and ``info`` (country, shift, seed, image_size,
    generator version). Image ``i`` is ``render_scene(country, image_rng(seed, country, i),
    image_size)``, so the first ``k`` images do not depend on ``num_images``.

    Returns:
        The path of ``annotations.json``.

    Raises:
        ValueError: unknown country, ``num_images`` < 0, ``seed`` < 0 or ``image_size`` outside 64..2048.
    """
    style = _country_style(country)
    num_images = _check_int("num_images", num_images, 0)
    seed = _check_int("seed", seed, 0)
    size = _check_image_size(image_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(num_images):
        pixels, boxes, labels = render_scene(style.name, image_rng(seed, style.name, index), size)
        file_name = f"{style.name}_{index:06d}.png"
        write_png(out / file_name, pixels)
        images.append({"id": index + 1, "file_name": file_name, "width": size, "height": size})
        for (x0, y0, x1, y1), label in zip(boxes.tolist(), labels.tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1, "category_id": label,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                                "iscrowd": 0})
    coco = {
        "info": {"description": f"sign world {style.name} ({style.shift}), seed {seed}", "country": style.name,
                 "shift": style.shift, "seed": seed, "image_size": size, "num_images": num_images,
                 "generator": "tlutils.data.synth", "version": GENERATOR_VERSION},
        "images": images,
        "annotations": annotations,
        "categories": _coco_categories(style),
    }
    path = out / "annotations.json"
    path.write_text(json.dumps(coco, indent=1) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------
# Figures.
# ---------------------------------------------------------------------------------------------------
#: Box colours of the superclasses in figures.
SUPERCLASS_COLOURS = {"prohibitory": "#e41a1c", "danger": "#ff7f00", "mandatory": "#377eb8", "other": "#4daf4a"}


def _new_figure(width: float, height: float):  # -> matplotlib.figure.Figure
    """A figure outside pyplot (no global state, no GUI backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | Path | None, default_name: str) -> Path:
    """Save with :func:`tlutils.plotting.save_figure` (fixed dpi); ``None`` = the project's figures/."""
    from tlutils.plotting import save_figure

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
    names = [_country_style(c).name for c in (countries or list(COUNTRIES))]
    per_country = _check_int("per_country", per_country, 1, 32)
    size = _check_image_size(image_size)
    figure = _new_figure(2.6 * per_country, 2.75 * len(names))
    axes = figure.subplots(len(names), per_country, squeeze=False)
    for row, country in enumerate(names):
        for column in range(per_country):
            pixels, boxes, labels = render_scene(country, image_rng(seed, country, column), size)
            axis = axes[row, column]
            axis.imshow(pixels)
            for (x0, y0, x1, y1), label in zip(boxes, labels):
                sign = SIGN_CLASSES[label - 1]
                colour = SUPERCLASS_COLOURS[sign.superclass]
                axis.add_patch(_rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, colour))
                label_text = axis.text(x0, y0 - 2, sign.name, color="white", fontsize=5.5, va="bottom",
                                       bbox={"facecolor": colour, "edgecolor": "none", "pad": 0.6, "alpha": 0.85})
                label_text.set_in_layout(False)  # names near the top edge must not move the grid
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(f"{country} ({COUNTRY_SHIFT[country]})", fontsize=10)
    figure.suptitle(f"The embedded sign world: {size} px scenes, boxes coloured by superclass", fontsize=11)
    return _save(figure, path, "01_sign_world_gallery")


def _rectangle(corner: tuple[float, float], width: float, height: float, colour: str):
    from matplotlib.patches import Rectangle

    return Rectangle(corner, width, height, fill=False, edgecolor=colour, linewidth=1.2)


def save_sign_table(path: str | Path | None = None, countries: Sequence[str] | None = None,
                    height: int = 96) -> Path:
    """Save a table of every class (columns) as each country draws it (rows; "absent" where it has none).

    ``path`` defaults to ``figures/01_sign_classes.png`` of the project. Returns the path written.
    """
    names = [_country_style(c).name for c in (countries or list(COUNTRIES))]
    figure = _new_figure(1.05 * len(SIGN_CLASSES) + 1.2, 1.25 * len(names) + 0.9)
    axes = figure.subplots(len(names), len(SIGN_CLASSES), squeeze=False)
    for row, country in enumerate(names):
        for column, sign in enumerate(SIGN_CLASSES):
            axis = axes[row, column]
            axis.set_facecolor("#d9d9d9")
            axis.imshow(np.zeros((height, height, 4), dtype=np.uint8))  # the same square frame in every cell
            if sign.id in COUNTRIES[country].classes:
                drawing = render_sign(country, sign.id, height)
                left, top = (height - drawing.shape[1]) / 2, (height - drawing.shape[0]) / 2
                axis.imshow(drawing, extent=(left - 0.5, left + drawing.shape[1] - 0.5,
                                             top + drawing.shape[0] - 0.5, top - 0.5))
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


if __name__ == "__main__":  # python -m tlutils.data.synth: regenerate the figures of notebook 01
    print(save_gallery())
    print(save_sign_table())
