"""Train the reference omni model on the synthetic tasks' train split with the staged curriculum.

    python -m evalsuite.training --preset tiny --out results/train/tiny   (``make train``)

Errors a user can cause (a flag out of range, an --out that is a file or holds a finished checkpoint
without its state, an --init that is no finished run or leaves nothing to run, a train_state.pt that
is damaged or written with other settings, espeak-ng missing for stages that need speech) end with
exit code 2 and one line on stderr that says what was expected; flags are checked before any work is
done. Ctrl-C ends a run with one line saying where its last save is (exit code 130).
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path
from typing import NoReturn, Sequence

from evalsuite.env import DEVICE_RE, folder_problem
from evalsuite.training.curriculum import CURRICULA, DEFAULT_STEPS
from evalsuite.training.loop import HISTORY_FILE, Interrupted, TrainArgs, resolve_device, train


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``error: …``, exit code 2), without the usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}\n")


def _check_out(p: _Parser, out: str) -> None:
    """--out must be a folder, or a path where one can be made (no file on the way to it)."""
    if problem := folder_problem("--out", out, "a folder to write the checkpoint and its state into"):
        p.error(problem)


def _check_device(p: _Parser, device: str) -> None:
    if not DEVICE_RE.fullmatch(device):
        p.error(f"--device expects auto, cpu, cuda or cuda:N, got {device!r}")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            p.error(f"--device {device}: there is no CUDA device here; expected auto or cpu")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            p.error(f"--device {device}: there are {torch.cuda.device_count()} CUDA device(s); expected cuda:N "
                    f"with N < {torch.cuda.device_count()}")


def parse(argv: Sequence[str] | None = None) -> tuple[TrainArgs, int | None]:
    from evalsuite.model.config import BackboneConfig

    p = _Parser(prog="python -m evalsuite.training", description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="tiny", help=f"the model's size: {', '.join(sorted(BackboneConfig.PRESETS))}")
    p.add_argument("--out", default="results/train/tiny",
                   help="folder of the checkpoint and its state (the committed model, which every bf16/fp8/fp4 run "
                        "loads, is evalsuite/model/checkpoints/tiny: name it to re-make that one in place)")
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
    p.add_argument("--steps", default="", help="per-stage steps (each >= 1), e.g. text=600,image=3000")
    p.add_argument("--steps-scale", type=float, default=1.0,
                   help="multiply every stage's steps (> 0; a stage keeps at least one step)")
    p.add_argument("--eval-n", type=int, default=200, help="eval samples per task after each stage (0: none)")
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--batch-video", action="store_true",
                   help="encode a step's video clips in one call per frame grid (the same tokens up to rounding)")
    p.add_argument("--workers", type=int, default=0,
                   help="processes making the next steps' examples (the same examples; 0: in the loop's process)")
    p.add_argument("--bench", action="store_true",
                   help="write the per-stage table to BENCHMARKS.md once the run has finished every stage of its "
                        "curriculum (a partial run writes nothing there)")
    p.add_argument("--overwrite", action="store_true",
                   help="train from scratch over a checkpoint in --out that has no train_state.pt (re-make a "
                        "finished run in place, e.g. the committed one); without it such an --out is refused")
    p.add_argument("--stop-after", type=int, default=None,
                   help="save a resumable state and exit after this many steps, >= 1 (resume by running again)")
    a = p.parse_args(argv)
    if a.preset not in BackboneConfig.PRESETS:
        p.error(f"--preset expects one of {sorted(BackboneConfig.PRESETS)}, got {a.preset!r}")
    if not 0 <= a.seed < 2**32:
        p.error(f"--seed expects a whole number in [0, 2**32), got {a.seed}")
    if a.batch < 1:
        p.error(f"--batch expects a number of examples per step >= 1, got {a.batch}")
    if not (math.isfinite(a.lr) and a.lr > 0):
        p.error(f"--lr expects a finite learning rate > 0, got {a.lr}")
    if not (math.isfinite(a.steps_scale) and a.steps_scale > 0):
        p.error(f"--steps-scale expects a finite factor > 0, got {a.steps_scale}")
    if a.eval_n < 0:
        p.error(f"--eval-n expects a number of samples per task >= 0 (0: no evaluation), got {a.eval_n}")
    if a.save_every < 1:
        p.error(f"--save-every expects a number of steps >= 1, got {a.save_every}")
    if a.threads < 0:
        p.error(f"--threads expects a number of threads >= 0 (0: torch's default), got {a.threads}")
    if a.workers < 0:
        p.error(f"--workers expects a number of processes >= 0 (0: in the loop's process), got {a.workers}")
    if a.stop_after is not None and a.stop_after < 1:
        p.error(f"--stop-after expects a number of steps >= 1, got {a.stop_after}")
    if a.time_pos < 0:
        p.error(f"--time-pos expects a width >= 0, got {a.time_pos}")
    if a.time_pos and not a.init:
        p.error("--time-pos gives a model started from --init a time index; a fresh model takes its preset's")
    if not 0 <= a.loc_bins <= 100:
        p.error(f"--loc-bins expects 0..100 bins per axis, got {a.loc_bins}")
    _check_device(p, a.device)
    if a.preset != "tiny" and resolve_device(a.device).type == "cpu":
        p.error(f"--preset {a.preset}: the full-size configuration is for accounting (python -m evalsuite.model.card "
                f"{a.preset}); training it needs hundreds of GB for weights and optimizer state, far more than a "
                "CPU run has; expected tiny")
    _check_out(p, a.out)
    if a.init:
        init = Path(a.init)
        lacking = [f for f in ("config.json", "model.safetensors", HISTORY_FILE) if not (init / f).is_file()]
        if lacking:
            p.error(f"--init {a.init}: expected a finished run's checkpoint folder (config.json, model.safetensors, "
                    f"{HISTORY_FILE}); {'it does not exist' if not init.exists() else 'it lacks ' + ', '.join(lacking)}")
    curriculum = {s.name: s for s in CURRICULA[a.curriculum]}
    stages = tuple(s for s in a.stages.split(",") if s) or tuple(curriculum)
    unknown = [s for s in stages if s not in curriculum]
    if unknown:
        p.error(f"--stages expects stages of the {a.curriculum} curriculum from {list(curriculum)}, got {unknown}")
    repeated = sorted({s for s in stages if stages.count(s) > 1})
    if repeated:
        p.error(f"--stages expects each stage at most once, got {repeated} more than once")
    steps = dict(DEFAULT_STEPS, **{s.name: s.steps for s in curriculum.values()})
    for item in filter(None, a.steps.split(",")):
        name, _, val = item.partition("=")
        if name not in curriculum or not (val.isascii() and val.isdigit()) or int(val) < 1:
            p.error(f"--steps expects stage=N pairs with N >= 1 and stages from {list(curriculum)}, got {item!r}")
        steps[name] = int(val)
    if not all(math.isfinite(v * a.steps_scale) for v in steps.values()):
        p.error(f"--steps-scale expects a factor that leaves every stage a finite number of steps, got {a.steps_scale}")
    steps = {k: max(1, int(round(v * a.steps_scale))) for k, v in steps.items()}
    args = TrainArgs(preset=a.preset, out=a.out, seed=a.seed, batch=a.batch, lr=a.lr, stages=stages, steps=steps,
                     eval_n=a.eval_n, save_every=a.save_every, device=a.device, threads=a.threads, bench=a.bench,
                     curriculum=a.curriculum, init=a.init, time_pos=a.time_pos, loc_bins=a.loc_bins,
                     workers=a.workers, batch_video=a.batch_video, overwrite=a.overwrite,
                     command=shlex.join(["python", "-m", "evalsuite.training",
                                         *(sys.argv[1:] if argv is None else argv)]))
    return args, a.stop_after


def main(argv: Sequence[str] | None = None) -> int:
    from evalsuite.tasks.gen.audio import EspeakMissing

    args, stop_after = parse(argv)
    try:
        train(args, stop_after=stop_after)
    except Interrupted as e:  # Ctrl-C: where the last save is, and how to resume
        print(e.code, file=sys.stderr)
        return 130
    except SystemExit as e:  # the loop's one-line refusals (a state from other settings, a damaged file, …)
        if not isinstance(e.code, str):
            raise
        print(f"error: {e.code}", file=sys.stderr)
        return 2
    except EspeakMissing as e:  # checked at the start; a backstop for a clip rendered later
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
