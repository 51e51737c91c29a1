"""The runner: samples → requests → backend → scorer → one fsynced JSON line per sample, and an
atomically replaced ``results.json`` after every task.

Resuming: a run folder remembers each task's config hash (task name, version, args, and the model's
identity). Running again with the same ``--out`` skips the samples already in ``samples/<task>.jsonl``
when the hash matches, refuses with one line when it does not (unless ``overwrite``), and so a run
killed at any point and started again ends with the same metrics and no duplicated ids.

Scale-out: under ``torchrun --nproc_per_node N -m evalsuite run …`` each rank (one model copy each;
gloo on CPU, NCCL on GPU) takes every N-th sample, appends to its own shard
``samples/<task>.rank<r>-of-<N>.jsonl``, and rank 0 merges the shards into ``samples/<task>.jsonl``
in sample order and writes ``results.json``: the same files a single process would write.

Errors: a sample whose record is malformed, whose media is missing or corrupt, whose modality the
backend does not accept, or whose backend call or scoring raises is written with its ``error``,
counted in ``n_errors`` and left out of the metrics; the run goes on. A batch that raises is retried
one request at a time so that one bad sample never takes its batch-mates with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from evalsuite import media as media_lib
from evalsuite.backend import Backend, BackendConfigError
from evalsuite.env import DEVICE_RE, resolve_device
from evalsuite.registry import BACKENDS, TASKS
from evalsuite.results import (
    SCHEMA_VERSION,
    SERVED_MODEL,
    RunFormatError,
    SampleLog,
    atomic_write_json,
    model_identity,
    other_data,
    read_samples,
    validate,
)
from evalsuite.stats import bootstrap_stat_ci, mean_ci
from evalsuite.task import DrivingTask, Task
from evalsuite.types import Request, Response, Sample, SampleResult, one_line


class RunError(RuntimeError):
    """A run-level problem a user can fix (config mismatch, duplicate ids…): one line."""


class ResumeRefused(RunError):
    """What ``--out`` holds cannot be resumed by this run (a larger --limit's samples, other data):
    nothing of the task ran, so the folder's results.json is left as it was."""


@dataclass
class RunConfig:
    model: str
    tasks: list[str]
    out: Path
    limit: int | None = None
    seed: int = 0
    batch_size: int = 8
    device: str = "auto"
    task_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    overwrite: bool = False
    max_error_rate: float = 0.05
    quiet: bool = False
    command: list[str] | None = None
    report: bool = True

    def __post_init__(self) -> None:
        if self.limit is not None and (isinstance(self.limit, bool) or self.limit < 1):
            raise RunError(f"--limit must be a whole number >= 1 (or left out for every sample), got {self.limit}")
        if isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise RunError(f"--batch-size must be a whole number >= 1, got {self.batch_size}")
        if not 0.0 <= self.max_error_rate <= 1.0:  # NaN fails too
            raise RunError(f"--max-error-rate must be a share in [0, 1], got {self.max_error_rate}")
        if isinstance(self.seed, bool) or not 0 <= self.seed < 2**32:  # numpy's and lm-eval's seed range
            raise RunError(f"--seed must be a whole number in [0, 2**32), got {self.seed}")
        if not DEVICE_RE.fullmatch(str(self.device)):  # recorded in results.json: never a made-up name
            raise RunError(f"--device must be auto, cpu, cuda or cuda:N, got {self.device!r}")


@dataclass
class RunOutcome:
    results: dict[str, Any]
    out: Path
    exit_code: int
    messages: list[str]
    leader: bool = True  # False on torchrun ranks other than 0, which write no results.json


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as td

            try:
                td.barrier()
            except Exception as e:  # gloo's "Connection reset by peer", a failed NCCL collective
                raise RankLost(one_line(e)) from e


class RankLost(KeyboardInterrupt):
    """Under torchrun, a barrier that failed: another rank failed or died (or could not be reached).
    This rank stops as a SIGTERM stops it, the run ``interrupted`` and resumable."""


# How long a rank waits at a barrier for the others. Rank 0 alone runs a driving task (a load test, an
# lm-eval task: hours) while the others wait, and a rank whose shard is done waits for the slowest one;
# torch's default (30 min on gloo, 10 min on NCCL) would end such a run. A rank that dies is not waited
# for: torchrun stops the others then.
DIST_TIMEOUT = timedelta(days=7)


def init_dist(device: str) -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, NCCL on CUDA)."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as td

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda:"):  # NCCL refuses two ranks on one GPU ("Duplicate GPU detected")
        raise RunError(f"--device {device} puts every one of torchrun's {world} processes on that GPU; use "
                       f"--device cuda (each process on cuda:<LOCAL_RANK>) or --device cpu")
    if device == "cuda":  # NCCL's barrier runs on the current device: each rank's own GPU, not GPU 0
        import torch

        torch.cuda.set_device(local_rank)
    if not td.is_initialized():
        td.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo", timeout=DIST_TIMEOUT)
    return Dist(rank=td.get_rank(), world=td.get_world_size(), local_rank=local_rank)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def make_backend(model: str, *, device: str = "auto", seed: int = 0, batch_size: int = 8) -> Backend:
    """The backend ``model`` names; ``device`` ``auto`` is CUDA when present, else CPU."""
    factory = BACKENDS.get(model)
    _, arg = BACKENDS.split(model)
    resolved = resolve_device(device)
    # a backend on this machine records the device it ran on; a remote one (openai:) records "remote"
    if getattr(factory, "uses_local_device", True) and (problem := cuda_problem(resolved)) is not None:
        raise BackendConfigError(problem)
    return factory(arg, device=resolved, seed=seed, batch_size=batch_size)


def cuda_problem(device: str) -> str | None:
    """Why ``device`` (``cuda``, ``cuda:N``) cannot be used here, as one line; None when it can or is no CUDA name."""
    if not device.startswith("cuda"):
        return None
    import torch

    if not torch.cuda.is_available():
        return f"device {device} requested but no CUDA device is available; use --device cpu"
    count, index = torch.cuda.device_count(), int(device.partition(":")[2] or 0)
    if index >= count:
        return f"device {device} requested but this machine has {count} CUDA device(s); expected cuda:0 to cuda:{count - 1}"
    return None


def make_task(name: str, args: dict[str, Any] | None = None) -> Task:
    """The task ``name`` with ``args``; a task that takes an argument gets the text after its colon
    (``lmeval:<lm-eval task>``)."""
    from evalsuite.task import TaskArgError

    cls = TASKS.get(name)
    head, arg = TASKS.split(name)
    if arg is None:
        return cls(**(args or {}))
    if not getattr(cls, "takes_arg", False):
        raise TaskArgError(f"task {head!r} takes no ':<argument>' (got {name!r}); use --task-arg {head}.KEY=VALUE")
    return cls(arg, **(args or {}))


def task_args_of(name: str, task_args: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """--task-arg values for ``name``: those given for its registry name (``lmeval``), then its own."""
    head, _ = TASKS.split(name)
    return {**task_args.get(head, {}), **task_args.get(name, {})}


def config_hash(task: Task, model_desc: dict[str, Any], *, with_location: bool = False,
                with_served_model: bool = True) -> str:
    """What must match for finished samples to be reused: the task's identity and the model's.
    ``with_location``: the hash as it was before the data's location left the settings (an
    official task's run started then, with its data where it was, still resumes);
    ``with_served_model=False``: as it was before a server's model counted (an ``openai:`` run
    started then resumes when its results.json names the same served model)."""
    model = model_identity(model_desc)
    if not with_served_model:
        model.pop(SERVED_MODEL, None)
    ident = {
        "task": {**task.describe(), "args": task.args} if with_location else task.describe(),
        "model": model,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def other_targets(samples: Iterable[Sample], results: Iterable[SampleResult]) -> list[tuple[str, Any, Any]]:
    """(id, recorded target, sample's target) of each result whose sample now has another target:
    results written from other data (a benchmark folder replaced by another version)."""
    by_id = {s.id: s for s in samples}
    return [(r.id, r.target, by_id[r.id].target) for r in results
            if r.id in by_id and other_data(r, by_id[r.id].target, by_id[r.id].error)]


def prompt_text(sample: Sample) -> str:
    parts = []
    for m in sample.messages:
        for p in m.content:
            parts.append(p.text if p.type == "text" else f"<{p.type}>")
    return " ".join(x for x in parts if x)


def _public_metadata(sample: Sample) -> dict[str, Any]:
    return {k: v for k, v in sample.metadata.items() if k != "text_form"}


def _result(task: Task, sample: Sample, *, prediction: str | None = None, error: str | None = None,
            resp: Response | None = None) -> SampleResult:
    usage: dict[str, Any] = {}
    if resp is not None:
        usage = {
            "prompt_tokens": resp.prompt_tokens,
            "output_tokens": resp.output_tokens,
            "ttft_s": resp.ttft_s,
            "e2e_s": resp.e2e_s,
            **resp.info,
        }
        usage = {k: v for k, v in usage.items() if v is not None}
    return SampleResult(
        id=sample.id,
        task=task.name,
        target=sample.target,
        prediction=prediction,
        score=None,
        metadata=_public_metadata(sample),
        error=error,
        usage=usage,
        media=[media_lib.describe(p) for p in sample.media],
        prompt=prompt_text(sample),
        choices=sample.choices,
    )


def generate_isolating(backend: Backend, requests: list[Request]) -> list[Response | BaseException]:
    """The responses to ``requests`` in order: one batched call, whose items may already be a failed
    request's exception in its place (nothing is sent again then), or, when the call raises (or
    answers a wrong count), each request alone, a failing one giving its exception in its place, so
    one bad request never takes its batch-mates with it."""
    try:
        out = backend.generate(requests)
        if len(out) != len(requests):
            raise RuntimeError(f"backend returned {len(out)} responses for {len(requests)} requests")
        return list(out)
    except Exception:
        responses: list[Response | BaseException] = []
        for req in requests:  # isolate the failing request(s)
            try:
                responses.append(backend.generate([req])[0])
            except Exception as e:
                responses.append(e)
        return responses


def process_batch(task: Task, backend: Backend, batch: list[Sample], seed: int) -> list[SampleResult]:
    """Score one batch of samples; never raises for a per-sample problem."""
    results: dict[str, SampleResult] = {}
    ready: list[tuple[Sample, Request]] = []
    for s in batch:
        if s.error:
            results[s.id] = _result(task, s, error=s.error)
            continue
        try:
            req = task.request(s, seed=seed)
            backend.check(req)
            for part in s.media:
                media_lib.check(part)
        except Exception as e:  # bad media or unsupported modality: that sample only
            results[s.id] = _result(task, s, error=one_line(e))
            continue
        ready.append((s, req))

    responses = generate_isolating(backend, [r for _, r in ready]) if ready else []
    for (s, _), resp in zip(ready, responses):
        if isinstance(resp, BaseException):
            results[s.id] = _result(task, s, error=one_line(resp))
            continue
        r = _result(task, s, prediction=resp.text, resp=resp)
        try:
            scored = task.score(s, resp.text)
            r.score = float(scored["score"])
            r.scores = {k: v for k, v in scored.items() if k != "score"}
        except Exception as e:
            r.error = f"scoring failed: {one_line(e)}"
        results[s.id] = r
    return [results[s.id] for s in batch]


# ---- aggregation --------------------------------------------------------------------------------
def summarize(task: Task, samples: list[Sample], results: list[SampleResult], *, chash: str,
              wall_s: float, complete: bool) -> dict[str, Any]:
    """The results.json entry of one task, computed from its sample results only."""
    scored = [r for r in results if r.error is None and r.score is not None]
    primary = task.primary_metric
    metrics = task.aggregate(results)
    ci: dict[str, Any] = {}
    measured = scored or (task.errors_count_as_wrong and results)  # all failed: a 0 that still has an interval
    if measured and isinstance(metrics.get(primary), (int, float)) and not math.isnan(float(metrics[primary])):
        value = float(metrics[primary])
        clusters = [str(r.metadata.get("cluster", r.id)) for r in scored]
        values = [float(r.score) for r in scored]  # type: ignore[arg-type]
        # over every sample, an errored one as 0 (OCRBench: a sample without a prediction is not right)
        values_all = [float(r.score) if r.error is None and r.score is not None else 0.0 for r in results]
        clusters_all = [str(r.metadata.get("cluster", r.id)) for r in results]
        if task.errors_count_as_wrong and math.isclose(value, sum(values_all) / len(values_all), rel_tol=1e-9,
                                                       abs_tol=1e-12):
            ci[primary] = mean_ci(values_all, clusters_all, n_boot=1000)  # the metric's own denominator
        elif values and math.isclose(value, sum(values) / len(values), rel_tol=1e-9, abs_tol=1e-12):
            ci[primary] = mean_ci(values, clusters, n_boot=1000)  # a mean of scores: Wilson-hulled at the bounds
        elif math.isclose(value, sum(values_all) / len(values_all), rel_tol=1e-9, abs_tol=1e-12):
            ci[primary] = mean_ci(values_all, clusters_all, n_boot=1000)
        else:  # any other statistic: resample the samples it is computed from (errored ones too)
            stat: Callable[[list[Any]], float] = lambda rows: float(task.aggregate(rows).get(primary, float("nan")))  # noqa: E731
            # scores in [0, 1] and an estimate in [0, 1]: an accuracy (OCRBench v2's mean of per-type means,
            # Video-MME's share right of those answered), clipped there as mean_ci clips a mean of scores
            unit = 0.0 <= value <= 1.0 and all(0.0 <= v <= 1.0 for v in values_all)
            ci[primary] = bootstrap_stat_ci(results, stat, clusters_all, n_boot=1000,
                                            bounds=(0.0, 1.0) if unit else None)
    else:
        ci[primary] = None
    breakdown: dict[str, dict[str, Any]] = {}
    for key in task.breakdown_keys:
        groups: dict[str, list[SampleResult]] = {}
        for r in results:
            if key in r.metadata:
                groups.setdefault(str(r.metadata[key]), []).append(r)
        if groups:
            breakdown[key] = {
                g: {**task.aggregate(rs), "n": len(rs), "n_errors": sum(1 for r in rs if r.error)}
                for g, rs in sorted(groups.items())
            }
    chance, chance_method = chance_level(task, samples, scored)
    n_errors = sum(1 for r in results if r.error)
    # samples a task knows it cannot score (OCRBench v2's TEDS/BLEU types): errored and reported, but a
    # coverage gap of the scorer, not a failure of the model or the run, so --max-error-rate skips them
    n_unsupported = sum(1 for r in results if r.error and r.metadata.get("unsupported"))
    usage = _usage(results)
    eff = dict(task.efficiency(results, wall_s))
    if wall_s > 0 and results:
        eff.setdefault("samples_per_s", round(len(results) / wall_s, 4))
    location = task.data_location()
    return {
        "version": str(task.version),
        "args": task.settings(),
        **({"data_location": location} if location else {}),
        "media": task.media_settings(),
        "primary_metric": primary,
        "metrics": metrics,
        "ci95": ci,
        "chance": chance,
        "chance_method": chance_method,
        "n_samples": len(results),
        "n_scored": len(scored),
        "n_errors": n_errors,
        "error_rate": (n_errors / len(results)) if results else 0.0,
        **({"n_unsupported": n_unsupported} if n_unsupported else {}),
        "breakdown": breakdown,
        "config_hash": chash,
        "complete": complete,
        "wall_time_s": round(wall_s, 3),
        "usage": usage,
        "efficiency": eff,
        "samples_file": f"samples/{task.name}.jsonl",
    }


def chance_level(task: Task, samples: list[Sample], scored: list[SampleResult]) -> tuple[float | None, str]:
    """(the task's chance level, how it is defined): the mean of ``task.chance`` over the scored
    samples; None when any of them has no chance score."""
    by_id = {s.id: s for s in samples}
    values = [task.chance(by_id[r.id]) for r in scored if r.id in by_id]
    if not values or any(v is None for v in values):
        method = task.chance_method if task.chance_method.startswith("none") else "none: not defined for this task"
        return None, method
    return sum(values) / len(values), task.chance_method  # type: ignore[arg-type]


def _usage(results: list[SampleResult]) -> dict[str, Any]:
    def total(key: str) -> int | None:
        vals = [r.usage.get(key) for r in results if r.usage.get(key) is not None]
        return int(sum(vals)) if vals else None

    e2e = [r.usage["e2e_s"] for r in results if r.usage.get("e2e_s") is not None]
    out: dict[str, Any] = {
        "prompt_tokens": total("prompt_tokens"),
        "output_tokens": total("output_tokens"),
        "mean_e2e_s": (sum(e2e) / len(e2e)) if e2e else None,
    }
    # where each sample's token counts came from, when the backend says (openai: "usage", or "chunks",
    # a count of streamed chunks standing in for a server that sent no usage: an estimate)
    sources = [r.usage["token_count_source"] for r in results if isinstance(r.usage.get("token_count_source"), str)]
    if sources:
        out["token_count_source"] = {s: sources.count(s) for s in sorted(set(sources))}
    # Stage latencies a backend logs per sample (a cascade's ocr_s, asr_s, answer_s): their means.
    stages = sorted({k for r in results for k, v in r.usage.items()
                     if k.endswith("_s") and k not in ("ttft_s", "e2e_s") and isinstance(v, (int, float))})
    for key in stages:
        vals = [float(r.usage[key]) for r in results if isinstance(r.usage.get(key), (int, float))]
        out[f"mean_{key}"] = sum(vals) / len(vals)
    # a backend that retried a request times it from the attempt that answered (openai: retry_s, the
    # failed attempts and waits before it): how many were, so the mean end-to-end is read as such
    retried = sum(1 for r in results if isinstance(r.usage.get("retry_s"), (int, float)) and r.usage["retry_s"] > 0)
    if retried:
        out["n_retried"] = retried
    return out


# ---- the run ------------------------------------------------------------------------------------
def _progress(total: int, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="sample", disable=quiet, dynamic_ncols=True, leave=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI timeout, ``kill``, a container stop) raised in the main thread, so that the run
    ends ``interrupted`` and resumable as on Ctrl-C instead of staying ``running`` forever."""


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While the block runs in the main thread, SIGTERM raises :class:`Terminated`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted_reason(e: KeyboardInterrupt, dist: Dist) -> str:
    """The status reason of a run stopped by Ctrl-C or SIGTERM. Under torchrun a SIGTERM is also how
    torchrun stops the other ranks when one fails or dies (SIGKILL by the OOM killer…): this process
    cannot see that rank or its exit status (only torchrun, their parent, reaps it, and a signal
    does not say who sent it), so the reason says where torchrun reports it instead of naming one."""
    if isinstance(e, RankLost):
        return (f"interrupted (rank {dist.rank} of {dist.world} lost the other ranks at a barrier: {e}; a rank failed "
                "or died, and torchrun names it and its exit code or signal in its error summary, under 'Root Cause'): "
                "run the same command again to resume")
    if not isinstance(e, Terminated):
        return "interrupted (Ctrl-C): run the same command again to resume"
    if dist.world == 1:
        return "interrupted (SIGTERM): run the same command again to resume"
    return (f"interrupted (SIGTERM to rank {dist.rank} of {dist.world}; torchrun sends it to every rank when it is "
            "stopped and when a rank fails or dies, and then names that rank and its exit code or signal in its "
            "error summary, under 'Root Cause'): run the same command again to resume")


def stamp_path(out: Path, task: str) -> Path:
    """``samples/<task>.config.json``: the config hash and seed of the samples in ``samples/<task>.jsonl``,
    written before the first of them, so that a task cut short before it reached ``results.json``
    (Ctrl-C, a kill) is resumed only by the same configuration."""
    return out / "samples" / f"{task}.config.json"


def cache_path(out: Path, task: str) -> Path:
    """``cache/<task>.jsonl``: what a driving task keeps to resume from that is not a sample result (an
    lm-eval task's answers to its requests); ``--overwrite`` removes it with the task's samples."""
    return out / "cache" / f"{task}.jsonl"


def model_of_desc(desc: dict[str, Any] | None) -> dict[str, Any]:
    """The backend's device and precision as a task's stamp keeps them (what its numerics depend on)."""
    return {k: str(desc[k]) for k in ("device", "precision") if desc and desc.get(k) is not None}


def _read_stamp(path: Path) -> dict[str, Any] | None:
    try:
        stamp = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        raise RunError(f"{path} is not valid JSON; remove it (and the task's samples) or pass --overwrite") from None
    if not isinstance(stamp, dict):
        raise RunError(f"{path}: expected an object with config_hash and seed; remove it or pass --overwrite")
    return stamp


def _check_resumable(out: Path, prior: dict[str, Any] | None, tasks: list[Task], hashes: dict[str, str],
                     seed: int, model_desc: dict[str, Any] | None = None) -> None:
    """Refuse (one line) to add samples to a task whose finished ones came from another configuration."""
    prior_seed = ((prior or {}).get("environment") or {}).get("seed")
    for t in tasks:
        old = ((prior or {}).get("tasks") or {}).get(t.name)
        stamp = _read_stamp(stamp_path(out, t.name)) or {}
        old_hash = stamp.get("config_hash") or (old.get("config_hash") if old else None)
        if old_hash is not None and old_hash != hashes[t.name]:
            # hashes written before the data's location left the settings (same data folder) or before a
            # server's model counted (results.json names the same served model)
            forms = [{"with_location": True}] if any(k in t.args for k in t.location_keys) else []
            served = (model_desc or {}).get(SERVED_MODEL)
            if served is not None and ((prior or {}).get("model") or {}).get(SERVED_MODEL) == served:
                forms += [{**f, "with_served_model": False} for f in ({}, *forms)]
            if old_hash in {config_hash(t, model_desc or {}, **f) for f in forms}:
                old_hash = hashes[t.name]
        if old_hash is not None and old_hash != hashes[t.name]:
            raise RunError(
                f"{out} already holds task {t.name!r} run with a different task/model config "
                f"(hash {old_hash} != {hashes[t.name]}); use another --out or --overwrite"
            )
        old_seed = stamp.get("seed", prior_seed if old else None)
        if old_seed is not None and old_seed != seed:
            raise RunError(f"{out} already holds task {t.name!r} run with --seed {old_seed}, not {seed}; "
                           f"use the same seed, another --out or --overwrite")
        now = model_of_desc(model_desc)
        for key in ("device", "precision"):  # not in the config hash (the baselines' hashes stay), checked here
            if stamp.get(key) is not None and now.get(key) is not None and stamp[key] != now[key]:
                raise RunError(f"{out} already holds task {t.name!r} run on {key} {stamp[key]}, not {now[key]} "
                               f"(its answers would mix two numerics); use the same --device, another --out or "
                               f"--overwrite")


def run(cfg: RunConfig) -> RunOutcome:
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file; expected a run folder (new or from an earlier run)")
    res_path = out / "results.json"
    prior: dict[str, Any] | None = None
    if res_path.exists():
        try:
            prior = json.loads(res_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            if not cfg.overwrite:
                raise RunError(f"{res_path} is not valid JSON; remove it or pass --overwrite") from None
            prior = None  # --overwrite: nothing of it can be kept; the run writes a new one
        if prior is not None and (not isinstance(prior, dict) or not isinstance(prior.get("tasks", {}), dict)):
            if not cfg.overwrite:
                raise RunError(f"{res_path} is not a run's results (expected an object with 'tasks'); "
                               f"remove it or pass --overwrite")
            prior = None
        if prior is not None:  # its tasks are carried into the new results.json, which must stay readable
            try:
                validate(prior, path=res_path)
            except RunFormatError as e:
                if not cfg.overwrite:
                    raise RunError(f"{e}; remove it or pass --overwrite") from None
                prior = None

    requested = resolve_device(cfg.device)
    dist = init_dist(requested)
    device = f"cuda:{dist.local_rank}" if dist.world > 1 and requested == "cuda" else requested
    tasks = [make_task(name, task_args_of(name, cfg.task_args)) for name in cfg.tasks]
    for t in tasks:  # a wrong name found now, not after the model has loaded
        t.check()
    backend = make_backend(cfg.model, device=device, seed=cfg.seed, batch_size=cfg.batch_size)
    model_desc = backend.describe()
    hashes = {t.name: config_hash(t, model_desc) for t in tasks}

    if not cfg.overwrite:
        _check_resumable(out, prior, tasks, hashes, cfg.seed, model_desc)
    if cfg.overwrite and prior is not None and set(prior.get("tasks", {})) <= {t.name for t in tasks}:
        prior = None  # every task it held runs again: a new run (its own id, creation time and wall time)
    if cfg.overwrite and dist.leader:
        for t in tasks:
            (out / "samples" / f"{t.name}.jsonl").unlink(missing_ok=True)
            stamp_path(out, t.name).unlink(missing_ok=True)
            cache_path(out, t.name).unlink(missing_ok=True)
            for shard in (out / "samples").glob(f"{t.name}.rank*-of-*.jsonl"):
                shard.unlink()
        if prior is not None:
            for t in tasks:
                prior.get("tasks", {}).pop(t.name, None)

    out.mkdir(parents=True, exist_ok=True)  # only now: a refused run (bad name, task arg, config) leaves no folder
    started = time.perf_counter()
    prior_wall = float((prior or {}).get("environment", {}).get("wall_time_s", 0.0)) if prior else 0.0
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": (prior or {}).get("run_id") or f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}",
        "status": "running",
        "created": (prior or {}).get("created") or now_iso(),
        "updated": now_iso(),
        "model": {**model_desc},
        "tasks": dict((prior or {}).get("tasks", {})),
        "environment": {},
    }
    messages: list[str] = []
    exit_code = 0
    # requests per generate call, whatever the backend; a folder whose earlier results ran at another
    # (or an unrecorded) batch size holds both: None, so that the gate compares no speed with it
    mixed = bool(prior and prior.get("tasks")) and prior.get("environment", {}).get("batch_size") != cfg.batch_size
    batch_size = None if mixed else cfg.batch_size
    processes = processes_of(out, prior, tasks, dist.world) if dist.leader else None  # rank 0 writes results.json

    def write(status: str) -> None:
        from evalsuite.env import environment

        if not dist.leader:  # rank 0 alone writes results.json
            return
        doc["status"] = status
        doc["updated"] = now_iso()
        doc["environment"] = {**environment(cfg.command, cfg.seed, prior_wall + time.perf_counter() - started),
                              "batch_size": batch_size, "processes": processes}
        validate(json.loads(json.dumps(doc, default=str)))
        atomic_write_json(res_path, doc)

    finished = False  # False in `finally`: an exception ended the run (results.json says how)
    try:
        if cfg.overwrite:
            dist.barrier()  # every rank sees the overwrite before reading its shard
        write("running")  # a run killed outright in its first task still has a results.json that says so
        for task in tasks:
            entry = _run_task(task, backend, cfg, out, hashes[task.name], (prior or {}).get("tasks", {}).get(task.name),
                              dist, model_desc)
            if entry is None:  # a non-leader rank: rank 0 merges and summarizes
                continue
            doc["tasks"][task.name] = entry
            write("running")
            if entry["n_samples"] == 0 and not isinstance(task, DrivingTask):
                messages.append(f"task {task.name}: no samples to run (its data, or a --task-arg that selects "
                                f"from it, left none)")
                exit_code = 1
            if problem := error_rate_problem(task.name, entry, cfg.max_error_rate):
                messages.append(problem)
                exit_code = 1
        # the status speaks for every task in results.json: those an earlier run left in --out too
        for name, entry in doc["tasks"].items():
            if name not in hashes and (problem := error_rate_problem(f"{name} (from an earlier run in --out)", entry,
                                                                     cfg.max_error_rate)):
                messages.append(problem)
                exit_code = 1
        doc["status_reasons"] = list(messages)
        write("failed" if messages else "complete")
        finished = True
    except KeyboardInterrupt as e:
        doc["status_reasons"] = [interrupted_reason(e, dist)]
        try:
            write("interrupted")
        except Exception:
            pass
        raise
    except ResumeRefused as e:
        # refused before its task ran. Where no task before it added samples in this invocation, a
        # finished run stays as it was (marked failed, the gate would refuse it as a baseline); where
        # one did, results.json holds what ran (the old copy no longer matched the samples files), failed
        try:
            before = (prior or {}).get("tasks", {})
            changed = any(t not in before or before[t].get("n_samples") != now.get("n_samples")
                          for t, now in doc["tasks"].items())
            if prior is not None and not changed and dist.leader:
                atomic_write_json(res_path, prior)
            else:
                doc["status_reasons"] = [one_line(e)]
                write("failed")
        except Exception:
            pass
        raise
    except BaseException as e:
        doc["status_reasons"] = [one_line(e)]
        try:
            write("failed")
        except Exception:
            pass
        raise
    finally:
        backend.close()
        if dist.world > 1:
            import torch.distributed as td

            if td.is_initialized():
                td.destroy_process_group()
        if cfg.report and dist.leader:
            # a run stopped by Ctrl-C, SIGTERM or an error gets its page too: the page of an earlier
            # invocation would otherwise stay, saying "complete" beside a results.json that does not
            try:
                from evalsuite.reports.run_report import render_run_report

                render_run_report(out)
            except ImportError:
                pass
            except Exception:
                if finished:
                    raise
                # else the exception that stopped the run is the one to see
    return RunOutcome(results=doc, out=out, exit_code=exit_code, messages=messages, leader=dist.leader)


def processes_of(out: Path, prior: dict[str, Any] | None, tasks: list[Task], world: int) -> int | None:
    """The number of processes (torchrun's world size) a run folder's speed figures are measured with,
    a samples/s being their sum: ``world``, or None where the folder's results so far (results.json),
    a task's samples cut short (its stamp) or a torchrun's shards ran on another number."""
    if prior and prior.get("tasks") and (prior.get("environment") or {}).get("processes") != world:
        return None
    for t in tasks:
        if (_read_stamp(stamp_path(out, t.name)) or {}).get("processes", world) != world:
            return None
        if any(sh.name.rpartition("-of-")[2] != f"{world}.jsonl"
               for sh in (out / "samples").glob(f"{t.name}.rank*-of-*.jsonl")):
            return None
    return world


def error_rate_problem(name: str, entry: dict[str, Any], max_error_rate: float) -> str | None:
    """Why a task's results entry is over ``max_error_rate`` (one line), or None. Samples of types the
    task cannot score (``n_unsupported``) do not count."""
    unsupported = entry.get("n_unsupported", 0)
    failed = entry["n_errors"] - unsupported
    rate = failed / entry["n_samples"] if entry["n_samples"] else 0.0
    if rate <= max_error_rate:
        return None
    besides = f", besides {unsupported} of types the task cannot score" if unsupported else ""
    return (f"task {name}: {failed}/{entry['n_samples']} samples errored{besides} "
            f"({rate:.1%} > --max-error-rate {max_error_rate:.1%})")


def _run_task(task: Task, backend: Backend, cfg: RunConfig, out: Path, chash: str,
              prior_entry: dict[str, Any] | None, dist: Dist = Dist(),
              model_desc: dict[str, Any] | None = None) -> dict[str, Any] | None:
    if isinstance(task, DrivingTask):  # throughput and lm-eval drive the backend themselves
        if dist.world == 1:
            return task.run_with(backend, cfg=cfg, out=out, config_hash=chash)
        # under torchrun rank 0 alone runs it (a load test on every rank at once measured them all
        # against each other, and each wrote the task's files); the others wait for it
        entry = task.run_with(backend, cfg=cfg, out=out, config_hash=chash) if dist.leader else None
        dist.barrier()
        return entry
    samples = list(task.samples())
    if cfg.limit is not None:
        samples = samples[: cfg.limit]
    seen: set[str] = set()
    for s in samples:
        if s.id in seen:
            raise RunError(f"task {task.name!r} yields sample id {s.id!r} twice; ids must be unique within a task")
        seen.add(s.id)

    merged_path = out / "samples" / f"{task.name}.jsonl"
    mine = samples if dist.world == 1 else samples[dist.rank :: dist.world]
    mine_ids = {s.id for s in mine}
    log_path = merged_path if dist.world == 1 else out / "samples" / f"{task.name}.rank{dist.rank}-of-{dist.world}.jsonl"
    # the merged file, then the shards of an earlier run cut short under torchrun, with any number of
    # ranks (this one's among them): every rank's finished samples
    shards = sorted((out / "samples").glob(f"{task.name}.rank*-of-*.jsonl"))
    earlier: dict[str, SampleResult] = {}
    for path in (merged_path, *shards):
        in_file = read_samples(path)
        if extra := sorted(set(in_file) - seen):  # a smaller --limit than the file's run
            raise ResumeRefused(f"{path} holds {len(extra)} sample(s) of {task.name!r} outside this run's "
                                f"{len(samples)} (it ran with a larger --limit): run with that --limit (or none), "
                                f"--overwrite, or another --out")
        earlier.update(in_file)
    done = {i: r for i, r in earlier.items() if i in mine_ids}
    # over every rank's finished samples: the ranks refuse together, never one alone while the others run on
    if stale := other_targets(samples, earlier.values()):  # the data's location is not in the settings
        sid, old, new = stale[0]
        raise ResumeRefused(f"{merged_path}: {len(stale)} finished sample(s) of {task.name!r} were run on other "
                            f"data (sample {sid!r}: target {old!r} then, {new!r} now): --overwrite, or another --out")
    todo = [s for s in mine if s.id not in done]
    stamp_file = stamp_path(out, task.name)
    stamp = dict(_read_stamp(stamp_file) or {}) if earlier else {}
    elapsed = float(stamp.get("elapsed_s", 0.0))  # the time its samples so far took, on any number of ranks
    # the number of processes its samples ran on; None once they ran on two (see processes_of)
    processes = dist.world if stamp.get("processes", dist.world) == dist.world else None
    stamp.update(config_hash=chash, seed=cfg.seed, processes=processes, **model_of_desc(model_desc))
    if todo and dist.leader:  # before the first sample of this config
        atomic_write_json(stamp_file, {**stamp, "elapsed_s": round(elapsed, 3)})
    # the stamp counts every invocation's time on these samples; a finished entry (an earlier, smaller
    # --limit) counts only up to its end, and results older than the stamp's count have only it
    prior_wall = max(elapsed, float(prior_entry.get("wall_time_s", 0.0)) if prior_entry and earlier else 0.0)
    t0 = time.perf_counter()

    def keep_elapsed() -> None:  # so that a run cut short and resumed reports the time all its samples took
        atomic_write_json(stamp_file, {**stamp, "elapsed_s": round(prior_wall + time.perf_counter() - t0, 3)})

    bar = _progress(len(mine), task.name if dist.world == 1 else f"{task.name}[{dist.rank}]", cfg.quiet)
    bar.update(len(done))
    with SampleLog(log_path) as log:
        for i in range(0, len(todo), max(1, cfg.batch_size)):
            batch = todo[i : i + cfg.batch_size]
            for r in process_batch(task, backend, batch, cfg.seed):
                log.append(r)
                done[r.id] = r
            bar.update(len(batch))
            if dist.leader:  # rank 0's clock is the task's under torchrun: the ranks run at once
                keep_elapsed()
    bar.close()
    if dist.world == 1 and any(sh.exists() for sh in shards):  # fold an earlier torchrun's shards in
        done = {**_merge_shards(merged_path, out / "samples", task.name, [s.id for s in samples]), **done}
    if dist.world > 1:
        try:
            dist.barrier()  # every shard is complete on disk
        except BaseException:  # cut short while rank 0 waited for the others: that time counts too
            if dist.leader:
                keep_elapsed()
            raise
        if not dist.leader:
            dist.barrier()
            return None
        done = _merge_shards(merged_path, out / "samples", task.name, [s.id for s in samples])
        dist.barrier()  # the merged file is in place before any rank moves on
    ordered = [done[s.id] for s in samples if s.id in done]
    wall = prior_wall + (time.perf_counter() - t0)
    return summarize(task, samples, ordered, chash=chash, wall_s=wall, complete=len(ordered) == len(samples))


def _merge_shards(merged_path: Path, folder: Path, task: str, order: list[str]) -> dict[str, SampleResult]:
    """Fold every rank's shard into the task's sample file (atomically, in sample order, results of
    samples outside this run's list kept after them), then remove the shards."""
    from evalsuite.results import atomic_write_text, dumps

    done = {i: r for i, r in read_samples(merged_path).items()}
    shards = sorted(folder.glob(f"{task}.rank*-of-*.jsonl"))
    for shard in shards:
        done.update(read_samples(shard))
    rank = {sid: k for k, sid in enumerate(order)}
    rows = sorted(done.values(), key=lambda r: rank.get(r.id, len(order)))
    atomic_write_text(merged_path, "".join(dumps(r.to_dict()) + "\n" for r in rows))
    for shard in shards:
        shard.unlink()
    return {i: r for i, r in done.items() if i in rank}
