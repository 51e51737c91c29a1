"""The pytest-benchmark files of make bench check a fast path's answers before timing it: a fast path that
answers wrongly fails its test and leaves no time in the JSON that bench/report.py turns into a speedup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"

BROKEN_SEEK = '''
import numpy as np
from evalsuite import media
_real = media.sample_frames
def sample_frames(path, *args, decode_all=False, **kwargs):
    frames, stamps = _real(path, *args, decode_all=decode_all, **kwargs)
    return (frames if decode_all else np.zeros_like(frames)), stamps
media.sample_frames = sample_frames
'''

BROKEN_BATCH = '''
from evalsuite.backends.hf import HFBackend
_real = HFBackend.generate
def generate(self, requests):
    out = _real(self, requests)
    if self.batch > 1:
        for r in out:
            r.text = "wrong " + r.text
    return out
HFBackend.generate = generate
'''


def _timed_run(tmp_path: Path, bench_file: str, plugin: str, *args: str) -> tuple[int, list[str]]:
    """Runs ``bench_file`` timed (one round) with ``plugin`` imported first; its exit code and the names
    of the benchmarks in the JSON it wrote (none when it wrote none)."""
    (tmp_path / "broken_plugin.py").write_text(plugin)
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, "-m", "pytest", str(BENCH / bench_file), "-p", "broken_plugin",
                          "-p", "no:cacheprovider", "-p", "no:warnings", "-q", "--benchmark-enable",
                          f"--benchmark-json={out}", "--benchmark-min-rounds=1", "--benchmark-max-time=0",
                          "--benchmark-warmup=off", "--rootdir", str(BENCH.parent), *args],
                         cwd=BENCH.parent, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)})
    names = [b["name"] for b in json.loads(out.read_text())["benchmarks"]] if out.exists() else []
    return run.returncode, names


@pytest.mark.slow
def test_a_wrong_keyframe_seek_records_no_time(tmp_path):
    rc, names = _timed_run(tmp_path, "test_bench_media.py", BROKEN_SEEK)
    assert rc == 1 and names == ["test_decode_every_frame"]


@pytest.mark.slow
def test_wrong_batched_answers_record_no_time(tmp_path):
    pytest.importorskip("transformers")
    rc, names = _timed_run(tmp_path, "test_bench_hf_batch.py", BROKEN_BATCH, "-k", "batch_8 and nemotron")
    assert rc == 1 and names == []
