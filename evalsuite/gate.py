"""``python -m evalsuite gate --baseline FILE_OR_DIR --candidate RUN_DIR``: the CI regression gate.

Accuracy, per task on the paired samples (same sample id in both runs), with a margin ``m`` in
percentage points (default 2) and a one-sided level ``alpha`` (default 0.05). ``delta`` is the
candidate's mean sample score minus the baseline's; ``[L, U]`` is its two-sided ``1 - 2*alpha``
interval (so L and U are one-sided ``1 - alpha`` bounds):

- **FAIL** when the candidate is significantly worse AND the estimated loss is beyond the margin:
  the one-sided paired test of "no change" against "worse" rejects at alpha (Holm-adjusted across
  the gated tasks) and ``delta < -m``. A regression of 9 answers right → wrong and none the other
  way on 200 samples (-4.5 points, p = 0.002) fails at the 2-point margin, though its interval
  still reaches -2. Two identical models fail with probability at most alpha (the test's level;
  Holm keeps that for the gate as a whole).
- **PASS** when ``L > -m``: non-inferiority shown (one-sided test at alpha of H0: delta <= -m).
- **INCONCLUSIVE** otherwise: too few samples to tell. Reported, but it does not fail the gate. Its
  reason says when the task cannot fail at this size at all: the test's smallest attainable p
  (1/2^C for C source clusters, every cluster worse; Holm-adjusted with the other tasks' p as
  observed) is above alpha ("cannot fail at this size: 5 source clusters, smallest attainable p
  0.125 after Holm"), and when the interval lies wholly below ``-m`` though the test did not reject.

The test and the interval are the ones ``compare`` uses (``evalsuite.paired``): exact McNemar for
0/1 scores when no two samples share a source, else the cluster sign-flip test (samples sharing a
video, document or audio file move together); the interval is the hull of the paired cluster
bootstrap and Tango's score interval, which stays honest when there are few or no discordant
pairs (30 identical answers cannot show that two models are within 2 points), both corrected
for shared clusters (design effect and t(C-1): ``evalsuite.paired.paired_interval``). A sample the
baseline scored and the candidate errored on counts as wrong for the candidate.

Efficiency: for every figure both sides report whose direction is known (throughput up, latency
down) the speed ratio candidate/baseline (inverted for latencies). Each side may be several runs,
repeats of one model on one machine (``--baseline B1 B2 B3 --candidate C1 C2 C3``; accuracy uses the
first of each): the ratio is then of geometric means, with one-sided ``1 - alpha`` Student t bounds
from the spread of the log figures within the sides. FAIL when the candidate is shown to be more
than ``--max-slowdown`` percent slower (one-sided t test at alpha, Holm-adjusted across figures),
PASS when the lower bound is within it, INCONCLUSIVE otherwise. With one run per side the noise is
not estimated and the point ratio decides (FAIL beyond ``--max-slowdown``): on a shared CPU two
runs of one model often differ by more than 20%, so gate with repeats there. A candidate run that
reports 0 or nothing for a figure the baseline has FAILs. Only for a task whose runs hold the same
samples (a run's figures are over its own samples), or a load test (the throughput task: its
samples are the requests its SLO search sent, different in every run; its figures compare by its
settings). Skipped when the sides ran on different hardware (device, CPU model and core count, GPU
model and count; for a remote ``openai:`` model also the server: base URL, served model and the
device an evalsuite server reports), and the verdict says so ("PASS (accuracy only: throughput not
gated, different hardware)"): a CI job on other hardware gates throughput against baseline runs
made in the same job. Skipped likewise when the runs' speed settings differ where both record them
(the model's ``batch_size``, else the run's ``--batch-size`` as ``environment.batch_size``, which
every backend's run records; an ``openai:`` client's ``max_concurrency``; the number of torchrun
processes, ``environment.processes``: "different run settings").
A side's repeats share hardware and settings.

Baselines (committed under ``results/baselines/``, see ``load_baseline``): ``--baseline`` is a run
folder, a results.json file, or a folder of baselines, each either ``<name>.json`` with its samples
in ``<name>/samples/<task>.jsonl``, or a run folder ``<name>/results.json`` + ``<name>/samples/``;
in either layout a task the results list with samples but whose samples file is missing is an
error. From a folder, ``--baseline-name`` picks one; otherwise the one whose model name, then
precision, matches the candidate's, and the CLI prints which one and why. ``--save-baseline NAME``
writes the candidate into that layout after a PASS, and only when the candidate ran every task of
the baseline ``NAME`` it replaces with no fewer samples of any (else one line says why it was not
saved; the exit status stays the gate's); ``--force-save`` waives those rules for a deliberate
re-baselining, but a candidate that is not complete is never saved.

Inputs the gate refuses (exit 2, one line): a baseline run that is not ``complete`` (its errored
samples would count as wrong for it and flatter the candidate; ``--allow-incomplete-baseline`` gates
anyway and the verdict says so), and a run on either side that says it is complete while a task's
samples file holds another number of distinct sample ids than its ``n_samples`` (its files disagree).

The gate as a whole also FAILs when the candidate run is not ``complete`` (interrupted, or failed
its ``--max-error-rate``), when it did not run a task of the baseline (every task of the baseline is
required; with ``--tasks``, the named ones: "not run by the candidate", also shown as a SKIPPED row),
when a task's candidate has none of the samples the baseline scored, and when nothing at all was
compared (no sample scored in both runs, no efficiency figure): a gate that checked nothing must not
pass. A candidate task the baseline lacks is noted as not gated. Samples of one id asked different
prompts in the two runs are noted (not refused: a prompt change may be what is gated). ``gate.json``
keeps the whole-gate failures in ``fail_reasons`` and each run's ``status_reasons``, which the page
shows under its verdict.

Exit status: 0 when nothing failed (PASS / INCONCLUSIVE), 1 on any FAIL, 2 on a usage error or
inconsistent input.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Sequence

import numpy as np
from scipy.stats import t as student_t

from evalsuite.compare import (CompareError, check_configs, check_same_data, comparable_figures, config_differences,
                               efficiency_direction, format_table, measured_under_load, numeric_figures,
                               prompt_differences, select_tasks)
from evalsuite.paired import Paired, holm, pair, paired_interval, paired_test, smallest_p
from evalsuite.results import (GATE_SCHEMA_VERSION, RunFormatError, atomic_write_json, atomic_write_text,
                               describe_hardware, dumps, hardware, load_results, load_run, model_identity, read_samples,
                               results_path, settings_differences, validate)
from evalsuite.stats import N_BOOT, fmt_p, points, speed_bounds
from evalsuite.types import SampleResult

PASS, FAIL, INCONCLUSIVE, SKIPPED = "PASS", "FAIL", "INCONCLUSIVE", "SKIPPED"
Run = tuple[dict[str, Any], dict[str, list[SampleResult]]]


class GateError(RunFormatError):
    """The gate cannot run as asked (no matching baseline, bad option…)."""


# ---- baselines ----------------------------------------------------------------------------------
def _no_samples(path: Path, task: str, expected: Path) -> GateError:
    return GateError(f"baseline {path} has no sample file for task {task!r} "
                     f"(expected {expected}; the gate needs per-sample scores)")


def _load_json_baseline(path: Path) -> Run:
    """``<name>.json`` with samples in ``<name>/samples/<task>.jsonl`` (else beside the file)."""
    results = load_results(path)
    sibling = path.with_suffix("")
    samples: dict[str, list[SampleResult]] = {}
    for task, t in results["tasks"].items():
        candidates = [sibling / "samples" / f"{task}.jsonl", path.parent / (t.get("samples_file") or f"samples/{task}.jsonl")]
        found = next((c for c in candidates if c.exists()), None)
        if found is None and t.get("n_samples"):
            raise _no_samples(path, task, candidates[0])
        samples[task] = list(read_samples(found).values()) if found is not None else []
    return results, samples


def _load_any(path: Path) -> Run:
    """A baseline run: a ``.json`` file with its samples beside it, or a run folder. Either way a task
    the results list with samples (n_samples > 0) whose sample file is missing is an error, not a task
    silently left ungated."""
    if path.is_file():
        if path.suffix != ".json":
            raise GateError(f"--baseline {path}: expected a run folder, a results .json file or a folder of baselines")
        return _load_json_baseline(path)
    results, samples = load_run(path)
    for task, t in results["tasks"].items():
        expected = results_path(path).parent / (t.get("samples_file") or f"samples/{task}.jsonl")
        if t.get("n_samples") and not expected.exists():
            raise _no_samples(path, task, expected)
    return results, samples


def list_baselines(folder: Path) -> dict[str, Path]:
    """Baselines in a folder: ``<name>.json`` files and ``<name>/results.json`` run folders."""
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix == ".json":
            found[p.stem] = p
        elif p.is_dir() and (p / "results.json").exists() and p.name not in found:
            found[p.name] = p
    return found


def load_baseline(path: str | Path, candidate: dict[str, Any], name: str | None = None) -> tuple[Run, str]:
    """The baseline run for ``candidate`` (its results.json) and a label naming where it came from."""
    chosen, _ = find_baseline(path, candidate, name)
    return _load_any(chosen), str(chosen)


def find_baseline(path: str | Path, candidate: dict[str, Any], name: str | None = None) -> tuple[Path, str | None]:
    """Where the baseline for ``candidate`` is, and why it was chosen from a folder (None: ``path``
    is the baseline itself)."""
    path = Path(path)
    if not path.exists():
        raise GateError(f"--baseline {path} does not exist (expected a run folder, a results .json file or a folder of baselines)")
    if path.is_file() or (path / "results.json").exists():
        if name:
            raise GateError(f"--baseline-name {name!r} needs --baseline to be a folder of baselines, not {path}")
        return path, None
    found = list_baselines(path)
    if not found:
        raise GateError(f"no baseline in {path} (expected <name>.json + <name>/samples/, or <name>/results.json run folders)")
    if name:
        if name not in found:
            raise GateError(f"no baseline named {name!r} in {path} (have: {', '.join(found)})")
        return found[name], f"named by --baseline-name {name}"
    models = {n: load_results(p)["model"] for n, p in found.items()}
    cm = candidate["model"]
    for key in ("name", "precision"):
        hits = [n for n, m in models.items() if cm.get(key) is not None and m.get(key) == cm.get(key)]
        if len(hits) == 1:
            return found[hits[0]], (f"its model name {cm.get(key)!r} is the candidate's" if key == "name" else
                                    f"no baseline has the candidate's model name {cm.get('name')!r}; this one has "
                                    f"its precision {cm.get(key)!r}")
        if len(hits) > 1:
            raise GateError(f"several baselines in {path} match the candidate's model {key} {cm.get(key)!r} "
                            f"({', '.join(hits)}); pick one with --baseline-name")
    have = ", ".join(f"{n} (model {m.get('name')}, {m.get('precision')})" for n, m in models.items())
    raise GateError(f"no baseline in {path} matches the candidate (model {cm.get('name')!r}, precision "
                    f"{cm.get('precision')!r}); have: {have}; pick one with --baseline-name")


def save_baseline(run_dir: str | Path, folder: str | Path, name: str) -> Path:
    """Write a run as committed baseline ``<folder>/<name>.json`` + ``<folder>/<name>/samples/``."""
    results, samples = load_run(run_dir)
    folder = Path(folder)
    if not name or "/" in name or name.startswith("."):
        raise GateError(f"baseline name must be a plain file name, got {name!r}")
    target = folder / f"{name}.json"
    sample_dir = folder / name / "samples"
    if sample_dir.exists():
        shutil.rmtree(sample_dir)
    stale = folder / name / "results.json"  # an older run-folder baseline of the same name
    if stale.exists():
        stale.unlink()
    sample_dir.mkdir(parents=True)

    for task, rows in samples.items():
        atomic_write_text(sample_dir / f"{task}.jsonl", "".join(dumps(r.to_dict()) + "\n" for r in rows))
        results["tasks"][task]["samples_file"] = f"{name}/samples/{task}.jsonl"
    atomic_write_json(target, results)
    return target


def save_refusal(verdict: str, candidate: Run, folder: Path, name: str, *, force: bool = False,
                 gated: Collection[str] | None = None, against: Path | None = None) -> str | None:
    """Why ``--save-baseline NAME`` must not write ``candidate`` into ``folder`` (None: it may).

    A baseline is replaced only by a run that passed the gate against that very baseline (``against``,
    the one gated), with every task the two share gated (``gated``: the tasks the gate decided, by
    accuracy or efficiency; a ``--tasks`` subset leaves the others unchecked), that ran every task of
    the baseline it replaces and no fewer samples of any: otherwise what it lacks, or lost unseen,
    would never be gated again. ``force`` (``--force-save``, deliberate re-baselining) waives those
    rules, but never saves a run that is not complete (a baseline must be a finished run)."""
    rc, sc = candidate
    if rc.get("status") != "complete":
        return f"the candidate run is {rc.get('status')}, not complete: a baseline must be a finished run"
    if force:
        return None
    if verdict != PASS:
        return f"the gate's verdict is {verdict}, not PASS (re-baseline deliberately with --force-save)"
    old_path = list_baselines(folder).get(name)
    if old_path is None:
        return None
    if against is not None and Path(old_path).resolve() != Path(against).resolve():
        return (f"the gate ran against {against}, not baseline {name}: gate against the one it replaces "
                f"(--baseline-name {name}) or re-baseline deliberately with --force-save")
    try:
        rb, sb = _load_any(old_path)
    except RunFormatError as e:
        return f"the baseline {name} it would replace cannot be read ({e}); replace it deliberately with --force-save"
    lost = [t for t in rb["tasks"] if t not in rc["tasks"]]
    if lost:
        return (f"baseline {name} has task(s) {', '.join(lost)} that the candidate did not run: saving would stop "
                f"gating them (re-baseline deliberately with --force-save)")
    unchecked = [t for t in rb["tasks"] if gated is not None and t not in gated]
    if unchecked:
        return (f"task(s) {', '.join(unchecked)} of baseline {name} were not gated (--tasks, or nothing to "
                f"compare): saving would replace them unchecked (gate every task, or re-baseline "
                f"deliberately with --force-save)")
    fewer = [f"{t} {len(sc.get(t, []))} < {len(sb.get(t, []))}" for t in rb["tasks"]
             if len(sc.get(t, [])) < len(sb.get(t, []))]
    if fewer:
        return (f"the candidate has fewer samples than baseline {name} ({'; '.join(fewer)}): saving would stop "
                f"gating the rest (re-baseline deliberately with --force-save)")
    return None


# ---- accuracy -----------------------------------------------------------------------------------
@dataclass
class TaskVerdict:
    task: str
    verdict: str
    n: int = 0
    n_clusters: int = 0
    baseline: float | None = None
    candidate: float | None = None
    delta: float | None = None
    lower: float | None = None  # one-sided (1 - alpha) bounds of delta
    upper: float | None = None
    n_improved: int = 0
    n_worsened: int = 0
    n_candidate_errors: int = 0
    method: str = ""  # of the interval
    test: str = ""  # of "no change" against "the candidate is worse"
    p_worse: float | None = None  # one-sided p of that test
    p_worse_holm: float | None = None  # Holm-adjusted across the gated tasks: what FAIL uses
    p_worse_floor: float | None = None  # the smallest p_worse_holm this size allows (every cluster worse)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def decide(task: str, p: Paired, *, margin: float, alpha: float, p_worse_adjusted: float | None = None,
           p_worse_floor: float | None = None, n_tasks: int = 1, n_boot: int = N_BOOT, seed: int = 0) -> TaskVerdict:
    """Verdict for one task; ``margin`` in score units (0.02 = 2 points).

    ``p_worse_adjusted``: the task's one-sided p-value after adjustment across the ``n_tasks`` gated
    tasks (``gate_tasks``); the task's own p-value when None (a gate of one task). ``p_worse_floor``:
    the smallest value that adjusted p could take at this size, every cluster worse (``smallest_p``,
    adjusted alike; its own when None). When it is above ``alpha`` the task cannot FAIL, however
    much worse the candidate is, and an INCONCLUSIVE reason says so.
    """
    if p.n == 0 and p.n_only_a:
        return TaskVerdict(task, FAIL, reason=f"the candidate has none of the {p.n_only_a} samples the baseline "
                                              f"scored (its samples file is missing, or it ran other samples)")
    if p.n == 0:
        return TaskVerdict(task, SKIPPED, reason="no sample scored in both runs")
    (lo, hi), method = paired_interval(p, level=1.0 - 2.0 * alpha, n_boot=n_boot, seed=seed)
    test, pw = paired_test(p, alternative="less", seed=seed)
    padj = pw if p_worse_adjusted is None else p_worse_adjusted
    floor = min(pw, smallest_p(p)) if p_worse_floor is None else p_worse_floor
    n_clusters = len(set(p.clusters))
    v = TaskVerdict(task, INCONCLUSIVE, n=p.n, n_clusters=n_clusters, baseline=float(p.a.mean()),
                    candidate=float(p.b.mean()), delta=float(p.d.mean()), lower=lo, upper=hi,
                    n_improved=p.n_improved, n_worsened=p.n_worsened, n_candidate_errors=p.n_b_errors_as_wrong,
                    method=method, test=test, p_worse=pw, p_worse_holm=padj, p_worse_floor=floor)
    m = f"{100 * margin:.1f}"
    assert v.delta is not None
    holm_ = f" after Holm across {n_tasks} tasks" if n_tasks > 1 else ""
    size = f"{n_clusters} source clusters" if n_clusters < p.n else f"{p.n} samples, each its own source"
    cannot = (f"it cannot fail at this size: {size}, smallest attainable p {fmt_p(floor)}{holm_} > {alpha} "
              f"(gate more samples, from more sources)")
    if padj <= alpha and v.delta < -margin:
        v.verdict, v.reason = FAIL, (f"worse by {points(-v.delta, False)} points, more than the {m}-point margin, "
                                     f"and significant (one-sided {test} p = {fmt_p(padj)} <= {alpha})")
    elif lo > -margin:
        v.verdict, v.reason = PASS, f"non-inferior within {m} points (lower bound {points(lo)})"
    elif v.delta < -margin:
        worse = f"worse by {points(-v.delta, False)} points"
        if hi < -margin:  # the interval is past the margin, yet the test cannot or did not reject
            worse += f", its interval [{points(lo)}, {points(hi)}] entirely below -{m}"
        if floor > alpha:
            v.reason = f"{worse}, but {cannot}"
        elif hi < -margin:
            v.reason = (f"{worse}, but the one-sided {test} test did not reject (p = {fmt_p(padj)}{holm_} > "
                        f"{alpha}): too few samples to tell")
        else:
            v.reason = (f"{worse}, but not significantly (one-sided {test} p = {fmt_p(padj)} > {alpha}): "
                        f"too few samples to tell")
    else:
        v.reason = (f"interval [{points(lo)}, {points(hi)}] contains -{m}: too few samples to tell"
                    f"{samples_to_decide(p, margin, alpha, lo)}" + (f"; {cannot}" if floor > alpha else ""))
    return v


def samples_to_decide(p: Paired, margin: float, alpha: float, lower: float | None = None) -> str:
    """About how many samples would put the lower bound within the margin if the pairs kept their
    proportions: the counts scaled up under Tango's score bound at the gate's level (the sums of the
    positive and negative differences for fractional scores), its distance from the difference
    widened by as much as the gate's own ``lower`` bound (the hull with the bootstrap, the
    clustering) is wider now. A hint for sizing --limit, not a promise. Empty when the difference
    itself is at or beyond the margin."""
    from statistics import NormalDist

    from evalsuite.paired import _tango_bounds

    d = np.asarray(p.d, dtype=np.float64)
    x, y, n = float(d[d > 0].sum()), float(-d[d < 0].sum()), float(d.size)
    if n == 0 or (x - y) / n <= -margin:
        return ""
    z = NormalDist().inv_cdf(1.0 - alpha)
    delta = (x - y) / n
    gap = delta - _tango_bounds(x, y, n, z)[0]
    widen = max(1.0, (delta - lower) / gap) if lower is not None and gap > 0 else 1.0

    def decided(k: float) -> bool:
        return delta - widen * (delta - _tango_bounds(x * k, y * k, n * k, z)[0]) > -margin

    hi = 100.0
    if not decided(hi):
        return f" (at this difference and spread, more than {int(100 * n):,} samples would be needed)"
    lo = 1.0
    for _ in range(60):  # the bound rises with k: bisection on the scale
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if decided(mid) else (mid, hi)
    return f" (at this difference and spread, about {math.ceil(n * hi):,} samples would show it within the margin)"


def gate_tasks(pairs: dict[str, Paired], *, margin: float, alpha: float, n_boot: int = N_BOOT,
               seed: int = 0) -> list[TaskVerdict]:
    """Verdicts of several tasks, the "worse" p-values Holm-adjusted across them, so that a gate of
    two identical models fails with probability at most ``alpha`` however many tasks it gates."""
    raw = [paired_test(p, alternative="less", seed=seed)[1] if p.n else None for p in pairs.values()]
    adjusted = holm(raw)
    # each task's smallest attainable adjusted p: its p at the least its size allows, the others' as observed
    floors = [None if x is None else holm([min(x, smallest_p(p)) if j == i else y for j, y in enumerate(raw)])[i]
              for i, (p, x) in enumerate(zip(pairs.values(), raw))]
    n_tasks = sum(x is not None for x in raw)
    return [decide(t, p, margin=margin, alpha=alpha, p_worse_adjusted=padj, p_worse_floor=floor, n_tasks=n_tasks,
                   n_boot=n_boot, seed=seed)
            for (t, p), padj, floor in zip(pairs.items(), adjusted, floors)]


# ---- efficiency ---------------------------------------------------------------------------------
@dataclass
class EfficiencyVerdict:
    task: str
    key: str
    baseline: float  # the figure (geometric mean over the baseline's runs)
    candidate: float | None  # the same over the candidate's runs; None: a candidate run does not report it
    speed_ratio: float  # > 1: candidate faster; 0 when the candidate reports 0 throughput or nothing
    verdict: str
    n_baseline: int = 1  # runs of each side the figure is measured over
    n_candidate: int = 1
    lower: float | None = None  # one-sided (1 - alpha) bounds of the speed ratio from the run-to-run
    upper: float | None = None  # spread; None with one run per side (the noise is then not estimated)
    p_beyond: float | None = None  # one-sided p of "at most max_slowdown slower" (small: slower than that)
    p_beyond_holm: float | None = None  # Holm-adjusted across the gated figures: what FAIL uses
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _as_list(effs: dict[str, Any] | Sequence[dict[str, Any] | None] | None) -> list[dict[str, Any] | None]:
    return [effs] if effs is None or isinstance(effs, dict) else list(effs)


def _gmean(values: Sequence[float]) -> float:
    return float(values[0]) if len(values) == 1 else math.exp(float(np.log(np.asarray(values, dtype=np.float64)).mean()))


def speed_test(base: Sequence[float], cand: Sequence[float], direction: int, alpha: float,
               max_slowdown: float) -> tuple[float, float | None, float | None, float | None]:
    """(speed ratio, lower, upper, p beyond) of one figure measured in several runs per side.

    The ratio is that of geometric means (candidate over baseline, inverted for a latency). The
    run-to-run noise is estimated from the spread of the log figures within each side (pooled: the
    runs are on one machine); ``lower``/``upper`` are the one-sided ``1 - alpha`` Student t bounds of
    the ratio, and ``p beyond`` the one-sided p of H0 "the candidate is at most ``max_slowdown``
    slower" (small: it is slower than that). With one run per side the noise cannot be estimated:
    the plain ratio, and None for the rest."""
    if len(base) + len(cand) < 3:  # one run per side
        return (cand[0] / base[0] if direction > 0 else base[0] / cand[0]), None, None, None
    x = direction * np.log(np.asarray(base, dtype=np.float64))
    y = direction * np.log(np.asarray(cand, dtype=np.float64))
    d = float(y.mean() - x.mean())
    df = x.size + y.size - 2
    ss = float(((x - x.mean()) ** 2).sum() + ((y - y.mean()) ** 2).sum())
    se = math.sqrt(ss / df) * math.sqrt(1.0 / x.size + 1.0 / y.size)
    floor = math.log(1.0 - max_slowdown) if max_slowdown < 1.0 else -math.inf
    if se == 0.0:  # every run of each side measured exactly the same: the difference is certain
        return _exp(d), _exp(d), _exp(d), (0.0 if d < floor else 1.0)
    q = float(student_t.ppf(1.0 - alpha, df))
    return _exp(d), _exp(d - q * se), _exp(d + q * se), float(student_t.cdf((d - floor) / se, df))


def _exp(x: float) -> float:
    """exp, held within float range (a tiny --alpha with two runs reaches t quantiles of 1e5)."""
    return math.exp(max(-700.0, min(700.0, x)))


def measure_efficiency(task: str, eff_base: dict[str, Any] | Sequence[dict[str, Any] | None] | None,
                       eff_cand: dict[str, Any] | Sequence[dict[str, Any] | None] | None,
                       alpha: float = 0.05, max_slowdown: float = 0.2,
                       notes: list[str] | None = None) -> list[EfficiencyVerdict]:
    """The figures of one task to gate, measured (verdicts not decided yet: see ``decide_efficiency``).

    ``eff_base`` / ``eff_cand``: a run's efficiency figures, or a list of them, one per run of that
    side (repeats of one model on one machine). A figure the baseline reports (> 0) that a candidate
    run reports as 0 (a throughput: nothing met the SLO) or not at all (null, absent) is a FAIL, not
    a figure left out: a candidate that can no longer reach the latency target must not pass the
    gate because its figure went missing. A figure whose candidate values are none of them usable
    (negative, a latency of 0) is left out, or a run's unusable value is, with a line in ``notes``."""
    notes = notes if notes is not None else []
    bases = [numeric_figures(e) for e in _as_list(eff_base)]
    cands = [numeric_figures(e) for e in _as_list(eff_cand)]
    out = []
    for key in dict.fromkeys(k for b in bases for k in b):  # every baseline run's figures, first-seen order
        direction = efficiency_direction(key)
        a = [b[key] for b in bases if key in b and 0 < b[key] < math.inf]
        if direction == 0 or not a:
            continue  # a figure of unknown direction, or one no baseline run measured (> 0)
        base_mean = _gmean(a)
        got = [c.get(key) for c in cands]
        n_none = sum(v is None for v in got)
        n_zero = sum(v == 0 and direction > 0 for v in got)  # a throughput of 0: nothing met the SLO
        if n_none or n_zero:
            v = EfficiencyVerdict(task, key, base_mean, 0.0 if n_zero else None, 0.0, FAIL, len(a), len(got))
            what = " and ".join(w for w, k in (("nothing", n_none), ("0", n_zero)) if k)
            if len(got) > 1:
                what = " and ".join(f"{w} in {k}" for w, k in (("nothing", n_none), ("0", n_zero)) if k)
                what += f" of its {len(got)} runs"
            v.reason = f"the candidate reports {what} for a figure the baseline has"
            out.append(v)
            continue
        b = [float(v) for v in got if v is not None and 0 < v < math.inf]
        if len(b) < len(got):
            bad = ", ".join(repr(v) for v in got if not (v is not None and 0 < v < math.inf))
            notes.append(f"task {task!r}: {key} " + ("not gated" if not b else f"gated over {len(b)} of the "
                         f"candidate's {len(got)} runs") + f": the candidate reports {bad}, not a measurement")
        if not b:
            continue
        speed, lo, hi, p = speed_test(a, b, direction, alpha, max_slowdown)
        out.append(EfficiencyVerdict(task, key, base_mean, _gmean(b), speed, "",
                                     len(a), len(b), lo, hi, p, p))
    return out


def decide_efficiency(v: EfficiencyVerdict, max_slowdown: float, alpha: float) -> EfficiencyVerdict:
    """Set the verdict of a measured figure (``p_beyond_holm`` already adjusted across figures).

    One run per side: FAIL beyond ``max_slowdown``, else PASS (the noise is not estimated: identical
    runs on a shared 2-core CPU differ by up to a third). Several runs on a side: FAIL when the
    candidate is shown to be more than ``max_slowdown`` slower (one-sided t test at ``alpha``, Holm
    across the figures; for one figure: the upper bound of the speed ratio is below
    ``1 - max_slowdown``), PASS when the lower bound is at or above it, INCONCLUSIVE otherwise. A
    candidate exactly ``max_slowdown`` slower fails with probability at most alpha, and two runs
    of one model far less often."""
    if v.verdict == FAIL:  # a figure missing from the candidate
        return v
    floor = 1.0 - max_slowdown
    allowed = f"{100 * max_slowdown:.0f}%"
    slower = f"{100 * (1.0 - v.speed_ratio):.1f}% slower"
    if v.lower is None or v.upper is None or v.p_beyond_holm is None:
        runs = "one run per side: the run-to-run noise is not estimated (give each side several runs)"
        if v.speed_ratio < floor:
            v.verdict, v.reason = FAIL, f"{slower}, beyond the allowed {allowed}; {runs}"
        else:
            v.verdict, v.reason = PASS, f"within the allowed {allowed}; {runs}"
        return v
    runs = f"{v.n_baseline} + {v.n_candidate} runs"
    if v.p_beyond_holm <= alpha:
        v.verdict, v.reason = FAIL, (f"{slower}: more than the allowed {allowed}, significantly over {runs} "
                                     f"(one-sided t test p = {fmt_p(v.p_beyond_holm)} <= {alpha})")
    elif v.lower >= floor:
        v.verdict, v.reason = PASS, f"within the allowed {allowed} (lower bound {v.lower:.3f}x over {runs})"
    elif v.upper < floor:  # the bounds are past the allowance, yet the Holm-adjusted test did not reject
        v.verdict, v.reason = INCONCLUSIVE, (f"{slower}, bounds [{v.lower:.3f}x, {v.upper:.3f}x] over {runs} "
                                             f"entirely below {floor:.2f}x, but not significantly after Holm "
                                             f"across the gated figures (one-sided t test p = "
                                             f"{fmt_p(v.p_beyond_holm)} > {alpha}): give more runs")
    else:
        v.verdict, v.reason = INCONCLUSIVE, (f"{'faster' if v.speed_ratio >= 1 else slower}, bounds "
                                             f"[{v.lower:.3f}x, {v.upper:.3f}x] over {runs} reach "
                                             f"{floor:.2f}x: the runs vary too much to tell; give more runs")
    return v


def gate_efficiency(figures: list[EfficiencyVerdict], max_slowdown: float, alpha: float) -> list[EfficiencyVerdict]:
    """Decide measured figures, their "beyond the allowance" p-values Holm-adjusted across them all."""
    adjusted = holm([f.p_beyond for f in figures])
    for f, padj in zip(figures, adjusted):
        f.p_beyond_holm = padj
    return [decide_efficiency(f, max_slowdown, alpha) for f in figures]


def check_efficiency(task: str, eff_base: dict[str, Any] | Sequence[dict[str, Any] | None] | None,
                     eff_cand: dict[str, Any] | Sequence[dict[str, Any] | None] | None,
                     max_slowdown: float, alpha: float = 0.05) -> list[EfficiencyVerdict]:
    """Measure and decide one task's figures (``measure_efficiency`` + ``gate_efficiency``)."""
    return gate_efficiency(measure_efficiency(task, eff_base, eff_cand, alpha, max_slowdown), max_slowdown, alpha)


def verdict_text(verdict: str, efficiency_skipped: str | None, baseline_status: str = "complete") -> str:
    """The one line a CI log shows: the verdict, and what it does not cover."""
    said = []
    if efficiency_skipped and efficiency_skipped.startswith(("different hardware", "different run settings")):
        said.append(f"accuracy only: throughput not gated, {efficiency_skipped.split(' (')[0]}")
    elif efficiency_skipped:
        said.append(f"accuracy only: throughput {efficiency_skipped}")
    if baseline_status != "complete":
        said.append(f"against a {baseline_status} baseline run, allowed by --allow-incomplete-baseline")
    return f"{verdict} ({'; '.join(said)})" if said else verdict


# ---- the gate -----------------------------------------------------------------------------------
@dataclass
class GateResult:
    baseline_label: str
    candidate_label: str
    baseline_model: dict[str, Any]
    candidate_model: dict[str, Any]
    margin: float
    alpha: float
    max_slowdown: float
    tasks: list[TaskVerdict]
    efficiency: list[EfficiencyVerdict]
    notes: list[str] = field(default_factory=list)
    baseline_status: str = "complete"
    candidate_status: str = "complete"
    efficiency_skipped: str | None = None  # why efficiency was not gated (None: it was)
    fail_reasons: list[str] = field(default_factory=list)  # failures of the gate as a whole (also in notes)
    baseline_reasons: list[str] = field(default_factory=list)  # the runs' own status_reasons
    candidate_reasons: list[str] = field(default_factory=list)
    baseline_repeats: list[str] = field(default_factory=list)  # labels of each side's further runs
    candidate_repeats: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return (bool(self.fail_reasons) or any(t.verdict == FAIL for t in self.tasks)
                or any(e.verdict == FAIL for e in self.efficiency))

    @property
    def verdict(self) -> str:
        if self.failed:
            return FAIL
        shown = [t.verdict for t in self.tasks if t.verdict != SKIPPED] + [e.verdict for e in self.efficiency]
        return PASS if shown and all(v == PASS for v in shown) else INCONCLUSIVE

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": GATE_SCHEMA_VERSION, "kind": "gate",
            "verdict": self.verdict,
            "baseline": {"path": self.baseline_label, "status": self.baseline_status, "model": self.baseline_model,
                         "status_reasons": self.baseline_reasons, "repeats": self.baseline_repeats},
            "candidate": {"path": self.candidate_label, "status": self.candidate_status, "model": self.candidate_model,
                          "status_reasons": self.candidate_reasons, "repeats": self.candidate_repeats},
            "margin_points": 100 * self.margin, "alpha": self.alpha, "max_slowdown_pct": 100 * self.max_slowdown,
            "verdict_text": verdict_text(self.verdict, self.efficiency_skipped, self.baseline_status),
            "efficiency_skipped": self.efficiency_skipped,
            "tasks": [t.to_dict() for t in self.tasks], "efficiency": [e.to_dict() for e in self.efficiency],
            "notes": self.notes, "fail_reasons": self.fail_reasons,
        }


def check_consistent(run: Run, label: str, side: str) -> None:
    """A run that says it is complete holds, for each task, as many distinct sample ids in its samples
    file as its results.json counts (``n_samples``); otherwise its files disagree (a partial copy, lines
    filtered away) and the gate would judge other samples than the run scored: GateError. A
    candidate's task with no sample lines at all is left to its row (a FAIL: "none of the samples"); a
    baseline's is refused here. (The recorded metric is not recomputed from the lines: a task's
    primary metric need not be their mean, e.g. OCRBench v2's mean of per-type means.)"""
    results, samples = run
    if results.get("status") != "complete":
        return
    for t, entry in results["tasks"].items():
        n, have = entry.get("n_samples"), len({r.id for r in samples.get(t, [])})
        if n is None or have == n or (side == "candidate" and have == 0):
            continue
        where = entry.get("samples_file") or f"samples/{t}.jsonl"
        raise GateError(f"{side} {label}: task {t!r}: {where} holds {have} distinct sample id(s) but its results.json "
                        f"says n_samples {n} (the run is complete): its files disagree (a partial copy?); refusing "
                        f"inconsistent input")


def check_repeats(first: Run, label: str, repeats: Sequence[tuple[Run, str]], names: Sequence[str], side: str,
                  allow_config_mismatch: bool) -> None:
    """Repeats of a side are runs of the same model, settings and samples on the same machine."""
    r0, s0 = first
    for (r, s), lab in repeats:
        cut_short = side == "candidate" and r.get("status") != "complete"  # a FAIL below, not a usage error
        if hardware(r) != hardware(r0):
            raise GateError(f"{side} run {lab}: other hardware than {label} ({describe_hardware(r)}; "
                            f"{describe_hardware(r0)}): a side's runs are repeats on one machine")
        if settings := settings_differences(r0, r, mixed_matches_mixed=True):
            raise GateError(f"{side} run {lab}: other run settings than {label} ({'; '.join(settings)}): a side's "
                            f"runs are repeats with one set of settings")
        if model_identity(r["model"]) != model_identity(r0["model"]):
            raise GateError(f"{side} run {lab}: another model than {label} ({model_identity(r['model'])}; "
                            f"{model_identity(r0['model'])}): a side's runs are repeats of one model")
        for t in names:
            if t not in r["tasks"] and not cut_short:
                raise GateError(f"{side} run {lab} has no task {t!r} ({label} has it): a side's runs are repeats")
            ids, ids0 = {x.id for x in s.get(t, [])}, {x.id for x in s0.get(t, [])}
            if (t in r["tasks"] and not comparable_figures(r0["tasks"][t], r["tasks"][t], ids0, ids)
                    and not cut_short and r0.get("status") == "complete"):
                raise GateError(f"{side} run {lab}: task {t!r} holds other samples than {label} "
                                f"({len(ids)} and {len(ids0)}, {len(ids & ids0)} in both): repeats run the same samples")
        try:
            check_configs(r0, r, [t for t in names if t in r["tasks"]], allow_mismatch=allow_config_mismatch)
        except CompareError as e:
            raise GateError(f"{side} run {lab} is not a repeat of {label}: {e}") from None


def check_distinct(sides: Sequence[tuple[str, Sequence[tuple[dict[str, Any], str]]]]) -> None:
    """Every run of a gate with repeats is a run of its own: the same run given twice (within a side,
    or on both sides) would count one measurement as two and claim a certainty it does not have.
    ``sides``: (side, [(results, label), …])."""
    seen: dict[str, str] = {}
    for side, runs in sides:
        for r, lab in runs:
            rid = r.get("run_id")
            if rid is None:
                continue
            if rid in seen:
                raise GateError(f"{side} run {lab} is {seen[rid]} again (run_id {rid}): with repeats every run "
                                f"must be another run of its model, not the same one given twice")
            seen[rid] = f"{side} run {lab}"


def run_gate(baseline: Run, candidate: Run, *, margin_points: float = 2.0, alpha: float = 0.05,
             max_slowdown_pct: float | None = 20.0, tasks: Sequence[str] | None = None,
             allow_config_mismatch: bool = False, baseline_label: str = "baseline",
             candidate_label: str = "candidate", n_boot: int = N_BOOT, seed: int = 0,
             baseline_repeats: Sequence[tuple[Run, str]] = (),
             candidate_repeats: Sequence[tuple[Run, str]] = (),
             allow_incomplete_baseline: bool = False) -> GateResult:
    """Gate a loaded candidate run against a loaded baseline run (``load_run`` outputs).

    ``*_repeats``: more runs of each side, ``(run, label)``, repeats of the same model on the same
    samples and machine: accuracy is gated on the first run of each side, efficiency on all of them
    (the run-to-run noise of a figure is estimated from their spread).

    A baseline run that is not complete is refused (GateError): the samples it errored on count as
    wrong for it, which flatters the candidate. ``allow_incomplete_baseline`` gates against it anyway,
    and the verdict says so."""
    if not 0.0 < alpha < 0.5:
        raise GateError(f"--alpha must be in (0, 0.5), got {alpha}")
    if not (margin_points >= 0 and math.isfinite(margin_points)):  # NaN fails both
        raise GateError(f"--margin must be a finite number of points >= 0, got {margin_points}")
    if max_slowdown_pct is not None and not (0 <= max_slowdown_pct < math.inf):
        raise GateError(f"--max-slowdown must be a finite percentage (negative: do not gate efficiency), "
                        f"got {max_slowdown_pct}")
    (rb, sb), (rc, sc) = baseline, candidate
    for r, lab in [(rb, baseline_label), *((r, lab) for (r, _), lab in baseline_repeats)]:
        if r.get("status") != "complete" and not allow_incomplete_baseline:
            why = "; ".join(str(m) for m in r.get("status_reasons") or []) or "no reason recorded"
            raise GateError(f"the baseline run {lab} is {r.get('status')}, not complete ({why}): the samples it "
                            f"errored on or lacks would count against it and flatter the candidate; gate against a "
                            f"finished baseline, or pass --allow-incomplete-baseline")
    for side, first, label, repeats in (("baseline", baseline, baseline_label, baseline_repeats),
                                        ("candidate", candidate, candidate_label, candidate_repeats)):
        for run, lab in [(first, label), *repeats]:
            check_consistent(run, lab, side)
    # the baseline's tasks the gate covers (every one, or those --tasks names) that the candidate did not
    # run: a FAIL below, as a task whose samples were lost is (a narrower gate is asked with --tasks)
    unknown = [t for t in tasks or [] if t not in rb["tasks"]]
    if unknown:
        raise GateError(f"task(s) {', '.join(unknown)} not in the baseline {baseline_label} "
                        f"(it has: {', '.join(rb['tasks']) or 'none'})")
    not_run = [t for t in (tasks or list(rb["tasks"])) if t not in rc["tasks"]]
    try:
        if tasks and len(not_run) == len(tasks):
            names = []
        else:
            names = select_tasks(rb, rc, [t for t in tasks if t not in not_run] if tasks else None,
                                 what="baseline and candidate")
    except CompareError:
        if rc.get("status") == "complete":
            raise
        names = []  # a candidate cut short before it finished any task: a FAIL below, not a usage error
    # a load test (the throughput task) has only efficiency to gate: with efficiency not asked
    # (--max-slowdown < 0) its settings, version included, are noted, not a reason to refuse the gate
    load = [t for t in names if measured_under_load(rb["tasks"][t]) or measured_under_load(rc["tasks"][t])
            ] if max_slowdown_pct is None else []
    checked = [t for t in names if t not in load]
    diffs = check_configs(rb, rc, checked, allow_mismatch=allow_config_mismatch)
    diffs.update({t: config_differences(rb["tasks"][t], rc["tasks"][t]) for t in load})
    for t, d in check_same_data(sb, sc, checked, allow_mismatch=allow_config_mismatch).items():
        diffs[t] = diffs[t] + d
    check_repeats(baseline, baseline_label, baseline_repeats, checked, "baseline", allow_config_mismatch)
    check_repeats(candidate, candidate_label, candidate_repeats, checked, "candidate", allow_config_mismatch)
    # each side's runs, the first (accuracy is gated on it) and its repeats: (results, label)
    base_runs = [(baseline[0], baseline_label), *((r, lab) for (r, _), lab in baseline_repeats)]
    cand_runs = [(candidate[0], candidate_label), *((r, lab) for (r, _), lab in candidate_repeats)]
    if baseline_repeats or candidate_repeats:
        check_distinct([("baseline", base_runs), ("candidate", cand_runs)])
    notes = [f"task {t!r}: settings differ ({'; '.join(d)})" for t, d in diffs.items() if d]
    margin = margin_points / 100.0
    # a metric where lower is better (an lm-eval metric with higher_is_better: false): the paired test
    # reads a higher score as better, so such a task is not gated rather than gated backwards
    lower = [t for t in names if rb["tasks"][t].get("lower_is_better") or rc["tasks"][t].get("lower_is_better")]
    pairs = {t: pair(sb.get(t, []), sc.get(t, []), a_errors_as_wrong=True, b_errors_as_wrong=True)
             for t in names if t not in lower}
    verdicts = gate_tasks(pairs, margin=margin, alpha=alpha, n_boot=n_boot, seed=seed)
    verdicts += [TaskVerdict(t, SKIPPED, reason="its metric is lower-is-better (lm-eval higher_is_better: false); "
                                                "the gate judges higher-is-better scores: not gated") for t in lower]
    # a baseline task the candidate did not run is a row of its own too, so the page shows it where it
    # looks; the gate fails on it as a whole (fail_reasons below)
    verdicts += [TaskVerdict(t, SKIPPED, reason="in the baseline but not run by the candidate: the gate fails")
                 for t in not_run]
    if not tasks:
        extra = [t for t in rc["tasks"] if t not in rb["tasks"]]
        if extra:
            notes.append(f"task(s) {', '.join(extra)}: in the candidate but not in the baseline: not gated "
                         f"(no baseline to gate against)")
    for t, n in prompt_differences(rb, rc, sb, sc, names).items():
        notes.append(f"task {t!r}: {n}")
    for t, p in pairs.items():
        if p.n and (float(p.a.min()) < 0 or float(max(p.a.max(), p.b.max())) > 1):
            notes.append(f"task {t!r}: scores outside [0, 1]; the margin is applied as {margin} score units")
        if p.n_only_a and p.n:  # with none paired the task's row is a FAIL that says so
            notes.append(f"task {t!r}: {p.n_only_a} baseline sample(s) missing from the candidate: not gated")
        for who, r in (("baseline", rb), ("candidate", rc)):
            if r["tasks"][t].get("complete") is False:
                notes.append(f"task {t!r}: the {who} run did not finish this task")
    eff: list[EfficiencyVerdict] = []
    skipped: str | None = None
    if max_slowdown_pct is None:
        skipped = "not asked (--max-slowdown < 0)"
    else:
        if hardware(rb) != hardware(rc):
            skipped = (f"different hardware (baseline {describe_hardware(rb)}; candidate {describe_hardware(rc)}): "
                       "speed is only comparable on one machine; gate throughput against a baseline run made "
                       "in the same job (see README)")
            notes.append(f"efficiency not gated: {skipped}")
        elif settings := settings_differences(rb, rc):
            skipped = (f"different run settings ({'; '.join(settings)}, baseline vs candidate): the efficiency "
                       f"figures depend on them; run both sides with the same settings")
            notes.append(f"efficiency not gated: {skipped}")
        else:
            for t in names:
                ids_b, ids_c = {r.id for r in sb.get(t, [])}, {r.id for r in sc.get(t, [])}
                # a run's own figures are over its own samples (a few short videos give more video-hours per
                # hour than many long ones): only the same samples compare, or a load test's, as in compare
                if not comparable_figures(rb["tasks"][t], rc["tasks"][t], ids_b, ids_c):
                    notes.append(f"task {t!r}: efficiency not gated: the runs hold different samples "
                                 f"({len(ids_b)} in the baseline, {len(ids_c)} in the candidate, "
                                 f"{len(ids_b & ids_c)} in both); run the candidate on the baseline's samples")
                    continue
                eff += measure_efficiency(
                    t, [r["tasks"][t].get("efficiency") for r, _ in base_runs],
                    [(r["tasks"].get(t) or {}).get("efficiency") for r, _ in cand_runs],  # one cut short may lack t
                    alpha, max_slowdown_pct / 100.0, notes)
            eff = gate_efficiency(eff, max_slowdown_pct / 100.0, alpha)
    for who, r in (("baseline", rb), ("candidate", rc)):
        if r.get("status") != "complete":
            why = "; ".join(r.get("status_reasons") or [])
            allowed = " (allowed by --allow-incomplete-baseline)" if who == "baseline" else ""
            notes.insert(0, f"the {who} run is {r.get('status')}{allowed}" + (f": {why}" if why else ""))
    for r, lab in base_runs[1:]:
        if r.get("status") != "complete":
            notes.append(f"the baseline run {lab} is {r.get('status')} (allowed by --allow-incomplete-baseline)")
    fail_reasons = []
    if rc.get("status") != "complete":
        fail_reasons.append(f"the candidate run is {rc.get('status')}, not complete: the gate passes only a "
                            f"finished run (resume it, or fix what failed)")
    if not_run:
        fail_reasons.append(f"baseline task(s) {', '.join(not_run)} not run by the candidate: the gate covers every "
                            f"task of its baseline (name the ones to gate with --tasks)")
    for r, lab in cand_runs[1:]:
        if r.get("status") != "complete":
            fail_reasons.append(f"the candidate run {lab} is {r.get('status')}, not complete: the gate passes "
                                f"only finished runs")
    if not any(t.verdict != SKIPPED for t in verdicts) and not eff:
        why = (f"{', '.join(lower)}: lower-is-better, not gated; " if lower else "") + (
            "no other task has a sample scored in both runs" if lower else "no task has a sample scored in both runs")
        fail_reasons.append(f"nothing was gated: {why} and no efficiency figure was compared (does each run "
                            "folder hold its samples/?)")
    notes[:0] = [f"gate failed: {r}" for r in fail_reasons]
    return GateResult(baseline_label, candidate_label, rb["model"], rc["model"], margin, alpha,
                      (max_slowdown_pct or 0.0) / 100.0, verdicts, eff, notes,
                      baseline_status=str(rb.get("status")), candidate_status=str(rc.get("status")),
                      efficiency_skipped=skipped, fail_reasons=fail_reasons,
                      baseline_reasons=[str(m) for m in rb.get("status_reasons") or []],
                      candidate_reasons=[str(m) for m in rc.get("status_reasons") or []],
                      baseline_repeats=[lab for _, lab in base_runs[1:]],
                      candidate_repeats=[lab for _, lab in cand_runs[1:]])


# ---- text and markdown, from the gate.json document ----------------------------------------------
def _bounds(t: dict[str, Any]) -> str:
    return f"[{points(t['lower'])}, {points(t['upper'])}]" if t.get("lower") is not None else "–"


def summary_rows(doc: dict[str, Any]) -> list[list[str]]:
    rows = [["task", "verdict", "n", "baseline", "candidate", "delta (pts)",
             f"{100 * (1 - 2 * doc['alpha']):.0f}% CI (pts)", "cand+", "cand-", "reason"]]
    for t in doc["tasks"]:
        rows.append([t["task"], t["verdict"], str(t["n"]), points(t["baseline"], False), points(t["candidate"], False),
                     points(t["delta"]), _bounds(t), str(t["n_improved"]), str(t["n_worsened"]), t["reason"]])
    return rows


def efficiency_rows(doc: dict[str, Any]) -> list[list[str]]:
    level = f"{100 * (1 - 2 * doc['alpha']):.0f}% CI"
    rows = [["task", "figure", "baseline", "candidate", "speed", level, "runs", "verdict", "reason"]]
    for e in doc["efficiency"]:
        cand = "missing" if e["candidate"] is None else f"{e['candidate']:.4g}"
        runs = f"{e.get('n_baseline', 1)}+{e.get('n_candidate', 1)}"
        rows.append([e["task"], e["key"], f"{e['baseline']:.4g}", cand, f"{e['speed_ratio']:.3f}x", speed_bounds(e),
                     runs, e["verdict"], e.get("reason") or ""])
    return rows


def summary_text(doc: dict[str, Any]) -> str:
    text = format_table(summary_rows(doc))
    if doc["efficiency"]:
        text += "\n\n" + format_table(efficiency_rows(doc))
    for n in doc["notes"]:
        text += f"\nnote: {n}"
    return text + f"\n\ngate: {doc['verdict_text']}"


def _md_cell(s: str) -> str:
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def markdown(doc: dict[str, Any]) -> str:
    """The gate report as GitHub-flavoured markdown (for a CI job summary or a PR comment)."""

    def table(rows: list[list[str]]) -> str:
        head = "| " + " | ".join(_md_cell(c) for c in rows[0]) + " |"
        sep = "|" + "---|" * len(rows[0])
        return "\n".join([head, sep, *("| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows[1:])])

    def who(side: str) -> str:
        d = doc[side]
        more = d.get("repeats") or []
        return (f"- {side}: `{_md_cell(str(d['path']))}` ({_md_cell(str(d['model'].get('name')))}, "
                f"{_md_cell(str(d['model'].get('precision')))}), run {_md_cell(str(d['status']))}"
                + (f"; repeats (efficiency): {', '.join(f'`{_md_cell(str(x))}`' for x in more)}" if more else ""))

    head = f"# evalsuite gate: **{doc['verdict']}**"
    if doc.get("efficiency_skipped"):
        head += f" (accuracy only; efficiency not gated: {_md_cell(doc['efficiency_skipped'])})"
    lines = [head, "", who("baseline"), who("candidate"),
             f"- non-inferiority margin {doc['margin_points']:.1f} points, one-sided alpha {doc['alpha']}; "
             + (f"max slowdown {doc['max_slowdown_pct']:.0f}%" if doc["efficiency_skipped"] is None
                else "efficiency not gated"), "", "## Accuracy", "", table(summary_rows(doc))]
    if doc["efficiency"]:
        lines += ["", "## Efficiency", "", table(efficiency_rows(doc))]
    if doc["notes"]:
        lines += ["", "## Notes", "", *(f"- {_md_cell(n)}" for n in doc["notes"])]
    return "\n".join(lines) + "\n"


# ---- CLI ----------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline", required=True, metavar="FILE_OR_DIR", nargs="+",
                        help="run folder, results .json, or folder of baselines (results/baselines); further "
                             "run folders: repeats of the baseline on this machine, for the efficiency gate")
    parser.add_argument("--candidate", required=True, metavar="RUN_DIR", nargs="+",
                        help="run folder to gate; further run folders: repeats of it, for the efficiency gate "
                             "(accuracy is gated on the first)")
    parser.add_argument("--baseline-name", default=None,
                        help="which baseline of a folder (default: match model name, then precision)")
    parser.add_argument("--margin", type=float, default=2.0, metavar="POINTS",
                        help="non-inferiority margin in percentage points (2.0)")
    parser.add_argument("--alpha", type=float, default=0.05, help="one-sided significance level (0.05)")
    parser.add_argument("--max-slowdown", type=float, default=20.0, metavar="PCT",
                        help="fail when an efficiency figure is this many percent slower (20); "
                             "negative: do not gate efficiency")
    parser.add_argument("--tasks", default=None, help="comma-separated tasks (default: every task in both)")
    parser.add_argument("--allow-config-mismatch", action="store_true",
                        help="gate tasks whose settings differ (notes instead of refusing)")
    parser.add_argument("--allow-incomplete-baseline", action="store_true",
                        help="gate against a baseline run that is not complete (refused otherwise: its errored "
                             "samples count as wrong and flatter the candidate); the verdict says so")
    parser.add_argument("--out", default=None, help="folder for gate.json, gate.md and gate.html")
    parser.add_argument("--save-baseline", default=None, metavar="NAME",
                        help="after a PASS, write the candidate into the --baseline folder as NAME (refused when "
                             "it lacks a task or samples of the baseline NAME it would replace: see --force-save)")
    parser.add_argument("--force-save", action="store_true",
                        help="with --save-baseline: save the (finished) candidate whatever the verdict, and though "
                             "it lacks tasks or samples of the baseline it replaces (deliberate re-baselining)")
    parser.add_argument("--n-boot", type=int, default=N_BOOT, help="bootstrap replicates")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(page="evalsuite.reports.gate_page")


def main(args: argparse.Namespace) -> int:
    if args.n_boot < 100:
        raise GateError(f"--n-boot must be at least 100, got {args.n_boot}")
    if math.isnan(args.max_slowdown):
        raise GateError("--max-slowdown must be a finite percentage (negative: do not gate efficiency), got nan")
    candidate = load_run(args.candidate[0])
    candidate_repeats = [(load_run(p), str(p)) for p in args.candidate[1:]]
    chosen, why = find_baseline(args.baseline[0], candidate[0], args.baseline_name)
    if why:
        print(f"gating against baseline {chosen} ({why})")
    baseline, label = _load_any(chosen), str(chosen)
    baseline_repeats = []
    for p in args.baseline[1:]:
        if Path(p).is_dir() and not (Path(p) / "results.json").exists():
            raise GateError(f"--baseline {p}: a repeat of the baseline is a run folder or a results .json file, "
                            f"not a folder of baselines")
        baseline_repeats.append((_load_any(Path(p)), str(p)))
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    g = run_gate(baseline, candidate, margin_points=args.margin, alpha=args.alpha,
                 max_slowdown_pct=args.max_slowdown if args.max_slowdown >= 0 else None, tasks=tasks,
                 allow_config_mismatch=args.allow_config_mismatch, baseline_label=label,
                 candidate_label=str(args.candidate[0]), n_boot=args.n_boot, seed=args.seed,
                 baseline_repeats=baseline_repeats, candidate_repeats=candidate_repeats,
                 allow_incomplete_baseline=args.allow_incomplete_baseline)
    doc = json.loads(dumps(g.to_dict()))
    validate(doc, "gate")
    print(summary_text(doc))
    if args.out:
        out = Path(args.out)
        atomic_write_json(out / "gate.json", doc)
        atomic_write_text(out / "gate.md", markdown(doc))
        print(f"gate:   {out / 'gate.json'}")
    if args.save_baseline:
        folder = Path(args.baseline[0])
        if not folder.is_dir() or (folder / "results.json").exists():
            raise GateError("--save-baseline needs --baseline to be a folder of baselines")
        gated = {t.task for t in g.tasks if t.verdict != SKIPPED} | {e.task for e in g.efficiency}
        why = save_refusal(g.verdict, candidate, folder, args.save_baseline, force=args.force_save,
                           gated=gated, against=Path(chosen))
        if why:
            print(f"baseline not saved: {why}")
        else:
            print(f"baseline: {save_baseline(args.candidate[0], folder, args.save_baseline)}")
    return 1 if g.failed else 0
