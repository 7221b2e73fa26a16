"""Sweeps: the product of a grid of configurations, run one after another (finished runs are skipped)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from tlutils.experiment.config import DEFAULT_STRATEGIES, RunConfig
from tlutils.experiment.resolved import resolve
from tlutils.experiment.results import empty_results, summarize, wide_pandas
from tlutils.experiment.runner import run
from tlutils.profiles import get_profile

if TYPE_CHECKING:
    import pandas as pd

#: Fields of :class:`RunConfig` a grid may vary.
GRID_FIELDS = ("target_data", "strategy", "num_target_images", "seed", "learning_rate")
_ALIASES = {"country": "target_data", "countries": "target_data", "strategies": "strategy", "seeds": "seed",
            "learning_rates": "learning_rate", "num_images": "num_target_images"}


def study_targets(target_data: str | Sequence[str] | None, countries: Sequence[str] | None,
                  profile: str) -> list[str]:
    """The targets of a study (notebook 05's ``TARGET_DATA`` / ``COUNTRIES``): ``target_data``, one data
    spec or a list of them, else the sign-world ``countries``, else the profile's countries.

    Raises:
        ValueError: two targets would share one name in the results table (its ``country`` column,
            ``tlutils.experiment.datasets.label``): their rows could not be told apart by it.
    """
    from tlutils.experiment.datasets import label

    named = [target_data] if isinstance(target_data, str) else target_data
    targets = list(named or countries or get_profile(profile).countries)
    labels = [label(spec) for spec in targets]
    repeated = sorted({name for name in labels if labels.count(name) > 1})
    if repeated:
        raise ValueError(f"targets {targets} share the results table's name(s) {repeated} (format and folder "
                         "name): give each dataset a folder of its own name")
    return targets


#: Scopes of notebook 05's strategy comparison (its ``SCOPE``): :func:`comparison_configs`.
SCOPES = ("course", "full")
#: The strategies of the course-scoped comparison: the thesis' scratch, frozen convolutions and fine-tuning,
#: and retraining the heads only (TFA 2020); the full study adds ``two_stage`` (the Keras guide).
COURSE_STRATEGIES = ("scratch", "freeze:block3", "finetune", "head_only")


def comparison_configs(scope: str, targets: Sequence[str], sizes: Sequence[int], seeds: Sequence[int],
                       base: RunConfig, strategies: str | Sequence[str] | None = None) -> list[RunConfig]:
    """The runs of notebook 05's strategy comparison, the nearest target first.

    ``"full"``: every strategy (default :data:`DEFAULT_STRATEGIES`) at every target, size and seed.
    ``"course"`` (the CPU profiles' ``Profile.scope``, sized for the course's time on 2 cores,
    docs/performance.md): the strategies default to :data:`COURSE_STRATEGIES`; the first target at
    every size (the few-shot lessons), the others at the last size only (the most images: the size of
    the shift, as the notebook's depth curve and section 4 read it). Every course run is also a run of
    the full comparison, with the same key, so the full one trains only what the course left out.

    Raises:
        ValueError: ``scope`` is not one of :data:`SCOPES`, or an empty list.
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    if strategies is None:
        strategies = COURSE_STRATEGIES if scope == "course" else DEFAULT_STRATEGIES
    grid = {"target_data": list(targets), "strategy": [strategies] if isinstance(strategies, str) else list(strategies),
            "num_target_images": list(sizes), "seed": list(seeds)}
    if scope == "full" or len(grid["target_data"]) < 2:
        return expand_grid(grid, base)
    farther = {**grid, "target_data": grid["target_data"][1:], "num_target_images": grid["num_target_images"][-1:]}
    return list(dict.fromkeys(expand_grid({**grid, "target_data": grid["target_data"][:1]}, base)
                              + expand_grid(farther, base)))


def expand_grid(grid: Mapping[str, Sequence[Any]], base: RunConfig | None = None) -> list[RunConfig]:
    """The configurations of a sweep: the product of ``grid``'s lists over ``base``.

    Keys of ``grid``: :data:`GRID_FIELDS` (singular, like :class:`RunConfig`'s fields; plural
    spellings such as ``strategies`` are accepted too, and ``country`` / ``countries`` for
    ``target_data``). Every configuration keeps ``base``'s budget.
    Every configuration is checked (and resolved, so unknown countries and bad budgets show) before
    any run trains.

    Raises:
        ValueError: an unknown key, an empty list, or an invalid configuration.
    """
    base = base or RunConfig(num_target_images=1)
    values: dict[str, list[Any]] = {}
    for name, options in grid.items():
        field = _ALIASES.get(name, name)
        if field not in GRID_FIELDS:
            raise ValueError(f"unknown sweep key {name!r}; valid keys: {list(GRID_FIELDS)}")
        options = [options] if isinstance(options, (str, int, float)) else list(options)
        if not options:
            raise ValueError(f"sweep key {name!r} has no values")
        values[field] = options
    names = list(values)
    configs = [base.replace(**dict(zip(names, combination)))
               for combination in itertools.product(*(values[name] for name in names))]
    configs = list(dict.fromkeys(configs))  # drop duplicates, keep order
    for config in configs:
        resolve(config)
    return configs


def sweep(
    grid: Mapping[str, Sequence[Any]],
    results_dir: str | os.PathLike | None = None,
    base: RunConfig | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    verbose: int = 0,
    progress: bool = True,
) -> "pd.DataFrame":
    """Run every configuration of ``grid`` (see :func:`expand_grid`); finished ones are skipped.

    Example::

        sweep({"strategy": ["scratch", "finetune", "head_only"], "num_target_images": [10, 50],
               "seed": [0, 1, 2]}, base=RunConfig(profile="cpu", target_data="germany", num_target_images=10))

    Returns:
        The rows of all the sweep's runs (a ``pandas.DataFrame`` with ``RESULT_COLUMNS``).
    """
    return run_configs(expand_grid(grid, base), results_dir, data_dir=data_dir, verbose=verbose, progress=progress)


def run_configs(configs: Sequence[RunConfig], results_dir: str | os.PathLike | None = None, *,
                data_dir: str | os.PathLike | None = None, verbose: int = 0, progress: bool = True) -> "pd.DataFrame":
    """Run ``configs`` in order (finished ones are read back), as :func:`sweep` runs its grid; returns
    the rows of all of them."""
    import pandas as pd

    iterator: Iterable[RunConfig] = configs
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(configs, desc="sweep", unit="run")
    frames = []
    for config in iterator:
        if progress and hasattr(iterator, "set_postfix_str"):
            iterator.set_postfix_str(f"{config.data} {config.strategy} n={config.num_target_images} "
                                     f"s={config.seed}")
        frames.append(run(config, results_dir, data_dir=data_dir, verbose=verbose))
    return pd.concat(frames, ignore_index=True) if frames else empty_results()


#: The source-detector starts a ``--stage source`` sweep compares when ``--strategies`` is left out
#: (``imagenet`` needs VGG16's ImageNet weights: name it to include it).
SOURCE_STARTS = ("scratch", "classifier", "detector")


def cli_grid(args: Any) -> tuple[dict[str, list[Any]], RunConfig]:
    """The grid and base configuration ``tlutils sweep`` names (the profile's where an option is left out).

    ``--stage source`` compares source-detector starts on ``--source-data`` (the thesis' variants);
    there ``--num-target-images`` sizes the source training set (default: the profile's).
    """
    profile = get_profile(args.profile)
    source = getattr(args, "stage", "target") == "source"
    grid: dict[str, list[Any]] = {} if source else {
        "target_data": list(getattr(args, "target_data", None) or args.countries or profile.countries)}
    grid["strategy"] = list(args.strategies or (SOURCE_STARTS if source else DEFAULT_STRATEGIES))
    sizes = args.num_target_images or ([None] if source else profile.target_sizes)
    grid["num_target_images"] = list(sizes)
    grid["seed"] = list(args.seeds if args.seeds is not None else profile.seeds)
    if getattr(args, "learning_rates", None):
        grid["learning_rate"] = list(args.learning_rates)
    base = RunConfig(stage="source" if source else "target", profile=args.profile, strategy=grid["strategy"][0],
                     num_target_images=grid["num_target_images"][0],
                     l2_regularization=getattr(args, "l2_regularization", 0.0),
                     total_steps=getattr(args, "total_steps", None),
                     steps_per_epoch=getattr(args, "steps_per_epoch", None),
                     cache_features=getattr(args, "cache_features", False),
                     evaluate_test=getattr(args, "evaluate_test", False),
                     evaluate_source=getattr(args, "evaluate_source", False),
                     early_stopping=getattr(args, "early_stopping", None),
                     smallest_scale=getattr(args, "smallest_scale", None),
                     source_data=getattr(args, "source_data", None) or RunConfig.source_data,
                     classes=getattr(args, "classes", None) or RunConfig.classes)
    return grid, base


def sweep_from_cli(args: Any) -> int:
    """``tlutils sweep``: run the sweep the command line names (:func:`cli_grid`) and print its summary;
    exit code 0."""
    grid, base = cli_grid(args)
    results = sweep(grid, args.out, base=base)
    stage = getattr(args, "stage", "target")
    with wide_pandas():
        print(summarize(results[results["stage"] == stage]).to_string(index=False))
    where = Path(args.out) if args.out else None
    if where is None:
        from tlutils.paths import runs_dir

        where = runs_dir(args.profile)
    print(f"results: {where / 'results.csv'}")
    return 0
