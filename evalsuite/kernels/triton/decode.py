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
    aligned = packed.stride(-1) == 1 and packed.data_ptr() % 4 == 0 and all(s % 4 == 0 for s in packed.stride()[:-1])
    return packed if aligned else packed.clone(memory_format=torch.contiguous_format)


# One 32-bit word of packed E2M1 ($8: eight values, value j in bits 4j..4j+3, so k order within the
# word) -> the eight values as fp32 ($0..$7, k order), each 2^-6 times the E2M1 value. The bit moves of
# `e2m1_as_e4m3` done on the whole word (each byte's low nibbles, then its high nibbles, into E4M3
# bytes; no bit crosses a byte), ``cvt.rn.f16x2.e4m3x2`` (sm_89+, two values per instruction, as
# Triton's own fp8 -> fp16), then fp16 -> fp32. `tests/kernels/test_decode_ptx.py` evaluates this text.
E2M1X8_PTX_TEXT = """{
.reg .b32 m, s, lo, hi, a, b, c, d;
.reg .b16 l0, l1, h0, h1, f0, f1, f2, f3, f4, f5, f6, f7;
and.b32 m, $8, 0x07070707;
shl.b32 m, m, 2;
and.b32 s, $8, 0x08080808;
shl.b32 s, s, 4;
or.b32 lo, m, s;
shr.b32 m, $8, 2;
and.b32 m, m, 0x1C1C1C1C;
and.b32 s, $8, 0x80808080;
or.b32 hi, m, s;
mov.b32 {l0, l1}, lo;
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

if HAS_TRITON:
    import triton
    import triton.language as tl

    E2M1X8_PTX = tl.constexpr(E2M1X8_PTX_TEXT)

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


__all__ = ["E2M1X8_PTX_TEXT", "e2m1_as_e4m3", "e2m1_tile", "e2m1_words", "e4m3_to_f32", "word_aligned", "word_ptx"]
