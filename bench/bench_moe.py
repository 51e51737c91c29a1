"""Routed experts of one MoE layer: the expert loop against the grouped path (and the dense path where it applies).

    python bench/bench_moe.py [--config tiny|full] [--tokens 1,8,106,848] [--formats bf16,nvfp4,fp8]

One `MoE` layer with random weights (the tiny or the full-size config), its experts in each format
(``bf16`` plain, ``nvfp4`` / ``fp8`` swapped in as by a recipe), routed by its own router on random
tokens. Times `MoE.routed_loop` (the reference loop over experts), `GroupedExperts` (the grouped path)
and `StackedExperts` (dense, plain experts only), best of ``--repeats`` batches of calls: on CPU in
this process's CPU seconds with one thread (other load on a shared machine moves that less than wall
time), on CUDA in wall time between synchronizations. Prints a markdown table with each path's
microseconds per call, the grouped path's speedup over the loop, and its largest difference from the
loop relative to the loop's largest value (a check, not a figure of merit). Both fast paths are
compared with the loop before they are timed: a case where either differs by more than ``TOLERANCE``
of the loop's largest value is not timed (its row says which path differs) and the command exits 1.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gpu import _Parser, one_of, positive_int  # noqa: E402  (one option parser for the bench scripts)

# Largest |fast path - loop| / max |loop| taken as the same answer: the dense path sums in another order
# in bf16 (0.2-0.5% on the tiny config); the grouped path equals the loop on CPU.
TOLERANCE = 2e-2


def _timer(device: torch.device, fn, calls: int, repeats: int) -> float:
    """Best microseconds per call of ``fn`` over ``repeats`` batches of ``calls`` calls."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(calls):
                fn()
            torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
        else:
            t = time.process_time()
            for _ in range(calls):
                fn()
            best = min(best, time.process_time() - t)
    return best / calls * 1e6


def _token_counts(text: str) -> list[int]:
    try:
        return [positive_int(t) for t in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected comma-separated token counts >= 1, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    from evalsuite.kernels import formats

    p = _Parser(prog="python bench/bench_moe.py", description=__doc__.splitlines()[0])
    p.add_argument("--config", default="tiny", choices=["tiny", "full"])
    p.add_argument("--tokens", type=_token_counts, default="1,8,106,848", help="comma-separated token counts (>= 1)")
    p.add_argument("--formats", type=one_of(("bf16", *formats.quantized_names()), "expert formats"),
                   default="bf16,nvfp4,fp8")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed batches per path, the best kept (>= 1)")
    p.add_argument("--calls", type=positive_int, default=20, help="calls per timed batch (>= 1)")
    args = p.parse_args(argv)

    from evalsuite import kernels
    from evalsuite.kernels.recipes import Recipe
    from evalsuite.model.config import BackboneConfig
    from evalsuite.model.moe import MoE

    torch.set_num_threads(1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = BackboneConfig.preset("tiny" if args.config == "tiny" else "nano-omni-30b-a3b")
    torch.manual_seed(0)
    print(f"Device: {torch.cuda.get_device_name() if device.type == 'cuda' else platform.processor() or 'CPU'}, "
          f"torch {torch.__version__}, config {args.config} ({cfg.n_routed_experts} experts, top-{cfg.num_experts_per_tok}, "
          f"d {cfg.moe_latent_size or cfg.hidden_size}, I {cfg.moe_intermediate_size}).\n")  # fmt: skip
    print("| format | tokens | loop µs | grouped µs | dense µs | grouped vs loop | max diff / max |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    wrong = 0
    for fmt in args.formats:
        with torch.no_grad():
            moe = MoE(cfg).to(device=device, dtype=torch.bfloat16)
            for lin in moe.modules():
                if isinstance(lin, torch.nn.Linear):
                    torch.nn.init.normal_(lin.weight, std=0.02)
            torch.nn.init.normal_(moe.gate.weight, std=0.3)
        if fmt != "bf16":
            kernels.quantize_model(moe, Recipe(fmt, "", rules=(("experts.*.*", fmt),)))
        d = moe.experts[0].up_proj.in_features
        for n in args.tokens:
            x = torch.randn(n, d, device=device, dtype=torch.bfloat16)
            weights, idx = moe.gate(x)
            with torch.no_grad():
                grouped, stacked = moe.grouped_experts(), moe.stacked_experts()
                if grouped is None:
                    print(f"| {fmt} | {n} | | | | not groupable here | |")
                    continue
                ref = moe.routed_loop(x, weights, idx)
                scale = max(ref.abs().max().item(), 1e-30)
                diff = (grouped(x, weights, idx) - ref).abs().max().item() / scale
                dense_diff = 0.0 if stacked is None else (stacked(x, weights, idx) - ref).abs().max().item() / scale
                if max(diff, dense_diff) > TOLERANCE:  # checked before timing: a wrong answer is no speedup
                    which = "grouped" if diff > TOLERANCE else "dense"
                    print(f"| {fmt} | {n} | | | | {which} differs from the loop, not timed | {max(diff, dense_diff):.1e} |")
                    wrong += 1
                    continue
                loop_us = _timer(device, lambda: moe.routed_loop(x, weights, idx), args.calls, args.repeats)
                grouped_us = _timer(device, lambda: grouped(x, weights, idx), args.calls, args.repeats)
                dense = ""
                if stacked is not None:
                    dense = f"{_timer(device, lambda: stacked(x, weights, idx), args.calls, args.repeats):,.0f}"
            print(f"| {fmt} | {n} | {loop_us:,.0f} | {grouped_us:,.0f} | {dense} | {loop_us / grouped_us:.2f}x | {diff:.1e} |")
    if wrong:
        print(f"bench_moe: {wrong} case(s) not timed: a fast path differs from the loop by more than {TOLERANCE:g} "
              "of the loop's largest value", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
