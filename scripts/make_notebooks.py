"""Build the course notebooks ``notebooks/NN_*.ipynb`` from their sources ``scripts/notebooks/NN_*.py``.

    python scripts/make_notebooks.py           # (re)write every notebook
    python scripts/make_notebooks.py --check   # exit 1 when a notebook differs from what its source gives

The sources are plain text in (a subset of) jupytext's "percent" format, so a review reads them as a
diff of code and prose rather than of notebook JSON:

    # %% [markdown]            a markdown cell: every line is a comment ("# text"; "#" is an empty line)
    # %%                       a code cell
    # %% tags=["parameters"]   a code cell with cell tags (papermill reads "parameters")
    # %% [setup]               the setup cell every notebook shares (:data:`SETUP_CELL`, tagged "setup")

Notebooks are written clean: no outputs, no execution counts. ``make course`` writes executed copies
to ``runs/<profile>/notebooks/``.

Where the project lives is said once, by ``Repository`` in pyproject.toml's ``[project.urls]``: this
script writes it into every setup cell (``REPO_URL``, what Colab clones) and into the "Open in Colab"
badges of each notebook's title cell and of the README's notebook map (``--check`` checks the README
too).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "scripts" / "notebooks"
NOTEBOOKS = ROOT / "notebooks"

PYPROJECT = ROOT / "pyproject.toml"
README = ROOT / "README.md"
#: The branch that the "Open in Colab" badges open.
BRANCH = "main"
#: Where a Colab runtime clones the project.
COLAB_PROJECT_DIR = "/content/tlutils-course"
#: The packages Colab pins for its own frontend and accelerators: the setup cell never changes them.
COLAB_KEEPS = ("tensorflow", "jax", "jaxlib", "keras", "ipykernel", "ipywidgets")
#: Where ``KEEP_RUNS_ON_DRIVE`` keeps runs/ on Colab: each Colab notebook runs on its own VM, and a
#: Drive folder is how notebook 05 finds the detectors notebook 04 trained (and a later session its runs).
COLAB_DRIVE_RUNS = "/content/drive/MyDrive/tlutils-course/runs"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
#: A link that opens a notebook of this project's GitHub repository in Colab.
_COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^)\s]*?/notebooks/(?P<name>[0-9]{2}_\w+)\.ipynb")


def repository_url(pyproject: Path = PYPROJECT) -> str:
    """``Repository`` of pyproject.toml's ``[project.urls]``, without a trailing ``.git`` or ``/``.

    Raises:
        ValueError: no such entry, or not a ``https://github.com/<owner>/<name>`` URL (Colab opens
            notebooks from GitHub).
    """
    table = re.search(r"^\[project\.urls\]\s*$(?P<body>.*?)(?=^\[|\Z)", pyproject.read_text(encoding="utf-8"),
                      re.MULTILINE | re.DOTALL)
    entry = table and re.search(r'^Repository\s*=\s*"(?P<url>[^"]+)"', table["body"], re.MULTILINE)
    if not entry:
        raise ValueError(f"{pyproject}: [project.urls] needs Repository = \"https://github.com/<owner>/<name>\"")
    url = entry["url"].removesuffix(".git").rstrip("/")
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        raise ValueError(f"{pyproject}: Repository must be https://github.com/<owner>/<name>, got {url!r}")
    return url


def colab_url(notebook: str, repository: str) -> str:
    """The Colab address of ``notebooks/<notebook>.ipynb`` on :data:`BRANCH` of ``repository``."""
    return f"https://colab.research.google.com/github/{repository.removeprefix('https://github.com/')}" \
           f"/blob/{BRANCH}/notebooks/{notebook}.ipynb"


def colab_badge(notebook: str, repository: str) -> str:
    """The Markdown "Open in Colab" badge of a notebook."""
    return f"[![Open in Colab]({COLAB_BADGE})]({colab_url(notebook, repository)})"


def _python_tuple(names: tuple[str, ...]) -> str:
    """``("a", "b")``: a tuple of strings as this project writes one."""
    return "(" + ", ".join(f'"{name}"' for name in names) + ")"


def setup_cell(repository: str) -> str:
    """The first code cell of every notebook.

    Everywhere it keeps TensorFlow's C++ INFO lines out (before anything imports TensorFlow). On Colab
    it clones ``repository`` and installs the project with pip, constrained to the versions of
    :data:`COLAB_KEEPS` Colab has (so only what Colab lacks is installed, and nothing of Colab's own is
    upgraded; of two installed distributions with one name, the first on ``sys.path``, the one Python
    imports, gives the pin); a failed clone or install raises one error that says what to do. With
    ``KEEP_RUNS_ON_DRIVE = True`` it mounts Google Drive and makes runs/ a link to
    :data:`COLAB_DRIVE_RUNS` (``tlutils.paths.colab_runs``). Elsewhere install once with ``pip install -e .`` (or ``make``).
    """
    return f"""\
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow: no C++ INFO lines (set before it is imported)
REPO_URL = "{repository}"  # pyproject.toml's [project.urls] Repository
KEEP_RUNS_ON_DRIVE = False  # Colab: True keeps runs/ on your Google Drive, shared by every notebook
if "google.colab" in sys.modules:  # on Colab: fetch the project, install only what Colab lacks (about a minute)
    from importlib.metadata import distributions

    PROJECT, PINS = "{COLAB_PROJECT_DIR}", "/tmp/colab-pins.txt"
    KEEP = {_python_tuple(COLAB_KEEPS)}  # Colab's own: never upgraded
    installed = {{(dist.metadata["Name"] or "").lower(): dist.version for dist in reversed(list(distributions()))}}
    with open(PINS, "w") as pins:
        pins.write("\\n".join(f"{{name}}=={{installed[name]}}" for name in KEEP if name in installed))
    clone = ["git", "clone", "--depth", "1", "--quiet", REPO_URL, PROJECT]
    install = [sys.executable, "-m", "pip", "install", "--quiet", "-e", PROJECT, "--constraint", PINS]
    clone_help = "REPO_URL must be a public GitHub copy of this project (pyproject.toml), and the runtime online"
    install_help = f"pip could not add what Colab lacks and keep Colab's own ({{PINS}}): restart the session"
    for command, what_to_do in ([] if os.path.isdir(PROJECT) else [(clone, clone_help)]) + [(install, install_help)]:
        done = subprocess.run(command, capture_output=True, text=True, env={{**os.environ, "GIT_TERMINAL_PROMPT": "0"}})
        if done.returncode:
            raise RuntimeError(f"{{' '.join(command[:6])}} ... failed:\\n{{done.stderr.strip()[-1500:]}}\\n"
                               f"What to do: {{what_to_do}}; then run this cell again.")
    os.chdir(PROJECT)  # the kernel imports tlutils from here, and the notebooks find the project
    from tlutils.paths import colab_runs  # every Colab notebook has its own VM: runs/ on Drive is what they share

    colab_runs(on_drive=KEEP_RUNS_ON_DRIVE, drive_folder="{COLAB_DRIVE_RUNS}")"""


#: Where the project lives (:func:`repository_url`).
REPOSITORY = repository_url()
#: The first code cell of every notebook (:func:`setup_cell`).
SETUP_CELL = setup_cell(REPOSITORY)

_MARKER = re.compile(r"^# %%(?: \[(?P<kind>markdown|setup)\])?(?: tags=(?P<tags>\[.*\]))?\s*$")

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def parse_source(text: str, path: str = "<source>") -> list[nbformat.NotebookNode]:
    """The cells of a percent-format source (see the module docstring).

    Raises:
        ValueError: text before the first ``# %%`` marker, a markdown line that is not a comment, or
            malformed tags; the message names the file and line.
    """
    cells: list[nbformat.NotebookNode] = []
    kind, tags, lines, start = None, [], [], 0

    def close() -> None:
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            cells.append(nbformat.v4.new_markdown_cell(body))
        elif kind == "setup":
            cells.append(nbformat.v4.new_code_cell(SETUP_CELL, metadata={"tags": ["setup"]}))
        elif kind == "code":
            cells.append(nbformat.v4.new_code_cell(body, metadata={"tags": tags} if tags else {}))

    for number, line in enumerate(text.splitlines(), start=1):
        marker = _MARKER.match(line)
        if marker:
            close()
            kind, lines, start = marker["kind"] or "code", [], number
            try:
                tags = json.loads(marker["tags"]) if marker["tags"] else []
            except json.JSONDecodeError:
                raise ValueError(f"{path}:{number}: tags must be a JSON list, got {marker['tags']!r}") from None
            continue
        if kind is None:
            if line.strip():
                raise ValueError(f"{path}:{number}: text before the first '# %%' cell marker")
            continue
        if kind == "markdown":
            if line and not line.startswith("#"):
                raise ValueError(f"{path}:{number}: a markdown line must be a comment ('# ...'), got {line!r}")
            line = line[2:] if line.startswith("# ") else line[1:]
        elif kind == "setup" and line.strip():
            raise ValueError(f"{path}:{number}: the [setup] cell is generated; leave it empty (cell at line {start})")
        lines.append(line)
    close()
    return cells


def build_notebook(source: Path) -> nbformat.NotebookNode:
    """The notebook of one source file."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = parse_source(source.read_text(encoding="utf-8"), str(source.relative_to(ROOT)))
    notebook.metadata = {
        "kernelspec": dict(KERNELSPEC),
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
    }
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"{source.stem[:2]}-{index:03d}"  # stable ids: no churn between regenerations
    title = notebook.cells[0]
    if title.cell_type == "markdown":  # the badge under the title line
        first, _, rest = title.source.partition("\n")
        title.source = f"{first}\n\n{colab_badge(source.stem, REPOSITORY)}" + (f"\n{rest}" if rest else "")
    return notebook


def notebook_text(notebook: nbformat.NotebookNode) -> str:
    """The notebook as written to disk (nbformat's JSON layout, one trailing newline)."""
    nbformat.validate(notebook)
    return nbformat.writes(notebook) + "\n"


def sources() -> list[Path]:
    """The notebook sources, in course order."""
    return sorted(SOURCES.glob("[0-9][0-9]_*.py"))


def readme_text(text: str, repository: str = REPOSITORY) -> str:
    """``text`` (the README) with every Colab link to a course notebook pointing at ``repository``.

    Raises:
        ValueError: a notebook with no Colab link in ``text``, or a link to a notebook that does not exist.
    """
    names = [source.stem for source in sources()]
    linked = set(match["name"] for match in _COLAB_LINK.finditer(text))
    if linked - set(names) or set(names) - linked:
        raise ValueError(f"README.md: Colab links to unknown notebooks {sorted(linked - set(names))}, "
                         f"none to {sorted(set(names) - linked)}: give each notebook of the map a badge")
    return _COLAB_LINK.sub(lambda match: colab_url(match["name"], repository), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = parser.parse_args(argv)
    stale = []
    for source in sources():
        target = NOTEBOOKS / f"{source.stem}.ipynb"
        text = notebook_text(build_notebook(source))
        if args.check:
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                stale.append(target.relative_to(ROOT))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target.relative_to(ROOT)}")
    readme = README.read_text(encoding="utf-8")
    if readme_text(readme) != readme:
        if args.check:
            stale.append(README.relative_to(ROOT))
        else:
            README.write_text(readme_text(readme), encoding="utf-8")
            print(f"wrote the Colab links of {README.relative_to(ROOT)}")
    if stale:
        print("out of date (run python scripts/make_notebooks.py):", *map(str, stale), sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
