"""The course's sign-world sets: rendered once into ``data/synth/<...>/``, then read from disk.

:func:`synth_dataset` names a set by everything that decides its images (country, split, seed, image
size, number of images, generator version), so a folder is never reused for other arguments.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tlutils.data.synth.files import GENERATOR_VERSION, generate

if TYPE_CHECKING:
    from tlutils.data.records import DetectionDataset

__all__ = ["STALE_PARTIAL_SECONDS", "WORLD_SEEDS", "synth_dataset"]

#: The seed of each split: training pools and validation sets never share an image.
WORLD_SEEDS = {"train": 0, "val": 1}
#: Seeds of splits only runs that ask for them render (a test set that chooses nothing); apart from
#: WORLD_SEEDS, which every run key holds, so that adding one changed no key.
HELD_OUT_SEEDS = {"test": 2}
#: A side folder untouched for this long belongs to a render that stopped (a killed kernel).
STALE_PARTIAL_SECONDS = 3600.0

_PARTIAL = ".partial-"


def synth_dataset(country: str, split: str, num_images: int, image_size: int,
                  data_dir: str | os.PathLike | None = None) -> "DetectionDataset":
    """The rendered sign-world set ``(country, split)``: generated on first use, then read from disk.

    Files go to ``<data_dir>/synth/<country>_<split>_s<seed>_<size>px_n<num>_v<version>/`` (default
    data_dir: the project's ``data/``); a folder whose ``annotations.json`` exists is reused. Safe when
    several processes or threads ask for the same set at once (two notebooks open in JupyterLab): each
    renders into its own side folder, the first to finish renames it into place and the others drop
    theirs (the renderer is deterministic, so every copy is the same set). Side folders left by a
    killed render (:func:`remove_stale_partials`) are removed first.
    """
    from tlutils.data.loaders import load_coco
    from tlutils.paths import data_dir as default_data_dir

    seeds = {**WORLD_SEEDS, **HELD_OUT_SEEDS}
    if split not in seeds:
        raise ValueError(f"unknown split {split!r}; the sign world has {sorted(seeds)}")
    seed = seeds[split]
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    folder = root / "synth" / f"{country}_{split}_s{seed}_{image_size}px_n{num_images}_v{GENERATOR_VERSION}"
    annotations = folder / "annotations.json"
    if not annotations.is_file():  # render into a side folder of our own, then rename: never half a set
        remove_stale_partials(folder.parent)
        partial = folder.with_name(f"{folder.name}{_PARTIAL}{socket.gethostname()}-{os.getpid()}-"
                                   f"{threading.get_ident()}")
        try:
            generate(country, num_images, partial, seed=seed, image_size=image_size)
        except BaseException:  # an interrupted cell (KeyboardInterrupt) leaves no side folder behind
            shutil.rmtree(partial, ignore_errors=True)
            raise
        try:
            os.replace(partial, folder)
        except OSError:  # the folder exists: another process or thread finished the same set first
            if not annotations.is_file():
                raise
            shutil.rmtree(partial)
    return load_coco(annotations, split=split)


def remove_stale_partials(directory: str | os.PathLike, max_age: float = STALE_PARTIAL_SECONDS) -> list[Path]:
    """Remove the side folders in ``directory`` of renders that stopped; returns the folders removed.

    A side folder is stale when nothing was written to it for ``max_age`` seconds, or when it was
    made on this machine by a process that no longer runs. Renders in progress are left alone.
    """
    removed = []
    for path in sorted(Path(directory).glob(f"*{_PARTIAL}*")):
        if path.is_dir() and _is_stale(path, max_age):
            shutil.rmtree(path, ignore_errors=True)  # another caller may be removing it too
            removed.append(path)
    return removed


def _is_stale(path: Path, max_age: float) -> bool:
    try:
        age = time.time() - path.stat().st_mtime  # a render adds a file every few milliseconds
    except FileNotFoundError:  # renamed into place or removed meanwhile
        return False
    if age > max_age:
        return True
    owner = path.name.rsplit(_PARTIAL, 1)[1].rsplit("-", 2)  # host, pid, thread (hosts may contain "-")
    if len(owner) != 3 or owner[0] != socket.gethostname() or not owner[1].isdigit():
        return False  # older naming or another machine: only the age tells
    return not _process_runs(int(owner[1]))


def _process_runs(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
