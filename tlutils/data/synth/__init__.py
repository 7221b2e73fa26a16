"""The embedded sign world: procedural street scenes with traffic signs in several country styles.

A stand-in for GTSDB / BelgiumTS that needs no download: ``generate("belgium", 500, "data/be", seed=0)``
writes 500 PNG images and a COCO ``annotations.json`` that ``tlutils.data.load_coco`` reads. Other
countries draw the same classes differently (and Germany adds a class), so the course can measure
transfer from a source country to targets at a graded distance (:data:`COUNTRY_SHIFT`). NumPy and
Pillow only (no deep-learning backend).

One concept per module, in the order a scene is made:

- ``countries``  :data:`COUNTRIES`, :data:`COUNTRY_SHIFT`, :class:`CountryStyle`, :class:`SceneStyle`
- ``street``     street geometry and the background (sky, road, buildings, trees, cars)
- ``placement``  signs, distractors and occluders; the box rule (:data:`MIN_BOX_SIZE`, ...)
- ``scene``      :func:`render_scene`, :func:`render_sign`, :func:`image_rng`, camera effects
- ``files``      :func:`generate`: a set on disk, PNG files and a COCO ``annotations.json``
- ``sets``       :func:`synth_dataset`: the course's sets, rendered once into ``data/synth/``

Conventions: images are square, ``image_size`` pixels; boxes are **pixel** corners ``(xmin, ymin,
xmax, ymax)`` with exclusive maxima, as in ``tlutils.data.records``; COCO files hold ``[x, y, width,
height]``. Class ids come from :data:`SIGN_CLASSES` (``1..C``; 0 is background) and are the same in
every country. Names with a leading underscore are shared between these modules only.

Figures of the sign world (gallery, sign table) are in ``tlutils.plotting``.
"""

from tlutils.data.signs import SIGN_CLASSES, SignClass
from tlutils.data.synth.countries import COUNTRIES, COUNTRY_SHIFT, RGB, CountryStyle, SceneStyle, country_style
from tlutils.data.synth.files import GENERATOR_VERSION, generate
from tlutils.data.synth.placement import (
    MIN_BOX_SIZE,
    MIN_SIGN_SIZE,
    MIN_VISIBLE_FRACTION,
    SIGN_COUNT_PROBABILITIES,
    SUPERSAMPLE_BELOW,
)
from tlutils.data.synth.scene import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, image_rng, render_scene, render_sign
from tlutils.data.synth.sets import HELD_OUT_SEEDS, WORLD_SEEDS, synth_dataset

__all__ = [
    "COUNTRIES",
    "COUNTRY_SHIFT",
    "GENERATOR_VERSION",
    "MAX_IMAGE_SIZE",
    "MIN_BOX_SIZE",
    "MIN_IMAGE_SIZE",
    "MIN_SIGN_SIZE",
    "MIN_VISIBLE_FRACTION",
    "RGB",
    "SIGN_CLASSES",
    "SIGN_COUNT_PROBABILITIES",
    "SUPERSAMPLE_BELOW",
    "HELD_OUT_SEEDS",
    "WORLD_SEEDS",
    "CountryStyle",
    "SceneStyle",
    "SignClass",
    "country_style",
    "generate",
    "image_rng",
    "render_scene",
    "render_sign",
    "synth_dataset",
]
