"""The training loop: run or resume the curriculum, save the checkpoint, evaluate after every stage.

Determinism: the examples of step ``s`` of stage ``k`` are a pure function of (seed, k, s)
(`evalsuite.training.sources.step_examples`), so a run resumed from its last state
(``train_state.pt``, written atomically every ``--save-every`` steps and at each stage's end) takes
exactly the steps an uninterrupted run would. The state is read with ``weights_only=True`` (tensors,
numbers, strings and containers: a file from elsewhere runs no code when read); a file that is not
one is a one-line `SystemExit` naming it. A finished run can be extended: stages may be appended,
and the run resumes after the ones it has run; those stages and their steps may not change.
A new run may also start from a finished run's checkpoint (``init``: its weights, after the stages
its history says it ran), which is how a v2 curriculum continues the committed checkpoint. With
``workers`` the examples are made ahead in worker processes (`evalsuite.training.feed`): the same ones.

After each stage the checkpoint (``model.safetensors`` + ``config.json``, `evalsuite.model.weights.save`)
is evaluated through the harness itself (the ``bf16`` model on each task's eval split, ``eval_n``
samples); the table is appended to ``history.json`` beside the checkpoint, so forgetting shows if it
happens. The stage is saved before its evaluation with a ``pending_eval`` marker: a run killed during
the evaluation runs it first when resumed. With ``bench`` the table goes to BENCHMARKS.md once the run
has finished every stage of its curriculum (a partial run would replace the committed run's table).

Bookkeeping a run keeps beside the math (none of it changes what is trained): ``done`` in the history
lists the stages of a finished run only (what ``init`` requires); an ``out`` holding a checkpoint but
no state is refused unless ``overwrite``; CTC stages count the examples too short for their
transcript (`losses.ctc_infeasible`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from evalsuite.model.omni import OmniModel, build_omni
from evalsuite.training.curriculum import (CURRICULA, DEFAULT_STEPS, EVAL_TASKS, STAGE_NAMES,
                                           frozen_prefixes, lr_at, stage_named)
from evalsuite.training.losses import batch_loss, ctc_batch_loss, ctc_head, video_state_head, video_state_loss
from evalsuite.training.feed import StepFeed
from evalsuite.training.sources import Pools

STATE_FILE = "train_state.pt"
HISTORY_FILE = "history.json"


@dataclass
class TrainArgs:
    """One training run: the model preset, where it is written, the curriculum's stages and steps to
    run, the optimizer's settings, and how often it saves and evaluates."""

    preset: str = "tiny"
    out: str = "results/train/tiny"  # the committed model is evalsuite/model/checkpoints/tiny
    seed: int = 0
    batch: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.01
    stages: tuple[str, ...] = STAGE_NAMES
    steps: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_STEPS))
    eval_n: int = 200
    save_every: int = 200
    device: str = "cpu"
    threads: int = 0
    bench: bool = False
    workers: int = 0  # processes making the next steps' examples (`feed.StepFeed`); 0: the loop's own
    pool_sizes: dict[str, int] = field(default_factory=dict)
    # ``curriculum``: the stage list the names come from (`curriculum.CURRICULA`). ``init``: a finished
    # run's checkpoint directory to start from (its ``history.json`` says which stages it ran; they
    # must be the first of ``stages``), instead of fresh weights. ``time_pos``: with ``init``, the
    # video time index width to give the model (0: as the checkpoint has it); it starts at zero.
    curriculum: str = "v1"
    init: str = ""
    time_pos: int = 0
    # ``batch_video``: a step's video clips go through the video encoder in one call per frame grid
    # (`losses.encode_videos`; the same tokens up to float rounding, so it is part of the fingerprint).
    batch_video: bool = False
    # ``loc_bins``: location tokens per axis to give the model (`OmniConfig.loc_bins`; 0: as the preset
    # or the ``init`` checkpoint has them). A checkpoint's existing bins cannot change.
    loc_bins: int = 0
    # ``overwrite``: train over a checkpoint in ``out`` that has no ``train_state.pt`` (a finished run,
    # e.g. the committed model: re-made in place from scratch); without it such an ``out`` is refused.
    # ``command``: the command line that started the run, for BENCHMARKS.md.
    overwrite: bool = False
    command: str = ""

    def steps_of(self, stage: str) -> int:
        return self.steps.get(stage, stage_named(stage).steps)

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed run must share with the run it continues."""
        return {k: v for k, v in asdict(self).items() if k not in ("out", "eval_n", "save_every", "device",
                                                                 "threads", "bench", "workers", "overwrite",
                                                                 "command")}


def _atomic_torch_save(obj: Any, path: Path) -> None:
    """Write ``obj`` to a temp file, flush it to disk, then rename it over ``path`` (a crash leaves the
    old state or the new one, never a half-written one)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_state(out: Path, model: OmniModel, opt: torch.optim.Optimizer, stage: int, step: int,
               history: dict[str, Any], args: TrainArgs, aux: dict[str, Any] | None = None) -> None:
    """``aux``: an encoder stage's head and its optimizer, while that stage is under way."""
    from evalsuite.model import weights

    out.mkdir(parents=True, exist_ok=True)
    _atomic_torch_save({"stage": stage, "step": step, "model": model.state_dict(), "opt": opt.state_dict(),
                        "args": args.fingerprint(), "history": history, "aux": aux}, out / STATE_FILE)
    weights.save(model, out)
    write_history(out, history)


def write_history(out: Path, history: dict[str, Any]) -> None:
    from evalsuite.results import atomic_write_text

    atomic_write_text(out / HISTORY_FILE, json.dumps(history, indent=1) + "\n")


STATE_REMEDY = "use another --out, or remove the file to start over"


def _bad_state(path: Path, why: str) -> SystemExit:
    return SystemExit(f"{path}: {why}; expected the {STATE_FILE} that python -m evalsuite.training writes "
                      f"({STATE_REMEDY})")


def _numpy_scalar_globals() -> list[Any]:
    """The numpy names a pickled numpy scalar refers to (a harness metric may have been one in a state
    written before `evaluate` made them plain numbers): the numeric dtypes, and the function that makes
    the scalar from its dtype and bytes (under numpy 1's module name too). Nothing else outside torch's
    own allowlist may be in a state file: no arrays, no object dtype."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        return []
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    numeric = sorted({type(np.dtype(c)) for c in "?bhilqBHILQefdFD"}, key=str)  # bool, ints, floats, complex
    return [np.dtype, *numeric, (scalar, "numpy._core.multiarray.scalar"), (scalar, "numpy.core.multiarray.scalar")]


def read_state(path: Path) -> dict[str, Any]:
    """The training state in ``path``, read with ``weights_only=True`` (a file from elsewhere runs no
    code on load); a file that is not one (damaged, truncated, empty, another kind of pickle, an older
    format holding objects a safe load refuses) is one-line `SystemExit` naming the file."""
    import pickle
    import warnings

    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's note on a plain pickle's protocol: the error says it
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - whatever the file is, the answer is one line
        if isinstance(e, pickle.UnpicklingError) and "weights only" in str(e).lower():
            try:
                names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
            except Exception:  # noqa: BLE001 - a legacy (non-zip) pickle: no list of names
                names = []
            named = f" ({', '.join(names[:3])}{', …' if len(names) > 3 else ''})" if names else ""
            raise _bad_state(path, f"it holds objects{named} that a safe load refuses to make, so it was not "
                                   "loaded (a state of an older format, or not a training state)") from None
        if path.stat().st_size == 0:
            raise _bad_state(path, "it is empty") from None
        detail = (str(e).strip().splitlines() or [""])[0].split(". ")[0][:120]
        raise _bad_state(path, f"it does not read as one, damaged or truncated ({type(e).__name__}"
                               f"{': ' + detail if detail else ''})") from None
    kinds = {"stage": int, "step": int, "model": dict, "opt": dict, "args": dict, "history": dict}
    if not isinstance(state, dict):
        raise _bad_state(path, f"it holds a {type(state).__name__}, not a training state")
    missing = [k for k in kinds if k not in state]
    if missing:
        raise _bad_state(path, f"it lacks {missing}")
    wrong = [k for k, t in kinds.items() if not isinstance(state[k], t) or isinstance(state[k], bool)
             or (t is int and state[k] < 0)]
    if state.get("aux") is not None and not isinstance(state["aux"], dict):
        wrong.append("aux")
    saved = state["args"]
    if not isinstance(saved.get("stages", ()), (list, tuple)) or not isinstance(saved.get("steps", {}), dict):
        wrong.append("args")
    history = state["history"]
    if not (isinstance(history.get("curve", []), list) and isinstance(history.get("evals", []), list)):
        wrong.append("history")
    pending = history.get("pending_eval")
    if pending is not None and not (isinstance(pending, dict) and isinstance(pending.get("stage"), str)
                                    and isinstance(pending.get("global_step"), int)):
        wrong.append("history")
    if wrong:
        raise _bad_state(path, f"its {wrong} are not what a training state holds")
    history.setdefault("curve", [])
    history.setdefault("evals", [])
    state["history"] = _plain_numbers(history)
    return state


def _plain_numbers(obj: Any) -> Any:
    """``obj`` with numpy scalars as Python numbers (the history is written as JSON)."""
    if isinstance(obj, dict):
        return {k: _plain_numbers(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain_numbers(v) for v in obj)
    item = getattr(obj, "item", None)
    if type(obj).__module__ == "numpy" and callable(item):
        return item()
    return obj


def load_state(out: Path, args: TrainArgs) -> dict[str, Any] | None:
    path = out / STATE_FILE
    if path.exists() and not path.is_file():
        raise SystemExit(f"{path} is not a file; expected the {STATE_FILE} that python -m evalsuite.training "
                         f"writes ({STATE_REMEDY})")
    if not path.is_file():
        return None
    state = read_state(path)
    saved, now = dict(state.get("args") or {}), args.fingerprint()
    for key in ("curriculum", "init", "time_pos", "batch_video", "loc_bins"):  # runs written before these settings had their defaults
        saved.setdefault(key, getattr(TrainArgs, key))
    # What is still to come may change on resume (the steps of stages not begun, and the stages after
    # them: a finished run can be extended with more); the stages already run, or under way, and their
    # steps may not.
    n_begun = state["stage"] + (1 if state["step"] > 0 else 0)
    saved_stages = tuple(saved.pop("stages", ()))
    if state["stage"] > len(saved_stages):
        raise _bad_state(path, f"its stage {state['stage']} is past the {len(saved_stages)} stage(s) it lists")
    begun = list(saved_stages[:n_begun])
    same_begun = tuple(args.stages[:n_begun]) == tuple(begun) and \
        {k: v for k, v in (saved.get("steps") or {}).items() if k in begun} == \
        {k: v for k, v in now["steps"].items() if k in begun}
    saved.pop("steps", None)
    rest = {k: v for k, v in now.items() if k not in ("steps", "stages")}
    if saved != rest or not same_begun:
        diffs = [f"{k} {saved.get(k)!r} (now {rest.get(k)!r})" for k in sorted(set(saved) | set(rest))
                 if saved.get(k) != rest.get(k)]
        if not same_begun:  # the stages begun, with their steps: {stage: steps}
            saved_steps = state["args"].get("steps") or {}
            then = {k: saved_steps.get(k) for k in begun}
            later = {k: now["steps"].get(k) for k in args.stages[:n_begun]}
            diffs.append(f"stages begun {then} (now {later})")
        raise SystemExit(f"{path}: written by a run with different settings: {'; '.join(diffs)} ({STATE_REMEDY})")
    return state


def evaluate(out: Path, tag: str, n: int, tasks: Sequence[str] = EVAL_TASKS, model: str = "bf16") -> dict[str, Any]:
    """Evaluate the checkpoint in ``out`` with the harness (``model`` on each task's eval split, ``n``
    samples); returns {task: {metric: value}} and the prompt-token counts."""
    from evalsuite.backends.reference import using_checkpoint
    from evalsuite.runner import RunConfig, run

    with using_checkpoint(out):
        outcome = run(RunConfig(model=model, tasks=list(tasks), out=out / "evals" / tag, limit=n, overwrite=True,
                                quiet=True, report=False))
    table = {}
    for name, res in outcome.results["tasks"].items():
        # plain Python numbers (a task's metric may be a numpy scalar): the history is saved in the
        # training state, which is read back with weights_only=True
        table[name] = {"primary": res.get("primary_metric"),
                       **{k: v if type(v) in (bool, int, float) else float(v) if isinstance(v, float) else int(v)
                          for k, v in res["metrics"].items() if isinstance(v, (int, float))}}
    return table


def eval_counts(history: dict[str, Any]) -> set[Any]:
    """The eval sample counts of the history's per-stage evaluations (None where one was not
    recorded): more than one means the table shows them per row."""
    return {e.get("n") for e in history.get("evals", [])}


def bench_table(history: dict[str, Any]) -> str:
    """Markdown: one row per evaluated stage, one column per task (primary metric)."""
    evals = history.get("evals", [])
    with_n = len(eval_counts(history)) > 1  # the sample count changed between stages: show it per row
    lines = ["| after stage | step | " + ("n | " if with_n else "") + " | ".join(EVAL_TASKS) + " | samples/s |",
             "|---|---:|" + ("---:|" if with_n else "") + "---:|" * len(EVAL_TASKS) + "---:|"]
    for e in evals:
        cells = []
        for t in EVAL_TASKS:
            r = e["table"].get(t, {})
            v = r.get(r.get("primary") or "", None)
            cells.append("—" if v is None else f"{v:.3f}")
        n = (f"{e['n']} | " if e.get("n") is not None else "— | ") if with_n else ""
        lines.append(f"| {e['stage']} | {e['global_step']} | " + n + " | ".join(cells)
                     + f" | {e.get('samples_per_s', 0):.1f} |")
    return "\n".join(lines)


def initial_model(args: TrainArgs, device: torch.device) -> tuple[OmniModel, int, dict[str, Any] | None]:
    """The model a run starts from: fresh weights (`build_omni` with the run's seed), or the
    checkpoint ``args.init`` (its config, with ``args.time_pos`` where given; a parameter the
    checkpoint lacks must be one built as zeros) with the stage to start at and its history; both
    with ``args.loc_bins`` location tokens where given."""
    import dataclasses

    from evalsuite.model.config import OmniConfig

    if not args.init:
        cfg = OmniConfig.preset(args.preset)
        if args.loc_bins:
            cfg = dataclasses.replace(cfg, loc_bins=args.loc_bins)
        return build_omni(cfg, seed=args.seed, device=device).train(), 0, None
    from evalsuite.model import weights

    init = Path(args.init)
    try:
        loaded = weights.load(init)
        history = json.loads((init / HISTORY_FILE).read_text())
    except (OSError, ValueError, RuntimeError) as e:  # missing files, JSON or weights that do not parse
        raise SystemExit(f"--init {init}: expected a finished run's checkpoint folder (config.json, model.safetensors, "
                         f"{HISTORY_FILE}) that reads ({type(e).__name__}: "
                         f"{(str(e).strip().splitlines() or [''])[0][:160]})") from None
    if not isinstance(history, dict):
        raise SystemExit(f"--init {init}: its {HISTORY_FILE} holds a {type(history).__name__}; expected the "
                         "object a training run writes")
    cfg = loaded.config
    if args.loc_bins and args.loc_bins != cfg.loc_bins:
        if cfg.loc_bins:
            raise SystemExit(f"--init {init}: its model has {cfg.loc_bins} location bins; --loc-bins "
                             f"{args.loc_bins} cannot change them")
        cfg = dataclasses.replace(cfg, loc_bins=args.loc_bins)  # the rows exist: only the tokenizer grows
    if args.time_pos:
        cfg = dataclasses.replace(cfg, video=dataclasses.replace(cfg.video, time_pos=args.time_pos))
    model = build_omni(cfg, seed=args.seed, device=device)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or any(torch.count_nonzero(model.state_dict()[k]) for k in missing):
        raise SystemExit(f"--init {init}: its weights do not fit the model (missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}); only parameters that start at zero may be new")
    done = list(history.get("done") or [])
    unfinished = unfinished_state(init)
    if not done or unfinished:
        raise SystemExit(f"--init {init}: expected a finished run; {unfinished or 'its ' + HISTORY_FILE + ' lists no stages done'} "
                         f"(finish it first: run it again with --out {init})")
    if list(args.stages[:len(done)]) != done:
        raise SystemExit(f"--init {init}: it ran stages {done}; expected them as the first of {list(args.stages)}")
    history["init"] = {"from": str(init), "sha256": weights.weights_sha256(init), "done": done}
    history.pop("pending_eval", None)  # (a finished run has none; its evaluations are its own)
    return model.to(device).train(), len(done), history


def unfinished_state(folder: Path) -> str:
    """Why the run in ``folder`` is not finished, by its ``train_state.pt`` ("" where it is, or where
    there is none: a checkpoint without its state says nothing more than its history)."""
    path = folder / STATE_FILE
    if not path.is_file():
        return ""
    state = read_state(path)
    stages = list(state["args"].get("stages") or ())
    if state["step"] or state["stage"] < len(stages):
        at = stages[state["stage"]] if state["stage"] < len(stages) else "?"
        return f"its {STATE_FILE} is at stage {at} step {state['step']} of its {len(stages)} stage(s)"
    if state["history"].get("pending_eval"):
        return f"its {STATE_FILE} waits for the evaluation after stage {state['history']['pending_eval'].get('stage')}"
    return ""


def init_locations(model: OmniModel, opt: torch.optim.Optimizer) -> slice:
    """`init_location_rows`, and the Adam moments of those rows zeroed (they belonged to rows no answer
    used)."""
    from evalsuite.model.locations import init_location_rows

    ids = init_location_rows(model)
    for p in (model.lm.backbone.embeddings.weight, model.lm.lm_head.weight):
        for moment in opt.state.get(p, {}).values():
            if isinstance(moment, torch.Tensor) and moment.shape == p.shape:
                moment[ids] = 0
    return ids


def resolve_device(name: str) -> torch.device:
    """``auto``: the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Interrupted(SystemExit):
    """Ctrl-C (SIGINT) during a run: one line saying where the last save is and how to resume."""


@dataclass
class _Saved:
    """Where the run's last save is, and how far it has gone since (for the line Ctrl-C prints)."""

    out: Path
    stages: Sequence[str]
    stage: int = 0
    step: int = 0
    global_step: int | None = None  # None: nothing saved by this call yet
    now: int = 0

    def line(self) -> str:
        if self.global_step is None:
            return (f"interrupted before this run saved anything in {self.out}; run the same command again "
                    "to start (or resume) it")
        at = (f"after stage {self.stages[self.stage - 1]}" if self.step == 0 and self.stage
              else f"at stage {self.stages[self.stage]} step {self.step}")
        lost = max(0, self.now - self.global_step)
        return (f"interrupted: the last save in {self.out} is {at} (global step {self.global_step}); "
                f"{lost} step(s) since it are lost; run the same command again to resume")


def train(args: TrainArgs, progress: bool = True, stop_after: int | None = None) -> dict[str, Any]:
    """Run (or resume) the curriculum in ``args.out``; returns the history. ``stop_after``: save a
    resumable state and return after that many steps of this call (a time-boxed session). Ctrl-C ends
    it with `Interrupted` (a `SystemExit` whose message says where the last save is)."""
    feeds: list[StepFeed] = []
    saved = _Saved(Path(args.out), args.stages)
    try:
        return _train(args, progress, stop_after, feeds, saved)
    except KeyboardInterrupt:
        raise Interrupted(saved.line()) from None
    finally:
        for feed in feeds:  # its worker processes end with the run
            feed.close()


def needs_speech(source: str) -> bool:
    """Whether examples of ``source`` come from audioqa's clips (rendered with espeak-ng)."""
    from evalsuite.training.sources import task_of

    return source == "hear" or task_of(source.removeprefix("text:")) == "audioqa"


def check_speech(args: TrainArgs, start_stage: int) -> None:
    """espeak-ng is there when the stages still to run, or the evaluation after them, need speech: else
    one line, before any work (the clips are rendered when a pool is first listed, minutes in)."""
    from evalsuite.tasks.gen.audio import espeak_available

    if espeak_available():
        return
    stages = [s for s in args.stages[start_stage:] if any(needs_speech(src) for src in stage_named(s).mix)]
    evals = args.eval_n > 0 and start_stage < len(args.stages)
    if stages or evals:
        what = (f"stage(s) {stages}" if stages else "") + (" and " if stages and evals else "") + \
               ("the audioqa evaluation after each stage" if evals else "")
        raise SystemExit(f"espeak-ng is not installed; {what} need its speech clips (apt-get install espeak-ng, "
                         "or make sysdeps)")


def check_out(out: Path, args: TrainArgs) -> None:
    """An ``out`` that holds a checkpoint but no training state is a finished run (the committed model,
    a copied one): training there would start from scratch over it, so it takes ``overwrite``."""
    from evalsuite.model.weights import WEIGHTS_FILE

    if args.overwrite or (out / STATE_FILE).exists():
        return
    found = [f for f in (WEIGHTS_FILE, HISTORY_FILE) if (out / f).is_file()]
    if found:
        raise SystemExit(f"--out {out} holds a checkpoint ({', '.join(found)}) but no {STATE_FILE} to resume; "
                         f"expected a new folder or a run's own (start from it with --init {out} and another "
                         "--out, or re-make it in place from scratch with --overwrite)")


def warn_head_warmup(args: TrainArgs, start_stage: int) -> None:
    """An encoder stage that keeps its encoder still for ``head_warmup`` steps, given no more steps
    than that, trains only its new head: one line on stderr."""
    for s in args.stages[start_stage:]:
        spec, total = stage_named(s), args.steps_of(s)
        if spec.encoder is not None and 0 < spec.head_warmup and total <= spec.head_warmup:
            print(f"warning: stage {s} has {total} step(s), no more than its head_warmup of {spec.head_warmup}: "
                  "only its new head trains, the encoder stays as it is (give it more with --steps)",
                  file=sys.stderr)


def _evaluate_pending(out: Path, history: dict[str, Any], args: TrainArgs, progress: bool) -> None:
    """Evaluate the stage that ``history["pending_eval"]`` names (its checkpoint is the one in ``out``)
    and append its row. The marker is saved before the evaluation starts, so a run killed during it
    evaluates that stage when it resumes."""
    pending = history.pop("pending_eval")
    table = evaluate(out, f"after-{pending['stage']}", args.eval_n)
    history["evals"].append({"stage": pending["stage"], "global_step": pending["global_step"], "table": table,
                             "n": args.eval_n, "samples_per_s": pending.get("samples_per_s", 0)})
    if progress:
        print(bench_table(history), file=sys.stderr)


def _ctc_line(stage: str, counts: dict[str, int]) -> str:
    n, bad = counts["examples"], counts["infeasible"]
    return (f"stage {stage}: {bad} of {n} examples ({bad / max(1, n):.0%}) had fewer encoder frames than their "
            "transcript needs for CTC; their loss is zero (docs/training.md)")


def _train(args: TrainArgs, progress: bool, stop_after: int | None, feeds: list[StepFeed],
           saved: _Saved | None = None) -> dict[str, Any]:
    from tqdm import tqdm

    saved = saved or _Saved(Path(args.out), args.stages)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.curriculum not in CURRICULA:
        raise SystemExit(f"unknown curriculum {args.curriculum!r}; expected one of {list(CURRICULA)}")
    known = [s.name for s in CURRICULA[args.curriculum]]
    unknown = [s for s in args.stages if s not in known]
    if unknown:
        raise SystemExit(f"unknown stage(s) {unknown}; expected some of {known}")
    repeated = sorted({s for s in args.stages if args.stages.count(s) > 1})
    if repeated:
        raise SystemExit(f"stage(s) {repeated} listed more than once; expected each stage at most once")
    device = resolve_device(args.device)
    check_out(out, args)
    state = load_state(out, args)
    model, start_stage, init_history = initial_model(args, device)  # a resumed run then loads its state
    if state is None and args.init and start_stage >= len(args.stages):
        raise SystemExit(f"nothing to run: {args.init} already ran all {len(args.stages)} stages; append stages "
                         f"(e.g. --curriculum v2 --stages {','.join(args.stages)},video-dense)")
    needs_bins = [s for s in args.stages[start_stage:] if stage_named(s).locations]
    if needs_bins and not model.tokenizer.loc_bins:
        raise SystemExit(f"stage(s) {needs_bins} answer with location tokens; the model has none "
                         "(give it some with --loc-bins, e.g. 40)")
    check_speech(args, state["stage"] if state is not None else start_stage)
    warn_head_warmup(args, state["stage"] if state is not None else start_stage)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay, betas=(0.9, 0.98))
    history: dict[str, Any] = init_history or {"args": asdict(args), "curve": [], "evals": []}
    history["args"] = asdict(args)
    start_step = 0
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise _bad_state(out / STATE_FILE, f"its weights do not fit this run's model ({type(e).__name__}: "
                                               f"{(str(e).strip().splitlines() or [''])[0][:120]})") from None
        start_stage, start_step, history = state["stage"], state["step"], state["history"]
        history["args"] = asdict(args)  # an extended run records the stages it now runs
        if progress:
            print(f"resuming {out} at stage {args.stages[start_stage] if start_stage < len(args.stages) else 'done'} "
                  f"step {start_step}", file=sys.stderr)
    global_step = sum(args.steps_of(s) for s in args.stages[:start_stage]) + start_step
    saved.stage, saved.step, saved.now = start_stage, start_step, global_step
    if state is not None:
        saved.global_step = global_step
    if history.get("pending_eval"):  # killed during the evaluation after a stage: that stage's row first
        if args.eval_n > 0:
            model.eval()
            aux = (state or {}).get("aux")
            save_state(out, model, opt, start_stage, start_step, history, args, aux)
            _evaluate_pending(out, history, args, progress)
            save_state(out, model, opt, start_stage, start_step, history, args, aux)
            model.train()
        else:
            history.pop("pending_eval")
    if start_stage < len(args.stages):
        # `done` lists the stages of a finished run (an --init's included): one with stages still to
        # run is not finished, and its checkpoint is no longer the one after them (--init refuses it)
        history.pop("done", None)
    pools = Pools(model.config, args.pool_sizes)
    feed = StepFeed(pools, args.seed, args.batch, args.workers)
    feeds.append(feed)
    steps_before = global_step

    def save(stage_index: int, step: int, aux: dict[str, Any] | None = None) -> None:
        save_state(out, model, opt, stage_index, step, history, args, aux)
        saved.stage, saved.step, saved.global_step = stage_index, step, global_step

    for k in range(start_stage, len(args.stages)):
        stage = args.stages[k]
        total = args.steps_of(stage)
        first = start_step if k == start_stage else 0
        spec = stage_named(stage)
        if first == 0 and spec.reinit:
            fresh = dict(build_omni(model.config, seed=args.seed).named_parameters())
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name.startswith(spec.reinit):
                        p.copy_(fresh[name])
                        opt.state.pop(p, None)  # its Adam moments belonged to the old values
        if first == 0 and spec.reinflate:
            model.video.tubelet_embed.inflate_from(model.vision.patch_embed)
            for p in model.video.tubelet_embed.parameters():
                opt.state.pop(p, None)
        if first == 0 and spec.locations:  # location rows start from the image position table
            init_locations(model, opt)
        head = head_opt = None
        if spec.encoder is not None:  # the encoder alone, with its own head and optimizer
            head = (video_state_head(model, args.seed, k) if spec.encoder == "video"
                    else ctc_head(model, spec.encoder, args.seed, k))
            head_opt = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=args.weight_decay,
                                         betas=(0.9, 0.98))
            if first and state is not None and state.get("aux"):
                try:
                    head.load_state_dict(state["aux"]["head"])
                    head_opt.load_state_dict(state["aux"]["opt"])
                except (RuntimeError, ValueError, KeyError, TypeError) as e:
                    raise _bad_state(out / STATE_FILE, f"its {stage} head does not fit this run's ({type(e).__name__}: "
                                                       f"{(str(e).strip().splitlines() or [''])[0][:120]})") from None
        held = frozen_prefixes(stage, args.curriculum)
        frozen = [p for name, p in model.named_parameters() if name.startswith(held) and p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)

        def aux() -> dict[str, Any] | None:
            return None if head is None else {"head": head.state_dict(), "opt": head_opt.state_dict()}
        # a CTC stage counts the examples whose encoder frames are too few for their transcript (their
        # loss is zeroed): per stage in the history, per curve point as a fraction
        ctc = spec.encoder in ("audio", "image", "tokens")
        counts = history.setdefault("ctc_infeasible", {}).setdefault(stage, {"examples": 0, "infeasible": 0}) \
            if ctc else None
        if counts is not None and first == 0:
            counts.update(examples=0, infeasible=0)
        bar = tqdm(range(first, total), desc=f"stage {stage}", disable=not progress, mininterval=5.0,
                   initial=first, total=total)
        t0, seen, loss_acc, n_acc, bad_acc = time.perf_counter(), 0, 0.0, 0, 0
        for step in bar:
            examples = feed.step(k, step, stage, total)
            for group in opt.param_groups + (head_opt.param_groups if head_opt else []):
                group["lr"] = lr_at(step, total, args.lr)
            stats: dict[str, int] = {}
            loss, _ = (batch_loss(model, examples, batch_video=args.batch_video) if head is None
                       else video_state_loss(model, head, examples) if spec.encoder == "video"
                       else ctc_batch_loss(model, head, examples, spec.encoder, stats=stats))
            opt.zero_grad(set_to_none=True)
            if head_opt is not None:
                head_opt.zero_grad(set_to_none=True)
            loss.backward()
            # parameters without a gradient (frozen, or outside an encoder stage's encoder) are skipped
            # by the clipping and left untouched by AdamW, weight decay included
            torch.nn.utils.clip_grad_norm_(list(model.parameters()) + (list(head.parameters()) if head else []), 1.0)
            if step >= spec.head_warmup:
                opt.step()
            if head_opt is not None:
                head_opt.step()
            global_step += 1
            saved.now = global_step
            seen += len(examples)
            loss_acc += loss.item()
            n_acc += 1
            if counts is not None:
                counts["examples"] += len(examples)
                counts["infeasible"] += stats.get("infeasible", 0)
                bad_acc += stats.get("infeasible", 0)
            rate = seen / max(1e-9, time.perf_counter() - t0)
            bar.set_postfix(loss=f"{loss.item():.3f}", samples_s=f"{rate:.1f}", refresh=False)
            if (step + 1) % 25 == 0 or step + 1 == total:
                point = {"stage": stage, "step": step + 1, "global_step": global_step,
                         "loss": round(loss_acc / n_acc, 4), "samples_per_s": round(rate, 2)}
                if counts is not None:
                    point["ctc_infeasible"] = round(bad_acc / max(1, n_acc * args.batch), 4)
                history["curve"].append(point)
                loss_acc, n_acc, bad_acc = 0.0, 0, 0
            if (step + 1) % args.save_every == 0 and step + 1 < total:
                save(k, step + 1, aux())
            if stop_after is not None and global_step - steps_before >= stop_after and step + 1 < total:
                save(k, step + 1, aux())
                for p in frozen:
                    p.requires_grad_(True)
                bar.close()
                return _finish(out, history, args, progress)
        bar.close()
        if counts is not None and progress:
            print(_ctc_line(stage, counts), file=sys.stderr)
        for p in frozen:
            p.requires_grad_(True)
        model.eval()
        if args.eval_n > 0:  # saved with the stage: a run killed during the evaluation runs it on resume
            history["pending_eval"] = {"stage": stage, "global_step": global_step,
                                       "samples_per_s": history["curve"][-1]["samples_per_s"] if history["curve"] else 0}
        save(k + 1, 0)
        if args.eval_n > 0:
            _evaluate_pending(out, history, args, progress)
            save(k + 1, 0)
        model.train()
        # a budget spent exactly at the last stage's end: the run is finished, so it is marked so below
        if stop_after is not None and global_step - steps_before >= stop_after and k + 1 < len(args.stages):
            return _finish(out, history, args, progress)
    if (out / STATE_FILE).is_file() and history.get("done") != list(args.stages):
        history["done"] = list(args.stages)  # the stages a finished run ran (it may be extended later)
        write_history(out, history)
    elif progress and state is not None and start_stage >= len(args.stages):
        print(f"{out} already ran all {len(args.stages)} stages; nothing to run", file=sys.stderr)
    return _finish(out, history, args, progress)


def _finish(out: Path, history: dict[str, Any], args: TrainArgs, progress: bool) -> dict[str, Any]:
    """With ``bench``: the table into BENCHMARKS.md where the run is finished (every stage of its
    curriculum done), else one line saying why not."""
    if args.bench:
        curriculum = [s.name for s in CURRICULA[args.curriculum]]
        done = list(history.get("done") or [])
        why = ("" if done == curriculum and history.get("evals") else
               f"the run is not finished ({len(done)} of the {len(curriculum)} stages of curriculum "
               f"{args.curriculum} done)" if done != curriculum else "it has no per-stage evaluation (--eval-n 0)")
        if why:
            print(f"BENCHMARKS.md not written: {why}; --bench writes a finished run's table", file=sys.stderr)
        else:
            write_bench(history, args)
    return history


def write_bench(history: dict[str, Any], args: TrainArgs) -> None:
    """The per-stage table of a finished run into BENCHMARKS.md's "Training curriculum" section, with
    the stages and steps it ran and the command that ran it."""
    from bench.report import ROOT, device_line, update

    counts = eval_counts(history)
    samples = ("samples per stage in the n column" if len(counts) > 1
               else f"{next(iter(counts), None) or args.eval_n} samples")
    done = list(history.get("done") or args.stages)
    steps = ", ".join(f"{s} {args.steps_of(s)}" for s in done)
    command = args.command or f"python -m evalsuite.training --out {args.out} --bench"
    init = history.get("init") or {}
    start = f", from `{init['from']}` after its {len(init.get('done') or [])} stages" if init else ""
    body = (f"Per-stage evaluation of the trained `{args.preset}` model (`bf16`, each task's eval split, "
            f"{samples}, primary metric), {time.strftime('%Y-%m-%d')}, {device_line()}; "
            f"command: `{command}`; the {len(done)} stages of curriculum {args.curriculum}{start} with their steps: "
            f"{steps}; batch {args.batch}.\n\n" + bench_table(history))
    update(ROOT / "BENCHMARKS.md", "Training curriculum", body)
