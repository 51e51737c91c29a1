"""Send-time precision of the open-loop load generator against a local ``evalsuite serve``.

    python bench/bench_send_precision.py [--rates 15,200] [--seconds 5] [--url http://127.0.0.1:PORT/v1]

Without ``--url`` it starts ``evalsuite serve --model mock:ttft=0.02,itl=0.002,tokens=16`` on a free
loopback port (16 streamed chunks per request, so the client parses 16 chunks per request on the
same event loop as the sender) and stops it at the end. For each rate it runs Poisson arrivals for
``--seconds`` twice: with the sender's plain loop sleep (``spin_s=0``) and with sleep-then-spin
(``spin_s=0.001``, the default), and reports per request:

- send error = released − scheduled (the load generator's own timer), p50 / p99 / max;
- bytes-out lag = sent − scheduled (adds the client's body encoding before the request leaves).

Prints a Markdown table with the device, date and command, ready for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evalsuite.backends.openai_compat import OpenAIBackend  # noqa: E402
from evalsuite.serving import loadgen  # noqa: E402
from evalsuite.serving.metrics import percentile  # noqa: E402
from evalsuite.types import Request, user  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server() -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "evalsuite", "serve", "--model",
                             "mock:ttft=0.02,itl=0.002,tokens=16", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/models", timeout=1).read()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("evalsuite serve did not come up within 30 s")


def measure(backend: OpenAIBackend, rate: float, seconds: float, spin_s: float, seed: int) -> dict[str, float]:
    n = max(1, int(rate * seconds))
    reqs = [Request(sample_id=f"r{i}", messages=[user("the quick brown fox")], max_tokens=16, ignore_eos=True)
            for i in range(n)]
    offsets = loadgen.arrival_times(n, rate, 1.0, seed=seed)

    async def go() -> loadgen.PointRun:
        try:
            return await loadgen.run_open_loop(backend.agenerate, reqs, offsets, max_duration_s=seconds + 1,
                                               drain_s=30, rate=rate, spin_s=spin_s)
        finally:
            await backend.aclose()

    run = asyncio.run(go())
    lag = [r.send_lag_s * 1e3 for r in run.records if r.send_lag_s is not None]
    out = [(r.sent_s - r.scheduled_s) * 1e3 for r in run.records if r.sent_s is not None and r.scheduled_s is not None]
    return {"n": len(lag), "ok": sum(r.ok for r in run.records), "p50": percentile(lag, 50), "p99": percentile(lag, 99),
            "max": max(lag), "out_p50": percentile(out, 50), "out_p99": percentile(out, 99)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="15,200")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--url", default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    proc, url = (None, args.url) if args.url else start_server()
    try:
        backend = OpenAIBackend(url)
        backend.configure_client(max_concurrency=None, retries=0)
        measure(backend, 15.0, 0.5, loadgen.SPIN_S, args.seed)  # warm-up: connections, caches
        rows = []
        for rate in (float(r) for r in args.rates.split(",")):
            for label, spin in (("sleep only", 0.0), ("sleep + 1 ms spin", loadgen.SPIN_S)):
                m = measure(backend, rate, args.seconds, spin, args.seed)
                rows.append((rate, label, m))
                print(f"# {rate:g} req/s {label}: {m}", file=sys.stderr)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
    cmd = "python bench/bench_send_precision.py " + " ".join(sys.argv[1:])
    print(f"Device: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; {datetime.date.today().isoformat()}; command: `{cmd.strip()}`\n")
    print("| rate req/s | sender | requests (ok) | send error p50 ms | p99 ms | max ms "
          "| bytes-out lag p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for rate, label, m in rows:
        print(f"| {rate:g} | {label} | {m['n']} ({m['ok']}) | {m['p50']:.3f} | {m['p99']:.3f} | {m['max']:.3f} | "
              f"{m['out_p50']:.3f} | {m['out_p99']:.3f} |")


if __name__ == "__main__":
    main()
