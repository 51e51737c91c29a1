"""replay:<predictions.jsonl>: lookup by (task, id) and by id, and one clear error for an id given twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evalsuite.backends.replay import ReplayBackend, ReplayFileError
from evalsuite.types import Request


def _write(tmp_path, rows):
    path = tmp_path / "preds.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _ask(backend, task, sid):
    return backend.generate([Request(sample_id=sid, messages=[], task=task)])[0].text


def test_lines_with_task_are_keyed_by_task_and_id(tmp_path):
    path = _write(tmp_path, [
        {"task": "docqa", "id": "eval-default-00000-q0", "prediction": "42"},
        {"task": "gui", "id": "eval-default-00000-q0", "prediction": "click(3, 4)"},
        {"id": "only-here", "prediction": None},
    ])
    b = ReplayBackend(str(path))
    assert _ask(b, "docqa", "eval-default-00000-q0") == "42"
    assert _ask(b, "gui", "eval-default-00000-q0") == "click(3, 4)"
    assert _ask(b, "docqa", "only-here") == ""  # lines without a task answer any task
    with pytest.raises(KeyError, match="no saved prediction for sample id 'missing'"):
        _ask(b, "docqa", "missing")


def test_id_given_twice_without_task_names_both_lines(tmp_path):
    path = _write(tmp_path, [
        {"id": "eval-default-00000-q0", "prediction": "42"},
        {"id": "eval-default-00001-q0", "prediction": "7"},
        {"id": "eval-default-00000-q0", "prediction": "click(3, 4)"},
    ])
    with pytest.raises(ReplayFileError) as e:
        ReplayBackend(str(path))
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}:3: sample id 'eval-default-00000-q0' is also given on {path}:1;")
    assert "needs a 'task' field on each line" in msg


def test_id_given_twice_for_the_same_task_names_both_lines(tmp_path):
    path = _write(tmp_path, [
        {"task": "docqa", "id": "a", "prediction": "1"},
        {"task": "gui", "id": "a", "prediction": "2"},
        {"task": "docqa", "id": "a", "prediction": "3"},
    ])
    with pytest.raises(ReplayFileError, match=rf"^{path}:3: sample id 'a' of task 'docqa' is also given on {path}:1; "):
        ReplayBackend(str(path))


@pytest.mark.parametrize("task_first", [True, False])
def test_id_given_with_and_without_task_is_refused(tmp_path, task_first):
    rows = [{"task": "docqa", "id": "a", "prediction": "1"}, {"id": "a", "prediction": "2"}]
    path = _write(tmp_path, rows if task_first else rows[::-1])
    with_task, without = (1, 2) if task_first else (2, 1)
    with pytest.raises(ReplayFileError) as e:
        ReplayBackend(str(path))
    assert str(e.value) == (
        f"{path}:2: sample id 'a' is given for task 'docqa' on {path}:{with_task} and without a task on "
        f"{path}:{without}; expected either a 'task' field on every line of that id or one line without it"
    )


def test_cli_refuses_a_two_task_file_without_task_fields_in_one_line(toy, tmp_path):
    root = Path(__file__).resolve().parents[2]
    path = _write(tmp_path, [{"id": "toy-000", "prediction": "red"}, {"id": "toy-000", "prediction": "A"}])
    env = {**os.environ, "PYTHONPATH": f"{root / 'tests'}{os.pathsep}{root}", "TOY_DIR": str(toy)}
    code = "import sys, toytask; from evalsuite.cli import main; sys.exit(main(sys.argv[1:]))"
    p = subprocess.run([sys.executable, "-c", code, "run", "--model", f"replay:{path}", "--tasks", "toy",
                        "--out", str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [p.stderr.strip()]
    assert f"{path}:2: sample id 'toy-000' is also given on {path}:1" in p.stderr


def test_a_file_that_is_not_utf8_names_its_line(tmp_path):
    path = tmp_path / "preds.jsonl"
    path.write_bytes(b'{"id": "a", "prediction": "x"}\n{"id": "b", "prediction": "caf\xe9"}\n')  # latin-1
    with pytest.raises(ReplayFileError, match=rf"^{path}:2: not UTF-8 text \(expected JSON lines with 'id' and"):
        ReplayBackend(str(path))


@pytest.mark.parametrize("content, message", [
    (b'{"id": null, "prediction": "x"}\n', ":1: 'id' must be a non-empty string or an integer, got null"),
    (b'{"id": "a", "prediction": {"x": 1}}\n', ":1: 'prediction' must be a string (or null for none), got {\"x\": 1}"),
    (b'{"id": "a", "prediction": true}\n', ":1: 'prediction' must be a string (or null for none), got true"),
    (b"\n\n", " holds no predictions"),
])
def test_values_that_are_not_ids_or_predictions_are_refused(tmp_path, content, message):
    path = tmp_path / "preds.jsonl"
    path.write_bytes(content)
    with pytest.raises(ReplayFileError) as e:
        ReplayBackend(str(path))
    assert message in str(e.value)


def test_a_utf8_bom_is_not_part_of_the_first_line(tmp_path):
    path = tmp_path / "preds.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "a", "prediction": "x"}\n{"id": 7, "prediction": null}\n')
    b = ReplayBackend(str(path))
    assert b.by_id == {"a": "x", "7": ""}


def test_lines_without_a_task_answer_one_task_only(tmp_path):
    """Tasks share ids: a task-less file used for two tasks gave the second the first one's answers."""
    from evalsuite.types import Request, user

    b = ReplayBackend(str(_write(tmp_path, [{"id": "eval-00000", "prediction": "red"}])))
    ask = lambda task: Request("eval-00000", [user("q")], task=task)  # noqa: E731
    assert b.lookup(ask("docqa")) == "red" and b.lookup(ask("docqa")) == "red"
    with pytest.raises(KeyError, match=r"its lines without a 'task' field answer one task \(docqa\); task gui "
                                        r"shares its sample ids"):
        b.lookup(ask("gui"))
