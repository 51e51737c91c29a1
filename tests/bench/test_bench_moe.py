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


def test_a_grouped_path_that_differs_from_the_loop_is_not_timed(monkeypatch, capsys):
    """Checked before timing: a fast path with a wrong answer gets no speedup, and the command exits 1."""
    from evalsuite.model.moe import MoE

    real = MoE.grouped_experts

    def wrong(self):
        fn = real(self)
        return None if fn is None else (lambda x, w, idx: 2 * fn(x, w, idx))

    monkeypatch.setattr(MoE, "grouped_experts", wrong)
    bench = load_bench_script("bench_moe")
    assert bench.main(["--tokens", "8", "--formats", "nvfp4", "--repeats", "1", "--calls", "1"]) == 1
    out, err = capsys.readouterr()
    assert "| nvfp4 | 8 | | | | grouped differs from the loop, not timed | 1.0e+00 |" in out.splitlines()
    assert err == ("bench_moe: 1 case(s) not timed: a fast path differs from the loop by more than 0.02 of the "
                   "loop's largest value\n")
