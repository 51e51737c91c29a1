"""Cross-check with an independent load generator: MLPerf LoadGen (``mlcommons-loadgen``) drives the
same requests against the same backend in its Server scenario, with its TTFT/TPOT constraints, and
its latency figures are set beside the suite's own measurement of the very same requests.

LoadGen schedules Poisson arrivals at ``target_qps`` and calls the SUT's ``issue_queries`` from its
own thread; this adapter hands each query to an asyncio loop that streams it through
`Backend.astream`, reports the first token (``FirstTokenComplete``) and the end
(``QuerySamplesComplete`` with the output token count), and times the same events itself. LoadGen
measures from when it issued a query, the suite from when the request left; the gap between the two
(``issue_to_send_s``, the adapter's own hand-off delay) is reported. ``agreement`` compares LoadGen's
means with the suite's timings of the same requests counted from the same origin (LoadGen's issue
callback), so what is left is the two tools' measurement difference. TPOT is defined alike by
both: (E2EL − TTFT) / (tokens − 1). The suite leaves it undefined for a request of fewer than 2 tokens;
LoadGen counts it for every query (a failed one is reported as 1 token) as 0 or less, and a negative
one wraps its mean around (to ~1e9 s), so over a run with such a query LoadGen's TPOT figures are
null and ``n_tpot_undefined`` says how many there were.

LoadGen's own logs (``mlperf_log_summary.txt``, ``mlperf_log_detail.txt``) are kept in ``outdir``.
Short runs are INVALID in MLPerf's terms (too few queries for early stopping); the validity is
reported as LoadGen states it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from evalsuite.serving import metrics as sm
from evalsuite.backend import Backend
from evalsuite.types import Request, Response


class LoadGenUnavailable(RuntimeError):
    """mlcommons-loadgen is not installed (one line for the user)."""


def _lg() -> Any:
    try:
        import mlperf_loadgen
    except ImportError:
        raise LoadGenUnavailable("the MLPerf LoadGen cross-check needs the mlcommons-loadgen package "
                                 "(pip install mlcommons-loadgen)") from None
    return mlperf_loadgen


def parse_detail_log(path: Path) -> dict[str, Any]:
    """key -> value of LoadGen's ``:::MLLOG {json}`` lines (the last value of a key wins)."""
    out: dict[str, Any] = {}
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(":::MLLOG "):
            try:
                entry = json.loads(line[len(":::MLLOG "):])
            except json.JSONDecodeError:
                continue
            out[entry.get("key")] = entry.get("value")
    return out


def _ns_dist(log: dict[str, Any], fmt: str, mean_key: str) -> dict[str, float | None]:
    def s(key: str) -> float | None:
        v = log.get(key)
        return float(v) / 1e9 if isinstance(v, (int, float)) else None

    return {"mean": s(mean_key), "median": s(fmt.format("50.00")), "p90": s(fmt.format("90.00")),
            "p99": s(fmt.format("99.00"))}


def summarize_log(log: dict[str, Any]) -> dict[str, Any]:
    """The figures of a LoadGen Server run with token latencies, in seconds."""
    return {
        "version": log.get("loadgen_version"),
        "validity": log.get("result_validity"),
        "perf_constraints_met": log.get("result_perf_constraints_met"),
        "query_count": log.get("result_query_count"),
        "scheduled_samples_per_s": log.get("result_scheduled_samples_per_sec"),
        "completed_samples_per_s": log.get("result_completed_samples_per_sec"),
        "completed_tokens_per_s": log.get("result_completed_tokens_per_second"),
        "ttft_s": _ns_dist(log, "result_first_token_{}_percentile_latency_ns", "result_first_token_mean_latency_ns"),
        "tpot_s": _ns_dist(log, "result_time_per_output_token_{}_percentile_ns", "result_time_to_output_token_mean"),
        "e2el_s": _ns_dist(log, "result_{}_percentile_latency_ns", "result_mean_latency_ns"),
    }


def suite_timing(r: Response, offset_s: float = 0.0) -> sm.Timing:
    """The suite's timing of one streamed response, ``offset_s`` after the send: its chunks and its
    end (the finish and usage chunks included, as the load generator's `Record.timing` takes it, and
    as LoadGen's completion follows them), with a retried request's failed attempts added back
    (``retry_s``: LoadGen's clock does not leave them out)."""
    from evalsuite.serving.loadgen import retry_s

    shift = retry_s(r) + offset_s
    times = tuple(shift + float(t) for t in (r.token_times or ()))
    end = max(times[-1], shift + float(r.e2e_s)) if times and r.e2e_s is not None else None
    return sm.Timing(times, int(r.output_tokens or 0), end_s=end)


def run_server_scenario(backend: Backend, requests: Sequence[Request], *, target_qps: float, ttft_s: float,
                        tpot_s: float, outdir: Path, max_duration_s: float = 60.0, seed: int = 0) -> dict[str, Any]:
    """Run LoadGen's Server scenario over ``requests`` (each issued about once) at ``target_qps`` and
    return LoadGen's figures, the suite's figures of the same requests, and their differences."""
    lg = _lg()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="evalsuite-loadgen-sut", daemon=True)
    thread.start()
    keep: dict[int, Any] = {}  # response buffers must outlive the LoadGen calls
    issued: dict[int, float] = {}
    records: list[tuple[float, float, Response | None, str | None]] = []  # (issued, sent, response, error)
    futures: list[Any] = []
    reported: list[int] = []  # the output tokens told to LoadGen, per query
    lock = threading.Lock()

    async def serve(qid: int, index: int, t_issue: float) -> None:
        import numpy as np

        sent = time.perf_counter()
        first = True
        final: Response | None = None
        err: str | None = None
        try:
            async for item in backend.astream(requests[index]):
                if isinstance(item, Response):
                    final = item
                elif first:
                    first = False
                    buf = np.frombuffer((item[1] or " ").encode(), dtype=np.uint8).copy()
                    keep[qid] = buf
                    lg.FirstTokenComplete([lg.QuerySampleResponse(qid, buf.ctypes.data, buf.nbytes)])
        except Exception as e:  # LoadGen must still hear that the query ended
            err = f"{type(e).__name__}: {e}"
        text = final.text if final is not None else ""
        buf = np.frombuffer((text or " ").encode(), dtype=np.uint8).copy()
        keep[-qid - 1] = buf
        n_tokens = int(final.output_tokens or 1) if final is not None else 1
        lg.QuerySamplesComplete([lg.QuerySampleResponse(qid, buf.ctypes.data, buf.nbytes, n_tokens)])
        with lock:
            records.append((t_issue, sent, final, err))
            reported.append(n_tokens)

    def issue_queries(samples: list[Any]) -> None:
        now = time.perf_counter()
        for q in samples:
            issued[q.id] = now
            futures.append(asyncio.run_coroutine_threadsafe(serve(q.id, q.index, now), loop))

    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.Server
    settings.mode = lg.TestMode.PerformanceOnly
    settings.server_target_qps = float(target_qps)
    settings.use_token_latencies = True
    settings.ttft_latency = int(ttft_s * 1e9)
    settings.tpot_latency = int(tpot_s * 1e9)
    settings.min_query_count = len(requests)
    settings.min_duration_ms = 1
    settings.max_duration_ms = int(max_duration_s * 1000)
    settings.schedule_rng_seed = settings.sample_index_rng_seed = settings.qsl_rng_seed = int(seed)
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(outdir)
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.enable_trace = False
    sut = lg.ConstructSUT(issue_queries, lambda: None)
    qsl = lg.ConstructQSL(len(requests), len(requests), lambda _: None, lambda _: None)
    try:
        lg.StartTestWithLogSettings(sut, qsl, settings, log_settings)
        for f in list(futures):
            f.result(timeout=max_duration_s + 60)
        asyncio.run_coroutine_threadsafe(backend.aclose(), loop).result(timeout=30)
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()

    done = [(issue, sent, r) for issue, sent, r, err in records if r is not None and err is None and r.token_times]
    ours = [suite_timing(r) for _, _, r in done]
    # the same requests timed from LoadGen's issue instead of the send
    from_issue = [suite_timing(r, sent - issue) for issue, sent, r in done]

    def figures(ts: list[sm.Timing]) -> dict[str, Any]:
        return {"ttft_s": sm.distribution(sm.ttft(t) for t in ts), "tpot_s": sm.distribution(sm.tpot(t) for t in ts),
                "e2el_s": sm.distribution(sm.e2el(t) for t in ts)}

    # a server that sent no usage: token counts are streamed chunks, so TPOT on both sides is an estimate
    estimated = sum(1 for *_, r in done if (r.info or {}).get("token_count_source") == "chunks")
    suite = {"n": len(ours), "n_errors": sum(1 for *_, err in records if err is not None), **figures(ours),
             "from_issue": figures(from_issue), "n_output_tokens_estimated": estimated}
    loadgen = summarize_log(parse_detail_log(outdir / "mlperf_log_detail.txt"))
    loadgen["n_tpot_undefined"] = sum(1 for n in reported if n < 2)
    if loadgen["n_tpot_undefined"]:  # figures over a value it cannot define (and a wrapped mean)
        loadgen["tpot_s"] = {k: None for k in loadgen["tpot_s"]}
    lag = sm.distribution(sent - t_issue for t_issue, sent, *_ in records)

    def diff(key: str) -> float | None:
        a, b = loadgen[key]["mean"], suite["from_issue"][key]["mean"]
        return (a - b) if a is not None and b is not None else None

    return {
        "tool": "mlperf-loadgen", "scenario": "Server", "target_qps": target_qps,
        "ttft_limit_s": ttft_s, "tpot_limit_s": tpot_s, "loadgen": loadgen, "suite": suite,
        "issue_to_send_s": lag,
        "agreement": {"ttft_mean_diff_s": diff("ttft_s"), "tpot_mean_diff_s": diff("tpot_s"),
                      "e2el_mean_diff_s": diff("e2el_s")},
        "log_dir": str(outdir),
    }
