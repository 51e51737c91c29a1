"""The codec benchmark script runs and prints one row per format and size (no timing asserted)."""

from __future__ import annotations


import pytest

from bench_scripts import load_bench_script


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
