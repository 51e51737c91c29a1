"""bench/static_kernels.py compiles the decode kernels for sm_90 and prints one row per kernel and row count."""

from __future__ import annotations

import json

import pytest

from bench_scripts import load_bench_script
from evalsuite.kernels.triton import HAS_TRITON, TRITON_MISSING_REASON

pytestmark = pytest.mark.skipif(not HAS_TRITON, reason=TRITON_MISSING_REASON or "triton missing")


def test_static_bench_prints_a_row_per_kernel_and_rows(tmp_path, monkeypatch, capsys):
    from evalsuite.kernels.triton.static import toolchain_missing

    if toolchain_missing():  # pragma: no cover
        pytest.skip(toolchain_missing())
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "static.json"
    rc = load_bench_script("static_kernels").main(
        ["--shapes", "64x128", "--rows", "1", "--kernels", "fp8_gemv,nvfp4_dequant", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| fp8_gemv | 1 | 5 (1) |" in text and "| nvfp4_dequant | - | 1 (1) |" in text
    reports = json.loads(out.read_text())
    assert len(reports) == 6 and {r["shape"] for r in reports} == {"64x128"}
    assert all(r["arch"] == 90 and r["registers"] > 0 for r in reports)


def test_static_bench_rejects_bad_input(capsys):
    bench = load_bench_script("static_kernels")
    with pytest.raises(SystemExit):
        bench.main(["--shapes", "64x100"])
    assert "K a multiple of 16" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--kernels", "fp8_gemv,gemm9"])
    assert "expected some of" in capsys.readouterr().err


def test_precompile_fills_the_cache_a_later_compile_reads(tmp_path, monkeypatch):
    """Variants compiled by worker processes are cache hits for this process: nothing new is written."""
    from evalsuite.kernels.triton.static import toolchain_missing

    if toolchain_missing():  # pragma: no cover
        pytest.skip(toolchain_missing())
    from bench_scripts import BENCH

    cache = tmp_path / "cache"
    monkeypatch.setenv("TRITON_CACHE_DIR", str(cache))
    monkeypatch.setenv("TRITON_DEFAULT_FP_FUSION", "1")
    monkeypatch.syspath_prepend(str(BENCH))  # spawned workers import the module by this name
    import static_kernels

    shapes, kernels = [(64, 128, "experts.custom")], ("fp8_gemv", "nvfp4_dequant")
    assert static_kernels.precompile(shapes, [1], kernels, 90, workers=2) == 6
    written = sorted(p.name for p in cache.iterdir())
    assert len(written) >= 6
    assert len(static_kernels.compile_all(shapes, [1], kernels, 90, read=False)) == 6
    assert sorted(p.name for p in cache.iterdir()) == written


def test_precompile_only_from_the_command_line(tmp_path, monkeypatch, capsys):
    from evalsuite.kernels.triton.static import toolchain_missing

    if toolchain_missing():  # pragma: no cover
        pytest.skip(toolchain_missing())
    from bench_scripts import BENCH

    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TRITON_DEFAULT_FP_FUSION", "1")
    monkeypatch.syspath_prepend(str(BENCH))
    import static_kernels

    args = ["--shapes", "64x128,32x256", "--kernels", "nvfp4_dequant", "--precompile-workers", "2"]
    assert static_kernels.main(args) == 0
    assert capsys.readouterr().out.strip() == "static_kernels: 2 variants for sm_90 in Triton's cache"


def test_a_time_cap_waits_while_the_workers_start(monkeypatch):
    """bench_gpu's time cap is a SIGALRM: raised while the pool spawned a worker but had not sent it
    its start-up data, it left that worker to die on an EOFError traceback after the run. The alarm
    is held while the pool starts and can stop the map."""
    import multiprocessing
    import signal

    from bench_scripts import BENCH

    monkeypatch.syspath_prepend(str(BENCH))
    import static_kernels

    seen = {}

    def blocked() -> bool:
        return signal.SIGALRM in signal.pthread_sigmask(signal.SIG_BLOCK, [])

    class FakePool:
        def __init__(self, n):
            seen["starting"] = blocked()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def starmap(self, fn, jobs, chunksize=1):
            seen["mapping"] = blocked()
            return [1 for _ in jobs]

    class Ctx:
        Pool = FakePool

    monkeypatch.setattr(multiprocessing, "get_context", lambda method: Ctx)
    assert static_kernels.precompile([(64, 128, "q_proj")], [1], ("fp8_gemv",), 90, workers=2) == 1
    assert seen == {"starting": True, "mapping": False}
    assert not blocked()
