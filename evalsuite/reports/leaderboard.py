"""``python -m evalsuite leaderboard RUN_DIR… --out DIR``: a static leaderboard site from run folders.

``DIR/index.html`` holds a sortable table (model, run status, backend, precision, each task's primary
metric with its 95% CI and error count, the headline efficiency figures, weight bytes), an
accuracy-vs-throughput plot with its Pareto front, and a precision-delta plot: for each backend with
a BF16 run, every other precision's paired difference from it per task (the paired interval of
``evalsuite.paired``, as in compare). The accuracy axis is the mean primary metric of the accuracy
tasks every plotted run has (the throughput task's tokens/s never enters it, nor a lower-is-better
lm-eval metric such as an error rate or a perplexity: the caption names those); when the runs share no
accuracy task there is one plot per task. Only complete runs are plotted: failed or interrupted runs
show their status, reasons and error counts in the table and are named under the plot.
``DIR/runs/<nn>-<model>.html`` is one page per run. Plots are inline PNG data URIs and sorting is a
few lines of inline JavaScript, so the site opens offline from the file system, and every link stays
inside ``DIR`` (a run page names its run's own report.html as text: a relative link out of ``DIR``
breaks once the site is published or copied). jinja2 autoescapes every string shown; nothing from a
results file is marked safe.

A cell whose task was run over other samples than the column's reference run (``--limit 5`` against
200: the same settings, other questions) is flagged like one run with other settings, with its n;
a load test's cells are not (its requests differ from run to run; its settings are what compare).
The headline efficiency cells are flagged by the task each figure comes from (`figure_task`), as
its own column is; a figure "at SLO" also carries the throughput task's marks (`at_slo_marks`): a
search that still passed at the top of its range ("bounded": the limit may be higher) and an SLO
claim its requests cannot show with 95% confidence. A run whose speed was measured on other hardware
(device, CPU, GPUs, server) or with other speed settings (batch size, an openai: client's
max_concurrency) than the most common ones has its efficiency cells flagged so, and is named under
the plot: the gate does not compare such speeds either.

A RUN_DIR without results.json but with run folders inside (``results/runs``) stands for all of them.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from evalsuite.paired import pair, paired_interval
from evalsuite.results import (RunFormatError, at_slo_marks, atomic_write_text, config_differences, hardware, load_run,
                               results_path, settings_differences)
from evalsuite.types import SampleResult
from evalsuite.reports.plots import fig_to_uri
from evalsuite.reports.run_report import at_chance, fmt_num, jinja_env

# Headline efficiency figures: (key in a task's "efficiency", column title).
HEADLINE = (
    ("single_stream_tokens_per_s", "single-stream tok/s"),
    ("per_gpu_throughput_at_slo", "per-GPU tok/s at SLO"),
    ("video_hours_per_hour", "video-h per h"),
)
# Throughput axis of the Pareto plot, in order of preference.
THROUGHPUT_KEYS = ("per_gpu_throughput_at_slo", "single_stream_tokens_per_s", "video_hours_per_hour", "samples_per_s")
REFERENCE_PRECISIONS = ("bf16", "bfloat16")


class LeaderboardError(RunFormatError):
    """The leaderboard cannot be built from what was given."""


@dataclass
class Entry:
    """One run on the leaderboard."""

    path: Path
    results: dict[str, Any]
    samples: dict[str, list[SampleResult]]
    label: str = ""
    page: str = ""
    figures: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # where a figure comes from, when not one plain task

    @property
    def model(self) -> dict[str, Any]:
        return self.results["model"]

    @property
    def status(self) -> str:
        return str(self.results.get("status") or "unknown")

    @property
    def ok(self) -> bool:
        """A complete run: the only kind that goes into the plots."""
        return self.status == "complete"

    @property
    def status_reasons(self) -> list[str]:
        return [str(m) for m in self.results.get("status_reasons") or []]

    def metric(self, task: str) -> tuple[float | None, tuple[float, float] | None]:
        t = self.results["tasks"].get(task)
        if not t:
            return None, None
        v = t["metrics"].get(t["primary_metric"])
        ci = t["ci95"].get(t["primary_metric"])
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        return (float(v) if ok else None), (tuple(ci) if ci else None)  # type: ignore[return-value]


# ---- inputs -------------------------------------------------------------------------------------
def expand_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run folders (or results.json files); a folder of run folders stands for each of them. A run
    named twice (``results/runs results/runs/fp4``) is one run: its first place counts."""
    out: list[Path] = []
    for p in map(Path, paths):
        if results_path(p).exists():
            out.append(p)
        elif p.is_dir() and (inner := _runs_in(p)):
            out.extend(inner)
        else:
            raise LeaderboardError(f"{p}: no results.json there or in its subfolders, nor <name>.json runs (expected "
                                   f"run folders written by 'evalsuite run', or a baselines folder)")
    unique: dict[Path, Path] = {}
    for p in out:
        unique.setdefault(results_path(p).resolve(), p)
    return list(unique.values())


def _runs_in(folder: Path) -> list[Path]:
    """The runs in a folder: subfolders holding a results.json, and results files ``<name>.json`` (the
    layout of results/baselines, whose ``<name>/`` holds the samples; ``<name>.json`` wins over a
    ``<name>/results.json``, as for the gate). A .json file that is not a run's results (compare.json,
    gate.json) is not one."""
    files = {}
    for q in sorted(folder.glob("*.json")):
        try:
            doc = json.loads(q.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("tasks"), dict) and doc.get("kind") in (None, "results"):
            files[q.stem] = q
    dirs = [q for q in sorted(folder.iterdir()) if q.is_dir() and (q / "results.json").exists() and q.name not in files]
    return sorted([*dirs, *files.values()], key=lambda q: q.name)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def run_figures(results: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """(figures, sources): the run's scalar efficiency figures, and for each one not simply the only
    task's, where it comes from.

    A key several tasks report comes from 'throughput' first. ``samples_per_s`` of several accuracy
    tasks is the run's total: their samples over their summed wall time (each task's own figure is
    its samples over its wall time, so taking any one of them made the plot's x depend on the order
    of --tasks). Any other key several tasks report is the first task's in name order, and named."""
    names = sorted(results["tasks"], key=lambda n: (n != "throughput", n))
    reported: dict[str, list[tuple[str, float]]] = {}
    for n in names:
        eff = dict(results["tasks"][n].get("efficiency") or {})
        if n == "throughput" and str(results["tasks"][n].get("version")) == "1":
            # version 1 named 1 / mean TPOT "single_stream_tokens_per_s"; since 2 it is output tok/s at c=1
            eff["single_stream_tokens_per_s"] = eff.pop("single_stream_output_tokens_per_s", None)
        for k, v in eff.items():
            if _finite(v):
                reported.setdefault(k, []).append((n, float(v)))
    out: dict[str, float] = {}
    sources: dict[str, str] = {}
    for k, got in reported.items():
        if len(got) == 1:
            out[k] = got[0][1]
            continue
        if k == "samples_per_s" and (total := _total_rate([results["tasks"][n] for n, _ in got if n != "throughput"])):
            out[k], sources[k] = total
            continue
        out[k] = got[0][1]
        sources[k] = f"from {got[0][0]} (also reported by {', '.join(n for n, _ in got[1:])})"
    return out, sources


def _total_rate(entries: list[dict[str, Any]]) -> tuple[float, str] | None:
    """(samples / s, how) over several tasks' samples and wall times; None when one lacks them."""
    n = [e.get("n_samples") for e in entries]
    wall = [e.get("wall_time_s") for e in entries]
    if not entries or not all(_finite(x) and x > 0 for x in n + wall):
        return None
    tasks = f"{len(entries)} task{'s' if len(entries) > 1 else ''}"
    return sum(n) / sum(wall), f"{sum(n):,} samples over {sum(wall):,.1f} s of {tasks}"


def efficiency_figures(results: dict[str, Any]) -> dict[str, float]:
    """Scalar efficiency figures of a run (``run_figures`` without their sources)."""
    return run_figures(results)[0]


def load_entries(paths: Sequence[str | Path]) -> list[Entry]:
    entries = []
    for i, p in enumerate(expand_runs(paths)):
        results, samples = load_run(p)
        figures, sources = run_figures(results)
        e = Entry(p, results, samples, figures=figures, sources=sources)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(results["model"].get("name") or "run")).strip("-.")[:60] or "run"
        e.page = f"runs/{i:02d}-{slug}.html"
        entries.append(e)
    labels = [model_label(e.model) for e in entries]
    for e, label in zip(entries, labels):
        e.label = label
        if labels.count(label) > 1:
            e.label += f" ({e.results['run_id']})"
    return entries


def model_label(model: dict[str, Any]) -> str:
    """A run's model as the leaderboard names it: its name, and the model a server served (one
    ``openai:`` URL serves several) when the name does not already say it."""
    name = str(model.get("name"))
    served = model.get("served_model")
    return f"{name} [{served}]" if served and str(served) not in name else name


# ---- analysis -----------------------------------------------------------------------------------
def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (higher is better on both)."""
    front = []
    for i, (x, y) in enumerate(points):
        if not any((x2 >= x and y2 >= y) and (x2 > x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i):
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def is_accuracy_task(entry: dict[str, Any]) -> bool:
    """A task whose primary metric is an accuracy (a score of its samples), not an efficiency figure:
    the load-driving throughput task (its entry carries a ``throughput`` section) is not one."""
    return not isinstance(entry.get("throughput"), dict)


def lower_is_better(entry: dict[str, Any]) -> bool:
    """Whether a task's primary metric is better lower: an lm-eval metric with ``higher_is_better:
    false`` (an error rate, a perplexity), marked ``lower_is_better`` by the run or, where lm-eval
    aggregates it otherwise than by a mean (perplexity), only in lm-eval's own ``higher_is_better``."""
    if entry.get("lower_is_better"):
        return True
    metric = str(entry.get("primary_metric") or "").rpartition("/")[2].partition(",")[0]
    hib = (entry.get("lm_eval") or {}).get("higher_is_better") or {}
    return any(isinstance(m, dict) and m.get(metric) is False for m in hib.values())


def accuracy_tasks(e: Entry) -> list[str]:
    """The run's accuracy tasks with a numeric primary metric, in its own order: scores where higher
    is better (a lower-is-better metric averaged in would pull the accuracy axis the wrong way, and a
    perplexity is no score in [0, 1] at all)."""
    return [t for t, x in e.results["tasks"].items()
            if is_accuracy_task(x) and not lower_is_better(x) and e.metric(t)[0] is not None]


def sample_ids(e: Entry, task: str) -> frozenset[str] | None:
    """The ids of the samples a run's task result is over; None when its samples file is gone."""
    rows = e.samples.get(task) or []
    return frozenset(r.id for r in rows) if rows else None


def same_samples(a: Entry, b: Entry, task: str) -> bool:
    """Whether two runs' figures of a task are over the same samples (True when either is unknown)."""
    ia, ib = sample_ids(a, task), sample_ids(b, task)
    return ia is None or ib is None or ia == ib


def common_tasks(entries: Sequence[Entry]) -> list[str]:
    """Accuracy tasks every run has a numeric primary metric for, each run with the same settings and
    over the same samples (a mean over one run's 50 hard questions and another's 200 easy ones
    compares nothing, and --limit cuts the questions without changing the settings), in the first
    run's order."""
    if not entries:
        return []
    sets = [set(accuracy_tasks(e)) for e in entries]
    first = entries[0].results["tasks"]
    return [t for t in accuracy_tasks(entries[0]) if all(t in s_ for s_ in sets)
            and not any(config_differences(first[t], e.results["tasks"][t]) for e in entries[1:])
            and all(same_samples(entries[0], e, t) for e in entries[1:])]


def _family(e: Entry) -> tuple[Any, Any]:
    """Runs of one model under different precisions share backend and base-weights hash."""
    return e.model.get("backend"), e.model.get("weights_sha256")


def _is_reference(e: Entry) -> bool:
    return str(e.model.get("precision") or "").lower() in REFERENCE_PRECISIONS


def precision_deltas(entries: Sequence[Entry], *, n_boot: int = 1000) -> list[dict[str, Any]]:
    """Paired delta, per task both ran with the same settings, of each run vs the first BF16 run of
    its family (same backend and weights hash); ``lower_is_better`` where the task's metric is (a
    positive delta is then a loss)."""
    refs: dict[tuple[Any, Any], Entry] = {}
    for e in entries:
        if _is_reference(e):
            refs.setdefault(_family(e), e)
    out = []
    for e in entries:
        ref = refs.get(_family(e))
        if ref is None or _is_reference(e):
            continue
        for t in ref.results["tasks"]:
            if t not in e.results["tasks"] or config_differences(ref.results["tasks"][t], e.results["tasks"][t]):
                continue
            p = pair(ref.samples.get(t, []), e.samples.get(t, []))
            if p.n == 0:
                continue
            out.append({"reference": ref.label, "run": e.label, "precision": e.model.get("precision"), "task": t,
                        "n": p.n, "delta": float(p.d.mean()), "ci": paired_interval(p, n_boot=n_boot)[0],
                        "lower_is_better": lower_is_better(ref.results["tasks"][t]) or lower_is_better(e.results["tasks"][t])})
    return out


# ---- plots --------------------------------------------------------------------------------------
def _throughput_key(entries: Sequence[Entry]) -> str | None:
    counts = {k: sum(1 for e in entries if k in e.figures) for k in THROUGHPUT_KEYS}
    best = max(counts.values(), default=0)
    return next((k for k in THROUGHPUT_KEYS if counts[k] == best), None) if best else None


def plot_points(entries: Sequence[Entry], tasks: Sequence[str], key: str) -> list[tuple[Entry, float, float]]:
    """(run, x, y) of the accuracy-vs-throughput plot: x the run's ``key`` figure, y the mean of its
    primary metrics over ``tasks`` (accuracy tasks only; never an efficiency figure)."""
    return [(e, e.figures[key], sum(e.metric(t)[0] or 0.0 for t in tasks) / len(tasks))
            for e in entries if key in e.figures and all(e.metric(t)[0] is not None for t in tasks)]


def _scatter(pts: Sequence[tuple[Entry, float, float]], key: str, ylabel: str, title: str = "") -> str:
    from evalsuite.reports.plots import plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xy = [(x, y) for _, x, y in pts]
    front = pareto_front(xy)
    ax.scatter([x for x, _ in xy], [y for _, y in xy], color="#4c72b0", zorder=3)
    if len(front) > 1:
        ax.plot([xy[i][0] for i in front], [xy[i][1] for i in front], color="#c44e52", lw=1.5, zorder=2, label="Pareto front")
        ax.legend(loc="lower right")
    for e, x, y in pts:
        ax.annotate(e.label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.margins(0.15)
    ax.set_xlabel(key)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return fig_to_uri(fig)


def pareto_plots(entries: Sequence[Entry]) -> tuple[list[tuple[str, str]], str]:
    """([(PNG data URI, caption)], note): accuracy against throughput for the complete runs.

    y is the mean of the primary metrics of the accuracy tasks every plotted run has with the same
    settings and samples; when the runs share none so, one plot per accuracy task with the runs that
    have it with its most common settings and samples (the others named). Runs that are not complete
    (failed, interrupted) are named in the note and never plotted; so is a plotted run whose x was
    measured on other hardware or with other speed settings than the others' (`speed_flags`)."""
    left_out = [f"{e.label} ({e.status})" for e in entries if not e.ok]
    plotted = [e for e in entries if e.ok]
    note = f"not plotted: {', '.join(left_out)}" if left_out else ""
    key = _throughput_key(plotted)

    def why(reason: str) -> tuple[list[tuple[str, str]], str]:
        return [], "no accuracy-vs-throughput plot: " + reason + (f"; {note}" if note else "")

    if key is None:
        return why("no complete run reports a throughput figure" if left_out else "no run reports a throughput figure")
    with_key = [e for e in plotted if key in e.figures]
    missing = [e.label for e in plotted if key not in e.figures]
    # x of a run measured on other hardware or with another batch size compares no speed
    apart = [f"x of {with_key[i].label} {why}" for i, why in speed_flags(with_key).items()]
    extra = "; ".join(x for x in (f"without {key}: {', '.join(missing)}" if missing else "", *apart, note) if x)
    shared = common_tasks(with_key)
    if shared:
        pts = plot_points(with_key, shared, key)
        others = sorted({t for e in with_key for t in accuracy_tasks(e)} - set(shared))
        lower = _lower_is_better_tasks(with_key)
        caption = (f"x: {key}{_x_sources(pts, key)}; y: mean primary metric of the accuracy tasks every plotted run "
                   f"has with the same settings and samples ({', '.join(shared)})"
                   + (f"; tasks not in every run or run with other settings, left out of y: {', '.join(others)}"
                      if others else "")
                   + (f"; lower-is-better metrics, left out of y: {', '.join(lower)}" if lower else ""))
        ylabel = f"mean accuracy ({len(shared)} task{'s' if len(shared) > 1 else ''})"
        return [(_scatter(pts, key, ylabel), caption)], extra
    tasks = list(dict.fromkeys(t for e in with_key for t in accuracy_tasks(e)))
    if not tasks:
        return why("no complete run has an accuracy task with a metric")
    figs = []
    for t in tasks:
        have = [e for e in with_key if t in accuracy_tasks(e)]
        # the runs of the task's most common settings and samples: a mean over 10 questions beside one
        # over 200, or under other settings, is no point on the same axis
        group = max(_groups(range(len(have)), lambda i, j: t in common_tasks([have[i], have[j]])), key=len)
        pts = plot_points([have[i] for i in group], [t], key)
        apart = [e.label for i, e in enumerate(have) if i not in group]
        figs.append((_scatter(pts, key, f"{t} primary metric", title=t),
                     f"{t}: x {key}{_x_sources(pts, key)}, y its primary metric ({len(pts)} run(s) with its most common "
                     f"settings and samples; the runs share no accuracy task with the same settings and samples)"
                     + (f"; left out, run with other settings or samples: {', '.join(apart)}" if apart else "")))
    return figs, extra


def _lower_is_better_tasks(entries: Sequence[Entry]) -> list[str]:
    return sorted({t for e in entries for t, x in e.results["tasks"].items() if is_accuracy_task(x) and lower_is_better(x)})


def _x_sources(pts: Sequence[tuple[Entry, float, float]], key: str) -> str:
    """Where the plotted runs' x figures come from, when not from one task each: " (run: how; …)"."""
    how = [(e.label, e.sources[key]) for e, _, _ in pts if key in e.sources]
    if how and len(how) == len(pts) and len({h for _, h in how}) == 1 and key != "samples_per_s":
        return f" ({how[0][1]})"  # the same for every run: said once
    return f" ({'; '.join(f'{label}: {h}' for label, h in how)})" if how else ""


def delta_plot(deltas: Sequence[dict[str, Any]]) -> str | None:
    """Grouped error bars: per task, each precision's paired delta (points) vs its BF16 reference."""
    if not deltas:
        return None
    from evalsuite.reports.plots import plt

    tasks = list(dict.fromkeys(d["task"] for d in deltas))
    runs = list(dict.fromkeys(d["run"] for d in deltas))
    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 * len(tasks) + 2.5), 3.6))
    width = 0.8 / len(runs)
    for j, r in enumerate(runs):
        xs, ys, lo, hi = [], [], [], []
        for i, t in enumerate(tasks):
            d = next((d for d in deltas if d["task"] == t and d["run"] == r), None)
            if d is None:
                continue
            xs.append(i - 0.4 + width * (j + 0.5))
            ys.append(100 * d["delta"])
            ci = d["ci"] or (d["delta"], d["delta"])
            lo.append(100 * (d["delta"] - ci[0]))
            hi.append(100 * (ci[1] - d["delta"]))
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", capsize=3, label=r)
    ax.axhline(0.0, color="#999", lw=1, ls="--")
    ax.set_xlim(-0.6, len(tasks) - 0.4)
    lower = {d["task"] for d in deltas if d.get("lower_is_better")}
    ax.set_xticks(range(len(tasks)), [f"{t}\n(lower is better)" if t in lower else t for t in tasks],
                  rotation=20, ha="right")
    ax.set_ylabel("delta vs BF16 (points), 95% CI")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig_to_uri(fig)


# ---- pages --------------------------------------------------------------------------------------
def _sortnum(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def settings_flags(entries: Sequence[Entry], tasks: Sequence[str]) -> dict[tuple[int, str], str]:
    """{(entry index, task): note} for the cells of a task run with other settings than the column's
    reference (the first run of its most common settings): their numbers are not comparable."""
    flags: dict[tuple[int, str], str] = {}
    for t in tasks:
        have = [i for i, e in enumerate(entries) if t in e.results["tasks"]]
        groups = _groups(have, lambda i, j: not config_differences(entries[i].results["tasks"][t],
                                                                    entries[j].results["tasks"][t]))
        if len(groups) < 2:
            continue
        ref = max(groups, key=len)[0]  # first-seen group wins a tie
        for g in groups:
            if ref in g:
                continue
            for i in g:
                diff = config_differences(entries[ref].results["tasks"][t], entries[i].results["tasks"][t])
                more = f" (+{len(diff) - 2} more)" if len(diff) > 2 else ""
                flags[(i, t)] = f"other settings than {entries[ref].label}: {'; '.join(diff[:2])}{more}"
    return flags


def _groups(indices: Sequence[int], same: Callable[[int, int], bool]) -> list[list[int]]:
    """``indices`` grouped in first-seen order, each joining the first group whose first member it is
    ``same`` as."""
    groups: list[list[int]] = []
    for i in indices:
        home = next((g for g in groups if same(g[0], i)), None)
        if home is None:
            groups.append([i])
        else:
            home.append(i)
    return groups


def sample_flags(entries: Sequence[Entry], tasks: Sequence[str],
                 skip: dict[tuple[int, str], str]) -> dict[tuple[int, str], str]:
    """{(entry index, task): note} for the cells of a task computed over other samples than the
    column's reference (the first run of its most common sample set), leaving out cells ``skip``
    already flags (other settings mean other samples too). The same settings cut by --limit 5 and
    run whole give 5 and 200 questions: their means are not comparable either. A load test (the
    throughput task) is never flagged here: its samples are the requests its SLO search sent, other
    ids in every run, and its figures compare by its settings."""
    flags: dict[tuple[int, str], str] = {}
    for t in tasks:
        have = [i for i, e in enumerate(entries) if (i, t) not in skip and sample_ids(e, t) is not None
                and is_accuracy_task(e.results["tasks"][t])]
        groups = _groups(have, lambda i, j: sample_ids(entries[i], t) == sample_ids(entries[j], t))
        if len(groups) < 2:
            continue
        ref = max(groups, key=len)[0]  # first-seen group wins a tie
        ids_ref = sample_ids(entries[ref], t) or frozenset()
        for g in groups:
            if ref in g:
                continue
            for i in g:
                ids = sample_ids(entries[i], t) or frozenset()
                flags[(i, t)] = (f"other samples than {entries[ref].label}: n={len(ids)} vs {len(ids_ref)}, "
                                 f"{len(ids & ids_ref)} in both")
    return flags


HARDWARE_FIELDS = ("device", "cpu", "cpu_count", "gpu", "gpu_count", "server")  # the parts of `hardware`


def speed_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """What differs between two runs (their results.json) that their speed depends on, as the gate
    judges it: the hardware (`hardware`) and the speed settings both record (`settings_differences`)."""
    ha, hb = hardware(a), hardware(b)
    return ([f"{k} {x} vs {y}" for k, x, y in zip(HARDWARE_FIELDS, ha, hb) if x != y]
            + settings_differences(a, b))


def speed_flags(entries: Sequence[Entry]) -> dict[int, str]:
    """{entry index: note} for the runs whose efficiency figures were measured on other hardware or
    with other speed settings (batch size, an openai: client's max_concurrency) than the reference
    (the first run of the most common ones among the runs with a figure): their speeds are not
    comparable, and the gate does not compare them either."""
    have = [i for i, e in enumerate(entries) if e.figures]
    groups = _groups(have, lambda i, j: not speed_differences(entries[i].results, entries[j].results))
    if len(groups) < 2:
        return {}
    ref = max(groups, key=len)[0]  # first-seen group wins a tie
    flags = {}
    for g in groups:
        if ref in g:
            continue
        for i in g:
            diff = speed_differences(entries[ref].results, entries[i].results)
            flags[i] = f"measured on other hardware or run settings than {entries[ref].label}: {'; '.join(diff)}"
    return flags


def _cell(text: str, sort: str, **kw: str) -> dict[str, str]:
    return {"text": text, "sort": sort, "ci": "", "n": "", "errors": "", "chance": "", "settings": "", "samples": "",
            "source": "", "mark": "", "speed": "", **kw}


def figure_task(results: dict[str, Any], key: str) -> str | None:
    """The task a run's efficiency figure ``key`` comes from, as `run_figures` picks it ('throughput'
    first, then by name); None when no task reports it (a run's total samples_per_s is several's)."""
    for n in sorted(results["tasks"], key=lambda n: (n != "throughput", n)):
        if _finite((results["tasks"][n].get("efficiency") or {}).get(key)):
            return n
    return None


AT_SLO_KEYS = ("output_tokens_per_s_at_slo", "per_gpu_throughput_at_slo", "requests_per_s_at_slo")


def at_slo_mark(entry: dict[str, Any], key: str) -> str:
    """The marks of a figure "at SLO" of a throughput task's entry (bounded search, unproven p99 or
    rate: `at_slo_marks`); '' for any other figure, or one that is proven."""
    if key not in AT_SLO_KEYS or not isinstance(entry.get("throughput"), dict):
        return ""
    return "; ".join(at_slo_marks(entry["throughput"].get("slo_search")))


def table_rows(entries: Sequence[Entry], tasks: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    flags = settings_flags(entries, tasks)
    other_samples = sample_flags(entries, tasks, flags)
    speed = speed_flags(entries)
    for i, e in enumerate(entries):
        cells = []
        for t in tasks:
            v, ci = e.metric(t)
            entry = e.results["tasks"].get(t) or {}
            n_err, n = int(entry.get("n_errors") or 0), int(entry.get("n_samples") or 0)
            cells.append(_cell(fmt_num(v, 3), _sortnum(v), ci=f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "",
                               n=f"n={n}" if entry else "", errors=f"{n_err}/{n} errored" if n_err else "",
                               settings=flags.get((i, t), ""), samples=other_samples.get((i, t), ""),
                               chance=f"≈ chance ({entry['chance']:.3f})" if at_chance(ci, entry.get("chance")) else "",
                               mark=at_slo_mark(entry, str(entry.get("primary_metric"))) if v is not None else "",
                               # a load test's primary metric is a speed
                               speed=speed.get(i, "") if v is not None and not is_accuracy_task(entry) else ""))
        for key, _ in HEADLINE:
            v = e.figures.get(key)
            origin = figure_task(e.results, key) if v is not None else None
            entry = (e.results["tasks"].get(origin) or {}) if origin else {}
            # an efficiency figure is its task's: run with other settings or samples, it compares no better
            cells.append(_cell(fmt_num(v, 2), _sortnum(v), source=e.sources.get(key, "") if v is not None else "",
                               settings=flags.get((i, origin), "") if origin else "",
                               samples=other_samples.get((i, origin), "") if origin else "",
                               mark=at_slo_mark(entry, key) if origin else "",
                               speed=speed.get(i, "") if v is not None else ""))
        wb = e.model.get("weight_bytes")
        cells.append(_cell(fmt_num(wb), _sortnum(wb)))
        rows.append({"e": e, "cells": cells})
    return rows


def render_run_page(e: Entry, out: Path) -> None:
    tasks = []
    for name, t in e.results["tasks"].items():
        v, ci = e.metric(name)
        tasks.append({"name": name, "t": t, "value": v, "ci": ci,
                      "other": {k: x for k, x in t["metrics"].items() if k != t["primary_metric"]},
                      "efficiency": {k: x for k, x in (t.get("efficiency") or {}).items() if not isinstance(x, (dict, list))}})
    own_report = e.path / "report.html" if e.path.is_dir() else e.path.parent / "report.html"
    # named, not linked: the site links only inside its own folder
    html = jinja_env().get_template("leaderboard_run.html").render(
        e=e, r=e.results, tasks=tasks, report=str(own_report) if own_report.exists() else None,
        env=e.results["environment"])
    atomic_write_text(out / e.page, html)


def build_leaderboard(paths: Sequence[str | Path], out: str | Path, *, title: str = "evalsuite leaderboard") -> Path:
    """Write the site into ``out``; return the path of ``index.html``."""
    entries = load_entries(paths)
    if not entries:
        raise LeaderboardError("no run folders given")
    out = Path(out)
    all_tasks = list(dict.fromkeys(t for e in entries for t in e.results["tasks"]))
    shared = common_tasks([e for e in entries if e.ok])
    deltas = precision_deltas([e for e in entries if e.ok])
    pareto, pareto_note = pareto_plots(entries)
    for e in entries:
        render_run_page(e, out)
    html = jinja_env().get_template("leaderboard.html").render(
        title=title, tasks=all_tasks, headline=HEADLINE, rows=table_rows(entries, all_tasks), pareto=pareto,
        pareto_note=pareto_note, delta_plot=delta_plot(deltas), deltas=deltas, shared=shared,
        lower_is_better=set(_lower_is_better_tasks(entries)))
    index = out / "index.html"
    atomic_write_text(index, html)
    return index


# ---- CLI ----------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (or a folder of run folders)")
    parser.add_argument("--out", required=True, help="folder for index.html and runs/*.html")
    parser.add_argument("--title", default="evalsuite leaderboard")


def main(args: argparse.Namespace) -> int:
    index = build_leaderboard(args.runs, args.out, title=args.title)
    print(f"leaderboard: {index}")
    return 0
