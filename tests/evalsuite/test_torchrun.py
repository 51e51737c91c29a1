"""Scale-out: two CPU ranks under torchrun (gloo on loopback) give the files one process gives."""

import os
import subprocess
import sys
from pathlib import Path

from evalsuite.results import load_run, read_jsonl

ROOT = Path(__file__).resolve().parents[2]


def test_two_ranks_merge_to_the_single_process_result(toy, tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{ROOT}", "TOY_DIR": str(toy),
           "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    args = ["run", "--model", "mock", "--tasks", "toy", "--task-arg", "toy.n=23", "--quiet", "--batch-size", "3",
            "--max-error-rate", "1", "--task-arg", "toy.corrupt=5"]
    single, multi = tmp_path / "single", tmp_path / "multi"
    subprocess.run([sys.executable, str(ROOT / "tests" / "run_with_toy.py"), *args, "--out", str(single)],
                   env=env, check=True, capture_output=True, timeout=300)
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(ROOT / "tests" / "run_with_toy.py"), *args, "--out", str(multi)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.count("results:") == 1  # only rank 0 reports

    a, sa = load_run(single)
    b, sb = load_run(multi)
    ta, tb = a["tasks"]["toy"], b["tasks"]["toy"]
    for key in ("metrics", "ci95", "breakdown", "n_samples", "n_errors", "n_scored", "config_hash"):
        assert ta[key] == tb[key], key
    strip = lambda rs: [(r.id, r.prediction, r.score, r.error) for r in rs]  # noqa: E731
    assert strip(sa["toy"]) == strip(sb["toy"])  # same order, same content
    ids = [r["id"] for r in read_jsonl(multi / "samples" / "toy.jsonl")]
    assert len(ids) == len(set(ids)) == 23
    assert not list((multi / "samples").glob("toy.rank*"))  # shards folded in and removed
