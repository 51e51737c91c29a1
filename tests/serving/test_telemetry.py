"""GPU telemetry: energy from the NVML counter or the power integral on scripted samples, the
sampler against a stand-in NVML module, and the throughput task's per-GPU and joules-per-token
figures when a GPU is present (faked here: this machine has none) and null when not."""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import pytest

from evalsuite.serving.telemetry import GpuSample, GpuSampler, energy_joules, window


def s(t: float, power: float, energy: float | None = None, util: float = 50.0, mem: int = 1000) -> GpuSample:
    return GpuSample(t, util, mem, power, energy)


def test_energy_from_the_counter_interpolated_at_both_ends() -> None:
    samples = [s(0, 100, 100.0), s(1, 100, 150.0), s(2, 100, 250.0)]
    assert energy_joules(samples, 0.5, 1.5) == (pytest.approx(200.0 - 125.0), "energy counter")


def test_energy_from_the_power_integral_without_a_counter() -> None:
    samples = [s(0, 100), s(1, 200), s(2, 200, None)]
    assert energy_joules(samples, 0.0, 2.0) == (pytest.approx(150.0 + 200.0), "power integral")
    assert energy_joules(samples, 0.5, 1.5)[0] == pytest.approx(0.5 * 175.0 + 0.5 * 200.0)
    assert energy_joules([], 0, 1) == (None, None)


def test_window_figures() -> None:
    samples = [s(0, 100, 0.0, util=20, mem=10), s(1, 300, 200.0, util=60, mem=30), s(2, 300, 500.0, util=40, mem=20)]
    w = window(samples, 0.0, 2.0)
    assert w == {"gpu_util_mean_pct": 40.0, "gpu_mem_max_bytes": 30, "gpu_power_mean_w": 250.0, "energy_j": 500.0,
                 "energy_source": "energy counter"}


def fake_nvml(watts: float = 300.0, counter: bool = True) -> types.ModuleType:
    """A stand-in for pynvml: two devices at 50% utilization, 1000 bytes used, ``watts`` each, and
    an energy counter (mJ) that grows at that power (or none, as on pre-Volta GPUs)."""
    m = types.ModuleType("pynvml")
    m.nvmlInit = m.nvmlShutdown = lambda: None
    m.nvmlDeviceGetCount = lambda: 2
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetName = lambda h: f"FakeGPU {h}"
    m.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=50)
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=1000)
    m.nvmlDeviceGetPowerUsage = lambda h: int(watts * 1000)
    def energy(h: int) -> int:
        if not counter:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        return int(watts * 1000 * time.perf_counter())

    m.nvmlDeviceGetTotalEnergyConsumption = energy
    return m


def test_sampler_reads_the_chosen_devices(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml())
    sampler = GpuSampler.open([1, 7], interval_s=0.01)  # device 7 does not exist: left out
    assert sampler is not None and sampler.indices == [1]
    with sampler:
        time.sleep(0.05)
    first = sampler.samples[0]
    assert (first.util_pct, first.mem_bytes, first.power_w) == (50.0, 1000, 300.0)
    assert len(sampler.samples) >= 2 and sampler.describe()["names"] == ["FakeGPU 1"]
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    assert GpuSampler.open(None) is None


def test_throughput_on_a_gpu_reports_per_gpu_and_energy(monkeypatch, tmp_path: Path) -> None:
    from evalsuite.runner import RunConfig, run

    # constant power and no counter: the energy of any window is exactly 300 W times its length,
    # however the sampling thread is scheduled
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(watts=300.0, counter=False))
    monkeypatch.setattr("evalsuite.runner.cuda_problem", lambda device: None)  # a mock "on" a GPU
    args = {"mix": "text", "video_requests": 0, "audio_requests": 0, "warmup": 0, "concurrency": [1, 2],
            "rate_fractions": [1.0], "max_tokens": 4, "telemetry_interval_s": 0.01}
    out = run(RunConfig(model="mock:ttft=0.01,itl=0.005", tasks=["throughput"], out=tmp_path / "run", limit=3,
                        device="cuda", quiet=True, task_args={"throughput": args}))
    t = out.results["tasks"]["throughput"]
    tp = t["throughput"]
    assert tp["gpus"] == {"count": 1, "source": "in-process device (NVML)", "nvml_devices": [0]}
    for p in tp["closed_loop"] + tp["open_loop"]:
        assert p["output_tokens_per_s_per_gpu"] == p["output_tokens_per_s"]  # one GPU
        assert p["gpu_power_mean_w"] == pytest.approx(300.0, rel=1e-9) and p["energy_source"] == "power integral"
        assert p["joules_per_output_token"] == pytest.approx(p["energy_j"] / p["output_tokens"])
    energy = sum(p["energy_j"] for p in tp["closed_loop"] + tp["open_loop"])
    tokens = sum(p["output_tokens"] for p in tp["closed_loop"] + tp["open_loop"])
    assert t["efficiency"]["joules_per_output_token"] == pytest.approx(energy / tokens)
    assert t["efficiency"]["per_gpu_throughput_at_slo"] == t["efficiency"]["output_tokens_per_s_at_slo"]


def test_a_local_servers_energy_samples_only_its_declared_gpus(monkeypatch, tmp_path: Path) -> None:
    """A server on this machine (a loopback URL) with tp=1, on a machine of two 300 W GPUs: energy is
    the declared GPU's alone (300 W, not the machine's 600 W), and null with a note when the task is
    not told which GPU is the server's (it used to sample every GPU)."""
    from evalsuite.backends.mock import MockBackend
    from evalsuite.runner import RunConfig
    from evalsuite.serving.throughput import Throughput

    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(watts=300.0, counter=False))
    plain = MockBackend.describe
    monkeypatch.setattr(MockBackend, "describe",
                        lambda self: {**plain(self), "device": "remote", "base_url": "http://127.0.0.1:9/v1"})
    args = {"mix": "text", "video_requests": 0, "audio_requests": 0, "warmup": 0, "concurrency": [1],
            "rate_fractions": [], "slo_search": "none", "max_tokens": 4, "telemetry_interval_s": 0.01,
            "point_warmup": False, "tp": 1}
    for indices, want in (("1", [1]), ("", None)):
        out = tmp_path / (indices or "none")
        task = Throughput(**args, gpu_indices=indices)
        cfg = RunConfig(model="mock:ttft=0.01,itl=0.005", tasks=["throughput"], out=out, limit=3)
        entry = task.run_with(MockBackend("ttft=0.01,itl=0.005"), cfg=cfg, out=out, config_hash="x")
        tp = entry["throughput"]
        assert tp["gpus"]["count"] == 1 and tp["gpus"]["nvml_devices"] == want
        (c1,) = tp["closed_loop"]
        if want:
            assert c1["gpu_power_mean_w"] == pytest.approx(300.0, rel=1e-9)  # one GPU's power, not two
            assert entry["efficiency"]["joules_per_output_token"] == pytest.approx(c1["energy_j"] / c1["output_tokens"])
        else:
            assert tp["telemetry"] is None and entry["efficiency"]["joules_per_output_token"] is None
            assert any("throughput.gpu_indices" in n for n in tp["notes"])


def test_a_window_the_readings_do_not_cover_has_no_figures() -> None:
    """The GPU stopped answering at t=2 (lost or reset: every reading after it failed): a point over
    [5, 10] has no energy, power, utilization or memory, not 0 J from a counter held flat or 1500 J
    from the last power extrapolated."""
    counter = [s(0, 300, 0.0), s(1, 300, 300.0), s(2, 300, 600.0)]
    power = [s(0, 300), s(1, 300), s(2, 300)]
    for samples in (counter, power):
        assert window(samples, 5.0, 10.0, max_gap_s=1.0) == {
            "gpu_util_mean_pct": None, "gpu_mem_max_bytes": None, "gpu_power_mean_w": None, "energy_j": None,
            "energy_source": None}
        assert energy_joules(samples, 1.5, 3.5, max_gap_s=1.0) == (None, None)  # 1.5 s of it unread
        assert energy_joules(samples, 0.5, 2.5, max_gap_s=1.0)[0] is not None  # 0.5 s unread at the end: within
    # a reading gap inside the window (the sampling thread stalled): the counter's difference is
    # exact across it; the power integral would carry one power over it
    gap = [s(0, 300, 0.0), s(1, 300, 300.0), s(4, 300, 1200.0), s(5, 300, 1500.0)]
    assert energy_joules(gap, 0.0, 5.0, max_gap_s=1.0) == (pytest.approx(1500.0), "energy counter")
    assert window(gap, 0.0, 5.0, max_gap_s=1.0)["gpu_util_mean_pct"] is not None
    no_counter = [s(t, 300) for t in (0, 1, 4, 5)]
    assert energy_joules(no_counter, 0.0, 5.0, max_gap_s=1.0) == (None, None)
    assert energy_joules(no_counter, 0.0, 5.0, max_gap_s=3.0) == (pytest.approx(1500.0), "power integral")


def test_a_lost_gpu_leaves_later_windows_without_figures(monkeypatch) -> None:
    nvml = fake_nvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    sampler = GpuSampler.open([0], interval_s=0.01)
    assert sampler is not None and sampler.max_gap_s == 1.0
    sampler.mark()
    sampler.mark()

    def lost(h: int) -> int:
        raise RuntimeError("NVML_ERROR_GPU_IS_LOST")

    nvml.nvmlDeviceGetPowerUsage = lost
    sampler.mark()  # refused: no reading
    assert len(sampler.samples) == 2 and sampler.describe()["n_failed_readings"] == 1
    t = sampler.samples[-1].t
    w = window(sampler.samples, t + 5.0, t + 10.0, sampler.max_gap_s)
    assert w["energy_j"] is None and w["gpu_power_mean_w"] is None and w["gpu_util_mean_pct"] is None


def test_an_energy_counter_that_went_back_is_not_used() -> None:
    """The counter restarts from 0 when the driver reloads or the GPU is reset: over a window where it
    went back, energy is the power integral (900 J at 300 W for 3 s), not the counter's -700 J; a
    reset outside the window leaves the counter in use there."""
    samples = [s(0, 300, 1000.0), s(1, 300, 1300.0), s(2, 300, 0.0), s(3, 300, 300.0), s(4, 300, 600.0)]
    assert energy_joules(samples, 0.0, 3.0) == (pytest.approx(900.0), "power integral")
    assert energy_joules(samples, 2.5, 4.0) == (pytest.approx(450.0), "energy counter")


def test_a_declared_gpu_that_nvml_does_not_have_is_refused(monkeypatch, tmp_path: Path) -> None:
    """gpu_indices=1,2 on a machine of two GPUs (0 and 1): the task stops with one line naming GPU 2,
    instead of sampling GPU 1 alone and reporting half the energy per token of the declared two."""
    from evalsuite.backends.mock import MockBackend
    from evalsuite.runner import RunConfig
    from evalsuite.serving.throughput import Throughput
    from evalsuite.task import TaskArgError

    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(watts=300.0, counter=False))
    plain = MockBackend.describe
    monkeypatch.setattr(MockBackend, "describe",
                        lambda self: {**plain(self), "device": "remote", "base_url": "http://127.0.0.1:9/v1"})
    task = Throughput(mix="text", video_requests=0, audio_requests=0, warmup=0, concurrency=[1], rate_fractions=[],
                      slo_search="none", max_tokens=4, point_warmup=False, gpu_indices="1,2")
    cfg = RunConfig(model="mock", tasks=["throughput"], out=tmp_path, limit=2)
    with pytest.raises(TaskArgError, match=r"throughput.gpu_indices: this machine's NVML has no GPU 2 \(declared 1, 2\)"):
        task.run_with(MockBackend("ttft=0.01"), cfg=cfg, out=tmp_path, config_hash="x")
