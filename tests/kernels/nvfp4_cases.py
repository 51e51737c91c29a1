"""NVFP4 weights for the kernels' exact tests, shared by the GEMV and the grouped GEMM tests."""

from __future__ import annotations

import torch

from evalsuite.kernels import nvfp4

# sixteen different E4M3 scales (bits): subnormal (0x01) to 448 (0x7E), negative ones too
SCALE_BITS = (0x01, 0x7E, 0xB8, 0x33, 0x08, 0x40, 0xC1, 0x5A, 0x21, 0x77, 0x9F, 0x3C, 0x02, 0x66, 0xA4, 0x48)


def distinct_block_scales(rows: int, roll: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(packed E2M1 ``[rows, 128]``, E4M3 scales ``[rows, 16]``) of a weight ``[rows, 256]`` holding
    every E2M1 code, whose sixteen scale blocks a row carry sixteen different scales: `SCALE_BITS`
    rotated by ``roll + row``, so that a block read with another block's scale shows."""
    codes = (torch.arange(rows * 256).reshape(rows, 256) * 7 % 16).to(torch.uint8)
    bits = torch.tensor(SCALE_BITS, dtype=torch.uint8)
    scales = torch.stack([bits.roll(roll + r) for r in range(rows)]).view(torch.float8_e4m3fn)
    return nvfp4.pack_fp4(codes), scales
