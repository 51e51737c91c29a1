import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalsuite.results import RunFormatError, load_run, read_jsonl, validate
from evalsuite.runner import RunConfig, RunError, run
from evalsuite.stats import wilson_ci
from runfolders import ctrl_c_on_second_batch

ROOT = Path(__file__).resolve().parents[2]


def _replay_file(tmp_path, n=20, wrong=()):
    """Predictions for the toy task: right except for the indices in `wrong`."""
    from toytask import COLOURS

    lines = []
    for i in range(n):
        colour = COLOURS[i % 4]
        if i % 2:  # choice question: answer with a letter
            pred = "ABCD"[(COLOURS.index(colour) + (1 if i in wrong else 0)) % 4]
        else:
            pred = ("purple" if i in wrong else f"It is {colour}.")
        lines.append(json.dumps({"id": f"toy-{i:03d}", "prediction": pred}))
    path = tmp_path / "preds.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_replay_run_scores_exactly_and_writes_the_contract(toy, tmp_path):
    preds = _replay_file(tmp_path, wrong={0, 3, 5, 10})
    out = tmp_path / "run"
    outcome = run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=out, quiet=True))
    assert outcome.exit_code == 0
    results, samples = load_run(out)  # validates against the JSON Schema
    t = results["tasks"]["toy"]
    assert t["metrics"]["accuracy"] == pytest.approx(16 / 20)
    assert t["n_samples"] == 20 and t["n_errors"] == 0 and t["n_scored"] == 20
    lo, hi = t["ci95"]["accuracy"]
    assert lo < 0.8 < hi
    assert t["breakdown"]["category"]["even"]["n"] == 10
    assert t["breakdown"]["category"]["even"]["accuracy"] == pytest.approx(8 / 10)  # 0, 10 wrong
    assert t["breakdown"]["category"]["odd"]["accuracy"] == pytest.approx(8 / 10)  # 3, 5 wrong
    assert results["status"] == "complete"
    assert results["model"]["backend"] == "replay" and len(results["model"]["weights_sha256"]) == 64
    env = results["environment"]
    assert env["python"] and env["torch"] and env["gpu"] is None and env["seed"] == 0
    assert [r.id for r in samples["toy"]] == [f"toy-{i:03d}" for i in range(20)]
    assert (out / "report.html").exists()


def test_limit_and_resume_extend_without_duplicates(toy, tmp_path):
    preds = _replay_file(tmp_path)
    out = tmp_path / "run"
    run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=out, limit=5, quiet=True, report=False))
    run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=out, limit=12, quiet=True, report=False))
    rows = read_jsonl(out / "samples" / "toy.jsonl")
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == 12
    results, _ = load_run(out)
    assert results["tasks"]["toy"]["n_samples"] == 12


def test_corrupt_media_errors_one_sample_and_the_run_finishes(toy, tmp_path):
    preds = _replay_file(tmp_path)
    out = tmp_path / "run"
    outcome = run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=out, quiet=True, max_error_rate=0.1,
                            task_args={"toy": {"corrupt": "4"}}))
    t = outcome.results["tasks"]["toy"]
    assert t["n_errors"] == 1 and t["n_scored"] == 19
    assert t["metrics"]["accuracy"] == pytest.approx(1.0)  # the errored sample is left out
    _, samples = load_run(out)
    bad = [r for r in samples["toy"] if r.error]
    assert [r.id for r in bad] == ["toy-004"]
    assert "image file is corrupt" in bad[0].error and "img004.png" in bad[0].error
    assert outcome.exit_code == 0  # 5% ≤ 10%


def test_error_rate_above_limit_exits_nonzero(toy, tmp_path):
    out = tmp_path / "run"
    outcome = run(RunConfig(model="mock:fail=toy-00", tasks=["toy"], out=out, quiet=True, report=False))
    t = outcome.results["tasks"]["toy"]
    assert t["n_errors"] == 10  # ids toy-000 … toy-009 raise in the backend
    assert outcome.exit_code == 1 and "max-error-rate" in outcome.messages[0]
    results, _ = load_run(out)
    assert results["status"] == "failed" and results["status_reasons"] == outcome.messages
    assert "10/20 samples errored" in results["status_reasons"][0]


def test_a_task_over_the_error_rate_left_by_an_earlier_run_keeps_the_folder_failed(toy, tmp_path):
    out = tmp_path / "run"
    cfg = dict(model="mock:fail=toy-00", out=out, quiet=True, report=False)
    assert run(RunConfig(tasks=["toy"], **cfg)).exit_code == 1  # 10/20 errored
    outcome = run(RunConfig(tasks=["docqa"], limit=1, **cfg))
    assert outcome.exit_code == 1
    assert outcome.messages == ["task toy (from an earlier run in --out): 10/20 samples errored "
                                "(50.0% > --max-error-rate 5.0%)"]
    results, _ = load_run(out)
    assert set(results["tasks"]) == {"toy", "docqa"}
    assert results["status"] == "failed" and results["status_reasons"] == outcome.messages
    outcome = run(RunConfig(tasks=["docqa"], limit=1, max_error_rate=0.5, **cfg))
    assert outcome.exit_code == 0 and load_run(out)[0]["status"] == "complete"


def test_ctrl_c_leaves_an_interrupted_resumable_run(toy, tmp_path, monkeypatch):
    preds = _replay_file(tmp_path, wrong={1, 17})
    out = tmp_path / "run"
    undo = ctrl_c_on_second_batch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=out, quiet=True, report=False, batch_size=8))
    first = json.loads((out / "results.json").read_text())
    validate(first)
    assert first["status"] == "interrupted" and "run the same command again" in first["status_reasons"][0]
    assert len(read_jsonl(out / "samples" / "toy.jsonl")) == 8
    undo()
    outcome = run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=out, quiet=True, report=False, batch_size=8))
    assert outcome.results["status"] == "complete" and outcome.results["status_reasons"] == []
    assert outcome.results["run_id"] == first["run_id"]
    assert outcome.results["tasks"]["toy"]["metrics"]["accuracy"] == pytest.approx(18 / 20)


def test_a_crash_is_failed_with_its_reason(toy, tmp_path, monkeypatch):
    import evalsuite.runner as runner_mod

    def boom(*a, **kw):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(runner_mod, "process_batch", boom)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        run(RunConfig(model=f"replay:{_replay_file(tmp_path)}", tasks=["toy"], out=out, quiet=True, report=False))
    doc = json.loads((out / "results.json").read_text())
    assert doc["status"] == "failed" and "disk on fire" in doc["status_reasons"][0]


def test_backend_failure_is_isolated_to_its_sample(toy, tmp_path):
    out = tmp_path / "run"
    outcome = run(RunConfig(model="mock:fail=toy-007", tasks=["toy"], out=out, quiet=True, report=False,
                            batch_size=8, max_error_rate=1.0))
    _, samples = load_run(out)
    errored = {r.id: r.error for r in samples["toy"] if r.error}
    assert errored == {"toy-007": "RuntimeError: mock failure on toy-007"}
    assert outcome.results["tasks"]["toy"]["n_scored"] == 19


def test_missing_replay_prediction_errors_that_sample(toy, tmp_path):
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "toy-000", "prediction": "red"}) + "\n")
    outcome = run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=tmp_path / "r", limit=3, quiet=True,
                            report=False, max_error_rate=1.0))
    t = outcome.results["tasks"]["toy"]
    assert t["n_errors"] == 2 and t["metrics"]["accuracy"] == 1.0


def test_config_mismatch_refuses_then_overwrite_reruns(toy, tmp_path):
    out = tmp_path / "run"
    run(RunConfig(model="mock", tasks=["toy"], out=out, limit=4, quiet=True, report=False))
    with pytest.raises(RunError, match="different task/model config"):
        run(RunConfig(model="mock", tasks=["toy"], out=out, limit=4, quiet=True, report=False,
                      task_args={"toy": {"max_tokens": "4"}}))
    run(RunConfig(model="mock", tasks=["toy"], out=out, limit=4, quiet=True, report=False, overwrite=True,
                  task_args={"toy": {"max_tokens": "4"}}))
    results, samples = load_run(out)
    assert results["tasks"]["toy"]["args"]["max_tokens"] == 4 and len(samples["toy"]) == 4


def test_a_task_cut_short_before_results_json_resumes_only_under_its_own_config(toy, tmp_path, monkeypatch):
    """Ctrl-C or a kill inside a task's first pass leaves samples but no entry in results.json (or no
    results.json at all): the stamp beside the samples still refuses another model, task config or seed."""
    out = tmp_path / "run"
    undo = ctrl_c_on_second_batch(monkeypatch)
    cfg = dict(tasks=["toy"], out=out, quiet=True, report=False, batch_size=4)
    with pytest.raises(KeyboardInterrupt):
        run(RunConfig(model="mock:letter=A", **cfg))
    undo()
    assert json.loads((out / "results.json").read_text())["tasks"] == {}  # the task never reached it
    assert len(read_jsonl(out / "samples" / "toy.jsonl")) == 4
    (out / "results.json").unlink()  # as after a kill before the first write
    with pytest.raises(RunError, match="'toy' run with a different task/model config"):
        run(RunConfig(model="mock:letter=B", **cfg))
    with pytest.raises(RunError, match="'toy' run with a different task/model config"):
        run(RunConfig(model="mock:letter=A", task_args={"toy": {"max_tokens": "4"}}, **cfg))
    with pytest.raises(RunError, match="'toy' run with --seed 0, not 3"):
        run(RunConfig(model="mock:letter=A", seed=3, **cfg))
    assert len(read_jsonl(out / "samples" / "toy.jsonl")) == 4  # nothing was added by the refused runs
    done = run(RunConfig(model="mock:letter=A", **cfg))  # the same config resumes
    assert done.results["tasks"]["toy"]["n_samples"] == 20 and len(read_jsonl(out / "samples" / "toy.jsonl")) == 20
    with pytest.raises(RunError, match="'toy' run with --seed 0, not 1"):  # finished tasks keep their seed too
        run(RunConfig(model="mock:letter=A", seed=1, **cfg))
    run(RunConfig(model="mock:letter=B", overwrite=True, **cfg))
    assert json.loads((out / "samples" / "toy.config.json").read_text())["config_hash"] == \
        json.loads((out / "results.json").read_text())["tasks"]["toy"]["config_hash"]


@pytest.mark.parametrize("field, value, message", [
    ("limit", 0, "--limit must be a whole number >= 1"), ("limit", -1, "--limit must be a whole number >= 1"),
    ("batch_size", 0, "--batch-size must be a whole number >= 1"),
    ("batch_size", -2, "--batch-size must be a whole number >= 1"),
    ("max_error_rate", float("nan"), r"--max-error-rate must be a share in \[0, 1\]"),
    ("max_error_rate", 1.5, r"--max-error-rate must be a share in \[0, 1\]"),
    ("seed", -5, r"--seed must be a whole number in \[0, 2\*\*32\), got -5"),
    ("seed", 2**32, r"--seed must be a whole number in \[0, 2\*\*32\)"),
    ("device", "nonsense", "--device must be auto, cpu, cuda or cuda:N, got 'nonsense'"),
    ("device", "cpu:x", "--device must be auto, cpu, cuda or cuda:N, got 'cpu:x'"),
])
def test_run_options_out_of_range_are_refused(tmp_path, field, value, message):
    with pytest.raises(RunError, match=message):
        RunConfig(model="mock", tasks=["toy"], out=tmp_path / "run", **{field: value})
    assert not (tmp_path / "run").exists()


def test_a_damaged_run_folder_is_one_error_line(toy, tmp_path):
    out = tmp_path / "run"
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="is a file; expected a run folder"):
        run(RunConfig(model="mock", tasks=["toy"], out=tmp_path / "file", quiet=True, report=False))
    out.mkdir()
    for text in ("[]", '{"tasks": []}'):
        (out / "results.json").write_text(text)
        with pytest.raises(RunError, match="is not a run's results"):
            run(RunConfig(model="mock", tasks=["toy"], out=out, quiet=True, report=False))
    (out / "results.json").unlink()
    (out / "samples").mkdir()
    (out / "samples" / "toy.config.json").write_text("{torn")
    with pytest.raises(RunError, match="toy.config.json is not valid JSON"):
        run(RunConfig(model="mock", tasks=["toy"], out=out, quiet=True, report=False))


def test_a_results_json_that_breaks_the_schema_is_refused_before_the_run_carries_it(toy, tmp_path):
    out = tmp_path / "run"
    cfg = dict(model="mock", tasks=["toy"], out=out, limit=2, quiet=True, report=False)
    run(RunConfig(**cfg))
    good = json.loads((out / "results.json").read_text())
    for path, value, where in ((["environment"], "x", "environment"),
                               (["environment", "wall_time_s"], "x", "environment/wall_time_s"),
                               (["tasks", "other"], "x", "tasks/other"),
                               (["schema_version"], "1.x", "schema_version")):
        doc = json.loads(json.dumps(good))
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        (out / "results.json").write_text(json.dumps(doc))
        with pytest.raises(RunError) as e:
            run(RunConfig(**cfg))
        assert str(e.value).startswith(f"{out / 'results.json'} does not match schema 1.2 at {where}: ")
        assert str(e.value).endswith("; remove it or pass --overwrite")
        assert json.loads((out / "results.json").read_text()) == doc  # left as it was
    doc = json.loads(json.dumps(good))
    doc["schema_version"] = "2.0"
    (out / "results.json").write_text(json.dumps(doc))
    with pytest.raises(RunError, match=r"is results schema 2\.0, this evalsuite reads 1\.x \(a newer evalsuite wrote it\); "
                                       r"remove it or pass --overwrite$"):
        run(RunConfig(**cfg))
    run(RunConfig(**cfg, overwrite=True))
    assert json.loads((out / "results.json").read_text())["tasks"]["toy"]["n_samples"] == 2
    # results of schema 1.0 (no status_reasons, chance or batch size) still resume
    old = json.loads((out / "results.json").read_text())
    old["schema_version"] = "1.0"
    for key in ("status_reasons",):
        old.pop(key, None)
    old["environment"].pop("batch_size", None)
    for key in ("chance", "chance_method"):
        old["tasks"]["toy"].pop(key, None)
    (out / "results.json").write_text(json.dumps(old))
    done = run(RunConfig(**{**cfg, "limit": 3}))
    assert done.results["status"] == "complete" and done.results["tasks"]["toy"]["n_samples"] == 3


@pytest.mark.parametrize("line,message", [
    ("[1, 2]", "samples/toy.jsonl:3: expected a sample result object, got list"),
    ('{"id": "x"}', "samples/toy.jsonl:3: sample result lacks task, target, prediction, score"),
    ('{"id": "x", "task": "toy", "target": 1, "prediction": "a", "score": "high"}',
     "samples/toy.jsonl:3: field 'score' should be a number or null, got \"high\""),
    ('{"id": "x", "task": "toy", "target": 1, "prediction": "a", "score": NaN}',
     "samples/toy.jsonl:3: field 'score' should be a finite number or null, got nan"),
    ('{"id": "x", "task": "toy", "target": 1, "prediction": "a", "score": 1, "metadata": []}',
     "samples/toy.jsonl:3: field 'metadata' should be an object, got []"),
    ('{"id": "x", "task": "toy", "target": 1, "prediction": "a", "score": 1, "media": ["x.png"]}',
     "samples/toy.jsonl:3: field 'media' should be a list of objects, got [\"x.png\"]"),
])
def test_a_sample_line_that_is_json_but_not_a_sample_is_one_error_line(toy, tmp_path, line, message):
    out = tmp_path / "run"
    cfg = dict(model="mock", tasks=["toy"], out=out, limit=4, quiet=True, report=False)
    run(RunConfig(**cfg))
    log = out / "samples" / "toy.jsonl"
    rows = log.read_text().splitlines()
    log.write_text("\n".join(rows[:2] + [line] + rows[2:]) + "\n")
    with pytest.raises(RunFormatError) as e:
        run(RunConfig(**cfg))
    assert str(e.value) == f"{out}/{message}"
    with pytest.raises(RunFormatError, match="toy.jsonl:3: "):
        load_run(out)  # what compare, the gate, the report and the leaderboard read


def test_sample_results_round_trip_through_their_line():
    from evalsuite.results import dumps, sample_from_row
    from evalsuite.types import SampleResult

    r = SampleResult(id="a", task="t", target=["x", 2], prediction=None, score=None, error="MediaError: x",
                     usage={"ttft_s": 0.1}, media=[{"kind": "image"}], choices=["a", "b"])
    assert sample_from_row(json.loads(dumps(r.to_dict())), "f:1") == r
    assert sample_from_row({"id": 7, "task": "t", "target": None, "prediction": "p", "score": 1}, "f:1").id == "7"


def test_a_task_with_no_samples_fails_the_run(toy, tmp_path):
    outcome = run(RunConfig(model="mock", tasks=["toy"], out=tmp_path / "run", quiet=True, report=False,
                            task_args={"toy": {"n": "0"}}))
    assert outcome.exit_code == 1 and outcome.results["status"] == "failed"
    assert outcome.messages == ["task toy: no samples to run (its data, or a --task-arg that selects from it, "
                                "left none)"]


def test_a_resumed_run_keeps_its_id_and_a_wholly_overwritten_one_gets_a_new_one(toy, tmp_path):
    out = tmp_path / "run"
    cfg = dict(model="mock", tasks=["toy"], out=out, limit=4, quiet=True, report=False)
    first = run(RunConfig(**cfg)).results["run_id"]
    assert run(RunConfig(**cfg)).results["run_id"] == first  # resumed: the same run
    again = run(RunConfig(**cfg, overwrite=True)).results
    assert again["run_id"] != first  # every task it held ran again: a new run
    assert load_run(out)[0]["run_id"] == again["run_id"]


def test_torn_last_line_is_repaired_on_resume(toy, tmp_path):
    preds = _replay_file(tmp_path)
    out = tmp_path / "run"
    run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=out, limit=6, quiet=True, report=False))
    log = out / "samples" / "toy.jsonl"
    data = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(data[:4]) + data[4][: len(data[4]) // 2])  # killed mid-write of line 5
    run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=out, limit=6, quiet=True, report=False))
    ids = [r["id"] for r in read_jsonl(log)]
    assert ids == [f"toy-{i:03d}" for i in range(6)]
    assert load_run(out)[0]["tasks"]["toy"]["metrics"]["accuracy"] == 1.0


def _cli(args, env):
    code = "import sys, toytask; from evalsuite.cli import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, *args]


def test_sigkill_halfway_then_resume_equals_uninterrupted_run(toy, tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{ROOT}", "TOY_DIR": str(toy)}
    args = ["run", "--model", "mock:delay=0.05", "--tasks", "toy", "--task-arg", "toy.n=40", "--quiet",
            "--batch-size", "2"]
    ref = tmp_path / "ref"
    subprocess.run(_cli([*args, "--out", str(ref)], env), env=env, check=True, capture_output=True, timeout=300)

    out = tmp_path / "killed"
    proc = subprocess.Popen(_cli([*args, "--out", str(out)], env), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    log = out / "samples" / "toy.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if log.exists() and len(log.read_bytes().splitlines()) >= 12:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(read_jsonl(log))
    assert 12 <= n_before < 40, n_before  # really killed halfway
    subprocess.run(_cli([*args, "--out", str(out)], env), env=env, check=True, capture_output=True, timeout=300)

    a, sa = load_run(ref)
    b, sb = load_run(out)
    ids = [r["id"] for r in read_jsonl(log)]
    assert len(ids) == len(set(ids)) == 40
    assert a["tasks"]["toy"]["metrics"] == b["tasks"]["toy"]["metrics"]
    assert a["tasks"]["toy"]["ci95"] == b["tasks"]["toy"]["ci95"]
    assert {r.id: r.prediction for r in sa["toy"]} == {r.id: r.prediction for r in sb["toy"]}
    assert a["run_id"] != b["run_id"] and b["status"] == "complete"


def test_a_sigterm_under_torchrun_does_not_pass_for_the_cause() -> None:
    """torchrun SIGTERMs every rank when one dies (a SIGKILL by the OOM killer): rank 0 said only
    "interrupted (SIGTERM)", as if the run had been stopped from outside. It cannot see the dead rank or
    its exit status (torchrun, their parent, reports them), so it says where that is reported."""
    from evalsuite.runner import Dist, Terminated, interrupted_reason

    alone, ranks = Dist(), Dist(rank=0, world=4)
    assert interrupted_reason(Terminated(), alone) == "interrupted (SIGTERM): run the same command again to resume"
    assert interrupted_reason(KeyboardInterrupt(), alone) == interrupted_reason(KeyboardInterrupt(), ranks) == \
        "interrupted (Ctrl-C): run the same command again to resume"
    reason = interrupted_reason(Terminated(), ranks)
    assert reason.startswith("interrupted (SIGTERM to rank 0 of 4; torchrun sends it to every rank when it is stopped "
                             "and when a rank fails or dies")
    assert "'Root Cause'" in reason and reason.endswith("run the same command again to resume")


def test_sigterm_leaves_an_interrupted_resumable_run(toy, tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{ROOT}", "TOY_DIR": str(toy)}
    args = ["run", "--model", "mock:delay=0.05", "--tasks", "toy", "--task-arg", "toy.n=40", "--quiet",
            "--batch-size", "2", "--out", str(tmp_path / "run")]
    proc = subprocess.Popen(_cli(args, env), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "run" / "samples" / "toy.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (log.exists() and len(log.read_bytes().splitlines()) >= 6):
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # a CI timeout, kill, docker stop
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "interrupted; re-run the same command to resume" in err
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    assert doc["status"] == "interrupted"  # not "running" forever
    assert doc["status_reasons"] == ["interrupted (SIGTERM): run the same command again to resume"]
    assert 6 <= len(read_jsonl(log)) < 40
    subprocess.run(_cli(args, env), env=env, check=True, capture_output=True, timeout=300)
    assert json.loads((tmp_path / "run" / "results.json").read_text())["status"] == "complete"
    assert len(read_jsonl(log)) == 40


def test_results_schema_rejects_a_broken_file(toy, tmp_path):
    out = tmp_path / "run"
    run(RunConfig(model="mock", tasks=["toy"], out=out, limit=2, quiet=True, report=False))
    doc = json.loads((out / "results.json").read_text())
    validate(doc)
    del doc["tasks"]["toy"]["n_errors"]
    from evalsuite.results import RunFormatError

    with pytest.raises(RunFormatError, match="n_errors"):
        validate(doc)


def test_device_auto_is_cuda_when_present_else_cpu(monkeypatch) -> None:
    import torch

    from evalsuite.env import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cpu") == "cpu" and resolve_device("cuda:1") == "cuda:1"


def test_default_run_records_the_resolved_device(tmp_path) -> None:
    from evalsuite.runner import RunConfig, run

    cfg = RunConfig(model="bf16", tasks=["docqa"], out=str(tmp_path / "r"), limit=1)
    assert cfg.device == "auto"
    outcome = run(cfg)
    assert outcome.results["model"]["device"] == "cpu"


def test_all_right_run_reports_a_wilson_interval_not_certainty(toy, tmp_path):
    out = tmp_path / "run"
    run(RunConfig(model=f"replay:{_replay_file(tmp_path, wrong=set())}", tasks=["toy"], out=out, quiet=True))
    t = load_run(out)[0]["tasks"]["toy"]
    assert t["metrics"]["accuracy"] == 1.0
    assert t["ci95"]["accuracy"] == pytest.approx(list(wilson_ci(20, 20)))  # [0.839, 1.0], not [1.0, 1.0]


def test_a_task_resumed_after_a_cut_reports_the_time_all_its_samples_took(toy, tmp_path, monkeypatch):
    """A task cut short never reached results.json, so its resumed part alone was its wall time (a
    resumed docqa showed 9135 samples/s): the time so far is kept beside its samples."""
    preds = _replay_file(tmp_path)
    out = tmp_path / "run"
    undo = ctrl_c_on_second_batch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=out, quiet=True, report=False, batch_size=8))
    undo()
    stamp_file = out / "samples" / "toy.config.json"
    stamp = json.loads(stamp_file.read_text())
    assert stamp["elapsed_s"] >= 0 and stamp["seed"] == 0 and stamp["device"] == "cpu"
    stamp_file.write_text(json.dumps({**stamp, "elapsed_s": 1000.0}))  # as if the first 8 samples took 1000 s
    run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=out, quiet=True, report=False, batch_size=8))
    results = json.loads((out / "results.json").read_text())
    assert results["tasks"]["toy"]["wall_time_s"] >= 1000.0
    assert results["tasks"]["toy"]["efficiency"]["samples_per_s"] <= 20 / 1000.0


def test_a_smaller_limit_on_resume_is_refused_not_half_applied(toy, tmp_path):
    preds = _replay_file(tmp_path)
    out = tmp_path / "run"
    run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=out, limit=12, quiet=True, report=False))
    before = (out / "results.json").read_text()
    with pytest.raises(RunError, match=r"holds 7 sample\(s\) of 'toy' outside this run's 5 \(it ran with a larger "
                                       r"--limit\)"):
        run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=out, limit=5, quiet=True, report=False))
    # nothing ran: the finished run is left as it was (it was rewritten as failed, which the gate refuses)
    assert (out / "results.json").read_text() == before
    run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=out, quiet=True, report=False))  # larger: extends


def test_a_whole_last_line_without_its_newline_is_kept(toy, tmp_path):
    """Read as a sample (it is whole JSON), then cut off before appending: the file and results.json
    disagreed until the next run."""
    preds = _replay_file(tmp_path)
    out = tmp_path / "run"
    run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=out, limit=6, quiet=True, report=False))
    f = out / "samples" / "toy.jsonl"
    f.write_bytes(f.read_bytes().rstrip(b"\n"))
    run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=out, limit=10, quiet=True, report=False))
    ids = [json.loads(line)["id"] for line in f.read_text().splitlines()]
    assert ids == [f"toy-{i:03d}" for i in range(10)]


def test_shards_of_a_torchrun_cut_short_are_resumed_by_one_process(toy, tmp_path):
    preds = _replay_file(tmp_path)
    out = tmp_path / "run"
    run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=out, limit=6, quiet=True, report=False))
    f = out / "samples" / "toy.jsonl"
    lines = f.read_text().splitlines()
    (out / "samples" / "toy.rank0-of-2.jsonl").write_text("\n".join(lines[0::2]) + "\n")  # as 2 ranks left them
    (out / "samples" / "toy.rank1-of-2.jsonl").write_text("\n".join(lines[1::2]) + "\n")
    f.unlink()
    (out / "results.json").unlink()
    import evalsuite.runner as runner_mod

    computed = []
    real = runner_mod.process_batch
    runner_mod.process_batch = lambda task, backend, batch, seed: computed.extend(s.id for s in batch) or real(
        task, backend, batch, seed)
    try:
        run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=out, limit=8, quiet=True, report=False))
    finally:
        runner_mod.process_batch = real
    assert computed == ["toy-006", "toy-007"]  # the shards' 6 were not run again
    assert not list((out / "samples").glob("toy.rank*")) and len(f.read_text().splitlines()) == 8


def test_resume_on_another_device_is_refused(toy, tmp_path):
    preds = _replay_file(tmp_path)
    out = tmp_path / "run"
    run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=out, limit=4, quiet=True, report=False))
    stamp_file = out / "samples" / "toy.config.json"
    stamp_file.write_text(json.dumps({**json.loads(stamp_file.read_text()), "device": "cuda:0"}))
    with pytest.raises(RunError, match="run on device cuda:0, not cpu"):
        run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=out, limit=8, quiet=True, report=False))


def test_results_json_says_running_before_the_first_task(toy, tmp_path, monkeypatch):
    import evalsuite.runner as runner_mod

    preds = _replay_file(tmp_path)
    out = tmp_path / "run"
    seen = []
    real = runner_mod._run_task
    monkeypatch.setattr(runner_mod, "_run_task", lambda *a, **k: seen.append(
        json.loads((out / "results.json").read_text())["status"]) or real(*a, **k))
    run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=out, limit=4, quiet=True, report=False))
    assert seen == ["running"]  # a kill -9 in the first task left no results.json at all


def test_a_driving_task_runs_on_rank_0_only(toy, tmp_path):
    """Under torchrun the throughput task ran on every rank at once (each measuring against the
    others and writing the task's files); rank 0 alone runs it, the others wait."""
    from evalsuite.runner import Dist, _run_task
    from evalsuite.task import DrivingTask

    class Driving(DrivingTask):
        name = "driving"
        ran = 0

        def run_with(self, backend, *, cfg, out, config_hash):
            Driving.ran += 1
            return {"n_samples": 0}

    class TwoRanks(Dist):
        barriers = 0

        def barrier(self) -> None:
            TwoRanks.barriers += 1

    cfg = RunConfig(model="mock", tasks=["toy"], out=tmp_path)
    assert _run_task(Driving(), None, cfg, tmp_path, "h", None, TwoRanks(rank=1, world=2)) is None
    assert _run_task(Driving(), None, cfg, tmp_path, "h", None, TwoRanks(rank=0, world=2)) == {"n_samples": 0}
    assert Driving.ran == 1 and TwoRanks.barriers == 2


def test_the_served_model_is_part_of_the_config_hash(toy):
    """An ``openai:`` URL serves many models: a run of model-A must not resume with model-B's answers."""
    from evalsuite.runner import config_hash, make_task

    task = make_task("toy")
    server = {"name": "openai:http://127.0.0.1:8000/v1", "backend": "openai", "precision": None,
              "weights_sha256": None}
    a = config_hash(task, {**server, "served_model": "model-A"})
    assert a != config_hash(task, {**server, "served_model": "model-B"})
    assert a == config_hash(task, {**server, "served_model": "model-A", "device": "remote"})
    # a backend without a served model hashes as before the field counted (old runs still resume)
    mock = {"name": "mock", "backend": "mock", "precision": None, "weights_sha256": None}
    assert config_hash(task, mock) == config_hash(task, {**mock, "served_model": None})
    import hashlib
    assert config_hash(task, mock) == hashlib.sha256(json.dumps(
        {"task": task.describe(), "model": mock}, sort_keys=True, default=str).encode()).hexdigest()[:16]


def test_a_non_mean_primary_metric_gets_the_clustered_interval_clipped_to_0_1():
    """A primary metric that is not the mean of the scores (OCRBench v2's mean of per-type means) goes
    to bootstrap_stat_ci, corrected for the shared videos and, being an accuracy, clipped to [0, 1]."""
    from evalsuite.runner import summarize
    from evalsuite.stats import bootstrap_stat_ci
    from evalsuite.task import Task
    from evalsuite.types import Sample, SampleResult

    class Macro(Task):
        name = "macro"

        def aggregate(self, results):
            per: dict[str, list[float]] = {}
            for r in results:
                if r.error is None and r.score is not None:
                    per.setdefault(r.metadata["category"], []).append(float(r.score))
            return {"accuracy": sum(sum(v) / len(v) for v in per.values()) / len(per) if per else float("nan")}

    # 6 videos x 4 questions, types a (3 of them) and b; wrong: two questions of video 2, one of video 5.
    wrong = {8, 9, 21}
    meta = [{"category": "a" if i % 4 else "b", "cluster": f"video{i // 4}"} for i in range(24)]
    samples = [Sample(id=f"s{i}", messages=[], target="x", metadata=m) for i, m in enumerate(meta)]
    results = [SampleResult(id=f"s{i}", task="macro", target="x", prediction="", score=0.0 if i in wrong else 1.0,
                            metadata=m) for i, m in enumerate(meta)]
    task = Macro()
    entry = summarize(task, samples, results, chash="x", wall_s=1.0, complete=True)
    value = entry["metrics"]["accuracy"]
    assert value == pytest.approx((16 / 18 + 5 / 6) / 2)  # not the mean of the scores, 21/24
    stat = lambda rows: task.aggregate(rows)["accuracy"]  # noqa: E731
    clusters = [m["cluster"] for m in meta]
    lo, hi = entry["ci95"]["accuracy"]
    assert (lo, hi) == bootstrap_stat_ci(results, stat, clusters, n_boot=1000, bounds=(0.0, 1.0))
    assert bootstrap_stat_ci(results, stat, clusters, n_boot=1000)[1] > 1.0 == hi  # widened past 1 unclipped
    assert lo < value


def test_an_openai_run_from_before_the_served_model_counted_still_resumes(toy, tmp_path):
    from evalsuite.runner import _check_resumable, config_hash, make_task, stamp_path

    task = make_task("toy")
    desc = {"name": "openai:http://127.0.0.1:8000/v1", "backend": "openai", "precision": None,
            "weights_sha256": None, "served_model": "model-A", "device": "remote"}
    old = config_hash(task, desc, with_served_model=False)  # as written then
    stamp_path(tmp_path, "toy").parent.mkdir(parents=True)
    stamp_path(tmp_path, "toy").write_text(json.dumps({"config_hash": old, "seed": 0}))
    now = {"toy": config_hash(task, desc)}
    assert now["toy"] != old
    prior = {"model": desc, "tasks": {"toy": {"config_hash": old}}}
    _check_resumable(tmp_path, prior, [task], now, 0, desc)  # same served model: resumes
    with pytest.raises(RunError, match="different task/model config"):  # another model behind the URL
        b = {**desc, "served_model": "model-B"}
        _check_resumable(tmp_path, prior, [task], {"toy": config_hash(task, b)}, 0, b)


def test_a_grounding_task_with_failures_has_an_interval_around_right_over_total():
    from evalsuite.runner import summarize
    from evalsuite.stats import mean_ci
    from evalsuite.tasks.official.screenspot import ScreenSpot
    from evalsuite.types import Sample, SampleResult

    task = ScreenSpot()

    def res(i: int, score: float | None) -> SampleResult:
        return SampleResult(id=f"s{i}", task="screenspot", target=[0, 0, 1, 1], prediction=None if score is None else "(1, 1)",
                            score=score, error="image file not found" if score is None else None,
                            metadata={"cluster": f"c{i}", "ui_type": "icon", "platform_ui": "web/icon"})

    samples = [Sample(id=f"s{i}", messages=[], target=[0, 0, 1, 1]) for i in range(100)]
    wrong = [res(i, 0.0) for i in range(10)] + [res(i, None) for i in range(10, 100)]
    entry = summarize(task, samples, wrong, chash="x", wall_s=1.0, complete=True)
    assert entry["metrics"]["accuracy"] == 0.0
    assert entry["ci95"]["accuracy"] == pytest.approx(mean_ci([0.0] * 100, [f"c{i}" for i in range(100)], n_boot=1000))
    assert entry["ci95"]["accuracy"][1] < 0.04  # over the 100 samples, not the 10 scored ([0, 0.278])
    failed = [res(i, None) for i in range(100)]
    entry = summarize(task, samples, failed, chash="x", wall_s=1.0, complete=True)
    assert entry["metrics"]["accuracy"] == 0.0 and entry["ci95"]["accuracy"] is not None


def test_the_runs_batch_size_is_recorded_whatever_the_backend(toy, tmp_path):
    """The gate compares speed only between runs of the same batch size; only the reference backend
    recorded one (an openai: client sends --batch-size requests at once, and nothing said so)."""
    preds = _replay_file(tmp_path)
    out = tmp_path / "run"
    run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=out, quiet=True, report=False, batch_size=3))
    assert json.loads((out / "results.json").read_text())["environment"]["batch_size"] == 3


def test_a_refused_resume_after_another_task_ran_writes_what_ran(toy, tmp_path):
    """toy resumed from 5 to 10 samples, then toy2 was refused (its file holds 12): the old results.json
    (toy at 5, complete) was put back beside a samples file of 10. Now results.json holds what ran
    (toy at 10) and says failed; with nothing run first, the old one stays (the test above)."""
    import toytask
    from evalsuite.registry import TASKS

    if "toy2" not in TASKS:
        @TASKS.register("toy2")
        class Toy2(toytask.ToyTask):
            name = "toy2"

    preds = _replay_file(tmp_path)
    out = tmp_path / "run"
    kw = dict(model=f"replay:{preds}", out=out, quiet=True, report=False, max_error_rate=1.0)
    run(RunConfig(tasks=["toy", "toy2"], limit=5, **kw))
    run(RunConfig(tasks=["toy2"], limit=12, **kw))
    with pytest.raises(RunError, match=r"holds 2 sample\(s\) of 'toy2' outside this run's 10"):
        run(RunConfig(tasks=["toy", "toy2"], limit=10, **kw))
    doc = json.loads((out / "results.json").read_text())
    assert doc["status"] == "failed" and doc["tasks"]["toy"]["n_samples"] == 10
    assert sum(1 for _ in open(out / "samples" / "toy.jsonl")) == 10


def test_a_folder_run_at_two_batch_sizes_records_none(toy, tmp_path):
    """Resumed at --batch-size 1 after 10 samples at 64, the run recorded 1: the gate then compared
    its speed as a batch-1 run's."""
    preds = _replay_file(tmp_path)
    out = tmp_path / "run"
    kw = dict(model=f"replay:{preds}", tasks=["toy"], out=out, quiet=True, report=False)
    run(RunConfig(limit=10, batch_size=64, **kw))
    assert json.loads((out / "results.json").read_text())["environment"]["batch_size"] == 64
    run(RunConfig(limit=10, batch_size=64, **kw))  # the same again: still 64
    assert json.loads((out / "results.json").read_text())["environment"]["batch_size"] == 64
    run(RunConfig(limit=12, batch_size=1, **kw))
    assert json.loads((out / "results.json").read_text())["environment"]["batch_size"] is None
