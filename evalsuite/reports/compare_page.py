"""``DIR/index.html`` and ``DIR/flips.html`` for ``evalsuite compare``, rendered from ``DIR/compare.json``.

The summary page shows per-task paired deltas (with a forest plot), tests and efficiency ratios; the
flips browser shows every sample that changed between the runs with its media (image thumbnail,
a strip of video frames, an audio player), prompt, target and both outputs, all as recorded in
compare.json. Media paths there are as the runs wrote them; relative ones are resolved against the
working folder, then the two run folders named in the file. Media become inline data URIs through
``evalsuite.reports.media_embed`` (one decode per file, however many flips share it), so the pages
open offline from the file system. Everything shown is autoescaped by jinja2.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any

from evalsuite.results import atomic_write_text, load_doc
from evalsuite.stats import fmt_p, points
from evalsuite.reports.media_embed import embed
from evalsuite.reports.plots import fig_to_uri
from evalsuite.reports.run_report import choice_lines, jinja_env


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


def significance(t: dict[str, Any], level: float) -> str:
    """"worse", "better" or "": the one decision the pages colour by. A change counts when its
    Holm-adjusted p-value (the paired test, adjusted across the compared tasks) is at most
    1 - level, the rule the gate's FAIL uses too. The interval alone is not the decision: with few
    discordant pairs the score interval can exclude 0 while the exact test does not reject (5 of 5
    right -> wrong: the interval reaches -13 points, p = 0.0625, 0.25 after Holm over four tasks).
    Where the task's metric is lower-is-better (``lower_is_better``: an lm-eval error rate) a fall
    is the gain."""
    ph = t.get("p_holm")
    if ph is None or not t.get("n") or ph > 1.0 - level or not t.get("delta"):
        return ""
    return "worse" if (t["delta"] < 0) != bool(t.get("lower_is_better")) else "better"


def forest_plot(tasks: list[dict[str, Any]], level: float) -> str | None:
    """Delta (points) per task with its paired CI, as a PNG data URI; red/green where the
    Holm-adjusted test finds a change (``significance``), grey otherwise."""
    rows = [t for t in tasks if t.get("ci")]
    if not rows:
        return None
    from evalsuite.reports.plots import plt

    fig, ax = plt.subplots(figsize=(6.0, 0.45 * len(rows) + 1.2))
    ys = list(range(len(rows)))[::-1]
    for y, t in zip(ys, rows):
        lo, hi = t["ci"]
        color = {"worse": "#a00", "better": "#070"}.get(significance(t, level), "#555")
        ax.errorbar([100 * t["delta"]], [y], xerr=[[100 * (t["delta"] - lo)], [100 * (hi - t["delta"])]],
                    fmt="o", color=color, capsize=4)
    ax.axvline(0.0, color="#999", lw=1, ls="--")
    ax.set_yticks(ys, [t["task"] for t in rows])
    ax.set_xlabel(f"B − A (points), {100 * level:.0f}% paired CI")
    ax.grid(axis="x", alpha=0.3)
    return fig_to_uri(fig)


def _ci(ci: list[float] | None) -> str:
    return f"[{points(ci[0])}, {points(ci[1])}]" if ci else "–"


def _num(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "–" if v is None else str(v)
    return "–" if math.isnan(v) else f"{v:.4g}"


def _metric(v: Any) -> str:
    """A task's own metric where no sample was paired: in points like the paired means beside it
    when it is a score in [0, 1] (0.2 -> 20.0), as it is otherwise (tokens/s, a count)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0.0 <= v <= 1.0:
        return points(v, False)
    return _num(v)


def _unpaired(t: dict[str, Any]) -> tuple[str, str]:
    """(cell, why it is empty): the unpaired interval, or "–" when the cluster bootstrap cannot give
    one (fewer than 2 clusters: every resample is the same data; or scores constant in both runs)."""
    ci = t.get("ci_unpaired")
    if ci and (t.get("n_clusters") or 0) >= 2 and ci[1] > ci[0]:  # compare.json files of before this rule hold
        return _ci(ci), ""  # the zero-width interval; they are shown as "–" too
    if (t.get("n_clusters") or 0) < 2:
        return "–", f"not estimable: {t.get('n_clusters') or 0} cluster, a cluster bootstrap needs 2 or more"
    return "–", "not estimable: every bootstrap resample gives the same difference"


def _excluded(excluded: dict[str, Any]) -> str | None:
    """The samples a task's paired comparison left out, per side and why (errored, missing)."""
    parts = [f"{me} {'errored on' if why == 'errored' else 'lacks'} {(excluded.get(me.lower()) or {}).get(why)} "
             f"that {other} scored" for me, other in (("B", "A"), ("A", "B")) for why in ("errored", "missing")
             if (excluded.get(me.lower()) or {}).get(why)]
    if excluded.get("errored_in_both"):
        parts.append(f"{excluded['errored_in_both']} scored in neither (errored)")
    if excluded.get("unscored_in_both"):
        parts.append(f"{excluded['unscored_in_both']} scored in neither (no score, no error)")
    return f"left out of the paired comparison: {', '.join(parts)}" if parts else None


def _summary_row(t: dict[str, Any], level: float) -> dict[str, Any]:
    lower = bool(t.get("lower_is_better"))
    row: dict[str, Any] = {"task": t["task"], "anchor": anchor(t["task"]), "metric": t["primary_metric"],
                           "lower_is_better": lower,
                           "note": t.get("note"), "config_diffs": t.get("config_differences") or [],
                           "n_flips": len(t.get("flips") or []), "only": None, "notes": t.get("notes") or []}
    if t.get("excluded"):  # compare.json 1.1: how many each side left out, and why
        row["only"] = _excluded(t["excluded"])
    elif t.get("n_only_a") or t.get("n_only_b"):
        row["only"] = f"{t['n_only_a']} sample(s) scored only in A, {t['n_only_b']} only in B: not compared"
    if not t.get("n"):
        row.update(n=0, n_clusters=0, a=_metric(t.get("metric_a")), b=_metric(t.get("metric_b")), delta="–", ci="–",
                   ci_unpaired="–", unpaired_why="", worsened="–", improved="–", test="–", p="–", p_holm="–", cls="")
        return row
    cls = {"worse": "bad", "better": "ok"}.get(significance(t, level), "")
    unpaired, why = _unpaired(t)
    row.update(n=t["n"], n_clusters=t["n_clusters"], a=points(t["mean_a"], False), b=points(t["mean_b"], False),
               delta=points(t["delta"]), ci=_ci(t.get("ci")), ci_unpaired=unpaired, unpaired_why=why,
               # a lower-is-better value that rose is the loss (right -> wrong)
               worsened=t["n_improved"] if lower else t["n_worsened"],
               improved=t["n_worsened"] if lower else t["n_improved"], test=t["test"], p=fmt_p(t["p_value"]),
               p_holm=fmt_p(t.get("p_holm")), cls=cls)
    return row


def _efficiency_rows(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for t in tasks:
        for key, e in (t.get("efficiency") or {}).items():
            r, direction = e["ratio"], e["direction"]
            good = r is not None and direction != 0 and (r > 1) == (direction > 0) and r != 1
            bad = r is not None and direction != 0 and (r < 1) == (direction > 0) and r != 1
            out.append({"task": t["task"], "key": key, "a": _num(e["a"]), "b": _num(e["b"]),
                        "ratio": f"{r:.3f}" if r is not None else "–",
                        "better": {1: "higher", -1: "lower"}[direction], "basis": e.get("basis", ""),
                        "cls": "ok" if good else ("bad" if bad else "")})
    return out


def _text(v: Any) -> str:
    if v is None:
        return "–"
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def _worse(f: dict[str, Any], lower_is_better: bool = False) -> bool:
    """Whether a flip is a loss: its score fell, or rose where the metric is lower-is-better."""
    a, b = f["a"]["score"] or 0.0, f["b"]["score"] or 0.0
    return b > a if lower_is_better else b < a


def _flip(f: dict[str, Any], media: list[dict[str, Any]], lower_is_better: bool = False) -> dict[str, Any]:
    b = f["b"]
    return {"id": f["id"], "a": f["a"], "b": b, "worse": _worse(f, lower_is_better), "prompt": f.get("prompt") or "",
            "choices": choice_lines(f.get("prompt"), f.get("choices")),
            "b_score": b["score"] if b.get("error") is None else f"error ({b['error']})",
            "target": _text(f.get("target")), "meta": list((f.get("metadata") or {}).items()), "media": media}


def render_compare(folder: str | Path, *, max_flips: int = 200) -> Path:
    """Read ``folder/compare.json``; write ``folder/index.html`` and ``folder/flips.html``; return the index."""
    out = Path(folder)
    doc = load_doc(out / "compare.json", "compare")
    tasks = list(doc["tasks"].values())
    bases = [p if p.is_dir() else p.parent for p in (Path(doc["a"]["path"]), Path(doc["b"]["path"]))]
    cache: dict[tuple[str, str], dict[str, Any]] = {}

    def media_of(f: dict[str, Any]) -> list[dict[str, Any]]:
        shown = []
        for part in f.get("media") or []:
            part = resolve_media(part, bases)
            key = (str(part.get("type")), str(part.get("path")))
            if key not in cache:
                cache[key] = embed(part)
            shown.append(cache[key])
        return shown

    flip_tasks = []
    for t in tasks:
        flips = t.get("flips") or []
        lower = bool(t.get("lower_is_better"))
        worse = sum(1 for f in flips if _worse(f, lower))
        flip_tasks.append({"task": t["task"], "anchor": anchor(t["task"]),
                           "shown": [_flip(f, media_of(f), lower) for f in flips[:max_flips]],
                           "n_hidden": max(0, len(flips) - max_flips), "n_worsened": worse,
                           "n_improved": len(flips) - worse})
    env = jinja_env()
    atomic_write_text(out / "flips.html", env.get_template("compare_flips.html").render(c=doc, tasks=flip_tasks))
    index = out / "index.html"
    eff_notes = [(t["task"], n) for t in tasks for n in t.get("efficiency_notes") or []]
    atomic_write_text(index, env.get_template("compare.html").render(
        c=doc, rows=[_summary_row(t, doc["level"]) for t in tasks], eff=_efficiency_rows(tasks), eff_notes=eff_notes,
        forest=forest_plot(tasks, doc["level"])))
    return index


def cli_render(args: argparse.Namespace) -> Path:
    """The page step of ``evalsuite compare`` (after compare.json is written)."""
    return render_compare(args.out, max_flips=args.max_flips)
