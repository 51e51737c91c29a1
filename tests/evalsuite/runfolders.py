"""Run folders written by hand (results.json + samples/<task>.jsonl), for compare/gate/leaderboard tests.

The folders are what ``evalsuite run`` writes, validated against the schema, but built directly from
lists of :class:`SampleResult`, so tests control every score without depending on any task.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from evalsuite.results import SCHEMA_VERSION, atomic_write_json, dumps, validate
from evalsuite.stats import bootstrap_ci
from evalsuite.types import SampleResult
from media_files import write_mp4, write_png, write_wav  # noqa: F401  (re-exported for the report tests)


def binary_samples(task: str, n: int, *, n_clusters: int, accuracy: float, seed: int = 0,
                   cluster_effect: float = 0.3) -> list[SampleResult]:
    """``n`` 0/1-scored samples in ``n_clusters`` clusters; clusters differ in difficulty."""
    rng = np.random.default_rng(seed)
    ease = np.clip(accuracy + rng.uniform(-cluster_effect, cluster_effect, size=n_clusters), 0.02, 0.98)
    out = []
    for i in range(n):
        c = i % n_clusters
        ok = bool(rng.random() < ease[c])
        out.append(SampleResult(id=f"{task}-{i:04d}", task=task, target="A", prediction="A" if ok else "B",
                                score=1.0 if ok else 0.0, metadata={"cluster": f"doc{c:03d}", "category": "cat" + str(c % 3)},
                                prompt=f"question {i}", choices=["A", "B"]))
    return out


def flipped(samples: Sequence[SampleResult], ids: set[str]) -> list[SampleResult]:
    """A copy with the 0/1 scores (and predictions) of ``ids`` flipped."""
    out = []
    for r in samples:
        r = copy.deepcopy(r)
        if r.id in ids:
            r.score = 1.0 - float(r.score)  # type: ignore[arg-type]
            r.prediction = "A" if r.score == 1.0 else "B"
        out.append(r)
    return out


def results_dict(samples: dict[str, list[SampleResult]], *, name: str = "bf16", precision: str | None = "bf16",
                 backend: str = "reference", efficiency: dict[str, dict[str, Any]] | None = None,
                 args: dict[str, dict[str, Any]] | None = None, weight_bytes: int | None = None,
                 device: str = "cpu", run_id: str | None = None, status: str = "complete",
                 status_reasons: list[str] | None = None) -> dict[str, Any]:
    """A schema-valid results.json for the given per-task sample results."""
    tasks: dict[str, Any] = {}
    for task, rows in samples.items():
        scored = [r for r in rows if r.error is None and r.score is not None]
        acc = float(np.mean([r.score for r in scored])) if scored else None
        ci = bootstrap_ci([r.score for r in scored], [str(r.metadata.get("cluster", r.id)) for r in scored], n_boot=200)
        n_err = sum(1 for r in rows if r.error)
        tasks[task] = {
            "version": "1", "args": (args or {}).get(task, {"n": len(rows)}), "media": {}, "primary_metric": "accuracy",
            "metrics": {"accuracy": acc}, "ci95": {"accuracy": list(ci) if ci else None}, "n_samples": len(rows),
            "n_scored": len(scored), "n_errors": n_err, "error_rate": n_err / len(rows) if rows else 0.0,
            "breakdown": {}, "config_hash": f"{name}-{task}", "complete": True, "wall_time_s": 1.0,
            "usage": {}, "efficiency": (efficiency or {}).get(task, {}), "samples_file": f"samples/{task}.jsonl",
        }
    res = {
        "schema_version": SCHEMA_VERSION, "run_id": run_id or f"run-{name}", "status": status,
        "status_reasons": status_reasons or [],
        "created": "2025-01-01T00:00:00+00:00", "updated": "2025-01-01T00:00:00+00:00",
        "model": {"name": name, "backend": backend, "precision": precision, "weights_sha256": None,
                  "device": device, "weight_bytes": weight_bytes},
        "tasks": tasks,
        "environment": {"git_sha": None, "git_dirty": None, "python": "3", "torch": None, "packages": {},
                        "cpu": "test-cpu", "gpu": None, "command": "test", "seed": 0, "wall_time_s": 1.0},
    }
    validate(res)
    return res


def write_run(folder: Path, samples: dict[str, list[SampleResult]], **kw: Any) -> Path:
    """Write ``folder/results.json`` and ``folder/samples/<task>.jsonl``; returns the folder."""
    folder = Path(folder)
    (folder / "samples").mkdir(parents=True, exist_ok=True)
    for task, rows in samples.items():
        (folder / "samples" / f"{task}.jsonl").write_text("".join(dumps(r.to_dict()) + "\n" for r in rows))
    atomic_write_json(folder / "results.json", results_dict(samples, **kw))
    return folder


# ---- media files --------------------------------------------------------------------------------


def ctrl_c_on_second_batch(monkeypatch: Any):
    """The runner's second batch raises KeyboardInterrupt, as Ctrl-C there would; returns what undoes it."""
    import evalsuite.runner as runner_mod

    real = runner_mod.process_batch
    calls = {"n": 0}

    def stop_on_second_batch(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(runner_mod, "process_batch", stop_on_second_batch)
    return lambda: monkeypatch.setattr(runner_mod, "process_batch", real)
