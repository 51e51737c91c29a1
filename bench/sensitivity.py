"""Precision sensitivity: each quantizable layer's output SQNR under each format, measured on a few
calibration prompts, and the cheapest recipe that keeps every layer above a floor.

    python bench/sensitivity.py [--checkpoint DIR|random] [--tasks docqa,gui,videoqa,audioqa] [--n 4]
                                  [--floor-db 20] [--formats nvfp4,fp8,fp8-channel] [--json] [--out FILE]

Calibration. The first ``n`` good samples of each task's *train* split (never eval), as the harness
sends them (`Task.request`: messages and media settings), are embedded by the omni model (encoders
are BF16 in every recipe) and prefilled through the language model the way the reference backend
runs it on CPU: every weight rounded to BF16 and computed in float32, a KV cache of the recipe's dtype.

Measurement. A forward hook on every quantizable linear — ``backbone.layers.*.mixer.**`` less the
router and lm_head (`kernels.recipes.NEVER_QUANTIZED`) — takes the layer's input ``x`` and its
reference output ``y`` and runs the same ``x`` through the module that `evalsuite.kernels.swap.quantize_linear`
builds from that linear (`FP8Linear`: W8A8 with dynamic per-token activation scales; `NVFP4Linear`:
W4A16), summing over all calibration tokens

    SQNR_dB = 10 log10( Σ y² / Σ (y − y_q)² )

So each layer is measured alone, on reference inputs: the number says how much that one swap
perturbs that layer, not how errors add up through the stack. That is the end-to-end column: each
recipe's quantized model is prefilled on the same prompts and its logits (every position) compared
with the reference's, with the same formula. Routed experts see only the tokens routed to them; an
expert that got none is "unused": it has no measurement, never blocks the proposal, and takes the
most expensive format its measured siblings (the same projection of the other experts in its layer)
were given, or the cheapest candidate when no sibling was measured.

Proposal. Per layer, the cheapest candidate format (bytes as `evalsuite.model.card.format_bytes` counts them:
nvfp4 < fp8 < fp8-channel < bf16) whose SQNR is at least the floor, else bf16. The choices become a
`Recipe`: the router / lm_head rules first, then the most general patterns (``*`` for a layer or
expert index, ``mixer.**`` for a whole mixer) on which every layer they match agrees, then single
layers; the recipe is checked to give every linear of the model exactly its choice. Its KV cache
stays BF16 (the KV cache's effect is not a layer's and is not measured per layer). ``--out`` writes
the recipe as JSON (`evalsuite.kernels.recipes.load` reads it back; `quantize_model` takes the result).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gpu import positive_int  # noqa: E402  (the bench scripts' shared option type)

from evalsuite.kernels import formats  # noqa: E402
from evalsuite.kernels.recipes import NEVER_QUANTIZED, Recipe, get, pattern_matches  # noqa: E402
from evalsuite.kernels.swap import cannot_quantize, plan, quantize_linear, quantize_model  # noqa: E402

CALIBRATION_TASKS: tuple[str, ...] = ("docqa", "gui", "videoqa", "audioqa")
# The format table's quantized formats, cheapest first.
QUANT_FORMATS: tuple[str, ...] = tuple(sorted(formats.quantized_names(),
                                              key=lambda f: formats.get(f).bits_per_weight(4096, 4096)))
BUILTIN_RECIPES: tuple[str, ...] = ("bf16", "fp8", "fp4", "fp4-all")
QUANTIZABLE = "backbone.layers.*.mixer.**"
DEFAULT_FLOOR_DB = 20.0


class UsageError(ValueError):
    """Bad command-line input; the message is one line saying what was expected."""


# ---- the number ---------------------------------------------------------------------------------
def sqnr_from_sums(signal: float, noise: float) -> float:
    """``10 log10(signal / noise)`` in dB: inf when the noise is 0 (exact), nan when both are."""
    if noise == 0.0:
        return math.nan if signal == 0.0 else math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def sqnr_db(ref: torch.Tensor, approx: torch.Tensor) -> float:
    """SQNR of ``approx`` against ``ref`` in dB, summed in float64: ``10 log10(Σ ref² / Σ (ref − approx)²)``."""
    r = ref.detach().double()
    return sqnr_from_sums(float(r.square().sum()), float((r - approx.detach().double()).square().sum()))


# ---- per-layer measurement ----------------------------------------------------------------------
def is_quantizable(name: str, module: nn.Module) -> bool:
    """A linear of the language backbone that a recipe may quantize (router and lm_head never are)."""
    return (isinstance(module, nn.Linear) and bool(name) and pattern_matches(QUANTIZABLE, name)
            and not any(pattern_matches(p, name) for p, _ in NEVER_QUANTIZED))


@dataclass
class LayerStats:
    """Sums over the calibration tokens of one linear: ``signal`` = Σ y², ``noise[fmt]`` = Σ (y − y_fmt)².
    ``unavailable[fmt]`` says why the layer cannot be stored in ``fmt`` (then it is not measured)."""

    name: str
    out_features: int
    in_features: int
    tokens: int = 0
    signal: float = 0.0
    noise: dict[str, float] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)

    @property
    def params(self) -> int:
        return self.out_features * self.in_features

    @property
    def unused(self) -> bool:
        """No calibration token reached the layer (a routed expert nobody chose)."""
        return self.tokens == 0

    def sqnr(self, fmt: str) -> float | None:
        """SQNR in dB of ``fmt`` on this layer; None when not measured (unused, unavailable, not asked).
        ``bf16`` is the reference itself: inf."""
        if fmt == "bf16":
            return math.inf
        if self.unused or fmt not in self.noise:
            return None
        return sqnr_from_sums(self.signal, self.noise[fmt])


@contextlib.contextmanager
def probe(model: nn.Module, formats: Sequence[str]) -> Iterator[dict[str, LayerStats]]:
    """Within the block, every forward of ``model`` adds to the yielded ``{layer name: LayerStats}``:
    each quantizable linear's reference output against the output of its ``formats`` versions on the
    same input. The model is not changed; the hooks are removed on exit."""
    stats: dict[str, LayerStats] = {}
    handles = []
    for name, module in model.named_modules():
        if not is_quantizable(name, module):
            continue
        st = stats[name] = LayerStats(name, module.out_features, module.in_features)
        quantized: dict[str, nn.Module] = {}
        for fmt in formats:
            problem = cannot_quantize(module, fmt)
            if problem:
                st.unavailable[fmt] = problem
            else:
                quantized[fmt] = quantize_linear(module, fmt)
                st.noise[fmt] = 0.0
        handles.append(module.register_forward_hook(_hook(st, quantized)))
    try:
        with torch.no_grad():
            yield stats
    finally:
        for h in handles:
            h.remove()


def _hook(st: LayerStats, quantized: dict[str, nn.Module]):  # -> forward hook
    def hook(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
        x = args[0]
        y = out.detach().float().reshape(-1, st.out_features)  # [..., N] -> [tokens, N]
        if y.shape[0] == 0:
            return
        st.tokens += y.shape[0]
        st.signal += float(y.double().square().sum())
        for fmt, qmod in quantized.items():
            yq = qmod(x).float().reshape(-1, st.out_features)
            st.noise[fmt] += float((y - yq).double().square().sum())

    return hook


# ---- calibration --------------------------------------------------------------------------------
@dataclass
class Calibration:
    """Prompt embeddings ``[1, T, D]`` of the calibration samples (``ids``: ``task/sample id``)."""

    embeds: list[torch.Tensor] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(e.shape[1] for e in self.embeds)


@torch.no_grad()
def calibration_prompts(model: nn.Module, tasks: Sequence[str], n: int) -> Calibration:
    """The first ``n`` good train-split samples of each task, embedded by ``model`` (an `OmniModel`).
    A sample whose media fail is skipped (and listed), the others go on."""
    import evalsuite.catalog  # noqa: F401  (registers the built-in tasks lazily)
    from evalsuite.registry import TASKS
    from evalsuite.model.omni import load_media

    cal = Calibration()
    for name in tasks:
        task = TASKS.get(name)(split="train", n=n)
        for sample in [s for s in task.samples() if s.error is None][:n]:
            req = task.request(sample)
            try:
                embeds, _, _ = model.embed_loaded(req.messages, load_media(req.messages, model.config, req.media))
            except Exception as e:  # one bad media file must not lose the other samples
                first = str(e).splitlines()[0] if str(e) else ""
                cal.skipped.append(f"{name}/{sample.id}: {type(e).__name__}: {first}")
                continue
            cal.embeds.append(embeds.float())
            cal.ids.append(f"{name}/{sample.id}")
    return cal


@torch.no_grad()
def prefill_logits(lm: nn.Module, embeds: torch.Tensor, kv_cache_dtype: str = "bf16") -> torch.Tensor:
    """Logits ``[T, V]`` (fp32) of a prompt ``[1, T, D]`` prefilled into a fresh one-slot state, as the
    engine prefills it."""
    state = lm.allocate_state(1, embeds.shape[1] + 1, kv_cache_dtype)
    return lm(inputs_embeds=embeds, state=state, slots=[0])[0]


def measure(lm: nn.Module, cal: Calibration, formats: Sequence[str]
            ) -> tuple[dict[str, LayerStats], list[torch.Tensor]]:
    """Per-layer stats of ``formats`` over the calibration prompts, and the reference logits."""
    from evalsuite.model import fastpath

    # the reference paths: the MoE decode fast path runs the experts as one stacked matmul, which
    # would bypass the per-expert hooks
    with probe(lm, formats) as stats, fastpath.reference_paths():
        ref = [prefill_logits(lm, e) for e in cal.embeds]
    return stats, ref


def logits_sqnr(lm: nn.Module, recipe: Recipe, cal: Calibration, ref_logits: Sequence[torch.Tensor]) -> float:
    """End-to-end SQNR (dB) of the logits of ``lm`` quantized by ``recipe`` (a copy; KV cache per
    the recipe) against the reference logits, over every position of every calibration prompt."""
    from evalsuite.model import fastpath

    qlm = quantize_model(copy.deepcopy(lm), recipe)
    signal = noise = 0.0
    for embeds, ref in zip(cal.embeds, ref_logits):
        with fastpath.reference_paths():  # the path the reference logits took (`measure`)
            q = prefill_logits(qlm, embeds, recipe.kv_cache_dtype).double()
        r = ref.double()
        signal += float(r.square().sum())
        noise += float((r - q).square().sum())
    return sqnr_from_sums(signal, noise)


# ---- proposal -----------------------------------------------------------------------------------
def format_cost(fmt: str, st: LayerStats) -> float:
    """Bytes of the layer's weight stored in ``fmt`` (`evalsuite.model.card.format_bytes`)."""
    from evalsuite.model.card import format_bytes

    return format_bytes(fmt, torch.empty(st.out_features, st.in_features, device="meta"))


def _sibling_key(name: str) -> str:
    return re.sub(r"\.experts\.\d+\.", ".experts.*.", name)


def choose_formats(stats: dict[str, LayerStats], floor_db: float, formats: Sequence[str]) -> dict[str, str]:
    """``{layer: format}``: the cheapest of ``formats`` whose SQNR ≥ ``floor_db``, else bf16. Unused
    layers take the most expensive choice of their measured siblings (the cheapest candidate if none)."""
    choices: dict[str, str] = {}
    for name, st in stats.items():
        if st.unused:
            continue
        passing = [f for f in formats if (s := st.sqnr(f)) is not None and s >= floor_db]
        choices[name] = min(passing, key=lambda f: format_cost(f, st), default="bf16")
    for name, st in stats.items():
        if not st.unused:
            continue
        key = _sibling_key(name)
        sibling = [choices[n] for n in choices if not stats[n].unused and _sibling_key(n) == key]
        if sibling:
            choices[name] = max(sibling, key=lambda f: format_cost(f, st))
        else:
            usable = [f for f in formats if f not in st.unavailable]
            choices[name] = min(usable, key=lambda f: format_cost(f, st), default="bf16")
    return {name: choices[name] for name in stats}  # module order


def _candidate_patterns(name: str) -> set[str]:
    """Generalisations of one layer name: its numeric components (layer, expert) as ``*``, and the
    whole mixer (``...mixer.**``) of this layer and of every layer."""
    comps = name.split(".")
    numeric = [i for i, c in enumerate(comps) if c.isdigit()]
    out: set[str] = set()
    for k in range(1, len(numeric) + 1):
        for subset in itertools.combinations(numeric, k):
            out.add(".".join("*" if i in subset else c for i, c in enumerate(comps)))
    if "mixer" in comps:
        m = comps.index("mixer")
        out.add(".".join(comps[:m + 1] + ["**"]))
        out.add(".".join(("*" if c.isdigit() else c) for c in comps[:m + 1]) + ".**")
    return out


def _cover(choices: dict[str, str], targets: Sequence[str]) -> list[tuple[int, str, str]]:
    """Rules ``(first layer index, pattern, format)`` giving every target layer its choice: the most
    general candidate patterns on which every layer they match (target or not) agrees, then single
    layers. Such rules never contradict each other, so their order among themselves does not matter."""
    names = list(choices)
    candidates: dict[str, list[str]] = {}
    for n in targets:
        for pattern in _candidate_patterns(n):
            if pattern not in candidates:
                candidates[pattern] = [m for m in names if pattern_matches(pattern, m)]
    consistent = [(p, ms) for p, ms in candidates.items() if len({choices[m] for m in ms}) == 1]
    consistent.sort(key=lambda pm: (-len(pm[1]), pm[0]))
    todo = set(targets)
    rules: list[tuple[int, str, str]] = []
    for pattern, matched in consistent:
        if todo.isdisjoint(matched):
            continue
        todo.difference_update(matched)
        rules.append((names.index(matched[0]), pattern, choices[matched[0]]))
    rules += [(names.index(n), n, choices[n]) for n in targets if n in todo]
    return sorted(rules)


def choices_to_rules(choices: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The per-layer choices as few ``(pattern, format)`` rules (names as in `evalsuite.kernels.recipes`), the
    shorter of: (a) rules for the quantized layers only (bf16 is the default), or (b) rules for the
    layers that differ from one format ``f``, followed by ``backbone.layers.*.mixer.** -> f``."""
    names = list(choices)
    best = [(p, f) for _, p, f in _cover(choices, [n for n in names if choices[n] != "bf16"])]
    for fmt in dict.fromkeys(f for f in choices.values() if f != "bf16"):
        rules = [(p, f) for _, p, f in _cover(choices, [n for n in names if choices[n] != fmt])]
        rules.append((QUANTIZABLE, fmt))
        if len(rules) < len(best):
            best = rules
    return tuple(best)


def propose(stats: dict[str, LayerStats], floor_db: float, formats: Sequence[str] = QUANT_FORMATS,
            name: str | None = None) -> tuple[Recipe, dict[str, str]]:
    """The cheapest recipe keeping every measured layer at or above ``floor_db``, and its per-layer choices."""
    choices = choose_formats(stats, floor_db, formats)
    name = name or f"sensitivity-{floor_db:g}dB"
    recipe = Recipe(name, f"cheapest of {'/'.join(formats)} per layer with output SQNR >= {floor_db:g} dB "
                          "on calibration prompts (python bench/sensitivity.py); router, lm_head, encoders BF16",
                    rules=NEVER_QUANTIZED + choices_to_rules(choices))
    wrong = [n for n, f in choices.items() if recipe.format_for(n) != f]
    if wrong:  # a bug in the pattern compression, never a user error
        w = wrong[0]
        raise RuntimeError(f"proposed recipe gives {w} {recipe.format_for(w)}, chosen {choices[w]}")
    return recipe, choices


def check_recipe(model: nn.Module, recipe: Recipe, choices: dict[str, str]) -> None:
    """Every linear of ``model`` gets its choice from ``recipe`` (names matched on their end) and every
    other linear (router, lm_head, encoders) stays bf16; raises RuntimeError otherwise."""
    for name, fmt in plan(model, recipe).items():
        want = next((f for n, f in choices.items() if name == n or name.endswith("." + n)), "bf16")
        if fmt != want:
            raise RuntimeError(f"recipe {recipe.name!r} gives {name} {fmt}, expected {want}")


# ---- accounting and summaries -------------------------------------------------------------------
def linear_bytes(lm: nn.Module, recipe: Recipe) -> tuple[int, int]:
    """(bytes, weights) of every linear of ``lm`` stored as ``recipe`` says (`evalsuite.model.card.format_bytes`)."""
    from evalsuite.model.card import format_bytes

    total, weights = 0.0, 0
    for name, fmt in plan(lm, recipe).items():
        w = lm.get_submodule(name).weight
        total += format_bytes(fmt, w)
        weights += w.numel()
    return int(round(total)), weights


def recipe_summary(stats: dict[str, LayerStats], recipe: Recipe, floor_db: float) -> dict[str, Any]:
    """Which measured layers ``recipe`` quantizes, the lowest SQNR among them and how many miss the floor."""
    quantized = {n: recipe.format_for(n) for n in stats if recipe.format_for(n) != "bf16"}
    measured = {n: s for n, f in quantized.items() if (s := stats[n].sqnr(f)) is not None}
    worst = min(measured, key=lambda n: measured[n], default=None)
    return {
        "quantized_layers": len(quantized),
        "unused_layers": sum(stats[n].unused for n in quantized),
        "min_sqnr_db": measured[worst] if worst else None,
        "min_layer": worst,
        "layers_below_floor": sum(s < floor_db for s in measured.values()),
        "passes_floor": all(s >= floor_db for s in measured.values()),
    }


def analyse(model: nn.Module, tasks: Sequence[str] = CALIBRATION_TASKS, n: int = 4,
            floor_db: float = DEFAULT_FLOOR_DB, formats: Sequence[str] = QUANT_FORMATS) -> dict[str, Any]:
    """The whole command on an `OmniModel` (reference weights): calibration, per-layer SQNR, proposal,
    built-in recipes; a JSON-ready dict (``"recipe"`` holds the proposed `Recipe` object)."""
    from evalsuite.model.card import weight_bytes

    t0 = time.perf_counter()
    cal = calibration_prompts(model, tasks, n)
    if not cal.embeds:
        raise RuntimeError("no calibration sample could be embedded: " + "; ".join(cal.skipped[:3]))
    measured_formats = tuple(dict.fromkeys([*formats, "fp8", "nvfp4"]))  # the built-ins need both
    lm = model.lm
    stats, ref_logits = measure(lm, cal, measured_formats)
    recipe, choices = propose(stats, floor_db, formats)
    check_recipe(model, recipe, choices)
    recipes_out: dict[str, Any] = {}
    for r in [get(x) for x in BUILTIN_RECIPES] + [recipe]:
        nbytes, nweights = linear_bytes(lm, r)
        recipes_out[r.name] = {
            **recipe_summary(stats, r, floor_db),
            "logits_sqnr_db": math.inf if r.name == "bf16" else logits_sqnr(lm, r, cal, ref_logits),
            "linear_bytes": nbytes,
            "bits_per_weight": 8 * nbytes / max(nweights, 1),
            "backbone_bytes": weight_bytes(lm, r),
        }
    layers = [{
        "name": st.name, "params": st.params, "shape": [st.out_features, st.in_features], "tokens": st.tokens,
        "unused": st.unused, "sqnr_db": {f: st.sqnr(f) for f in measured_formats}, "chosen": choices[st.name],
    } for st in stats.values()]
    return {
        "floor_db": floor_db, "formats": list(formats), "tasks": list(tasks), "n_per_task": n,
        "samples": cal.ids, "skipped": cal.skipped, "calibration_tokens": cal.tokens,
        "layers": layers, "proposed": recipe.to_dict(), "recipe": recipe, "recipes": recipes_out,
        "seconds": time.perf_counter() - t0,
    }


# ---- output -------------------------------------------------------------------------------------
def _db(v: float | None) -> str:
    if v is None:
        return "-"
    return "inf" if math.isinf(v) and v > 0 else f"{v:.1f}"


def render(res: dict[str, Any]) -> str:
    """The readable report: per-layer table, proposed recipe, built-in recipes against the floor."""
    fmts = list(res["layers"][0]["sqnr_db"]) if res["layers"] else []
    floor = res["floor_db"]
    w = max([len(layer["name"]) for layer in res["layers"]] + [5])
    head = f"{'layer':<{w}}  {'params':>7}  {'tokens':>6}  " + "  ".join(f"{f:>11}" for f in fmts) + "  chosen"
    lines = [f"output SQNR (dB) per layer and format; floor {floor:g} dB; "
             f"{len(res['samples'])} calibration prompts ({res['calibration_tokens']} tokens) from the train "
             f"split of {', '.join(res['tasks'])}", head, "-" * len(head)]
    for layer in res["layers"]:
        cells = "  ".join(f"{_db(layer['sqnr_db'][f]):>11}" for f in fmts)
        chosen = layer["chosen"] + ("  (unused)" if layer["unused"] else "")
        lines.append(f"{layer['name']:<{w}}  {layer['params']:>7,}  {layer['tokens']:>6}  {cells}  {chosen}")
    p = res["proposed"]
    lines += ["", f"proposed recipe {p['name']!r} (kv cache {p['kv_cache_dtype']}, default {p['default']}):"]
    lines += [f"  {pat:<{w}}  {fmt}" for pat, fmt in p["rules"]]
    lines += ["", f"{'recipe':<22} {'quantized':>9} {'min layer SQNR':>14} {'below floor':>11} {'logits SQNR':>11} "
                  f"{'linear bytes':>12} {'bits/w':>6}  lowest layer"]
    for name, r in res["recipes"].items():
        lines.append(f"{name:<22} {r['quantized_layers']:>9} {_db(r['min_sqnr_db']):>14} "
                     f"{r['layers_below_floor']:>11} {_db(r['logits_sqnr_db']):>11} {r['linear_bytes']:>12,} "
                     f"{r['bits_per_weight']:>6.2f}  {r['min_layer'] or '-'}")
    for s in res["skipped"]:
        lines.append(f"skipped {s}")
    total = f", {res['total_seconds']:.1f} s with loading" if "total_seconds" in res else ""
    lines.append(f"({res['seconds']:.1f} s calibration, measurement and proposal{total})")
    return "\n".join(lines)


def to_json(res: dict[str, Any]) -> str:
    """``res`` as JSON (inf/nan SQNR as null, as in every results file)."""
    from evalsuite.results import dumps

    return dumps({k: v for k, v in res.items() if k != "recipe"}, indent=2)


# ---- command line -------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  (one line, no usage block)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _names(kind: str, allowed: Sequence[str]):  # -> argparse type
    def parse(text: str) -> list[str]:
        items = [s.strip() for s in text.split(",") if s.strip()]
        bad = [s for s in items if s not in allowed]
        if bad or not items:
            what = f"unknown {kind} {bad[0]!r}" if bad else f"no {kind}"
            if bad and bad[0] == "bf16":
                what = "bf16 is the reference (every layer's fallback), not a candidate"
            raise argparse.ArgumentTypeError(f"{what}; expected a comma-separated list of: {', '.join(allowed)}")
        return list(dict.fromkeys(items))

    return parse


def _floor(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number of dB, got {text!r}")
    return v



def load_model(checkpoint: str | None) -> tuple[nn.Module, str]:
    """The omni model as the reference backend holds it on CPU (weights rounded to BF16, float32),
    and a note saying where it came from. ``checkpoint``: a directory, ``random`` (seed-0 init), or
    None for the backend's choice ($EVALSUITE_CHECKPOINT, else evalsuite/model/checkpoints/tiny, else random)."""
    from evalsuite.backends.reference import CHECKPOINT_ENV, INIT_SEED, RANDOM_INIT, round_params_to_bf16
    from evalsuite.model import weights
    from evalsuite.model.omni import build_omni

    src = checkpoint if checkpoint is not None else os.environ.get(CHECKPOINT_ENV)
    if src is None:
        src = str(weights.DEFAULT_DIR) if (weights.DEFAULT_DIR / weights.CONFIG_FILE).is_file() else RANDOM_INIT
    if src == RANDOM_INIT:
        model, note = build_omni("tiny", seed=INIT_SEED), f"random-init seed {INIT_SEED} (untrained)"
    else:
        path = Path(src)
        if not (path / weights.CONFIG_FILE).is_file():
            raise UsageError(f"checkpoint {src}: expected a directory holding {weights.CONFIG_FILE} and "
                             f"{weights.WEIGHTS_FILE}, or '{RANDOM_INIT}'")
        try:
            model = weights.load(path)
        except (OSError, ValueError) as e:  # a damaged config or weights file is a ValueError of weights.load
            raise UsageError(f"cannot load the checkpoint {path}: {str(e).splitlines()[0]}") from None
        note = f"checkpoint {path}"
    model = model.float().eval()
    round_params_to_bf16(model)
    return model, note


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python bench/sensitivity.py", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="checkpoint directory or 'random' (default: as the reference backend)")
    parser.add_argument("--tasks", type=_names("task", CALIBRATION_TASKS), default=list(CALIBRATION_TASKS),
                        help=f"calibration tasks (train split), default {','.join(CALIBRATION_TASKS)}")
    parser.add_argument("--n", type=positive_int, default=4, help="calibration samples per task (default 4)")
    parser.add_argument("--floor-db", type=_floor, default=DEFAULT_FLOOR_DB,
                        help=f"lowest acceptable layer output SQNR in dB (default {DEFAULT_FLOOR_DB:g})")
    parser.add_argument("--formats", type=_names("format", QUANT_FORMATS), default=list(QUANT_FORMATS),
                        help=f"candidate formats (bf16 is always the fallback), default {','.join(QUANT_FORMATS)}")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--out", help="write the proposed recipe as JSON to this file")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    if args.out and Path(args.out).is_dir():
        parser.error(f"--out {args.out} is a directory; expected a file name for the recipe JSON")
    try:
        model, note = load_model(args.checkpoint)
    except UsageError as e:
        parser.error(str(e))
    with torch.inference_mode():
        res = analyse(model, args.tasks, args.n, args.floor_db, args.formats)
    res = {"weights": note, **res, "total_seconds": time.perf_counter() - t0}
    if args.out:
        from evalsuite.results import atomic_write_json

        try:
            atomic_write_json(args.out, res["recipe"].to_dict())
        except OSError as e:
            print(f"{parser.prog}: error: cannot write {args.out}: {e.strerror or e}", file=sys.stderr)
            return 1
    print(to_json(res) if args.json else f"weights: {note}\n" + render(res)
          + (f"\nrecipe written to {args.out}" if args.out else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
