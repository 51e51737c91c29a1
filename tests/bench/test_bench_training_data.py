"""bench/bench_training_data.py --write: the table's every cell is a measured rate, and the text written to
BENCHMARKS.md states this machine's cores and load, not another's."""

from __future__ import annotations

import os

from bench_scripts import load_bench_script


def test_write_with_one_worker_states_this_machine(monkeypatch, capsys):
    import bench.report as report

    script = load_bench_script("bench_training_data")
    monkeypatch.setattr(script, "TASKS", ("docqa",))
    monkeypatch.setattr(os, "getloadavg", lambda: (0.25, 0.5, 0.5))
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    written = {}
    monkeypatch.setattr(report, "update", lambda md, section, body: written.update(section=section, body=body))
    script.main(["--n", "1", "--workers", "1", "--write"])
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| docqa"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert "nan" not in row and cells[4] == cells[3] and float(cells[5].rstrip("×")) > 0  # one process: fresh's rate
    assert written["section"] == "Training data"
    assert "load average 0.2 on 16 cores at the end of the run" in written["body"]
    assert "2 cores" not in written["body"] and "shared with other developers" not in written["body"]
