"""``OUT/gate.html``: the CI gate's verdicts as a self-contained page, rendered from ``OUT/gate.json``
(jinja2, autoescaped)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from evalsuite.results import atomic_write_text, load_doc
from evalsuite.stats import fmt_p, points
from evalsuite.reports.run_report import jinja_env


def _task_row(t: dict[str, Any]) -> dict[str, Any]:
    bounds = f"[{points(t['lower'])}, {points(t['upper'])}]" if t.get("lower") is not None else "–"
    return {"task": t["task"], "verdict": t["verdict"], "n": t["n"], "baseline": points(t["baseline"], False),
            "candidate": points(t["candidate"], False), "delta": points(t["delta"]), "bounds": bounds,
            "improved": t["n_improved"], "worsened": t["n_worsened"], "reason": t["reason"],
            "test": t.get("test") or "–", "p": fmt_p(t.get("p_worse_holm")), "method": t.get("method") or "",
            "errors": t.get("n_candidate_errors") or 0}


def render_gate(folder: str | Path) -> Path:
    """Read ``folder/gate.json``; write ``folder/gate.html`` and return its path."""
    folder = Path(folder)
    doc = load_doc(folder / "gate.json", "gate")
    html = jinja_env().get_template("gate.html").render(
        g=doc, tasks=[_task_row(t) for t in doc["tasks"]], level=100 * (1 - 2 * doc["alpha"]),
        eff=[{**e, "speed": f"{e['speed_ratio']:.3f}x"} for e in doc["efficiency"]])
    path = folder / "gate.html"
    atomic_write_text(path, html)
    return path


def cli_render(args: argparse.Namespace) -> Path | None:
    """The page step of ``evalsuite gate`` (after gate.json is written; only with --out)."""
    return render_gate(args.out) if args.out else None
