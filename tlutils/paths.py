"""Where things live: the project root, figures/, data/ and runs/<profile>/, and ../shared/data.

Notebooks run from notebooks/ (JupyterLab), from runs/<profile>/notebooks/ (papermill, nbval) or from
/content (Colab). They find the project by looking upward for this project's pyproject.toml, so no
notebook needs a relative path or a ``sys.path`` hack.

``$TLUTILS_ROOT`` overrides the search: runs/, data/ and figures/ then go under that folder, which is
how a read-only checkout runs the course (``TLUTILS_ROOT=~/tlutils-work tlutils course``); tlutils
itself is still imported from the checkout. :func:`shared_data_dir` looks beside the folder it names.
"""

from __future__ import annotations

import os
from pathlib import Path

_MARKER = "pyproject.toml"


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The project root: ``$TLUTILS_ROOT``, else the nearest folder upward with tlutils' pyproject.toml.

    Falls back to the folder above the installed package (an editable install), then to the current
    directory.
    """
    if os.environ.get("TLUTILS_ROOT"):
        return Path(os.environ["TLUTILS_ROOT"]).resolve()
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        marker = folder / _MARKER
        if marker.is_file() and 'name = "tlutils"' in marker.read_text(errors="ignore"):
            return folder
    package_parent = Path(__file__).resolve().parents[1]
    if (package_parent / _MARKER).is_file():
        return package_parent
    return here


def figures_dir() -> Path:
    """``figures/`` under the project root (created when missing)."""
    path = project_root() / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """``data/`` under the project root: generated datasets (ignored by git)."""
    path = project_root() / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir(profile: str) -> Path:
    """``runs/<profile>/`` under the project root: results, checkpoints, executed notebooks."""
    path = project_root() / "runs" / profile
    path.mkdir(parents=True, exist_ok=True)
    return path


#: Where the course's own machines keep real data, relative to the folder above the project root.
SHARED_DATA = Path("shared") / "data"


def shared_data_dir(project: str | os.PathLike | None = None) -> Path | None:
    """``../shared/data`` beside the project (default :func:`project_root`), or None where there is none.

    The course's own machines keep samples of the real datasets there (``gtsdb-sample/``,
    ``gtsdb-train/``, ``btsd-annotations/``; its README says what each holds); a user's clone has no
    such folder. Notebooks use it as the default of their data parameters, tests that need it skip.
    """
    root = Path(project).resolve() if project is not None else project_root()
    path = root.parent / SHARED_DATA
    return path if path.is_dir() else None



#: Where Colab mounts Google Drive (``google.colab.drive.mount``).
COLAB_DRIVE_MOUNT = "/content/drive"


def colab_runs(on_drive: bool, drive_folder: str | os.PathLike, project: str | os.PathLike | None = None) -> Path:
    """Where a Colab notebook keeps runs/, said in one printed line; returns that folder.

    Each Colab notebook runs on its own VM, whose disk is gone when the runtime ends. With ``on_drive``,
    Google Drive is mounted and the project's runs/ becomes a link to ``drive_folder`` on it (created
    when missing; calling again keeps the link, a link elsewhere is replaced), so that every notebook
    and later sessions share their runs: notebook 05 then finds the detector notebook 04 trained.
    Without, runs/ stays on the VM. Run one notebook at a time on a shared folder: the runs' file locks
    do not reach across VMs, and Drive syncs with a delay.

    Raises:
        RuntimeError: ``on_drive``, but runs/ already holds runs of this VM (the link would hide them):
            copy them to ``drive_folder`` or restart the runtime first.
    """
    runs = (Path(project) if project is not None else project_root()) / "runs"
    if not on_drive:
        print(f"runs/ is {runs} on this VM, gone when the runtime ends (KEEP_RUNS_ON_DRIVE = True keeps it)")
        return runs
    from google.colab import drive  # only on Colab

    drive.mount(COLAB_DRIVE_MOUNT)
    folder = Path(drive_folder)
    folder.mkdir(parents=True, exist_ok=True)
    if runs.is_symlink() and runs.resolve() != folder.resolve():
        runs.unlink()  # a link to another folder: nothing of this VM's is lost
    if runs.is_dir() and not runs.is_symlink():
        if any(runs.iterdir()):
            raise RuntimeError(f"{runs} already holds this VM's runs: copy them to {folder} yourself, or "
                               "restart the runtime, then run the setup cell again")
        runs.rmdir()
    if not runs.is_symlink():
        runs.symlink_to(folder, target_is_directory=True)
    print(f"runs/ is {folder} on your Google Drive (run one notebook at a time on it)")
    return folder
