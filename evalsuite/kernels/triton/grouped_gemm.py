"""Grouped quantized GEMM: the routed experts of one MoE projection in one launch; Triton kernel beside its ref.

Rows of ``x[A, K]`` arrive sorted by expert: rows ``offsets[e] .. offsets[e+1] - 1`` go through expert
``e``'s weight ``W_e[N, K]``, and ``y[A, N]`` keeps the row order. The E weights are stacked:

- NVFP4 (W4A16): ``qdata`` uint8 ``[E, N, K/2]`` (first value of each pair in the low nibble),
  ``block_scales`` float8_e4m3fn ``[E, N, K/16]``, one fp32 global scale per expert ``[E]``;
- FP8: ``qdata`` float8_e4m3fn ``[E, N, K]`` with fp32 scales ``[E, N]`` (a per-tensor scale is
  repeated along N). Weight-only (W8A16) by default; with ``x_scale`` (one fp32 scale per row,
  ``[A, 1]``) ``x`` holds the per-token E4M3 codes' values, the W8A8 form. Both at once, chosen per
  expert as `FP8Linear` chooses per call: with ``x_w8a16`` (the unquantized activations, ``x``'s shape)
  and ``w8a16_max_rows``, an expert with at most that many rows reads ``x_w8a16`` (W8A16), the
  others ``x`` times ``x_scale`` (W8A8).

plus an optional bias ``[E, N]``. `grouped_gemm_ref` is the definition: each expert's segment through
its format's reference (dequantize to fp32, one fp32 matmul), one expert after another.

`grouped_gemm` runs every segment in one launch, and nothing else: no host sync, no kernel before
it. The grid is (row tiles, column tiles); expert e owns ``ceil(count_e / BLOCK_M)`` consecutive row
tiles, and each program finds its expert and first row from the offsets itself (`tile_of`: a scan
of the experts' tile counts; `tile_table` is the same map in PyTorch). The grid is sized for the worst case
(``ceil(A / BLOCK_M) + E`` tiles, known from the shapes alone); a tile past the last real one reads
expert -1 and returns at once. Each program then is `kernels.triton.nvfp4_gemm`'s tile loop on expert
e's slice of the stacked weight, masked to its segment's rows: the weight decoded in registers by the
GPU's E4M3 conversion (``cvt.rn.f16x2.e4m3x2`` on sm_89+; NVFP4 read as int32 words whose E2M1
nibbles are first moved into E4M3 bit positions a word at a time, `decode.e2m1_words`, as in
`kernels.triton.nvfp4_gemv`; under the interpreter 0x7F/0xFF are made NaN by hand), fp32
accumulation, the expert's global scale (NVFP4) or per-column scale (FP8) and the row's activation
scale (W8A8) applied to the accumulator, then the bias, then the cast. E4M3 and E2M1 x E4M3 values
are exact in bf16, so feeding ``tl.dot`` bf16 operands loses nothing on the weight side; under the
interpreter (CPU tensors, the tests) both operands are fp32 (``DOT_FP32``).

One-row tiles (``BLOCK_M`` 1, NVFP4 with bf16/fp16 activations): at decode an expert mostly gets
one row (a batch of one routes 6 rows to 6 of 128 experts), and a 16-row tile spends the tensor
cores' padding and ~7-10 SASS instructions per weight value on the decode, join and conversions.
A one-row tile runs the one-row GEMV's loop instead (`decode.e2m1_row_step`: fp16 products on the
CUDA cores, the next step's loads issued ahead, the scales four to a word): 3.1-4.4 instructions per
value for sm_90 (BENCHMARKS.md). An expert with several rows gets a tile per row and reads its
weight once per row.

Tiles: ``BLOCK_M`` is chosen by the caller's row count (the tile table depends on it): 1 when there
are no more rows than experts (NVFP4, bf16/fp16), else 16 up to 16 rows per expert on average, else
64. On CUDA, ``BLOCK_N``, ``BLOCK_K``, the warps and the pipeline stages are chosen by
``triton.autotune`` on the machine that runs it (`AUTOTUNE_CONFIGS`, or `ONE_ROW_CONFIGS` for
one-row tiles, keyed on N, K, ``BLOCK_M`` and the format), unless the call gives ``block_n`` and
``block_k``; the interpreter takes 64 x 64 by default.
"""

from __future__ import annotations

from typing import Any

import torch

from evalsuite.kernels import fp8, nvfp4
from evalsuite.kernels.constants import E4M3_DTYPE, NVFP4_BLOCK_SIZE
from evalsuite.kernels.triton import COMPILE_OPTIONS, HAS_TRITON, TRITON_MISSING_REASON, build_kernel, e4m3_convert
from evalsuite.kernels.triton.decode import scale_words, word_aligned, word_ptx

if HAS_TRITON:
    import triton
    import triton.language as tl

    from evalsuite.kernels.triton.decode import e2m1_row_step, e2m1_tile, e4m3_to_f32, nvfp4_step

    _SUM = tl.standard._sum_combine  # (tl.sum and tl.cumsum are @jit: the interpreter cannot call them)


def grouped_gemm_ref(
    x: torch.Tensor,
    offsets: torch.Tensor,
    qdata: torch.Tensor,
    scales: torch.Tensor,
    global_scale: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    x_scale: torch.Tensor | None = None,
    x_w8a16: torch.Tensor | None = None,
    w8a16_max_rows: int = 0,
) -> torch.Tensor:
    """Reference: expert by expert, ``x_seg @ dequantize(W_e).T + bias_e`` in fp32; ``y [A, N]`` in ``x.dtype``.

    NVFP4 when ``qdata`` is uint8 (``scales`` = block scales, ``global_scale [E]``), FP8 when it is
    float8_e4m3fn (``scales [E, N]``); ``x_scale [A, 1]`` multiplies ``x`` row by row first (W8A8);
    with ``x_w8a16``, experts of at most ``w8a16_max_rows`` rows take their rows from it instead."""
    fmt = _check_operands(x, offsets, qdata, scales, global_scale, bias, x_scale, x_w8a16)
    xf = x.float() if x_scale is None else x.float() * x_scale.float()
    y = torch.zeros(x.shape[0], qdata.shape[1], dtype=torch.float32, device=x.device)
    bounds = offsets.tolist()
    for e in range(qdata.shape[0]):
        lo, hi = bounds[e], bounds[e + 1]
        if fmt == "nvfp4":
            w = nvfp4.dequantize(qdata[e], scales[e], global_scale[e], torch.float32)  # type: ignore[index]
        else:
            w = fp8.dequantize(qdata[e], scales[e][:, None])
        xe = x_w8a16[lo:hi].float() if x_w8a16 is not None and hi - lo <= w8a16_max_rows else xf[lo:hi]
        y[lo:hi] = xe @ w.t()  # [rows, K] @ [K, N]
        if bias is not None:
            y[lo:hi] += bias[e].float()
    return y.to(x.dtype)


if HAS_TRITON:

    @triton.jit
    def tile_of(off_ptr, pid_t, E, E_PAD: tl.constexpr, BLOCK_M: tl.constexpr):
        """(expert, first row) of row tile ``pid_t``, computed from ``offsets`` in the program (no
        table, no kernels before the launch): each expert's ``ceil(count / BLOCK_M)`` tiles laid end
        to end in expert order, the tile's expert the first whose tiles end after it; expert -1 past
        the last real tile. `tile_table` is the same map in PyTorch, its reference."""
        idx = tl.arange(0, E_PAD)
        lo = tl.load(off_ptr + idx, mask=idx < E, other=0)
        hi = tl.load(off_ptr + idx + 1, mask=idx < E, other=0)
        tiles = (hi - lo + BLOCK_M - 1) // BLOCK_M  # [E_PAD], 0 past the experts
        ends = tl.associative_scan(tiles, 0, _SUM)  # one past each expert's last tile
        e = tl.reduce((ends <= pid_t).to(tl.int32), 0, _SUM)  # experts whose tiles end at or before it
        start = tl.reduce(tl.where(idx == e, ends - tiles, 0), 0, _SUM)
        first = tl.reduce(tl.where(idx == e, lo, 0), 0, _SUM) + (pid_t - start) * BLOCK_M
        return tl.where(e < E, e, -1), first


def _grouped_kernel(
    x_ptr, xs_ptr, w_ptr, s_ptr, ws_ptr, b_ptr, y_ptr, off_ptr,
    N, K, KB, A, W8A16_MAX_ROWS, E,
    stride_xm, stride_we, stride_wn, stride_se, stride_sn, stride_wse, stride_be, stride_ym,
    W_FP4: tl.constexpr,
    HAS_XSCALE: tl.constexpr,
    MIXED: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    DOT_FP32: tl.constexpr,
    INTERPRET: tl.constexpr,
    E4M3_CVT: tl.constexpr,
    WORD_PTX: tl.constexpr,
    E_PAD: tl.constexpr,
    SCALE_WORDS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):  # fmt: skip
    pid_t = tl.program_id(0)
    pid_n = tl.program_id(1)
    e, m_start = tile_of(off_ptr, pid_t, E, E_PAD, BLOCK_M)
    if e < 0:  # a spare tile of the worst-case grid
        return
    m_end = tl.load(off_ptr + e + 1)
    offs_m = m_start + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m = offs_m < m_end
    mask_n = offs_n < N
    w_base = w_ptr + e.to(tl.int64) * stride_we
    if MIXED:  # x holds 2A rows, the W8A16 activations then the W8A8 codes: the expert's row count picks
        w8a16 = m_end - tl.load(off_ptr + e) <= W8A16_MAX_ROWS
        x_base = x_ptr + (offs_m + tl.where(w8a16, 0, A))[:, None] * stride_xm
    else:
        x_base = x_ptr + offs_m[:, None] * stride_xm
    acc = tl.full((BLOCK_M, BLOCK_N), 0.0, tl.float32)  # tl.full: tl.zeros is @jit (see nvfp4_gemm)
    if W_FP4:
        s_base = s_ptr + e.to(tl.int64) * stride_se
        G: tl.constexpr = BLOCK_K // 16  # scale blocks per K step
        COLS: tl.constexpr = BLOCK_K // 8  # int32 words per row per K step, eight values each
        offs_b = tl.arange(0, COLS)
        offs_g = tl.arange(0, G)
        # each row's start in bytes (KB = K/2 and the byte stride keep Triton's divisibility by 16, so
        # the mask may span 16 bytes: 128-bit loads, see nvfp4_gemv), then read as int32 words
        w_rows = (w_base + offs_n[:, None] * stride_wn).to(tl.pointer_type(tl.int32))
        s_rows = s_base + offs_n[:, None] * stride_sn
        if BLOCK_M == 1:
            # one row (decode, at most a row per expert): the one-row GEMV's loop, fp16 products on
            # the CUDA cores (`decode.e2m1_row_step`), each step's loads issued one step ahead
            acc_b = tl.full((BLOCK_N, G), 0.0, tl.float32)
            x_row = x_ptr + m_start * stride_xm
            w_next, sb_next = nvfp4_step(w_rows, s_rows, 0, KB // 4, K // 16, mask_n, offs_b, offs_g, SCALE_WORDS)
            for k0 in range(0, K, BLOCK_K):
                w = w_next
                sb = sb_next
                # the next step's (masked off past K)
                w_next, sb_next = nvfp4_step(w_rows, s_rows, k0 + BLOCK_K, KB // 4, K // 16, mask_n, offs_b, offs_g,
                                             SCALE_WORDS)  # fmt: skip
                kk = k0 + tl.arange(0, BLOCK_K)
                xr = tl.load(x_row + kk, mask=kk < K, other=0.0).to(tl.float32)
                acc_b += e2m1_row_step(w, e4m3_to_f32(sb, E4M3_CVT, INTERPRET), xr, WORD_PTX, E4M3_CVT, INTERPRET)
            acc += tl.reduce(acc_b, 1, _SUM)[None, :] * 64.0  # the 2^-6 of the decode
        else:
            for k0 in range(0, K, BLOCK_K):
                # scales a byte a block
                w, sb = nvfp4_step(w_rows, s_rows, k0, KB // 4, K // 16, mask_n, offs_b, offs_g, False)
                # E4M3 block scales, and the E2M1 values a word at a time (on sm_89+ inline PTX),
                # scaled and in k order as in nvfp4_gemv (`decode.e2m1_tile`)
                s_val = e4m3_to_f32(sb, E4M3_CVT, INTERPRET)  # [BLOCK_N, G]
                wt = tl.trans(e2m1_tile(w, s_val, WORD_PTX, E4M3_CVT, INTERPRET))  # [BLOCK_K, BLOCK_N]
                kk = k0 + tl.arange(0, BLOCK_K)
                xt = tl.load(x_base + kk[None, :], mask=mask_m[:, None] & (kk < K)[None, :], other=0.0)
                if DOT_FP32:
                    acc += tl.dot(xt.to(tl.float32), wt, input_precision="ieee")
                else:
                    acc += tl.dot(xt, wt.to(xt.dtype))
        acc = acc * tl.load(ws_ptr + e)  # the expert's global scale
    else:
        offs_k = tl.arange(0, BLOCK_K)
        for k0 in range(0, K, BLOCK_K):
            kk = k0 + offs_k
            mask_k = kk < K
            wb = tl.load(w_base + kk[:, None] + offs_n[None, :] * stride_wn,
                         mask=mask_k[:, None] & mask_n[None, :], other=0)  # [BLOCK_K, BLOCK_N] E4M3 bytes
            w = e4m3_to_f32(wb, E4M3_CVT, INTERPRET)  # exact; sm_89+: the GPU's conversion
            xt = tl.load(x_base + kk[None, :], mask=mask_m[:, None] & mask_k[None, :], other=0.0)
            if DOT_FP32:
                acc += tl.dot(xt.to(tl.float32), w, input_precision="ieee")
            else:
                acc += tl.dot(xt, w.to(xt.dtype))
        ws = tl.load(ws_ptr + e.to(tl.int64) * stride_wse + offs_n, mask=mask_n, other=0.0)
        acc = acc * ws[None, :]  # per-column weight scale
    if HAS_XSCALE:
        xs = tl.load(xs_ptr + offs_m, mask=mask_m, other=0.0)
        if MIXED:
            xs = tl.where(w8a16, 1.0, xs)
        acc = acc * xs[:, None]
    if HAS_BIAS:
        acc += tl.load(b_ptr + e.to(tl.int64) * stride_be + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    y_ptrs = y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :]
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


# (BLOCK_N, BLOCK_K, warps, stages) tried by the autotuner on CUDA: narrow and wide column strips,
# short and long K steps (Hopper-class GPUs, the expert shapes of the full-size model and smaller).
# Compiled for sm_90 (`kernels.triton.static`, the full-size expert shapes): 64 x 256 at 4 warps
# needed 255 registers and spilled at 64 rows, so it has 8 (256 x 64 spilled 8 B at 3 stages, so
# it has 2); the pipelined tiles copy the NVFP4 weight into shared memory 8 bytes at a time
# (cp.async), the single-stage ones load it into registers 16 bytes at a time, which may suit the
# decode's few rows per expert better: both kinds are here for the autotuner to time.
AUTOTUNE_CONFIGS: tuple[tuple[int, int, int, int], ...] = (
    (32, 64, 4, 3), (64, 64, 4, 3), (128, 64, 4, 3), (64, 128, 4, 3), (128, 128, 8, 3), (64, 256, 8, 2),
    (128, 32, 4, 4), (256, 64, 8, 2), (32, 64, 4, 1), (64, 128, 4, 1), (128, 128, 8, 1),
)
# One-row tiles (``BLOCK_M`` 1: NVFP4 at decode, fp16 products on the CUDA cores), tried only there:
# the one-row GEMV's (`nvfp4_gemv._autotune_configs`), 16-64 packed bytes per thread per K step.
ONE_ROW_CONFIGS: tuple[tuple[int, int, int, int], ...] = (
    (32, 256, 4, 1), (64, 256, 4, 1), (32, 512, 4, 1), (16, 512, 4, 1), (64, 512, 4, 1), (128, 64, 4, 1),
)
DEFAULT_TILE = (64, 64)  # (BLOCK_N, BLOCK_K) under the interpreter when the call gives none


def _config_key(cfg: Any) -> tuple[int, int, int, int]:
    return cfg.kwargs["BLOCK_N"], cfg.kwargs["BLOCK_K"], cfg.num_warps, cfg.num_stages


def _prune_by_rows(configs: list[Any], named_args: dict[str, Any], **kwargs: Any) -> list[Any]:
    """`ONE_ROW_CONFIGS` for one-row tiles, `AUTOTUNE_CONFIGS` for the others."""
    wanted = ONE_ROW_CONFIGS if kwargs.get("BLOCK_M") == 1 else AUTOTUNE_CONFIGS
    return [c for c in configs if _config_key(c) in wanted]


def _autotuned(fn: Any) -> Any:
    configs = [triton.Config({"BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=st)
               for bn, bk, w, st in dict.fromkeys(AUTOTUNE_CONFIGS + ONE_ROW_CONFIGS)]  # fmt: skip
    return triton.autotune(configs=configs, key=["N", "K", "BLOCK_M", "W_FP4", "HAS_XSCALE", "MIXED"],
                           prune_configs_by={"early_config_prune": _prune_by_rows})(triton.jit(fn))  # fmt: skip


def _kernel(mode: str) -> Any:
    """The kernel for ``mode``: 'interpret' (CPU tensors), 'jit' (CUDA, an explicit tile) or
    'autotune' (CUDA, the tile chosen here)."""
    return build_kernel(_grouped_kernel, mode, _autotuned)


def worst_case_tiles(n_rows: int, n_experts: int, block_m: int) -> int:
    """Row tiles enough for any split of ``n_rows`` rows among ``n_experts`` segments: each non-empty
    segment adds at most one partial tile, and at most ``n_rows`` segments are non-empty (one-row
    tiles are never partial)."""
    return -(-n_rows // block_m) + (min(n_experts, n_rows) if block_m > 1 else 0)


def tile_table(offsets: torch.Tensor, n_rows: int, block_m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(expert, first row) of each tile of the worst-case grid; expert -1 past the last real tile. The
    reference of the kernel's `tile_of`, which computes a tile's entry in the program instead.

    ``offsets [E+1]``: expert e's rows are ``offsets[e] .. offsets[e+1] - 1``. On the device, no sync."""
    n_experts = offsets.shape[0] - 1
    counts = offsets[1:] - offsets[:-1]  # [E]
    tiles = (counts + block_m - 1) // block_m  # [E] row tiles of each expert
    ends = tiles.cumsum(0)  # [E] one past each expert's last tile
    t = torch.arange(worst_case_tiles(n_rows, n_experts, block_m), device=offsets.device)  # [T]
    expert = torch.searchsorted(ends, t, right=True)  # [T] the first expert whose tiles end after t
    real = expert < n_experts
    e = expert.clamp(max=n_experts - 1)
    first_row = offsets[e] + (t - (ends[e] - tiles[e])) * block_m
    return torch.where(real, e, -1).to(torch.int32), torch.where(real, first_row, 0).to(torch.int32)


def grouped_gemm(
    x: torch.Tensor,
    offsets: torch.Tensor,
    qdata: torch.Tensor,
    scales: torch.Tensor,
    global_scale: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    x_scale: torch.Tensor | None = None,
    x_w8a16: torch.Tensor | None = None,
    w8a16_max_rows: int = 0,
    *,
    out_dtype: torch.dtype | None = None,
    block_m: int | None = None,
    block_n: int | None = None,
    block_k: int | None = None,
) -> torch.Tensor:
    """Triton grouped GEMM, same contract as `grouped_gemm_ref` (``y`` in ``out_dtype``, default
    ``x.dtype``). CUDA tensors compile; CPU tensors run under the interpreter. ``block_n`` and
    ``block_k`` together fix the column tile; without them CUDA autotunes it (module docstring)."""
    if not HAS_TRITON:
        raise RuntimeError(f"grouped_gemm needs Triton ({TRITON_MISSING_REASON}); use grouped_gemm_ref")
    fmt = _check_operands(x, offsets, qdata, scales, global_scale, bias, x_scale, x_w8a16)
    interpret = x.device.type == "cpu"
    explicit = block_n is not None and block_k is not None
    if (block_n is None) != (block_k is None):
        raise ValueError(f"grouped_gemm: give block_n and block_k together (or neither), got {block_n}, {block_k}")
    if interpret and not explicit:
        block_n, block_k = DEFAULT_TILE
        explicit = True
    if explicit and (block_k < 32 or block_k % 32 or block_n < 16):  # type: ignore[operator]
        raise ValueError(f"grouped_gemm: block_k must be a multiple of 32 and block_n >= 16, got {block_k}, {block_n}")
    a, k = x.shape
    n_experts, n = qdata.shape[0], qdata.shape[1]
    y = torch.empty(a, n, dtype=out_dtype or x.dtype, device=x.device)
    if a == 0:
        return y
    one_row_ok = fmt == "nvfp4" and x.dtype != torch.float32
    if block_m is None:  # at decode one row per expert, or few: one-row or 16-row tiles
        block_m = 1 if one_row_ok and a <= n_experts else 16 if a <= 16 * n_experts else 64
    if block_m == 1 and not one_row_ok:
        raise ValueError(f"grouped_gemm: one-row tiles (block_m=1) are for NVFP4 weights and bf16/fp16 activations, "
                         f"got {fmt} and {x.dtype}")
    mixed = x_w8a16 is not None
    # mixed: one operand of 2A rows (the activations, then the codes), each tile reading its expert's half
    x = torch.cat([x_w8a16.to(x.dtype), x]) if mixed else x.contiguous()  # type: ignore[union-attr]
    cvt = e4m3_convert(x.device)
    if fmt == "nvfp4":
        s_bytes = scales.view(torch.uint8)
        w_scale = global_scale.float().contiguous()  # type: ignore[union-attr]
        stride_se, stride_sn, stride_wse = s_bytes.stride(0), s_bytes.stride(1), 0
    else:
        s_bytes = w_scale = scales.float().contiguous()
        stride_se, stride_sn, stride_wse = 0, 0, w_scale.stride(0)
    w = word_aligned(qdata) if fmt == "nvfp4" else qdata.view(torch.uint8)  # NVFP4 rows read as int32 words
    xs = x_scale.float().contiguous() if x_scale is not None else w_scale
    # one-row tiles read the scales a word (four blocks) at a time where the layout allows it (as the
    # one-row GEMV); the 16- and 64-row tiles a byte at a time
    words = block_m == 1 and scale_words(s_bytes, k)
    args = (
        x, xs, w, s_bytes, w_scale, bias if bias is not None else w_scale, y,
        (offsets if offsets.dtype in (torch.int32, torch.int64) else offsets.to(torch.int64)).contiguous(),
        n, k, k // 2, a, w8a16_max_rows, n_experts,
        x.stride(0), w.stride(0), w.stride(1), stride_se, stride_sn, stride_wse,
        bias.stride(0) if bias is not None else 0, y.stride(0),
    )  # fmt: skip
    consts = dict(W_FP4=fmt == "nvfp4", HAS_XSCALE=x_scale is not None, MIXED=mixed, HAS_BIAS=bias is not None,
                  DOT_FP32=interpret or x.dtype == torch.float32, INTERPRET=interpret,
                  E4M3_CVT=cvt, WORD_PTX=word_ptx(cvt, interpret), E_PAD=max(16, triton.next_power_of_2(n_experts)),
                  BLOCK_M=block_m, SCALE_WORDS=words)  # fmt: skip
    n_tiles = worst_case_tiles(a, n_experts, block_m)
    if explicit:
        _kernel("interpret" if interpret else "jit")[(n_tiles, triton.cdiv(n, block_n))](
            *args, **consts, **COMPILE_OPTIONS, BLOCK_N=block_n, BLOCK_K=block_k)
    else:
        grid = lambda meta: (n_tiles, triton.cdiv(n, meta["BLOCK_N"]))  # noqa: E731
        _kernel("autotune")[grid](*args, **consts, **COMPILE_OPTIONS)
    return y


def _check_operands(x, offsets, qdata, scales, global_scale, bias, x_scale, x_w8a16=None) -> str:  # type: ignore[no-untyped-def]
    """'nvfp4' or 'fp8' from ``qdata``'s dtype, after checking every shape against it (one line each)."""
    if qdata.dim() != 3 or qdata.dtype not in (torch.uint8, E4M3_DTYPE):
        raise TypeError(f"grouped_gemm: expected stacked weights uint8 [E, N, K/2] (NVFP4) or float8_e4m3fn "
                        f"[E, N, K] (FP8), got {qdata.dtype} {tuple(qdata.shape)}")  # fmt: skip
    e, n = qdata.shape[:2]
    fmt = "nvfp4" if qdata.dtype == torch.uint8 else "fp8"
    k = qdata.shape[2] * 2 if fmt == "nvfp4" else qdata.shape[2]
    if fmt == "nvfp4":
        if scales.dtype != E4M3_DTYPE or tuple(scales.shape) != (e, n, k // NVFP4_BLOCK_SIZE):
            raise ValueError(f"grouped_gemm: expected block scales float8_e4m3fn {(e, n, k // NVFP4_BLOCK_SIZE)}, "
                             f"got {scales.dtype} {tuple(scales.shape)}")  # fmt: skip
        if global_scale is None or tuple(global_scale.shape) != (e,):
            got = None if global_scale is None else tuple(global_scale.shape)
            raise ValueError(f"grouped_gemm: NVFP4 needs one global scale per expert, shape {(e,)}, got {got}")
    elif tuple(scales.shape) != (e, n):
        raise ValueError(f"grouped_gemm: expected FP8 weight scales of shape {(e, n)}, got {tuple(scales.shape)}")
    if x.dim() != 2 or x.shape[1] != k:
        raise ValueError(f"grouped_gemm: expected x of shape [A, {k}], got {tuple(x.shape)}")
    if tuple(offsets.shape) != (e + 1,):
        raise ValueError(f"grouped_gemm: expected offsets of shape {(e + 1,)}, got {tuple(offsets.shape)}")
    if bias is not None and tuple(bias.shape) != (e, n):
        raise ValueError(f"grouped_gemm: expected bias of shape {(e, n)}, got {tuple(bias.shape)}")
    if x_scale is not None and tuple(x_scale.shape) != (x.shape[0], 1):
        raise ValueError(f"grouped_gemm: expected x_scale of shape {(x.shape[0], 1)}, got {tuple(x_scale.shape)}")
    if x_w8a16 is not None and (fmt != "fp8" or x_scale is None or x_w8a16.shape != x.shape):
        raise ValueError(f"grouped_gemm: x_w8a16 goes with FP8 weights, x_scale and x's shape {tuple(x.shape)}, "
                         f"got {fmt}, x_scale {'given' if x_scale is not None else 'None'}, "
                         f"x_w8a16 {tuple(x_w8a16.shape)}")
    return fmt
