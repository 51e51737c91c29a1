"""``OUT/gate.html``: the CI gate's verdicts as a self-contained page (jinja2, autoescaped)."""

from __future__ import annotations

from pathlib import Path

from evalsuite.gate import GateResult, efficiency_rows, summary_rows
from evalsuite.results import atomic_write_text
from evalsuite.reports.run_report import jinja_env


def render_gate(g: GateResult, out: str | Path) -> Path:
    """Write ``out/gate.html`` and return its path."""
    html = jinja_env().get_template("gate.html").render(g=g, acc_rows=summary_rows(g), eff_rows=efficiency_rows(g))
    path = Path(out) / "gate.html"
    atomic_write_text(path, html)
    return path
