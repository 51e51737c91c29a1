"""Numeric constants of the number formats in `kernels/` — the only place they are written down.

E4M3 is OCP FP8 ``float8_e4m3fn`` (no infinities, one NaN pattern per sign, largest finite 448).
E2M1 is the 4-bit float of NVFP4: sign in bit 3, two exponent bits (bias 1), one mantissa bit, no
NaN or infinity. Its sixteen codes decode to ``E2M1_VALUES`` below; code ``c`` and ``c | 8`` are a
value and its negative (code 8 is negative zero).
"""

from __future__ import annotations

import torch

# ---- FP8 E4M3 ----------------------------------------------------------------------------------
E4M3_DTYPE = torch.float8_e4m3fn
E4M3_MAX = 448.0  # largest finite magnitude
E4M3_MIN_SUBNORMAL = 2.0**-9  # smallest positive (subnormal) magnitude
E4M3_MIN_NORMAL = 2.0**-6
FP8_AMAX_EPS = 1e-12  # floor on amax so an all-zero scale group gets a finite, positive scale

# ---- FP4 E2M1 ----------------------------------------------------------------------------------
E2M1_MAX = 6.0
# decoded value of each of the 16 codes; index = code
E2M1_VALUES: tuple[float, ...] = (
    0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
    -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0,
)  # fmt: skip
# midpoints between consecutive non-negative E2M1 magnitudes: rounding boundaries
E2M1_BOUNDS: tuple[float, ...] = (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0)
# the midpoints whose upper neighbour has an even mantissa: a tie there rounds up (RNE)
E2M1_TIES_ROUND_UP: tuple[float, ...] = (0.75, 1.75, 3.5)
E2M1_SIGN_BIT = 0x8

# ---- NVFP4 -------------------------------------------------------------------------------------
NVFP4_BLOCK_SIZE = 16  # values per E4M3 block scale, along the last dimension
NVFP4_GLOBAL_DENOM = E4M3_MAX * E2M1_MAX  # global scale = amax / (448 * 6) = amax / 2688
