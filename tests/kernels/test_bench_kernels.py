"""The codec benchmark script runs and prints one row per format and size (no timing asserted)."""

from __future__ import annotations


import pytest

from bench_scripts import load_bench_script, one_line_exit_2


def _load():
    return load_bench_script("bench_kernels")


def test_bench_prints_a_markdown_row_per_case(capsys):
    assert _load().main(["--sizes", "16x32,8x64", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| fp8") or line.startswith("| nvfp4")]
    assert len(rows) == 6
    assert "| nvfp4 | 8x64 |" in out


def test_bench_rejects_bad_sizes(capsys):
    with pytest.raises(SystemExit):
        _load().main(["--sizes", "16x30"])
    assert "K a multiple of 16" in capsys.readouterr().err


@pytest.mark.parametrize("repeats", ["0", "-3", "two"])
def test_bench_rejects_repeats_below_one(repeats, capsys):
    """No timed run would print inf ms and 0.00 GB/s as if measured."""
    err = one_line_exit_2(_load().main, ["--sizes", "16x64", "--repeats", repeats], capsys)
    assert err == ("python bench/bench_kernels.py: error: argument --repeats: expected an integer >= 1 "
                   f"(timed runs per cell), got '{repeats}'")


@pytest.mark.parametrize("sizes, bad", [("16x0", "16x0"), ("0x64", "0x64"), ("16x64,8x30", "8x30"), ("16", "16")])
def test_bench_rejects_empty_or_ragged_sizes(sizes, bad, capsys):
    err = one_line_exit_2(_load().main, ["--sizes", sizes], capsys)
    assert err == ("python bench/bench_kernels.py: error: argument --sizes: expected NxK pairs with N >= 1 and "
                   f"K a multiple of 16 (at least 16), got '{bad}'")


@pytest.mark.parametrize("device", ["bogus", "meta", "cpu:1"])
def test_bench_rejects_an_unknown_device(device, capsys):
    err = one_line_exit_2(_load().main, ["--sizes", "16x64", "--device", device], capsys)
    assert err == f"python bench/bench_kernels.py: error: --device: expected cpu, cuda or cuda:N, got '{device}'"


def test_bench_on_cuda_without_a_cuda_device_is_one_line(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    err = one_line_exit_2(_load().main, ["--sizes", "16x64", "--device", "cuda"], capsys)
    assert err == ("python bench/bench_kernels.py: error: --device cuda: no CUDA device is available here "
                   "(torch.cuda.is_available() is False)")


def test_best_seconds_refuses_zero_repeats():
    import torch

    with pytest.raises(ValueError, match="expected an integer >= 1, got 0"):
        _load()._best_seconds(lambda: None, 0, torch.device("cpu"))
