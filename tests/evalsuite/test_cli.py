import json
import os
import subprocess
import sys
from pathlib import Path

from evalsuite.cli import parse_task_args

ROOT = Path(__file__).resolve().parents[2]



def _run(args, tmp_path, toy_dir):
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{ROOT}", "TOY_DIR": str(toy_dir)}
    code = "import sys, toytask; from evalsuite.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)  # a run without --out writes results/runs/<model> under tmp_path


def test_unknown_names_and_bad_task_args(toy, tmp_path):
    p = _run(["run", "--model", "mokc", "--tasks", "toy"], tmp_path, toy)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [p.stderr.strip()]  # one line
    assert "unknown model 'mokc'; did you mean 'mock'" in p.stderr

    p = _run(["run", "--model", "mock", "--tasks", "tyo"], tmp_path, toy)
    assert p.returncode == 2 and "unknown task 'tyo'; did you mean 'toy'" in p.stderr

    p = _run(["run", "--model", "mock", "--tasks", "toy", "--task-arg", "toy.n"], tmp_path, toy)
    assert p.returncode == 2 and "--task-arg expects TASK.KEY=VALUE" in p.stderr

    p = _run(["run", "--model", "mock", "--tasks", "toy", "--task-arg", "toy.n=many"], tmp_path, toy)
    assert p.returncode == 2 and "toy.n expects int" in p.stderr

    p = _run(["run", "--model", "mock", "--tasks", "toy", "--task-arg", "toy.colour=red"], tmp_path, toy)
    assert p.returncode == 2 and "has no argument 'colour'" in p.stderr

    p = _run(["run", "--model", "replay:/nonexistent.jsonl", "--tasks", "toy"], tmp_path, toy)
    assert p.returncode == 2 and "replay file not found" in p.stderr
    assert not (tmp_path / "results").exists()  # refused runs leave no output folder


def test_a_misspelt_task_group_is_suggested(tmp_path, capsys):
    from evalsuite.cli import main

    assert main(["run", "--model", "mock", "--tasks", "acuracy", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown task 'acuracy'; did you mean 'accuracy'? (known: audioqa, docqa, ")
    assert err.endswith("; groups: all, accuracy)\n") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_refused_run_leaves_no_output_folder_and_keeps_an_existing_one(toy, tmp_path):
    out = tmp_path / "deep" / "run"
    p = _run(["run", "--model", "mock", "--tasks", "toy", "--task-arg", "toy.n=many", "--out", str(out)], tmp_path, toy)
    assert p.returncode == 2 and "toy.n expects int" in p.stderr
    assert not (tmp_path / "deep").exists()

    out.mkdir(parents=True)
    p = _run(["run", "--model", "mock", "--tasks", "toy", "--task-arg", "toy.colour=red", "--out", str(out)],
             tmp_path, toy)
    assert p.returncode == 2 and out.is_dir() and list(out.iterdir()) == []


def test_run_prints_summary_and_report_path(toy, tmp_path):
    out = tmp_path / "run"
    p = _run(["run", "--model", "mock", "--tasks", "toy", "--limit", "6", "--out", str(out), "--quiet"], tmp_path, toy)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["task", "metric", "value", "95%", "CI", "n", "errors"]
    assert lines[2].split()[:2] == ["toy", "accuracy"] and lines[2].split()[-2:] == ["6", "0"]
    assert f"report:  {out / 'report.html'}" in p.stdout
    assert json.loads((out / "results.json").read_text())["tasks"]["toy"]["n_samples"] == 6


def test_list_shows_tasks_models_and_groups(toy, tmp_path):
    p = _run(["list"], tmp_path, toy)
    assert p.returncode == 0
    assert "toy" in p.stdout and "mock" in p.stdout and "replay" in p.stdout and "all" in p.stdout


def test_parse_task_args():
    assert parse_task_args(["docqa.n=5", "docqa.split=train", "gui.coords=norm1"]) == {
        "docqa": {"n": "5", "split": "train"}, "gui": {"coords": "norm1"}}


def test_out_that_is_a_file_and_report_of_results_json(toy, tmp_path):
    from evalsuite.cli import main

    out = tmp_path / "run"
    assert main(["run", "--model", "mock", "--tasks", "docqa", "--limit", "2", "--out", str(out), "--quiet"]) == 0
    (out / "report.html").unlink()
    assert main(["report", str(out / "results.json")]) == 0  # the file names its run folder
    assert (out / "report.html").exists()
    assert main(["report", str(out), "--max-samples", "-1"]) == 2  # was: every sample but the last
    afile = tmp_path / "afile"
    afile.write_text("x")
    for argv in (["compare", str(out), str(out)], ["leaderboard", str(out)], ["gate", "--baseline", str(out),
                                                                              "--candidate", str(out)]):
        p = _run([*argv, "--out", str(afile)], tmp_path, toy)
        assert p.returncode == 2, argv
        assert p.stderr.strip() == f"error: --out {afile} is a file; expected a folder to write into"
    # a file on the way to --out: one line naming it (was a misleading "samples/….config.json is not valid JSON")
    p = _run(["run", "--model", "mock", "--tasks", "docqa", "--limit", "1", "--out", str(afile / "sub")], tmp_path, toy)
    assert p.returncode == 2
    assert p.stderr.strip() == f"error: --out {afile / 'sub'}: {afile} is a file; expected a folder to write into"
    p = _run(["report", str(afile)], tmp_path, toy)
    assert p.returncode == 2 and p.stderr.strip() == f"error: report: {afile} is a file; expected a run folder " \
                                                     f"(with results.json and samples/)"


def test_device_cuda_without_cuda_is_refused_for_every_backend(toy, tmp_path):
    import torch

    if torch.cuda.is_available():
        import pytest

        pytest.skip("a CUDA device is present")
    p = _run(["run", "--model", "mock", "--tasks", "toy", "--limit", "2", "--device", "cuda",
              "--out", str(tmp_path / "r")], tmp_path, toy)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        "error: device cuda requested but no CUDA device is available; use --device cpu"]
    assert not (tmp_path / "r").exists()  # nothing recorded a device the run did not have


def test_overwrite_replaces_a_corrupt_results_json(toy, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    for junk in ('{"tasks": {"toy": ', "[1, 2]"):
        (out / "results.json").write_text(junk)
        p = _run(["run", "--model", "mock", "--tasks", "toy", "--limit", "2", "--out", str(out), "--quiet"], tmp_path, toy)
        assert p.returncode == 2 and "pass --overwrite" in p.stderr
        p = _run(["run", "--model", "mock", "--tasks", "toy", "--limit", "2", "--out", str(out), "--quiet",
                  "--overwrite"], tmp_path, toy)
        assert p.returncode == 0, p.stderr
        assert json.loads((out / "results.json").read_text())["tasks"]["toy"]["n_samples"] == 2


def test_a_file_system_error_is_one_line(toy, tmp_path, monkeypatch, capsys):
    import errno

    from evalsuite import cli, runner

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "r" / "results.json"))

    monkeypatch.setattr(runner, "run", full)
    assert cli.main(["run", "--model", "mock", "--tasks", "docqa", "--limit", "1", "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert err == f"error: No space left on device: {tmp_path / 'r' / 'results.json'}\n"


def test_a_schema_error_names_the_file(tmp_path):
    import pytest

    from evalsuite.results import RunFormatError, load_results

    (tmp_path / "results.json").write_text(json.dumps({"schema_version": "1.2"}))
    with pytest.raises(RunFormatError, match=f"^{tmp_path / 'results.json'} does not match schema 1"):
        load_results(tmp_path)


def test_a_results_file_that_is_not_utf8_is_one_error_line(tmp_path, capsys):
    from evalsuite.cli import main

    (tmp_path / "results.json").write_bytes(b'\xff\xfe{"schema_version": "1.2"}')
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'results.json'} is not valid JSON: 'utf-8' codec can't decode")
    assert err.count("\n") == 1
    (tmp_path / "compare.json").write_bytes(b"\xff")
    import pytest

    from evalsuite.results import RunFormatError, load_doc

    with pytest.raises(RunFormatError, match="compare.json is not valid JSON"):
        load_doc(tmp_path, "compare")


def test_device_cuda_is_not_checked_for_a_remote_server():
    import pytest
    import torch

    from evalsuite.backend import BackendConfigError
    from evalsuite.runner import make_backend

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(BackendConfigError) as e:  # port 9 (discard) answers nothing: the URL is the problem
        make_backend("openai:http://127.0.0.1:9/v1", device="cuda")
    assert "CUDA" not in str(e.value)


def test_a_results_file_of_another_major_schema_says_which_evalsuite_wrote_it(tmp_path, capsys):
    """Not the schema's version regex: a 2.x file is from a newer evalsuite, a 0.x one from an older."""
    import json

    from evalsuite.cli import main

    (tmp_path / "results.json").write_text(json.dumps({"schema_version": "2.0", "tasks": {}}))
    assert main(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'results.json'} is results schema 2.0, this evalsuite "
                                       f"reads 1.x (a newer evalsuite wrote it)\n")
    (tmp_path / "results.json").write_text(json.dumps({"schema_version": "0.9", "tasks": {}}))
    assert main(["report", str(tmp_path)]) == 2
    assert "is results schema 0.9, this evalsuite reads 1.x (an older evalsuite wrote it)" in capsys.readouterr().err


def test_make_targets_pass_a_model_url_with_options_as_one_argument(tmp_path):
    # openai:<url>#a=1&b=2 holds '&': unquoted in a recipe, the shell ran the model half of the command in
    # the background and the rest ('--tasks …') as a command of its own
    import shutil

    import pytest

    if shutil.which("make") is None:
        pytest.skip("no make here")
    stub = tmp_path / "argv.py"
    stub.write_text("import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    py = f"{sys.executable} {stub}"
    model = "openai:http://127.0.0.1:8000/v1#model=it's&max_concurrency=4"
    out = "results/runs/openai_http___127.0.0.1_8000_v1#model=it's&max_concurrency=4"

    def argv(target, *extra):
        lines = subprocess.run(["make", "-n", "-o", ".venv/.installed", target, f"PY={py}", f"MODEL={model}", *extra],
                               cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
        line = next(x for x in lines if x.startswith(py))
        got = subprocess.run(["bash", "-c", line], capture_output=True, text=True, check=True).stdout
        return json.loads(got)

    assert argv("eval", "TASKS=docqa", "LIMIT=3", "ARGS=--quiet --seed 1") == [
        "-m", "evalsuite", "run", "--model", model, "--tasks", "docqa", "--limit", "3", "--out", out,
        "--quiet", "--seed", "1"]
    assert argv("serve", "ARGS=--port 9000") == ["-m", "evalsuite", "serve", "--model", model, "--port", "9000"]
    assert argv("report") == ["-m", "evalsuite", "report", out]
    gate = argv("gate")
    assert gate[gate.index("--candidate") + 1] == out
