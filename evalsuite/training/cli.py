"""Train the reference omni model on the synthetic tasks' train split with the staged curriculum.

    python -m evalsuite.training --preset tiny --out evalsuite/model/checkpoints/tiny --bench   (``make train``)
"""

from __future__ import annotations

import argparse
from typing import Sequence

from evalsuite.training.curriculum import CURRICULA, DEFAULT_STEPS
from evalsuite.training.loop import TrainArgs, train


def parse(argv: Sequence[str] | None = None) -> tuple[TrainArgs, int | None]:
    p = argparse.ArgumentParser(prog="python -m evalsuite.training", description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--out", default="evalsuite/model/checkpoints/tiny")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--curriculum", default="v1", choices=sorted(CURRICULA),
                   help="v1: the committed run's stages; v2: those and the video stages after them")
    p.add_argument("--stages", default="", help="comma-separated, in order (default: the curriculum's)")
    p.add_argument("--init", default="", help="start from this finished run's checkpoint, after the stages it ran")
    p.add_argument("--time-pos", type=int, default=0,
                   help="with --init: give the model a video time index of this width (zero at first)")
    p.add_argument("--loc-bins", type=int, default=0,
                   help="location tokens per axis to give the model (0..100; a checkpoint's own cannot change)")
    p.add_argument("--steps", default="", help="per-stage steps, e.g. text=600,image=3000")
    p.add_argument("--steps-scale", type=float, default=1.0, help="multiply every stage's steps")
    p.add_argument("--eval-n", type=int, default=200, help="eval samples per task after each stage (0: none)")
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--batch-video", action="store_true",
                   help="encode a step's video clips in one call per frame grid (the same tokens up to rounding)")
    p.add_argument("--workers", type=int, default=0,
                   help="processes making the next steps' examples (the same examples; 0: in the loop's process)")
    p.add_argument("--bench", action="store_true", help="write the per-stage table to BENCHMARKS.md")
    p.add_argument("--stop-after", type=int, default=None,
                   help="save a resumable state and exit after this many steps (resume by running again)")
    a = p.parse_args(argv)
    if a.time_pos and not a.init:
        p.error("--time-pos gives a model started from --init a time index; a fresh model takes its preset's")
    if not 0 <= a.loc_bins <= 100:
        p.error(f"--loc-bins expects 0..100 bins per axis, got {a.loc_bins}")
    curriculum = {s.name: s for s in CURRICULA[a.curriculum]}
    stages = tuple(s for s in a.stages.split(",") if s) or tuple(curriculum)
    steps = dict(DEFAULT_STEPS, **{s.name: s.steps for s in curriculum.values()})
    for item in filter(None, a.steps.split(",")):
        name, _, val = item.partition("=")
        if name not in curriculum or not val.isdigit():
            p.error(f"--steps expects stage=N pairs with stages from {list(curriculum)}, got {item!r}")
        steps[name] = int(val)
    steps = {k: max(1, int(round(v * a.steps_scale))) for k, v in steps.items()}
    args = TrainArgs(preset=a.preset, out=a.out, seed=a.seed, batch=a.batch, lr=a.lr, stages=stages, steps=steps,
                     eval_n=a.eval_n, save_every=a.save_every, device=a.device, threads=a.threads, bench=a.bench,
                     curriculum=a.curriculum, init=a.init, time_pos=a.time_pos, loc_bins=a.loc_bins,
                     workers=a.workers, batch_video=a.batch_video)
    return args, a.stop_after


def main(argv: Sequence[str] | None = None) -> int:
    args, stop_after = parse(argv)
    train(args, stop_after=stop_after)
    return 0
