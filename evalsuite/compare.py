"""``python -m evalsuite compare RUN_A RUN_B --out DIR``: paired comparison of two runs.

Per task in both runs, on the samples both runs scored (same task, same sample id, same task
configuration): the difference B - A of the mean sample score, its 95% interval and the two-sided
paired test of "no change" (``evalsuite.paired.paired_interval`` / ``paired_test``, the gate's
method), Holm-adjusted across tasks; efficiency ratios B/A with their better direction, computed on the paired samples (the
runs' own figures only when both ran the same samples; totals never); and the flips (samples that went
right → wrong or back). Writes ``DIR/compare.json`` (schema ``schema/compare.schema.json``) and
prints a summary table; the CLI then renders ``DIR/index.html`` (summary) and ``DIR/flips.html``
(flips browser with media) from that file (``evalsuite.reports.compare_page``).

The summary says, per task, how many samples the pairing left out and why (one run errored on
them, or does not hold them), notes samples of one id that were asked different prompts (and
differing seeds), and names a run's status when it is not complete.

Tasks are comparable only when their version, arguments and media settings match (``config_hash``
also covers the model, so it always differs between two models; it is not what is checked). A
mismatch is an error unless ``--allow-config-mismatch``, which turns it into a warning.

Reads only results files (``load_run``): any two runs can be compared later.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from evalsuite.paired import PairedDiff, holm, pair, paired_diff
from evalsuite.results import (COMPARE_SCHEMA_VERSION, RunFormatError, atomic_write_json, config_differences, dumps,
                               flatten, load_run, other_data, validate)
from evalsuite.stats import N_BOOT, fmt_p, points
from evalsuite.types import SampleResult

class CompareError(RunFormatError):
    """Two runs cannot be compared as asked (no task in common, different task configurations…)."""


# ---- task configuration -------------------------------------------------------------------------
def select_tasks(results_a: dict[str, Any], results_b: dict[str, Any], tasks: Sequence[str] | None,
                 *, what: str = "the two runs") -> list[str]:
    """Tasks present in both runs (restricted to ``tasks`` when given), in A's order."""
    common = [t for t in results_a["tasks"] if t in results_b["tasks"]]
    if tasks:
        missing = [t for t in tasks if t not in common]
        if missing:
            raise CompareError(f"task(s) {', '.join(missing)} not in both of {what} (common: {', '.join(common) or 'none'})")
        common = [t for t in common if t in tasks]
    if not common:
        raise CompareError(f"{what} have no task in common (A: {', '.join(results_a['tasks']) or 'none'}; "
                           f"B: {', '.join(results_b['tasks']) or 'none'})")
    return common


def check_configs(results_a: dict[str, Any], results_b: dict[str, Any], tasks: Iterable[str], *,
                  allow_mismatch: bool) -> dict[str, list[str]]:
    """Per task, its configuration differences; raise CompareError on any unless ``allow_mismatch``."""
    diffs = {t: config_differences(results_a["tasks"][t], results_b["tasks"][t]) for t in tasks}
    bad = {t: d for t, d in diffs.items() if d}
    if bad and not allow_mismatch:
        t, d = next(iter(bad.items()))
        more = f" (and {len(bad) - 1} more task(s))" if len(bad) > 1 else ""
        raise CompareError(f"task {t!r} was run with different settings ({'; '.join(d[:3])}){more}: "
                           "samples are not comparable; re-run with the same settings or pass --allow-config-mismatch")
    return diffs


def check_same_data(samples_a: dict[str, Sequence[SampleResult]], samples_b: dict[str, Sequence[SampleResult]],
                    tasks: Iterable[str], *, allow_mismatch: bool) -> dict[str, list[str]]:
    """Per task, whether samples of one id have the same target in both runs (the same data: where
    the data lives is not among the settings, so a benchmark read from two folders compares, but
    two versions of it under the same ids must not). Raise CompareError unless ``allow_mismatch``."""
    out: dict[str, list[str]] = {}
    for t in tasks:
        by_b = {r.id: r for r in samples_b.get(t, [])}
        other = [(r.id, r.target, by_b[r.id].target) for r in samples_a.get(t, [])
                 if r.id in by_b and other_data(r, by_b[r.id].target, by_b[r.id].error)]
        out[t] = ([f"data: {len(other)} sample(s) with the same id have another target "
                   f"(e.g. {other[0][0]!r}: {other[0][1]!r} != {other[0][2]!r})"] if other else [])
    bad = {t: d for t, d in out.items() if d}
    if bad and not allow_mismatch:
        t, d = next(iter(bad.items()))
        raise CompareError(f"task {t!r}: the runs read different data ({d[0][len('data: '):]}): samples are not "
                           f"comparable; run both on the same data or pass --allow-config-mismatch")
    return out


def prompt_differences(results_a: dict[str, Any], results_b: dict[str, Any],
                       samples_a: dict[str, Sequence[SampleResult]], samples_b: dict[str, Sequence[SampleResult]],
                       tasks: Iterable[str]) -> dict[str, str]:
    """Per task, a note when samples of one id in both runs were asked different prompts (a changed
    template, other few-shot examples): not refused, as a prompt change may be what is compared, but
    said. Samples with no prompt recorded on either side are not counted. When the runs' seeds
    differ too the note says so (lm-eval draws its few-shot examples with the seed)."""
    seeds = [(r.get("environment") or {}).get("seed") for r in (results_a, results_b)]
    out: dict[str, str] = {}
    for t in tasks:
        by_b = {r.id: r for r in samples_b.get(t, [])}
        both = [(r, by_b[r.id]) for r in samples_a.get(t, []) if r.id in by_b and r.prompt and by_b[r.id].prompt]
        other = [ra.id for ra, rb in both if ra.prompt != rb.prompt]
        if other:
            out[t] = (f"{len(other)} of {len(both)} sample(s) in both runs were asked different prompts "
                      f"(e.g. {other[0]!r}): the difference includes the prompt change"
                      + (f"; the runs' seeds differ ({seeds[0]} vs {seeds[1]}), and tasks that draw prompts with "
                         f"it (lm-eval few-shot examples) ask other ones" if seeds[0] != seeds[1] else ""))
    return out


# ---- efficiency ---------------------------------------------------------------------------------
_LOWER_BETTER = ("ttft", "tpot", "itl", "latency", "e2e", "joules", "rtf", "real_time_factor", "wall_time",
                 "time_to", "time_per_", "duration")
_RATE = ("per_s", "per_hour", "per_min", "throughput", "goodput", "speedup", "per_joule")  # per_s: per_second too
_HIGHER_BETTER = ("per_gpu", "per_user")


BETTER = {1: "higher", -1: "lower", 0: "?"}


def efficiency_direction(key: str) -> int:
    """+1 when a larger figure is better (throughput), -1 when smaller is (latency, energy), 0 unknown.

    A rate wins over the latency word that qualifies it: ``single_stream_tokens_per_s_by_tpot`` and
    ``chunks_per_s_per_user_by_itl`` are speeds (higher is better), ``ttft_ms.p99`` a latency.
    Energy per unit of work (``joules_per_output_token``) is lower-is-better."""
    k = key.lower()
    if "joules_per" in k:
        return -1
    if any(w in k for w in _RATE):
        return 1
    if any(w in k for w in _LOWER_BETTER) or k.endswith(("_ms", "_s", "_ns", "_seconds")):
        return -1
    if any(w in k for w in _HIGHER_BETTER):
        return 1
    return 0


def numeric_figures(eff: dict[str, Any] | None) -> dict[str, float]:
    """Scalar numbers of an efficiency dict, nested dicts flattened to dotted keys."""
    flat: dict[str, Any] = {}
    flatten("", eff or {}, flat)
    return {k: float(v) for k, v in flat.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


def efficiency_ratios(eff_a: dict[str, Any] | None, eff_b: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """B/A of every numeric efficiency figure in both (ratio None when A is 0)."""
    fa, fb = numeric_figures(eff_a), numeric_figures(eff_b)
    out: dict[str, dict[str, Any]] = {}
    for k in fa:
        if k in fb:
            out[k] = {"a": fa[k], "b": fb[k], "ratio": (fb[k] / fa[k]) if fa[k] != 0 else None,
                      "direction": efficiency_direction(k)}
    return out


def _ratio(a: float, b: float, direction: int, basis: str) -> dict[str, Any]:
    return {"a": a, "b": b, "ratio": (b / a) if a != 0 else None, "direction": direction, "basis": basis}


def paired_efficiency(rows_a: Sequence[SampleResult], rows_b: Sequence[SampleResult]) -> dict[str, dict[str, Any]]:
    """Per-sample rates over the same samples in both runs (``rows_a[i]`` and ``rows_b[i]`` are one
    sample): mean end-to-end latency, output tokens per second of latency, media hours per hour of
    latency (video or audio ``duration_s``), and the means of per-sample stage latencies. A figure is
    computed only when every pair carries what it needs; the tokens/s basis says when some output
    token counts are chunk estimates (``token_count_source`` ``chunks``), every basis when samples were
    retried (``retry_s``: timed from the answering attempt)."""
    n = len(rows_a)
    if n == 0:
        return {}
    basis = f"paired samples (n={n})"
    # a backend that retried times the answering attempt (usage retry_s): the latencies leave the
    # failed attempts and waits out, so the basis says how many samples were retried on each side
    retried = [sum(1 for r in rows if isinstance(r.usage.get("retry_s"), (int, float)) and r.usage["retry_s"] > 0)
               for rows in (rows_a, rows_b)]
    if any(retried):
        basis += f"; timed from the answering attempt, retried: {retried[0]} in a, {retried[1]} in b"
    out: dict[str, dict[str, Any]] = {}

    def col(rows: Sequence[SampleResult], key: str, where: str = "usage") -> list[float] | None:
        vals = [(r.usage if where == "usage" else r.metadata).get(key) for r in rows]
        if any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in vals):
            return None
        return [float(v) for v in vals]  # type: ignore[arg-type]

    ea, eb = col(rows_a, "e2e_s"), col(rows_b, "e2e_s")
    if ea is None or eb is None or sum(ea) <= 0 or sum(eb) <= 0:
        return out
    out["mean_e2e_s"] = _ratio(sum(ea) / n, sum(eb) / n, -1, basis)
    ta, tb = col(rows_a, "output_tokens"), col(rows_b, "output_tokens")
    if ta is not None and tb is not None:
        # a count of streamed chunks (a server that sent no usage) is an estimate: the basis says so
        chunked = [sum(1 for r in rows if r.usage.get("token_count_source") == "chunks") for rows in (rows_a, rows_b)]
        tokens_basis = basis if not any(chunked) else (
            f"{basis}; output tokens estimated from streamed chunks for {chunked[0]} in a, {chunked[1]} in b")
        out["output_tokens_per_s"] = _ratio(sum(ta) / sum(ea), sum(tb) / sum(eb), 1, tokens_basis)
    da, db = col(rows_a, "duration_s", "metadata"), col(rows_b, "duration_s", "metadata")
    if da is not None and db is not None and sum(da) > 0:
        out["media_hours_per_hour"] = _ratio(sum(da) / sum(ea), sum(db) / sum(eb), 1, basis)
    stages = sorted({k for r in rows_a for k in r.usage if k.endswith("_s") and k not in ("e2e_s", "ttft_s")})
    for key in ["ttft_s", *stages]:
        sa_, sb_ = col(rows_a, key), col(rows_b, key)
        if sa_ is not None and sb_ is not None:
            out[f"mean_{key}"] = _ratio(sum(sa_) / n, sum(sb_) / n, -1, basis)
    return out


def measured_under_load(task: dict[str, Any]) -> bool:
    """Whether a results.json task entry is a load test (the throughput task: ``throughput`` holds its
    points). Its samples are the requests it sent, whose ids follow its SLO search and differ from run
    to run; its figures are comparable when its settings are (the prompt pool, the SLO), not its ids."""
    return isinstance(task.get("throughput"), dict)


def comparable_figures(task_a: dict[str, Any], task_b: dict[str, Any], ids_a: set[str], ids_b: set[str]) -> bool:
    """Whether two runs' own efficiency figures of a task compare: over the same samples, or a load test."""
    return ids_a == ids_b or (measured_under_load(task_a) and measured_under_load(task_b))


def compare_efficiency(task_a: dict[str, Any], task_b: dict[str, Any], rows_a: Sequence[SampleResult],
                       rows_b: Sequence[SampleResult], *, same_samples: bool) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """(figures, notes) of one task: rates on the paired samples, plus the runs' own figures when
    both ran exactly the same samples (then they are paired too). Only figures whose better
    direction is known are shown; totals such as video_hours grow with the sample count and are not."""
    out = paired_efficiency(rows_a, rows_b)
    notes: list[str] = []
    whole = efficiency_ratios(task_a.get("efficiency"), task_b.get("efficiency"))
    if whole and not same_samples:
        # point to the paired rates only where there are some (no per-sample latencies: none)
        notes.append(f"the runs' own efficiency figures ({', '.join(sorted(whole))}) are left out: they cover "
                     f"{task_a.get('n_samples')} vs {task_b.get('n_samples')} samples"
                     + ("; rates above are on the paired samples" if out else ""))
        return out, notes
    unknown = sorted(k for k, e in whole.items() if e["direction"] == 0)
    if unknown:
        notes.append(f"not compared (no better direction, e.g. totals): {', '.join(unknown)}")
    for k, e in whole.items():
        if e["direction"] != 0 and k not in out:
            out[k] = {**e, "basis": "whole run (load test)" if measured_under_load(task_a) else "whole run (same samples)"}
    return out, notes


# ---- the comparison -----------------------------------------------------------------------------
@dataclass
class TaskComparison:
    task: str
    primary_metric: str
    metric_a: Any
    metric_b: Any
    diff: PairedDiff | None
    p_holm: float | None = None
    n_only_a: int = 0
    n_only_b: int = 0
    config_diffs: list[str] = field(default_factory=list)
    efficiency: dict[str, dict[str, Any]] = field(default_factory=dict)
    flips: list[tuple[SampleResult, SampleResult]] = field(default_factory=list)
    note: str | None = None
    efficiency_notes: list[str] = field(default_factory=list)
    excluded: dict[str, Any] = field(default_factory=dict)  # see ``excluded_samples``
    notes: list[str] = field(default_factory=list)  # about the accuracy comparison (other prompts)
    lower_is_better: bool = False  # the primary metric is better lower (lm-eval higher_is_better: false)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task, "primary_metric": self.primary_metric, "metric_a": self.metric_a,
            "metric_b": self.metric_b, **(self.diff.to_dict() if self.diff else {"n": 0}),
            "p_holm": self.p_holm, "n_only_a": self.n_only_a, "n_only_b": self.n_only_b, "excluded": self.excluded,
            "notes": self.notes, "lower_is_better": self.lower_is_better,
            "config_differences": self.config_diffs, "efficiency": self.efficiency,
            "efficiency_notes": self.efficiency_notes, "note": self.note,
            "flips": [flip_record(a, b) for a, b in self.flips],
        }


def excluded_samples(rows_a: Sequence[SampleResult], rows_b: Sequence[SampleResult]) -> dict[str, Any]:
    """Why samples are left out of the paired comparison, per side: ``{"a": {"errored": n, "missing": n},
    "b": {...}, "errored_in_both": n, "unscored_in_both": n}``. ``b.errored``: samples A scored and B
    errored on (or left unscored); ``b.missing``: samples A scored that B does not hold; ``a`` the same
    the other way; ``errored_in_both``: held by both, scored by neither, an error in at least one;
    ``unscored_in_both``: held by both, scored by neither, no error (a type the task cannot score).
    A task whose samples hold neither a score nor an error in either run (a load test's requests) has
    nothing left out: all zero; one where every sample errored in both says so."""
    by_a, by_b = {r.id: r for r in rows_a}, {r.id: r for r in rows_b}

    def scored(r: SampleResult) -> bool:
        return r.error is None and r.score is not None and not (isinstance(r.score, float) and math.isnan(r.score))

    def side(mine: dict[str, SampleResult], other: dict[str, SampleResult]) -> dict[str, int]:
        ids = [i for i, r in other.items() if scored(r)]
        return {"errored": sum(1 for i in ids if i in mine and not scored(mine[i])),
                "missing": sum(1 for i in ids if i not in mine)}

    rows = [*by_a.values(), *by_b.values()]
    if not any(scored(r) or r.error is not None for r in rows):  # a load test's requests: no score, no error
        zero = {"errored": 0, "missing": 0}
        return {"a": dict(zero), "b": dict(zero), "errored_in_both": 0, "unscored_in_both": 0}
    neither = [(r, by_b[i]) for i, r in by_a.items() if i in by_b and not scored(r) and not scored(by_b[i])]
    errored = sum(1 for r, q in neither if r.error is not None or q.error is not None)
    return {"a": side(by_a, by_b), "b": side(by_b, by_a), "errored_in_both": errored,
            "unscored_in_both": len(neither) - errored}


def excluded_text(excluded: dict[str, Any]) -> str | None:
    """One line saying how many samples the paired comparison left out and why (None: none)."""
    parts = []
    for me, other in (("B", "A"), ("A", "B")):
        e = excluded.get(me.lower()) or {}
        if e.get("errored"):
            parts.append(f"{me} errored on {e['errored']} that {other} scored")
        if e.get("missing"):
            parts.append(f"{me} lacks {e['missing']} that {other} scored")
    if excluded.get("errored_in_both"):
        parts.append(f"{excluded['errored_in_both']} scored in neither (errored)")
    if excluded.get("unscored_in_both"):
        parts.append(f"{excluded['unscored_in_both']} scored in neither (no score, no error)")
    if not parts:
        return None
    n = sum((excluded.get(k) or {}).get(w, 0) for k in ("a", "b") for w in ("errored", "missing"))
    n += (excluded.get("errored_in_both") or 0) + (excluded.get("unscored_in_both") or 0)
    return f"{n} sample(s) left out of the paired comparison: {', '.join(parts)}"


def status_text(side: str, run: dict[str, Any]) -> str | None:
    """A line naming a run's status when it is not complete (with its reasons), else None."""
    if run.get("status") == "complete":
        return None
    why = "; ".join(str(m) for m in run.get("status_reasons") or [])
    return f"run {side} ({run.get('path')}) is {run.get('status')}" + (f": {why}" if why else "")


SHOWN_METADATA = ("category", "cluster", "difficulty", "bucket")


def flip_record(a: SampleResult, b: SampleResult) -> dict[str, Any]:
    """What compare.json keeps of a flipped pair: enough for the flips page to show it from the file."""

    def side(r: SampleResult) -> dict[str, Any]:
        return {"score": r.score, "prediction": r.prediction, "error": r.error}

    return {"id": a.id, "a": side(a), "b": side(b), "prompt": a.prompt, "choices": a.choices, "target": a.target,
            "media": [dict(m) for m in a.media],
            "metadata": {k: a.metadata[k] for k in SHOWN_METADATA if k in a.metadata}}


@dataclass
class Comparison:
    run_a: dict[str, Any]  # results.json of A
    run_b: dict[str, Any]
    label_a: str
    label_b: str
    tasks: list[TaskComparison]
    level: float

    def to_dict(self) -> dict[str, Any]:
        def who(r: dict[str, Any], label: str) -> dict[str, Any]:
            return {"path": label, "run_id": r["run_id"], "status": r["status"],
                    "status_reasons": [str(m) for m in r.get("status_reasons") or []], "model": r["model"]}

        return {"schema_version": COMPARE_SCHEMA_VERSION, "kind": "compare",
                "a": who(self.run_a, self.label_a), "b": who(self.run_b, self.label_b), "level": self.level,
                "delta": "B - A, mean sample score on the samples both runs scored",
                "ci": "hull of the paired cluster bootstrap (metadata.cluster) and Tango's score interval, both "
                      "corrected for shared clusters (design effect, t with C - 1 df)",
                "test": "exact McNemar (0/1 scores, no shared clusters) or cluster sign-flip; p_holm: Holm across tasks",
                "tasks": {t.task: t.to_dict() for t in self.tasks}}


def compare_runs(run_a: tuple[dict[str, Any], dict[str, list[SampleResult]]],
                 run_b: tuple[dict[str, Any], dict[str, list[SampleResult]]], *,
                 label_a: str = "A", label_b: str = "B", tasks: Sequence[str] | None = None,
                 allow_config_mismatch: bool = False, level: float = 0.95, n_boot: int = N_BOOT,
                 seed: int = 0) -> Comparison:
    """Compare two loaded runs (``load_run`` outputs) task by task."""
    (ra, sa), (rb, sb) = run_a, run_b
    names = select_tasks(ra, rb, tasks)
    diffs = check_configs(ra, rb, names, allow_mismatch=allow_config_mismatch)
    for t, d in check_same_data(sa, sb, names, allow_mismatch=allow_config_mismatch).items():
        diffs[t] = diffs[t] + d
    prompts = prompt_differences(ra, rb, sa, sb, names)
    out: list[TaskComparison] = []
    for t in names:
        ta, tb = ra["tasks"][t], rb["tasks"][t]
        pm = ta["primary_metric"]
        p = pair(sa.get(t, []), sb.get(t, []))
        by_a = {r.id: r for r in sa.get(t, [])}
        by_b = {r.id: r for r in sb.get(t, [])}
        same = comparable_figures(ta, tb, set(by_a), set(by_b))
        eff, eff_notes = compare_efficiency(ta, tb, [by_a[i] for i in p.ids], [by_b[i] for i in p.ids],
                                            same_samples=same)
        tc = TaskComparison(t, pm, ta["metrics"].get(pm), tb["metrics"].get(pm), None, n_only_a=p.n_only_a,
                            n_only_b=p.n_only_b, config_diffs=diffs[t], efficiency=eff, flips=p.flips,
                            efficiency_notes=eff_notes, excluded=excluded_samples(sa.get(t, []), sb.get(t, [])),
                            notes=[prompts[t]] if t in prompts else [])
        if p.n:
            tc.diff = paired_diff(p, level=level, n_boot=n_boot, seed=seed)
        else:
            tc.note = "no sample scored in both runs"
        if ta.get("lower_is_better") or tb.get("lower_is_better"):
            tc.lower_is_better = True
            tc.efficiency_notes.append(f"{pm} is lower-is-better (lm-eval higher_is_better: false): a positive "
                                       f"delta and B+ (samples whose value rose) are losses here")
        out.append(tc)
    adjusted = holm([tc.diff.p_value if tc.diff else None for tc in out])
    for tc, ph in zip(out, adjusted):
        tc.p_holm = ph
    return Comparison(ra, rb, label_a, label_b, out, level)


# ---- text output --------------------------------------------------------------------------------
def format_table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned text table; the first row is the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summary_table(c: Comparison) -> str:
    rows = [["task", "n", "A", "B", "delta (pts)", f"{100 * c.level:.0f}% CI (pts)", "B+", "B-", "test", "p", "p Holm"]]
    for t in c.tasks:
        d = t.diff
        if d is None:
            rows.append([t.task, "0", "–", "–", "–", "–", "–", "–", "–", "–", "–"])
            continue
        ci = f"[{points(d.ci[0])}, {points(d.ci[1])}]" if d.ci else "–"
        rows.append([t.task, str(d.n), points(d.mean_a, False), points(d.mean_b, False), points(d.delta), ci,
                     str(d.n_improved), str(d.n_worsened), d.test, fmt_p(d.p_value), fmt_p(t.p_holm)])
    text = format_table(rows)
    eff = [[t.task, k, f"{e['a']:.4g}", f"{e['b']:.4g}", f"{e['ratio']:.3f}" if e["ratio"] is not None else "–",
            BETTER[e["direction"]], e["basis"]] for t in c.tasks for k, e in t.efficiency.items()]
    if eff:
        text += "\n\n" + format_table([["task", "efficiency", "A", "B", "B/A", "better", "over"], *eff])
    for t in c.tasks:
        for n in t.notes:
            text += f"\nnote: {t.task}: {n}"
        if left_out := excluded_text(t.excluded):
            text += f"\nnote: {t.task}: {left_out}"
        for n in t.efficiency_notes:
            text += f"\nnote: {t.task}: {n}"
    doc = c.to_dict()
    for side in ("a", "b"):
        if line := status_text(side.upper(), doc[side]):
            text += f"\nnote: {line}"
    return text


# ---- CLI ----------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", metavar="RUN_A", help="run folder (or results.json) of the reference")
    parser.add_argument("run_b", metavar="RUN_B", help="run folder (or results.json) compared against it")
    parser.add_argument("--out", required=True, help="folder for compare.json, index.html and flips.html")
    parser.add_argument("--tasks", default=None, help="comma-separated tasks (default: every task in both runs)")
    parser.add_argument("--allow-config-mismatch", action="store_true",
                        help="compare tasks whose version/args/media settings differ (warns instead of refusing)")
    parser.add_argument("--max-flips", type=int, default=200, help="flipped samples shown per task in flips.html")
    parser.set_defaults(page="evalsuite.reports.compare_page")
    parser.add_argument("--n-boot", type=int, default=N_BOOT, help="bootstrap replicates")
    parser.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace) -> int:
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    if args.n_boot < 100:
        raise CompareError(f"--n-boot must be at least 100, got {args.n_boot}")
    c = compare_runs(load_run(args.run_a), load_run(args.run_b), label_a=str(args.run_a), label_b=str(args.run_b),
                     tasks=tasks, allow_config_mismatch=args.allow_config_mismatch, n_boot=args.n_boot,
                     seed=args.seed)
    for t in c.tasks:
        if t.config_diffs:
            print(f"warning: task {t.task!r} settings differ: {'; '.join(t.config_diffs)}", file=sys.stderr)
    out = Path(args.out)
    doc = c.to_dict()
    validate(json.loads(dumps(doc)), "compare")
    atomic_write_json(out / "compare.json", doc)
    print(summary_table(c))
    print(f"\ncompare: {out / 'compare.json'}")
    return 0
