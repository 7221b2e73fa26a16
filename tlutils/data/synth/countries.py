"""The countries of the sign world: which classes exist where, how signs and streets look there.

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

Class ids come from :data:`SIGN_CLASSES` (``1..C``; 0 is background) and are the same in every country.
"""

from __future__ import annotations

from dataclasses import dataclass

from tlutils.data.signs import SIGN_CLASSES, FontStyle, SignStyle

__all__ = ["COUNTRIES", "COUNTRY_SHIFT", "RGB", "CountryStyle", "SceneStyle", "country_style"]

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


def country_style(country: str) -> CountryStyle:
    """The :class:`CountryStyle` of ``country`` (any case); ``ValueError`` naming the countries if unknown."""
    if not isinstance(country, str) or country.lower() not in COUNTRIES:
        raise ValueError(f"unknown country {country!r}; choose one of {sorted(COUNTRIES)}")
    return COUNTRIES[country.lower()]
