"""Scale-out: two CPU ranks under torchrun (gloo on loopback) give the files one process gives."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evalsuite.results import load_run, read_jsonl
from evalsuite.runner import Dist, RunConfig

ROOT = Path(__file__).resolve().parents[2]


class NoWait(Dist):
    """One rank of a torchrun, run here alone: its barriers do not wait."""

    def barrier(self) -> None:
        pass


def _toy_task(n: int):
    """(the toy task of ``n`` samples, the mock backend, their config hash)."""
    from evalsuite.runner import config_hash, make_backend, make_task

    task, backend = make_task("toy", {"n": n}), make_backend("mock")
    return task, backend, config_hash(task, backend.describe())


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
    assert (a["environment"]["processes"], b["environment"]["processes"]) == (1, 2)  # the gate compares speed at one
    ta, tb = a["tasks"]["toy"], b["tasks"]["toy"]
    for key in ("metrics", "ci95", "breakdown", "n_samples", "n_errors", "n_scored", "config_hash"):
        assert ta[key] == tb[key], key
    strip = lambda rs: [(r.id, r.prediction, r.score, r.error) for r in rs]  # noqa: E731
    assert strip(sa["toy"]) == strip(sb["toy"])  # same order, same content
    ids = [r["id"] for r in read_jsonl(multi / "samples" / "toy.jsonl")]
    assert len(ids) == len(set(ids)) == 23
    assert not list((multi / "samples").glob("toy.rank*"))  # shards folded in and removed


def test_ranks_wait_at_a_barrier_as_long_as_rank_0_runs_a_driving_task(monkeypatch):
    """Rank 0 alone runs a load test or an lm-eval task (hours) while the others wait at a barrier, and
    a rank whose shard is done waits for the slowest: torch's default timeout (30 min on gloo, 10 on
    NCCL) ended such runs, so the process group is joined with a timeout of days."""
    from datetime import timedelta

    import torch.distributed as td

    from evalsuite.runner import init_dist

    joined = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(td, "is_initialized", lambda: False)
    monkeypatch.setattr(td, "init_process_group", lambda **kw: joined.update(kw))
    monkeypatch.setattr(td, "get_rank", lambda: 1)
    monkeypatch.setattr(td, "get_world_size", lambda: 2)
    dist = init_dist("cpu")
    assert (dist.rank, dist.world, dist.local_rank) == (1, 2, 1)
    assert joined["backend"] == "gloo" and joined["timeout"] >= timedelta(days=1)


def test_a_torchrun_cut_short_keeps_the_time_its_samples_took(toy, tmp_path, monkeypatch):
    """Under torchrun the time a task's samples took was not kept beside them (one process keeps it
    after every batch), so a torchrun stopped at 30 of 40 samples and resumed reported the resumed
    part alone as its wall time: 64 samples/s for a run that does 20. Rank 0 keeps it, also when it is
    stopped while waiting for the other ranks, and a resume on any number of ranks adds to it."""
    import evalsuite.runner as runner_mod
    from evalsuite.runner import _run_task

    class Clock:  # each reading 10 s after the one before
        now = 0.0

        def perf_counter(self):
            Clock.now += 10.0
            return Clock.now

    monkeypatch.setattr(runner_mod, "time", Clock())

    class Rank0Of2(Dist):
        stop = True

        def barrier(self) -> None:
            if Rank0Of2.stop:  # torchrun's SIGTERM while rank 0 waits for rank 1
                raise runner_mod.Terminated()

    task, backend, chash = _toy_task(8)
    cfg = RunConfig(model="mock", tasks=["toy"], out=tmp_path, batch_size=2, quiet=True)
    with pytest.raises(runner_mod.Terminated):
        _run_task(task, backend, cfg, tmp_path, chash, None, Rank0Of2(rank=0, world=2), backend.describe())
    stamp = json.loads((tmp_path / "samples" / "toy.config.json").read_text())
    assert stamp["elapsed_s"] >= 20.0  # rank 0's two batches and its wait
    Rank0Of2.stop = False
    entry = _run_task(task, backend, cfg, tmp_path, chash, None, Rank0Of2(rank=0, world=2), backend.describe())
    assert entry["wall_time_s"] >= stamp["elapsed_s"] + 10.0


def test_finished_samples_of_other_data_are_refused_by_every_rank(toy, tmp_path):
    """Each rank checked only its own share of the finished samples for other data: the rank holding
    one refused and exited while the others ran their shards on and were stopped by torchrun, their
    results.json saying "interrupted … run the same command again". Every rank refuses together."""
    from evalsuite.runner import ResumeRefused, _run_task

    task, backend, chash = _toy_task(8)
    first = RunConfig(model="mock", tasks=["toy"], out=tmp_path, quiet=True, limit=4)
    assert _run_task(task, backend, first, tmp_path, chash, None, NoWait(rank=1, world=2), backend.describe()) is None
    shard = tmp_path / "samples" / "toy.rank1-of-2.jsonl"  # as a torchrun cut short left it
    rows = [json.loads(line) for line in shard.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["toy-001", "toy-003"]
    rows[1]["target"] = "purple"  # its data has changed since
    shard.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = RunConfig(model="mock", tasks=["toy"], out=tmp_path, quiet=True)
    with pytest.raises(ResumeRefused, match="toy-003"):
        _run_task(task, backend, cfg, tmp_path, chash, None, NoWait(rank=0, world=2), backend.describe())
    assert not (tmp_path / "samples" / "toy.rank0-of-2.jsonl").exists()  # rank 0 ran nothing


def test_shards_of_a_larger_limit_are_refused_like_the_merged_file(toy, tmp_path):
    """A torchrun cut short at --limit 8 and resumed at --limit 4 finished 'complete' with 4 samples
    while the merged file it wrote held 8 (the shards' others were kept after them): the gate refuses
    such a run (its files disagree) and the same command run again was refused. The shards are
    checked for samples outside the run's list as the merged file is."""
    from evalsuite.runner import ResumeRefused, _run_task

    task, backend, chash = _toy_task(8)
    first = RunConfig(model="mock", tasks=["toy"], out=tmp_path, quiet=True, limit=8)
    _run_task(task, backend, first, tmp_path, chash, None, NoWait(rank=1, world=2), backend.describe())
    shard = tmp_path / "samples" / "toy.rank1-of-2.jsonl"
    assert len(shard.read_text().splitlines()) == 4  # toy-001, -003, -005, -007: rank 0 never ran
    smaller = RunConfig(model="mock", tasks=["toy"], out=tmp_path, quiet=True, limit=4)
    with pytest.raises(ResumeRefused, match=r"toy.rank1-of-2.jsonl holds 2 sample\(s\) of 'toy' outside this run's 4"):
        _run_task(task, backend, smaller, tmp_path, chash, None, Dist(), backend.describe())
    assert len(shard.read_text().splitlines()) == 4 and not (tmp_path / "samples" / "toy.jsonl").exists()


def test_a_folder_whose_samples_ran_on_two_numbers_of_processes_records_none(toy, tmp_path):
    """A torchrun cut short and resumed by one process recorded 1 process, and the gate compared its
    samples/s, partly the sum of two ranks, as one process's."""
    from evalsuite.runner import _run_task, run

    task, backend, chash = _toy_task(6)
    cfg = RunConfig(model="mock", tasks=["toy"], out=tmp_path, quiet=True, report=False)
    _run_task(task, backend, cfg, tmp_path, chash, None, NoWait(rank=1, world=2), backend.describe())
    run(RunConfig(model="mock", tasks=["toy"], out=tmp_path, quiet=True, report=False, task_args={"toy": {"n": 6}}))
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["tasks"]["toy"]["n_samples"] == 6 and doc["environment"]["processes"] is None
    run(RunConfig(model="mock", tasks=["toy"], out=tmp_path, quiet=True, report=False, task_args={"toy": {"n": 6}}))
    assert json.loads((tmp_path / "results.json").read_text())["environment"]["processes"] is None  # it stays mixed


def test_a_rank_lost_at_a_barrier_leaves_an_interrupted_resumable_run(toy, tmp_path, monkeypatch):
    """Rank 0 waiting at a barrier for a rank that dies (the OOM killer) gets gloo's "Connection reset
    by peer": the run ended "failed" with that error alone, no word of the other rank or of resuming.
    It ends "interrupted", resumable, saying a rank failed or died and where torchrun names it."""
    import torch.distributed as td

    import evalsuite.runner as runner_mod
    from evalsuite.runner import Dist, run

    def lost() -> None:
        raise RuntimeError("[pair.cc:537] Read error [127.0.0.1]:47257: Connection reset by peer")

    monkeypatch.setattr(runner_mod, "init_dist", lambda device: Dist(rank=0, world=2))
    monkeypatch.setattr(td, "barrier", lost)
    with pytest.raises(KeyboardInterrupt):
        run(RunConfig(model="mock", tasks=["toy"], out=tmp_path, quiet=True, report=False, task_args={"toy": {"n": 4}}))
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["status"] == "interrupted"
    reason = doc["status_reasons"][0]
    assert reason.startswith("interrupted (rank 0 of 2 lost the other ranks at a barrier: RuntimeError: [pair.cc:537] "
                             "Read error [127.0.0.1]:47257: Connection reset by peer; a rank failed or died")
    assert "'Root Cause'" in reason and reason.endswith("run the same command again to resume")
    assert len(read_jsonl(tmp_path / "samples" / "toy.rank0-of-2.jsonl")) == 2  # rank 0's share, kept for the resume


def test_torchrun_puts_each_rank_on_its_own_gpu_and_refuses_one_gpu_for_all(monkeypatch):
    """NCCL's barrier runs on the current CUDA device, GPU 0 on every rank unless each sets its own;
    --device cuda:N would put every rank on one GPU, which NCCL refuses ('Duplicate GPU detected')."""
    import torch
    import torch.distributed as td

    from evalsuite.runner import RunError, init_dist

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.append(("set_device", i)))
    monkeypatch.setattr(td, "is_initialized", lambda: False)
    monkeypatch.setattr(td, "init_process_group", lambda backend, timeout: calls.append(("init", backend)))
    monkeypatch.setattr(td, "get_rank", lambda: 1)
    monkeypatch.setattr(td, "get_world_size", lambda: 2)
    with pytest.raises(RunError, match=r"^--device cuda:1 puts every one of torchrun's 2 processes on that GPU; "
                                       r"use --device cuda \(each process on cuda:<LOCAL_RANK>\) or --device cpu$"):
        init_dist("cuda:1")
    assert calls == []
    dist = init_dist("cuda")
    assert calls == [("set_device", 1), ("init", "nccl")] and (dist.rank, dist.world, dist.local_rank) == (1, 2, 1)
    calls.clear()
    init_dist("cpu")
    assert calls == [("init", "gloo")]


def test_a_resume_after_a_smaller_finished_limit_counts_every_invocations_time(toy, tmp_path, monkeypatch):
    """A finished --limit 2 entry, then --limit 6 stopped after a batch and resumed: the task's wall
    time took the finished entry's (the first invocation's) and dropped the stopped one's, so the
    resumed run read faster than it was. The stamp's count of every invocation wins."""
    import evalsuite.runner as runner_mod
    from evalsuite.runner import run

    class Clock:  # time passes only while a batch runs: 10 s each
        now = 0.0

        def perf_counter(self):
            return Clock.now

    monkeypatch.setattr(runner_mod, "time", Clock())
    real = runner_mod.process_batch
    stop_at = [None]

    def timed_batch(*a, **k):
        if stop_at[0] == Clock.now:
            raise KeyboardInterrupt
        Clock.now += 10.0
        return real(*a, **k)

    monkeypatch.setattr(runner_mod, "process_batch", timed_batch)
    cfg = dict(model="mock", tasks=["toy"], out=tmp_path, batch_size=2, quiet=True, report=False,
               task_args={"toy": {"n": 8}})
    assert run(RunConfig(**cfg, limit=2)).results["tasks"]["toy"]["wall_time_s"] == 10.0
    stop_at[0] = 20.0  # the second batch of the next run
    with pytest.raises(KeyboardInterrupt):
        run(RunConfig(**cfg, limit=6))
    assert json.loads((tmp_path / "samples" / "toy.config.json").read_text())["elapsed_s"] == 20.0
    stop_at[0] = None
    entry = run(RunConfig(**cfg, limit=6)).results["tasks"]["toy"]
    assert entry["n_samples"] == 6 and entry["wall_time_s"] == 30.0  # its 3 batches, one per invocation (was 20)
