"""Fixtures for the official-adapter tests: tiny media writers, scoring as the runner scores, and an
end-to-end run through the runner with the ``replay:`` backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from evalsuite.task import Task
from media_files import write_mp4, write_png, write_wav
from evalsuite.types import SampleResult


def score_all(task: Task, predictions: dict[str, str]) -> list[SampleResult]:
    """Score every sample as the runner does: errored samples stay errored, the rest get ``score``."""
    out = []
    for s in task.samples():
        r = SampleResult(id=s.id, task=task.name, target=s.target, prediction=None, score=None,
                         metadata=dict(s.metadata), error=s.error)
        if s.error is None:
            pred = predictions[s.id]
            scored = task.score(s, pred)
            r.prediction, r.score = pred, float(scored["score"])
            r.scores = {k: v for k, v in scored.items() if k != "score"}
        out.append(r)
    return out


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def run_replay(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """Run one task end to end through the runner with saved predictions; returns results.json."""

    def go(task: str, data_dir: Path, predictions: dict[str, str], **args: Any) -> dict[str, Any]:
        from evalsuite.runner import RunConfig, run

        preds = tmp_path / f"{task}-preds.jsonl"
        preds.write_text("".join(json.dumps({"id": i, "prediction": p}) + "\n" for i, p in predictions.items()))
        out = tmp_path / f"{task}-run"
        cfg = RunConfig(model=f"replay:{preds}", tasks=[task], out=out, quiet=True, report=False,
                        task_args={task: {"data_dir": str(data_dir), **args}}, max_error_rate=1.0)
        run(cfg)
        return json.loads((out / "results.json").read_text())["tasks"][task]

    return go


@pytest.fixture
def media() -> Any:
    class Media:
        png = staticmethod(write_png)
        wav = staticmethod(write_wav)
        mp4 = staticmethod(write_mp4)
        score_all = staticmethod(score_all)

    return Media
