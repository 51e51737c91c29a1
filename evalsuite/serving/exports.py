"""Exports of a throughput run for other tools, written beside ``results.json`` under ``throughput/``:

- ``requests.jsonl``: one line per request sent in a load point, with absolute timestamps (Unix
  seconds: the point's origin, read once from the wall clock, plus the load generator's offsets) —
  scheduled, started (intended start), sent, first token, done — and its latencies in ms (TTFT and
  E2EL from the intended start, TPOT, every ITL gap, client queue, send lag), token counts (with
  ``token_count_source``: ``chunks`` where the server sent no usage, an estimate), status;
- ``points/<label>.json``: each load point in the layout ``vllm bench serve --save-result`` writes
  (``duration``, ``completed``, ``failed``, ``total_input_tokens``, ``request_throughput``,
  ``output_throughput``, ``mean_ttft_ms``, ``p99_tpot_ms``…, and the per-request lists ``input_lens``,
  ``output_lens``, ``ttfts``, ``itls``, ``errors``, in seconds as vLLM keeps them, null for a failed
  request), so scripts written for vLLM's files read ours; plus an ``evalsuite`` entry with what
  vLLM's layout has no place for (kind, concurrency, client queue, whether the point hit its cap,
  ``n_output_tokens_estimated``: requests whose token counts are chunk estimates);
- ``points.csv``: one row per load point, the headline figures (``n_output_tokens_estimated`` too)
  and latency percentiles in ms.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from pathlib import Path
from typing import Any, Sequence

from evalsuite.results import atomic_write_text
from evalsuite.serving import metrics as sm
from evalsuite.serving.loadgen import PointRun, Record

METRICS = (("ttft", "ttft_s"), ("tpot", "tpot_s"), ("itl", "itl_s"), ("e2el", "e2el_s"))


def _ms(v: float | None) -> float | None:
    return None if v is None else v * 1e3


def _abs(run: PointRun, offset: float | None) -> float | None:
    return None if offset is None else run.origin_unix + offset


def _p_word(q: float) -> str:
    return str(int(q)) if int(q) == q else str(q)  # as vLLM names p99, p99.9


def request_line(label: str, phase: str, k: int, run: PointRun, rec: Record, item: tuple[str, Any, Any]) -> dict:
    t = rec.timing()
    first = sm.ttft(t)
    r = rec.response
    status = t.status
    return {
        "id": f"{label}/{k:04d}", "point": label, "phase": phase, "modality": item[0], "source_id": item[1].id,
        "status": status, "error": rec.error or ("cut off at the point's time bound" if rec.cancelled else None),
        "scheduled_unix": _abs(run, rec.scheduled_s), "start_unix": _abs(run, rec.start_s),
        "sent_unix": _abs(run, rec.sent_s), "first_token_unix": _abs(run, None if first is None else t.start_s + first),
        "done_unix": _abs(run, rec.done_s),
        "ttft_ms": _ms(first), "tpot_ms": _ms(sm.tpot(t)), "e2el_ms": _ms(sm.e2el(t)),
        "itl_ms": [g * 1e3 for g in sm.itls(t)], "queue_ms": _ms(rec.queue_s), "send_lag_ms": _ms(rec.send_lag_s),
        "input_tokens": r.prompt_tokens if r is not None else None,
        "output_tokens": t.output_tokens if t.ok else None, "waited_on_cap": rec.waited_on_cap,
        # "chunks": the server sent no usage; output_tokens counts streamed chunks (an estimate)
        "token_count_source": (r.info.get("token_count_source") if r is not None and isinstance(r.info, dict)
                               else None),
    }


def vllm_result(point: dict[str, Any], run: PointRun, model: dict[str, Any], slo: sm.SLO,
                percentiles: Sequence[float]) -> dict[str, Any]:
    """One load point in ``vllm bench serve --save-result`` layout."""
    sent = [r for r in run.records if r.start_s is not None]
    timings = [r.timing() for r in sent]
    out: dict[str, Any] = {
        "date": time.strftime("%Y%m%d-%H%M%S", time.localtime(run.origin_unix)),
        "endpoint_type": "openai-chat" if model.get("base_url") else model.get("backend"),
        "backend": model.get("backend"), "label": point.get("label"), "model_id": model.get("name"),
        "tokenizer_id": None, "num_prompts": len(sent),
        "request_rate": (run.rate if run.rate is not None else "inf") if run.kind == "open" else None,
        "burstiness": run.burstiness, "max_concurrency": run.max_concurrency if run.kind == "open" else run.concurrency,
        "duration": point["duration_s"], "completed": point["n_completed"],
        "failed": point["n_failed"] + point.get("n_cancelled", 0),
        "total_input_tokens": point["input_tokens"], "total_output_tokens": point["output_tokens"],
        "request_throughput": point["requests_per_s"],
        "request_goodput": point["goodput_requests_per_s"] if any(v is not None for v in slo.to_dict().values())
        else None,
        "output_throughput": point["output_tokens_per_s"], "total_token_throughput": point["total_tokens_per_s"],
        "input_lens": [r.response.prompt_tokens if r.response is not None else None for r in sent],
        "output_lens": [t.output_tokens if t.ok else 0 for t in timings],
        "ttfts": [sm.ttft(t) for t in timings],
        "itls": [sm.itls(t) for t in timings],
        "generated_texts": [r.response.text if r.ok and r.response is not None else "" for r in sent],
        "errors": [r.error or ("cut off at the point's time bound" if r.cancelled else "") for r in sent],
    }
    for name, key in METRICS:
        d = point.get(key) or {}
        out[f"mean_{name}_ms"], out[f"median_{name}_ms"] = _ms(d.get("mean")), _ms(d.get("median"))
        out[f"std_{name}_ms"] = _ms(d.get("std"))
        for q in percentiles:
            out[f"p{_p_word(q)}_{name}_ms"] = _ms(d.get(sm.pct_key(q)))
    out["evalsuite"] = {
        "kind": run.kind, "concurrency": run.concurrency, "latency_from": "intended start",
        "hit_max_concurrency": bool(point.get("hit_max_concurrency")), "n_cancelled": point.get("n_cancelled", 0),
        "mean_queue_ms": _ms((point.get("queue_s") or {}).get("mean")), "mean_in_flight": point.get("mean_in_flight"),
        "meets_slo": point.get("meets_slo"), "slo": slo.to_dict(),
        # requests whose token counts are streamed chunks (no usage from the server): estimates, and so
        # are output_throughput, total_output_tokens, output_lens and TPOT wherever this is > 0
        "n_output_tokens_estimated": point.get("n_output_tokens_estimated", 0),
    }
    return out


CSV_HEAD = ("label", "phase", "kind", "concurrency", "rate", "burstiness", "max_concurrency", "hit_max_concurrency",
            "completed", "failed", "cancelled", "duration_s", "input_tokens_per_s", "output_tokens_per_s",
            "total_tokens_per_s", "requests_per_s", "goodput_requests_per_s", "mean_in_flight", "meets_slo",
            "n_output_tokens_estimated")


def points_csv(rows: list[tuple[str, dict[str, Any]]], percentiles: Sequence[float]) -> str:
    lat_cols = [(f"{name}_{stat}_ms", key, stat) for name, key in (*METRICS, ("queue", "queue_s"))
                for stat in ("mean", "median", *(sm.pct_key(q) for q in percentiles))]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*CSV_HEAD, *(c for c, _, _ in lat_cols)])
    for phase, p in rows:
        base = [p.get("label"), phase, p.get("kind"), p.get("concurrency"), p.get("rate"), p.get("burstiness"),
                p.get("max_concurrency"), p.get("hit_max_concurrency"), p.get("n_completed"), p.get("n_failed"),
                p.get("n_cancelled"), p.get("duration_s"), p.get("input_tokens_per_s"), p.get("output_tokens_per_s"),
                p.get("total_tokens_per_s"), p.get("requests_per_s"), p.get("goodput_requests_per_s"),
                p.get("mean_in_flight"), p.get("meets_slo"), p.get("n_output_tokens_estimated", 0)]
        w.writerow(["" if v is None else v for v in base]
                   + ["" if (v := _ms((p.get(key) or {}).get(stat))) is None else v for _, key, stat in lat_cols])
    return buf.getvalue()


def write_exports(folder: Path, runs: Sequence[tuple[str, str, PointRun, list]], points: dict[str, dict[str, Any]],
                  model: dict[str, Any], slo: sm.SLO, percentiles: Sequence[float]) -> dict[str, Any]:
    """Write the three exports for the load points ``runs`` (label, phase, run, items) whose figures
    are ``points`` by label; returns their paths relative to the run folder."""
    lines: list[str] = []
    rows: list[tuple[str, dict[str, Any]]] = []
    files: list[str] = []
    for label, phase, run, items in runs:
        for k, rec in enumerate(run.records):
            lines.append(json.dumps(request_line(label, phase, k, run, rec, items[k]), allow_nan=False) + "\n")
        point = points.get(label)
        if point is None:
            continue
        rows.append((phase, point))
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", label) + ".json"
        doc = vllm_result(point, run, model, slo, percentiles)
        atomic_write_text(folder / "points" / name, json.dumps(doc, indent=1, allow_nan=False) + "\n")
        files.append(f"{folder.name}/points/{name}")
    atomic_write_text(folder / "requests.jsonl", "".join(lines))
    atomic_write_text(folder / "points.csv", points_csv(rows, percentiles))
    return {"requests": f"{folder.name}/requests.jsonl", "csv": f"{folder.name}/points.csv", "vllm_results": files}
