"""Imports of ``tlutils``: every module imports from scratch without side effects, light modules stay
light, and the graph of imports between tlutils modules has no cycle."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "tlutils"
BACKENDS = ("keras", "tensorflow", "jax", "torch")

#: Modules whose docstrings promise a cheap import -> top-level modules that importing them must not load.
LIGHT_MODULES = {
    "tlutils": BACKENDS,  # "does not import a deep-learning backend"
    "tlutils.cli": BACKENDS,  # "imports no deep-learning backend"
    "tlutils.paths": BACKENDS,
    "tlutils.profiles": BACKENDS,
    "tlutils.data": BACKENDS + ("PIL", "numpy"),  # "imports nothing else"
    "tlutils.data.synth": BACKENDS + ("matplotlib", "pandas"),  # "NumPy and Pillow only"
    "tlutils.plotting": BACKENDS + ("matplotlib", "seaborn", "pandas"),  # heavy imports inside the functions
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def _run_python(code: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


# --- (a) importing ----------------------------------------------------------------------------------
_IMPORT_EACH = """
import importlib, json, sys, traceback
failures = {}
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if m == "tlutils" or m.startswith("tlutils.")]:
        del sys.modules[loaded]  # every module starts from no tlutils module imported
    try:
        importlib.import_module(name)
    except BaseException:
        failures[name] = traceback.format_exc(limit=-3)
print(json.dumps(failures))
"""


def test_every_module_imports_from_scratch_without_writing_files(tmp_path):
    """One interpreter; before each import every tlutils module is forgotten (third-party ones stay loaded)."""
    importable = sorted(name for name in MODULES if not name.endswith(".__main__"))  # those run a program
    result = _run_python(_IMPORT_EACH, tmp_path, json.dumps(importable))
    assert result.returncode == 0, result.stderr[-3000:]
    failures = json.loads(result.stdout.strip().splitlines()[-1])
    assert not failures, "\n".join(f"import {name} failed:\n{error}" for name, error in failures.items())
    assert sorted(path.name for path in tmp_path.iterdir()) == [], "importing tlutils wrote into the cwd"


@pytest.mark.core
@pytest.mark.parametrize("name", sorted(LIGHT_MODULES))
def test_light_modules_import_no_backend(tmp_path, name):
    code = f"import json, sys, {name}; print(json.dumps(sorted(sys.modules)))"
    result = _run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = {module.split(".")[0] for module in json.loads(result.stdout.strip().splitlines()[-1])}
    heavy = sorted(loaded & set(LIGHT_MODULES[name]))
    assert not heavy, f"import {name} loads {heavy}"
    assert list(tmp_path.iterdir()) == [], f"import {name} wrote into the cwd"


# --- (b) the import graph ---------------------------------------------------------------------------
def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[str, int]]:
    """``(imported tlutils module, line)`` of every import in ``tree``, at any depth, except under
    ``if TYPE_CHECKING:``. ``from a.b import c`` imports ``a.b.c`` when that is a module, else ``a.b``."""
    found = []
    nodes = [tree]
    while nodes:
        node = nodes.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            nodes.extend(node.orelse)
            continue
        nodes.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, one level up per extra dot
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.append((target if target in MODULES else base, node.lineno))
    return [(target, line) for target, line in found if target == "tlutils" or target.startswith("tlutils.")]


def import_graph() -> dict[str, dict[str, str]]:
    """module -> imported module -> where (``path:line`` of the first such import)."""
    graph: dict[str, dict[str, str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges = graph.setdefault(name, {})
        for target, line in _imports(tree, name, path.name == "__init__.py"):
            if target != name:
                edges.setdefault(target, f"{path.relative_to(PACKAGE_DIR.parent)}:{line}")
    return graph


def find_cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """One cycle ``[a, b, ..., a]`` per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(graph, set(component), component[0]) for component in components]


def _cycle_in(graph: dict[str, dict[str, str]], members: set[str], start: str) -> list[str]:
    """The shortest path ``start -> ... -> start`` inside ``members`` (breadth first)."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph.get(node, {})):
                if target == start:  # walk back from node to start
                    path = [start, node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return path[::-1]
                if target in members and target not in parents:
                    parents[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a strongly connected component always has one


def _spell(cycle: list[str], graph: dict[str, dict[str, str]]) -> str:
    return "\n".join(f"  {a} -> {b}  ({graph[a][b]})" for a, b in zip(cycle, cycle[1:]))


@pytest.mark.core
def test_import_graph_finds_a_hand_made_cycle():
    graph = {"a": {"b": "a.py:1"}, "b": {"c": "b.py:2"}, "c": {"a": "c.py:3", "d": "c.py:4"}, "d": {}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b": "a.py:1"}, "b": {}}) == []


@pytest.mark.core
def test_import_graph_sees_module_and_function_level_imports_but_not_type_checking():
    tree = ast.parse("import tlutils.paths\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                     "    from tlutils.model import ssd\ndef f():\n    from tlutils.data.synth import scene, generate\n"
                     "    from . import records\n")
    found = _imports(tree, "tlutils.data.loaders", is_package=False)
    assert sorted(found) == [("tlutils.data.records", 7), ("tlutils.data.synth", 6),  # generate: a function
                             ("tlutils.data.synth.scene", 6), ("tlutils.paths", 1)]


@pytest.mark.core
def test_tlutils_modules_import_each_other_without_cycles():
    graph = import_graph()
    missing = [f"{where} imports {target}, which is no tlutils module" for module, edges in graph.items()
               for target, where in edges.items() if target not in MODULES]
    assert not missing, "\n".join(missing)
    cycles = find_cycles(graph)
    assert not cycles, "import cycles between tlutils modules:\n" + "\n\n".join(_spell(c, graph) for c in cycles)
