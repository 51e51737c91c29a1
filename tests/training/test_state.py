"""The resumable state (train_state.pt): read with weights_only=True, a file that is not one is one line."""

from __future__ import annotations

import os
import pickle
import re

import numpy as np
import pytest
import torch

from evalsuite.model import weights
from evalsuite.training import cli, loop

SMALL_POOLS = {"docqa": 8, "gui": 4, "videoqa": 6, "audioqa": 6, "docqa-wide": 12, "gui-wide": 6}  # as conftest's pools
COMMON = dict(stages=("text",), steps={"text": 2}, batch=1, eval_n=0, save_every=100, pool_sizes=SMALL_POOLS)
TAIL = "; expected the train_state.pt that python -m evalsuite.training writes (use another --out, or remove the file to start over)"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A run stopped after its first of two steps: (its folder, the bytes of its state)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("part")
    loop.train(loop.TrainArgs(out=str(out), **COMMON), progress=False, stop_after=1)
    return out, (out / loop.STATE_FILE).read_bytes()


def with_state(tmp_path, content: bytes):
    (tmp_path / loop.STATE_FILE).write_bytes(content)
    return tmp_path


def test_the_state_the_loop_writes_loads_safely_and_resumes_to_the_uninterrupted_run(saved, tmp_path):
    out, content = saved
    plain = torch.load(out / loop.STATE_FILE, weights_only=True)  # torch's own allowlist: no extra globals needed
    assert (plain["stage"], plain["step"]) == (0, 1)
    (tmp_path / "part").mkdir()
    state = loop.load_state(with_state(tmp_path / "part", content), loop.TrainArgs(out=str(tmp_path / "part"), **COMMON))
    assert (state["stage"], state["step"], state["aux"]) == (0, 1, None)
    assert state["model"].keys() == plain["model"].keys()
    assert all(torch.equal(state["model"][k], plain["model"][k]) for k in plain["model"])
    loop.train(loop.TrainArgs(out=str(tmp_path / "part"), **COMMON), progress=False)
    loop.train(loop.TrainArgs(out=str(tmp_path / "full"), **COMMON), progress=False)
    assert weights.weights_sha256(tmp_path / "part") == weights.weights_sha256(tmp_path / "full")


def damaged(saved):
    content = saved[1]
    return {"truncated": content[: len(content) // 2], "text": b"hello, not a state\n", "empty": b""}


def foreign(obj) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.mark.parametrize("kind,why", [
    ("truncated", r"it does not read as one, damaged or truncated \(RuntimeError: [^\n]+\)"),
    ("text", r"it does not read as one, damaged or truncated \(\w+: [^\n]+\)"),
    ("empty", r"it is empty"),
    ("list", r"it holds a list, not a training state"),
    ("args only", re.escape("it lacks ['stage', 'step', 'model', 'opt', 'history']")),
    ("negative step", re.escape("its ['step'] are not what a training state holds")),
    ("stage past its stages", re.escape("its stage 3 is past the 1 stage(s) it lists")),
])
def test_a_damaged_or_foreign_state_is_one_line_naming_the_file(kind, why, saved, tmp_path, capsys):
    contents = dict(damaged(saved), **{"list": foreign([1, 2, 3]), "args only": foreign({"args": {}}),
                                       "negative step": foreign({"stage": 0, "step": -1, "model": {}, "opt": {},
                                                                 "args": {}, "history": {}}),
                                       "stage past its stages": foreign({"stage": 3, "step": 0, "model": {}, "opt": {},
                                                                         "args": {"stages": ["text"]}, "history": {}})})
    out = with_state(tmp_path, contents[kind])
    path = out / loop.STATE_FILE
    with pytest.raises(SystemExit) as e:
        loop.load_state(out, loop.TrainArgs(out=str(out), **COMMON))
    assert re.fullmatch(re.escape(f"{path}: ") + why + re.escape(TAIL), str(e.value.code))
    # the CLI: exit code 2, that line, nothing trained
    assert cli.main(["--out", str(out), "--eval-n", "0", "--stages", "text", "--steps", "text=2", "--batch", "1"]) == 2
    assert capsys.readouterr().err == f"error: {e.value.code}\n"
    assert sorted(p.name for p in out.iterdir()) == [loop.STATE_FILE]


class Payload:
    """A pickle that, loaded unsafely, makes a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_a_state_with_a_code_payload_is_refused_without_running_it(how, tmp_path):
    marker = tmp_path / "ran"
    obj = {"stage": 0, "step": 1, "model": {}, "opt": {}, "args": {}, "history": {}, "aux": Payload(marker)}
    out = with_state(tmp_path, foreign(obj) if how == "torch.save" else pickle.dumps(obj))
    with pytest.raises(SystemExit) as e:
        loop.load_state(out, loop.TrainArgs(out=str(out), **COMMON))
    named = f" ({os.system.__module__}.system)" if how == "torch.save" else ""
    assert str(e.value.code) == (f"{out / loop.STATE_FILE}: it holds objects{named} that a safe load refuses to make, "
                                 "so it was not loaded (a state of an older format, or not a training state)" + TAIL)
    assert not marker.exists()


def test_numpy_metrics_in_an_older_state_load_as_plain_numbers_but_arrays_are_refused(saved, tmp_path):
    state = torch.load(saved[0] / loop.STATE_FILE, weights_only=True)
    state["history"]["evals"] = [{"stage": "text", "table": {"docqa": {"primary": "accuracy",
                                                                      "accuracy": np.float64(0.25), "n": np.int64(3)}}}]
    (tmp_path / "old").mkdir()
    torch.save(state, tmp_path / "old" / loop.STATE_FILE)
    loaded = loop.load_state(tmp_path / "old", loop.TrainArgs(out=str(tmp_path / "old"), **COMMON))
    table = loaded["history"]["evals"][0]["table"]["docqa"]
    assert table == {"primary": "accuracy", "accuracy": 0.25, "n": 3}
    assert type(table["accuracy"]) is float and type(table["n"]) is int

    state["history"]["x"] = np.zeros(3)
    torch.save(state, tmp_path / "old" / loop.STATE_FILE)
    with pytest.raises(SystemExit, match=r"holds objects \(numpy\.\S+, .*a state of an older format"):
        loop.load_state(tmp_path / "old", loop.TrainArgs(out=str(tmp_path / "old"), **COMMON))


def test_a_state_whose_weights_do_not_fit_the_model_is_one_line(saved, tmp_path):
    state = torch.load(saved[0] / loop.STATE_FILE, weights_only=True)
    state["model"] = {"nothing": torch.zeros(1)}
    torch.save(state, tmp_path / loop.STATE_FILE)
    with pytest.raises(SystemExit) as e:
        loop.train(loop.TrainArgs(out=str(tmp_path), **COMMON), progress=False)
    assert str(e.value.code).startswith(f"{tmp_path / loop.STATE_FILE}: its weights do not fit this run's model "
                                        "(RuntimeError: Error(s) in loading state_dict")
    assert str(e.value.code).endswith(TAIL) and "\n" not in str(e.value.code)


def test_a_state_path_that_is_a_folder_is_one_line(tmp_path):
    (tmp_path / loop.STATE_FILE).mkdir()
    with pytest.raises(SystemExit) as e:
        loop.load_state(tmp_path, loop.TrainArgs(out=str(tmp_path), **COMMON))
    assert str(e.value.code) == (f"{tmp_path / loop.STATE_FILE} is not a file; expected the train_state.pt that "
                                 "python -m evalsuite.training writes (use another --out, or remove the file to start over)")
