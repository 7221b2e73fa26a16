"""The project around the package: dependency lists agree, the CI entry calls the README's command,
the README stays a front page and its links (and those of docs/) lead somewhere."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

import pytest

from conftest import REPO_ROOT

pytestmark = pytest.mark.core


def _name(requirement: str) -> str:
    """The normalized distribution name of a requirement string ('Pillow>=10' -> 'pillow')."""
    name = re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0]
    return name.lower().replace("_", "-")


def _environment_yml_names() -> tuple[set[str], set[str]]:
    """(conda dependency names, pip dependency names) of environment.yml, parsed without PyYAML."""
    conda, pip, section = set(), set(), None
    for line in (REPO_ROOT / "environment.yml").read_text().splitlines():
        stripped = line.split("#", 1)[0].rstrip()
        if stripped.startswith("dependencies:"):
            section = "conda"
        elif re.match(r"^\s+- pip:\s*$", stripped):
            section = "pip"
        elif section and (item := re.match(r"^\s+- (.+)$", stripped)):
            value = item.group(1).strip()
            if section == "pip" and line.startswith("      "):
                pip.add(value)
            else:
                section = "conda"
                conda.add(value)
    return {_name(c) for c in conda}, {_name(p) for p in pip if not p.startswith("-e")}


def _default_extras() -> list[str]:
    """The extras ``make`` installs: the Makefile's ``EXTRAS ?=`` default."""
    return re.search(r"^EXTRAS \?= (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.MULTILINE).group(1).split(",")


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    core = {_name(r) for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    assert {"cpu", "test", "lab"} <= set(_default_extras()), "make installs TensorFlow, the tests and JupyterLab"
    wanted = core | {_name(r) for extra in _default_extras() for r in extras[extra]}
    conda, pip = _environment_yml_names()
    conda.discard("python")
    conda.discard("pip")
    assert conda | pip == wanted, (
        f"only in environment.yml: {sorted((conda | pip) - wanted)}; "
        f"only in pyproject.toml: {sorted(wanted - (conda | pip))}"
    )


def test_lower_bounds_agree():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pins = {_name(r): r.split(">=", 1)[1] for r in project["dependencies"] if ">=" in r}
    text = (REPO_ROOT / "environment.yml").read_text()
    for name, version in pins.items():
        assert re.search(rf"- {re.escape(name)}>={re.escape(version)}\b", text, re.IGNORECASE), name


def test_the_readme_set_up_installs_what_make_installs():
    readme = (REPO_ROOT / "README.md").read_text()
    assert f'pip install -e ".[{",".join(_default_extras())}]"' in readme
    assert "make lab" in readme


def test_make_lab_opens_the_notebooks_in_jupyterlab_of_the_venv():
    # inside `make test` the parent make's MAKEFLAGS/MAKELEVEL would add "Entering directory" lines
    environment = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    done = subprocess.run(["make", "--no-print-directory", "-n", "lab"], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=True, env=environment)
    command = done.stdout.strip().splitlines()[-1].split()
    assert command[:2] == [".venv/bin/jupyter", "lab"], done.stdout  # its "python3" kernel is .venv/bin/python
    assert "--FileContentsManager.preferred_dir=notebooks" in command


@pytest.mark.parametrize("scope, expected", [(None, []), ("full", ["--scope", "full"])])
def test_make_course_passes_scope_only_when_given(scope, expected):
    environment = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    arguments = ["make", "--no-print-directory", "-n", "course"] + ([f"SCOPE={scope}"] if scope else [])
    done = subprocess.run(arguments, cwd=REPO_ROOT, capture_output=True, text=True, check=True, env=environment)
    command = done.stdout.strip().splitlines()[-1].split()
    assert command[1:5] == ["-m", "tlutils.cli", "course", "--profile"] and command[6:] == expected, done.stdout


def test_ci_runs_exactly_the_readme_test_command():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.startswith("#")]
    assert commands[-1] == "make test"
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make test" in readme and "make course" in readme


#: A Markdown link or image target: ``[text](target)`` / ``![alt](target)``, up to a space or ``)``.
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")
#: The README is the front page: details belong in docs/, so it must stay short.
README_MAX_LINES = 160


def _relative_links(markdown_path):
    """(target, resolved path) of every relative link in a Markdown file, anchors and queries dropped."""
    for target in _LINK.findall(markdown_path.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
            continue  # http(s):, mailto: ... and links within the same page
        path = target.split("#", 1)[0].split("?", 1)[0]
        yield target, (markdown_path.parent / path).resolve()


def test_relative_links_in_readme_and_docs_point_to_existing_files():
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    broken = [f"{page.relative_to(REPO_ROOT)}: {target}"
              for page in pages for target, path in _relative_links(page) if not path.exists()]
    assert not broken, f"links to missing files: {broken}"


def test_readme_links_into_docs():
    targets = {target for target, _ in _relative_links(REPO_ROOT / "README.md")}
    assert {"docs/architecture.md", "docs/performance.md", "docs/results.md"} <= targets, sorted(targets)


def test_readme_is_a_front_page():
    lines = (REPO_ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move details to docs/"
    )


def test_importing_tlutils_loads_no_backend():
    code = "import sys, tlutils, tlutils.profiles; print(any(m in sys.modules for m in ('tensorflow', 'jax', 'keras')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_cli_help_runs():
    out = subprocess.run([sys.executable, "-m", "tlutils.cli", "--help"], capture_output=True, text=True, check=True)
    assert "course" in out.stdout and "bench" in out.stdout


def test_cli_data_synth_writes_what_generate_writes(tmp_path):
    from tlutils.cli import main
    from tlutils.data.synth import generate

    assert main(["data", "synth", "--country", "germany", "--num-images", "3", "--seed", "5",
                 "--image-size", "96", "--out", str(tmp_path / "cli")]) == 0
    generate(country="germany", num_images=3, out_dir=tmp_path / "api", seed=5, image_size=96)
    cli_files = sorted(p.name for p in (tmp_path / "cli").iterdir())
    assert cli_files == sorted(p.name for p in (tmp_path / "api").iterdir())
    assert "annotations.json" in cli_files and len(cli_files) == 4
    for name in cli_files:
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "api" / name).read_bytes(), name


def test_nbval_command_spreads_whole_notebooks_over_workers(tmp_path):
    from tlutils.course import nbval_command

    notebooks = [tmp_path / "01_a.ipynb", tmp_path / "02_b.ipynb"]
    serial = nbval_command(notebooks)
    assert "--nbval-lax" in serial and "-n" not in serial and serial[-2:] == [str(p) for p in notebooks]
    parallel = nbval_command(notebooks, workers=2)
    assert parallel[parallel.index("-n") + 1] == "2" and parallel[parallel.index("--dist") + 1] == "loadfile"
    with pytest.raises(ValueError, match="workers must be >= 1"):
        nbval_command(notebooks, workers=0)


def test_cli_course_passes_the_check_workers_on(monkeypatch):
    import tlutils.course
    from tlutils.cli import main

    calls = []
    monkeypatch.setattr(tlutils.course, "run_course", lambda **kwargs: calls.append(kwargs) or 0)
    assert main(["course", "--profile", "ci", "--check", "--check-workers", "2"]) == 0
    assert calls == [{"profile": "ci", "check": True, "only": None, "check_workers": 2, "estimate": True,
                      "scope": None}]
    assert main(["course", "--profile", "thesis", "--no-estimate", "--scope", "full"]) == 0
    assert calls[-1]["profile"] == "thesis" and calls[-1]["estimate"] is False and calls[-1]["scope"] == "full"


def test_streamed_lines_are_whole_lines_with_their_prefix():
    from tlutils.course import StreamedLines

    lines = []
    stream = StreamedLines(lines.append, "05| ")
    stream.write("epoch 1 ")
    stream.write("loss 3.2\nepoch 2\n12% done\r50% done\r100% done\nhalf")
    assert lines == ["05| epoch 1 loss 3.2", "05| epoch 2", "05| 100% done"]
    stream.close()
    assert lines[-1] == "05| half"


@pytest.mark.slow
def test_the_course_prints_its_plan_and_streams_each_notebook(tmp_path, monkeypatch, capfd):
    import nbformat

    from tlutils.course import run_course

    (tmp_path / "pyproject.toml").write_text('[project]\nname = "tlutils"\n')
    (tmp_path / "notebooks").mkdir()
    for name, code in (("01_a", "import os\nprint('log level', os.environ['TF_CPP_MIN_LOG_LEVEL'])"),
                       ("02_b", "print('first')\nprint('second')")):
        cells = [nbformat.v4.new_code_cell('PROFILE = "cpu"', metadata={"tags": ["parameters"]}),
                 nbformat.v4.new_code_cell(code)]
        notebook = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
        nbformat.write(notebook, tmp_path / "notebooks" / f"{name}.ipynb")
    monkeypatch.setenv("TLUTILS_ROOT", str(tmp_path))
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    assert run_course("ci", estimate=False) == 0
    out = capfd.readouterr().out  # the plan comes from a child process
    assert "plan (ci profile): nothing to train" in out
    lines = out.splitlines()
    order = ["[course:ci] 1/2 01_a ...", "01| log level 2", "[course:ci] 2/2 02_b ...", "02| first", "02| second"]
    assert [line for line in lines if line in order] == order
    executed = nbformat.read(tmp_path / "runs" / "ci" / "notebooks" / "02_b.ipynb", as_version=4)
    assert executed.cells[-1].outputs[0]["text"] == "first\nsecond\n"


def _checked_notebook(path, printed: str) -> None:
    """A one-cell notebook whose checked cell prints 6 * 7 and whose stored output says ``printed``."""
    import nbformat

    cell = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(6 * 7)", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=printed)]
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)


@pytest.mark.slow
def test_nbval_check_in_two_workers_still_fails_on_a_changed_output(tmp_path):
    from tlutils.course import nbval_command

    good, bad = tmp_path / "01_good.ipynb", tmp_path / "02_bad.ipynb"
    _checked_notebook(good, "42\n")
    _checked_notebook(bad, "41\n")
    assert subprocess.call(nbval_command([good], workers=2), cwd=tmp_path) == 0
    assert subprocess.call(nbval_command([good, bad], workers=2), cwd=tmp_path) != 0
