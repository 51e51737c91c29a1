"""bench/report.py (make bench): bad input is one line and exit 2, and BENCHMARKS.md is replaced whole."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench_scripts import load_bench_script, one_line_exit_2

ROOT = Path(__file__).resolve().parents[2]
WHAT = "expected a pytest-benchmark JSON file (pytest --benchmark-json)"
RESULTS = {"benchmarks": [
    {"name": "ours", "group": "decode", "stats": {"median": 0.002}, "extra_info": {"fps": 12.5}},
    {"name": "peer", "group": "decode", "stats": {"median": 0.004}, "extra_info": {"role": "peer", "fps": 6.0}},
]}


def _report():
    return load_bench_script("report")


def _one_line_exit_2(argv, capsys) -> str:
    return one_line_exit_2(_report().main, argv, capsys, prefix="python bench/report.py: error: ")


def test_report_writes_the_section_table(tmp_path, capsys):
    src, md = tmp_path / "b.json", tmp_path / "BENCHMARKS.md"
    src.write_text(json.dumps(RESULTS))
    assert _report().main([str(src), "--section", "Media decoding", "--command", "make bench", "--out", str(md)]) == 0
    text = md.read_text(encoding="utf-8")
    assert "<!-- bench:media-decoding -->\n## Media decoding\n" in text
    assert "| ours | 2.00 ms | 500.00 | 12.50 | 2.00× |" in text and "| peer | 4.00 ms | 250.00 | 6.00 | 1.00× |" in text
    assert "| ours | 2.00 ms |" in capsys.readouterr().out


@pytest.mark.parametrize("content, why", [
    (None, "No such file or directory"),
    ("{bad", "not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
])
def test_missing_or_invalid_json_is_one_line(content, why, tmp_path, capsys):
    src, md = tmp_path / "b.json", tmp_path / "BENCHMARKS.md"
    if content is not None:
        src.write_text(content)
    md.write_text("# Benchmarks\n")
    err = _one_line_exit_2([str(src), "--section", "S", "--command", "c", "--out", str(md)], capsys)
    assert err == f"{src}: {WHAT}: {why}"
    assert md.read_text() == "# Benchmarks\n"


@pytest.mark.parametrize("content", ["{}", "[]", '{"benchmarks": []}', '{"benchmarks": {}}'])
def test_no_benchmarks_is_one_line(content, tmp_path, capsys):
    src, md = tmp_path / "b.json", tmp_path / "BENCHMARKS.md"
    src.write_text(content)
    err = _one_line_exit_2([str(src), "--section", "S", "--command", "c", "--out", str(md)], capsys)
    assert err == f"{src}: {WHAT} with a non-empty 'benchmarks' list"
    assert not md.exists()


@pytest.mark.parametrize("bench", [{"name": "a", "stats": {"median": 0}}, {"name": "a"}, {"stats": {"median": 1.0}},
                                   {"name": "a", "stats": {"median": 1.0}, "extra_info": []}, 3])
def test_a_benchmark_without_a_name_or_a_time_is_one_line(bench, tmp_path, capsys):
    """A zero or missing median would divide by zero or print a made-up ops/s."""
    src = tmp_path / "b.json"
    src.write_text(json.dumps({"benchmarks": [RESULTS["benchmarks"][0], bench]}))
    err = _one_line_exit_2([str(src), "--section", "S", "--command", "c", "--out", str(tmp_path / "m.md")], capsys)
    assert err == f"{src}: {WHAT}: benchmarks[1] lacks a 'name', a positive 'stats.median' or an object 'extra_info'"


def test_a_failed_write_leaves_benchmarks_md_whole(tmp_path, monkeypatch, capsys):
    """The update goes to a temporary file renamed over BENCHMARKS.md: a write that fails leaves the old text."""
    src, md = tmp_path / "b.json", tmp_path / "BENCHMARKS.md"
    src.write_text(json.dumps(RESULTS))
    old = "# Benchmarks\n\n<!-- bench:s -->\n## S\n\nold table\n<!-- /bench:s -->\n"
    md.write_text(old, encoding="utf-8")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    err = _one_line_exit_2([str(src), "--section", "S", "--command", "c", "--out", str(md)], capsys)
    assert err == f"--out {md}: cannot update it: [Errno 28] No space left on device"
    assert md.read_text(encoding="utf-8") == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BENCHMARKS.md", "b.json"]


def test_out_that_is_a_folder_is_one_line(tmp_path, capsys):
    src = tmp_path / "b.json"
    src.write_text(json.dumps(RESULTS))
    err = _one_line_exit_2([str(src), "--section", "S", "--command", "c", "--out", str(tmp_path)], capsys)
    assert err == f"--out {tmp_path} is a directory; expected the Markdown file to update"


def test_skip_missing_leaves_the_section_when_no_benchmark_ran(tmp_path, capsys):
    """pytest-benchmark writes no JSON when every benchmark was skipped: one line, exit 0, file untouched."""
    md = tmp_path / "BENCHMARKS.md"
    old = "# Benchmarks\n\n<!-- bench:s -->\n## S\n\nold table\n<!-- /bench:s -->\n"
    md.write_text(old, encoding="utf-8")
    src = tmp_path / "none.json"
    assert _report().main([str(src), "--section", "S", "--command", "c", "--out", str(md), "--skip-missing"]) == 0
    out, err = capsys.readouterr()
    assert out == (f"python bench/report.py: {src} was not written (no benchmark ran: skipped or deselected); "
                   f"section 'S' of {md} left as it is\n") and err == ""
    assert md.read_text(encoding="utf-8") == old


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_bench_with_its_benchmarks_skipped_publishes_nothing(tmp_path):
    """`make bench` where pytest skips every benchmark (exit 5, e.g. transformers missing): exit 0 with a
    line per section, BENCHMARKS.md byte for byte as it was, and an older run's JSON never reported."""
    (tmp_path / "bench").mkdir()
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    shutil.copy(ROOT / "bench" / "report.py", tmp_path / "bench" / "report.py")
    md = tmp_path / "BENCHMARKS.md"
    md.write_bytes((ROOT / "BENCHMARKS.md").read_bytes())
    before = md.read_bytes()
    (tmp_path / ".benchmarks").mkdir()
    for name in ("media.json", "hf_batch.json"):  # a run of another day
        (tmp_path / ".benchmarks" / name).write_text(json.dumps(RESULTS))
    fake = tmp_path / "py"
    fake.write_text(f'#!/bin/sh\nif [ "$1" = -m ] && [ "$2" = pytest ]; then echo "1 skipped"; exit 5; fi\n'
                    f'exec {sys.executable} "$@"\n')
    fake.chmod(0o755)
    run = subprocess.run(["make", "-o", ".venv/.installed", "bench", f"PY={fake}"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("was not written (no benchmark ran: skipped or deselected)") == 2
    assert md.read_bytes() == before
    assert not list((tmp_path / ".benchmarks").iterdir())
