"""Fixtures for the official-adapter tests: tiny media writers, scoring as the runner scores, an
end-to-end run through the runner with the ``replay:`` backend, and Hugging Face snapshots built with
``datasets`` in the folder layout ``huggingface-cli download`` leaves (``data/<split>-0000i-of-0000n.parquet``),
either as a plain folder or inside a fake hub cache. No test may open a network connection."""

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
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Snapshots are read offline: any outgoing connection fails the test."""
    import socket

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def write_snapshot(root: Path, split: str, rows: dict[str, list], features: Any = None, *,
                   shards: int = 1, folder: str = "data", media: dict[str, str] | None = None) -> Path:
    """Write ``rows`` as the parquet shards of ``split`` with ``datasets`` (``folder/split-0000i-of-0000n``).

    ``media`` maps a column holding ``{"bytes", "path"}`` dicts to ``"image"`` or ``"audio"``: the
    column is cast to that datasets feature, so the shards carry the hub's schema metadata.
    """
    import datasets

    ds = datasets.Dataset.from_dict(rows, features=features)
    for column, kind in (media or {}).items():
        ds = ds.cast_column(column, datasets.Image() if kind == "image" else datasets.Audio())
    (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(shards):
        part = ds.shard(num_shards=shards, index=i, contiguous=True)
        part.to_parquet(str(root / folder / f"{split}-{i:05d}-of-{shards:05d}.parquet"))
    return root


def hub_cache_snapshot(tmp_path: Path, repo: str) -> Path:
    """The snapshot folder of dataset ``repo`` in a fake hub cache under $HF_HOME (fill it, then use hf=)."""
    import os

    revision = "0123456789abcdef0123456789abcdef01234567"
    entry = Path(os.environ["HF_HOME"]) / "hub" / f"datasets--{repo.replace('/', '--')}"
    (entry / "refs").mkdir(parents=True, exist_ok=True)
    (entry / "refs" / "main").write_text(revision)
    snap = entry / "snapshots" / revision
    snap.mkdir(parents=True, exist_ok=True)
    return snap


def media_bytes(path: Path) -> dict[str, Any]:
    """A datasets media cell holding the bytes of a file."""
    return {"bytes": path.read_bytes(), "path": path.name}


@pytest.fixture
def run_replay(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """Run one task end to end through the runner with saved predictions; returns results.json."""

    runs = iter(range(1_000_000))

    def go(task: str, data_dir: Path | None, predictions: dict[str, str], **args: Any) -> dict[str, Any]:
        from evalsuite.runner import RunConfig, run

        n = next(runs)
        preds = tmp_path / f"{task}-preds-{n}.jsonl"
        preds.write_text("".join(json.dumps({"id": i, "prediction": p}) + "\n" for i, p in predictions.items()))
        out = tmp_path / f"{task}-run-{n}"
        where = {"data_dir": str(data_dir)} if data_dir is not None else {}
        cfg = RunConfig(model=f"replay:{preds}", tasks=[task], out=out, quiet=True, report=False,
                        task_args={task: {**where, **args}}, max_error_rate=1.0)
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
        snapshot = staticmethod(write_snapshot)
        hub = staticmethod(hub_cache_snapshot)
        cell = staticmethod(media_bytes)

    return Media
