"""The timing scripts of bench/ refuse a bad option with one line and exit 2 before building anything: zero
repeats or calls would print inf/nan as a measurement or end in a traceback."""

from __future__ import annotations

import pytest

from bench_scripts import load_bench_script, one_line_exit_2


@pytest.mark.parametrize("script, argv, message", [
    ("bench_moe", ["--repeats", "0"], "argument --repeats: expected an integer >= 1, got '0'"),
    ("bench_moe", ["--calls", "0"], "argument --calls: expected an integer >= 1, got '0'"),
    ("bench_moe", ["--tokens", "1,x"], "argument --tokens: expected comma-separated token counts >= 1, got '1,x'"),
    ("bench_moe", ["--formats", "fp4"], "argument --formats: expected a comma-separated list of expert formats "
                                        "(bf16, fp8, fp8-channel, nvfp4), got 'fp4'"),
    ("bench_engine", ["--repeats", "0"], "argument --repeats: expected an integer >= 1, got '0'"),
    ("bench_engine", ["--recipes", "bf16,nope"], "argument --recipes: expected a comma-separated list of recipes "
                                                 "(bf16, fp4, fp4-all, fp8), got 'bf16,nope'"),
    ("bench_backbone", ["--repeats", "0"], "argument --repeats: expected an integer >= 1, got '0'"),
    ("bench_backbone", ["--lengths", "1024", "-5"], "argument --lengths: expected an integer >= 1, got '-5'"),
])
def test_a_bad_option_is_one_line(script, argv, message, capsys):
    main = load_bench_script(script).main
    assert one_line_exit_2(main, argv, capsys, prefix=f"python bench/{script}.py: error: ") == message
