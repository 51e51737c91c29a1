"""E4M3 decoding shared by the Triton kernels, as ``@triton.jit`` device functions.

`build_kernel` hands the interpreter a kernel whose module globals map these to interpreted twins, so
the kernels call them in both modes.

``e4m3_to_f32(b, CVT, INTERPRET)``: E4M3 bytes (uint8) to fp32, exact, 0x7F/0xFF NaN.

- ``CVT`` true: the GPU's conversion, ``cvt.rn.f16x2.e4m3x2`` on sm_89+ (two values per
  instruction; for sm_90 the FP8 GEMV's loop fell from ~26 to ~4.3 SASS instructions per value).
  Triton's interpreter emulates it but reads 0x7F/0xFF as +-480, so with ``INTERPRET`` they are
  made NaN by hand; on a GPU that select would double the loop, and the GPU makes them NaN itself.
- ``CVT`` false (GPUs before sm_89, where Triton has no E4M3 type): bit arithmetic, sign and
  exponent + 120 into fp32 fields, subnormals ``m * 2^-9``.

`e4m3_convert(device)` in `kernels.triton` says which applies to a device.
"""

from __future__ import annotations

from evalsuite.kernels.triton import HAS_TRITON

if HAS_TRITON:
    import triton
    import triton.language as tl

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
    def e2m1_as_e4m3(w):
        """Packed E2M1 bytes ``[..., B]`` -> E4M3 bytes ``[..., B, 2]`` (low nibble first, so k order):
        the nibble's bits moved into E4M3 positions (``s e1 e0 m -> s 0 0 e1 e0 m 0 0``), which makes
        every E2M1 value the E4M3 value 2^-6 times it (E2M1's subnormal 0.5 lands on E4M3's
        subnormal 2^-7); the callers fold the 2^6 into the block scale."""
        return tl.join(((w & 7) << 2) | ((w & 8) << 4), ((w >> 2) & 0x1C) | (w & 0x80))


__all__ = ["e2m1_as_e4m3", "e4m3_to_f32"]
