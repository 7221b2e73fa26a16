"""What one pretrained start is: :class:`PretrainConfig`, resolved from the run profile, and its key.

Like a run, a pretrained file is named by a stable hash of everything that decides its weights
(:attr:`ResolvedPretrain.key`), so a file is reused exactly when the same configuration asks again.
Importing this module imports no deep-learning backend.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from tlutils.pretrain.data import canonical_specs, spec_fingerprint
from tlutils.profiles import get_profile, resolve_precision

#: The two pretrained starts (``tlutils.transfer``'s strategies of the same names).
PRETRAIN_KINDS = ("classifier", "detector")
#: Preprocessing modes (``tlutils.model.PREPROCESSING_MODES``, without importing keras).
PREPROCESSING_CHOICES = ("caffe", "tf", "none")
#: Batch size of the classifier: crops are small, so a batch holds more of them than the profile's.
CLASSIFIER_BATCH_SIZE = 32
#: Bump when training a pretrained start changes meaning: old files then no longer match.
PRETRAIN_VERSION = 1


@dataclass(frozen=True)
class PretrainConfig:
    """One pretrained start; ``None`` fields come from the profile (:meth:`resolve`).

    Attributes:
        kind: ``"classifier"`` (VGG16 + a classification head on sign crops) or ``"detector"``
            (a whole SSD on another detection dataset).
        profile: run profile (``tlutils.profiles``): width, input size, image and epoch counts.
        data: data specs (``tlutils.data.specs``, kept in their canonical spelling; read as in
            ``tlutils.pretrain.data``); ``None``: the classifier classifies the signs of
            ``source_country`` (a BelgiumTSC stand-in: a classification set cut from the source data),
            the detector learns the sign world's other countries (the COCO stand-in; never the source
            country).
        source_country: the country of the source stage that will start from this file (only used
            to choose the default ``data``).
        seed: seed of the initialization and the batch order.
        preprocessing: the detector's input preprocessing; the start must use the detector's.
        l2_regularization: L2 factor on the kernels while pretraining.
        num_images: training images in all (shared by the data's countries); ``None``: the profile's
            ``num_source_images``.
        epochs: passes over the data; ``None``: the profile's ``source_epochs``.
        crop_size: classifier crops in pixels; ``None``: ``default_crop_size(input_size)``.
        batch_size, learning_rate: ``None``: :data:`CLASSIFIER_BATCH_SIZE` / the profile's batch
            size, and the profile's learning rate (Adam, a tenth for the last fifth).
    """

    kind: str
    profile: str = "ci"
    data: tuple[str, ...] | None = None
    source_country: str = "belgium"
    seed: int = 0
    preprocessing: str = "tf"
    l2_regularization: float = 0.0
    num_images: int | None = None
    epochs: int | None = None
    crop_size: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in PRETRAIN_KINDS:
            raise ValueError(f"kind must be one of {list(PRETRAIN_KINDS)}, got {self.kind!r}")
        get_profile(self.profile)
        if self.data is not None:
            if isinstance(self.data, str) or not self.data:
                raise ValueError(f"data must be a non-empty list of data specs, got {self.data!r}")
            object.__setattr__(self, "data", canonical_specs(self.data))  # a bad spec fails here
        if self.preprocessing not in PREPROCESSING_CHOICES:
            raise ValueError(f"preprocessing must be one of {list(PREPROCESSING_CHOICES)}, got {self.preprocessing!r}")
        _check_int("seed", self.seed, 0, optional=False)
        for name in ("num_images", "epochs", "crop_size", "batch_size"):
            _check_int(name, getattr(self, name), 1)
        if self.learning_rate is not None:
            _check_finite("learning_rate", self.learning_rate, positive=True)
        _check_finite("l2_regularization", self.l2_regularization, positive=False)

    def resolve(self) -> "ResolvedPretrain":
        """Every ``None`` filled in from the profile (see the attributes)."""
        from tlutils.data.synth import COUNTRIES
        from tlutils.pretrain.crops import default_crop_size

        profile = get_profile(self.profile)
        classifier = self.kind == "classifier"
        source = self.source_country.lower()
        if source not in COUNTRIES:
            raise ValueError(f"unknown source_country {self.source_country!r}; choose one of {sorted(COUNTRIES)}")
        default_data = canonical_specs([source] if classifier else [c for c in COUNTRIES if c != source])
        values = {
            **{k: v for k, v in dataclasses.asdict(self).items() if k != "source_country"},
            "data": self.data or default_data,
            "num_images": self.num_images or profile.num_source_images,
            "epochs": self.epochs or profile.source_epochs,
            "crop_size": (self.crop_size or default_crop_size(profile.input_size)) if classifier else None,
            "batch_size": self.batch_size or (CLASSIFIER_BATCH_SIZE if classifier else profile.batch_size),
            "learning_rate": self.learning_rate or profile.learning_rate,
        }
        return ResolvedPretrain(**values, input_size=profile.input_size, width=profile.width,
                                num_val_images=profile.num_val_images,
                                mixed_precision=resolve_precision(profile.source_precision or profile.mixed_precision))

    @property
    def key(self) -> str:
        """The key of the resolved configuration (:attr:`ResolvedPretrain.key`)."""
        return self.resolve().key


def _check_int(name: str, value: Any, smallest: int, optional: bool = True) -> None:
    """An integer >= ``smallest``, or ``None`` when ``optional`` (the profile's value)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
        raise ValueError(f"{name} must be an integer >= {smallest}{' or None' if optional else ''}, got {value!r}")


def _check_finite(name: str, value: Any, positive: bool) -> None:
    """A finite number, > 0 (``positive``) or >= 0."""
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")


@dataclass(frozen=True)
class ResolvedPretrain:
    """A :class:`PretrainConfig` with every field decided, plus the profile's sizes.

    ``input_size`` is the detector's input (the classifier's crops come from images of that size);
    ``crop_size`` is ``None`` for the detector. ``mixed_precision`` is the source stage's policy (the
    profile's ``source_precision`` where set: float32 on cpu, so a pretrained file and the source runs
    starting from it have the same keys on every CPU).
    """

    kind: str
    profile: str
    data: tuple[str, ...]
    seed: int
    preprocessing: str
    l2_regularization: float
    num_images: int
    epochs: int
    crop_size: int | None
    batch_size: int
    learning_rate: float
    input_size: int
    width: float
    num_val_images: int
    mixed_precision: str
    version: int = PRETRAIN_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able configuration, with each data spec's fingerprint (what :attr:`key` hashes)."""
        values = dataclasses.asdict(self)
        values["data"] = list(self.data)
        values["data_fingerprints"] = [spec_fingerprint(spec) for spec in self.data]
        return values

    @functools.cached_property
    def key(self) -> str:
        """A stable 12-character hash of :meth:`to_dict` (the scheme of the run keys: real data specs
        spelled without their location, ``DataSpec.without_location``, beside their content fingerprints)."""
        from tlutils.data.specs import parse_spec

        values = self.to_dict()
        values["data"] = [parse_spec(spec).without_location() for spec in values["data"]]
        for printed in values["data_fingerprints"]:
            printed["spec"] = parse_spec(printed["spec"]).without_location()
        canonical = json.dumps(values, sort_keys=True, separators=(",", ":")).encode("utf-8")
        return hashlib.sha256(canonical).hexdigest()[:12]

    @property
    def file_name(self) -> str:
        """``<kind>_<key>.keras``: the pretrained file's name in ``runs/<profile>/pretrained/``."""
        return f"{self.kind}_{self.key}.keras"
