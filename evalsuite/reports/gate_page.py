"""``OUT/gate.html``: the CI gate's verdicts as a self-contained page, rendered from ``OUT/gate.json``
(jinja2, autoescaped).

Why the gate decided as it did stands right under its badge (what failed the gate as a whole, the
failing tasks and figures, or the tasks that left it inconclusive), not only in the notes at the
bottom: a FAIL whose every task row reads INCONCLUSIVE must say on its first screen that the
candidate run itself failed."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from evalsuite.results import atomic_write_text, load_doc
from evalsuite.stats import fmt_p, points, speed_bounds
from evalsuite.reports.run_report import jinja_env

FAILED = "gate failed: "  # how gate.py prefixes a whole-gate failure in the notes


def _task_row(t: dict[str, Any]) -> dict[str, Any]:
    bounds = f"[{points(t['lower'])}, {points(t['upper'])}]" if t.get("lower") is not None else "–"
    return {"task": t["task"], "verdict": t["verdict"], "n": t["n"], "baseline": points(t["baseline"], False),
            "candidate": points(t["candidate"], False), "delta": points(t["delta"]), "bounds": bounds,
            "improved": t["n_improved"], "worsened": t["n_worsened"], "reason": t["reason"],
            "test": t.get("test") or "–", "p": fmt_p(t.get("p_worse_holm")), "method": t.get("method") or "",
            "errors": t.get("n_candidate_errors") or 0}


def verdict_reasons(doc: dict[str, Any]) -> list[str]:
    """The reasons behind the overall verdict, for the top of the page.

    FAIL: the whole-gate failures (``fail_reasons``; gate.json of schema 1.0 has them only as notes
    prefixed "gate failed: ") with the candidate's own status reasons, then every failing task and
    efficiency figure. INCONCLUSIVE: the tasks that did not show non-inferiority. Whatever the verdict: a
    baseline run that is not complete (gated against only with --allow-incomplete-baseline)."""
    whole = doc.get("fail_reasons")
    if whole is None:
        whole = [n[len(FAILED):] for n in doc["notes"] if n.startswith(FAILED)]
    out = list(whole)
    cand = doc["candidate"]
    if cand.get("status") != "complete":
        if "status_reasons" in cand:
            if cand["status_reasons"]:
                out.append(f"the candidate run is {cand['status']}: {'; '.join(cand['status_reasons'])}")
        else:  # schema 1.0: the run's reasons are only in a note
            out += [n for n in doc["notes"] if n.startswith(f"the candidate run is {cand['status']}: ")]
    base = doc["baseline"]
    if base.get("status") != "complete":  # gated against it only when asked (--allow-incomplete-baseline)
        why = "; ".join(base.get("status_reasons") or [])
        out.append(f"gated against a {base['status']} baseline run" + (f": {why}" if why else ""))
    out += [f"task {t['task']}: {t['reason']}" for t in doc["tasks"] if t["verdict"] == "FAIL"]
    out += [f"{e['task']} {e['key']}: " + (e.get("reason") or ("missing from the candidate" if e["candidate"] is None
                                                                 else f"speed {e['speed_ratio']:.3f}x, beyond the allowed "
                                                                      f"{doc['max_slowdown_pct']:.0f}% slowdown"))
            for e in doc["efficiency"] if e["verdict"] == "FAIL"]
    if doc["verdict"] == "INCONCLUSIVE":
        out += [f"task {t['task']} inconclusive: {t['reason']}" for t in doc["tasks"] if t["verdict"] == "INCONCLUSIVE"]
        out += [f"{e['task']} {e['key']} inconclusive: {e.get('reason')}" for e in doc["efficiency"]
                if e["verdict"] == "INCONCLUSIVE"]
    return out


def render_gate(folder: str | Path) -> Path:
    """Read ``folder/gate.json``; write ``folder/gate.html`` and return its path."""
    folder = Path(folder)
    doc = load_doc(folder / "gate.json", "gate")
    reasons = verdict_reasons(doc)
    html = jinja_env().get_template("gate.html").render(
        g=doc, tasks=[_task_row(t) for t in doc["tasks"]], level=100 * (1 - 2 * doc["alpha"]), reasons=reasons,
        notes=[n for n in doc["notes"] if not n.startswith(FAILED) and n not in reasons],  # each said once
        eff=[{**e, "speed": f"{e['speed_ratio']:.3f}x", "bounds": speed_bounds(e),
              "runs": f"{e.get('n_baseline', 1)} + {e.get('n_candidate', 1)}", "reason": e.get("reason") or ""}
             for e in doc["efficiency"]])
    path = folder / "gate.html"
    atomic_write_text(path, html)
    return path


def cli_render(args: argparse.Namespace) -> Path | None:
    """The page step of ``evalsuite gate`` (after gate.json is written; only with --out)."""
    return render_gate(args.out) if args.out else None
