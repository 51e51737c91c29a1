"""bench/bench_engine.py: each recipe's ratio is to the first recipe asked for, and the header names it."""

from __future__ import annotations

from bench_scripts import load_bench_script

TOKENS_PER_S = {"bf16": {1: 400.0, 8: 2400.0}, "fp4": {1: 300.0, 8: 1800.0}}


def test_ratios_name_the_recipe_they_divide_by(monkeypatch, capsys):
    bench = load_bench_script("bench_engine")
    monkeypatch.setenv("EVALSUITE_CHECKPOINT", "random")
    monkeypatch.setattr(bench, "measure", lambda recipe, repeats, **kw: TOKENS_PER_S[recipe])
    assert bench.main(["--recipes", "fp4,bf16", "--repeats", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "| recipe | tokens/s batch 1 | tokens/s batch 8 | batch 1 vs fp4 | batch 8 vs fp4 |" in lines
    assert "| fp4 | 300 | 1,800 | 1.00 | 1.00 |" in lines and "| bf16 | 400 | 2,400 | 1.33 | 1.33 |" in lines
