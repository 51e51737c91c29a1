"""NVFP4 W4A16 for skinny activations (decode, M <= 16) and a fast dequantize for large M.

Same contract and packed layout as `kernels.triton.nvfp4_gemm` (``qdata`` uint8 ``[N, K/2]``, first
value of each pair in the low nibble; ``block_scales`` E4M3 ``[N, K/16]``; fp32 ``global_scale``);
`nvfp4_gemm_ref` there is the oracle for both kernels here.

Why a second kernel. At M <= 16 a W4A16 GEMM is a weight stream: every packed byte is read once and
used M times, so the only goal is to move ``N*K/2`` bytes at the memory's speed. The tiled kernel
gives one program per output tile, which at M = 1 is ``N / BLOCK_N`` programs: a few hundred for
an 8192-wide layer, too few to keep 132 SMs' memory pipes busy. `nvfp4_gemv` therefore

1. splits K as well as N (``SPLIT_K`` programs per column strip), so there are several programs per
   SM whatever the layer's width; the last split to finish a tile adds the fp32 partials in split
   order and writes the output (`split_k_store`), so a call is one kernel launch;
2. reads the packed weight row-major as ``[BLOCK_N, BLOCK_K/8]`` int32 words (eight values each,
   in k order from the low nibble), each row's words contiguous: the row's start is computed in
   bytes and only then read as words, and the packed row length ``K/2`` is its own integer argument,
   so that Triton's divisibility specialization lets the mask stand for 16 bytes: 128-bit loads
   (read in the PTX by `kernels.triton.static`; a stride in words, K/8, is often not divisible by 16);
3. decodes E2M1 a word at a time (`decode.e2m1_words`): on sm_89+ inline PTX moves each nibble's
   bits into E4M3 positions for four bytes at once (``s e1 e0 m -> s 0 0 e1 e0 m 0 0``: every E2M1
   value becomes the E4M3 value 2^-6 times it, the 2^6 folded into the block scale) and
   ``cvt.rn.f16x2.e4m3x2`` turns two into fp16 per instruction (the same moves on bytes cost twice
   the instructions: Triton unpacks a loaded byte tile into one register per byte). The interpreter
   and older GPUs take the same structure in Triton ops per nibble;
4. multiplies one row of bf16/fp16 activations in fp16 (`decode.e2m1_block_dot`): a scale block's
   sixteen values stay in ``f16x2`` registers and meet the activations, prepared once per K step as
   fp16 pairs (`decode.x_f16_pairs`, each block of sixteen scaled by a power of two that puts its
   largest in [2^14, 2^15), undone on the block's fp32 sum), in four ``fma.rn.f16x2`` per word; the
   block's two eight-term sums go to fp32 and are added. Converting each value to fp32 and
   multiplying it there took a conversion and an FFMA per value: compiled for sm_90 the one-row loop
   costs 3.1-4.6 SASS instructions per weight value this way, 4.6-5.9 in fp32
   (`kernels.triton.static`, BENCHMARKS.md). The rounding it adds (fp16 products and sums of eight)
   is below a bf16 output's own and about an fp16 output's (1-2 units in the last place), at any
   activation magnitude. fp32 activations, and ``f16_products=False``, multiply in fp32: each word's
   eight values apart, against the activation split into the words' eight k positions;
5. loads each E4M3 block scale once per 16 values (the same conversion; 0x7F/0xFF are NaN); at
   one row four at a time, as an int32 word, where the scale rows allow it (`decode.scale_words`:
   K a multiple of 64, rows 4-byte aligned), and multiplies each block's (or word's) sum, not each
   value;
6. accumulates in fp32: for one row (``USE_DOT`` off) on the CUDA cores, a sum per block (or word)
   kept across the K loop and reduced once after it; for 2..16 rows one ``tl.dot`` with the rows
   padded to 16 (tensor cores), each word's eight values joined back into k order and the tile
   transposed in registers.

The global scale is applied to each partial sum (it is linear), the bias by the first K split.
``triton.autotune`` picks ``BLOCK_N``, ``BLOCK_K``, ``SPLIT_K`` and the warp count on the machine
that runs it, keyed on ``N``, ``K`` and the row bucket (`row_bucket`: 1 or 16).

`nvfp4_dequantize_triton` writes the bf16/fp16/fp32 weight in one pass (read 0.56 bytes, write 2
per value), for the large-M path of `NVFP4Linear`: dequantize, then the vendor matmul.
Its oracle is `kernels.nvfp4.dequantize`; the result is bit-identical.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from evalsuite.kernels.constants import NVFP4_BLOCK_SIZE
from evalsuite.kernels.triton import COMPILE_OPTIONS, HAS_TRITON, TRITON_MISSING_REASON, build_kernel, e4m3_convert
from evalsuite.kernels.triton.decode import scale_words, word_aligned, word_ptx
from evalsuite.kernels.triton.nvfp4_gemm import _check_operands

if HAS_TRITON:
    import triton
    import triton.language as tl
    import triton.testing

    from evalsuite.kernels.triton.decode import (e2m1_as_e4m3, e2m1_row_step, e2m1_tile, e2m1_words, e4m3_to_f32,
                                                 nvfp4_step, split8)

    _SUM = tl.standard._sum_combine

GEMV_MAX_M = 16  # the GEMV kernel handles up to this many activation rows
GEMV_DOT_MIN_ROWS = 16  # row bucket from which the GEMV multiplies with tl.dot (tensor cores)


def row_bucket(m: int) -> int:
    """Rows the kernel is compiled for: 1 (CUDA cores) or 16 (2..16 rows, tensor cores, padded).
    Two buckets keep the compiled variants (x autotune configs) few: each costs a compile on first use."""
    return 1 if m <= 1 else 16


def gemv_tiles(name: str, interpret: bool, block_n: int | None, block_k: int | None, split_k: int | None,
               default_block_k: int) -> tuple[bool, int | None, int | None, int | None]:
    """(explicit, block_n, block_k, split_k) of a GEMV call: all three given, or the interpreter's
    defaults (32, ``default_block_k``, 2) on CPU, is an explicit tile (checked); otherwise autotune."""
    explicit = block_n is not None and block_k is not None and split_k is not None
    if interpret and not explicit:
        block_n, block_k, split_k = block_n or 32, block_k or default_block_k, split_k or 2
        explicit = True
    if explicit and (block_k < 16 or block_k & (block_k - 1) or block_n < 16 or split_k < 1):  # type: ignore[operator]
        raise ValueError(f"{name}: block_k a power of two >= 16, block_n >= 16 and split_k >= 1, "
                         f"got {block_k}, {block_n}, {split_k}")  # fmt: skip
    return explicit, block_n, block_k, split_k


def launch_gemv(kernel: Callable[[str], Any], n: int, interpret: bool, tiles: tuple[bool, Any, Any, Any],
                args: tuple[Any, ...], consts: dict[str, Any]) -> None:
    """Run a split-K GEMV: one program per (BLOCK_N columns, K split); ``kernel(mode)`` gives the
    'interpret', 'jit' or 'autotune' variant."""
    explicit, block_n, block_k, split_k = tiles
    if explicit:
        kernel("interpret" if interpret else "jit")[(triton.cdiv(n, block_n), split_k)](
            *args, **consts, **COMPILE_OPTIONS, BLOCK_N=block_n, BLOCK_K=block_k, SPLIT_K=split_k
        )
    else:
        kernel("autotune")[lambda meta: (triton.cdiv(n, meta["BLOCK_N"]), meta["SPLIT_K"])](*args, **consts,
                                                                                             **COMPILE_OPTIONS)


GEMV_MAX_SPLIT_K = 8  # the most K splits an autotune config of the GEMV kernels uses
_COUNTERS: dict[str, torch.Tensor] = {}


def split_k_buffers(device: torch.device, m: int, n: int, split_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp32 partials for ``split_k`` splits of an ``[m, n]`` result, the tile counters) for
    `split_k_store`. The partials are fully overwritten (``torch.empty``: no kernel); the counters
    (one int32 per column tile, ``BLOCK_N`` >= 16) live per device and are left at zero by every
    launch, so one GEMV call is one kernel launch. Calls on one device must not overlap (one stream;
    a CUDA graph replays them in order)."""
    ws = torch.empty(split_k * m * n if split_k > 1 else 1, dtype=torch.float32, device=device)
    tiles, key = -(-n // 16), str(device)
    counters = _COUNTERS.get(key)
    if counters is None or counters.numel() < tiles:
        counters = _COUNTERS[key] = torch.zeros(max(tiles, 4096), dtype=torch.int32, device=device)
    return ws, counters


if HAS_TRITON:

    @triton.jit
    def split_k_store(acc, y_ptr, ws_ptr, cnt_ptr, offs_m, offs_n, mask, M, N, SPLIT_K: tl.constexpr):
        """Store a program's ``acc`` (fp32 ``[BLOCK_M, BLOCK_N]``, its K split's share of ``y``'s
        tile) with no atomics on ``y`` and no second kernel: one split casts and stores. With more,
        each program stores its partial into ``ws[pid_k]`` and takes a ticket on the tile's counter
        (acquire-release: the partials stored before a ticket are visible after it); the last to
        arrive adds the partials in split order (the same sum whatever the arrival order), stores
        ``y`` in its dtype and puts the counter back to zero for the next launch."""
        pid_n = tl.program_id(0)
        pid_k = tl.program_id(1)
        y_ptrs = y_ptr + offs_m[:, None] * N + offs_n[None, :]
        if SPLIT_K == 1:
            tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=mask)
        else:
            part = ws_ptr + offs_m[:, None] * N + offs_n[None, :]
            tl.store(part + pid_k * M * N, acc, mask=mask)
            ticket = tl.atomic_add(cnt_ptr + pid_n, 1, sem="acq_rel")
            if ticket == SPLIT_K - 1:
                total = tl.load(part, mask=mask, other=0.0, cache_modifier=".cg")
                for s in tl.static_range(1, SPLIT_K):
                    total += tl.load(part + s * M * N, mask=mask, other=0.0, cache_modifier=".cg")
                tl.store(y_ptrs, total.to(y_ptr.dtype.element_ty), mask=mask)
                tl.atomic_xchg(cnt_ptr + pid_n, 0)


def _nvfp4_gemv_kernel(
    x_ptr, w_ptr, s_ptr, gs_ptr, b_ptr, y_ptr, ws_ptr, cnt_ptr,
    M, N, K, KB,
    stride_xm, stride_xk, stride_wn, stride_sn,
    HAS_BIAS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    USE_DOT: tl.constexpr,
    DOT_FP32: tl.constexpr,
    INTERPRET: tl.constexpr,
    E4M3_CVT: tl.constexpr,
    WORD_PTX: tl.constexpr,
    F16_PRODUCTS: tl.constexpr,
    SCALE_WORDS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    SPLIT_K: tl.constexpr,
):  # fmt: skip
    # KB = K // 2, the packed row length, passed as its own argument: Triton specializes an integer
    # argument divisible by 16, and only then may the mask below be constant over 16 bytes (one
    # 128-bit load); derived from K it is known divisible by 8 only (64-bit loads).
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    G: tl.constexpr = BLOCK_K // 16  # scale blocks per K step
    COLS: tl.constexpr = BLOCK_K // 8  # int32 words per row per K step, eight values each
    tl.static_assert(USE_DOT or BLOCK_M == 1, "the CUDA-core path (USE_DOT off) is for one row")
    tl.static_assert(not (USE_DOT and F16_PRODUCTS), "fp16 products are the one-row path's")
    KW = KB // 4  # the row's length in words
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_g = tl.arange(0, G)
    offs_b = tl.arange(0, COLS)
    # each row's start in bytes, then read as int32 words: the byte stride keeps its divisibility by
    # 16 (Triton's specialization), which a stride in words (K/8) often lacks
    w_rows = (w_ptr + offs_n[:, None] * stride_wn).to(tl.pointer_type(tl.int32))
    offs_m = tl.arange(0, BLOCK_M)
    mask_n = offs_n < N
    mask_m = offs_m < M
    k_per_split = ((K + SPLIT_K - 1) // SPLIT_K + BLOCK_K - 1) // BLOCK_K * BLOCK_K  # (tl.cdiv is @jit)
    k_lo = pid_k * k_per_split
    k_hi = tl.where(k_lo + k_per_split < K, k_lo + k_per_split, K)
    acc = tl.full((BLOCK_M, BLOCK_N), 0.0, tl.float32)
    acc_w = tl.full((BLOCK_N, G, 2), 0.0, tl.float32)  # one row: per word, summed after the loop
    acc_b = tl.full((BLOCK_N, G), 0.0, tl.float32)  # one row, fp16 products: per scale block
    # packed words [BLOCK_N, BLOCK_K/8], row-major: each row's COLS words are contiguous. One row (no
    # tl.dot, which Triton does not pipeline) loads one K step ahead: each iteration issues the next
    # step's loads before decoding its own, so a thread has two steps' bytes in flight (sm_90 PTX:
    # the loads precede the step's FMAs, registers unchanged). At 16-32 bytes per thread per step
    # and 3-5 blocks of 4 warps per SM that doubles the bytes in flight per SM from 6-20 KB, about
    # what an H200 asks by Little's law (4.8 TB/s x ~0.7 us / 132 SMs: ~25 KB). (The FP8 GEMV reads
    # 64 bytes per thread per step at ~64 registers, up to 8 blocks per SM: no step ahead.) A step
    # past the split's end reads nothing: its limits are 0 (a select, so the mask keeps KB's
    # divisibility).
    s_rows = s_ptr + offs_n[:, None] * stride_sn
    if not USE_DOT:
        w_next, sb_next = nvfp4_step(w_rows, s_rows, k_lo, tl.where(k_lo < k_hi, KW, 0),
                                     tl.where(k_lo < k_hi, K // 16, 0), mask_n, offs_b, offs_g,
                                     SCALE_WORDS)  # fmt: skip
    for k0 in range(k_lo, k_hi, BLOCK_K):
        k1 = k0 if USE_DOT else k0 + BLOCK_K  # the step these loads are for
        w_new, sb_new = nvfp4_step(w_rows, s_rows, k1, tl.where(k1 < k_hi, KW, 0), tl.where(k1 < k_hi, K // 16, 0),
                                   mask_n, offs_b, offs_g, SCALE_WORDS)  # fmt: skip
        if USE_DOT:
            w = w_new
            sb = sb_new
        else:
            w = w_next
            sb = sb_next
            w_next = w_new
            sb_next = sb_new
        # block scales (E4M3; the 2^6 that the E2M1 decode leaves out is applied per value with
        # tl.dot, once at the end with one row)
        s_val = e4m3_to_f32(sb, E4M3_CVT, INTERPRET)  # [BLOCK_N, G]
        kk = k0 + tl.arange(0, BLOCK_K)
        if USE_DOT:
            # [BLOCK_N, BLOCK_K] scaled, in k order (`decode.e2m1_tile`), against [BLOCK_M, BLOCK_K]
            wt = tl.trans(e2m1_tile(w, s_val, WORD_PTX, E4M3_CVT, INTERPRET))
            xt = tl.load(x_ptr + offs_m[:, None] * stride_xm + kk[None, :] * stride_xk,
                         mask=mask_m[:, None] & (kk < K)[None, :], other=0.0)  # fmt: skip
            if DOT_FP32:
                acc += tl.dot(xt.to(tl.float32), wt, input_precision="ieee")
            else:
                acc += tl.dot(xt, wt.to(xt.dtype))
        else:
            xr = tl.load(x_ptr + kk * stride_xk, mask=kk < K, other=0.0).to(tl.float32)
            if F16_PRODUCTS:
                # each block's sixteen products and their sums in fp16, the two halves added in fp32
                # (`decode.e2m1_block_dot`: on sm_89+ four fma.rn.f16x2 a word), times its scale
                acc_b += e2m1_row_step(w, s_val, xr, WORD_PTX, E4M3_CVT, INTERPRET)
            else:
                # each word's eight values apart (v_j: k = 8c + j), on sm_89+ by `decode.E2M1X8_PTX`
                # (~3 instructions per value with the fp32 conversion, where byte-wise moves and a join
                # back into k order took ~8); the activation split to match
                v0, v1, v2, v3, v4, v5, v6, v7 = e2m1_words(w, WORD_PTX, E4M3_CVT, INTERPRET)  # [BLOCK_N, COLS] each
                # the activation in the words' order: x_j[c] = x[k0 + 8c + j]
                x_0, x_1, x_2, x_3, x_4, x_5, x_6, x_7 = split8(tl.reshape(xr, (COLS, 2, 2, 2)))
                prod = (v0 * x_0[None, :] + v1 * x_1[None, :] + v2 * x_2[None, :] + v3 * x_3[None, :]
                        + v4 * x_4[None, :] + v5 * x_5[None, :] + v6 * x_6[None, :] + v7 * x_7[None, :])  # fmt: skip
                acc_w += tl.reshape(prod, (BLOCK_N, G, 2)) * s_val[:, :, None]  # each word's block scale
    if not USE_DOT:
        # (tl.reduce with the sum combiner: tl.sum is @jit and cannot run in the interpreter)
        if F16_PRODUCTS:
            acc += tl.reduce(acc_b, 1, _SUM)[None, :] * 64.0  # the 2^6 of the decode
        else:
            acc += tl.reduce(tl.reduce(acc_w, 2, _SUM), 1, _SUM)[None, :] * 64.0
    acc = acc * tl.load(gs_ptr)
    if HAS_BIAS:
        bias = tl.load(b_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
        acc += tl.where(pid_k == 0, 1.0, 0.0) * bias[None, :]
    split_k_store(acc, y_ptr, ws_ptr, cnt_ptr, offs_m, offs_n, mask_m[:, None] & mask_n[None, :], M, N, SPLIT_K)


def _dequant_kernel(
    w_ptr, s_ptr, gs_ptr, out_ptr,
    N, K, KB,
    stride_wn, stride_sn, stride_on,
    INTERPRET: tl.constexpr,
    E4M3_CVT: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):  # fmt: skip
    # the decode of `_nvfp4_gemv_kernel` (KB = K // 2 for the same reason), written out in k order
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    G: tl.constexpr = BLOCK_K // 16
    HALF: tl.constexpr = BLOCK_K // 2
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    bcol = pid_k * HALF + tl.arange(0, HALF)
    blk = pid_k * G + tl.arange(0, G)
    mask_n = offs_n < N
    w = tl.load(w_ptr + offs_n[:, None] * stride_wn + bcol[None, :],
                mask=mask_n[:, None] & (bcol < KB)[None, :], other=0)  # fmt: skip
    sb = tl.load(s_ptr + offs_n[:, None] * stride_sn + blk[None, :],
                 mask=mask_n[:, None] & (blk < K // 16)[None, :], other=0)  # fmt: skip
    scale = (e4m3_to_f32(sb, E4M3_CVT, INTERPRET) * 64.0 * tl.load(gs_ptr))[:, :, None]  # x global, as the ref
    vals = e4m3_to_f32(tl.reshape(e2m1_as_e4m3(w), (BLOCK_N, G, 16)), E4M3_CVT, INTERPRET)
    vals = tl.reshape(vals * scale, (BLOCK_N, BLOCK_K))
    col = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    tl.store(out_ptr + offs_n[:, None] * stride_on + col[None, :], vals.to(out_ptr.dtype.element_ty),
             mask=mask_n[:, None] & (col < K)[None, :])  # fmt: skip


def _autotune_configs() -> list[Any]:
    """Tiles for H100/H200-class GPUs at M <= 16: narrow strips, long K steps, split-K 1..8; each at
    1 and 3 pipeline stages (`_prune_stages` keeps what the row bucket can use).

    Compiled for sm_90 (`kernels.triton.static`, shape 2688 x 1856): 16 or 32 packed bytes per thread
    per K step (BLOCK_N * BLOCK_K / 2 / (32 * warps)) take 64-122 registers at one row (fp16
    products, scale words), 94-162 at 16, and spill nothing; 64 bytes (64 x 512, one row only) take
    165-214 and cost the fewest instructions per value (~3.1: the step's fixed work spread over more
    values); 128 x 128 at 8 warps spilled at 16 rows."""
    cfgs = []
    for bn, bk, sk, warps in [
        (32, 256, 1, 4), (64, 256, 2, 4), (32, 512, 4, 4), (64, 256, 4, 4),
        (128, 64, 2, 4), (32, 256, 8, 4), (16, 512, 8, 4), (64, 128, 4, 4), (64, 512, 4, 4),
    ]:  # fmt: skip
        for stages in (1, 3):
            cfgs.append(triton.Config({"BLOCK_N": bn, "BLOCK_K": bk, "SPLIT_K": sk}, num_warps=warps,
                                      num_stages=stages))  # fmt: skip
    return cfgs


ONE_ROW_ONLY_TILE = 16384  # BLOCK_N * BLOCK_K above which a tile is tried at one row only


def _prune_stages(configs: list[Any], named_args: dict[str, Any], **kwargs: Any) -> list[Any]:
    """One row (no ``tl.dot``): Triton does not pipeline the loop, the stage count changes nothing, so
    only 1 is tried. 16 rows: 3 stages pipeline the weight through shared memory with 8-byte
    ``cp.async`` copies, 1 stage loads it straight into registers 16 bytes at a time (sm_90 PTX);
    which is faster is the GPU's to say, so both are timed; tiles over `ONE_ROW_ONLY_TILE` values
    (64 x 512: 255 registers at 16 rows) are not."""
    if kwargs.get("USE_DOT"):
        return [c for c in configs if c.kwargs["BLOCK_N"] * c.kwargs["BLOCK_K"] <= ONE_ROW_ONLY_TILE]
    return [c for c in configs if c.num_stages == 1]


AUTOTUNE_WARMUP_MS, AUTOTUNE_REP_MS = 5, 25  # per config: short, so a new shape costs well under a second


def autotuned(fn: Any, configs: list[Any], prune: Callable[..., list[Any]] | None = None) -> Any:
    """``fn`` jitted and autotuned on ``N``, ``K`` and the row bucket (nothing to reset between trials:
    `split_k_store` overwrites its buffers and leaves the counters at zero); ``prune(configs,
    named_args, **constexprs)`` narrows the configs per call (Triton's
    ``early_config_prune``)."""
    kwargs: dict[str, Any] = dict(configs=configs, key=["N", "K", "BLOCK_M"])
    if prune is not None:
        kwargs["prune_configs_by"] = {"early_config_prune": prune}

    def bench(kernel_call: Any, quantiles: Any) -> Any:
        return triton.testing.do_bench(kernel_call, warmup=AUTOTUNE_WARMUP_MS, rep=AUTOTUNE_REP_MS, quantiles=quantiles)

    try:
        return triton.autotune(**kwargs, do_bench=bench)(triton.jit(fn))
    except TypeError:  # a triton without the do_bench hook: its default timing
        return triton.autotune(**kwargs)(triton.jit(fn))


def _kernel(name: str, mode: str) -> Any:
    """``mode``: 'interpret' (CPU tensors), 'jit' (explicit tile) or 'autotune' (CUDA, gemv only)."""
    fn = _nvfp4_gemv_kernel if name == "gemv" else _dequant_kernel
    return build_kernel(fn, mode, lambda f: autotuned(f, _autotune_configs(), _prune_stages))


def tuned_tile(n: int, k: int, rows: int) -> dict[str, int] | None:
    """The tile (``block_n``, ``block_k``, ``split_k``) the autotuner chose on this machine for an
    ``[N, K]`` weight and ``rows`` activation rows, once a CUDA call has tuned it (else None): to run
    another variant of the kernel, such as ``use_ptx=False``, on the same tile. Tiles of more than 4
    warps are not given (explicit tiles launch with Triton's default of 4)."""
    tuner = _kernel("gemv", "autotune")
    for key, cfg in getattr(tuner, "cache", {}).items():
        if tuple(key[:3]) == (n, k, row_bucket(rows)) and cfg.num_warps == 4:
            c = cfg.kwargs
            return {"block_n": c["BLOCK_N"], "block_k": c["BLOCK_K"], "split_k": c["SPLIT_K"]}
    return None


def _require_triton(name: str) -> None:
    if not HAS_TRITON:
        raise RuntimeError(f"{name} needs Triton ({TRITON_MISSING_REASON}); use nvfp4_gemm_ref")


def nvfp4_gemv(
    x: torch.Tensor,
    qdata: torch.Tensor,
    block_scales: torch.Tensor,
    global_scale: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    block_n: int | None = None,
    block_k: int | None = None,
    split_k: int | None = None,
    use_ptx: bool | None = None,
    f16_products: bool | None = None,
) -> torch.Tensor:
    """``x @ W.T + bias`` for ``x[..., K]`` with at most `GEMV_MAX_M` rows; contract of `nvfp4_gemm_ref`.

    CUDA tensors: autotuned, unless ``block_n``, ``block_k`` and ``split_k`` are all given. CPU tensors
    run under Triton's interpreter with those (defaults 32, 64, 2). ``use_ptx=False`` decodes E2M1 with
    Triton ops instead of the inline PTX that sm_89+ GPUs use by default (`decode.e2m1_words`): the
    same values, for comparing the two on a GPU.

    One row of bf16/fp16 activations multiplies in fp16 (``f16_products``, default on there): each
    scale block's sixteen products and their sums rounded to fp16, blocks and K accumulated in fp32
    (`decode.e2m1_block_dot`), each block of sixteen activations scaled by its own power of two
    (`decode.x_f16_pairs`) so that none overflows and small ones keep their precision. The error it
    adds is below a bf16 output's rounding and about an fp16 output's (1-2 units in the last place).
    ``f16_products=False`` multiplies in fp32 (always so for fp32 activations and for 2..16 rows)."""
    _require_triton("nvfp4_gemv")
    _check_operands(x, qdata, block_scales)
    k, n = x.shape[-1], qdata.shape[0]
    x2 = x.reshape(-1, k)  # [..., K] -> [M, K]
    m = x2.shape[0]
    if m > GEMV_MAX_M:
        raise ValueError(f"nvfp4_gemv: at most {GEMV_MAX_M} rows, got {m}; use nvfp4_gemm")
    if f16_products and (m > 1 or x.dtype == torch.float32):
        raise ValueError(f"nvfp4_gemv: f16_products is for one row of bf16/fp16 activations, got {m} rows of {x.dtype}")
    if m == 0:
        return torch.empty(*x.shape[:-1], n, dtype=x.dtype, device=x.device)
    interpret = x.device.type == "cpu"
    tiles = gemv_tiles("nvfp4_gemv", interpret, block_n, block_k, split_k, default_block_k=64)
    block_m = row_bucket(m)
    qdata = word_aligned(qdata.contiguous())  # rows with unit stride along K, read as int32 words
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    ws, counters = split_k_buffers(x.device, m, n, tiles[3] if tiles[0] else GEMV_MAX_SPLIT_K)
    gs = torch.as_tensor(global_scale, device=x.device).float().reshape(1)
    scale_bytes = block_scales.contiguous().view(torch.uint8)
    use_dot = block_m >= GEMV_DOT_MIN_ROWS
    cvt = e4m3_convert(x.device)
    # one row reads the scales a word (four blocks) at a time where the layout allows it; 16 rows a
    # byte at a time (words there traded ~1% of the loop for up to 70 more registers)
    words = not use_dot and scale_words(scale_bytes, k)
    args = (x2, qdata, scale_bytes, gs, bias if bias is not None else gs, y, ws, counters, m, n, k, k // 2,
            x2.stride(0), x2.stride(1), qdata.stride(0), scale_bytes.stride(0))  # fmt: skip
    consts = dict(HAS_BIAS=bias is not None, BLOCK_M=block_m, USE_DOT=use_dot,
                  DOT_FP32=interpret or x.dtype == torch.float32, INTERPRET=interpret, E4M3_CVT=cvt,
                  WORD_PTX=word_ptx(cvt, interpret, use_ptx),
                  F16_PRODUCTS=f16_products is not False and block_m == 1 and x.dtype != torch.float32,
                  SCALE_WORDS=words)  # fmt: skip
    launch_gemv(lambda mode: _kernel("gemv", mode), n, interpret, tiles, args, consts)
    return y.reshape(*x.shape[:-1], n)  # [M, N] -> [..., N]


def nvfp4_dequantize_triton(
    qdata: torch.Tensor,
    block_scales: torch.Tensor,
    global_scale: torch.Tensor,
    dtype: torch.dtype = torch.bfloat16,
    *,
    block_n: int = 32,
    block_k: int = 256,
) -> torch.Tensor:
    """``W[N, K]`` in ``dtype`` from the packed triple, in one kernel; equals `kernels.nvfp4.dequantize`."""
    _require_triton("nvfp4_dequantize_triton")
    x_probe = torch.empty(0, qdata.shape[1] * 2, device=qdata.device)
    _check_operands(x_probe, qdata, block_scales)
    n, k = qdata.shape[0], qdata.shape[1] * 2
    out = torch.empty(n, k, dtype=dtype, device=qdata.device)
    if n == 0 or k == 0:
        return out
    if block_k < NVFP4_BLOCK_SIZE or block_k & (block_k - 1):
        raise ValueError(f"nvfp4_dequantize_triton: block_k must be a power of two >= 16, got {block_k}")
    interpret = qdata.device.type == "cpu"
    gs = torch.as_tensor(global_scale, device=qdata.device).float().reshape(1)
    qdata, scale_bytes = qdata.contiguous(), block_scales.contiguous().view(torch.uint8)
    grid = (triton.cdiv(n, block_n), triton.cdiv(k, block_k))
    _kernel("dequant", "interpret" if interpret else "jit")[grid](
        qdata, scale_bytes, gs, out, n, k, k // 2,
        qdata.stride(0), scale_bytes.stride(0), out.stride(0),
        INTERPRET=interpret, E4M3_CVT=e4m3_convert(qdata.device), BLOCK_N=block_n, BLOCK_K=block_k,
        **COMPILE_OPTIONS,
    )  # fmt: skip
    return out
