"""What one experiment is: :class:`RunConfig` and the choices it may name.

A configuration is short; every ``None`` is filled in from the run's profile by
:func:`tlutils.experiment.resolved.resolve`, which is what a run really does.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any, Sequence

from tlutils.profiles import get_profile
from tlutils.transfer import parse_strategy

#: The source data of the course: the sign world's Belgium (a data spec, ``tlutils.data.specs``).
SOURCE_DATA = "synth:belgium"
#: How target classes meet source classes: by (synonym-aware) name, or all relabelled to the four
#: superclasses (prohibitory, danger, mandatory, other) as most GTSDB theses do (``tlutils.data.classes``).
CLASS_MODES = ("name", "superclass")
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
    short: ``RunConfig(target_data="germany", strategy="finetune", num_target_images=50)``.

    Attributes:
        stage: ``"source"`` (train the source-country detector) or ``"target"`` (transfer it).
        target_data: what a target run trains and is evaluated on: a data spec (``tlutils.data.specs``)
            such as ``"synth:germany"`` (a bare country name means the same), ``"gtsdb:<folder>"``,
            ``"coco:<annotations.json>"``; stored in its canonical spelling.
        source_data: what the source stage trains on (and a target run's source detector was trained
            on): a data spec, default :data:`SOURCE_DATA`.
        classes: :data:`CLASS_MODES`: match target to source classes by name (default) or relabel
            both to the four superclasses.
        strategy: a transfer strategy (``tlutils.transfer``), stored in its canonical spelling:
            ``"scratch"``, ``"imagenet"``, ``"freeze:block3"``, ``"finetune"``, ``"two_stage"``,
            ``"head_only"``. The source stage takes ``scratch``, ``imagenet``, ``classifier`` (VGG16
            from a traffic-sign classifier) or ``detector`` (a detector pretrained on other data),
            see ``tlutils.pretrain``.
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
        source_strategy, source_seed: the source run a target run starts from.
        backbone_weights: what ``imagenet`` loads: ``"imagenet"`` (download) or a VGG16 weights file.
        cache_features: run the frozen part once per training image and train the rest on the stored
            features (``tlutils.feature_cache``): for strategies that freeze in every phase
            (``head_only``, ``freeze:<point>``), without augmentation (it would change the frozen
            part's inputs every epoch; the default augmentation becomes ``"none"``).
        evaluate_test: also score the data's test split at epoch 0 and the last epoch (``test_map50``,
            ``tlutils.experiment.held_out``): the split that reports what a validation sweep chose.
        evaluate_source: a target run also scores the source data's val split there
            (``source_map50``): what the transferred detector kept of the source (forgetting); for
            scratch, the reference of a detector that never saw it.
        smallest_scale: the smallest default box (conv4_3's scale) as a fraction of the input side;
            ``None``: SSD's 0.1 (:data:`tlutils.anchors.FIRST_LAYER_SCALE`, 16 px at the cpu profile's
            160 px); smaller for signs smaller than that. A target run and its source run share it
            (it changes the training targets, not the model), and so does every evaluation of the run;
            the pretraining of a ``classifier`` / ``detector`` start keeps SSD's boxes.
        early_stopping: stop a run after this many evaluations without a better val mAP@0.5 than its
            best epoch's (``best_epoch`` column), scoring the stop epoch as a last epoch, and keep the
            best epoch's detector as ``best.keras``; ``None``: train the whole budget. Needs mAP at
            every evaluation (the sign world; real data scores whole frames at the ends only).
    """

    stage: str = "target"
    target_data: str = "synth:germany"
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
    source_data: str = SOURCE_DATA
    classes: str = "name"
    source_strategy: str = "scratch"
    source_seed: int = 0
    backbone_weights: str | None = "imagenet"
    cache_features: bool = False
    evaluate_test: bool = False
    evaluate_source: bool = False
    early_stopping: int | None = None
    smallest_scale: float | None = None

    def __post_init__(self) -> None:
        from tlutils.data.specs import parse_spec

        strategy = parse_strategy(self.strategy)
        object.__setattr__(self, "strategy", str(strategy))
        for name in ("target_data", "source_data"):
            object.__setattr__(self, name, _canonical_spec(name, getattr(self, name), parse_spec))
        _check_choice("classes", self.classes, CLASS_MODES)
        _check_choice("stage", self.stage, STAGES)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        if self.augmentation is not None:
            _check_choice("augmentation", self.augmentation, AUGMENTATIONS)
        if self.preprocessing is not None:
            _check_choice("preprocessing", self.preprocessing, PREPROCESSING_CHOICES)
        get_profile(self.profile)
        if self.stage == "source" and strategy.uses_source:
            raise ValueError(f"the source stage starts from scratch, imagenet, classifier or detector, not "
                             f"{self.strategy!r}")
        if self.stage == "target" and strategy.uses_pretrained:
            raise ValueError(f"{self.strategy!r} is a start of the source stage (stage='source'); a target run "
                             f"starts from its source detector or from scratch")
        if parse_strategy(self.source_strategy).uses_source:
            raise ValueError(f"source_strategy must be a source-stage start (scratch, imagenet, classifier, "
                             f"detector), got {self.source_strategy!r}")
        if self.stage == "target" and self.num_target_images is None:
            raise ValueError("a target run needs num_target_images (its number of training images)")
        for name in ("num_target_images", "total_steps", "steps_per_epoch"):
            _check_positive_int(name, getattr(self, name))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.learning_rate is not None and (isinstance(self.learning_rate, bool)
                                               or not isinstance(self.learning_rate, (int, float))
                                               or not 0 < self.learning_rate < float("inf")):
            raise ValueError(f"learning_rate must be a finite number > 0 or None, got {self.learning_rate!r}")
        if not 0 <= self.l2_regularization < float("inf"):
            raise ValueError(f"l2_regularization must be a finite number >= 0, got {self.l2_regularization!r}")
        if self.smallest_scale is not None:
            _check_smallest_scale(self)
        if self.cache_features:
            _check_feature_caching(self)
        _check_positive_int("early_stopping", self.early_stopping)
        if self.early_stopping is not None and parse_spec(self.data).format != "synth":
            raise ValueError(f"early_stopping needs val mAP at every evaluation; {self.data} is scored on "
                             "whole frames at the first and last evaluation only")
        if self.evaluate_source and self.stage != "target":
            raise ValueError("evaluate_source scores a target run on its source data; a source run's val "
                             "mAP is that already")

    @property
    def data(self) -> str:
        """The data this run trains on: ``source_data`` for the source stage, else ``target_data``."""
        return self.source_data if self.stage == "source" else self.target_data

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


def _canonical_spec(name: str, value: Any, parse: Any) -> str:
    """The canonical spelling of a data spec (``synth:germany`` for ``"Germany"``), or ValueError."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a data spec string such as 'synth:germany' or 'gtsdb:<folder>', "
                         f"got {value!r}")
    try:
        return str(parse(value))
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None


def _check_positive_int(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")


def source_config(config: RunConfig) -> RunConfig:
    """The source-stage run a target run starts from (shared by all target runs of the profile)."""
    return RunConfig(
        stage="source", source_data=config.source_data, strategy=config.source_strategy,
        num_target_images=None, seed=config.source_seed, profile=config.profile, classes=config.classes,
        preprocessing=config.preprocessing, backbone_weights=config.backbone_weights,
        smallest_scale=config.smallest_scale,
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
    if config.cache_features:
        return "none"
    return "photometric" if config.stage == "source" else "ssd"


def _check_smallest_scale(config: RunConfig) -> None:
    """``smallest_scale`` must be a number in ``(0, tlutils.anchors.MIN_SCALE]``; stored as a float, and
    SSD's own 0.1 as ``None`` (one run, one key, however it was spelled)."""
    from tlutils.anchors import FIRST_LAYER_SCALE, MIN_SCALE

    scale = config.smallest_scale
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not 0.0 < scale <= MIN_SCALE:
        raise ValueError(f"smallest_scale must be a number in (0, {MIN_SCALE}] (a share of the input side, at most "
                         f"the next layer's scale) or None for SSD's {FIRST_LAYER_SCALE}, got {scale!r}")
    scale = float(scale)
    object.__setattr__(config, "smallest_scale", None if scale == FIRST_LAYER_SCALE else scale)


def _check_feature_caching(config: RunConfig) -> None:
    """``cache_features`` needs a part that is frozen in every phase and inputs that are never augmented."""
    from tlutils.transfer import training_plan

    if config.stage != "target" or any(phase.freeze_point is None for phase in training_plan(config.strategy, 2, 1.0)):
        raise ValueError(f"cache_features needs a target strategy that freezes in every phase (head_only, "
                         f"freeze:<point>), got {config.stage} {config.strategy!r}")
    if config.augmentation not in (None, "none"):
        raise ValueError(f"cache_features needs un-augmented inputs (augmentation 'none'), got "
                         f"{config.augmentation!r}: augmented pixels change the frozen part's outputs every epoch")
