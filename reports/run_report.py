"""``OUT/report.html``: one self-contained page per run, rendered from the results files only.

Shows accuracy per task with its 95% CI (chart + table), per-category breakdowns, efficiency figures
when present, provenance (model, environment, task args and media settings), every errored sample,
and a sample browser: the first N samples of each task with their media (image thumbnail, a strip
of video frames, an audio player), prompt, target and prediction. jinja2 autoescapes everything.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from evalsuite.results import atomic_write_text, load_run
from reports.media_embed import embed
from reports.plots import bar_with_ci

TEMPLATES = Path(__file__).parent / "templates"


def jinja_env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "xml"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = fmt_num
    env.filters["ci"] = fmt_ci
    return env


def fmt_num(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.{digits}f}" if abs(v) < 1e4 else f"{v:,.0f}"
    return str(v)


def fmt_ci(ci: Any) -> str:
    if not ci:
        return "–"
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def render_run_report(run_dir: Path, *, max_samples: int = 24, max_errors: int = 200) -> Path:
    run_dir = Path(run_dir)
    results, samples = load_run(run_dir)
    names = list(results["tasks"])
    tasks = []
    for name in names:
        t = results["tasks"][name]
        pm = t["primary_metric"]
        rows = samples.get(name, [])
        browser = []
        for r in rows[:max_samples]:
            browser.append({"r": r, "media": [embed(m, rel_to=str(run_dir)) for m in r.media]})
        tasks.append({
            "name": name, "t": t, "pm": pm, "value": t["metrics"].get(pm), "ci": t["ci95"].get(pm),
            "other_metrics": {k: v for k, v in t["metrics"].items() if k != pm},
            "errors": [r for r in rows if r.error][:max_errors],
            "browser": browser,
        })
    chart = None
    acc = [x for x in tasks if isinstance(x["value"], (int, float))]
    if acc:
        chart = bar_with_ci([x["name"] for x in acc], [x["value"] for x in acc], [x["ci"] for x in acc],
                            ylabel="primary metric", title="per task, 95% CI")
    html = jinja_env().get_template("run_report.html").render(
        results=results, tasks=tasks, chart=chart, env=results["environment"], model=results["model"])
    out = run_dir / "report.html"
    atomic_write_text(out, html)
    return out
