"""Backbone speed on this machine: prefill cost per token vs length, and decode tokens/s.

    python bench/bench_backbone.py [--lengths 1024 2048 4096 8192] [--decode-steps 32] [--skip-prefill | --skip-decode]

1. Prefill: time per token of one full forward pass at each length (up to 32768 and beyond: attention
   runs through torch SDPA's flash kernel, never a T x T score matrix), for the tiny hybrid backbone and
   for an attention-only model of the same width and depth (every `M` of the pattern replaced by
   `*`), and for a model without attention (every `*` replaced by `M`). Without attention the cost
   per token stays flat (the chunked scan is linear in length); attention's grows with length.
2. Decode: tokens/s of one-token steps at batch 1 and 16 after a short prompt, for this backbone
   (preallocated state, `decode_step`) and for transformers' NemotronH on the same config and the
   same weights (exported with `export_hf`, run through its pure-torch path and its own cache).

Prints a markdown table; it does not write BENCHMARKS.md.
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gpu import _Parser, positive_int  # noqa: E402  (one option parser for the bench scripts)

from evalsuite.model.backbone import LanguageModel, build, decode_step, export_hf, prefill  # noqa: E402
from evalsuite.model.config import BackboneConfig  # noqa: E402


# wall time by default; `--cpu-time` uses this process's CPU time instead (with one torch thread it
# matches wall time on a quiet machine, and it leaves out the time a loaded machine runs other work)
clock = time.perf_counter


def best_of(fn, repeats: int, budget_s: float = 20.0) -> float:  # type: ignore[no-untyped-def]
    """Smallest wall time of up to `repeats` calls, in seconds; no new call starts once `budget_s` is
    spent (a 32K-token attention-only prefill takes tens of seconds on one core: one run is enough)."""
    times: list[float] = []
    while len(times) < repeats and sum(times) < budget_s:
        start = clock()
        fn()
        times.append(clock() - start)
    return min(times)


@torch.no_grad()
def bench_prefill(lengths: list[int], repeats: int) -> list[tuple[int, float, float, float]]:
    hybrid_cfg = BackboneConfig.preset("tiny")
    attn_cfg = hybrid_cfg.replace(hybrid_override_pattern=hybrid_cfg.hybrid_override_pattern.replace("M", "*"))
    torch.manual_seed(0)
    mamba_cfg = hybrid_cfg.replace(hybrid_override_pattern=hybrid_cfg.hybrid_override_pattern.replace("*", "M"))
    models = {"hybrid": build(hybrid_cfg).eval(), "attention": build(attn_cfg).eval(),
              "mamba": build(mamba_cfg).eval()}
    rows = []
    for n in lengths:
        ids = torch.randint(0, hybrid_cfg.vocab_size, (1, n))
        us = {k: best_of(lambda m=m: m.hidden_states(ids), repeats) / n * 1e6 for k, m in models.items()}
        rows.append((n, us["hybrid"], us["attention"], us["mamba"]))
        print(f"  prefill {n}: " + ", ".join(f"{k} {v:.2f} us/tok" for k, v in us.items()), file=sys.stderr)
    return rows


@torch.no_grad()
def decode_ours(model: LanguageModel, prompt: torch.Tensor, steps: int) -> float:
    b = prompt.shape[0]
    state = model.allocate_state(n_slots=b, max_len=prompt.shape[1] + steps + 1)
    token = prefill(model, prompt, state).argmax(-1)
    start = clock()
    for _ in range(steps):
        token = decode_step(model, token, state).argmax(-1)
    return b * steps / (clock() - start)


@torch.no_grad()
def decode_transformers(model: torch.nn.Module, prompt: torch.Tensor, steps: int) -> float:
    b = prompt.shape[0]
    out = model(prompt, use_cache=True)
    cache, token = out.past_key_values, out.logits[:, -1].argmax(-1)
    start = clock()
    for _ in range(steps):
        out = model(token[:, None], past_key_values=cache, use_cache=True)
        cache, token = out.past_key_values, out.logits[:, -1].argmax(-1)
    return b * steps / (clock() - start)


def bench_decode(batches: list[int], steps: int, prompt_len: int, repeats: int) -> list[tuple[int, float, float]]:
    from transformers import NemotronHForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    ours = build(BackboneConfig.preset("tiny")).eval()
    with tempfile.TemporaryDirectory() as tmp:
        export_hf(ours, tmp)
        ref = NemotronHForCausalLM.from_pretrained(tmp).eval()
    rows = []
    for b in batches:
        prompt = torch.randint(0, ours.config.vocab_size, (b, prompt_len))
        with torch.no_grad():  # same weights -> same greedy continuation; check the first token agrees
            assert torch.equal(ref(prompt).logits[:, -1].argmax(-1), ours(prompt)[:, -1].argmax(-1))
        ours_tps = ref_tps = 0.0
        for _ in range(repeats):  # interleaved, best of: the machine may be shared
            ours_tps = max(ours_tps, decode_ours(ours, prompt, steps))
            ref_tps = max(ref_tps, decode_transformers(ref, prompt, steps))
        rows.append((b, ours_tps, ref_tps))
        print(f"  decode batch {b}: ours {ours_tps:.0f} tok/s, transformers {ref_tps:.0f} tok/s", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python bench/bench_backbone.py", description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=positive_int, nargs="+", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--batches", type=positive_int, nargs="+", default=[1, 16])
    parser.add_argument("--decode-steps", type=positive_int, default=32)
    parser.add_argument("--prompt-len", type=positive_int, default=32)
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads (1: steadier on a shared machine)")
    parser.add_argument("--skip-prefill", action="store_true", help="only the decode table")
    parser.add_argument("--skip-decode", action="store_true", help="only the prefill table")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time with process CPU time instead of wall time (steadier on a loaded machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    global clock
    if args.cpu_time:
        clock = time.process_time

    print(f"device: CPU ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {'CPU' if args.cpu_time else 'wall'} time; "
          f"tiny preset {BackboneConfig.preset('tiny').hybrid_override_pattern}")
    if not args.skip_prefill:
        prefill_rows = bench_prefill(args.lengths, args.repeats)
        print("\n| prefill tokens | hybrid us/token | attention-only us/token | no-attention (* -> M) us/token |\n"
              "|---:|---:|---:|---:|")
        for n, h, a, m in prefill_rows:
            print(f"| {n} | {h:.2f} | {a:.2f} | {m:.2f} |")
    if not args.skip_decode:
        decode_rows = bench_decode(args.batches, args.decode_steps, args.prompt_len, args.repeats)
        print(f"\n| decode batch | ours tok/s | transformers NemotronH tok/s | speed-up |\n|---:|---:|---:|---:|")
        for b, o, r in decode_rows:
            print(f"| {b} | {o:.0f} | {r:.0f} | {o / r:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
