"""GPU telemetry during a load test: NVML sampled on a thread (utilization, memory, power, and the
energy counter where the GPU has one), and pure functions that turn samples into the figures of a
time window: mean utilization, peak memory, mean power and energy in joules.

Energy over [t0, t1]: the difference of the cumulative energy counter (NVML
``nvmlDeviceGetTotalEnergyConsumption``, Volta and newer) interpolated at both ends when every sample
has it and it never goes back over the window (it restarts from 0 when the driver reloads or the GPU
is reset), else the trapezoid integral of power. Without NVML or a GPU, `GpuSampler.open` returns None
and every figure stays None (null in results.json), never 0. A window whose start or end the
readings leave uncovered for longer than ``max_gap_s`` (the GPU stopped answering: lost, reset, or
NVML failing) has no figures either: they would be a stale reading held or extrapolated, not a
measurement. A gap inside the window (the sampling thread stalled) costs only the power integral:
the counter's difference across it is exact.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
import os
from dataclasses import dataclass
from typing import Any, Sequence


@dataclass(frozen=True)
class GpuSample:
    """One reading, summed over the sampled devices (utilization averaged)."""

    t: float  # time.perf_counter()
    util_pct: float
    mem_bytes: int
    power_w: float
    energy_j: float | None  # cumulative counter (None when a device has none)


def _interp(samples: Sequence[GpuSample], t: float, key: str) -> float:
    """Linear interpolation of ``key`` at time ``t`` (clamped to the first/last sample)."""
    if t <= samples[0].t:
        return float(getattr(samples[0], key))
    for a, b in zip(samples, samples[1:]):
        if a.t <= t <= b.t:
            if b.t == a.t:
                return float(getattr(b, key))
            w = (t - a.t) / (b.t - a.t)
            return float(getattr(a, key)) * (1 - w) + float(getattr(b, key)) * w
    return float(getattr(samples[-1], key))


def unread_s(samples: Sequence[GpuSample], t0: float, t1: float, *, ends_only: bool = False) -> float:
    """The longest stretch of [t0, t1] with no reading in it (the whole window without samples);
    ``ends_only``: of the stretches that reach t0 or t1 (a GPU that stopped answering leaves one up to
    the window's end; a stall of the sampling thread inside the window leaves one in the middle)."""
    edges = [-math.inf, *(s.t for s in samples), math.inf]
    gaps = [(a, b) for a, b in zip(edges, edges[1:]) if not ends_only or a <= t0 < b or a < t1 <= b]
    return max(0.0, *(min(b, t1) - max(a, t0) for a, b in gaps))


def energy_joules(samples: Sequence[GpuSample], t0: float, t1: float,
                  max_gap_s: float = math.inf) -> tuple[float | None, str | None]:
    """(joules used over [t0, t1], how it was measured); (None, None) without samples or when the
    readings leave a stretch longer than ``max_gap_s`` unread: at an end of the window for the energy
    counter (between two readings its difference is exact, however far apart), anywhere in it for
    the power integral (which would carry one power across the gap)."""
    if not samples or t1 <= t0 or unread_s(samples, t0, t1, ends_only=True) > max_gap_s:
        return None, None
    # the readings the interpolation at t0 and t1 uses: the last at or before t0 to the first at or after t1
    first = max([i for i, s in enumerate(samples) if s.t <= t0] or [0])
    last = min([i for i, s in enumerate(samples) if s.t >= t1] or [len(samples) - 1])
    span = samples[first:last + 1]
    if all(s.energy_j is not None for s in samples) and all(
            b.energy_j >= a.energy_j for a, b in zip(span, span[1:])):  # type: ignore[operator]
        return _interp(samples, t1, "energy_j") - _interp(samples, t0, "energy_j"), "energy counter"
    if unread_s(samples, t0, t1) > max_gap_s:
        return None, None
    inside = [s.t for s in samples if t0 < s.t < t1]
    ts = [t0, *inside, t1]
    ps = [_interp(samples, t, "power_w") for t in ts]
    return sum((ts[i + 1] - ts[i]) * (ps[i] + ps[i + 1]) / 2 for i in range(len(ts) - 1)), "power integral"


def window(samples: Sequence[GpuSample], t0: float, t1: float, max_gap_s: float = math.inf) -> dict[str, Any]:
    """Telemetry figures of [t0, t1]; all None without samples or when the readings leave a stretch
    longer than ``max_gap_s`` unread at an end of the window (energy: see `energy_joules`)."""
    if samples and unread_s(samples, t0, t1, ends_only=True) > max_gap_s:
        samples = []
    inside = [s for s in samples if t0 <= s.t <= t1] or ([min(samples, key=lambda s: abs(s.t - t0))] if samples else [])
    energy, source = energy_joules(samples, t0, t1, max_gap_s)
    return {
        "gpu_util_mean_pct": (sum(s.util_pct for s in inside) / len(inside)) if inside else None,
        "gpu_mem_max_bytes": max(s.mem_bytes for s in inside) if inside else None,
        "gpu_power_mean_w": (energy / (t1 - t0)) if energy is not None and t1 > t0 else None,
        "energy_j": energy,
        "energy_source": source,
    }


class GpuSampler:
    """Samples NVML devices ``indices`` every ``interval_s`` seconds on a daemon thread. A window
    whose start or end is unread for longer than ``max_gap_s`` (5 intervals, at least 1 s) has no
    figures (`window`); ``n_failed_readings`` counts the readings NVML refused."""

    def __init__(self, nvml: Any, handles: list[Any], indices: list[int], interval_s: float) -> None:
        self._nvml, self._handles, self.indices, self.interval_s = nvml, handles, indices, interval_s
        self.samples: list[GpuSample] = []  # in time order
        self.max_gap_s = max(1.0, 5 * interval_s)
        self.n_failed_readings = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="evalsuite-nvml", daemon=True)

    @staticmethod
    def open(indices: list[int] | None, interval_s: float = 0.1) -> "GpuSampler | None":
        """A sampler over NVML devices ``indices`` (None = all); None when NVML or a GPU is absent."""
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception:
            return None
        try:
            count = pynvml.nvmlDeviceGetCount()
            chosen = [i for i in (range(count) if indices is None else indices) if 0 <= i < count]
            if not chosen:
                pynvml.nvmlShutdown()
                return None
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in chosen]
        except Exception:
            pynvml.nvmlShutdown()
            return None
        return GpuSampler(pynvml, handles, chosen, interval_s)

    def read(self) -> GpuSample:
        nv = self._nvml
        t0 = time.perf_counter()
        util, mem, power, energy = 0.0, 0, 0.0, 0.0
        for h in self._handles:
            util += float(nv.nvmlDeviceGetUtilizationRates(h).gpu)
            mem += int(nv.nvmlDeviceGetMemoryInfo(h).used)
            power += nv.nvmlDeviceGetPowerUsage(h) / 1000.0  # mW -> W
            if energy is not None:
                try:
                    energy += nv.nvmlDeviceGetTotalEnergyConsumption(h) / 1000.0  # mJ -> J
                except Exception:
                    energy = None
        t = (t0 + time.perf_counter()) / 2  # the readings were taken in between
        return GpuSample(t, util / len(self._handles), mem, power, energy)

    def mark(self) -> None:
        """Take a reading now, so that a window starting or ending here is measured, not extrapolated."""
        try:
            sample = self.read()
        except Exception:  # a transient NVML error loses one reading, not the run
            self.n_failed_readings += 1
            return
        with self._lock:
            bisect.insort(self.samples, sample, key=lambda x: x.t)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.mark()
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "GpuSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.mark()
        self.close()

    def close(self) -> None:
        """Release NVML (a sampler never started needs only this)."""
        try:
            self._nvml.nvmlShutdown()
        except Exception:
            pass

    def describe(self) -> dict[str, Any]:
        names = []
        for h in self._handles:
            try:
                n = self._nvml.nvmlDeviceGetName(h)
                names.append(n.decode() if isinstance(n, bytes) else str(n))
            except Exception:
                names.append(None)
        return {"devices": self.indices, "names": names, "interval_s": self.interval_s, "n_samples": len(self.samples),
                "n_failed_readings": self.n_failed_readings}


def nvml_index(device: str) -> int:
    """NVML index of a torch CUDA device, through CUDA_VISIBLE_DEVICES when it lists indices."""
    idx = int(device.split(":", 1)[1]) if ":" in device else 0
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if visible and all(v.isdigit() for v in visible) and idx < len(visible):
        return int(visible[idx])
    return idx

