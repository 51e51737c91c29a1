"""``replay:<predictions.jsonl>``: returns saved predictions by sample id (re-scoring, tests).

Each line is ``{"id": ..., "prediction": ...}``, optionally with ``"task"``. Tasks share ids (every
synthetic task numbers its samples the same way), so a file that holds predictions of more than one
task needs ``"task"`` on its lines: they are keyed by (task, id), lines without it by id alone. An id
given twice for the same task, twice without a task, or once with and once without a task is refused
with the two line numbers, never resolved by keeping one. A sample id with no line errors that sample
(and only that sample). The file's sha256 is recorded as the "weights" hash, so two replays of
different files never resume each other.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from evalsuite.backend import Backend, BackendConfigError
from evalsuite.registry import BACKENDS
from evalsuite.types import Request, Response


class ReplayFileError(BackendConfigError):
    pass


@BACKENDS.register("replay")
class ReplayBackend(Backend):
    """replay:<predictions.jsonl> returns saved predictions by sample id"""

    modalities = frozenset({"text", "image", "video", "audio"})
    backend_name = "replay"

    def __init__(self, arg: str | None = None, **options: Any) -> None:
        super().__init__(arg, **options)
        if not arg:
            raise ReplayFileError("replay needs a file: --model replay:<predictions.jsonl>")
        path = Path(arg)
        if not path.is_file():
            raise ReplayFileError(f"replay file not found: {path} (expected JSON lines with 'id' and 'prediction')")
        raw = path.read_bytes()
        self.sha256 = hashlib.sha256(raw).hexdigest()
        self.by_task: dict[tuple[str, str], str] = {}
        self.by_id: dict[str, str] = {}
        task_line: dict[tuple[str, str], int] = {}
        id_line: dict[str, int] = {}  # lines without a task
        tasks_of_id: dict[str, tuple[str, int]] = {}  # id -> (task, line) of its first line with a task
        try:
            text = raw.decode("utf-8-sig")  # a BOM, as some editors write, is not part of the first line
        except UnicodeDecodeError as e:
            line_no = raw[: e.start].count(b"\n") + 1
            raise ReplayFileError(f"{path}:{line_no}: not UTF-8 text (expected JSON lines with 'id' and "
                                  f"'prediction')") from None
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                sid, pred = str(row["id"]), row["prediction"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ReplayFileError(
                    f"{path}:{n}: expected a JSON object with 'id' and 'prediction', got {line[:80]!r}"
                ) from None
            if isinstance(row["id"], bool) or not isinstance(row["id"], (str, int)) or sid == "":
                raise ReplayFileError(f"{path}:{n}: 'id' must be a non-empty string or an integer, got "
                                      f"{json.dumps(row['id'])}")
            if pred is not None and not isinstance(pred, str):  # {"x": 1} would be replayed as "{'x': 1}"
                raise ReplayFileError(f"{path}:{n}: 'prediction' must be a string (or null for none), got "
                                      f"{json.dumps(pred)[:60]}")
            pred = "" if pred is None else pred
            if "task" in row:
                key = (str(row["task"]), sid)
                if key in task_line:
                    raise ReplayFileError(
                        f"{path}:{n}: sample id {sid!r} of task {key[0]!r} is also given on {path}:{task_line[key]}; "
                        "expected one line per (task, id)"
                    )
                if sid in id_line:
                    raise ReplayFileError(_mixed(path, sid, key[0], n, id_line[sid]))
                task_line[key] = n
                tasks_of_id.setdefault(sid, (key[0], n))
                self.by_task[key] = pred
            else:
                if sid in id_line:
                    raise ReplayFileError(
                        f"{path}:{n}: sample id {sid!r} is also given on {path}:{id_line[sid]}; tasks share ids, "
                        "so a file with more than one task needs a 'task' field on each line"
                    )
                if sid in tasks_of_id:
                    task, m = tasks_of_id[sid]
                    raise ReplayFileError(_mixed(path, sid, task, m, n))
                id_line[sid] = n
                self.by_id[sid] = pred

        if not self.by_task and not self.by_id:
            raise ReplayFileError(f"replay file {path} holds no predictions (expected JSON lines with 'id' and "
                                  f"'prediction')")

    def lookup(self, req: Request) -> str:
        key = (req.task, req.sample_id)
        if key in self.by_task:
            return self.by_task[key]
        if req.sample_id in self.by_id:
            # lines without a task answer one task: tasks share ids, so a second task would be given the
            # first one's predictions under the same ids
            first = self._untasked_task = getattr(self, "_untasked_task", None) or req.task
            if req.task and req.task != first:
                raise KeyError(f"{self.arg}: its lines without a 'task' field answer one task ({first}); task "
                               f"{req.task} shares its sample ids, so give each line a 'task' to replay both")
            return self.by_id[req.sample_id]
        raise KeyError(f"no saved prediction for sample id {req.sample_id!r} in {self.arg}")

    def generate(self, requests: list[Request]) -> list[Response]:
        return [Response(text=self.lookup(r), finish_reason="stop") for r in requests]

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(weights_sha256=self.sha256, engine_version="replay-1")
        return d


def _mixed(path: Path, sid: str, task: str, with_task: int, without_task: int) -> str:
    return (
        f"{path}:{max(with_task, without_task)}: sample id {sid!r} is given for task {task!r} on "
        f"{path}:{with_task} and without a task on {path}:{without_task}; expected either a 'task' field "
        "on every line of that id or one line without it"
    )
