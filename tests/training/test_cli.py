"""``python -m evalsuite.training``: flags."""

from __future__ import annotations

import pytest

from evalsuite.training import cli
from evalsuite.training import curriculum as C1


def test_cli_parses_steps_and_rejects_unknown_stage():
    args, stop = cli.parse(["--steps", "text=5,image=7", "--steps-scale", "2", "--stop-after", "3", "--eval-n", "0"])
    assert args.steps["text"] == 10 and args.steps["image"] == 14 and stop == 3
    with pytest.raises(SystemExit):
        cli.parse(["--steps", "pictures=5"])


def fake_checkpoint(folder):
    """A folder with the files --init asks for (parse checks they are there; the loop reads them)."""
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "history.json"):
        (folder / name).write_text("{}")
    return str(folder)


def test_cli_v2_curriculum_runs_the_video_stages_after_the_committed_ones(tmp_path):
    from evalsuite.training import curriculum as C

    ckpt = fake_checkpoint(tmp_path / "ckpt")
    args, _ = cli.parse(["--curriculum", "v2", "--init", ckpt, "--time-pos", "16", "--steps", "video-dense=5",
                         "--batch-video", "--workers", "3"])
    assert args.stages == C.STAGE_NAMES + ("video-dense", "video-open", "video-align", "settle", "gui-loc", "gui-loc-more", "tokens-ctc", "read-tokens")
    assert args.steps["video-dense"] == 5 and args.steps["video-align"] == C.stage_named("video-align").steps
    assert (args.curriculum, args.init, args.time_pos, args.device) == ("v2", ckpt, 16, "auto")
    assert args.batch_video and args.workers == 3 and "workers" not in args.fingerprint()
    assert cli.parse([])[0].stages == C.STAGE_NAMES  # v1 by default: the committed run's stages
    with pytest.raises(SystemExit):
        cli.parse(["--time-pos", "16"])  # a time index only for a model started from --init
    with pytest.raises(SystemExit):
        cli.parse(["--steps", "video-dense=5"])  # not a v1 stage


def test_cli_loc_bins(tmp_path):
    args, _ = cli.parse(["--curriculum", "v2", "--init", fake_checkpoint(tmp_path / "ckpt"), "--loc-bins", "40"])
    assert args.loc_bins == 40 and args.fingerprint()["loc_bins"] == 40
    assert cli.parse([])[0].loc_bins == 0
    with pytest.raises(SystemExit):
        cli.parse(["--loc-bins", "101"])


STEPS = ", ".join(repr(s) for s in C1.STAGE_NAMES)
BAD_FLAGS = [
    (["--preset", "bogus"], "--preset expects one of ['nano-omni-30b-a3b', 'tiny'], got 'bogus'"),
    (["--device", "bogus"], "--device expects auto, cpu, cuda or cuda:N, got 'bogus'"),
    (["--batch", "0"], "--batch expects a number of examples per step >= 1, got 0"),
    (["--save-every", "0"], "--save-every expects a number of steps >= 1, got 0"),
    (["--lr", "-1"], "--lr expects a finite learning rate > 0, got -1.0"),
    (["--lr", "nan"], "--lr expects a finite learning rate > 0, got nan"),
    (["--threads", "-2"], "--threads expects a number of threads >= 0 (0: torch's default), got -2"),
    (["--steps-scale", "nan"], "--steps-scale expects a finite factor > 0, got nan"),
    (["--steps-scale", "inf"], "--steps-scale expects a finite factor > 0, got inf"),
    (["--steps-scale", "0"], "--steps-scale expects a finite factor > 0, got 0.0"),
    (["--steps-scale", "1e308"],
     "--steps-scale expects a factor that leaves every stage a finite number of steps, got 1e+308"),
    (["--init", "/nonexistent/run"], "--init /nonexistent/run: expected a finished run's checkpoint folder "
                                     "(config.json, model.safetensors, history.json); it does not exist"),
    (["--stop-after", "0"], "--stop-after expects a number of steps >= 1, got 0"),
    (["--stop-after", "-2"], "--stop-after expects a number of steps >= 1, got -2"),
    (["--steps", "text=0"], f"--steps expects stage=N pairs with N >= 1 and stages from [{STEPS}], got 'text=0'"),
    (["--stages", "text,bogus"], f"--stages expects stages of the v1 curriculum from [{STEPS}], got ['bogus']"),
    (["--seed", "-1"], "--seed expects a whole number in [0, 2**32), got -1"),
    (["--eval-n", "-1"], "--eval-n expects a number of samples per task >= 0 (0: no evaluation), got -1"),
    (["--workers", "-1"], "--workers expects a number of processes >= 0 (0: in the loop's process), got -1"),
    (["--time-pos", "16"], "--time-pos gives a model started from --init a time index; a fresh model takes its preset's"),
    (["--batch", "x"], "argument --batch: invalid int value: 'x'"),
    (["--stages", "text,text"], "--stages expects each stage at most once, got ['text'] more than once"),
    (["--preset", "nano-omni-30b-a3b", "--device", "cpu"],
     "--preset nano-omni-30b-a3b: the full-size configuration is for accounting (python -m evalsuite.model.card "
     "nano-omni-30b-a3b); training it needs hundreds of GB for weights and optimizer state, far more than a CPU "
     "run has; expected tiny"),
]


@pytest.fixture
def no_training(monkeypatch):
    """main() must refuse before any work: training would fail the test."""
    def train(*a, **kw):
        raise AssertionError("trained despite a bad flag")
    monkeypatch.setattr(cli, "train", train)


@pytest.mark.parametrize("flags,message", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_cli_bad_flag_is_one_line_and_exit_2_before_any_work(flags, message, tmp_path, capsys, no_training):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        cli.main(["--out", str(out), "--eval-n", "0", "--stages", "text", "--steps", "text=3", *flags])
    assert e.value.code == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not out.exists()


def test_cli_out_that_is_a_file_or_under_one_is_refused_before_training(tmp_path, capsys, no_training):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out, message in ((afile, f"--out {afile} is a file; expected a folder to write the checkpoint and its state into"),
                         (afile / "sub", f"--out {afile / 'sub'}: {afile} is a file; expected a folder to write the "
                                         "checkpoint and its state into")):
        with pytest.raises(SystemExit) as e:
            cli.main(["--out", str(out), "--eval-n", "0", "--stages", "text", "--steps", "text=3", "--stop-after", "1"])
        assert e.value.code == 2
        assert capsys.readouterr().err == f"error: {message}\n"
    assert afile.read_text() == "x"


def test_cli_cuda_without_a_cuda_device_is_refused(monkeypatch, capsys, no_training):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as e:
        cli.parse(["--device", "cuda:1"])
    assert e.value.code == 2
    assert capsys.readouterr().err == "error: --device cuda:1: there is no CUDA device here; expected auto or cpu\n"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert cli.parse(["--device", "cuda:0"])[0].device == "cuda:0"
    with pytest.raises(SystemExit):
        cli.parse(["--device", "cuda:1"])
    assert capsys.readouterr().err == ("error: --device cuda:1: there are 1 CUDA device(s); expected cuda:N with N < 1\n")


def test_cli_steps_scale_keeps_at_least_one_step_and_explicit_steps_are_kept(tmp_path):
    args, stop = cli.parse(["--steps", "text=1", "--steps-scale", "0.01", "--stop-after", "1"])
    assert args.steps["text"] == 1 and args.steps["image"] == 30 and stop == 1
    assert cli.parse(["--out", str(tmp_path)])[0].out == str(tmp_path)  # an existing folder is fine


def test_cli_init_folder_whose_files_do_not_read_is_one_line(tmp_path, capsys):
    ckpt = fake_checkpoint(tmp_path / "ckpt")  # the files are there, but "{}" is no checkpoint
    out = tmp_path / "run"
    assert cli.main(["--curriculum", "v2", "--init", ckpt, "--out", str(out), "--eval-n", "0"]) == 2
    assert capsys.readouterr().err == (f"error: --init {ckpt}: expected a finished run's checkpoint folder (config.json, "
                                       "model.safetensors, history.json) that reads (ValueError: config.json: expected "
                                       "format 'evalsuite-omni-v1', got None)\n")
    assert not out.exists()


SMALL_POOLS = {"docqa": 8, "gui": 4, "videoqa": 6, "audioqa": 6, "docqa-wide": 12, "gui-wide": 6}  # as conftest's pools


@pytest.fixture
def tiny_runs(monkeypatch):
    """cli.main's runs on small train pools (parse cannot set them)."""
    from evalsuite.training import loop

    real = cli.train
    monkeypatch.setattr(cli, "train", lambda args, **kw: real(
        __import__("dataclasses").replace(args, pool_sizes=SMALL_POOLS), progress=False, **kw))
    return loop


def test_cli_refusals_of_the_loop_are_one_line_and_exit_2(tmp_path, capsys, tiny_runs):
    loop = tiny_runs
    a = tmp_path / "a"
    flags = ["--stages", "text", "--steps", "text=1", "--batch", "1", "--eval-n", "0"]
    assert cli.main(["--out", str(a), *flags]) == 0
    capsys.readouterr()
    assert cli.main(["--init", str(a), "--out", str(tmp_path / "b"), *flags]) == 2
    assert capsys.readouterr().err == (f"error: nothing to run: {a} already ran all 1 stages; append stages (e.g. "
                                       "--curriculum v2 --stages text,video-dense)\n")
    (a / loop.STATE_FILE).unlink()
    assert cli.main(["--out", str(a), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {a} holds a checkpoint") and err.count("\n") == 1
    assert cli.main(["--out", str(a), "--overwrite", *flags]) == 0


def test_cli_ctrl_c_is_one_line_and_exit_130(tmp_path, capsys, monkeypatch, tiny_runs):
    loop = tiny_runs
    monkeypatch.setattr(loop, "batch_loss", lambda *a, **kw: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert cli.main(["--out", str(tmp_path), "--stages", "text", "--steps", "text=3", "--batch", "1",
                     "--eval-n", "0"]) == 130
    assert capsys.readouterr().err == (f"interrupted before this run saved anything in {tmp_path}; run the same "
                                       "command again to start (or resume) it\n")


def test_cli_without_espeak_is_one_line_and_exit_2_before_any_work(tmp_path, capsys, monkeypatch):
    from evalsuite.tasks.gen import audio

    monkeypatch.setattr(audio, "espeak_available", lambda: False)
    out = tmp_path / "run"
    assert cli.main(["--out", str(out), "--stages", "text", "--steps", "text=1", "--eval-n", "0"]) == 2
    assert capsys.readouterr().err == ("error: espeak-ng is not installed; stage(s) ['text'] need its speech clips "
                                       "(apt-get install espeak-ng, or make sysdeps)\n")
    assert not out.exists()


def test_make_train_passes_bench_and_overwrite_only_to_the_in_place_remake():
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("make") is None:
        pytest.skip("no make here")
    root = Path(__file__).resolve().parents[2]

    def line(*extra):
        out = subprocess.run(["make", "-n", "train", *extra], cwd=root, capture_output=True, text=True).stdout
        return next(x for x in out.splitlines() if "-m evalsuite.training" in x)
    assert "--bench" not in line() and "--overwrite" not in line()
    assert "--bench" not in line("ARGS=--stop-after 500")
    remake = line("TRAIN_OUT=evalsuite/model/checkpoints/tiny")
    assert "--out evalsuite/model/checkpoints/tiny --overwrite --bench" in remake
    for same in ("evalsuite/model/checkpoints/tiny/", "./evalsuite/model/checkpoints/tiny",
                 str(root / "evalsuite/model/checkpoints/tiny")):  # the same folder, however written
        assert line(f"TRAIN_OUT={same}").rstrip().endswith("--overwrite --bench"), same


def documented_commands():
    """The `python -m evalsuite.training` commands in README.md's and docs/training.md's code blocks."""
    import re
    import shlex
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    stages = ",".join(C1.STAGE_NAMES)
    for name in ("README.md", "docs/training.md"):
        for block in re.findall(r"```bash\n(.*?)```", (root / name).read_text(), flags=re.S):
            # line continuations joined; the README's stage list from Python, as the shell would
            text = re.sub(r"\$\(python -c '[^']*'\)", stages, block.replace("\\\n", " "))
            for cmd in text.splitlines():
                cmd = cmd.split("#")[0].strip()
                if cmd.startswith("python -m evalsuite.training "):
                    yield name, shlex.split(cmd)[3:]


@pytest.mark.parametrize("doc,argv", list(documented_commands()), ids=lambda x: x if isinstance(x, str) else " ".join(x))
def test_documented_training_commands_parse_and_give_location_stages_their_bins(doc, argv, monkeypatch):
    """A documented command parses, and a stage it runs that answers with location tokens has them
    (the model's own, or --loc-bins): else it fails minutes in."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)  # the commands name the committed checkpoint from the repository's root
    args, _ = cli.parse(argv)
    done, bins = [], args.loc_bins
    if args.init:
        init = root / args.init
        done = json.loads((init / "history.json").read_text())["done"]
        bins = bins or json.loads((init / "config.json").read_text()).get("loc_bins", 0)
    todo = [s for s in args.stages[len(done):] if C1.stage_named(s).locations]
    assert not todo or bins, f"{doc}: {' '.join(argv)} runs {todo} without --loc-bins"
