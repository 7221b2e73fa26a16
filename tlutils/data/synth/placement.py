"""Signs, sign-like distractors and occluders placed in a street, and the box rule.

Drawings (``tlutils.data.signs``) are resampled with a random in-plane rotation and perspective and
stood on poles at the roadside; distractors (parking and one-way signs, boards, logos, backs of
signs, traffic lights, balls) have no class; foliage and posts hide parts of some signs.

Box rule: a box is the tight box of the sign's *visible* pixels (alpha >= 1/2 after rotation and
perspective, minus what an occluder hides), in **pixel** corners ``(xmin, ymin, xmax, ymax)`` with
exclusive maxima. A sign whose visible part is smaller than :data:`MIN_VISIBLE_FRACTION` of its area,
or whose visible box is narrower or lower than :data:`MIN_BOX_SIZE` pixels, is not drawn at all, so
an image never shows a sign without a box.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from tlutils.data.signs import DISTRACTORS, SIGN_CLASSES, distractor_template, template_for, template_level
from tlutils.data.synth.countries import CountryStyle, SceneStyle
from tlutils.data.synth.street import _jitter, _Street

#: Smallest sign drawn (height in pixels before rotation / perspective).
MIN_SIGN_SIZE = 12
#: Signs whose visible box would be narrower or lower than this many pixels are not drawn.
MIN_BOX_SIZE = 8
#: Signs with less than this fraction of their pixels visible (occlusion) are not drawn.
MIN_VISIBLE_FRACTION = 0.5
#: Drawings smaller than this (pixels) are resampled at twice the size and reduced (anti-aliasing).
SUPERSAMPLE_BELOW = 40
#: Probability of 0, 1, ..., 6 signs in an image (GTSDB: 159 of 900 images have none).
SIGN_COUNT_PROBABILITIES = (0.15, 0.3, 0.22, 0.14, 0.09, 0.06, 0.04)


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
