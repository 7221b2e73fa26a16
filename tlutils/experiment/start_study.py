"""The thesis' source-stage experiment: its starts on Belgium, one long schedule, the L2 term in the loss.

The student trained the Belgian SSD from scratch, from a VGG16 trained to classify traffic signs and from
a COCO detector, with ssd_keras' L2 factor (0.0005) inside the loss, for up to 100 epochs, and saw
scratch fall to a loss of 3 while the pretrained starts stalled at 9-11. :func:`source_study_configs`
is that experiment at a profile's scale (``tlutils.experiment.sweeps.SOURCE_STARTS``: ``scratch``,
``classifier``, ``detector``; see ``tlutils.pretrain`` for how the last two are made), with a training
set small enough (:data:`STUDY_SIZES`) that the long schedule reaches over-fitting.

On the cpu profile the study is nine runs, over an hour on a 2-core CPU, so its rows ship with tlutils
(``tlutils/shipped/studies/<name>_<profile>.csv`` and a JSON manifest saying who measured them, where,
and with which command) the way the source detector does (``tlutils.experiment.shipped``):
:func:`source_study` reads them unless asked to run the study here. ``tlutils study source-starts
--profile cpu --export`` runs and exports it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from tlutils.experiment.atomic import write_text
from tlutils.experiment.config import RunConfig
from tlutils.experiment.resolved import resolve
from tlutils.experiment.shipped import SHIPPED_DIR, machine_description
from tlutils.experiment.store import stored_rows
from tlutils.experiment.sweeps import SOURCE_STARTS

if TYPE_CHECKING:
    import pandas as pd

#: ssd_keras' ``l2_reg`` (its SSD300 training tutorial), the L2 factor inside the thesis' loss.
KERAS_SSD_L2 = 0.0005
#: Where shipped study tables live (package data of tlutils).
STUDIES_DIR = SHIPPED_DIR / "studies"
STUDY_NAME = "source_starts"


@dataclass(frozen=True)
class StudySize:
    """How large one profile's source-start study is.

    Attributes:
        num_images: Belgian training images (``None``: the profile's ``num_source_images``).
        total_steps, steps_per_epoch: the schedule, evaluated after every ``steps_per_epoch`` steps
            (``None``: the profile's source schedule).
        seeds: the seeds of every start.
    """

    num_images: int | None
    total_steps: int | None
    steps_per_epoch: int | None
    seeds: tuple[int, ...]


#: Per profile. cpu: 600 images (a quarter of the source run's) for 2,400 steps = 32 passes, four
#: times the passes of the profile's source run, so that the small set is over-fitted; 16 evaluations.
#: ci: a few steps, to exercise the path. Other profiles: their own source run's size and schedule.
STUDY_SIZES: dict[str, StudySize] = {
    "ci": StudySize(num_images=None, total_steps=16, steps_per_epoch=4, seeds=(0,)),
    "cpu": StudySize(num_images=600, total_steps=2400, steps_per_epoch=150, seeds=(0, 1, 2)),
}


def study_size(profile: str) -> StudySize:
    """The :class:`StudySize` of ``profile`` (:data:`STUDY_SIZES`, else the profile's source run, its seeds)."""
    from tlutils.profiles import get_profile

    return STUDY_SIZES.get(profile) or StudySize(None, None, None, tuple(get_profile(profile).seeds))


def source_study_configs(profile: str, starts: Sequence[str] = SOURCE_STARTS,
                         seeds: Sequence[int] | None = None) -> list[RunConfig]:
    """The study's runs: every start in ``starts`` with every seed (default the profile's study seeds),
    on the sign world's Belgium, at :func:`study_size`, with :data:`KERAS_SSD_L2` in the loss."""
    if not starts:
        raise ValueError("source_study_configs needs at least one start, e.g. ('scratch', 'classifier', 'detector')")
    size = study_size(profile)
    base = RunConfig(stage="source", profile=profile, strategy=starts[0], num_target_images=size.num_images,
                     total_steps=size.total_steps, steps_per_epoch=size.steps_per_epoch,
                     l2_regularization=KERAS_SSD_L2)
    return [base.replace(strategy=start, seed=seed) for start in starts
            for seed in (seeds if seeds is not None else size.seeds)]


def study_path(profile: str, studies_dir: str | os.PathLike | None = None) -> Path:
    """``<studies_dir>/<STUDY_NAME>_<profile>.csv`` (default :data:`STUDIES_DIR`); the manifest is beside
    it with the suffix ``.json``."""
    return Path(studies_dir or STUDIES_DIR) / f"{STUDY_NAME}_{profile}.csv"


def shipped_study(configs: Sequence[RunConfig], studies_dir: str | os.PathLike | None = None,
                  ) -> tuple["pd.DataFrame", dict[str, Any]] | None:
    """The shipped rows of every run in ``configs`` and the manifest, or ``None`` when no shipped table
    of their profile holds all of them (a run whose configuration changed has another key)."""
    import pandas as pd

    if not configs:
        raise ValueError("shipped_study needs at least one configuration")
    path = study_path(configs[0].profile, studies_dir)
    if not path.is_file():
        return None
    rows = pd.read_csv(path, dtype={"run_key": str, "strategy": str})  # a key of digits stays a key
    keys = [resolve(config).key for config in configs]
    if not set(keys) <= set(rows["run_key"]):
        return None
    manifest = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    return rows[rows["run_key"].isin(keys)].reset_index(drop=True), manifest


def export_study(configs: Sequence[RunConfig], results_dir: str | os.PathLike,
                 studies_dir: str | os.PathLike | None = None, command: str = "") -> Path:
    """Write the finished runs ``configs`` of ``results_dir`` as the shipped study table of their profile
    (rows without the ``checkpoint`` column) and its manifest; returns the table's path.

    Raises:
        ValueError: a run has not finished in ``results_dir``.
    """
    import pandas as pd

    results_dir = Path(results_dir)
    resolved = [resolve(config) for config in configs]
    frames = [stored_rows(results_dir, run.key) for run in resolved]
    missing = [run.name for run, rows in zip(resolved, frames) if rows.empty]
    if missing:
        raise ValueError(f"not finished in {results_dir}: {', '.join(missing)}; run the study first")
    rows = pd.concat(frames, ignore_index=True)
    path = study_path(configs[0].profile, studies_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows.drop(columns=["checkpoint"]).to_csv(path, index=False)
    manifest = {
        "profile": configs[0].profile, "keys": sorted(rows["run_key"].unique()),
        "command": command or f"tlutils study source-starts --profile {configs[0].profile} --export",
        "machine": machine_description(resolved[0].mixed_precision),
        "exported": dt.date.today().isoformat(),
        "training_minutes": float(rows["epoch_seconds"].sum()) / 60,
        "pretrained": _pretrained_summaries(results_dir, configs),
    }
    write_text(path.with_suffix(".json"), json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return path


def _pretrained_starts(configs: Sequence[RunConfig]) -> dict[str, str]:
    """``{file stem: kind}`` of the pretrained files the runs ``configs`` start from
    (``tlutils.pretrain``'s ``<kind>_<key>``), in file-name order."""
    resolved = [resolve(config) for config in configs]
    stems = {f"{run.strategy}_{run.pretrained_key}": run.strategy for run in resolved if run.pretrained_key}
    return dict(sorted(stems.items()))


def _pretrained_summaries(results_dir: Path, configs: Sequence[RunConfig]) -> list[dict[str, Any]]:
    """What each pretrained start the runs ``configs`` loaded was (kind, config, seconds, last epoch's numbers)."""
    return [_summary_of(results_dir / "pretrained" / f"{stem}.keras") for stem in _pretrained_starts(configs)]


def _summary_of(path: Path) -> dict[str, Any]:
    """The summary ``tlutils.pretrain`` recorded beside the pretrained file ``path``, shortened for a
    manifest (its last epoch's numbers only); ``ValueError`` where there is none."""
    from tlutils.pretrain import pretrained_summary

    summary = pretrained_summary(path)
    last = {name: values[-1] for name, values in summary.get("history", {}).items() if values}
    return {"file": path.stem, "config": summary["config"], "seconds": summary["seconds"],
            "num_train": summary.get("num_train"), "num_val": summary.get("num_val"), "last_epoch": last}


def pretrained_lines(profile: str, starts: Sequence[str] = SOURCE_STARTS,
                     results_dir: str | os.PathLike | None = None, run_here: bool = False) -> list[str]:
    """One line per pretrained start of the study (classifier, detector): what it was trained on, how long,
    and its last epoch's numbers; read from the shipped manifest (as :func:`source_study` reads the
    rows) or from ``results_dir/pretrained/``, "not made yet" where neither has it."""
    from tlutils.paths import runs_dir

    configs = source_study_configs(profile, starts)
    shipped = None if run_here else shipped_study(configs)
    by_file = {summary["file"]: summary for summary in (shipped[1].get("pretrained", []) if shipped else [])}
    folder = Path(results_dir) if results_dir is not None else runs_dir(profile)
    lines = []
    for stem, kind in _pretrained_starts(configs).items():
        path = folder / "pretrained" / f"{stem}.keras"
        summary = by_file.get(stem) or (_summary_of(path) if path.with_suffix(".json").is_file() else None)
        if summary is None:
            lines.append(f"{kind}: not made yet (the first run that starts from it makes it)")
            continue
        config = summary["config"]
        last = ", ".join(f"{name} {value:.3f}" for name, value in sorted(summary["last_epoch"].items()))
        lines.append(f"{kind}: {config['epochs']} epochs on {summary['num_train']} training "
                     f"{'crops' if kind == 'classifier' else 'images'} from {', '.join(config['data'])} "
                     f"({config['num_images']} scenes), {summary['seconds'] / 60:.1f} min; last epoch: {last}")
    return lines


def source_study(profile: str, starts: Sequence[str] = SOURCE_STARTS, results_dir: str | os.PathLike | None = None,
                 run_here: bool = False, verbose: int = 0) -> tuple["pd.DataFrame", str]:
    """The study's rows and one sentence saying where they come from.

    The shipped table where it holds every run and ``run_here`` is False; otherwise the runs are trained
    (or read back, if finished) in ``results_dir`` (default ``runs/<profile>``).
    """
    configs = source_study_configs(profile, starts)
    shipped = None if run_here else shipped_study(configs)
    if shipped is not None:
        rows, manifest = shipped
        pretraining = sum(summary["seconds"] for summary in manifest.get("pretrained", [])) / 60
        return rows, (f"read the {len(configs)} runs shipped with tlutils: measured on {manifest['machine']} "
                      f"({manifest['exported']}; {manifest['training_minutes']:.0f} min of training, plus "
                      f"{pretraining:.0f} min making the pretrained starts) by `{manifest['command']}`; "
                      "RUN_SOURCE_STUDY = True trains them here")
    import pandas as pd

    from tlutils.experiment.runner import run

    rows = pd.concat([run(config, results_dir, verbose=verbose) for config in configs], ignore_index=True)
    return rows, f"trained here (or read back from {results_dir or f'runs/{profile}'}): {len(configs)} runs"
