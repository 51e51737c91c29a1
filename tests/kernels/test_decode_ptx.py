"""The inline PTX of `kernels.triton.decode` checked without a GPU: a small evaluator runs the shipped
text instruction by instruction, with the semantics of the PTX ISA for the handful of instructions
it uses, and the result must be the reference E2M1 decode for every byte value in every position.

What this does not check is what only a GPU can: that ptxas and the hardware do what the ISA says.
The conventions it relies on are Triton's own: ``mov.b32 {lo, hi}, r`` puts the low 16 bits first,
and ``cvt.rn.f16x2.e4m3x2`` converts the low byte into the low half (Triton's fp8 -> fp16 lowering
reads its one value from the low half: `test_triton_reads_the_low_half_of_its_own_conversion`)."""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from evalsuite.kernels.nvfp4 import decode_e2m1
from evalsuite.kernels.triton.decode import E2M1X8_PTX_TEXT

_INSTR = re.compile(r"^([a-z0-9.]+)\s+(.*);$")


def _e4m3_to_f16_bits(byte: int) -> int:
    value = torch.tensor([byte], dtype=torch.uint8).view(torch.float8_e4m3fn).to(torch.float16)
    return int(value.view(torch.int16).item()) & 0xFFFF


def run_ptx(text: str, inputs: dict[str, int]) -> dict[str, int]:
    """Evaluate ``text`` (one instruction a line, registers as Python ints of their bits) and return
    every register. Unknown instructions fail: a changed asm must be taught here first."""
    regs = dict(inputs)

    def val(op: str) -> int:
        op = op.strip()
        if op in regs:
            return regs[op]
        if re.fullmatch(r"0x[0-9a-fA-F]+|\d+", op):
            return int(op, 0)
        raise KeyError(f"operand {op!r} read before it is written")

    for line in text.splitlines():
        line = line.strip()
        if line in ("{", "}", "") or line.startswith(".reg"):
            continue
        found = _INSTR.match(line)
        assert found, f"cannot parse {line!r}"
        op, rest = found.groups()
        if op == "mov.b32" and rest.startswith("{"):  # unpack: the first register gets the low half
            names, src = rest.split("}", 1)
            lo, hi = (n.strip() for n in names.strip("{").split(","))
            word = val(src.lstrip(", "))
            regs[lo], regs[hi] = word & 0xFFFF, word >> 16
            continue
        d, *srcs = (s.strip() for s in rest.split(","))
        a = [val(s) for s in srcs]
        if op == "and.b32":
            regs[d] = a[0] & a[1]
        elif op == "or.b32":
            regs[d] = a[0] | a[1]
        elif op == "shl.b32":
            regs[d] = (a[0] << a[1]) & 0xFFFFFFFF
        elif op == "shr.b32":  # .b32: logical
            regs[d] = a[0] >> a[1]
        elif op == "cvt.rn.f16x2.e4m3x2":  # low byte -> low half, high byte -> high half
            regs[d] = _e4m3_to_f16_bits(a[0] & 0xFF) | (_e4m3_to_f16_bits(a[0] >> 8) << 16)
        elif op == "cvt.f32.f16":
            half = torch.tensor([a[0]], dtype=torch.int32).to(torch.int16).view(torch.float16)
            regs[d] = int(half.float().view(torch.int32).item()) & 0xFFFFFFFF
        else:
            raise AssertionError(f"the evaluator does not know {op!r}")
    return regs


def _decode_word(word: int) -> list[float]:
    regs = run_ptx(E2M1X8_PTX_TEXT, {"$8": word})
    bits = torch.tensor([regs[f"${j}"] for j in range(8)], dtype=torch.int64).to(torch.int32)
    return bits.view(torch.float32).tolist()


def _expected(word: int) -> list[float]:
    codes = torch.tensor([(word >> (4 * j)) & 0xF for j in range(8)], dtype=torch.uint8)
    return (decode_e2m1(codes).float() / 64.0).tolist()


@pytest.mark.parametrize("position", range(4))
def test_every_byte_value_in_every_position(position):
    gen = torch.Generator().manual_seed(position)
    for byte in range(256):
        others = int(torch.randint(0, 2**32, (1,), generator=gen, dtype=torch.int64).item())
        word = (others & ~(0xFF << (8 * position)) & 0xFFFFFFFF) | (byte << (8 * position))
        assert _decode_word(word) == _expected(word), hex(word)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_random_words(word):
    assert _decode_word(word) == _expected(word)


def test_the_values_come_out_in_k_order():
    # word 0x76543210: nibble j holds code j, values 0, .5, 1, 1.5, 2, 3, 4, 6 (times 2^-6)
    assert [v * 64 for v in _decode_word(0x76543210)] == [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
    assert [v * 64 for v in _decode_word(0xFEDCBA98)] == [-0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]


def test_the_evaluator_refuses_what_it_does_not_know():
    with pytest.raises(AssertionError, match="does not know"):
        run_ptx("add.s32 a, $0, 1;", {"$0": 1})


def test_triton_reads_the_low_half_of_its_own_conversion():
    """Triton's own E4M3 -> fp16 (one value) converts the byte in the low half and keeps the low 16
    bits of the result: the lane order the evaluator assumes."""
    from evalsuite.kernels.triton.static import compile_for, toolchain_missing

    if missing := toolchain_missing():
        pytest.skip(missing)
    import triton
    import triton.language as tl

    @triton.jit
    def convert(a_ptr, o_ptr):
        offs = tl.arange(0, 128)
        tl.store(o_ptr + offs, tl.load(a_ptr + offs).to(tl.float8e4nv, bitcast=True).to(tl.float16))

    with compile_for(90):
        compiled = convert.warmup(torch.empty(128, dtype=torch.uint8, device="meta"),
                                  torch.empty(128, dtype=torch.float16, device="meta"), grid=(1,))  # fmt: skip
    ptx = compiled.asm["ptx"]
    found = re.search(r"ld\.global\.b8 \{ (%rs\d+) \}.*?cvt\.rn\.f16x2\.e4m3x2 (%r\d+), (%rs\d+);.*?cvt\.u16\.u32\s+%rs\d+, (%r\d+);",
                      ptx, re.S)  # fmt: skip
    assert found, "Triton's fp8 -> fp16 lowering changed; re-read it before trusting E2M1X8_PTX's lanes"
    loaded, out, converted, kept = found.groups()
    assert converted == loaded and kept == out  # the byte in the low half, the low half of the result kept
