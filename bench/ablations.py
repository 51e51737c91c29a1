"""Ablations the Nemotron 3 Nano Omni report claims, measured on the trained reference model.

    python bench/ablations.py [--checkpoint evalsuite/model/checkpoints/tiny] [--n 200] [--bench]

- **Efficient Video Sampling**: ``videoqa`` at EVS pruning rate q = 0, 0.5, 0.75 — video tokens kept
  (mean per sample, before and after EVS) and accuracy with its bootstrap CI95.
- **Dynamic resolution vs tiling** on ``docqa``: accuracy and image tokens per sample, overall and
  split by aspect-ratio class (tall / wide / page / square).

Every number comes from a harness run (the ``bf16`` model on each task's eval split, results under
``--out``), read back from its results.json and per-sample file; ``--bench`` writes the tables to
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EVS_RATES: tuple[float, ...] = (0.0, 0.5, 0.75)
IMAGE_MODES: tuple[str, ...] = ("dynamic", "tiling")


def _run(checkpoint: Path, out: Path, task: str, args: dict[str, Any], n: int, model: str) -> tuple[dict, list[dict]]:
    from evalsuite.backends.reference import using_checkpoint
    from evalsuite.results import read_jsonl
    from evalsuite.runner import RunConfig, run

    with using_checkpoint(checkpoint):
        outcome = run(RunConfig(model=model, tasks=[task], out=out, limit=n, task_args={task: args}, quiet=True, overwrite=True,
                                report=False))
    res = outcome.results["tasks"][task]
    rows = list(read_jsonl(out / res["samples_file"]))
    return res, rows


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def evs_ablation(checkpoint: Path, out: Path, n: int, model: str = "bf16") -> list[dict[str, Any]]:
    table = []
    for q in EVS_RATES:
        res, rows = _run(checkpoint, out / f"evs-{q:g}", "videoqa", {"evs_q": q}, n, model)
        ok = [r for r in rows if r.get("error") is None]
        table.append({
            "evs_q": q, "n": len(ok), "accuracy": res["metrics"]["accuracy"], "ci95": (res.get("ci95") or {}).get("accuracy"),
            "video_tokens_before": _mean([r["usage"]["video_tokens_before_evs"] for r in ok]),
            "video_tokens_after": _mean([r["usage"]["video_tokens_after_evs"] for r in ok]),
        })
    return table


def resolution_ablation(checkpoint: Path, out: Path, n: int, model: str = "bf16") -> list[dict[str, Any]]:
    table = []
    for mode in IMAGE_MODES:
        res, rows = _run(checkpoint, out / f"image-{mode}", "docqa", {"image_mode": mode}, n, model)
        ok = [r for r in rows if r.get("error") is None]
        by: dict[str, list[dict]] = defaultdict(list)
        for r in ok:
            by[r["metadata"]["aspect"]].append(r)
        row = {"mode": mode, "n": len(ok), "accuracy": res["metrics"]["accuracy"],
               "ci95": (res.get("ci95") or {}).get("accuracy"), "image_tokens": _mean([r["usage"]["image_tokens"] for r in ok]), "aspects": {}}
        for aspect in sorted(by):
            rs = by[aspect]
            row["aspects"][aspect] = {"n": len(rs), "accuracy": _mean([float(r["score"] or 0.0) for r in rs]),
                                      "image_tokens": _mean([r["usage"]["image_tokens"] for r in rs])}
        table.append(row)
    return table


def _ci(ci: Any) -> str:
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return f"[{ci[0]:.3f}, {ci[1]:.3f}]"
    if isinstance(ci, dict) and "low" in ci:
        return f"[{ci['low']:.3f}, {ci['high']:.3f}]"
    return "–"


def markdown(evs: list[dict[str, Any]], res: list[dict[str, Any]]) -> str:
    lines = ["**EVS on `videoqa`**", "",
             "| EVS q | samples | video tokens before | video tokens kept | kept | accuracy | CI95 |",
             "|---:|---:|---:|---:|---:|---:|---|"]
    for r in evs:
        kept = r["video_tokens_after"] / r["video_tokens_before"] if r["video_tokens_before"] else float("nan")
        lines.append(f"| {r['evs_q']:g} | {r['n']} | {r['video_tokens_before']:.1f} | {r['video_tokens_after']:.1f} | "
                     f"{kept:.0%} | {r['accuracy']:.3f} | {_ci(r['ci95'])} |")
    aspects = sorted({a for r in res for a in r["aspects"]})
    lines += ["", "**Dynamic resolution vs tiling on `docqa`** (accuracy / image tokens per sample)", "",
              "| mode | samples | accuracy | CI95 | image tokens | " + " | ".join(aspects) + " |",
              "|---|---:|---:|---|---:|" + "---|" * len(aspects)]
    for r in res:
        cells = []
        for a in aspects:
            x = r["aspects"].get(a)
            cells.append("–" if x is None else f"{x['accuracy']:.3f} / {x['image_tokens']:.0f} (n={x['n']})")
        lines.append(f"| {r['mode']} | {r['n']} | {r['accuracy']:.3f} | {_ci(r['ci95'])} | {r['image_tokens']:.1f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from evalsuite.model import weights

    p = argparse.ArgumentParser(prog="python bench/ablations.py", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=str(weights.DEFAULT_DIR))
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--model", default="bf16")
    p.add_argument("--out", default="results/ablations")
    p.add_argument("--bench", action="store_true")
    a = p.parse_args(argv)
    ckpt, out = Path(a.checkpoint), Path(a.out)
    if not (ckpt / "config.json").is_file():
        p.error(f"no checkpoint at {ckpt}: expected config.json and model.safetensors (run make train)")
    evs = evs_ablation(ckpt, out, a.n, a.model)
    res = resolution_ablation(ckpt, out, a.n, a.model)
    text = markdown(evs, res)
    (out / "ablations.json").write_text(json.dumps({"evs": evs, "resolution": res}, indent=1) + "\n")
    print(text)
    if a.bench:
        from bench.report import ROOT, device_line, update

        shown = ckpt.resolve().relative_to(ROOT) if ckpt.resolve().is_relative_to(ROOT) else ckpt  # no machine paths
        # the options that decide the numbers, so that the command reproduces the table
        command = shlex.join(["python", "bench/ablations.py", "--checkpoint", str(shown), "--n", str(a.n),
                              "--model", a.model, "--bench"])
        body = (f"Trained `tiny` checkpoint `{shown}` (sha256 {weights.weights_sha256(ckpt)[:12]}), `{a.model}`, "
                f"{a.n} eval samples per run, {time.strftime('%Y-%m-%d')}, {device_line()}; command: "
                f"`{command}`.\n\n" + text)
        update(ROOT / "BENCHMARKS.md", "Ablations: EVS and dynamic resolution", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
