"""E4M3 and E2M1 decoding shared by the Triton kernels, as ``@triton.jit`` device functions.

`build_kernel` hands the interpreter a kernel whose globals (and these helpers' own) map them to
interpreted twins, so the kernels call them in both modes.

``e4m3_to_f32(b, CVT, INTERPRET)``: E4M3 bytes (uint8) to fp32, exact, 0x7F/0xFF NaN.

- ``CVT`` true: the GPU's conversion, ``cvt.rn.f16x2.e4m3x2`` on sm_89+ (two values per
  instruction; for sm_90 the FP8 GEMV's loop fell from ~26 to ~4.3 SASS instructions per value).
  Triton's interpreter emulates it but reads 0x7F/0xFF as +-480, so with ``INTERPRET`` they are
  made NaN by hand; on a GPU that select would double the loop, and the GPU makes them NaN itself.
- ``CVT`` false (GPUs before sm_89, where Triton has no E4M3 type): bit arithmetic, sign and
  exponent + 120 into fp32 fields, subnormals ``m * 2^-9``.

``e2m1_words(wd, PTX, CVT, INTERPRET)``: packed E2M1 read as int32 words to eight fp32 tensors, a
word's eight values in k order, each 2^-6 times the value (the callers fold 2^6 into the block scale).

- ``PTX`` (sm_89+ GPUs, `word_ptx` says when): inline PTX, `E2M1X8_PTX_TEXT`: the nibbles' bits
  moved into E4M3 positions four bytes at a time, then the GPU's conversion. The one place the GPU
  runs code the interpreter cannot (it has no inline assembly): `tests/kernels/test_decode_ptx.py`
  evaluates the text per the PTX ISA against the reference decode for every byte value, and the GPU
  tests run it.
- otherwise: the same moves per nibble in Triton ops, then `e4m3_to_f32` (the interpreter; GPUs
  before sm_89; and on request, ``use_ptx=False`` in `nvfp4_gemv`, to compare the two on a GPU).

``e2m1_block_dot(w0, w1, x pairs, PTX, CVT, INTERPRET)``: the dot product of one NVFP4 scale block
(two words, sixteen values) with sixteen activations, the products and their sums in fp16 (half the
block in each half of an ``f16x2`` register), then the two halves added in fp32: with ``PTX``
`E2M1X16_DOT_PTX_TEXT`, four ``fma.rn.f16x2`` per word where the fp32 route converts each value to
fp32 and multiplies it alone; otherwise the same operations, in the same order, in Triton ops. The
activations come as fp16 pairs (`x_f16_pairs`), each block of sixteen scaled by the power of two
that puts its largest magnitude in [2^14, 2^15) (`F16_PRODUCTS_X_TOP`): no finite activation
overflows and small ones keep fp16's full precision (a fixed scale cannot do both: one that keeps
activations up to 2^20 from overflowing puts the products of activations near 1e-4 into fp16's
subnormals); the result is 2^-6 times the dot product of the scaled activations, and the caller
multiplies it by the inverse scale. ``e2m1_row_step`` is one K step of one row with it, the loop
body of the one-row GEMV and of one-row grouped tiles.

`e4m3_convert(device)` in `kernels.triton` says which applies to a device.
"""

from __future__ import annotations

import torch

from evalsuite.kernels.triton import HAS_TRITON


def word_ptx(cvt: bool, interpret: bool, requested: bool | None = None) -> bool:
    """Whether a kernel decodes E2M1 words by inline PTX: only compiled (not ``interpret``) for a GPU
    with the E4M3 conversion (``cvt``, sm_89+), and not when the caller asks for Triton ops
    (``requested`` False)."""
    return cvt and not interpret and requested is not False


def word_aligned(packed: torch.Tensor) -> torch.Tensor:
    """``packed`` (E2M1 bytes, the last dimension contiguous) as the kernels that read it as int32
    words need it: every row starting on a 4-byte boundary (a misaligned word load faults on a GPU).
    Tensors as allocated qualify and are returned as they are; an odd view is copied."""
    aligned = packed.stride(-1) == 1 and _word_start(packed) and all(s % 4 == 0 for s in packed.stride()[:-1])
    return packed if aligned else packed.clone(memory_format=torch.contiguous_format)


def _word_start(t: torch.Tensor) -> bool:
    """Whether ``t``'s first byte lies on a 4-byte boundary. Traced by torch.compile (the compiled
    decode step), where neither ``data_ptr()`` nor the storage offset can be read, it is taken as
    true: what that step passes are the layers' packed buffers, whose storages PyTorch's allocators
    align far past 4 bytes, and the expert slices of a grouped stack, which begin on whole rows of
    K/2 bytes (K a multiple of 16). The row strides are still checked."""
    if torch.compiler.is_compiling():
        return True
    return t.data_ptr() % 4 == 0


def scale_words(scale_bytes: torch.Tensor, k: int) -> bool:
    """Whether a kernel may read ``scale_bytes`` (E4M3 block scales as uint8, the last dimension the
    K/16 blocks of a row) as int32 words of four blocks (`nvfp4_step`): every row a whole number of
    words (K a multiple of 64), starting on a 4-byte boundary, its blocks contiguous. Otherwise a
    byte at a time (a word would cross into the next row, or fault unaligned)."""
    return (k % 64 == 0 and scale_bytes.stride(-1) == 1 and _word_start(scale_bytes)
            and all(s % 4 == 0 for s in scale_bytes.stride()[:-1]))  # fmt: skip


# The bit moves of `e2m1_as_e4m3` done on a whole 32-bit word of packed E2M1 (value j in bits
# 4j..4j+3, so k order within the word): each byte's low nibbles, then its high nibbles, into E4M3
# bytes (no bit crosses a byte). ``lo`` holds values 0, 2, 4, 6 and ``hi`` 1, 3, 5, 7, a byte each.
_E2M1_WORD_TO_E4M3 = """and.b32 m, {w}, 0x07070707;
shl.b32 m, m, 2;
and.b32 s, {w}, 0x08080808;
shl.b32 s, s, 4;
or.b32 lo, m, s;
shr.b32 m, {w}, 2;
and.b32 m, m, 0x1C1C1C1C;
and.b32 s, {w}, 0x80808080;
or.b32 hi, m, s;
"""

# One word ($8) -> its eight values as fp32 ($0..$7, k order), each 2^-6 times the E2M1 value:
# `_E2M1_WORD_TO_E4M3`, ``cvt.rn.f16x2.e4m3x2`` (sm_89+, two values per instruction, as Triton's own
# fp8 -> fp16), then fp16 -> fp32. `tests/kernels/test_decode_ptx.py` evaluates this text.
E2M1X8_PTX_TEXT = (
    "{\n.reg .b32 m, s, lo, hi, a, b, c, d;\n"
    ".reg .b16 l0, l1, h0, h1, f0, f1, f2, f3, f4, f5, f6, f7;\n"
    + _E2M1_WORD_TO_E4M3.format(w="$8")
    + """mov.b32 {l0, l1}, lo;
mov.b32 {h0, h1}, hi;
cvt.rn.f16x2.e4m3x2 a, l0;
cvt.rn.f16x2.e4m3x2 b, l1;
cvt.rn.f16x2.e4m3x2 c, h0;
cvt.rn.f16x2.e4m3x2 d, h1;
mov.b32 {f0, f2}, a;
mov.b32 {f4, f6}, b;
mov.b32 {f1, f3}, c;
mov.b32 {f5, f7}, d;
cvt.f32.f16 $0, f0;
cvt.f32.f16 $1, f1;
cvt.f32.f16 $2, f2;
cvt.f32.f16 $3, f3;
cvt.f32.f16 $4, f4;
cvt.f32.f16 $5, f5;
cvt.f32.f16 $6, f6;
cvt.f32.f16 $7, f7;
}"""
)

# One word's E4M3 bytes interleaved back into k order (``prmt``: bytes lo0 hi0 lo1 hi1, then lo2 hi2
# lo3 hi3), converted to four f16x2 registers holding values (0, 1), (2, 3), (4, 5), (6, 7), low half
# first, and multiplied with the activation pairs {x} (the same order, `x_f16_pairs`) into ``p``:
# even values accumulate in the low half, odd in the high.
_E2M1_WORD_FMA = """prmt.b32 e, lo, hi, 0x5140;
prmt.b32 f, lo, hi, 0x7362;
mov.b32 {{l0, l1}}, e;
mov.b32 {{h0, h1}}, f;
cvt.rn.f16x2.e4m3x2 a, l0;
cvt.rn.f16x2.e4m3x2 b, l1;
cvt.rn.f16x2.e4m3x2 c, h0;
cvt.rn.f16x2.e4m3x2 d, h1;
{first} p, a, {x0}{acc};
fma.rn.f16x2 p, b, {x1}, p;
fma.rn.f16x2 p, c, {x2}, p;
fma.rn.f16x2 p, d, {x3}, p;
"""

# One scale block: two words ($1, $2: values 0-7 and 8-15) and eight fp16 activation pairs ($3..$10)
# -> ($0, fp32) the block's dot product with those activations, 2^-6 times its value (the decode's).
# Sixteen products in fp16, eight summed in each half of ``p`` (the PTX ISA's fma rounds once), the
# halves converted to fp32 and added.
E2M1X16_DOT_PTX_TEXT = (
    "{\n.reg .b32 m, s, lo, hi, e, f, a, b, c, d, p;\n.reg .b16 l0, l1, h0, h1, p0, p1;\n.reg .f32 q0, q1;\n"
    + _E2M1_WORD_TO_E4M3.format(w="$1")
    + _E2M1_WORD_FMA.format(first="mul.rn.f16x2", acc="", x0="$3", x1="$4", x2="$5", x3="$6")
    + _E2M1_WORD_TO_E4M3.format(w="$2")
    + _E2M1_WORD_FMA.format(first="fma.rn.f16x2", acc=", p", x0="$7", x1="$8", x2="$9", x3="$10")
    + """mov.b32 {p0, p1}, p;
cvt.f32.f16 q0, p0;
cvt.f32.f16 q1, p1;
add.f32 $0, q0, q1;
}"""
)

# Each block of sixteen activations enters the fp16 products scaled by a power of two that puts its
# largest magnitude in [2^TOP, 2^(TOP+1)): 2^15 at most, times a decoded weight (at most 6 * 2^-6)
# 3072, eight such summed 24576, below fp16's 65504; and the block's other values as far above fp16's
# subnormals (2^-14) as its spread allows. Blocks below 2^-112 keep the scale of 2^-112.
F16_PRODUCTS_X_TOP = 14
_F32_BIAS = 127

if HAS_TRITON:
    import triton
    import triton.language as tl

    E2M1X8_PTX = tl.constexpr(E2M1X8_PTX_TEXT)
    E2M1X16_DOT_PTX = tl.constexpr(E2M1X16_DOT_PTX_TEXT)
    X_TOP = tl.constexpr(F16_PRODUCTS_X_TOP)
    F32_BIAS = tl.constexpr(_F32_BIAS)

    @triton.jit
    def e4m3_to_f32(b, CVT: tl.constexpr, INTERPRET: tl.constexpr):
        if CVT:
            v = b.to(tl.float8e4nv, bitcast=True).to(tl.float32)
            if INTERPRET:
                v = tl.where((b & 0x7F) == 0x7F, float("nan"), v)
        else:
            i = b.to(tl.int32)
            sign = (i & 0x80) << 24
            e = (i >> 3) & 0xF
            m = i & 0x7
            v = (sign | ((e + 120) << 23) | (m << 20)).to(tl.float32, bitcast=True)
            sub = m.to(tl.float32) * 0.001953125
            v = tl.where(e == 0, tl.where(sign != 0, -sub, sub), v)
            v = tl.where((i & 0x7F) == 0x7F, float("nan"), v)
        return v

    @triton.jit
    def _nibble_as_e4m3(n):
        """The low nibble of ``n`` (E2M1 ``s e1 e0 m``) as an E4M3 byte ``s 0 0 e1 e0 m 0 0``: every
        E2M1 value becomes the E4M3 value 2^-6 times it (E2M1's subnormal 0.5 lands on E4M3's
        subnormal 2^-7); the callers fold the 2^6 into the block scale."""
        return ((n & 7) << 2) | ((n & 8) << 4)

    @triton.jit
    def e2m1_as_e4m3(w):
        """Packed E2M1 bytes ``[..., B]`` -> E4M3 bytes ``[..., B, 2]`` (low nibble first, so k order),
        each by `_nibble_as_e4m3`."""
        return tl.join(_nibble_as_e4m3(w), _nibble_as_e4m3(w >> 4))

    @triton.jit
    def _e2m1_nibble(wd, J: tl.constexpr, CVT: tl.constexpr, INTERPRET: tl.constexpr):
        return e4m3_to_f32(_nibble_as_e4m3(wd >> (4 * J)).to(tl.uint8), CVT, INTERPRET)

    @triton.jit
    def e2m1_words(wd, PTX: tl.constexpr, CVT: tl.constexpr, INTERPRET: tl.constexpr):
        """Packed E2M1 as int32 words (eight values each, the first in the lowest nibble) -> the
        eight values of each word as eight fp32 tensors of ``wd``'s shape, in k order, 2^-6 times
        the E2M1 value as `e2m1_as_e4m3` (the callers fold the 2^6); exact.

        With ``PTX`` (only where `word_ptx` allows it) `E2M1X8_PTX` per word, ~3 instructions per
        value with the fp32 conversion; otherwise each nibble through `e2m1_as_e4m3`'s bit moves and
        `e4m3_to_f32`, the same values."""
        if PTX:
            v0, v1, v2, v3, v4, v5, v6, v7 = tl.inline_asm_elementwise(
                E2M1X8_PTX, "=r,=r,=r,=r,=r,=r,=r,=r,r", [wd], dtype=(tl.float32,) * 8, is_pure=True, pack=1)
        else:
            v0 = _e2m1_nibble(wd, 0, CVT, INTERPRET)
            v1 = _e2m1_nibble(wd, 1, CVT, INTERPRET)
            v2 = _e2m1_nibble(wd, 2, CVT, INTERPRET)
            v3 = _e2m1_nibble(wd, 3, CVT, INTERPRET)
            v4 = _e2m1_nibble(wd, 4, CVT, INTERPRET)
            v5 = _e2m1_nibble(wd, 5, CVT, INTERPRET)
            v6 = _e2m1_nibble(wd, 6, CVT, INTERPRET)
            v7 = _e2m1_nibble(wd, 7, CVT, INTERPRET)
        return v0, v1, v2, v3, v4, v5, v6, v7

    @triton.jit
    def nvfp4_step(w_rows, s_rows, k, words, blocks, mask_n, offs_b, offs_g, SCALE_WORDS: tl.constexpr):
        """The K step at ``k`` (a multiple of 16) of an NVFP4 tile: its packed words ``[BLOCK_N,
        BLOCK_K/8]`` (int32, ``w_rows``: each row's first word) and block-scale bytes ``[BLOCK_N,
        BLOCK_K/16]`` (``s_rows``: each row's first scale). Words at or past ``words`` and blocks at
        or past ``blocks`` read 0 (a caller passes 0 for a step that reads nothing).

        ``SCALE_WORDS`` (where `scale_words` allows the layout) and a step of a multiple of 64 values
        (four blocks a word; ``k`` a multiple of the step): the scales are read as int32 words of four
        blocks and taken apart in registers, where a load per byte cost the one-row loop ~7% of its
        instructions (sm_90, 32 x 256). Smaller steps read bytes."""
        bcol = k // 8 + offs_b
        w = tl.load(w_rows + bcol[None, :], mask=mask_n[:, None] & (bcol < words)[None, :], other=0)
        G: tl.constexpr = offs_g.shape[0]
        if SCALE_WORDS and G % 4 == 0:
            wcol = k // 64 + tl.arange(0, G // 4)
            sw = tl.load(s_rows.to(tl.pointer_type(tl.int32)) + wcol[None, :],
                         mask=mask_n[:, None] & (wcol * 4 < blocks)[None, :], other=0)  # fmt: skip
            # bytes 0..3 of each word are blocks 4c..4c+3: joined back into block order
            b0 = (sw & 0xFF).to(tl.uint8)
            b1 = ((sw >> 8) & 0xFF).to(tl.uint8)
            b2 = ((sw >> 16) & 0xFF).to(tl.uint8)
            b3 = ((sw >> 24) & 0xFF).to(tl.uint8)
            sb = tl.reshape(tl.join(tl.join(b0, b2), tl.join(b1, b3)), (sw.shape[0], G))
        else:
            blk = k // 16 + offs_g
            sb = tl.load(s_rows + blk[None, :], mask=mask_n[:, None] & (blk < blocks)[None, :], other=0)
        return w, sb

    @triton.jit
    def e2m1_tile(wd, s_val, PTX: tl.constexpr, CVT: tl.constexpr, INTERPRET: tl.constexpr):
        """Packed E2M1 words ``[BLOCK_N, BLOCK_K/8]`` and their decoded E4M3 block scales
        ``[BLOCK_N, BLOCK_K/16]`` -> the weight values ``[BLOCK_N, BLOCK_K]`` in k order, fp32 (the
        operand of a ``tl.dot``). Each word's eight values (`e2m1_words`) times its block's scale
        and the 2^6, then joined back: a join's new axis is the last, so the first joins pick bit 2
        of the value's index within the word, the last bit 0."""
        v0, v1, v2, v3, v4, v5, v6, v7 = e2m1_words(wd, PTX, CVT, INTERPRET)
        s_w = tl.reshape(tl.join(s_val, s_val), (wd.shape[0], wd.shape[1])) * 64.0  # two words a block
        q0 = tl.join(tl.join(v0 * s_w, v4 * s_w), tl.join(v2 * s_w, v6 * s_w))
        q1 = tl.join(tl.join(v1 * s_w, v5 * s_w), tl.join(v3 * s_w, v7 * s_w))
        return tl.reshape(tl.join(q0, q1), (wd.shape[0], wd.shape[1] * 8))

    @triton.jit
    def _max_combine(a, b):
        return tl.maximum(a, b)

    @triton.jit
    def x_f16_pairs(x, G: tl.constexpr):
        """Activations ``[16 G]`` (fp32, k order, one scale block after another) -> the operands of
        `e2m1_block_dot` and their scales: eight int32 tensors ``[G]``, fp16 pairs (value 2i in the
        low half, 2i+1 in the high), the block's first word's four pairs, then its second's; and
        ``[G]`` fp32, the power of two to multiply each block's result by. Each block is scaled so
        that its largest magnitude lies in [2^14, 2^15) (`F16_PRODUCTS_X_TOP`; blocks below 2^-112
        as if at 2^-112; inf and NaN stay what they are): no overflow, and fp16's precision for the
        block's largest values whatever their size."""
        xb = tl.reshape(x, (G, 16))
        # the biased exponent of each block's largest magnitude (the bits of |x| order as the values)
        e = tl.reduce(xb.to(tl.int32, bitcast=True) & 0x7FFFFFFF, 1, _max_combine) >> 23
        e = tl.maximum(e, F32_BIAS - 112)
        up = ((-e + (2 * F32_BIAS + X_TOP)) << 23).to(tl.float32, bitcast=True)  # 2^(TOP - E), exact
        down = ((e - X_TOP) << 23).to(tl.float32, bitcast=True)  # 2^(E - TOP)
        h = (xb * up[:, None]).to(tl.float16).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF
        even, odd = tl.split(tl.reshape(h, (8 * G, 2)))
        pairs = even | (odd << 16)  # [8 G]: pair i = (x_2i, x_2i+1)
        x0, x1, x2, x3, x4, x5, x6, x7 = split8(tl.reshape(pairs, (G, 2, 2, 2)))  # a block's eight pairs apart
        return x0, x1, x2, x3, x4, x5, x6, x7, down

    @triton.jit
    def split8(t):
        """``t [..., 2, 2, 2]`` -> its eight ``[...]`` slices, in the order of the index ``4a + 2b + c``
        over the last three axes (a, b, c)."""
        c0, c1 = tl.split(t)
        b0c0, b1c0 = tl.split(c0)
        b0c1, b1c1 = tl.split(c1)
        t000, t100 = tl.split(b0c0)
        t010, t110 = tl.split(b1c0)
        t001, t101 = tl.split(b0c1)
        t011, t111 = tl.split(b1c1)
        return t000, t001, t010, t011, t100, t101, t110, t111

    @triton.jit
    def _f16_lo(p):
        return (p & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True)

    @triton.jit
    def _f16_hi(p):
        return ((p >> 16) & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True)

    @triton.jit
    def _word_fma(wd, x0, x1, x2, x3, lo, hi, FIRST: tl.constexpr, CVT: tl.constexpr, INTERPRET: tl.constexpr):
        """`E2M1X16_DOT_PTX`'s work for one word in Triton ops: even values into ``lo``, odd into
        ``hi``, in its order, each product and sum rounded to fp16 once (``tl.fma``)."""
        v0, v1, v2, v3, v4, v5, v6, v7 = e2m1_words(wd, False, CVT, INTERPRET)
        if FIRST:
            lo = v0.to(tl.float16) * _f16_lo(x0)
            hi = v1.to(tl.float16) * _f16_hi(x0)
        else:
            lo = tl.fma(v0.to(tl.float16), _f16_lo(x0), lo)
            hi = tl.fma(v1.to(tl.float16), _f16_hi(x0), hi)
        lo = tl.fma(v2.to(tl.float16), _f16_lo(x1), lo)
        hi = tl.fma(v3.to(tl.float16), _f16_hi(x1), hi)
        lo = tl.fma(v4.to(tl.float16), _f16_lo(x2), lo)
        hi = tl.fma(v5.to(tl.float16), _f16_hi(x2), hi)
        lo = tl.fma(v6.to(tl.float16), _f16_lo(x3), lo)
        hi = tl.fma(v7.to(tl.float16), _f16_hi(x3), hi)
        return lo, hi

    @triton.jit
    def e2m1_block_dot(w0, w1, x0, x1, x2, x3, x4, x5, x6, x7, PTX: tl.constexpr, CVT: tl.constexpr,
                       INTERPRET: tl.constexpr):  # fmt: skip
        """One NVFP4 scale block's two words (``w0``: values 0-7, ``w1``: 8-15, int32, any shape)
        times its activations (`x_f16_pairs`, broadcast to that shape) -> fp32, 2^-6 times the dot
        product with those (scaled) activations, unscaled by the block scale. Products and sums in
        fp16, eight per half, the halves added in fp32: `E2M1X16_DOT_PTX` with ``PTX``, else the same
        operations in Triton ops."""
        if PTX:
            out = tl.inline_asm_elementwise(E2M1X16_DOT_PTX, "=r,r,r,r,r,r,r,r,r,r,r",
                                            [w0, w1, x0, x1, x2, x3, x4, x5, x6, x7],
                                            dtype=tl.float32, is_pure=True, pack=1)  # fmt: skip
        else:
            lo, hi = _word_fma(w0, x0, x1, x2, x3, 0.0, 0.0, True, CVT, INTERPRET)
            lo, hi = _word_fma(w1, x4, x5, x6, x7, lo, hi, False, CVT, INTERPRET)
            out = lo.to(tl.float32) + hi.to(tl.float32)
        return out

    @triton.jit
    def e2m1_row_step(wd, s_val, x, PTX: tl.constexpr, CVT: tl.constexpr, INTERPRET: tl.constexpr):
        """One K step of one activation row against ``wd`` (packed E2M1 words ``[BLOCK_N, 2 G]``)
        with its decoded block scales ``s_val [BLOCK_N, G]`` and the step's activations ``x [16 G]``
        (fp32) -> ``[BLOCK_N, G]``: each block's dot product times its scale, 2^-6 times the value
        (`e2m1_block_dot`, fp16 products of the activations as `x_f16_pairs` scales them, the result
        scaled back)."""
        G: tl.constexpr = s_val.shape[1]
        x0, x1, x2, x3, x4, x5, x6, x7, down = x_f16_pairs(x, G)
        w0, w1 = tl.split(tl.reshape(wd, (wd.shape[0], G, 2)))  # each block's two words
        dot = e2m1_block_dot(w0, w1, x0[None, :], x1[None, :], x2[None, :], x3[None, :], x4[None, :], x5[None, :],
                             x6[None, :], x7[None, :], PTX, CVT, INTERPRET)  # fmt: skip
        return dot * (s_val * down[None, :])


__all__ = ["E2M1X16_DOT_PTX_TEXT", "E2M1X8_PTX_TEXT", "F16_PRODUCTS_X_TOP", "e2m1_as_e4m3", "e2m1_block_dot",
           "e2m1_row_step", "e2m1_tile", "e2m1_words", "e4m3_to_f32", "nvfp4_step", "scale_words", "split8",
           "word_aligned", "word_ptx", "x_f16_pairs"]
