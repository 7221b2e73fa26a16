"""Which runs the course's notebooks train: each notebook's ``parameters`` cell read as literals
(:func:`notebook_parameters`, so the plan follows the notebooks), turned into configurations by its entry in
:data:`NOTEBOOK_RUNS`, and :func:`course_plan` over the notebooks in the order they first ask for a run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlutils.course import declared, notebook_parameters
from tlutils.paths import runs_dir
from tlutils.plan.runs import Plan, finished_keys, plan_of
from tlutils.profiles import Profile, get_profile

if TYPE_CHECKING:
    from tlutils.experiment import RunConfig


def _source_detector_runs(params: Mapping[str, Any], profile: Profile) -> list["RunConfig"]:
    """Notebook 04: the Belgian source detector, and from ImageNet weights where the width allows it."""
    from tlutils.experiment import RunConfig, source_config

    config = source_config(RunConfig(profile=profile.name, num_target_images=1))  # the one every target run needs
    with_imagenet = params.get("TRY_IMAGENET") and profile.width == 1.0
    return [config, config.replace(strategy="imagenet")] if with_imagenet else [config]


def _transfer_study_runs(params: Mapping[str, Any], profile: Profile) -> list["RunConfig"]:
    """Notebook 05: the strategy grid, then the freeze depths for the nearest country at the most images."""
    from tlutils.experiment import RunConfig, expand_grid
    from tlutils.experiment.sweeps import comparison_configs, study_targets

    targets = study_targets(params.get("TARGET_DATA"), params["COUNTRIES"], profile.name)
    sizes = list(params["NUM_TARGET_IMAGES"] or profile.target_sizes)
    seeds = list(params["SEEDS"] or profile.seeds)
    base = RunConfig(profile=profile.name, num_target_images=sizes[0], l2_regularization=params["L2_REGULARIZATION"],
                     source_data=params.get("SOURCE_DATA") or RunConfig.source_data,
                     classes=params.get("CLASSES") or RunConfig.classes)
    scope = params.get("SCOPE") or profile.scope
    comparison = comparison_configs(scope, targets, sizes, seeds, base, params["STRATEGIES"])
    depth = {"country": targets[:1], "strategy": params["FREEZE_DEPTHS"], "num_target_images": sizes[-1:],
             "seed": seeds}
    rates = []
    if params.get("LEARNING_RATES"):  # section 7: each strategy at each rate, with a test split and forgetting
        rate_grid = {"country": targets, "strategy": params["RATE_STRATEGIES"], "num_target_images": sizes[-1:],
                     "seed": seeds, "learning_rate": list(params["LEARNING_RATES"])}
        rates = expand_grid(rate_grid, base.replace(evaluate_test=True, evaluate_source=True))
    long = []
    if params.get("LONG_BUDGET"):  # section 8: the same strategies at a multiple of the steps
        long_grid = {"country": targets, "strategy": params["RATE_STRATEGIES"], "num_target_images": sizes[-1:],
                     "seed": seeds}
        long = expand_grid(long_grid, base.replace(total_steps=params["LONG_BUDGET"] * profile.target_steps,
                                                   steps_per_epoch=profile.target_steps))
    return comparison + expand_grid(depth, base) + rates + long


def _diagnosis_runs(params: Mapping[str, Any], profile: Profile) -> list["RunConfig"]:
    """Notebook 06: its variants, scratch with the other preprocessing, fine-tuning at higher rates, and
    section 6's source starts where they are not shipped (or ``RUN_SOURCE_STUDY``)."""
    from tlutils.experiment import RunConfig, expand_grid, resolve
    from tlutils.experiment.start_study import shipped_study, source_study_configs

    seeds = list(params["SEEDS"] or profile.seeds)
    base = RunConfig(profile=profile.name, num_target_images=params["NUM_TARGET_IMAGES"] or max(profile.target_sizes),
                     l2_regularization=params["L2_REGULARIZATION"])
    base = expand_grid({"country": [params["COUNTRY"] or profile.countries[0]]}, base)[0]
    other = "tf" if resolve(base).preprocessing == "caffe" else "caffe"
    rates = [profile.learning_rate * factor for factor in params["LEARNING_RATE_FACTORS"]]
    starts = source_study_configs(profile.name, params["SOURCE_STARTS"])
    if not params.get("RUN_SOURCE_STUDY") and shipped_study(starts) is not None:
        starts = []
    return (expand_grid({"strategy": params["VARIANTS"], "seed": seeds}, base)
            + [base.replace(strategy="scratch", preprocessing=other)]
            + expand_grid({"learning_rate": rates}, base.replace(strategy="finetune", seed=seeds[0])) + starts)


def _explorer_runs(params: Mapping[str, Any], profile: Profile) -> list["RunConfig"]:
    """Notebook 07: one click on Train with the controls where they start."""
    from tlutils.experiment import RunConfig
    from tlutils.widgets import TransferExplorer

    explorer = TransferExplorer(profile=profile.name, country=params["COUNTRY"],
                                source_data=params.get("SOURCE_DATA") or RunConfig.source_data,
                                target_data=params.get("TARGET_DATA"),
                                l2_regularization=params["L2_REGULARIZATION"], train_epochs=params["TRAIN_EPOCHS"])
    return [explorer.config()]


def _own_data_runs(params: Mapping[str, Any], profile: Profile) -> list["RunConfig"]:
    """Notebook 08: its strategies x sizes x seeds on its target data; with ``TARGET_DATA = None`` the
    stand-in it writes (``tlutils.data.export.real_format_example``, made here if missing: sizing real
    data means loading it), with ``SIZES = None`` the profile's sizes that the train split holds."""
    from tlutils.data.export import real_format_example
    from tlutils.experiment import RunConfig, expand_grid, resolve

    frame_size = params["EXAMPLE_FRAME_SIZE"] or 2 * profile.input_size
    target_data = params["TARGET_DATA"] or real_format_example("germany", params["EXAMPLE_FRAMES"], frame_size).yolo
    base = RunConfig(profile=profile.name, source_data=params["SOURCE_DATA"], target_data=target_data,
                     classes=params["CLASSES"], num_target_images=1,
                     smallest_scale=params.get("SMALLEST_SCALE"))
    pool = resolve(base).pool_size
    sizes = list(params["SIZES"] or [size for size in profile.target_sizes if size <= pool] or [pool])
    grid = {"strategy": params["STRATEGIES"], "num_target_images": sizes, "seed": list(params["SEEDS"] or profile.seeds)}
    return expand_grid(grid, base)


#: Notebook name -> the runs it trains, from its parameters and the profile. Notebooks not named here
#: train nothing (01-03 build models and show data only); a notebook that starts training must be added.
NOTEBOOK_RUNS: dict[str, Callable[[Mapping[str, Any], Profile], list["RunConfig"]]] = {
    "04_source_detector": _source_detector_runs,
    "05_transfer_study": _transfer_study_runs,
    "06_loss_curve_diagnosis": _diagnosis_runs,
    "07_interactive_explorer": _explorer_runs,
    "08_your_own_data": _own_data_runs,
}


def course_plan(profile: str, notebooks: Sequence[str | os.PathLike] | None = None,
                results_dir: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None) -> Plan:
    """The runs of the course's ``notebooks`` (default: all of ``notebooks/``) on ``profile``.

    Runs that ``results_dir/results.csv`` (default ``runs/<profile>/``) holds are marked ``done``.
    ``overrides``: papermill parameters the course passes (e.g. ``{"SCOPE": "full"}``), each to the
    notebooks whose ``parameters`` cell declares it (:func:`declared`).
    """
    from tlutils.course import course_notebooks

    settings = get_profile(profile)
    paths = [Path(path) for path in notebooks] if notebooks is not None else course_notebooks()
    params = {path.stem: notebook_parameters(path) for path in paths if path.stem in NOTEBOOK_RUNS}
    params = {name: {**values, **declared(values, overrides or {})} for name, values in params.items()}
    configs = {name: NOTEBOOK_RUNS[name](values, settings) for name, values in params.items()}
    trains_source = bool(params.get("04_source_detector", {}).get("TRAIN_SOURCE"))  # no shipped detector then
    done = finished_keys(results_dir if results_dir is not None else runs_dir(profile), shipped=not trains_source)
    return plan_of(profile, configs, done)
