"""``OUT/report.html``: one self-contained page per run, rendered from the results files only.

Shows accuracy per task with its 95% CI and the task's chance level (chart + table; a score whose
interval contains chance is marked as indistinguishable from a guess), per-category breakdowns, efficiency figures
when present, for the throughput task its load points (the Pareto curve of tokens/s/user against
tokens/s/GPU, latency distributions per point, the SLO search and the cross-checks), provenance
(model, environment, task args and media settings), every errored sample, and a sample browser:
the first N samples of each task with their media (image thumbnail, a strip of video frames, an
audio player), prompt, choices (lettered only where the prompt lettered them), target and
prediction. A run stopped inside a task (SIGTERM, a crash) has that task's scored samples on disk
but no entry in results.json: the summary lists it from samples/*.jsonl. jinja2 autoescapes
everything, and control characters are shown as symbols (``visible``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from evalsuite.results import RunFormatError, at_slo_marks, atomic_write_text, load_results, read_samples
from evalsuite.reports.media_embed import embed
from evalsuite.reports.plots import bar_with_ci, latency_boxplots, pareto_plot

TEMPLATES = Path(__file__).parent / "templates"


# C0 controls (but tab, newline, carriage return) and DEL -> their Unicode "control pictures"
# (U+2400...): a NUL or an escape byte in a model's output is shown, not written raw into the page
# (where a NUL becomes U+FFFD and an ESC is a parse error, and both are invisible).
_CONTROL = {c: 0x2400 + c for c in range(32) if chr(c) not in "\t\n\r"} | {0x7F: 0x2421}
_HAS_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def visible(v: Any) -> Any:
    """``v`` with control characters made visible; the ``finalize`` of every ``{{ … }}`` on the pages
    (searched first: translating every data URI of a page would cost more than the page)."""
    if isinstance(v, str) and not isinstance(v, Markup) and _HAS_CONTROL.search(v):
        return v.translate(_CONTROL)
    return v


def jinja_env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "xml"]),
                      trim_blocks=True, lstrip_blocks=True, finalize=visible)
    env.filters["num"] = fmt_num
    env.filters["ci"] = fmt_ci
    env.globals["choice_lines"] = choice_lines
    return env


def choice_lines(prompt: Any, choices: Any) -> list[str]:
    """The choices as the prompt showed them to the model.

    "A. text" only where the prompt itself listed every choice under that letter (videoqa,
    LongVideoBench, MMAU with map_letters): there the scorer reads a letter. audioqa and MMAU by
    default list "- text" and score the option's text, so a letter the page made up would make a
    prediction "B" look wrongly scored; those, and choices whose text carries its own letter
    (Video-MME's "A. …"), are a plain "- text" list."""
    if not choices:
        return []
    texts = [str(c) for c in choices]
    lines = {line.strip() for line in str(prompt or "").splitlines()}
    if len(texts) <= 26 and all(f"{chr(65 + i)}. {c}".strip() in lines for i, c in enumerate(texts)):
        return [f"{chr(65 + i)}. {c}" for i, c in enumerate(texts)]
    return [f"- {c}" for c in texts]


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
        if 0 < abs(v) < 0.5 * 10.0 ** -digits:  # a figure below the shown digits keeps two of its own
            return f"{v:.2g}"
        return f"{v:.{digits}f}" if abs(v) < 1e4 else f"{v:,.0f}"
    return str(v)


def fmt_ci(ci: Any) -> str:
    if not ci:
        return "–"
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def at_chance(ci: Any, chance: Any) -> bool:
    """True when a score's interval contains the task's chance level: it cannot be told from a guess."""
    return bool(ci) and isinstance(chance, (int, float)) and float(ci[0]) <= float(chance) <= float(ci[1])


# torchrun: each rank appends to its own shard of a task's samples, merged when the task finishes
_SHARD = re.compile(r"\.rank\d+-of-\d+$")


def in_progress(run_dir: Path, results: dict[str, Any],
                samples: dict[str, list[Any]] | None = None) -> list[dict[str, Any]]:
    """Tasks with a samples file but no entry in results.json: a task enters results.json only when
    it finishes, so a run stopped in the middle of one (SIGTERM, a crash) has its scored samples on
    disk and nothing else; the page names them rather than show an empty summary. Likewise a task
    whose samples hold more results than its entry counts: a finished task run again on more samples
    and stopped keeps its earlier entry, whose figures cover only ``earlier`` of them. A task's
    torchrun shards (``<task>.rank<r>-of-<N>.jsonl``) count as its samples, one row per task.
    ``samples``: the results of the tasks' own samples files, by task, where already read."""
    entries = results["tasks"]
    own = {str(Path(t.get("samples_file") or f"samples/{n}.jsonl")): n for n, t in entries.items()}
    files: dict[str, list[Path]] = {}
    for f in sorted((run_dir / "samples").glob("*.jsonl")):
        files.setdefault(own.get(str(f.relative_to(run_dir))) or _SHARD.sub("", f.stem), []).append(f)
    out = []
    for name in [*entries, *(n for n in files if n not in entries)]:
        entry = entries.get(name)
        rows: dict[str, Any] = {}
        for f in files.get(name, []):
            rel = str(f.relative_to(run_dir))
            if own.get(rel) == name and samples is not None and name in samples:
                rows.update((r.id, r) for r in samples[name])
                continue
            try:
                rows.update(read_samples(f))
            except Exception as e:  # a damaged file is named, not a lost page
                out.append({"name": name, "file": f.name, "files": [rel], "n": None, "n_errors": None,
                            "problem": str(e), "earlier": None})
                break
        else:
            earlier = int(entry.get("n_samples") or 0) if entry is not None else None
            if entry is not None and len(rows) <= earlier:  # type: ignore[operator]
                continue
            if entry is None and not files.get(name):
                continue
            out.append({"name": name, "file": None, "files": [str(f.relative_to(run_dir)) for f in files[name]],
                        "n": sum(1 for r in rows.values() if r.error is None),
                        "n_errors": sum(1 for r in rows.values() if r.error), "problem": None, "earlier": earlier})
    return out


def group_figure(group: dict[str, Any], pm: str) -> tuple[Any, str]:
    """(value, name) of one breakdown group's figure for the primary metric ``pm``: the group's ``pm``;
    where the group has no such key but exactly one figure, that one under its own name (an lm-eval
    group's subtask names its metric without the first subtask's prefix, and a metric lm-eval does not
    aggregate by a mean is named "<metric> (mean per document)")."""
    if pm in group:
        return group[pm], pm
    figures = [(k, v) for k, v in group.items() if k not in ("n", "n_errors")]
    if len(figures) == 1:
        return figures[0][1], figures[0][0]
    return None, pm


def render_run_report(run_dir: Path, *, max_samples: int = 24, max_errors: int = 200) -> Path:
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    names = list(results["tasks"])
    samples: dict[str, list[Any]] = {}
    unreadable: dict[str, str] = {}
    for name in names:  # a damaged samples file costs its task's sample list, not the page
        try:
            samples[name] = list(read_samples(run_dir / (results["tasks"][name].get("samples_file")
                                                         or f"samples/{name}.jsonl")).values())
        except (RunFormatError, OSError) as e:
            samples[name], unreadable[name] = [], str(e)
    tasks = []
    for name in names:
        t = results["tasks"][name]
        pm = t["primary_metric"]
        rows = samples.get(name, [])
        browser = []
        for r in rows[:max_samples]:
            browser.append({"r": r, "media": [embed(m) for m in r.media], "choices": choice_lines(r.prompt, r.choices)})
        ci = t["ci95"].get(pm)
        chance = t.get("chance")
        samples_file = run_dir / (t.get("samples_file") or f"samples/{name}.jsonl")
        missing = (f"{samples_file} is missing: the {t.get('n_samples')} sample results behind these figures "
                   f"cannot be shown" if t.get("n_samples") and not samples_file.exists() else "")
        if name in unreadable:
            missing = (f"{unreadable[name]}: the {t.get('n_samples')} sample results behind these figures cannot "
                       f"be shown")
        tasks.append({
            "missing": missing,
            "name": name, "t": t, "pm": pm, "value": t["metrics"].get(pm), "ci": ci,
            "chance": chance, "chance_method": t.get("chance_method"), "at_chance": at_chance(ci, chance),
            "other_metrics": {k: v for k, v in t["metrics"].items() if k != pm},
            "breakdown": {key: [(g, m, *group_figure(m, pm)) for g, m in groups.items()]
                          for key, groups in (t.get("breakdown") or {}).items()},
            "errors": [r for r in rows if r.error][:max_errors],
            "n_errored_rows": sum(1 for r in rows if r.error),
            "browser": browser,
            "perf": throughput_section(t["throughput"], rows) if isinstance(t.get("throughput"), dict) else None,
        })
    chart = None
    acc = [x for x in tasks if _finite(x["value"]) and x["perf"] is None]
    if acc:
        chart = bar_with_ci([x["name"] for x in acc], [x["value"] for x in acc], [x["ci"] for x in acc],
                            ylabel="primary metric", title="per task, 95% CI; dashed: chance",
                            chance=[x["chance"] for x in acc])
    # a task without a value (every sample errored) has no bar: say so rather than drop it silently
    no_value = [f"{x['name']} ({x['t'].get('n_errors')}/{x['t'].get('n_samples')} errored)" if x["t"].get("n_errors")
                else x["name"] for x in tasks if x["perf"] is None and not _finite(x["value"])]
    html = jinja_env().get_template("run_report.html").render(
        results=results, tasks=tasks, chart=chart, no_value=no_value, unfinished=in_progress(run_dir, results, samples),
        env=results["environment"], model=results["model"])
    out = run_dir / "report.html"
    atomic_write_text(out, html)
    return out


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


LATENCY_PANELS = (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("itl_s", "ITL (every chunk gap)"), ("e2e_s", "E2E latency"))
LATENCY_COLUMNS = (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("itl_s", "ITL (chunks)"), ("e2el_s", "E2EL"))


def _ms(dist: Any, q: float) -> str:
    """One percentile of a latency distribution (seconds in results) in milliseconds."""
    if not isinstance(dist, dict):
        return "–"
    v = dist.get(f"p{q:g}")
    if v is None and q == 50:
        v = dist.get("median")
    return fmt_num(v * 1e3, 2) if isinstance(v, (int, float)) else "–"


def _load_row(p: dict[str, Any], qs: list[float]) -> dict[str, Any]:
    """A load point as the table shows it: latencies in ms at the run's percentiles, with a mark where
    some requests failed or were cut off (its latencies are those of the survivors only), chunk and
    token rates per user under their own names (version-1 results called 1 / mean ITL tokens/s/user)."""
    lost = int(p.get("n_failed") or 0) + int(p.get("n_cancelled") or 0)
    n = p.get("n_requests")
    survivors = f"{lost}/{n} failed or cut off: latencies of the rest" if lost and n else ""
    return {**p, "lat_ms": {k: " / ".join(_ms(p.get(k), q) for q in qs) for k, _ in LATENCY_COLUMNS},
            "survivors": survivors,
            "queue_ms": " / ".join(_ms(p.get("queue_s"), q) for q in qs) if p.get("queue_s") else "–",
            "chunks_per_user": p.get("chunks_per_s_per_user_by_itl", p.get("tokens_per_s_per_user_by_itl")),
            "tokens_per_user_tpot": p.get("tokens_per_s_per_user_by_tpot")}


def throughput_section(tp: dict[str, Any], rows: list[Any]) -> dict[str, Any]:
    """What the page shows of a throughput task: its load points, the Pareto curve, and latency
    distributions per point drawn from the per-request lines of its samples file."""
    points = list(tp.get("closed_loop", [])) + list(tp.get("open_loop", []))
    extra = [tp[k] for k in ("video", "audio") if isinstance(tp.get(k), dict)]
    pareto = tp.get("pareto") or {}
    y_key = pareto.get("y", "output_tokens_per_s")
    per_gpu = y_key.endswith("per_gpu")
    chart = None
    if points:
        x_key = pareto.get("x", "tokens_per_s_per_user_by_concurrency")
        chart = pareto_plot(points, pareto.get("points", []), x_key=x_key,
                            y_key=y_key, xlabel="output tokens/s per user (throughput / concurrency)",
                            ylabel="output tokens/s per GPU" if per_gpu else "output tokens/s (no GPU: total)",
                            title="throughput vs interactivity")
    groups: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        label = r.metadata.get("point")
        if label is None or r.error:
            continue
        g = groups.setdefault(str(label), {k: [] for k, _ in LATENCY_PANELS})
        for key, _ in LATENCY_PANELS:
            v = r.usage.get(key)
            if isinstance(v, list):
                g[key].extend(float(x) for x in v)
            elif isinstance(v, (int, float)):
                g[key].append(float(v))
    dists = latency_boxplots(groups, LATENCY_PANELS) if groups else None
    loadgen = tp.get("loadgen") or {}
    qs = [float(q) for q in loadgen.get("percentiles") or (50, 99)]
    search = dict(tp.get("slo_search") or {})
    search.setdefault("status", None)  # version-1 results did not record whether the search converged
    return {"points": [_load_row(p, qs) for p in points + extra], "percentiles": [f"p{q:g}" for q in qs],
            "latency_columns": LATENCY_COLUMNS, "pareto_chart": chart, "latency_chart": dists,
            "search": search, "at_slo_marks": at_slo_marks(search),
            "slo": tp.get("slo") or {}, "gpus": tp.get("gpus") or {}, "loadgen": loadgen,
            "mlperf": tp.get("mlperf_crosscheck"), "notes": tp.get("notes") or [], "telemetry": tp.get("telemetry"),
            "front": set(pareto.get("points", [])), "per_gpu": per_gpu}
