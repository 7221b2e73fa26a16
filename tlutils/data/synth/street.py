"""Street geometry and the background of a scene: sky, road, facades, trees, houses, lamps, cars.

A pinhole camera one unit above a flat ground. A ground point at depth D (camera heights) and lateral
offset X lands at x = vp_x + X * G / D, y = horizon + G / D with G = size - horizon, so depth 1 is
the bottom row; a point Z units high is Z * G / D pixels higher. Everything is drawn far to near
(painter's order) with Pillow on an ``(size, size)`` RGB image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from tlutils.data.synth.countries import RGB, SceneStyle

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
