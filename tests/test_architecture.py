"""The package's import graph: no cycles between modules, and the dependency direction of the briefing.

Every ``.py`` under geometry/, gd_dynamics/, equilibrium/, bridge/ and scripts/ (installed as
``gdeq.geometry``, ..., ``gdeq.cli``) is parsed with ``ast``; every import in it counts, at module level
or inside a function, relative (``from .maps import x``, ``from .. import y``) or absolute
(``import gdeq.x.y``, ``from gdeq.x import y``), and so does ``importlib.import_module("gdeq....")``
with a literal name. ``from package import name`` is an edge to the submodule ``package.name`` when
that is a module, else to the package's ``__init__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"geometry": "gdeq.geometry", "gd_dynamics": "gdeq.gd_dynamics", "equilibrium": "gdeq.equilibrium",
           "bridge": "gdeq.bridge", "scripts": "gdeq.cli"}


def _modules() -> dict[str, tuple[Path, bool]]:
    """Installed module name -> (file, is a package __init__)."""
    out = {}
    for folder, package in FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            is_init = parts[-1] == "__init__"
            name = ".".join((package, *parts[:-1])) if is_init else ".".join((package, *parts))
            out[name] = (path, is_init)
    return out


MODULES = _modules()


def _resolve(target: str) -> str | None:
    """The gdeq module a dotted name refers to (itself, or the nearest enclosing package), else None."""
    while target:
        if target in MODULES:
            return target
        target = target.rpartition(".")[0]
    return None


def _imports(name: str, path: Path, is_init: bool) -> set[str]:
    package = name if is_init else name.rpartition(".")[0]
    edges: set[str] = set()

    def add(dotted: str, names: list[str] = ()) -> None:
        if not dotted.startswith("gdeq"):
            return
        hits = [f"{dotted}.{n}" for n in names if f"{dotted}.{n}" in MODULES]
        rest = [n for n in names if f"{dotted}.{n}" not in MODULES]
        edges.update(hits)
        if rest or not names:
            target = _resolve(dotted)
            if target is not None:
                edges.add(target)

    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            names = [a.name for a in node.names if a.name != "*"]
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                dotted = ".".join(base + ([node.module] if node.module else []))
            else:
                dotted = node.module or ""
            add(dotted, names if names else [])
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            add(node.args[0].value)
    edges.discard(name)
    return edges


GRAPH = {name: _imports(name, path, is_init) for name, (path, is_init) in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in GRAPH.get(todo.pop(), ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def test_the_walker_sees_every_kind_of_import():
    """The graph itself: relative, absolute, inside functions, and importlib with a literal name."""
    assert len(MODULES) >= 30 and "gdeq.cli.cli" in MODULES and "gdeq.bridge" in MODULES
    assert "gdeq.bridge.compare" in GRAPH["gdeq.bridge"]  # from .compare import ... in __init__
    assert "gdeq.bridge.maps" in GRAPH["gdeq.bridge.compare"]  # relative, module level
    assert "gdeq.bridge.report" in GRAPH["gdeq.bridge.experiments"]  # relative, inside a function
    assert "gdeq.geometry" in GRAPH["gdeq.bridge.maps"]  # from gdeq.geometry import ...
    assert "gdeq.bridge.experiments" in GRAPH["gdeq.cli.demo"]  # absolute, inside a function
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_no_import_cycles_between_modules():
    """Today's guard for the two cycles issue 10 found: bridge.maps <-> bridge.compare (through
    check_compatible) and equilibrium.curve -> levels -> single_neuron -> curve (behind importlib)."""
    cycles = _cycles(GRAPH)
    assert not cycles, f"import cycles: {[sorted(c) for c in cycles]}"


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


@pytest.mark.parametrize("source, forbidden", [
    ("gdeq.gd_dynamics", {"gdeq.equilibrium", "gdeq.bridge", "gdeq.cli"}),
    ("gdeq.equilibrium", {"gdeq.gd_dynamics", "gdeq.bridge", "gdeq.cli"}),
    ("gdeq.geometry", {"gdeq.gd_dynamics", "gdeq.equilibrium", "gdeq.bridge", "gdeq.cli"}),
    ("gdeq.bridge", {"gdeq.cli"}),
])
def test_dependency_direction(source, forbidden):
    """gd_dynamics and equilibrium never import each other nor the bridge; geometry imports nothing of
    gdeq; nothing imports the CLI (directly or through another module)."""
    bad = {}
    for module in MODULES:
        if _package(module) == source:
            reached = {_package(m) for m in _reachable(module)} & forbidden
            if reached:
                bad[module] = sorted(reached)
    assert not bad, f"{source} must not depend on {sorted(forbidden)}: {bad}"
