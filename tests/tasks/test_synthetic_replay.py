"""The four synthetic tasks end to end through the runner with the replay backend.

Replaying each sample's reference answer must score 1.0 on every task (so the answer formats a
model is asked for really are what the scorers accept), and a replay of wrong answers must score 0.
"""

import json

import pytest

from evalsuite.registry import TASKS
from evalsuite.results import load_run
from evalsuite.runner import RunConfig, run

N = 12


def reference_answer(task: str, sample) -> str:
    if task == "gui":
        return sample.target["answer"]
    return str(sample.target)


def wrong_answer(task: str, sample) -> str:
    if task == "gui":
        w, h = sample.target["size"]
        x1, y1, x2, y2 = sample.target["box"]
        # the point diagonally opposite the box's centre, in 0-1000 units: outside the box
        cx, cy = 1000 - round(500 * (x1 + x2) / w), 1000 - round(500 * (y1 + y2) / h)
        return f"({cx}, {cy})"
    if sample.choices:
        letters = "ABCD"
        if task == "videoqa":
            return letters[(letters.index(sample.target) + 1) % len(sample.choices)]
        return next(c for c in sample.choices if c != sample.target)
    return "zzzz"


@pytest.mark.parametrize("task", ["docqa", "videoqa", "audioqa", "gui"])
def test_replayed_reference_answers_score_one_and_wrong_ones_zero(task, tmp_path, monkeypatch):
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))
    samples = list(TASKS.get(task)(n=N).samples())
    for name, answer, expected in (("right", reference_answer, 1.0), ("wrong", wrong_answer, 0.0)):
        preds = tmp_path / f"{name}.jsonl"
        preds.write_text("".join(json.dumps({"id": s.id, "prediction": answer(task, s)}) + "\n" for s in samples))
        out = tmp_path / name
        outcome = run(RunConfig(model=f"replay:{preds}", tasks=[task], out=out, quiet=True, report=False,
                                task_args={task: {"n": str(N)}}))
        t = outcome.results["tasks"][task]
        print(task, name, t["metrics"])
        assert t["n_samples"] == N and t["n_errors"] == 0
        assert t["metrics"]["accuracy"] == expected
        results, rows = load_run(out)
        assert len(rows[task]) == N
