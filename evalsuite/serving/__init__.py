"""Serving and efficiency measurement, in one room.

- `server` — the OpenAI-compatible HTTP server over the reference engine (`python -m evalsuite serve`).
- `engine_worker` — the thread that runs the continuous-batching engine for the server and the
  in-process reference backend.
- `loadgen` — closed-loop and open-loop load generation against any streaming backend.
- `metrics` — serving metric definitions (TTFT, TPOT, ITL, E2E, goodput, SLO search), as in
  ``vllm bench serve``.
- `telemetry` — NVML power sampling, joules per token.
- `mlperf` — the MLPerf LoadGen cross-check.
- `throughput` — the throughput task: the driver that puts the above together.
"""
