"""Cross-check of the suite's serving figures against NVIDIA aiperf, with the server's /metrics as referee.

    python bench/crosscheck_aiperf.py [--aiperf /tmp/aiperf-venv/bin/aiperf] [--out results/bench]

Starts ``evalsuite serve --model fp4 --max-num-seqs 8`` on a free loopback port (or uses ``--url``),
sends a short warm-up, then measures each load point twice — once with the suite's load generator and
metrics (`evalsuite.serving.loadgen`, `evalsuite.serving.metrics`: the calls the ``throughput`` task
makes, with its client cap and retries off), once with aiperf — on the same prompts: the
``throughput.dataset=random`` pool (`Throughput.random_pool`: ``--input-len`` tokens with the chat
template, ``--output-len`` output tokens, ``ignore_eos``), handed to aiperf as a ``single_turn`` file
with each prompt's ``output_length``, sent in the same order. Points: closed loop at
``--concurrency`` (default 1, 4, 8) and open loop (Poisson arrivals) at ``--rates`` (default 15 and 200
requests/s), where aiperf replays the suite's send times (``--fixed-schedule``; ``--aiperf-arrivals
own`` lets it draw its own); the two tools alternate which goes first, and ``--repeats`` measures
every point again (medians reported).

The referee is the server's /metrics, read before and after every measurement: its counters
(generated and prompt tokens, requests by outcome) check each tool's token count, and its own
TTFT/TPOT/E2E histograms (sum / count) say how fast the server ran while that tool measured — on a
shared machine a client's own CPU use slows the server it measures, which the tool-to-tool ratios
alone cannot tell from a measurement difference. Each tool's client CPU seconds are recorded too.
aiperf runs with ``--use-server-token-count`` (so both tools divide by the same token
counts; aiperf's own tokenizer counting is a separate question, see BENCHMARKS.md) and a local
byte-level tokenizer written here, identical to the reference model's (one id per byte), because
aiperf needs one to load a dataset and must not reach the network.

Writes ``<out>/crosscheck.json`` (every figure of both tools, the counter deltas, the ratios, the load
average) and ``<out>/crosscheck.md`` (the tables for BENCHMARKS.md), and prints the markdown. Without a
usable ``--aiperf`` it says so in one line and measures the suite's side only (exit 0).

Figures compared (suite name ↔ aiperf tag): ``ttft_s`` ↔ ``time_to_first_token``; ``tpot_s`` ↔
``inter_token_latency`` (both (E2E − TTFT) / (tokens − 1)); ``itl_s`` ↔ ``inter_chunk_latency`` (gaps
between streamed chunks, compared by their mean); ``e2el_s`` ↔ ``request_latency``;
``output_tokens_per_s`` ↔ ``output_token_throughput``; ``requests_per_s`` ↔ ``request_throughput``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evalsuite.model.tokenizer import N_BYTES, SPECIAL_TOKENS  # noqa: E402
from evalsuite.results import atomic_write_text, dumps  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# the figures both tools report: (name in the tables, suite point key, statistic, aiperf tag, statistic)
FIGURES = (
    ("ttft_p50", "ttft_s", "p50", "time_to_first_token", "p50"),
    ("ttft_p99", "ttft_s", "p99", "time_to_first_token", "p99"),
    ("tpot_p50", "tpot_s", "p50", "inter_token_latency", "p50"),
    ("itl_mean", "itl_s", "mean", "inter_chunk_latency", "avg"),
    ("e2el_p50", "e2el_s", "p50", "request_latency", "p50"),
)
RATES = (("output_tokens_per_s", "output_token_throughput"), ("requests_per_s", "request_throughput"))
# means, checked against the server's own histograms: (name, suite point key, aiperf tag, server mean)
MEANS = (("ttft_mean", "ttft_s", "time_to_first_token", "ttft_s"),
         ("tpot_mean", "tpot_s", "inter_token_latency", "tpot_s"),
         ("e2el_mean", "e2el_s", "request_latency", "e2el_s"))
TIME_UNITS = {"ms": 1e-3, "s": 1.0, "sec": 1.0, "us": 1e-6, "ns": 1e-9}
COUNTERS = ("evalsuite_generation_tokens_total", "evalsuite_prompt_tokens_total",
            'evalsuite_requests_total{status="ok"}', 'evalsuite_requests_total{status="client_error"}',
            'evalsuite_requests_total{status="server_error"}', 'evalsuite_requests_total{status="cancelled"}',
            *(f"evalsuite_{h}_seconds_{part}" for h in ("time_to_first_token", "time_per_output_token",
                                                         "e2e_request_latency") for part in ("sum", "count")))
SERVER_MEANS = (("ttft_s", "time_to_first_token"), ("tpot_s", "time_per_output_token"),
                ("e2el_s", "e2e_request_latency"))


# ---- pure parts -----------------------------------------------------------------------------------
def parse_prometheus(text: str) -> dict[str, float]:
    """Samples of a Prometheus text page: ``{'name{labels}': value}`` (comments and bad lines skipped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^(\S+?(?:\{[^}]*\})?)\s+(\S+)$", line)
        if m:
            try:
                out[m.group(1)] = float(m.group(2))
            except ValueError:
                continue
    return out


def counter_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """after − before of the server's counters (:data:`COUNTERS`), under short names."""
    def short(name: str) -> str:
        m = re.match(r'evalsuite_requests_total\{status="(\w+)"\}', name)
        return f"requests_{m.group(1)}" if m else name.removeprefix("evalsuite_").removesuffix("_total")

    return {short(k): after.get(k, 0.0) - before.get(k, 0.0) for k in COUNTERS}


def server_means(delta: dict[str, float]) -> dict[str, float | None]:
    """The server's own mean TTFT, TPOT and E2E latency over an interval (its histograms' sum / count):
    how fast the server itself ran while one tool measured it."""
    return {name: ratio(delta.get(f"{h}_seconds_sum"), delta.get(f"{h}_seconds_count")) for name, h in SERVER_MEANS}


def parse_aiperf(export: dict[str, Any]) -> dict[str, Any]:
    """The figures of an aiperf ``profile_export_aiperf.json`` in the suite's terms: latencies in
    seconds as ``{'p50': …, 'p99': …, 'avg': …}``, rates per second, token and request counts."""
    def metric(tag: str) -> dict[str, Any]:
        m = export.get(tag)
        return m if isinstance(m, dict) else {}

    def seconds(tag: str) -> dict[str, float | None]:
        m = metric(tag)
        unit = str(m.get("unit", "ms"))
        if unit not in TIME_UNITS:
            raise ValueError(f"aiperf metric {tag}: expected a time unit ({', '.join(TIME_UNITS)}), got {unit!r}")
        scale = TIME_UNITS[unit]
        return {k: (float(m[k]) * scale if m.get(k) is not None else None) for k in ("avg", "p50", "p90", "p99")}

    def scalar(tag: str) -> float | None:
        v = metric(tag).get("avg")
        return None if v is None else float(v)

    errors = export.get("error_summary") or []
    return {
        "version": export.get("aiperf_version"),
        **{tag: seconds(tag) for tag in {f[3] for f in FIGURES}},
        "output_token_throughput": scalar("output_token_throughput"),
        "request_throughput": scalar("request_throughput"),
        "benchmark_duration_s": scalar("benchmark_duration"),
        "total_output_tokens": scalar("total_output_tokens"),
        "total_input_tokens": scalar("total_isl"),
        "completed": scalar("completed_request_count") if metric("completed_request_count")
        else scalar("request_count"),
        "errors": int(sum(int(e.get("count", 1)) for e in errors if isinstance(e, dict))),
        "effective_concurrency": scalar("effective_concurrency"),
    }


def suite_figures(point: dict[str, Any]) -> dict[str, Any]:
    """The same figures from a suite load point (`evalsuite.serving.metrics.point_metrics`)."""
    out: dict[str, Any] = {name: (point.get(key) or {}).get(stat) for name, key, stat, _, _ in FIGURES}
    out.update({k: point.get(k) for k, _ in RATES})
    out["output_tokens"] = point.get("output_tokens")
    out["completed"] = point.get("n_completed")
    out.update({name: (point.get(key) or {}).get("mean") for name, key, _, _ in MEANS})
    out["client_cpu_s"] = point.get("client_cpu_s")
    return out


def aiperf_figures(parsed: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {name: (parsed.get(tag) or {}).get(stat) for name, _, _, tag, stat in FIGURES}
    out.update({k: parsed.get(tag) for k, tag in RATES})
    out["output_tokens"] = parsed.get("total_output_tokens")
    out["completed"] = parsed.get("completed")
    out.update({name: (parsed.get(tag) or {}).get("avg") for name, _, tag, _ in MEANS})
    out["client_cpu_s"] = parsed.get("client_cpu_s")
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return (a / b) if a is not None and b not in (None, 0) else None


def point_ratios(suite: dict[str, Any], aiperf: dict[str, Any] | None, server_suite: dict[str, float] | None,
                 server_aiperf: dict[str, float] | None) -> dict[str, float | None]:
    """suite/aiperf for every figure; suite/server and aiperf/server output-token counts; the server's
    own mean latencies while the suite measured over those while aiperf measured (``server_*``); and
    each tool's mean TTFT/TPOT/E2E over the server's own mean in that tool's interval."""
    names = [f[0] for f in FIGURES] + [k for k, _ in RATES]
    out: dict[str, float | None] = {f"{n}": ratio(suite.get(n), (aiperf or {}).get(n)) for n in names}
    out["suite_tokens_over_server"] = ratio(suite.get("output_tokens"),
                                            (server_suite or {}).get("generation_tokens"))
    out["aiperf_tokens_over_server"] = ratio((aiperf or {}).get("output_tokens"),
                                             (server_aiperf or {}).get("generation_tokens"))
    during_suite, during_aiperf = server_means(server_suite or {}), server_means(server_aiperf or {})
    for name, _ in SERVER_MEANS:  # the server's own speed while each tool measured: suite / aiperf
        out[f"server_{name.removesuffix('_s')}_mean"] = ratio(during_suite[name], during_aiperf[name])
    for name, _, _, server in MEANS:
        out[f"suite_{name}_over_server"] = ratio(suite.get(name), during_suite[server])
        out[f"aiperf_{name}_over_server"] = ratio((aiperf or {}).get(name), during_aiperf[server])
    return out


def byte_tokenizer_files() -> dict[str, str]:
    """``tokenizer.json`` / ``tokenizer_config.json`` of a Hugging Face fast tokenizer that maps text to
    its UTF-8 bytes, id = byte value, plus the reference model's special tokens after them, as
    `evalsuite.model.tokenizer.ByteTokenizer` does: byte-level BPE without merges."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):  # GPT-2's byte → unicode table, as the ByteLevel pre-tokenizer expects
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    tok = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": N_BYTES + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, s in enumerate(SPECIAL_TOKENS)],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {chars[b]: b for b in range(256)}, "merges": []},
    }
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<bos>", "eos_token": "<eos>",
              "pad_token": "<pad>", "model_max_length": 1_000_000}
    return {"tokenizer.json": json.dumps(tok), "tokenizer_config.json": json.dumps(config)}


def aiperf_prompts(prompts: Sequence[tuple[str, int]], offsets_s: Sequence[float] | None = None) -> str:
    """aiperf ``single_turn`` JSONL: one ``{"text", "output_length"}`` line per (prompt, output tokens),
    with ``timestamp`` (ms) when the send offsets are given (aiperf's ``--fixed-schedule``)."""
    if offsets_s is not None and len(offsets_s) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(offsets_s)} send offsets")
    lines = []
    for k, (text, n) in enumerate(prompts):
        line: dict[str, Any] = {"text": text, "output_length": int(n)}
        if offsets_s is not None:
            line["timestamp"] = round(float(offsets_s[k]) * 1e3, 3)
        lines.append(json.dumps(line) + "\n")
    return "".join(lines)


def aiperf_command(aiperf: str, *, url: str, model: str, prompts_file: Path, tokenizer: Path, out: Path,
                   n: int, concurrency: int | None = None, rate: float | None = None, schedule: bool = False,
                   seed: int = 0, timeout_s: float = 600.0) -> list[str]:
    """The ``aiperf profile`` command of one point: closed loop at ``concurrency``, or open loop —
    the prompts file's own timestamps (``schedule``: ``--fixed-schedule``) or aiperf's Poisson arrivals
    at ``rate`` —, never a concurrency cap in open loop; ``n`` requests, streaming chat, ``ignore_eos``,
    server token counts."""
    if sum((concurrency is not None, rate is not None, schedule)) != 1:
        raise ValueError("aiperf_command: give exactly one of concurrency, rate and schedule")
    load = ["--concurrency", str(concurrency)] if concurrency is not None else ["--fixed-schedule"] if schedule \
        else ["--request-rate", f"{rate:g}", "--arrival-pattern", "poisson"]
    return [aiperf, "profile", "--model", model, "--url", url, "--endpoint-type", "chat", "--streaming",
            "--input-file", str(prompts_file), "--custom-dataset-type", "single_turn",
            "--dataset-sampling-strategy", "sequential", "--extra-inputs", "ignore_eos:true",
            "--tokenizer", str(tokenizer), "--use-server-token-count", *load, "--request-count", str(n),
            "--random-seed", str(seed), "--request-timeout-seconds", f"{timeout_s:g}", "--ui-type", "none",
            "--no-server-metrics", "--no-gpu-telemetry", "--output-artifact-dir", str(out)]


def _f(v: float | None, fmt: str = "{:.2f}") -> str:
    return "–" if v is None else fmt.format(v)


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v * 1e3:,.1f}"


def markdown(result: dict[str, Any]) -> str:
    """The tables of a cross-check result (the JSON this script writes)."""
    env = result["environment"]
    reps = max((int(p.get("repeats") or 1) for p in result["points"]), default=1)
    lines = [
        f"Device: {env['device']}; {env['note']} (load average {env['load_before']:.1f} before, "
        f"{env['load_after']:.1f} after). Date: {env['date']}. Command: `{env['command']}`. "
        f"Server: `{env['server']}`{pinning(env)}. aiperf: {result.get('aiperf_version') or 'not run'}. "
        f"Prompts: `throughput.dataset=random`, {result['input_len']} input tokens (chat template included), "
        f"{result['output_len']} output tokens, `ignore_eos`; open loop: Poisson arrivals, "
        + ("aiperf replaying the suite's send times (`--fixed-schedule`)"
           if result.get("aiperf_arrivals", "suite") == "suite" else "each tool drawing its own") + ".", "",
        f"Ratios suite / aiperf (1.00 = same figure; medians over {reps} repeats of each point), and each "
        "tool's output tokens / the server's /metrics count over the same interval:", "",
        "| point | requests | TTFT p50 | TTFT p99 | TPOT p50 | ITL mean | E2E p50 | out tok/s | req/s "
        "| suite/server tokens | aiperf/server tokens | server's own TPOT, suite/aiperf | hit cap |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in result["points"]:
        r = p["ratios"]
        cap = "–" if p["kind"] == "closed" else (
            "yes" if p["suite"].get("hit_max_concurrency") else
            "no" if p["max_concurrency"] else "no (none declared)")
        lines.append(f"| {p['label']} | {p['n']} | " + " | ".join(_f(r.get(f[0])) for f in FIGURES) + " | "
                     + " | ".join(_f(r.get(k)) for k, _ in RATES)
                     + f" | {_f(r['suite_tokens_over_server'], '{:.3f}')} | "
                       f"{_f(r['aiperf_tokens_over_server'], '{:.3f}')} | {_f(r.get('server_tpot_mean'))} | {cap} |")
    lines += ["", "Absolute figures (ms, tokens/s, requests/s), suite / aiperf:", "",
              "| point | TTFT p50 | TTFT p99 | TPOT p50 | ITL mean | E2E p50 | out tok/s | req/s | client CPU s "
              "| mean in flight (suite) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in result["points"]:
        s, a = p["suite_figures"], p.get("aiperf_figures") or {}
        cells = [f"{_ms(s.get(f[0]))} / {_ms(a.get(f[0]))}" for f in FIGURES]
        cells += [f"{_f(s.get(k), '{:,.1f}')} / {_f(a.get(k), '{:,.1f}')}" for k, _ in RATES]
        cells.append(f"{_f(s.get('client_cpu_s'), '{:.1f}')} / {_f(a.get('client_cpu_s'), '{:.1f}')}")
        lines.append(f"| {p['label']} | " + " | ".join(cells) + f" | {_f(p['suite'].get('mean_in_flight'), '{:.1f}')} |")
    lines += ["", "Each tool's mean over the server's own mean (its /metrics histograms) in the same interval:", "",
              "| point | TTFT suite | TTFT aiperf | TPOT suite | TPOT aiperf | E2E suite | E2E aiperf |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for p in result["points"]:
        r = p["ratios"]
        lines.append(f"| {p['label']} | " + " | ".join(
            _f(r.get(f"{tool}_{name}_over_server")) for name, _, _, _ in MEANS for tool in ("suite", "aiperf")) + " |")
    sat = result.get("open_over_saturation") or {}
    if sat:
        lines += ["", f"Open loop {sat['open']} over closed-loop saturation ({sat['closed']}), output tok/s: "
                      f"suite {_f(sat.get('suite'))}, aiperf {_f(sat.get('aiperf'))} (target: within 10%, "
                      "0.90–1.10)."]
    for note in result.get("notes") or []:
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"


def open_over_saturation(points: list[dict[str, Any]], open_label: str, closed_label: str) -> dict[str, Any] | None:
    by = {p["label"]: p for p in points}
    if open_label not in by or closed_label not in by:
        return None
    o, c = by[open_label], by[closed_label]
    return {"open": open_label, "closed": closed_label,
            "suite": ratio(o["suite_figures"].get("output_tokens_per_s"), c["suite_figures"].get("output_tokens_per_s")),
            "aiperf": ratio((o.get("aiperf_figures") or {}).get("output_tokens_per_s"),
                            (c.get("aiperf_figures") or {}).get("output_tokens_per_s"))}


def _median(xs: Sequence[float | None]) -> float | None:
    vals = sorted(x for x in xs if x is not None)
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A point over its repeats: the median of each figure (per tool) and of each ratio; the suite's
    mean in flight and whether any repeat hit the open-loop cap."""
    def med(key: str) -> dict[str, Any] | None:
        dicts = [r.get(key) for r in runs if r.get(key)]
        if not dicts:
            return None
        return {k: _median([d.get(k) for d in dicts]) for k in dicts[0]}

    return {"repeats": len(runs), "suite_figures": med("suite_figures"), "aiperf_figures": med("aiperf_figures"),
            "ratios": med("ratios"),
            "suite": {"mean_in_flight": _median([r["suite"].get("mean_in_flight") for r in runs]),
                      "hit_max_concurrency": any(r["suite"].get("hit_max_concurrency") for r in runs)}}


# ---- measuring ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinning(env: dict[str, Any]) -> str:
    """", the server on CPUs [0], the clients on [1]" where the run pinned them."""
    server, client = env.get("server_cpus") or [], env.get("client_cpus") or []
    if not server and not client:
        return ""
    return f", the server on CPUs {server or 'any'}, the clients on {client or 'any'}"


def cpu_set(text: str) -> set[int]:
    """"0", "0,1", "2-3" -> CPU ids; "" -> the empty set (no pinning)."""
    cpus: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise SystemExit(f"error: CPU list expects ids and ranges like 0,2-3, got {text!r}")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def start_server(model: str, max_num_seqs: int, cpus: set[int] | None = None
                 ) -> tuple[subprocess.Popen, str, list[str]]:
    """``cpus``: run the server on these CPUs only (its torch threads sized to them), so that the
    clients, pinned elsewhere, do not take its cores."""
    port = free_port()
    cmd = [sys.executable, "-m", "evalsuite", "serve", "--model", model, "--max-num-seqs", str(max_num_seqs),
           "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if cpus:
        env.update(OMP_NUM_THREADS=str(len(cpus)), MKL_NUM_THREADS=str(len(cpus)))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    base = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        if proc.poll() is not None:
            raise SystemExit(f"evalsuite serve exited with code {proc.returncode} before it came up: {' '.join(cmd)}")
        try:
            urllib.request.urlopen(f"{base}/health", timeout=1).read()
            return proc, base, cmd
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("evalsuite serve did not come up within 120 s")


def scrape(base: str) -> dict[str, float]:
    return parse_prometheus(urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode())


def run_suite_point(base: str, requests: list[Any], *, concurrency: int | None, offsets: list[float] | None,
                    rate: float | None, max_concurrency: int | None, max_duration_s: float,
                    drain_s: float) -> dict[str, Any]:
    """One load point through the suite's load generator and metrics, as the throughput task runs it:
    closed loop at ``concurrency``, or open loop at the send ``offsets`` (drawn at ``rate``)."""
    from evalsuite.backends.openai_compat import OpenAIBackend
    from evalsuite.serving import loadgen
    from evalsuite.serving import metrics as sm

    backend = OpenAIBackend(f"{base}/v1")
    backend.configure_client(max_concurrency=None, retries=0)  # the task turns both off for its points

    async def go() -> loadgen.PointRun:
        try:
            if concurrency is not None:
                return await loadgen.run_closed_loop(backend.agenerate, requests, concurrency,
                                                     max_duration_s=max_duration_s, drain_s=drain_s)
            assert offsets is not None
            return await loadgen.run_open_loop(backend.agenerate, requests, offsets, max_duration_s=max_duration_s,
                                               drain_s=drain_s, rate=rate, burstiness=1.0,
                                               max_concurrency=max_concurrency)
        finally:
            await backend.aclose()

    cpu0 = time.process_time()
    try:
        run = asyncio.run(go())
    finally:
        backend.close()
    cpu_s = time.process_time() - cpu0
    point = sm.point_metrics(run.timings, concurrency=run.concurrency)
    point.update(client_cpu_s=cpu_s, n_errors=run.n_errors, hit_max_concurrency=run.cap_waits > 0,
                 n_waited_on_max_concurrency=run.cap_waits, notes=run.notes,
                 first_error=next((r.error for r in run.records if r.error), None))
    ttft_sent = [t.token_times[0] - (t.queue_s or 0.0) for t in run.timings if t.ok and t.token_times]
    point["ttft_from_sent_s"] = sm.distribution(ttft_sent) if ttft_sent else None
    return point


def run_aiperf_point(aiperf: str, base: str, model: str, prompts: list[tuple[str, int]], folder: Path,
                     tokenizer: Path, *, concurrency: int | None, rate: float | None, offsets: list[float] | None,
                     seed: int, timeout_s: float) -> dict[str, Any]:
    """One load point through aiperf (open loop: at the suite's send ``offsets`` when given, else its
    own Poisson arrivals at ``rate``); its parsed export, or ``{"error": …}``."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    prompts_file = folder / "prompts.jsonl"
    schedule = concurrency is None and offsets is not None
    prompts_file.write_text(aiperf_prompts(prompts, offsets if schedule else None), encoding="utf-8")
    cmd = aiperf_command(aiperf, url=base, model=model, prompts_file=prompts_file, tokenizer=tokenizer,
                         out=folder / "artifacts", n=len(prompts), concurrency=concurrency,
                         rate=None if concurrency is not None or schedule else rate, schedule=schedule, seed=seed,
                         timeout_s=timeout_s)
    cpu0 = _children_cpu_s()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s + 120, cwd=folder)
    except subprocess.TimeoutExpired:
        return {"error": f"aiperf did not finish within {timeout_s + 120:g} s", "command": cmd}
    (folder / "aiperf.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    export = folder / "artifacts" / "profile_export_aiperf.json"
    if proc.returncode != 0 or not export.exists():
        return {"error": f"aiperf exited with code {proc.returncode} (log: {folder / 'aiperf.log'})", "command": cmd}
    return {**parse_aiperf(json.loads(export.read_text())), "client_cpu_s": _children_cpu_s() - cpu0, "command": cmd}


def _children_cpu_s() -> float:
    """CPU seconds of this process's finished children (aiperf and every process it started)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def measure_pair(base: str, aiperf: str | None, args: argparse.Namespace, work: Path, tokenizer: Path,
                 pool: list[Any], prompts: list[tuple[str, int]], label: str, n: int, c: int | None,
                 rate: float | None, aiperf_first: bool) -> dict[str, Any]:
    """One point measured by the suite and by aiperf (in the order given), each between two readings
    of the server's counters; their figures and ratios."""
    from evalsuite.serving import loadgen

    reqs = [r for _, _, r in pool[:n]]
    offsets = loadgen.arrival_times(n, rate, 1.0, seed=args.seed) if rate is not None else None
    run: dict[str, Any] = {"load_before": os.getloadavg()[0]}

    def suite_side() -> None:
        before = scrape(base)
        run["suite"] = run_suite_point(base, reqs, concurrency=c, offsets=offsets, rate=rate,
                                       max_concurrency=args.open_max_concurrency or None,
                                       max_duration_s=args.point_timeout_s, drain_s=args.point_timeout_s)
        run["server_suite"] = counter_delta(before, scrape(base))

    def aiperf_side() -> None:
        before = scrape(base)
        slug = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-")
        run["aiperf"] = run_aiperf_point(aiperf, base, args.model, prompts[:n], (work / slug).resolve(),  # type: ignore[arg-type]
                                         tokenizer.resolve(), concurrency=c, rate=rate,
                                         offsets=offsets if args.aiperf_arrivals == "suite" else None,
                                         seed=args.seed, timeout_s=args.point_timeout_s)
        run["server_aiperf"] = counter_delta(before, scrape(base))

    sides = [suite_side] + ([aiperf_side] if aiperf else [])
    if aiperf_first:
        sides.reverse()
    for side in sides:
        side()
    run["order"] = [side.__name__.removesuffix("_side") for side in sides]
    run["suite_figures"] = suite_figures(run["suite"])
    a = run.get("aiperf")
    run["aiperf_figures"] = aiperf_figures(a) if a and "error" not in a else None
    run["ratios"] = point_ratios(run["suite_figures"], run["aiperf_figures"], run["server_suite"],
                                 run.get("server_aiperf"))
    run["load_after"] = os.getloadavg()[0]
    return run


def aiperf_version(aiperf: str) -> str | None:
    """The installed aiperf's version, from the Python next to its entry point."""
    py = Path(aiperf).with_name("python")
    if not py.exists():
        return None
    try:
        out = subprocess.run([str(py), "-c", "import importlib.metadata as m; print(m.version('aiperf'))"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def _floats(s: str) -> list[float]:
    return [float(x) for x in s.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--aiperf", default=None, help="aiperf executable (its own venv); without it, the suite only")
    ap.add_argument("--url", default=None, help="a running evalsuite serve (http://host:port); default: start one")
    ap.add_argument("--model", default="fp4")
    ap.add_argument("--max-num-seqs", type=int, default=8)
    ap.add_argument("--concurrency", default="1,4,8", help="closed-loop points")
    ap.add_argument("--closed-requests", default="16,24,48", help="requests of each closed-loop point")
    ap.add_argument("--rates", default="15,200", help="open-loop points, requests/s (Poisson)")
    ap.add_argument("--open-requests", default="60,200", help="requests of each open-loop point")
    ap.add_argument("--aiperf-arrivals", choices=("suite", "own"), default="suite",
                    help="open loop: aiperf replays the suite's send times (--fixed-schedule) or draws its own")
    ap.add_argument("--open-max-concurrency", type=int, default=0, help="declared client cap in open loop (0: none)")
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1, help="measure every point this many times (medians reported)")
    ap.add_argument("--point-timeout-s", type=float, default=300.0)
    ap.add_argument("--out", default="results/bench")
    ap.add_argument("--server-cpus", default="", help="pin the started server to these CPUs, e.g. 0 (default: none)")
    ap.add_argument("--client-cpus", default="",
                    help="pin this script and the aiperf it starts to these CPUs, e.g. 1 (default: none)")
    ap.add_argument("--note", default="2 shared CPU cores, a training job running",
                    help="what else ran on the machine (goes into the table)")
    args = ap.parse_args(argv)
    conc, n_closed, rates, n_open = (_ints(args.concurrency), _ints(args.closed_requests), _floats(args.rates),
                                     _ints(args.open_requests))
    if len(conc) != len(n_closed) or len(rates) != len(n_open):
        raise SystemExit("error: --closed-requests needs one count per --concurrency, --open-requests one per --rates")

    from evalsuite.serving.throughput import Throughput

    out = Path(args.out)
    work = out / "crosscheck"
    aiperf = args.aiperf if args.aiperf and Path(args.aiperf).is_file() and os.access(args.aiperf, os.X_OK) else None
    notes: list[str] = []
    if aiperf is None:
        where = args.aiperf or "no --aiperf given"
        print(f"aiperf not found ({where}); measuring the suite's side only", file=sys.stderr)
        notes.append(f"aiperf not found ({where}): suite side only")
    version = aiperf_version(aiperf) if aiperf else None
    tokenizer = work / "byte-tokenizer"
    for name, text in byte_tokenizer_files().items():
        atomic_write_text(tokenizer / name, text)

    task = Throughput(dataset="random", random_input_len=args.input_len, random_output_len=args.output_len,
                      max_tokens=args.output_len)
    pool = task.random_pool(max([*n_closed, *n_open, args.warmup]), args.seed)
    prompts = [(req.messages[0].content[0].text or "", req.max_tokens) for _, _, req in pool]

    server_cpus, client_cpus = cpu_set(args.server_cpus), cpu_set(args.client_cpus)
    proc, base, server_cmd = (None, args.url.rstrip("/"), ["(given)", args.url]) if args.url else \
        start_server(args.model, args.max_num_seqs, server_cpus)
    if client_cpus:  # after the server started: it keeps its own CPUs; aiperf inherits these
        os.sched_setaffinity(0, client_cpus)
    load_before = os.getloadavg()[0]
    points: list[dict[str, Any]] = []
    try:
        if args.warmup:  # first requests pay for lazy set-up in the server; not measured
            run_suite_point(base, [r for _, _, r in pool[: args.warmup]], concurrency=min(args.warmup, 8),
                            offsets=None, rate=None, max_concurrency=None, max_duration_s=120, drain_s=60)
        plan = [("closed", f"c{c}", n, c, None) for c, n in zip(conc, n_closed)] + \
               [("open", f"{r:g} req/s", n, None, r) for r, n in zip(rates, n_open)]
        points = [{"label": label, "kind": kind, "n": n, "concurrency": c, "rate": rate,
                   "max_concurrency": (args.open_max_concurrency or None) if kind == "open" else c, "runs": []}
                  for kind, label, n, c, rate in plan]
        for rep in range(args.repeats):
            for i, (kind, label, n, c, rate) in enumerate(plan):
                run = measure_pair(base, aiperf, args, work, tokenizer, pool, prompts, label, n, c, rate,
                                   aiperf_first=(i + rep) % 2 == 1)
                points[i]["runs"].append(run)
                if "error" in (run.get("aiperf") or {}):
                    notes.append(f"{label} (repeat {rep + 1}): {run['aiperf']['error']}")
                print(f"# {label} #{rep + 1}: suite {run['suite_figures']['output_tokens_per_s']} tok/s; aiperf "
                      f"{(run['aiperf_figures'] or {}).get('output_tokens_per_s')} tok/s", file=sys.stderr)
        for p in points:
            p.update(summarize(p["runs"]))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    sat = open_over_saturation(points, f"{max(rates):g} req/s", f"c{max(conc)}") if rates and conc else None
    result = {
        "aiperf_version": version, "input_len": args.input_len, "output_len": args.output_len,
        "aiperf_arrivals": args.aiperf_arrivals,
        "environment": {
            "device": f"CPU only: {platform.machine()} ({os.cpu_count()} cores), Python {platform.python_version()}",
            "note": args.note, "server_cpus": sorted(server_cpus), "client_cpus": sorted(client_cpus),
            "load_before": load_before, "load_after": os.getloadavg()[0],
            "date": datetime.date.today().isoformat(),
            "command": "python bench/crosscheck_aiperf.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "server": " ".join(["python", *server_cmd[1:]]) if proc is not None else f"given: {args.url}",
        },
        "points": points, "open_over_saturation": sat, "notes": notes,
    }
    atomic_write_text(out / "crosscheck.json", dumps(result, indent=1) + "\n")
    text = markdown(result)
    atomic_write_text(out / "crosscheck.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
