"""The tree shows the architecture: the import graph of `evalsuite` (every import statement, at module
level or inside a function) has no cycles, and each floor imports only what is below it.

    ground floor   types, media, registry, results, stats, paired, env, task, backend, catalog
    model, kernels the reference model and its number formats (the ground floor and each other)
    tasks          task definitions (the ground floor; never the model, backends or the harness)
    reports        HTML from files (the ground floor; never the harness that writes the files)
    training       the curriculum and its loop (anything below the harness's CLI)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "evalsuite"

GROUND = {"evalsuite.types", "evalsuite.media", "evalsuite.registry", "evalsuite.results", "evalsuite.stats",
          "evalsuite.paired", "evalsuite.env", "evalsuite.task", "evalsuite.backend", "evalsuite.catalog",
          "evalsuite"}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def import_graph() -> dict[str, set[str]]:
    """``{module: modules of evalsuite it imports}``, from the source (nothing is imported)."""
    mods = _modules()

    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in targets:
                if t.startswith("evalsuite"):
                    dep = owner(t)
                    if dep and dep != mod:
                        graph[mod].add(dep)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _floor(mod: str) -> str:
    if mod in GROUND:
        return "ground"
    parts = mod.split(".")
    return parts[1] if len(parts) > 2 or parts[1] in ("model", "kernels", "tasks", "reports", "training",
                                                       "serving", "backends") else "harness"


ALLOWED = {
    "ground": {"ground"},
    "model": {"ground", "model", "kernels"},
    "kernels": {"ground", "kernels", "model"},
    "tasks": {"ground", "tasks"},
    "reports": {"ground", "reports"},
}


def test_the_graph_sees_known_edges() -> None:
    graph = import_graph()
    assert "evalsuite.types" in graph["evalsuite.media"]
    assert "evalsuite.kernels.formats" in graph["evalsuite.kernels.swap"]
    assert _floor("evalsuite.kernels.swap") == "kernels" and _floor("evalsuite.runner") == "harness"


def test_import_graph_has_no_cycles() -> None:
    assert cycles(import_graph()) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("floor", sorted(ALLOWED))
def test_each_floor_imports_only_what_is_below_it(floor: str) -> None:
    graph = import_graph()
    bad = sorted(f"{m} -> {d}" for m, deps in graph.items() if _floor(m) == floor
                 for d in deps if _floor(d) not in ALLOWED[floor])
    assert bad == []
