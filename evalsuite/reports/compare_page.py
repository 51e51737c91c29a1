"""``DIR/index.html`` and ``DIR/flips.html`` for ``evalsuite compare``, from a :class:`Comparison`.

The summary page shows per-task paired deltas (with a forest plot), tests and efficiency ratios; the
flips browser shows every sample that changed between the runs with its media (image thumbnail,
a strip of video frames, an audio player), prompt, target and both outputs. Media become inline data
URIs through ``evalsuite.reports.media_embed`` (one decode per file, however many flips share it), so the
pages open offline from the file system. Everything shown is autoescaped by jinja2.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from evalsuite.compare import Comparison, TaskComparison, fmt_p, points
from evalsuite.results import atomic_write_text
from evalsuite.types import SampleResult
from evalsuite.reports.media_embed import embed
from evalsuite.reports.plots import fig_to_uri
from evalsuite.reports.run_report import jinja_env

SHOWN_METADATA = ("category", "cluster", "difficulty", "bucket")


def anchor(name: str) -> str:
    """A safe HTML id fragment for a task name."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


def resolve_media(part: dict[str, Any], bases: list[Path]) -> dict[str, Any]:
    """A media part with its path made absolute: as written (absolute or from the working folder),
    else relative to a run folder."""
    path = str(part.get("path") or "")
    p = Path(path)
    if path and not p.is_absolute() and not p.exists():
        for base in bases:
            if (base / p).exists():
                return {**part, "path": str((base / p).resolve())}
    return part


def forest_plot(tasks: list[TaskComparison], level: float) -> str | None:
    """Delta (points) per task with its paired CI, as a PNG data URI."""
    rows = [t for t in tasks if t.diff is not None and t.diff.ci is not None]
    if not rows:
        return None
    from evalsuite.reports.plots import plt

    fig, ax = plt.subplots(figsize=(6.0, 0.45 * len(rows) + 1.2))
    ys = list(range(len(rows)))[::-1]
    for y, t in zip(ys, rows):
        d = t.diff
        assert d is not None and d.ci is not None
        color = "#a00" if d.ci[1] < 0 else ("#070" if d.ci[0] > 0 else "#555")
        ax.errorbar([100 * d.delta], [y], xerr=[[100 * (d.delta - d.ci[0])], [100 * (d.ci[1] - d.delta)]],
                    fmt="o", color=color, capsize=4)
    ax.axvline(0.0, color="#999", lw=1, ls="--")
    ax.set_yticks(ys, [t.task for t in rows])
    ax.set_xlabel(f"B − A (points), {100 * level:.0f}% paired CI")
    ax.grid(axis="x", alpha=0.3)
    return fig_to_uri(fig)


def _ci(ci: tuple[float, float] | None) -> str:
    return f"[{points(ci[0])}, {points(ci[1])}]" if ci else "–"


def _num(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "–" if v is None else str(v)
    return "–" if math.isnan(v) else f"{v:.4g}"


def _summary_row(t: TaskComparison) -> dict[str, Any]:
    d = t.diff
    row: dict[str, Any] = {"task": t.task, "anchor": anchor(t.task), "metric": t.primary_metric, "note": t.note,
                           "config_diffs": t.config_diffs, "n_flips": len(t.flips), "only": None}
    if t.n_only_a or t.n_only_b:
        row["only"] = f"{t.n_only_a} sample(s) scored only in A, {t.n_only_b} only in B: not compared"
    if d is None:
        row.update(n=0, n_clusters=0, a=_num(t.metric_a), b=_num(t.metric_b), delta="–", ci="–", ci_unpaired="–",
                   worsened="–", improved="–", test="–", p="–", p_holm="–", cls="")
        return row
    cls = "bad" if d.ci and d.ci[1] < 0 else ("ok" if d.ci and d.ci[0] > 0 else "")
    row.update(n=d.n, n_clusters=d.n_clusters, a=points(d.mean_a, False), b=points(d.mean_b, False),
               delta=points(d.delta), ci=_ci(d.ci), ci_unpaired=_ci(d.ci_unpaired), worsened=d.n_worsened,
               improved=d.n_improved, test=d.test, p=fmt_p(d.p_value), p_holm=fmt_p(t.p_holm), cls=cls)
    return row


def _efficiency_rows(c: Comparison) -> list[dict[str, Any]]:
    out = []
    for t in c.tasks:
        for key, e in t.efficiency.items():
            r, direction = e["ratio"], e["direction"]
            good = r is not None and direction != 0 and (r > 1) == (direction > 0) and r != 1
            bad = r is not None and direction != 0 and (r < 1) == (direction > 0) and r != 1
            out.append({"task": t.task, "key": key, "a": _num(e["a"]), "b": _num(e["b"]),
                        "ratio": f"{r:.3f}" if r is not None else "–",
                        "better": {1: "higher", -1: "lower", 0: "?"}[direction],
                        "cls": "ok" if good else ("bad" if bad else "")})
    return out


def _text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def _flip(a: SampleResult, b: SampleResult, media: list[dict[str, Any]]) -> dict[str, Any]:
    return {"a": a, "b": b, "worse": (b.score or 0.0) < (a.score or 0.0),
            "b_score": b.score if b.error is None else f"error ({b.error})", "target": _text(a.target),
            "meta": [(k, a.metadata[k]) for k in SHOWN_METADATA if k in a.metadata], "media": media}


def render_compare(c: Comparison, out: str | Path, *, base_a: Path, base_b: Path, max_flips: int = 200) -> Path:
    """Write ``out/index.html`` and ``out/flips.html``; return the index path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bases = [p if p.is_dir() else p.parent for p in (Path(base_a), Path(base_b))]
    cache: dict[tuple[str, str], dict[str, Any]] = {}

    def media_of(r: SampleResult) -> list[dict[str, Any]]:
        shown = []
        for part in r.media:
            part = resolve_media(part, bases)
            key = (str(part.get("type")), str(part.get("path")))
            if key not in cache:
                cache[key] = embed(part, rel_to=str(out))
            shown.append(cache[key])
        return shown

    flip_tasks = []
    for t in c.tasks:
        shown = [_flip(a, b, media_of(a)) for a, b in t.flips[:max_flips]]
        worse = sum(1 for a, b in t.flips if (b.score or 0.0) < (a.score or 0.0))
        flip_tasks.append({"task": t.task, "anchor": anchor(t.task), "shown": shown,
                           "n_hidden": max(0, len(t.flips) - max_flips), "n_worsened": worse,
                           "n_improved": len(t.flips) - worse})
    env = jinja_env()
    atomic_write_text(out / "flips.html", env.get_template("compare_flips.html").render(c=c, tasks=flip_tasks))
    index = out / "index.html"
    atomic_write_text(index, env.get_template("compare.html").render(
        c=c, rows=[_summary_row(t) for t in c.tasks], eff=_efficiency_rows(c), forest=forest_plot(c.tasks, c.level)))
    return index
