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

#: The first code cell of every notebook: on Colab, fetch this project and install it (Colab keeps its
#: own TensorFlow). Elsewhere it does nothing: install once with ``pip install -e .`` (or ``make``).
SETUP_CELL = """\
import sys

REPO_URL = "https://github.com/YOUR-ACCOUNT/tlutils-course.git"  # placeholder: where your copy of this project lives
if "google.colab" in sys.modules:  # on Colab: clone the project and install it (about a minute)
    !git clone --depth 1 --quiet {REPO_URL} /content/tlutils-course
    %cd /content/tlutils-course
    !pip install --quiet -e ."""

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
    return notebook


def notebook_text(notebook: nbformat.NotebookNode) -> str:
    """The notebook as written to disk (nbformat's JSON layout, one trailing newline)."""
    nbformat.validate(notebook)
    return nbformat.writes(notebook) + "\n"


def sources() -> list[Path]:
    """The notebook sources, in course order."""
    return sorted(SOURCES.glob("[0-9][0-9]_*.py"))


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
    if stale:
        print("out of date (run python scripts/make_notebooks.py):", *map(str, stale), sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
