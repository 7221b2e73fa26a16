"""The resolved run: every knob of a :class:`RunConfig` with the profile's defaults filled in.

:func:`resolve` builds it **once** per run and the runner hands it down; :attr:`ResolvedRun.key` (a
stable hash of :meth:`ResolvedRun.to_dict`) names the run in the results table and on disk.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from tlutils.data.synth.sets import WORLD_SEEDS
from tlutils.experiment.config import RunConfig, default_augmentation, default_preprocessing, source_config
from tlutils.profiles import get_profile, resolve_precision

#: Bump when the runner's meaning of a configuration changes: old results then no longer match.
RUNNER_VERSION = 1
#: Fields added after runs were made, with their "not set" value: they enter the key only when set, so
#: every earlier run keeps its key (and its stored results).
KEYED_ONLY_WHEN_SET = {"cache_features": False, "evaluate_test": False, "evaluate_source": False,
                       "early_stopping": None, "smallest_scale": None}


@dataclass(frozen=True)
class ResolvedRun:
    """What a run really does: a :class:`RunConfig` with every ``None`` decided.

    The fields of :class:`RunConfig` (all filled in; ``backbone_weights`` only for ``imagenet``, the
    ``source_*`` fields only for a source-initialized target run) plus the sizes the profile gives.

    Attributes:
        data: the data spec the run trains on (``RunConfig.data``), canonical.
        data_fingerprint, data_split: what that data holds and how it was split
            (``tlutils.experiment.datasets.DataInfo``): results of two datasets never share a key.
        batch_size: training and evaluation batch size (never more than the training images).
        pool_size: rendered training images of the country (a target subset is drawn from them).
        input_size, width: the detector's square input in pixels and channel multiplier.
        num_val_images: validation images of the country.
        mixed_precision: the Keras dtype policy training runs under ("auto" resolved for this machine).
        source_run_key: the key of the source run a target run starts from, else ``None``.
        pretrained_key: the key of the pretrained file a ``classifier`` / ``detector`` start loads
            (:func:`pretrain_config`), else ``None``.
        smallest_scale: ``RunConfig.smallest_scale``, ``None`` for SSD's 0.1 (so runs made before the
            field keep their keys).
        config: the configuration this was resolved from (not part of the key).
    """

    stage: str
    data: str
    data_fingerprint: str
    data_split: str
    classes: str
    strategy: str
    num_target_images: int
    seed: int
    profile: str
    optimizer: str
    learning_rate: float
    schedule: str
    total_steps: int
    steps_per_epoch: int
    l2_regularization: float
    preprocessing: str
    augmentation: str
    source_data: str | None
    source_strategy: str | None
    source_seed: int | None
    backbone_weights: str | None
    batch_size: int
    pool_size: int
    input_size: int
    width: float
    num_val_images: int
    mixed_precision: str
    source_run_key: str | None
    pretrained_key: str | None
    cache_features: bool = False
    evaluate_test: bool = False
    evaluate_source: bool = False
    early_stopping: int | None = None
    smallest_scale: float | None = None
    world_seeds: dict[str, int] = field(default_factory=lambda: dict(WORLD_SEEDS))
    runner_version: int = RUNNER_VERSION
    config: RunConfig | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able configuration (``config.json``; what :attr:`key` hashes)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "config"}
        values["world_seeds"] = dict(self.world_seeds)
        for name, unset in KEYED_ONLY_WHEN_SET.items():  # so that runs made before the field keep their keys
            if values[name] == unset:
                del values[name]
        return values

    @functools.cached_property
    def key(self) -> str:
        """A stable 12-character hash of :meth:`to_dict` (same configuration -> same key), where real
        data specs are spelled without their location (``DataSpec.without_location``): the content
        fingerprint identifies the data, so a moved or copied dataset keeps its runs."""
        from tlutils.data.specs import parse_spec

        values = self.to_dict()
        for name in ("data", "source_data"):
            if values[name] is not None:
                values[name] = parse_spec(values[name]).without_location()
        text = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]

    @property
    def country(self) -> str:
        """A short name of the data (the ``country`` column): the sign-world country, or ``<format>-<folder>``."""
        from tlutils.experiment.datasets import label

        return label(self.data)

    @property
    def name(self) -> str:
        """Folder name of the run: a readable prefix and the key, ``target_germany_freeze-block3_n50_s0_<key>``."""
        prefix = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{self.stage}_{self.country}_{self.strategy}")
        return f"{prefix}_n{self.num_target_images}_s{self.seed}_{self.key}"

    @property
    def uses_source(self) -> bool:
        """Whether the run starts from a source detector (then :attr:`source_run_key` is set)."""
        return self.source_run_key is not None


def resolve(config: RunConfig) -> ResolvedRun:
    """Every knob of ``config`` with the profile's defaults filled in: what a run really does.

    Real data is loaded here (once per spec, see ``tlutils.experiment.datasets``) to size and fingerprint it.

    Raises:
        ValueError: a budget that is not a whole number of epochs, more target images than the data's
            train split holds, or data that cannot be loaded.
    """
    profile = get_profile(config.profile)
    source = config.stage == "source"
    info = _data_info(config, profile)
    num_images = config.num_target_images or info.pool_size
    batch_size = min(profile.batch_size, num_images)
    if source:
        steps_per_epoch = config.steps_per_epoch or max(1, num_images // batch_size)
        total_steps = config.total_steps or profile.source_epochs * steps_per_epoch
    else:
        total_steps = config.total_steps or profile.target_steps
        steps_per_epoch = config.steps_per_epoch or max(1, total_steps // profile.target_epochs)
    if total_steps % steps_per_epoch:
        raise ValueError(
            f"total_steps ({total_steps}) must be a whole number of epochs of steps_per_epoch ({steps_per_epoch})"
        )
    if num_images > info.pool_size:
        raise ValueError(f"{config.data}: {num_images} training images asked for, its train split has "
                         f"{info.pool_size}")
    uses_source = config.uses_source
    return ResolvedRun(
        stage=config.stage, data=config.data, data_fingerprint=info.fingerprint, data_split=info.split,
        classes=config.classes, strategy=config.strategy, num_target_images=num_images,
        seed=config.seed, profile=config.profile, optimizer=config.optimizer,
        learning_rate=config.learning_rate or profile.learning_rate, schedule=config.schedule,
        total_steps=total_steps, steps_per_epoch=steps_per_epoch, l2_regularization=config.l2_regularization,
        preprocessing=config.preprocessing or default_preprocessing(config),
        augmentation=config.augmentation or default_augmentation(config),
        source_data=config.source_data if uses_source or config.evaluate_source else None,
        source_strategy=config.source_strategy if uses_source else None,
        source_seed=config.source_seed if uses_source else None,
        backbone_weights=str(config.backbone_weights) if config.strategy == "imagenet" else None,
        batch_size=batch_size, pool_size=info.pool_size,
        input_size=profile.input_size, width=profile.width, num_val_images=info.num_val_images,
        mixed_precision=resolve_precision(_precision(profile, source)),
        # a source-initialized run depends on everything its source run did
        source_run_key=resolve(source_config(config)).key if uses_source else None,
        pretrained_key=pretrain.key if (pretrain := pretrain_config(config)) is not None else None,
        cache_features=config.cache_features, evaluate_test=config.evaluate_test,
        evaluate_source=config.evaluate_source, early_stopping=config.early_stopping,
        smallest_scale=config.smallest_scale, config=config,
    )


def _precision(profile: Any, source: bool) -> str:
    """The profile's dtype policy for the stage (its ``source_precision`` for the source stage, if set)."""
    return profile.source_precision if source and profile.source_precision else profile.mixed_precision


def pretrain_config(config: RunConfig) -> Any:
    """The ``tlutils.pretrain.PretrainConfig`` of a source run starting from ``classifier`` or ``detector``
    (else ``None``): the profile's budget, seed 0 (one published checkpoint for every source seed), the
    run's preprocessing. The classifier learns the source data's signs; the detector the sign world's
    other countries (the COCO stand-in)."""
    from tlutils.data.specs import parse_spec
    from tlutils.pretrain import PretrainConfig

    if config.stage != "source" or config.strategy not in ("classifier", "detector"):
        return None
    source = parse_spec(config.source_data)
    synth = source.format == "synth"
    data = None if synth or config.strategy == "detector" else (config.source_data,)
    return PretrainConfig(kind=config.strategy, profile=config.profile, data=data,
                          source_country=source.path if synth else "belgium",
                          preprocessing=config.preprocessing or default_preprocessing(config))


def _data_info(config: RunConfig, profile: Any) -> Any:
    """The :class:`~tlutils.experiment.datasets.DataInfo` of the run's data: the sign world is rendered
    to the profile's sizes (a target pool large enough for every study size), real data is what it is."""
    from tlutils.experiment.datasets import is_synth, real_info, synth_info

    if not is_synth(config.data):
        return real_info(config.data, config.classes, profile.real_val_images)
    if config.stage == "source":
        return synth_info(config.num_target_images or profile.num_source_images, profile.num_val_images)
    return synth_info(max(config.num_target_images, *profile.target_sizes), profile.num_val_images)


def run_key(config: RunConfig | ResolvedRun) -> str:
    """The run's stable 12-character key (:attr:`ResolvedRun.key`)."""
    return (config if isinstance(config, ResolvedRun) else resolve(config)).key


def run_name(config: RunConfig | ResolvedRun) -> str:
    """The run's folder name (:attr:`ResolvedRun.name`)."""
    return (config if isinstance(config, ResolvedRun) else resolve(config)).name
