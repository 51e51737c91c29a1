"""Reports read files only: nothing under evalsuite/reports imports the harness that writes those
files (evalsuite.compare, evalsuite.gate), and the harness does not import the pages."""

from __future__ import annotations

import ast
from pathlib import Path

import evalsuite

ROOT = Path(evalsuite.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-local imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def _hits(mods: set[str], banned: tuple[str, ...]) -> list[str]:
    return sorted(m for m in mods if any(m == b or m.startswith(b + ".") for b in banned))


def test_reports_do_not_import_compare_or_gate():
    bad = {str(p.relative_to(ROOT)): h for p in sorted((ROOT / "reports").rglob("*.py"))
           if (h := _hits(imported_modules(p), ("evalsuite.compare", "evalsuite.gate")))}
    assert bad == {}


def test_compare_and_gate_do_not_import_the_pages():
    bad = {name: h for name in ("compare.py", "gate.py")
           if (h := _hits(imported_modules(ROOT / name), ("evalsuite.reports",)))}
    assert bad == {}


def test_the_checker_sees_local_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from evalsuite.gate import GateResult\n    import evalsuite.compare as c\n")
    assert _hits(imported_modules(f), ("evalsuite.compare", "evalsuite.gate")) == [
        "evalsuite.compare", "evalsuite.gate", "evalsuite.gate.GateResult"]
