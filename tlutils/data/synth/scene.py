"""One street scene in memory: :func:`render_scene`, :func:`render_sign`, :func:`image_rng`, camera effects.

A scene: a sky gradient and a street in one-point perspective (city facades with windows, suburban
houses or a rural tree line), trees, lamp posts and cars with red tail lights; 0 to 6 signs on poles
(12 px up to about 60% of the image; about one image in six has none); sign-like objects of no class
so that colour alone does not find signs; foliage and posts hiding parts of some signs; per-sign
fading; camera effects (exposure, gamma, white balance, ground shadows, blur, shading, noise, JPEG).

Images are square, ``image_size`` pixels, uint8 RGB; boxes are **pixel** corners ``(xmin, ymin,
xmax, ymax)`` with exclusive maxima (a box ``(3, 4, 15, 16)`` covers columns 3..14).
"""

from __future__ import annotations

import io
import zlib

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from tlutils.data.signs import CLASS_BY_NAME, SIGN_CLASSES, template_for
from tlutils.data.synth.countries import country_style
from tlutils.data.synth.placement import _occluder, _place_distractors, _place_signs, _visible_box
from tlutils.data.synth.street import _cast_shadow, _draw_background, _sample_street

__all__ = ["MAX_IMAGE_SIZE", "MIN_IMAGE_SIZE", "check_image_size", "check_int", "image_rng", "render_scene",
           "render_sign"]

MIN_IMAGE_SIZE = 64
MAX_IMAGE_SIZE = 2048


def check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """``value`` as an int if it is an integer in ``low..high`` (``high=None``: no upper bound), else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return int(value)


def check_image_size(image_size: object) -> int:
    """``image_size`` as an int if it is an integer in :data:`MIN_IMAGE_SIZE`..:data:`MAX_IMAGE_SIZE`."""
    return check_int("image_size", image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)


def image_rng(seed: int, country: str, index: int) -> np.random.Generator:
    """The random generator of image ``index`` of ``country`` for ``seed`` (independent of the set size).

    ``render_scene(country, image_rng(seed, country, i), size)`` is image ``i`` of
    ``generate(country, n, out_dir, seed, size)`` for every ``n > i``.
    """
    country_key = zlib.crc32(country.encode("utf-8"))
    return np.random.default_rng([int(seed), country_key, int(index)])


# ---------------------------------------------------------------------------------------------------
# Camera effects on the whole image.
# ---------------------------------------------------------------------------------------------------
def _shading_image(rng: np.random.Generator, size: int) -> Image.Image:
    """Low-frequency shading (dirt, light, surface texture) as an "RGB" image to multiply with (255 = 1)."""
    coarse = rng.normal(0.0, 0.07, (max(2, size // 24),) * 2).astype(np.float32)
    fine = rng.normal(0.0, 0.04, (max(2, size // 6),) * 2).astype(np.float32)
    fine += np.asarray(Image.fromarray(coarse).resize(fine.shape, Image.Resampling.BILINEAR))
    shade = Image.fromarray(np.clip(230.0 * (1.0 + fine), 0, 255).astype(np.uint8))
    shade = shade.resize((size, size), Image.Resampling.BILINEAR)
    return Image.merge("RGB", (shade, shade, shade))


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
    style = country_style(country)
    size = check_image_size(image_size)
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
    style = country_style(country)
    by_id = {c.id: c for c in SIGN_CLASSES}
    sign_class = by_id.get(sign) if isinstance(sign, (int, np.integer)) else CLASS_BY_NAME.get(str(sign))
    if sign_class is None:
        raise ValueError(f"unknown sign class {sign!r}; use an id 1..{len(SIGN_CLASSES)} or one of "
                         f"{[c.name for c in SIGN_CLASSES]}")
    if sign_class.id not in style.classes:
        raise ValueError(f"class {sign_class.name!r} does not exist in {style.name}; it has {style.class_names}")
    height = check_int("height", height, 8, 2048)
    template = template_for(sign_class.name, style.signs, 2 * height)  # premultiplied "RGBa"
    width = max(1, int(round(template.width * height / template.height)))
    return np.array(template.resize((width, height), Image.Resampling.LANCZOS).convert("RGBA"))
