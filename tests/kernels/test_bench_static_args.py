"""bench/static_kernels.py checks its options before compiling anything: one line, exit 2 (no Triton needed)."""

from __future__ import annotations

import pytest

from bench_scripts import load_bench_script, one_line_exit_2

ROWS = ("expected comma-separated row counts from 1 to 16 (the GEMV kernels nvfp4_gemv and fp8_gemv take at "
        "most 16 rows)")
ARCH = ("expected a compute capability as one number, one of 75, 80, 86, 87, 89, 90, 100, 103, 110, 120, 121 "
        "(90: H100/H200)")


def _one_line_exit_2(argv, capsys) -> str:
    return one_line_exit_2(load_bench_script("static_kernels").main, ["--shapes", "32x64", "--kernels", "fp8_gemv", *argv],
                           capsys, prefix="python bench/static_kernels.py: error: ")


@pytest.mark.parametrize("rows", ["abc", "17", "-1", "0", "1,,2", "1,16,32"])
def test_rows_outside_what_the_gemv_kernels_take(rows, capsys):
    assert _one_line_exit_2(["--rows", rows], capsys) == f"argument --rows: {ROWS}, got '{rows}'"


def test_the_row_limit_is_the_kernels_own():
    from evalsuite.kernels.triton import fp8_gemv, nvfp4_gemv

    assert load_bench_script("static_kernels").gemv_max_rows() == fp8_gemv.GEMV_MAX_M == nvfp4_gemv.GEMV_MAX_M == 16


@pytest.mark.parametrize("arch", ["0", "91", "70", "sm_90"])
def test_arch_outside_the_toolchain_s_is_refused_before_llvm_aborts(arch, capsys):
    assert _one_line_exit_2(["--arch", arch], capsys) == f"argument --arch: {ARCH}, got '{arch}'"


def test_unknown_preset(capsys):
    assert _one_line_exit_2(["--preset", "bogus"], capsys) == "--preset: expected one of nano-omni-30b-a3b, tiny, got 'bogus'"


def test_no_kernels_and_negative_workers(capsys):
    assert _one_line_exit_2(["--kernels", ","], capsys) == (
        "--kernels: expected some of nvfp4_gemv,fp8_gemv,grouped_nvfp4,grouped_fp8,nvfp4_dequant, got none")
    assert _one_line_exit_2(["--precompile-workers", "-1"], capsys) == (
        "--precompile-workers: expected an integer >= 0, got -1")


def test_json_under_a_file_or_onto_a_folder(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep")
    assert _one_line_exit_2(["--json", str(afile / "x.json")], capsys) == (
        f"--json {afile / 'x.json'}: {afile} is a file; expected a file in a folder that exists or can be made")
    assert _one_line_exit_2(["--json", str(tmp_path)], capsys) == (
        f"--json {tmp_path} is a directory; expected a file name for the reports")
    assert afile.read_text() == "keep"
