"""``throughput``: serving speed of any streaming backend, in-process engine or OpenAI-compatible server.

The task drives the backend itself (`run_with`) through the load generator (`evalsuite.serving.loadgen`) on
one asyncio loop, and computes every figure with `evalsuite.serving.metrics` (definitions there).

Requests (``dataset``): ``mix``, drawn from the synthetic tasks, round robin over the modalities of
``mix`` — text (a docqa question on the document's text), image (docqa), video (videoqa), audio
(audioqa) — or a single one, ``max_tokens`` output tokens each; or ``random``, as ``vllm bench serve
--dataset-name random`` (`Throughput.random_pool`). Every load point sends the same sequence, with
``ignore_eos`` so that output lengths do not depend on the model's answers. Open-loop arrivals use
``arrival_seed`` (-1: the run's seed), so the schedule can move while the prompts stay; ``burst``
adds a point that sends every request at once; ``point_mode=duration`` makes each load point send
for ``point_duration_s`` (cycling the pool) instead of a fixed request count.

Load points are measured as ``vllm bench serve`` measures them, with two differences that keep them
true under overload: open-loop latency counts from each request's scheduled send (client-side
queueing is reported on its own as ``queue_s``), and nothing caps what is in flight unless
``max_concurrency`` declares it (0 = no cap; a point that waited on it says so). The backend's own
client cap and retries are turned off for the points (``retries``, default 0: a 429 or 5xx is a
failed request, counted in ``n_failed`` and against goodput and the SLO). Percentiles reported:
``percentiles`` (default 50,90,95,99; p90 and p99 always).

Phases, each point bounded by ``point_duration_s`` of sending plus ``drain_s`` of waiting:
1. warm-up: ``warmup`` requests, not measured; and with ``point_warmup`` (default), before the first
   closed-loop point at each concurrency c, the engine's per-shape builds (CUDA-graph captures,
   compiles) for that load — the in-process engine builds every decode step it can use, any other
   backend gets the point's first 2·c requests at c — outside the measured points;
2. closed loop over ``concurrency``; its concurrency-1 point is the single-stream speed;
3. SLO search over concurrency (``slo_search=concurrency``, the sweep seeds the bracket) or over
   arrival rate (``rate``): the highest load whose p99 TTFT and p99 TPOT meet ``slo_ttft_s`` and
   ``slo_tpot_s``; its output tokens/s (per GPU) is the "throughput at SLO" when the search
   converged (or passed at the top of its range: ``status`` says which), else null. Every point
   carries its ``slo_evidence`` (n, how many over, the percentile that n supports at 95%), and the
   figure at SLO its marks (``efficiency.at_slo_mark``, ``slo_search.marks``): "bounded" (the top
   of the range: ``search_max``, ``--limit``) and "unproven" (too few requests to show the p99,
   or a rate point shorter than the window that shows an overload);
4. open loop at ``rates`` requests/s, or at ``rate_fractions`` of the best closed-loop requests/s,
   Poisson arrivals (gamma with shape ``burstiness``) scaled to offer exactly the rate, spanning at
   least ``rate_point_s`` (`rate_windows`: by default long enough that an overload of 20% breaks the
   latency limit); a rate point meets the SLO only when completions also keep pace with arrivals
   (`sm.backlog_growth`), so a rate above capacity never passes as a short burst would;
5. long-video workload: ``video_requests`` questions on ``video_bucket`` videos at
   ``video_concurrency`` → video-hours processed per hour = the summed duration of the distinct
   videos answered (each video once, however many questions were asked on it) ÷ the point's
   duration (``n_videos`` says how many);
6. audio: ``audio_requests`` clips one at a time → real-time factor = Σ E2EL / Σ audio duration;
7. with ``mlperf_crosscheck``: the open-loop requests again through MLPerf LoadGen's Server scenario
   at the first open-loop rate (`evalsuite.serving.mlperf`), its latencies beside the suite's own.

GPUs: in-process on CUDA, the one device used (found in NVML); for a server, ``tp`` × ``dp`` when
declared, else the count of ``gpu_indices``, else what an evalsuite server reports, else unknown;
per-GPU figures and energy are null (not 0) without a GPU. A local server's energy samples only its
own GPUs: ``gpu_indices`` (NVML indices) when declared, else the one an evalsuite server reports;
otherwise energy is null, with a note (another job's GPUs are not the server's power). NVML is
sampled during the whole run (utilization, memory, power) and each point gets its joules per output
token. ``--limit N`` caps the pools, the requests of every point,
and the concurrency at N, so a short CI run stays short.

Outputs: ``samples/throughput.jsonl`` holds one line per measured request (its TTFT, TPOT, every ITL
gap and E2EL in ``usage``; phase, point, modality, scheduled and actual send times in ``metadata``);
``results.json`` holds the headline figures in ``metrics``/``efficiency`` (``output_tokens_per_s_at_slo``,
``per_gpu_throughput_at_slo``, ``max_output_tokens_per_s`` = the highest of the load points where at most
1% of requests failed or were cut off (the SLO check's failure rule, latency aside; null with a note
when no point qualifies), ``single_stream_tokens_per_s`` = output tokens/s at concurrency 1
(results of version 1 hold 1 / mean TPOT under that name; it is ``single_stream_tokens_per_s_by_tpot``),
``video_hours_per_hour``, ``audio_real_time_factor``, ``joules_per_output_token``…) and every point under
``throughput``; ``throughput/`` holds the exports (`evalsuite.serving.exports`: per-request JSONL with
absolute timestamps, each point in ``vllm bench serve --save-result`` layout, CSV). A re-run with
the same ``--out`` measures again (timings are not resumable).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import replace
from itertools import count, islice
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from evalsuite.serving import loadgen
from evalsuite.serving.exports import write_exports
from evalsuite import media as media_lib
from evalsuite.serving import metrics as sm
from evalsuite.backend import Backend, LoopThread
from evalsuite.registry import TASKS
from evalsuite.results import at_slo_marks, atomic_write_text, dumps, evidence_mark
from evalsuite.task import DrivingTask, Task, TaskArgError
from evalsuite.serving.telemetry import GpuSampler, nvml_index, window
from evalsuite.types import Request, Sample, SampleResult, user

MODALITIES = ("text", "image", "video", "audio")
SEARCH_MODES = ("concurrency", "rate", "none")
DATASETS = ("mix", "random")
POINT_MODES = ("requests", "duration")
CHAT_OVERHEAD = 4  # <bos> <|user|> … <|end|> <|assistant|>: the reference model's template around one user text
WORDS_ALPHABET = "abcdefghijklmnopqrstuvwxyz"


@TASKS.register("throughput")
class Throughput(DrivingTask):
    """Serving throughput and latency at a fixed SLO (closed/open loop, SLO search, energy)."""

    name = "throughput"
    version = "3"  # 3: rate points sustain their rate, video-hours count each video once, SLO evidence
    primary_metric = "output_tokens_per_s_at_slo"
    breakdown_keys = ("modality",)
    default_args: dict[str, Any] = {
        "dataset": "mix",
        "mix": "text,image,video,audio",
        "pool": 16,
        "max_tokens": 32,
        "ignore_eos": True,
        "warmup": 4,
        "concurrency": [1, 4, 16],
        "requests_per_point": 0,
        "rates": [],
        "rate_fractions": [0.5, 1.0],
        "random_input_len": 128,
        "random_output_len": 0,
        "random_range_ratio": 0.0,
        "burstiness": 1.0,
        "burst": False,
        "arrival_seed": -1,
        "point_mode": "requests",
        "max_concurrency": 0,
        "retries": 0,
        "percentiles": "50,90,95,99",
        "point_duration_s": 30.0,
        "drain_s": 30.0,
        "slo_ttft_s": 2.0,
        "slo_tpot_s": 0.2,
        "slo_e2el_s": 0.0,
        "slo_search": "concurrency",
        "search_max": 64,
        "search_probes": 6,
        "video_bucket": "long",
        "video_requests": 4,
        "video_concurrency": 4,
        "audio_requests": 8,
        "tp": 0,
        "dp": 0,
        "telemetry_interval_s": 0.1,
        "point_warmup": True,
        "gpu_indices": "",
        "rate_point_s": 0.0,
        "mlperf_crosscheck": False,
    }

    def __init__(self, **args: Any) -> None:
        super().__init__(**args)
        a = self.args
        mix = [m.strip() for m in str(a["mix"]).split(",") if m.strip()]
        bad = [m for m in mix if m not in MODALITIES]
        if not mix or bad:
            raise TaskArgError(f"task argument throughput.mix expects modalities from {', '.join(MODALITIES)} "
                               f"(comma-separated), got {a['mix']!r}")
        self.mix = list(dict.fromkeys(mix))
        _one_of(a, "dataset", DATASETS)
        _one_of(a, "point_mode", POINT_MODES)
        if not 0.0 <= float(a["random_range_ratio"]) < 1.0:
            raise TaskArgError("task argument throughput.random_range_ratio expects a number in [0, 1), "
                               f"got {a['random_range_ratio']!r}")
        if int(a["random_input_len"]) < 1 + CHAT_OVERHEAD or int(a["random_output_len"]) < 0:
            raise TaskArgError(f"task argument throughput.random_input_len expects an integer >= {1 + CHAT_OVERHEAD} "
                               f"(the chat template takes {CHAT_OVERHEAD}) and random_output_len >= 0 "
                               "(0 = max_tokens), "
                               f"got {a['random_input_len']!r} and {a['random_output_len']!r}")
        if int(a["arrival_seed"]) < -1:
            raise TaskArgError(f"task argument throughput.arrival_seed expects an integer >= 0 (-1 = the run's seed), "
                               f"got {a['arrival_seed']!r}")
        _one_of(a, "slo_search", SEARCH_MODES)
        from evalsuite.tasks.gen.video import BUCKETS

        _one_of(a, "video_bucket", BUCKETS)
        for key in ("concurrency", "rates", "rate_fractions"):
            vals = a[key]
            if not isinstance(vals, list) or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                                 or not 0 < v < math.inf for v in vals):  # NaN fails too
                raise TaskArgError(f"task argument throughput.{key} expects a list of finite numbers > 0, "
                                   f"got {vals!r}")
        if any(int(c) != c for c in a["concurrency"]) or not a["concurrency"]:
            raise TaskArgError(
                f"task argument throughput.concurrency expects whole numbers >= 1, got {a['concurrency']!r}")
        for key in ("pool", "max_tokens", "search_max", "video_concurrency"):
            if int(a[key]) < 1:
                raise TaskArgError(f"task argument throughput.{key} expects an integer >= 1, got {a[key]!r}")
        for key in ("warmup", "requests_per_point", "search_probes", "video_requests", "audio_requests", "tp", "dp",
                    "max_concurrency", "retries"):
            if int(a[key]) < 0:
                raise TaskArgError(f"task argument throughput.{key} expects an integer >= 0, got {a[key]!r}")
        for key in ("point_duration_s", "drain_s", "burstiness", "telemetry_interval_s"):
            if not 0 < float(a[key]) < math.inf:
                what = "a finite number > 0" if key == "burstiness" else "finite seconds > 0"
                raise TaskArgError(f"task argument throughput.{key} expects {what}, got {a[key]!r}")
        for key in ("slo_ttft_s", "slo_tpot_s", "slo_e2el_s", "rate_point_s"):
            if not 0 <= float(a[key]) < math.inf:
                zero = "automatic" if key == "rate_point_s" else "no limit"
                raise TaskArgError(
                    f"task argument throughput.{key} expects finite seconds >= 0 (0 = {zero}), got {a[key]!r}")
        try:
            self.percentiles = sm.parse_percentiles(a["percentiles"])
        except ValueError as e:
            raise TaskArgError(f"task argument throughput.percentiles: {e}") from None
        try:
            self.gpu_indices = [int(x) for x in str(a["gpu_indices"]).split(",") if x.strip()]
        except ValueError:
            self.gpu_indices = [-1]
        if any(i < 0 for i in self.gpu_indices):
            raise TaskArgError("task argument throughput.gpu_indices expects NVML device indices (comma-separated "
                               f"integers >= 0, the local server's GPUs), got {a['gpu_indices']!r}")
        self.slo = sm.SLO(ttft_s=float(a["slo_ttft_s"]) or None, tpot_s=float(a["slo_tpot_s"]) or None,
                          e2el_s=float(a["slo_e2el_s"]) or None)

    # ---- the Task contract: this task has no scored samples --------------------------------------
    def samples(self):  # type: ignore[override]
        return iter(())

    def score(self, sample: Sample, prediction: str) -> dict[str, Any]:
        raise NotImplementedError("throughput measures speed; it scores no answers")

    # ---- request pools ----------------------------------------------------------------------------
    def _source_samples(self, modality: str, n: int) -> tuple[list[Sample], Task]:
        from evalsuite.registry import TASKS as REG

        source = {"text": "docqa", "image": "docqa", "video": "videoqa", "audio": "audioqa"}[modality]
        task = REG.get(source)(n=n)
        return list(islice(task.samples(), n)), task

    def _long_videos(self, n: int) -> tuple[list[Sample], Task]:
        """``n`` videoqa questions on videos of ``video_bucket`` (rendered into videoqa's cache)."""
        from evalsuite.tasks.common import split_seed, task_cache
        from evalsuite.tasks.gen.video import build_video, render_video
        from evalsuite.tasks.videoqa import BUCKET_CYCLE, VideoQA, video_samples

        vq = VideoQA()
        folder = task_cache(vq.name, vq.version, "eval") / vq.args["difficulty"]
        out: list[Sample] = []
        index = 0
        while len(out) < n and index < 10_000:
            if BUCKET_CYCLE[index % len(BUCKET_CYCLE)] == self.args["video_bucket"]:
                spec = build_video(split_seed(vq.name, "eval", index), self.args["video_bucket"], vq.args["difficulty"])
                path = folder / f"{index:05d}.mp4"
                batch = video_samples(spec, str(path), "eval", index)[: n - len(out)]
                if not path.exists():
                    try:
                        render_video(spec, path)
                    except Exception as e:
                        for s in batch:
                            s.error = f"could not generate video {path}: {type(e).__name__}: {e}"
                out += batch
            index += 1
        return out, vq

    def _request(self, sample: Sample, source: Task, modality: str, seed: int) -> Request:
        req = source.request(sample, seed=seed)
        if modality == "text":  # the document's text instead of its image
            question = " ".join(m.text for m in sample.messages).strip()
            text_form = str(sample.metadata.get("text_form") or "")
            req = replace(req, messages=[user(f"{text_form}\n\n{question}" if text_form else question)], media={})
        return replace(req, max_tokens=int(self.args["max_tokens"]), ignore_eos=bool(self.args["ignore_eos"]),
                       choices=None, task=self.name)

    def random_pool(self, n: int, seed: int) -> list[tuple[str, Sample, Request]]:
        """``n`` prompts as ``vllm bench serve --dataset-name random`` draws them: input and output
        lengths uniform in [len·(1 − range_ratio), len·(1 + range_ratio)], random letters, ``ignore_eos``.
        Each prompt is exactly its input length in the reference model's tokens once the chat template
        is applied (one byte per token, CHAT_OVERHEAD around the text); other tokenizers count their
        own way (the server's usage count is what the figures use)."""
        a = self.args
        ratio = float(a["random_range_ratio"])
        rng = np.random.default_rng(seed)

        def lengths(mean: int, least: int) -> np.ndarray:
            lo, hi = max(least, int(mean * (1 - ratio))), max(least, int(mean * (1 + ratio)))
            return rng.integers(lo, hi + 1, size=n)

        in_lens = lengths(int(a["random_input_len"]), 1 + CHAT_OVERHEAD)
        out_lens = lengths(int(a["random_output_len"]) or int(a["max_tokens"]), 1)
        items = []
        for k, (n_in, n_out) in enumerate(zip(in_lens.tolist(), out_lens.tolist())):
            chars = rng.choice(list(WORDS_ALPHABET), size=n_in - CHAT_OVERHEAD)
            chars[5:-1:6] = " "  # words of five letters; never a space at either end
            text = "".join(chars.tolist())
            sid = f"random/{k:05d}"
            sample = Sample(id=sid, messages=[user(text)], target=None,
                            metadata={"input_len": n_in, "output_len": n_out})
            req = Request(sample_id=sid, messages=[user(text)], max_tokens=n_out, seed=seed, ignore_eos=True,
                          task=self.name)
            items.append(("text", sample, req))
        return items

    def _pool(self, modalities: list[str], n: int, seed: int, backend: Backend, notes: list[str],
              long_video: bool = False) -> list[tuple[str, Sample, Request]]:
        """Round robin over the modalities that have usable samples (errored ones are dropped)."""
        per: dict[str, list[tuple[str, Sample, Request]]] = {}
        for m in modalities:
            if m not in backend.modalities:
                notes.append(f"{m} requests left out: model {backend.describe()['name']!r} does not accept {m} input")
                continue
            try:
                samples, source = self._long_videos(n) if long_video else self._source_samples(m, n)
            except Exception as e:  # a generator that cannot run here (no espeak-ng…): that modality only
                notes.append(f"{m} requests left out: {type(e).__name__}: {str(e).strip().splitlines()[0]}")
                continue
            good = [s for s in samples if s.error is None]
            if len(good) < len(samples):
                first = next(s.error for s in samples if s.error)
                notes.append(f"{m}: {len(samples) - len(good)} of {len(samples)} source samples unusable ({first})")
            if good:
                per[m] = [(m, s, self._request(s, source, m, seed)) for s in good]
        mixed: list[tuple[str, Sample, Request]] = []
        for k in range(max((len(v) for v in per.values()), default=0)):
            for m in modalities:
                if m in per:
                    mixed.append(per[m][k % len(per[m])])
        return mixed

    # ---- the run ----------------------------------------------------------------------------------
    def run_with(self, backend: Backend, *, cfg: Any, out: Path, config_hash: str) -> dict[str, Any]:
        """Run every phase against ``backend``, write the per-request lines, return the task's entry."""
        bench = _Bench(self, backend, cfg, out)
        with bench:
            bench.run()
        lines = "".join(dumps(r.to_dict()) + "\n" for r in bench.rows)
        atomic_write_text(out / "samples" / f"{self.name}.jsonl", lines)
        entry = bench.entry(config_hash)
        points = {p["label"]: p for p in bench.closed_loop + bench.open_loop}
        points.update({k: bench.detail[k] for k in ("video", "audio") if k in bench.detail})
        entry["throughput"]["exports"] = write_exports(out / "throughput", bench.runs, points, backend.describe(),
                                                       self.slo, self.percentiles)
        return entry


Item = tuple[str, Sample, Request]  # (modality, source sample, request)


def _max_of(values: Any) -> float | None:
    """The largest of the measured values; None (not 0) when no point measured one."""
    xs = [v for v in values if v is not None]
    return max(xs) if xs else None


class _Bench:
    """One run of the task: its backend, the load generator's loop, GPU telemetry, the load points
    measured so far and one result row per request sent."""

    def __init__(self, task: Throughput, backend: Backend, cfg: Any, out: Path) -> None:
        a = task.args
        self.task, self.backend, self.cfg, self.out, self.a = task, backend, cfg, out, a
        self.limit: int | None = cfg.limit
        self.notes: list[str] = []
        self.t_start = time.perf_counter()
        desc = backend.describe()
        self.gpus, self.gpu_source, self.devices = gpu_count(desc, int(a["tp"]), int(a["dp"]), task.gpu_indices)
        if self.devices is None and self.gpus and is_local(str(desc.get("base_url") or "")):
            self.notes.append("no GPU telemetry (energy per token is null): which of this machine's GPUs the local "
                              "server uses is unknown; declare them with throughput.gpu_indices (NVML indices)")
        self.max_conc: int | None = int(a["max_concurrency"]) or None
        # a closed-loop point of n requests never has more than n in flight: requests_per_point caps it too
        per_point = int(a["requests_per_point"]) if a["point_mode"] != "duration" else 0
        caps = (self.limit, self.max_conc, int(a["search_max"]), per_point or None)
        self.conc_cap = min(x for x in caps if x is not None)
        self.sweep = sorted({int(c) for c in a["concurrency"] if c <= self.conc_cap}) or [1]
        if len(self.sweep) < len(set(int(c) for c in a["concurrency"])):
            self.notes.append(f"concurrency capped at {self.conc_cap} (--limit, max_concurrency, search_max or "
                              f"requests_per_point)")
        self._client_before: tuple[int | None, int] | None = None
        self.dur, self.drain = float(a["point_duration_s"]), float(a["drain_s"])
        self.by_duration = a["point_mode"] == "duration"
        self.n_open = self.cap(int(a["requests_per_point"]) or max(16, 4 * max(self.sweep)))
        self.overload_window_s, self.rate_window_s = rate_windows(task.slo, float(a["rate_point_s"]), self.dur)
        if self.overload_window_s > self.dur:
            self.notes.append(f"point_duration_s {self.dur:g} is under the {self.overload_window_s:.3g} s (6 x the TTFT or "
                              f"E2EL limit) in which a 20% overload breaks that limit: no rate point can show its rate "
                              f"is sustainable (each is marked unproven); raise point_duration_s above it")
        self.arrival_seed = cfg.seed if int(a["arrival_seed"]) < 0 else int(a["arrival_seed"])
        if a["dataset"] == "random":
            n = self.cap(max(int(a["pool"]), self.n_open, self.n_closed(max(self.sweep))))
            self.pool = task.random_pool(n, cfg.seed)
        else:
            self.pool = task._pool(task.mix, self.cap(a["pool"]), cfg.seed, backend, self.notes)
        if not self.pool:
            raise TaskArgError(f"task throughput: no usable requests for mix {a['mix']!r} ({'; '.join(self.notes)})")
        self.runs: list[tuple[str, str, loadgen.PointRun, list[Item]]] = []
        self.rows: list[SampleResult] = []
        self.closed_loop: list[dict[str, Any]] = []
        self.open_loop: list[dict[str, Any]] = []
        self.detail: dict[str, Any] = {}
        self.search: dict[str, Any] = {"mode": a["slo_search"], "slo": task.slo.to_dict(), "best": None}
        self.rates: list[float] = []
        self._warmed: set[tuple[str, int]] = set()
        self.sampler: GpuSampler | None = None
        self.loop: LoopThread | None = None

    def cap(self, n: Any) -> int:
        return min(int(n), self.limit) if self.limit is not None else int(n)

    def requests(self, n: int, source: list[Item] | None = None) -> list[Item]:
        source = source or self.pool
        return [source[k % len(source)] for k in range(n)]

    def n_closed(self, c: int) -> int:
        return self.cap(int(self.a["requests_per_point"]) or max(8, 4 * c))

    def __enter__(self) -> "_Bench":
        if self.devices is not None:
            self.sampler = GpuSampler.open(self.devices, float(self.a["telemetry_interval_s"]))
            if self.sampler is None:
                self.notes.append("no GPU telemetry: NVML or the GPU could not be opened")
            elif missing := sorted(set(self.devices) - set(self.sampler.indices)):
                # sampling the others alone would leave these GPUs' energy out of energy per token
                self.sampler.close()
                self.sampler = None
                raise TaskArgError(f"task argument throughput.gpu_indices: this machine's NVML has no GPU "
                                   f"{', '.join(map(str, missing))} (declared {', '.join(map(str, self.devices))})")
            else:
                self.sampler.__enter__()
        configure = getattr(self.backend, "configure_client", None)
        if callable(configure):  # the load generator alone decides what is in flight; no retries
            self._client_before = configure(max_concurrency=None, retries=int(self.a["retries"]))
            if self._client_before[0] is not None:
                self.notes.append(f"the client's own cap (max_concurrency={self._client_before[0]}) is off during "
                                  f"load points; throughput.max_concurrency={self.max_conc or 'none'} applies")
        self.loop = LoopThread("evalsuite-loadgen")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client_before is not None:
            mc, retries = self._client_before
            self.backend.configure_client(max_concurrency=mc, retries=retries)  # type: ignore[attr-defined]
        if self.sampler is not None:
            self.sampler.__exit__(None, None, None)
        if self.loop is not None:
            self.loop.close(before=self.backend.aclose)

    # ---- one load point -------------------------------------------------------------------------
    def closed(self, c: int, label: str, phase: str, items: list[Item]) -> dict[str, Any]:
        """One closed-loop point over ``items``; in duration mode (load phases) it cycles the pool
        until ``point_duration_s`` instead (``--limit`` still caps the count)."""
        assert self.loop is not None
        self._mark()
        endless = self.by_duration and phase in ("closed_loop", "slo_search") and self.limit is None
        self._warm(c, phase, items)
        reqs: Any = (r for k in count() for r in [self.pool[k % len(self.pool)][2]]) if endless \
            else [r for _, _, r in items]
        run = self.loop.run(loadgen.run_closed_loop(self.backend.agenerate, reqs, c,
                                                    max_duration_s=self.dur, drain_s=self.drain))
        if endless:
            items = self.requests(len(run.records))
        return self._point(run, label, phase, items)

    def rate_items(self, rate: float) -> list[Item]:
        """The requests of an open-loop point at ``rate``: ``n_open``, or more so that their arrivals
        span ``rate_window_s`` (`rate_windows`); ``--limit`` still caps the count (the point is then
        marked as too short to show an overload)."""
        return self.requests(self.cap(rate_point_size(rate, self.n_open, self.rate_window_s, self.dur)))

    def _warm(self, c: int, phase: str, items: list[Item]) -> None:
        """Before the first closed-loop point at concurrency ``c`` of a workload (load, video, audio),
        not measured (``point_warmup``): an engine builds its decode step per (batch size, KV length)
        on first use (a CUDA-graph capture, a compile with compile_step), and a point must not time
        those builds. A backend that can say which steps a load uses builds them all
        (``prepare_load(requests, concurrency)``: the in-process engine); for any other, the point's
        own first 2·c requests run at ``c`` (filling, then draining, every batch size up to ``c``;
        a server's other lengths may still build inside a point)."""
        key = ("load" if phase in ("closed_loop", "slo_search") else phase, c)
        if not self.a["point_warmup"] or key in self._warmed or not items:
            return
        self._warmed.add(key)
        prepare = getattr(self.backend, "prepare_load", None)
        if callable(prepare):
            try:
                prepare([r for _, _, r in (self.pool if key[0] == "load" else items)], c)
            except Exception as e:  # the point still runs; its builds may then be timed
                self.notes.append(f"warm-up at concurrency {c} failed ({type(e).__name__}: {e}): the point may "
                                  "time the engine's builds")
            return
        assert self.loop is not None
        reqs = [r for _, _, r in items[: 2 * c]]
        self.loop.run(loadgen.run_closed_loop(self.backend.agenerate, reqs, c, max_duration_s=self.dur,
                                              drain_s=self.drain))

    def open(self, rate: float, label: str, items: list[Item]) -> dict[str, Any]:
        """One open-loop point at ``rate`` (inf: a burst, every request at 0); in duration mode as
        many requests as the rate sends in ``point_duration_s``. The arrivals offer exactly ``rate``
        (`loadgen.arrival_times` with ``exact``)."""
        assert self.loop is not None
        burst = float(self.a["burstiness"])
        if self.by_duration and self.limit is None and math.isfinite(rate):
            items = self.requests(max(1, math.ceil(rate * self.dur)))
        offsets = loadgen.arrival_times(len(items), rate, burst, seed=self.arrival_seed, exact=True)
        self._mark()
        run = self.loop.run(loadgen.run_open_loop(self.backend.agenerate, [r for _, _, r in items], offsets,
                                                  max_duration_s=self.dur, drain_s=self.drain, rate=rate,
                                                  burstiness=burst, max_concurrency=self.max_conc))
        if not math.isfinite(rate):
            run.rate = None
        return self._point(run, label, "open_loop", items)

    def _mark(self) -> None:
        if self.sampler is not None:  # a telemetry reading at the edge of every point
            self.sampler.mark()

    def _point(self, run: loadgen.PointRun, label: str, phase: str, items: list[Item]) -> dict[str, Any]:
        self._mark()
        reached = run.concurrency is None or len(run.records) >= run.concurrency
        users = run.concurrency if reached else len(run.records)  # at most that many were ever in flight
        point = sm.point_metrics(run.timings, concurrency=users, gpus=self.gpus, slo=self.task.slo,
                                 percentiles=self.task.percentiles)
        span = point.get("arrival_window_s")
        pace_needs = sm.PACE_MIN_WINDOW_S
        if run.rate is not None and math.isfinite(run.rate) and run.rate > 0:
            # what this rate's schedule spans uncut (its window, or as much as fits in point_duration_s)
            pace_needs = min(pace_needs, (rate_point_size(run.rate, 1, self.rate_window_s, self.dur) - 1) / run.rate)
        if point.get("keeps_pace") is not None and span is not None and span < pace_needs * (1 - 1e-9):
            # a few requests over a fraction of a second (--limit cut the schedule short): the slope of
            # their backlog is queueing noise (a burst reads as keeping pace, half capacity as falling
            # behind), so it decides nothing; latency alone decides, and the point is unproven below
            point["keeps_pace"] = None
            point["meets_slo"] = sm.point_meets_slo_p99(run.timings, self.task.slo)
            if not self.overload_window_s:  # no latency limit either: nothing here shows the rate sustainable
                point["slo_evidence"]["proven"] = False
            run.notes.append(f"arrivals spanned {span:.3g} s, under the {pace_needs:.3g} s needed to tell "
                             "whether completions keep pace with them: latency alone decides this point")
        if not reached:  # not evidence that the configured concurrency meets the SLO
            point["meets_slo"] = False
            run.notes.append(f"only {len(run.records)} requests were sent at concurrency {run.concurrency}: that "
                             "load was never reached, so the point does not count as meeting the SLO")
        elif run.n_unsent and run.kind == "closed" and phase in ("closed_loop", "slo_search"):
            # its users kept the load for the whole time bound (each sends its next request as one ends):
            # the latencies of what was sent are that load's, only fewer of them, so they decide, and the
            # point is unproven (failing it would fail every point of a slow server, 8 s a request)
            point["slo_evidence"]["proven"] = False
            run.notes.append("judged on the requests sent before the time bound, fewer than planned: unproven")
        elif run.n_unsent and phase in ("closed_loop", "slo_search", "open_loop"):
            point["meets_slo"] = False  # the arrivals it did not send might have missed
            run.notes.append("the point does not count as meeting the SLO: it was measured on fewer requests than "
                             "planned")
        point["reached_concurrency"] = reached
        point["n_unsent"] = run.n_unsent
        ev = point["slo_evidence"]
        if run.kind == "open" and run.rate is not None and math.isfinite(run.rate) and self.overload_window_s:
            ev["window_s"], ev["window_needed_s"] = point["arrival_window_s"], self.overload_window_s
            if (point["arrival_window_s"] or 0.0) < self.overload_window_s * (1 - 1e-9):
                ev["proven"], ev["window_short"] = False, True
                run.notes.append(f"arrivals spanned {point['arrival_window_s'] or 0.0:.3g} s, under the "
                                 f"{self.overload_window_s:.3g} s in which a 20% overload breaks the latency limit: "
                                 "this point cannot show that its rate is sustainable")
        if point.get("keeps_pace") is False:
            run.notes.append(f"completions fell behind arrivals (backlog growth {point['backlog_growth']:.3f} per "
                             f"second of arrivals > {sm.PACE_TOLERANCE}): the backend does not sustain this rate, "
                             "so the point does not meet the SLO")
        lags = [r.send_lag_s for r in run.records if r.send_lag_s is not None]
        point.update(label=label, kind=run.kind, concurrency=run.concurrency, rate=run.rate,
                     burstiness=run.burstiness, n_errors=run.n_errors, n_cancelled=run.n_cancelled,
                     max_concurrency=run.max_concurrency if run.kind == "open" else run.concurrency,
                     n_waited_on_max_concurrency=run.cap_waits, hit_max_concurrency=run.cap_waits > 0,
                     send_lag_s=sm.distribution(lags, self.task.percentiles) if lags else None, notes=run.notes,
                     modalities=sorted({m for m, _, _ in items[: len(run.records)]}))
        if self.sampler is not None:
            point.update(window(self.sampler.samples, run.started, run.ended, self.sampler.max_gap_s))
            if point["energy_j"] is None:
                run.notes.append(f"no GPU telemetry for this point: NVML gave no reading for more than "
                                 f"{self.sampler.max_gap_s:g} s at its start or end (or, without an energy "
                                 f"counter, inside it), so its energy and power are null")
        if point["n_output_tokens_estimated"]:
            run.notes.append(f"{point['n_output_tokens_estimated']} of {point['n_completed']} completed requests "
                             "came without a usage count: their output tokens are streamed chunks counted, so this "
                             "point's output tokens/s and TPOT are estimates")
            note = ("output tokens of requests answered without a usage count are streamed chunks counted (a chunk "
                    "may hold several tokens): each point's n_output_tokens_estimated says how many, and its "
                    "tokens/s and TPOT are estimates")
            if note not in self.notes:
                self.notes.append(note)
        energy, tokens = point.get("energy_j"), point["output_tokens"]
        point["joules_per_output_token"] = (energy / tokens) if energy is not None and tokens else None
        for k, rec in enumerate(run.records):
            self.rows.append(_row(f"{label}/{k:04d}", phase, label, items[k], rec))
        self.runs.append((label, phase, run, items))
        return point

    # ---- the phases -----------------------------------------------------------------------------
    def run(self) -> None:
        a = self.a
        if int(a["warmup"]):  # not measured
            n = self.cap(a["warmup"])
            assert self.loop is not None
            self.loop.run(loadgen.run_closed_loop(self.backend.agenerate, [r for _, _, r in self.requests(n)],
                                                  min(n, self.conc_cap), max_duration_s=self.dur, drain_s=self.drain))
        sweep = {}
        for c in self.sweep:
            sweep[float(c)] = p = self.closed(c, f"c{c}", "closed_loop", self.requests(self.n_closed(c)))
            self.closed_loop.append(p)
        if a["slo_search"] == "concurrency":
            self.search_concurrency(sweep)
        self.open_sweep()
        self.detail["slo_search"] = self.search
        if a["mlperf_crosscheck"]:
            self.mlperf()
        if int(a["video_requests"]):
            self.long_video()
        if int(a["audio_requests"]):
            self.audio()

    def search_concurrency(self, known: dict[float, dict[str, Any]]) -> None:
        def probe(x: float) -> dict[str, Any]:
            p = self.closed(int(x), f"search-c{int(x)}", "slo_search", self.requests(self.n_closed(int(x))))
            self.closed_loop.append(p)
            return p

        res = sm.slo_search(probe, self.task.slo, start=1, upper=self.conc_cap, integer=True,
                            max_probes=int(self.a["search_probes"]), known=known)
        self.search.update(_search_summary(res, self.task.slo))

    def open_sweep(self) -> None:
        a = self.a
        best_rps = max((p["requests_per_s"] or 0.0 for p in self.closed_loop), default=0.0)
        rates = [float(r) for r in a["rates"]] or [f * best_rps for f in a["rate_fractions"] if best_rps > 0]
        self.rates = list(dict.fromkeys(rates))  # a rate given twice is measured once
        if not self.rates:
            self.notes.append("open loop skipped: " + ("rates and rate_fractions are both empty"
                                                       if not a["rate_fractions"] else
                                                       "no closed-loop point finished a request to size the rates"))
        known = {}
        for rate in self.rates:
            known[rate] = p = self.open(rate, self._rate_label("r", rate), self.rate_items(rate))
            self.open_loop.append(p)
        if a["burst"]:  # every request at once, as vllm bench serve --request-rate inf
            self.open_loop.append(self.open(math.inf, "burst", self.requests(self.n_open)))
        if a["slo_search"] == "rate" and known:
            def probe(x: float) -> dict[str, Any]:
                p = self.open(x, self._rate_label("search-r", x), self.rate_items(x))
                self.open_loop.append(p)
                return p

            res = sm.slo_search(probe, self.task.slo, start=min(known), upper=4 * max(known), integer=False,
                                max_probes=int(a["search_probes"]), known=known)
            self.search.update(_search_summary(res, self.task.slo))

    def _rate_label(self, prefix: str, rate: float) -> str:
        """``r12.5``: 4 significant digits, more when another point already has that label (its
        per-request ids and its export file are named by it); never in exponent notation (a file name
        cannot hold ``+``, and ``r7.443e_04`` would read as 7e-4)."""
        taken = {p["label"] for p in self.closed_loop + self.open_loop}
        for digits in (4, 6, 9, 12, 17):
            label = prefix + np.format_float_positional(rate, precision=digits, unique=False, fractional=False,
                                                        trim="-")
            if label not in taken:
                return label
        return f"{prefix}{rate!r}#{len(taken)}"

    def mlperf(self) -> None:
        from evalsuite.serving.mlperf import LoadGenUnavailable, run_server_scenario

        if not self.rates:
            self.notes.append("MLPerf LoadGen cross-check skipped: no rate to run it at")
            return
        slo = self.task.slo
        try:
            xc = run_server_scenario(self.backend, [r for _, _, r in self.requests(self.n_open)],
                                     target_qps=self.rates[0], ttft_s=slo.ttft_s or 3600.0, tpot_s=slo.tpot_s or 3600.0,
                                     outdir=self.out / "mlperf", max_duration_s=self.dur + self.drain,
                                     seed=self.cfg.seed)
        except LoadGenUnavailable as e:
            raise TaskArgError(f"task argument throughput.mlperf_crosscheck: {e}") from None
        xc["log_dir"] = "mlperf"  # relative to the run folder
        self.detail["mlperf_crosscheck"] = xc

    def long_video(self) -> None:
        n = self.cap(self.a["video_requests"])
        vids = self.task._pool(["video"], n, self.cfg.seed, self.backend, self.notes, long_video=True)
        if vids:
            vp = self.closed(min(int(self.a["video_concurrency"]), self.conc_cap), "video", "video", vids)
            # each distinct video once: four questions on one hour-long video process one hour of video
            videos = {str(r.metadata.get("video") or r.metadata.get("source_id")):
                      float(r.metadata.get("duration_s", 0.0)) for r in _records(self.rows, "video") if r.error is None}
            seconds = sum(videos.values())
            vp["video_seconds"] = seconds
            vp["n_videos"] = len(videos)
            vp["video_hours_per_hour"] = (seconds / vp["duration_s"]) if vp["duration_s"] else None
            self.detail["video"] = vp

    def audio(self) -> None:
        n = self.cap(self.a["audio_requests"])
        clips = self.task._pool(["audio"], n, self.cfg.seed, self.backend, self.notes)
        if clips:
            ap = self.closed(1, "audio", "audio", self.requests(n, clips))
            done = [r for r in _records(self.rows, "audio") if r.error is None and r.usage.get("e2e_s") is not None]
            secs = sum(float(r.metadata.get("duration_s", 0.0)) for r in done)
            ap["audio_seconds"] = secs
            ap["audio_real_time_factor"] = (sum(float(r.usage["e2e_s"]) for r in done) / secs) if secs > 0 else None
            self.detail["audio"] = ap

    # ---- the results entry ----------------------------------------------------------------------
    def headline(self) -> dict[str, Any]:
        load_pts = self.closed_loop + self.open_loop
        measured = load_pts + [self.detail[k] for k in ("video", "audio") if k in self.detail]
        energy = [p.get("energy_j") for p in measured]
        tokens = sum(p["output_tokens"] for p in measured)
        at_slo = self.search.get("best_point") if self.search.get("status") in ("converged", "bounded") else None
        single = next((p for p in sorted(self.closed_loop, key=lambda p: p["label"] != "c1")
                       if p["concurrency"] == 1), None)  # c1 of the sweep, else the search's probe of 1
        if single is not None and not single["n_completed"]:
            single = None  # a point where every request failed measured no speed (not 0 tok/s)
        marks = at_slo_marks(self.search) if at_slo else []
        self.search["marks"] = marks
        return {
            "output_tokens_per_s_at_slo": at_slo["output_tokens_per_s"] if at_slo else None,
            "at_slo_mark": "; ".join(marks) or None,
            "per_gpu_throughput_at_slo": at_slo["output_tokens_per_s_per_gpu"] if at_slo else None,
            "requests_per_s_at_slo": at_slo["requests_per_s"] if at_slo else None,
            "slo_rate" if self.a["slo_search"] == "rate" else "slo_concurrency": self.search.get("best"),
            "max_output_tokens_per_s": _max_of(p["output_tokens_per_s"] for p in self._sound(load_pts)),
            "max_goodput_requests_per_s": _max_of(p["goodput_requests_per_s"] for p in load_pts),
            "single_stream_tokens_per_s": single["output_tokens_per_s"] if single else None,
            "single_stream_tokens_per_s_by_tpot": single["tokens_per_s_per_user_by_tpot"] if single else None,
            "single_stream_ttft_s": single["ttft_s"]["mean"] if single else None,
            "video_hours_per_hour": self.detail.get("video", {}).get("video_hours_per_hour"),
            "audio_real_time_factor": self.detail.get("audio", {}).get("audio_real_time_factor"),
            "joules_per_output_token": (sum(e for e in energy if e is not None) / tokens)
            if self.sampler is not None and tokens and all(e is not None for e in energy) else None,
            "gpus": self.gpus,
        }

    def _sound(self, load_pts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The load points the highest output tokens/s may come from: those that pass the SLO check's
        failure rule (`sm.few_enough_failures`: at most 1% of requests failed or were cut off, and one
        finished), latency aside; a point that got its tokens/s while failing requests is not a speed
        the backend sustains. The notes name the points left out, and say why when none is left."""
        ok = [sm.few_enough_failures(p["n_requests"], p["n_completed"]) for p in load_pts]
        sound = [p for p, good in zip(load_pts, ok) if good]
        left = [str(p["label"]) for p, good in zip(load_pts, ok) if not good]
        if left and sound:
            self.notes.append(f"max_output_tokens_per_s leaves out {', '.join(left)}: more than 1% of their "
                              "requests failed or were cut off")
        elif left:
            self.notes.append("max_output_tokens_per_s is null: no load point finished at least 99% of its "
                              f"requests ({', '.join(left)} had more failed or cut off)")
        return sound

    def entry(self, config_hash: str) -> dict[str, Any]:
        task, rows = self.task, self.rows
        headline = self.headline()
        lags = [r.metadata["send_lag_s"] for r in rows if r.metadata.get("send_lag_s") is not None]
        load_pts = [p for p in self.closed_loop + self.open_loop  # a point that completed nothing is no trade-off
                    if p["tokens_per_s_per_user_by_concurrency"] is not None and p["output_tokens_per_s"] is not None
                    and p["n_completed"]]
        y_key = "output_tokens_per_s_per_gpu" if self.gpus else "output_tokens_per_s"
        front = sm.pareto_front([(p["tokens_per_s_per_user_by_concurrency"], p[y_key]) for p in load_pts])
        self.detail.update(
            slo=task.slo.to_dict(), gpus={"count": self.gpus, "source": self.gpu_source, "nvml_devices": self.devices},
            telemetry=self.sampler.describe() if self.sampler is not None else None, mix=task.mix,
            pareto={"x": "tokens_per_s_per_user_by_concurrency", "y": y_key,
                    "points": [load_pts[i]["label"] for i in front]},
            loadgen={"send_lag_s": sm.distribution(lags, task.percentiles) if lags else None,
                     "n_scheduled": len(lags), "max_concurrency": self.max_conc, "retries": int(self.a["retries"]),
                     "percentiles": list(task.percentiles)},
            notes=self.notes, closed_loop=self.closed_loop, open_loop=self.open_loop,
        )
        # a cut-off request is not an error, unless its whole point was cut off: that point measured nothing
        completed = {str(r.metadata.get("point")) for r in rows if r.error is None}
        errored = {r.id for r in rows if r.error is not None
                   and (not r.metadata.get("cancelled") or str(r.metadata.get("point")) not in completed)}
        by_mod: dict[str, dict[str, Any]] = {}
        for r in rows:
            g = by_mod.setdefault(str(r.metadata.get("modality")), {"n": 0, "n_errors": 0})
            g["n"] += 1
            g["n_errors"] += int(r.id in errored)
        return {
            "version": task.version,
            "args": task.args,
            "media": {m: req.media for m, _, req in self.pool},
            "primary_metric": task.primary_metric,
            "metrics": {k: headline[k] for k in (task.primary_metric, "per_gpu_throughput_at_slo",
                                                 "max_output_tokens_per_s", "single_stream_tokens_per_s")},
            "ci95": {task.primary_metric: None},
            "n_samples": len(rows),
            "n_scored": 0,
            "n_errors": len(errored),
            "error_rate": (len(errored) / len(rows)) if rows else 0.0,
            "breakdown": {"modality": dict(sorted(by_mod.items()))},
            "config_hash": config_hash,
            "complete": True,
            "wall_time_s": round(time.perf_counter() - self.t_start, 3),
            "usage": {"prompt_tokens": sum(int(r.usage.get("prompt_tokens") or 0) for r in rows) or None,
                      "output_tokens": sum(int(r.usage.get("output_tokens") or 0) for r in rows) or None,
                      "mean_e2e_s": None},
            "efficiency": {k: v for k, v in headline.items()
                           if v is not None or k in ("per_gpu_throughput_at_slo", "joules_per_output_token")},
            "throughput": self.detail,
            "samples_file": f"samples/{task.name}.jsonl",
        }


def _records(rows: list[SampleResult], phase: str) -> list[SampleResult]:
    return [r for r in rows if r.metadata.get("phase") == phase]


def _search_summary(res: sm.SearchResult, slo: sm.SLO) -> dict[str, Any]:
    best = res.points.get(res.best) if res.best is not None else None
    return {
        "best": res.best, "best_point": best, "first_failing": res.failing, "interpolated": res.interpolated,
        "bounded_by_search_range": res.bounded, "converged": res.converged, "status": res.status,
        "bracket": [res.best, res.failing],
        "probed": res.probed,
        "points": [{"load": x, "ttft_p99_s": p["ttft_s"]["p99"], "tpot_p99_s": p["tpot_s"]["p99"],
                    "slo_ratio": sm.slo_ratio(p, slo), "meets_slo": p["meets_slo"], "label": p.get("label"),
                    "n": p["n_requests"], "evidence": evidence_mark(p.get("slo_evidence")),
                    **({"keeps_pace": p["keeps_pace"], "backlog_growth": p.get("backlog_growth")}
                       if "keeps_pace" in p else {})}
                   for x, p in sorted(res.points.items())],
    }


def _row(rid: str, phase: str, label: str, item: tuple[str, Sample, Request], rec: loadgen.Record) -> SampleResult:
    from evalsuite.runner import prompt_text

    modality, sample, req = item
    t = rec.timing()
    resp = rec.response
    usage: dict[str, Any] = {}
    if resp is not None:
        usage = {"prompt_tokens": resp.prompt_tokens, "output_tokens": resp.output_tokens,
                 "token_count_source": resp.info.get("token_count_source"),
                 "retries": resp.info.get("retries"), "retry_s": resp.info.get("retry_s")}
    if t.ok:
        usage.update(ttft_s=sm.ttft(t), tpot_s=sm.tpot(t), e2e_s=sm.e2el(t), itl_s=sm.itls(t))
    if rec.queue_s is not None:
        usage["queue_s"] = rec.queue_s
    error = rec.error or ("cut off at the point's time bound" if rec.cancelled else None)
    return SampleResult(
        id=rid, task="throughput", target=None, prediction=resp.text if resp is not None and rec.ok else None,
        score=None, error=error,
        metadata={"phase": phase, "point": label, "modality": modality, "source_id": sample.id,
                  "scheduled_s": rec.scheduled_s, "start_s": rec.start_s, "sent_s": rec.sent_s,
                  "done_s": rec.done_s, "send_lag_s": rec.send_lag_s, "waited_on_cap": rec.waited_on_cap,
                  "cancelled": rec.cancelled, **({"duration_s": sample.metadata["duration_s"]}
                                                if "duration_s" in sample.metadata else {}),
                  **({"video": video} if (video := next((p.path for m in req.messages for p in m.content
                                                         if p.type == "video"), None)) else {})},
        usage={k: v for k, v in usage.items() if v is not None},
        media=[media_lib.describe(p) for m in req.messages for p in m.content if p.type != "text"],
        prompt=prompt_text(Sample(id=sample.id, messages=list(req.messages), target=None)),
    )


def rate_windows(slo: sm.SLO, rate_point_s: float, point_duration_s: float) -> tuple[float, float]:
    """(overload window, rate window) in seconds for the open-loop points.

    A rate point passes only when the backend sustains its rate, which a short burst cannot show: a
    backend of capacity μ offered λ = 1.2·μ queues the request that arrives at t for ≈ (λ/μ − 1)·t =
    0.2·t, so with a TTFT (or E2EL) limit L only requests arriving after 5·L wait longer than L. Over
    6·L of arrivals (the overload window) the last sixth of them do, far above the 1% a p99 allows,
    so no rate of 1.2× capacity or more can meet the SLO; less than that and the queue may never
    reach the limit (16 requests at 80 req/s against 25 req/s of capacity met a 1 s TTFT limit).
    Each rate point's arrivals therefore span the rate window: ``rate_point_s`` when given, else the
    overload window, at least 10 s (completions keeping pace with arrivals, `sm.backlog_growth`, is
    the rule that also holds without a TTFT or E2EL limit, and it needs a window that long to tell
    a 10% shortfall from queueing noise), at most ``point_duration_s`` (sending stops there). A point
    whose arrivals span less than the overload window (``--limit``, a short ``point_duration_s``) is
    marked in its ``slo_evidence`` as not proven."""
    limits = [x for x in (slo.ttft_s, slo.e2el_s) if x]
    overload = 6.0 * max(limits) if limits else 0.0
    window = rate_point_s if rate_point_s > 0 else max(overload, 10.0)
    return overload, min(window, point_duration_s)


def rate_point_size(rate: float, n_min: int, window_s: float, point_duration_s: float) -> int:
    """Requests of an open-loop point at ``rate``: at least ``n_min``, and enough that arrivals exactly
    at ``rate`` span ``window_s`` (their last at (n − 1) / rate), but never more than arrive before the
    point's sending bound ``point_duration_s`` (a schedule that ran past it would leave requests
    unsent: the point then sends what fits, and its n says so)."""
    if not math.isfinite(rate):
        return n_min
    fits = max(1, math.ceil(rate * point_duration_s))  # the most whose last arrival, (n − 1) / rate, is inside it
    return min(max(n_min, math.ceil(rate * window_s - 1e-9) + 1), fits)


def _one_of(args: dict[str, Any], key: str, allowed: tuple[str, ...]) -> None:
    """One clear error when the task argument ``key`` is not one of ``allowed``."""
    if args[key] not in allowed:
        raise TaskArgError(f"task argument throughput.{key} expects one of {', '.join(allowed)}, got {args[key]!r}")


def is_local(url: str) -> bool:
    """Whether a server's base URL is on this machine (a loopback host): its GPUs are then local."""
    return bool(url) and (urlparse(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


def gpu_count(desc: dict[str, Any], tp: int, dp: int, indices: list[int] | None = None
              ) -> tuple[int | None, str, list[int] | None]:
    """(GPUs used, how that was found, NVML devices to sample: indices, or None for none).

    In-process on ``cuda[:i]``: 1, the NVML index of that device. A server: ``tp`` × ``dp`` when either
    is declared (the other defaults to 1), else as many as ``indices`` declares (``gpu_indices``), else
    what an evalsuite server reports. Local GPUs are sampled only when the server is on this machine
    (a loopback URL), and only those known to be the server's: the declared ``indices``, else the one
    an evalsuite server reports (its ``nvml_index``); never every GPU of the machine, whose other
    GPUs' power is not the server's (energy per token is then null, with a note)."""
    device = str(desc.get("device") or "")
    local_server = is_local(str(desc.get("base_url") or ""))
    in_process = device.startswith("cuda")
    reported = desc.get("server") or {}
    reported_index = reported.get("nvml_index")
    sample: list[int] | None = None
    if in_process:
        sample = [nvml_index(device)]
    elif local_server and indices:
        sample = list(indices)
    elif local_server and isinstance(reported_index, int) and not isinstance(reported_index, bool):
        sample = [reported_index]
    if tp or dp:
        return max(tp, 1) * max(dp, 1), "declared tp × dp", sample
    if in_process:
        return 1, "in-process device (NVML)", sample
    if indices and not in_process:
        return len(indices), "declared gpu_indices", sample
    if str(reported.get("device") or "").startswith("cuda"):
        return 1, "reported by the evalsuite server", sample
    return None, "no GPU (per-GPU figures and energy are null)", None
