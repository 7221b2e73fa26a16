"""Transfer strategies: how a target-country detector starts, what stays frozen, how the budget is spent.

A strategy answers three questions for a target run (e.g. a detector for German signs when a Belgian
one exists):

1. **Initialization** -- random (``scratch``), a VGG16 base with ImageNet weights (``imagenet``), the
   VGG16 base of a sign classifier (``classifier``), a detector pretrained on other data with its
   classes mapped (``detector``; the two pretrained starts are made by ``tlutils.pretrain``), or the
   source-country detector (every other strategy), copied with ``tlutils.model.transfer_weights``.
   Source and target class sets may differ: ``class_map_for`` matches classes by name (and, where a
   dataset is labelled by superclass, through the shared superclasses); a target class the source
   never saw gets a freshly initialized row of the classification head.
2. **What trains** -- everything, or everything above a freeze point of ``tlutils.model.FREEZE_POINTS``
   (``block1`` .. ``block5``, ``fc``, ``extras``, ``heads``; freezing "up to" a point freezes it and
   every point below it).
3. **The schedule** -- a list of ``Phase`` s (steps, learning rate, freeze point) that together use
   exactly the run's training budget, so every strategy gets the same number of optimizer steps.

The strategies (``parse_strategy`` reads them from strings such as ``"freeze:block3"``):

============  ==============  ===========================================  =========================
strategy      initialization  trainable                                    learning rate
============  ==============  ===========================================  =========================
scratch       random          everything                                   base
imagenet      VGG16 ImageNet  everything                                   base
classifier    VGG16 signs     everything                                   base
detector      pretrained SSD  everything                                   base
freeze:<p>    source          everything above ``p`` (Yosinski's AnB)      base
finetune      source          everything (Yosinski's AnB+)                 ``FINETUNE_LR_FACTOR`` x base
two_stage     source          heads, then everything (Keras guide order)   base, then ``FINETUNE_LR_FACTOR`` x base
head_only     source          the prediction heads (TFA's few-shot baseline)  base
============  ==============  ===========================================  =========================

``scratch``, ``imagenet``, ``classifier`` and ``detector`` are the starts of the source stage (the thesis'
four starting points: random, ImageNet, a traffic-sign classifier, COCO); ``classifier`` and
``detector`` need a pretrained file (``prepare(..., pretrained_path=...)``) and fc6/fc7 of
``classifier`` start fresh (``tlutils.model.classifier``).

``finetune`` and the second stage of ``two_stage`` use a tenth of the base learning rate: the weights
already solve a closely related task, and a full-size step would first wreck what transfers (the Keras
transfer-learning guide uses a "very low" rate for this step; fastai's ``fine_tune`` divides by 10 or
more). ``two_stage`` first trains the heads with the rest frozen for ``TWO_STAGE_HEAD_FRACTION`` of the
budget, so that freshly initialized class rows settle before their gradients reach the base, then
unfreezes everything; the runner recompiles (a new optimizer) at every phase change, as the guide
requires after changing ``trainable``.

Discriminative (per-block) learning rates are not offered: with Adam a per-block gradient scale
cancels out, so they would need one optimizer per block, and the freeze/fine-tune strategies above
already span the range the course compares.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:  # keras is imported where a detector is built, not on import of this module
    import keras

    from tlutils.model import TransferReport

STRATEGY_NAMES: tuple[str, ...] = (
    "scratch", "imagenet", "freeze", "finetune", "two_stage", "head_only", "classifier", "detector",
)
#: Starts from a file made by ``tlutils.pretrain`` (source stage only, like scratch and imagenet).
PRETRAINED_STARTS: frozenset[str] = frozenset({"classifier", "detector"})
SOURCE_INITIALIZED: frozenset[str] = frozenset({"freeze", "finetune", "two_stage", "head_only"})
FINETUNE_LR_FACTOR = 0.1  # learning rate of fine-tuning a transferred detector, times the base rate
TWO_STAGE_HEAD_FRACTION = 0.5  # share of the budget in which two_stage trains only the heads
HEADS_ONLY_FREEZE_POINT = "extras"  # freezing up to the extra layers leaves only the heads trainable


def _freeze_points() -> tuple[str, ...]:
    """``tlutils.model.FREEZE_POINTS`` (imported lazily: it imports keras)."""
    from tlutils.model import FREEZE_POINTS

    return tuple(FREEZE_POINTS)


def _trainable_freeze_points() -> tuple[str, ...]:
    """Freeze points that leave something to train (freezing up to ``heads`` freezes everything)."""
    return tuple(point for point in _freeze_points() if point != "heads")


@dataclass(frozen=True)
class Strategy:
    """A transfer strategy: its ``name`` (one of ``STRATEGY_NAMES``) and, for ``freeze``, its point.

    ``str(strategy)`` gives the canonical string (``"freeze:block3"``, ``"finetune"``) that
    ``parse_strategy`` reads back.
    """

    name: str
    freeze_point: str | None = None

    def __post_init__(self) -> None:
        if self.name not in STRATEGY_NAMES:
            raise ValueError(
                f"unknown transfer strategy {self.name!r}; valid strategies: {list(valid_strategies())}"
            )
        if self.name == "freeze":
            points = _trainable_freeze_points()
            if self.freeze_point not in points:
                raise ValueError(
                    f"strategy 'freeze' needs a freeze point, one of {list(points)} "
                    f"(got {self.freeze_point!r}); e.g. 'freeze:block3'"
                )
        elif self.freeze_point is not None:
            raise ValueError(
                f"strategy {self.name!r} takes no freeze point (got {self.freeze_point!r}); only "
                f"'freeze:<point>' does. Valid strategies: {list(valid_strategies())}"
            )

    @property
    def uses_source(self) -> bool:
        """Whether the detector starts from a source-country detector."""
        return self.name in SOURCE_INITIALIZED

    @property
    def uses_pretrained(self) -> bool:
        """Whether the detector starts from a pretrained file (``classifier``, ``detector``)."""
        return self.name in PRETRAINED_STARTS

    def __str__(self) -> str:
        return f"freeze:{self.freeze_point}" if self.name == "freeze" else self.name


def valid_strategies() -> tuple[str, ...]:
    """Every strategy string ``parse_strategy`` accepts, ``freeze:<point>`` spelled out per point."""
    freeze = tuple(f"freeze:{point}" for point in _trainable_freeze_points())
    return ("scratch", "imagenet", "classifier", "detector", *freeze, "finetune", "two_stage", "head_only")


def freeze_depth_order() -> tuple[str, ...]:
    """Source-initialized strategies from shallow to deep freezing: ``finetune`` (nothing frozen),
    ``freeze:<point>`` for every point, ``head_only`` (all but the heads): Yosinski et al.'s AnB axis."""
    return ("finetune", *(f"freeze:{point}" for point in _trainable_freeze_points()), "head_only")


def parse_strategy(text: str | Strategy) -> Strategy:
    """Read a strategy from a string such as ``"scratch"``, ``"freeze:block3"`` or ``"two_stage"``.

    Case and surrounding spaces are ignored and ``-`` reads as ``_`` (``"two-stage"``).

    Raises:
        ValueError: unknown strategy or freeze point; the message lists the valid choices.
    """
    if isinstance(text, Strategy):
        return text
    if not isinstance(text, str):
        raise ValueError(f"a strategy is a string such as 'freeze:block3', got {type(text).__name__}")
    name, _, point = text.strip().lower().replace("-", "_").partition(":")
    return Strategy(name.strip(), point.strip() or None)


@dataclass(frozen=True)
class Phase:
    """One stretch of a training plan, with its own compile.

    Attributes:
        name: what the phase does ("train", "heads", "finetune").
        steps: optimizer steps of the phase.
        learning_rate: the (peak) learning rate of the phase.
        freeze_point: the layers up to and including this freeze point are frozen; ``None`` means
            everything trains.
    """

    name: str
    steps: int
    learning_rate: float
    freeze_point: str | None = None


def training_plan(
    strategy: str | Strategy,
    total_steps: int,
    learning_rate: float,
    steps_per_epoch: int | None = None,
    head_fraction: float = TWO_STAGE_HEAD_FRACTION,
) -> list[Phase]:
    """The phases of ``strategy`` for a budget of ``total_steps`` optimizer steps at base ``learning_rate``.

    The phases' steps always add up to ``total_steps``. With ``steps_per_epoch`` the boundary of
    ``two_stage`` falls on a whole epoch (at least one epoch per stage when the budget has two), so
    each evaluation epoch lies within one phase.

    Raises:
        ValueError: a budget, rate or fraction out of range, or an unknown strategy.
    """
    strategy = parse_strategy(strategy)
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    if not 0.0 < head_fraction < 1.0:
        raise ValueError(f"head_fraction must lie in (0, 1), got {head_fraction}")
    if steps_per_epoch is not None and (steps_per_epoch < 1 or total_steps % steps_per_epoch):
        raise ValueError(
            f"steps_per_epoch ({steps_per_epoch}) must be >= 1 and divide total_steps ({total_steps})"
        )
    low = learning_rate * FINETUNE_LR_FACTOR
    if strategy.name in ("scratch", "imagenet", "classifier", "detector"):
        return [Phase("train", total_steps, learning_rate, None)]
    if strategy.name == "freeze":
        return [Phase("train", total_steps, learning_rate, strategy.freeze_point)]
    if strategy.name == "head_only":
        return [Phase("heads", total_steps, learning_rate, HEADS_ONLY_FREEZE_POINT)]
    if strategy.name == "finetune":
        return [Phase("finetune", total_steps, low, None)]
    # two_stage: heads with the rest frozen, then everything at the low rate.
    unit = steps_per_epoch or 1
    units = total_steps // unit
    if units < 2:
        raise ValueError(
            f"two_stage needs a budget of at least two epochs (or steps) to split, got {total_steps} "
            f"steps with steps_per_epoch={steps_per_epoch}"
        )
    head_units = min(max(1, round(units * head_fraction)), units - 1)
    return [
        Phase("heads", head_units * unit, learning_rate, HEADS_ONLY_FREEZE_POINT),
        Phase("finetune", (units - head_units) * unit, low, None),
    ]


def _normalize_class_name(name: str) -> str:
    """Class names compare case-blind, with spaces and hyphens read as underscores."""
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def class_map_for(
    source_classes: Mapping[int, str],
    target_classes: Mapping[int, str],
    superclasses: Mapping[str, str] | None = None,
) -> dict[int, int | None]:
    """Which source class initializes each target class: ``{target_id: source_id or None}``.

    Ids are the models' class ids (1..C; 0 is background and always maps to itself inside
    ``transfer_weights``). A target class maps to the source class of the same name (case-blind,
    spaces/hyphens = underscores). Failing that, when ``superclasses`` (class name -> superclass name)
    is given and the source is labelled by superclass -- a source class is named like the target
    class's superclass -- it maps there: a German "priority_road" then starts from the Belgian
    "other" detector rather than from noise. Any other target class maps to ``None``: the source never
    saw it, so its classifier row starts fresh.

    Raises:
        ValueError: duplicate (normalized) names within one class table, or id 0 used for a class.
    """
    source_index = _index_by_name(source_classes, "source_classes")
    _index_by_name(target_classes, "target_classes")
    super_of = {_normalize_class_name(k): _normalize_class_name(v) for k, v in (superclasses or {}).items()}
    class_map: dict[int, int | None] = {}
    for target_id, name in sorted(target_classes.items()):
        key = _normalize_class_name(name)
        if key in source_index:
            class_map[target_id] = source_index[key]
        else:
            class_map[target_id] = source_index.get(super_of.get(key, ""))
    return class_map


def _index_by_name(classes: Mapping[int, str], what: str) -> dict[str, int]:
    """``{normalized name: id}`` of a class table, checking ids >= 1 and unique names."""
    index: dict[str, int] = {}
    for class_id, name in classes.items():
        if int(class_id) < 1:
            raise ValueError(f"{what}: class id {class_id} ({name!r}) must be >= 1; 0 is background")
        key = _normalize_class_name(name)
        if key in index:
            raise ValueError(
                f"{what}: classes {index[key]} and {class_id} share the name {name!r}; names must be unique"
            )
        index[key] = int(class_id)
    return index


def load_detector(path: str | os.PathLike) -> "keras.Model":
    """Load a detector saved by the experiment runner (a ``.keras`` file), without its optimizer.

    Raises:
        ValueError: the file does not exist or is not a ``.keras`` file.
    """
    import keras

    import tlutils.model  # noqa: F401  (registers the detector's custom layers for deserialization)

    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: expected a detector saved as a .keras file")
    if not path.is_file():
        raise ValueError(f"{path}: no such detector file; run the source stage first to produce it")
    return keras.saving.load_model(path, compile=False)


def apply_phase(detector: "keras.Model", phase: Phase) -> None:
    """Make exactly the layers above ``phase.freeze_point`` trainable (everything when it is ``None``).

    Compile (again) afterwards: Keras reads ``trainable`` when it builds the training step.
    """
    from tlutils.model import freeze

    freeze(detector, phase.freeze_point)


def prepare(
    strategy: str | Strategy,
    source_model_or_path: "keras.Model | str | os.PathLike | None",
    num_classes: int,
    class_map: Mapping[int, int | None] | None = None,
    *,
    input_size: int = 300,
    width: float = 1.0,
    total_steps: int,
    learning_rate: float,
    steps_per_epoch: int | None = None,
    backbone_weights: str | None = "imagenet",
    preprocessing: str = "caffe",
    l2_regularization: float = 0.0,
    pretrained_path: str | os.PathLike | None = None,
) -> tuple["keras.Model", list[Phase]]:
    """Build the target detector of ``strategy`` and its training plan.

    Args:
        strategy: a ``Strategy`` or its string (``"freeze:block3"``).
        source_model_or_path: the source detector (a model or its ``.keras`` file) for the
            source-initialized strategies; ignored (may be ``None``) for the source-stage starts.
        num_classes: object classes of the target (the model predicts ``num_classes + 1``).
        class_map: ``{target_id: source_id or None}`` (see ``class_map_for``); ``None`` lets
            ``transfer_weights`` copy the heads only when the class counts agree. For ``detector``
            (required): ``{class of this detector: class of the pretrained one or None}``, e.g.
            ``tlutils.pretrain.pretrained_class_map(pretrained_path, class_names)``.
        input_size, width: the detector's square input in pixels and channel multiplier (1.0 = SSD300's).
        total_steps: the run's training budget in optimizer steps.
        learning_rate: base learning rate of the plan.
        steps_per_epoch: evaluation epoch length (``two_stage`` switches on an epoch boundary).
        backbone_weights: what ``imagenet`` loads: ``"imagenet"`` (downloads, needs internet) or a
            local VGG16 weights file.
        preprocessing, l2_regularization: passed to ``build_ssd_vgg16``.
        pretrained_path: the ``.keras`` file ``classifier`` and ``detector`` start from
            (``tlutils.pretrain.pretrained``); ignored by the other strategies.

    Returns:
        ``(detector, plan)``: a freshly built detector with the first phase's layers frozen, and its
        list of ``Phase`` s.

    Raises:
        ValueError: unknown strategy, no source detector for a source strategy, no pretrained file
            (or class map) for a pretrained start, bad sizes, ImageNet weights on a width other than 1.0.
        RuntimeError: ``imagenet`` without internet access (pass a local weights file instead).
    """
    from tlutils.model import transfer_weights

    strategy = parse_strategy(strategy)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if strategy.uses_source and source_model_or_path is None:
        raise ValueError(f"strategy {str(strategy)!r} starts from a source detector; pass its model or .keras path")
    if strategy.uses_pretrained and pretrained_path is None:
        raise ValueError(f"strategy {str(strategy)!r} starts from a pretrained file; pass pretrained_path (make "
                         f"it with `tlutils pretrain {strategy.name}` or tlutils.pretrain.pretrained)")
    if strategy.name == "detector" and class_map is None:
        raise ValueError("strategy 'detector' maps the pretrained detector's classes onto this detector's: pass "
                         "class_map, e.g. tlutils.pretrain.pretrained_class_map(pretrained_path, class_names)")
    plan = training_plan(strategy, total_steps, learning_rate, steps_per_epoch=steps_per_epoch)
    detector = _build_detector(strategy, num_classes, input_size, width, backbone_weights, preprocessing,
                               l2_regularization)
    if strategy.uses_source:
        source = source_model_or_path
        if not hasattr(source, "layers"):
            source = load_detector(source)
        transfer_weights(source, detector, class_map=class_map)
    elif strategy.name == "classifier":
        from tlutils.model import load_classifier_into

        load_classifier_into(detector, pretrained_path)
    elif strategy.name == "detector":
        start_from_detector(detector, pretrained_path, class_map)
    apply_phase(detector, plan[0])
    return detector, plan


def start_from_detector(detector: "keras.Model", pretrained: "keras.Model | str | os.PathLike",
                        class_map: Mapping[int, int | None]) -> "TransferReport":
    """Initialize ``detector`` (in place) with every weight of a pretrained detector, classes mapped.

    The pretrained detector's class rows go to the classes ``class_map`` maps them to
    (``{class of detector: class of pretrained or None}``); a class mapped to ``None`` keeps its fresh
    row, as in ``transfer_weights``.

    Raises:
        ValueError: no such file, another preprocessing, or a layer that does not fit (another width).
    """
    from tlutils.model import transfer_weights
    from tlutils.model.classifier import check_same_preprocessing

    source = pretrained if hasattr(pretrained, "layers") else load_detector(pretrained)
    check_same_preprocessing(source, detector)
    report = transfer_weights(source, detector, class_map=class_map)
    if report.skipped or report.initialized:
        problems = "; ".join(f"{name}: {reason}" for name, reason in report.skipped + report.initialized)
        raise ValueError(f"the pretrained detector does not fit this one ({problems}); build it with the same width")
    return report


def _build_detector(
    strategy: Strategy,
    num_classes: int,
    input_size: int,
    width: float,
    backbone_weights: str | os.PathLike | None,
    preprocessing: str,
    l2_regularization: float,
) -> "keras.Model":
    """``build_ssd_vgg16`` at the given size; VGG16 weights only for ``imagenet``.

    Raises:
        RuntimeError: ``imagenet`` could not download VGG16's ImageNet weights (no internet).
    """
    from tlutils.model import build_ssd_vgg16

    weights = backbone_weights if strategy.name == "imagenet" else None
    if strategy.name == "imagenet" and weights is None:
        raise ValueError("strategy 'imagenet' needs backbone_weights: 'imagenet' or a VGG16 weights file")
    try:
        return build_ssd_vgg16(
            num_classes,
            input_size=input_size,
            width=width,
            backbone_weights=weights,
            preprocessing=preprocessing,
            l2_regularization=l2_regularization,
        )
    except ValueError:
        raise
    except Exception as error:  # keras' get_file raises a bare Exception when the download fails
        if weights != "imagenet":
            raise
        raise RuntimeError(
            f"strategy 'imagenet' could not get VGG16's ImageNet weights ({error}). Keras downloads them "
            "once (about 58 MB, into ~/.keras/models/); without internet, fetch "
            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 on a connected machine and pass its path "
            "as backbone_weights"
        ) from error


def epochs_of(plan: list[Phase], steps_per_epoch: int) -> list[Phase]:
    """The phase of each evaluation epoch of ``plan`` (epochs of ``steps_per_epoch`` steps).

    Raises:
        ValueError: a phase that does not span whole epochs.
    """
    per_epoch: list[Phase] = []
    for phase in plan:
        if phase.steps % steps_per_epoch:
            raise ValueError(
                f"phase {phase.name!r} has {phase.steps} steps, not a whole number of epochs of "
                f"{steps_per_epoch} steps"
            )
        per_epoch.extend([phase] * (phase.steps // steps_per_epoch))
    return per_epoch


__all__ = [
    "FINETUNE_LR_FACTOR",
    "HEADS_ONLY_FREEZE_POINT",
    "PRETRAINED_STARTS",
    "Phase",
    "STRATEGY_NAMES",
    "Strategy",
    "TWO_STAGE_HEAD_FRACTION",
    "apply_phase",
    "class_map_for",
    "epochs_of",
    "freeze_depth_order",
    "load_detector",
    "parse_strategy",
    "prepare",
    "start_from_detector",
    "training_plan",
    "valid_strategies",
]
