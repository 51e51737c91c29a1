"""The MoE routed-path benchmark runs and prints one row per format and token count, the grouped path
agreeing with the loop (no timing asserted)."""

from __future__ import annotations

from bench_scripts import load_bench_script


def test_bench_moe_prints_a_row_per_case_with_the_grouped_path_equal_to_the_loop(capsys):
    bench = load_bench_script("bench_moe")
    assert bench.main(["--tokens", "1,40", "--formats", "bf16,nvfp4", "--repeats", "1", "--calls", "1"]) == 0
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines() if line.startswith(("| bf16", "| nvfp4"))]
    assert [(r[1].strip(), r[2].strip()) for r in rows] == [("bf16", "1"), ("bf16", "40"), ("nvfp4", "1"), ("nvfp4", "40")]
    assert all(float(r[7]) < 1e-6 for r in rows)  # max |grouped - loop| / max |loop|: the same matmuls on CPU
    assert rows[0][5].strip() != "" and rows[2][5].strip() == ""  # dense timed for plain experts only
