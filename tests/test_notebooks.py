"""Structure of the course notebooks (fast: nothing is executed; ``make test-notebooks`` runs them).

Every notebook is built by ``scripts/make_notebooks.py`` from ``scripts/notebooks/NN_*.py`` and must:
have a title, a "What you will learn" cell, the shared setup cell, exactly one ``parameters`` cell
with ``PROFILE``, a summary and exercises; keep its logic in ``tlutils`` (no ``def`` / ``class``, only
``tlutils`` and standard scientific imports); share no code cell with another notebook; be committed
without outputs; and save figures under names that start with its number.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
import tomllib
import types
from collections import defaultdict

import nbformat
import pytest

from conftest import REPO_ROOT

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
EXPECTED = ("01_data", "02_ssd_vgg16", "03_anchors_loss_decoding", "04_source_detector", "05_transfer_study",
            "06_loss_curve_diagnosis", "07_interactive_explorer", "08_your_own_data")
#: Top-level modules a notebook may import besides the standard library.
ALLOWED_IMPORTS = {"tlutils", "numpy", "pandas", "matplotlib", "seaborn", "keras", "IPython", "ipywidgets", "PIL"}
#: Code cells longer than this many non-empty lines must not appear in two notebooks.
MAX_SHARED_LINES = 3
#: At most this many code cells in a row without a markdown cell motivating them.
MAX_CODE_RUN = 3
MAX_CODE_LINES = 25
#: What a ``# NBVAL_CHECK_OUTPUT`` cell must not do: its output has to be identical on every run.
NONDETERMINISTIC = re.compile(r"\b(run|sweep|fit|perf_counter|time\.time)\(|epoch_seconds|images_per_s")


def _generator():
    spec = importlib.util.spec_from_file_location("make_notebooks", REPO_ROOT / "scripts" / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_notebooks", module)
    spec.loader.exec_module(module)
    return module


def _read(path):
    return nbformat.read(path, as_version=4)


def _code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _python(source: str) -> str:
    """Cell source with IPython's ``!`` and ``%`` lines turned into ``pass``, parseable by ``ast``."""
    lines = source.splitlines()
    return "\n".join(line[: len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("!", "%")) else line
                     for line in lines)


def _headings(notebook) -> list[str]:
    return [line.lstrip("#").strip().lower() for cell in notebook.cells if cell.cell_type == "markdown"
            for line in cell.source.splitlines() if line.startswith("#")]


ids = [path.stem for path in NOTEBOOKS]


def test_every_planned_notebook_exists_and_nothing_else():
    present = [name for name in EXPECTED if (NOTEBOOK_DIR / f"{name}.ipynb").exists()]
    assert [path.stem for path in NOTEBOOKS] == present, f"notebooks not in the course plan: {EXPECTED}"
    assert NOTEBOOKS, "no notebooks in notebooks/"


def test_notebooks_are_what_their_sources_generate():
    generator = _generator()
    sources = {path.stem for path in generator.sources()}
    assert sources == {path.stem for path in NOTEBOOKS}, "every notebook has a source and vice versa"
    for source in generator.sources():
        expected = generator.notebook_text(generator.build_notebook(source))
        actual = (NOTEBOOK_DIR / f"{source.stem}.ipynb").read_text(encoding="utf-8")
        assert actual == expected, f"{source.stem}.ipynb is stale: run python scripts/make_notebooks.py"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_structure(path):
    notebook = _read(path)
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {path.stem[:2]} "), "title cell first"
    headings = _headings(notebook)
    for wanted in ("what you will learn", "summary", "exercises"):
        assert wanted in headings, f"no '## {wanted.capitalize()}' heading"
    assert headings.index("what you will learn") < headings.index("summary") < headings.index("exercises")
    setup = [cell for cell in notebook.cells if "setup" in _tags(cell)]
    assert len(setup) == 1 and setup[0].source == _generator().SETUP_CELL
    assert "REPO_URL" in setup[0].source and "google.colab" in setup[0].source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_exactly_one_parameters_cell_with_uppercase_knobs(path):
    cells = [cell for cell in _read(path).cells if "parameters" in _tags(cell)]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    tree = ast.parse(cells[0].source)
    names = [target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets]
    assert names and names[0] == "PROFILE" and 'PROFILE = "cpu"' in cells[0].source
    assert all(name.isupper() for name in names), f"knobs must be UPPERCASE: {names}"
    assert all(isinstance(node, ast.Assign) for node in tree.body), "only assignments in the parameters cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_committed_without_outputs(path):
    for cell in _code_cells(_read(path)):
        assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_logic_lives_in_tlutils(path):
    for cell in _code_cells(_read(path)):
        tree = ast.parse(_python(cell.source))
        defined = [node for node in ast.walk(tree)
                   if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        assert not defined, f"define functions and classes in tlutils, not in a notebook:\n{cell.source}"
        for node in ast.walk(tree):
            modules = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                       else [node.module] if isinstance(node, ast.ImportFrom) else [])
            for module in modules:
                top = module.split(".")[0]
                assert top in ALLOWED_IMPORTS or top in sys.stdlib_module_names, f"import of {module!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_markdown_motivates_short_code_cells(path):
    run = 0
    for cell in _read(path).cells:
        run = run + 1 if cell.cell_type == "code" else 0
        assert run <= MAX_CODE_RUN, f"more than {MAX_CODE_RUN} code cells in a row before:\n{cell.source[:200]}"
        if cell.cell_type == "code":
            lines = [line for line in cell.source.splitlines() if line.strip()]
            assert len(lines) <= MAX_CODE_LINES, f"a code cell of {len(lines)} lines:\n{cell.source[:200]}"


def test_no_code_cell_is_shared_between_notebooks():
    seen = defaultdict(set)
    for path in NOTEBOOKS:
        for cell in _code_cells(_read(path)):
            lines = [line.strip() for line in cell.source.splitlines() if line.strip()]
            if "setup" not in _tags(cell) and len(lines) > MAX_SHARED_LINES:
                seen["\n".join(lines)].add(path.stem)
    shared = {source: names for source, names in seen.items() if len(names) > 1}
    assert not shared, f"code cells copied between notebooks (move the code into tlutils): {shared}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_figures_have_stable_names_of_their_notebook(path):
    names = []
    for cell in _code_cells(_read(path)):
        names += re.findall(r"save_figure\([^,]+,\s*\"([^\"]+)\"", cell.source)
        names += re.findall(r"FIGURES / \"([^\"]+)\.png\"", cell.source)
    for name in names:
        assert re.fullmatch(rf"{path.stem[:2]}_[a-z0-9_]+", name), f"figure name {name!r}"
    assert len(names) == len(set(names)), "a figure name used twice"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_checked_outputs_are_deterministic_cells(path):
    for cell in _code_cells(_read(path)):
        if "NBVAL_CHECK_OUTPUT" in cell.source:
            assert not NONDETERMINISTIC.search(cell.source), f"a checked cell that trains or times:\n{cell.source}"


def test_the_repository_url_is_said_once_in_pyproject_and_written_everywhere():
    generator = _generator()
    repository = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    assert generator.repository_url() == repository.removesuffix(".git").rstrip("/")
    for path in NOTEBOOKS:
        notebook = _read(path)
        setup = next(cell for cell in notebook.cells if "setup" in _tags(cell))
        assert f'REPO_URL = "{generator.repository_url()}"' in setup.source, path.name
        badge = generator.colab_badge(path.stem, generator.repository_url())
        assert notebook.cells[0].source.splitlines()[2] == badge, f"{path.name}: no Colab badge under the title"
        assert f"/blob/{generator.BRANCH}/notebooks/{path.name})" in badge
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert generator.readme_text(readme) == readme, "README's Colab links are stale: run scripts/make_notebooks.py"
    links = set(re.findall(r"\(https://colab\.research\.google\.com/github/[^)]+\)", readme))
    assert links == {f"({generator.colab_url(path.stem, generator.repository_url())})" for path in NOTEBOOKS}


def test_readme_links_follow_another_repository_and_a_missing_badge_is_an_error():
    generator = _generator()
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    moved = generator.readme_text(readme, "https://github.com/someone/elsewhere")
    assert "github/someone/elsewhere/blob/main/notebooks/05_transfer_study.ipynb" in moved
    assert generator.readme_text(moved) == readme
    without_05 = "\n".join(line for line in readme.splitlines() if "05_transfer_study.ipynb)" not in line)
    with pytest.raises(ValueError, match="none to \\['05_transfer_study'\\]"):
        generator.readme_text(without_05)


def test_a_failed_clone_on_colab_raises_one_error_that_says_what_to_do(tmp_path, monkeypatch):
    generator = _generator()
    cell = generator.setup_cell(str(tmp_path / "no-such-repository")).replace(generator.COLAB_PROJECT_DIR,
                                                                             str(tmp_path / "project"))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError, match="(?s)git clone .*failed.*What to do: REPO_URL must be a public GitHub"):
        exec(compile(cell, "setup cell", "exec"), {})
    assert not (tmp_path / "project").exists()


def test_on_colab_runs_can_live_on_drive_for_every_notebook(tmp_path, monkeypatch, capsys):
    """KEEP_RUNS_ON_DRIVE: Drive is mounted and runs/ of the project becomes a link to the Drive folder;
    a runs/ that already holds runs is not silently hidden; without it, the cell says runs/ is on the VM."""
    generator = _generator()
    project, drive_runs = tmp_path / "project", tmp_path / "drive" / "runs"
    cell = (generator.setup_cell("https://github.com/x/y").replace(generator.COLAB_PROJECT_DIR, str(project))
            .replace(generator.COLAB_DRIVE_RUNS, str(drive_runs)))
    on_drive = cell.replace("KEEP_RUNS_ON_DRIVE = False", "KEEP_RUNS_ON_DRIVE = True")
    mounted = []
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=mounted.append)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: subprocess.CompletedProcess(args, 0, "", ""))
    monkeypatch.setenv("TLUTILS_ROOT", str(project))  # the clone stands in for the project
    monkeypatch.chdir(tmp_path)
    project.mkdir()  # cloned before: no clone; the install is the stand-in above
    exec(compile(cell, "setup cell", "exec"), {})
    assert "on this VM" in capsys.readouterr().out and not mounted and not (project / "runs").exists()
    exec(compile(on_drive, "setup cell", "exec"), {})
    assert mounted == ["/content/drive"] and (project / "runs").is_symlink()
    assert (project / "runs").resolve() == drive_runs.resolve() and drive_runs.is_dir()
    exec(compile(on_drive, "setup cell", "exec"), {})  # run again: the link stays
    assert "on your Google Drive" in capsys.readouterr().out
    (project / "runs").unlink()
    (project / "runs").symlink_to(tmp_path, target_is_directory=True)  # a link elsewhere is replaced
    exec(compile(on_drive, "setup cell", "exec"), {})
    assert (project / "runs").resolve() == drive_runs.resolve()
    (project / "runs").unlink()
    (project / "runs").mkdir()  # empty: replaced by the link
    exec(compile(on_drive, "setup cell", "exec"), {})
    assert (project / "runs").is_symlink()
    (project / "runs").unlink()
    (project / "runs" / "cpu").mkdir(parents=True)  # this VM's runs: never hidden
    with pytest.raises(RuntimeError, match="already holds this VM's runs"):
        exec(compile(on_drive, "setup cell", "exec"), {})


def test_outside_colab_the_setup_cell_only_quiets_tensorflow(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    namespace = {}
    exec(compile(_generator().SETUP_CELL, "setup cell", "exec"), namespace)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2" and namespace["REPO_URL"].startswith("https://github.com/")
