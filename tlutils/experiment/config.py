"""What one experiment is: :class:`RunConfig` and the choices it may name.

A configuration is short; every ``None`` is filled in from the run's profile by
:func:`tlutils.experiment.resolved.resolve`, which is what a run really does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

from tlutils.profiles import get_profile
from tlutils.transfer import parse_strategy

SOURCE_COUNTRY = "belgium"
STAGES = ("source", "target")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "step", "cosine")
#: "step" schedule: the rate drops STEP_DECAY_FACTOR-fold for the last STEP_DECAY_FRACTION of a phase
#: (the SSD paper's recipe: 1e-3, then 1e-4 for the last part).
STEP_DECAY_FRACTION = 0.2
STEP_DECAY_FACTOR = 0.1
PREPROCESSING_CHOICES = ("caffe", "tf", "none")  # tlutils.model.PREPROCESSING_MODES, without importing keras
#: Training augmentation (``tlutils.data.augment.Augmenter``): "ssd" = the paper's chain (photometric,
#: zoom-out up to 2x, IoU-constrained crop; no flip), "photometric" = colours only, "none" = resize only.
AUGMENTATIONS = ("ssd", "photometric", "none")
SGD_MOMENTUM = 0.9  # SSD paper, section 3: SGD with momentum 0.9
#: Strategies a sweep runs when none are named (``imagenet`` needs width 1.0 and a download).
DEFAULT_STRATEGIES = ("scratch", "freeze:block3", "finetune", "two_stage", "head_only")


@dataclass(frozen=True)
class RunConfig:
    """One experiment: which detector is trained on what, how, for how long.

    ``None`` fields take their value from the profile (see ``resolve``), so a configuration stays
    short: ``RunConfig(country="germany", strategy="finetune", num_target_images=50)``.

    Attributes:
        stage: ``"source"`` (train the source-country detector) or ``"target"`` (transfer it).
        country: the country trained and evaluated on (``tlutils.data.synth.COUNTRIES``).
        strategy: a transfer strategy (``tlutils.transfer``), stored in its canonical spelling:
            ``"scratch"``, ``"imagenet"``, ``"freeze:block3"``, ``"finetune"``, ``"two_stage"``,
            ``"head_only"``. The source stage takes ``scratch`` or ``imagenet``.
        num_target_images: training images of a target run (required there); for the source stage
            ``None`` means the profile's ``num_source_images``.
        seed: seed of the initialization, the subset, the batch order and the augmentation.
        profile: run profile name (``tlutils.profiles``): sizes and budgets.
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9).
        learning_rate: base learning rate; ``None``: the profile's. ``finetune`` and ``two_stage``
            scale it (``tlutils.transfer.FINETUNE_LR_FACTOR``).
        schedule: ``"constant"``, ``"step"`` (a tenth of the rate for the last fifth of each phase,
            as in the SSD paper) or ``"cosine"`` (cosine decay to 0 over each phase).
        total_steps: training budget in optimizer steps, the same for every strategy; ``None``: the
            profile's (``source_epochs`` passes over the source data, or ``target_steps``).
        steps_per_epoch: steps between evaluations; ``None``: one pass over the source data, or
            ``target_steps / target_epochs``.
        l2_regularization: L2 factor on every conv kernel (logged apart as ``regularization``).
        preprocessing: input preprocessing of the detector (``"caffe"``, ``"tf"``, ``"none"``);
            ``None``: what the initial weights expect (:func:`default_preprocessing`).
        augmentation: training augmentation, one of :data:`AUGMENTATIONS`; ``None``: see
            :func:`default_augmentation`.
        source_country, source_strategy, source_seed: the source run a target run starts from.
        backbone_weights: what ``imagenet`` loads: ``"imagenet"`` (download) or a VGG16 weights file.
    """

    stage: str = "target"
    country: str = "germany"
    strategy: str = "scratch"
    num_target_images: int | None = None
    seed: int = 0
    profile: str = "ci"
    optimizer: str = "adam"
    learning_rate: float | None = None
    schedule: str = "step"
    total_steps: int | None = None
    steps_per_epoch: int | None = None
    l2_regularization: float = 0.0
    preprocessing: str | None = None
    augmentation: str | None = None
    source_country: str = SOURCE_COUNTRY
    source_strategy: str = "scratch"
    source_seed: int = 0
    backbone_weights: str | None = "imagenet"

    def __post_init__(self) -> None:
        strategy = parse_strategy(self.strategy)
        object.__setattr__(self, "strategy", str(strategy))
        _check_choice("stage", self.stage, STAGES)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        if self.augmentation is not None:
            _check_choice("augmentation", self.augmentation, AUGMENTATIONS)
        if self.preprocessing is not None:
            _check_choice("preprocessing", self.preprocessing, PREPROCESSING_CHOICES)
        get_profile(self.profile)
        if self.stage == "source" and strategy.uses_source:
            raise ValueError(f"the source stage trains from scratch or imagenet, not {self.strategy!r}")
        if parse_strategy(self.source_strategy).uses_source:
            raise ValueError(f"source_strategy must be 'scratch' or 'imagenet', got {self.source_strategy!r}")
        if self.stage == "target" and self.num_target_images is None:
            raise ValueError("a target run needs num_target_images (its number of training images)")
        for name in ("num_target_images", "total_steps", "steps_per_epoch"):
            _check_positive_int(name, getattr(self, name))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.learning_rate is not None and not 0 < self.learning_rate < float("inf"):
            raise ValueError(f"learning_rate must be a finite number > 0 or None, got {self.learning_rate!r}")
        if not 0 <= self.l2_regularization < float("inf"):
            raise ValueError(f"l2_regularization must be a finite number >= 0, got {self.l2_regularization!r}")

    @property
    def uses_source(self) -> bool:
        """Whether this run starts from the source-country detector (a source-initialized target run)."""
        return self.stage == "target" and parse_strategy(self.strategy).uses_source

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def _check_positive_int(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")


def source_config(config: RunConfig) -> RunConfig:
    """The source-stage run a target run starts from (shared by all target runs of the profile)."""
    return RunConfig(
        stage="source", country=config.source_country, strategy=config.source_strategy,
        num_target_images=None, seed=config.source_seed, profile=config.profile,
        preprocessing=config.preprocessing, backbone_weights=config.backbone_weights,
    )


def default_preprocessing(config: RunConfig) -> str:
    """The preprocessing the run's initial weights want, when ``config.preprocessing`` is ``None``.

    ``"caffe"`` wherever VGG16's ImageNet weights are involved (the ``imagenet`` strategy, or a source
    run that used it): they were trained on BGR, mean-subtracted pixels. Otherwise ``"tf"`` (pixels
    scaled to [-1, 1]): caffe's 0-255 scale makes a He-initialized SSD's first logits hundreds large
    (see docs/results.md). Source and target runs share the value, so transferred weights always see
    the preprocessing they were trained with.
    """
    imagenet = config.strategy == "imagenet" or (config.uses_source and config.source_strategy == "imagenet")
    return "caffe" if imagenet else "tf"


def default_augmentation(config: RunConfig) -> str:
    """The training augmentation when ``config.augmentation`` is ``None``.

    The source stage renders as many scenes as it needs, so colour changes suffice and it converges
    fastest without zoom-out and crops; a few-shot target set needs the full SSD chain against
    over-fitting (measurements in docs/results.md).
    """
    return "photometric" if config.stage == "source" else "ssd"
