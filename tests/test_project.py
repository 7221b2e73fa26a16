"""The project around the package: dependency lists agree, the CI entry calls the README's command."""

from __future__ import annotations

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


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    core = {_name(r) for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    wanted = core | {_name(r) for r in extras["cpu"] + extras["test"]}
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


def test_ci_runs_exactly_the_readme_test_command():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.startswith("#")]
    assert commands[-1] == "make test"
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make test" in readme and "make course" in readme


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
