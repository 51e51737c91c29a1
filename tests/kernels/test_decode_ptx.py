"""The inline PTX of `kernels.triton.decode` checked without a GPU: a small evaluator runs the shipped
text instruction by instruction, with the semantics of the PTX ISA for the handful of instructions
it uses, and the result must be the reference E2M1 decode for every byte value in every position.

What this does not check is what only a GPU can: that ptxas and the hardware do what the ISA says.
The conventions it relies on are Triton's own: ``mov.b32 {lo, hi}, r`` puts the low 16 bits first,
and ``cvt.rn.f16x2.e4m3x2`` converts the low byte into the low half (Triton's fp8 -> fp16 lowering
reads its one value from the low half: `test_triton_reads_the_low_half_of_its_own_conversion`)."""

from __future__ import annotations

import math
import re
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from evalsuite.kernels.nvfp4 import decode_e2m1
from evalsuite.kernels.triton import HAS_TRITON
from evalsuite.kernels.triton.decode import E2M1X8_PTX_TEXT, E2M1X16_DOT_PTX_TEXT, F16_PRODUCTS_X_TOP

if HAS_TRITON:
    import triton.language as tl

    from evalsuite.kernels.triton.decode import e2m1_block_dot, x_f16_pairs

_INSTR = re.compile(r"^([a-z0-9.]+)\s+(.*);$")


def _e4m3_to_f16_bits(byte: int) -> int:
    value = torch.tensor([byte], dtype=torch.uint8).view(torch.float8_e4m3fn).to(torch.float16)
    return int(value.view(torch.int16).item()) & 0xFFFF


def _rounded(exact: Fraction, bits: int, emin: int, largest: float) -> float:
    """``exact`` rounded to nearest, ties to even, in a binary format of ``bits`` significand bits
    and least normal exponent ``emin`` (subnormals below it); beyond ``largest``, infinity."""
    if exact == 0:
        return 0.0
    mag = abs(exact)
    e = mag.numerator.bit_length() - mag.denominator.bit_length()  # 2^e <= mag < 2^(e+2)
    if Fraction(2) ** e > mag:
        e -= 1
    if Fraction(2) ** (e + 1) <= mag:
        e += 1
    quantum = Fraction(2) ** (max(e, emin) - bits + 1)
    value = round(mag / quantum) * quantum  # Fraction's round: ties to even
    out = float("inf") if value > Fraction(largest) else float(value)
    return -out if exact < 0 else out


def _half(bits: int) -> float:
    return float(np.array(bits & 0xFFFF, dtype=np.uint16).view(np.float16))


def _half_bits(value: float) -> int:
    return int(np.array(value, dtype=np.float16).view(np.uint16))  # exact: value is an fp16 value


def _single(bits: int) -> float:
    return float(np.array(bits, dtype=np.uint32).view(np.float32))


def _single_bits(value: float) -> int:
    return int(np.array(value, dtype=np.float32).view(np.uint32))


def _fma(a: float, b: float, c: float, bits: int, emin: int, largest: float) -> float:
    """``a * b + c`` rounded once (the PTX ISA's ``fma.rn`` and ``mul.rn``, with ``c`` = -0 for a
    product alone): exact rational arithmetic; an exact zero takes IEEE's sign, as float64 gives it."""
    exact = Fraction(a) * Fraction(b) + Fraction(c)
    if exact == 0:
        return float(np.float64(a) * np.float64(b) + np.float64(c))
    return _rounded(exact, bits, emin, largest)


def _f16_fma(a: float, b: float, c: float) -> float:
    return _fma(a, b, c, 11, -14, 65504.0)


def _f32_add(a: float, b: float) -> float:
    return _fma(a, 1.0, b, 24, -126, float(np.finfo(np.float32).max))


def _prmt(a: int, b: int, selector: int) -> int:
    """``prmt.b32`` in its default mode: result byte i is byte ``s & 7`` of b:a (a's bytes first),
    or that byte's sign bit in all eight bits when ``s & 8``; ``s`` is selector nibble i."""
    pool = [(a >> (8 * i)) & 0xFF for i in range(4)] + [(b >> (8 * i)) & 0xFF for i in range(4)]
    out = 0
    for i in range(4):
        s = (selector >> (4 * i)) & 0xF
        byte = pool[s & 7]
        if s & 8:
            byte = 0xFF if byte & 0x80 else 0
        out |= byte << (8 * i)
    return out


def _f16x2(a: int, b: int, c: int | None) -> int:
    """``mul.rn.f16x2`` (``c`` None) or ``fma.rn.f16x2``, each half on its own."""
    out = 0
    for half in (0, 16):
        addend = -0.0 if c is None else _half(c >> half)
        out |= _half_bits(_f16_fma(_half(a >> half), _half(b >> half), addend)) << half
    return out


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
        elif op == "prmt.b32":
            regs[d] = _prmt(a[0], a[1], a[2])
        elif op == "mul.rn.f16x2":
            regs[d] = _f16x2(a[0], a[1], None)
        elif op == "fma.rn.f16x2":
            regs[d] = _f16x2(a[0], a[1], a[2])
        elif op == "add.f32":
            regs[d] = _single_bits(_f32_add(_single(a[0]), _single(a[1])))
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


# ---- one scale block's dot product in fp16 (`decode.e2m1_block_dot`) ------------------------------


def _values(word: int) -> list[float]:
    codes = torch.tensor([(word >> (4 * j)) & 0xF for j in range(8)], dtype=torch.uint8)
    return decode_e2m1(codes).double().tolist()


def _block_dot_spec(w0: int, w1: int, x: list[float]) -> float:
    """What `e2m1_block_dot` promises, written from its description: the sixteen E2M1 values (2^-6
    times, the reference decode) times ``x`` (fp16 values, already 2^-4 times the activations); the
    even-indexed products summed in order in fp16 with one rounding per fma, the odd likewise; the
    two sums added in fp32."""
    v = [value / 64 for value in _values(w0) + _values(w1)]
    lo = _f16_fma(v[0], x[0], -0.0)
    hi = _f16_fma(v[1], x[1], -0.0)
    for j in range(2, 16, 2):
        lo = _f16_fma(v[j], x[j], lo)
        hi = _f16_fma(v[j + 1], x[j + 1], hi)
    return _f32_add(lo, hi)


def _pairs(x: list[float]) -> list[int]:
    return [_half_bits(x[2 * i]) | (_half_bits(x[2 * i + 1]) << 16) for i in range(8)]


def _block_dot_ptx(w0: int, w1: int, x: list[float]) -> float:
    inputs = {"$1": w0, "$2": w1, **{f"${3 + i}": p for i, p in enumerate(_pairs(x))}}
    return _single(run_ptx(E2M1X16_DOT_PTX_TEXT, inputs)["$0"])


_halves = st.floats(width=16, allow_nan=False, allow_infinity=False)
_words = st.integers(min_value=0, max_value=2**32 - 1)


@settings(max_examples=200, deadline=None)
@given(_words, _words, st.lists(_halves, min_size=16, max_size=16))
def test_block_dot_ptx_is_its_spec(w0, w1, x):
    """Any two words against any sixteen finite fp16 activations (to +-65504: no sum overflows, the
    largest product being 6 x 2^-6 x 65504)."""
    got, want = _block_dot_ptx(w0, w1, x), _block_dot_spec(w0, w1, x)
    assert _single_bits(got) == _single_bits(want), (hex(w0), hex(w1), x, got, want)


def test_block_dot_ptx_on_known_values():
    # values 0, .5, 1, 1.5, 2, 3, 4, 6 (x 2^-6) twice, times ones: (18 + 18) / 64, exact in fp16
    assert _block_dot_ptx(0x76543210, 0x76543210, [1.0] * 16) == 36 / 64
    # each value times its own index: even and odd halves kept apart until the fp32 add
    x = [float(j) for j in range(16)]
    assert _block_dot_ptx(0x76543210, 0xFEDCBA98, x) == _block_dot_spec(0x76543210, 0xFEDCBA98, x)
    # the sums are fp16: values 0 and 2 are 4 x 2^-6, times 32768 and 16: 2048 + 1 is a tie between
    # fp16's 2048 and 2050, and rounds to the even 2048 (in fp32 it would be 2049)
    x = [32768.0, 0.0, 16.0] + [0.0] * 13
    assert _block_dot_ptx(0x00000606, 0, x) == 2048.0
    assert _block_dot_ptx(0x00000006, 0, x) == 2048.0


def _block_dot_kernel(w_ptr, x_ptr, o_ptr, N: tl.constexpr):
    offs = tl.arange(0, N)
    xp = x_ptr + offs * 8
    out = e2m1_block_dot(tl.load(w_ptr + offs * 2), tl.load(w_ptr + offs * 2 + 1),
                         tl.load(xp), tl.load(xp + 1), tl.load(xp + 2), tl.load(xp + 3),
                         tl.load(xp + 4), tl.load(xp + 5), tl.load(xp + 6), tl.load(xp + 7),
                         False, True, True)  # fmt: skip
    tl.store(o_ptr + offs, out)


@pytest.mark.skipif(not HAS_TRITON, reason="triton missing")
def test_block_dot_in_triton_ops_equals_the_ptx():
    """The interpreter's (and pre-sm_89 GPUs') route, the same operations in Triton ops, gives the PTX
    text's bits: every code in both words and in every position, against activations of every scale."""
    from evalsuite.kernels.triton import build_kernel

    gen = np.random.default_rng(0)
    n = 64
    words = gen.integers(0, 2**32, size=(n, 2), dtype=np.uint64)
    words[:16, 0] = [int("".join(f"{(c + j) % 16:x}" for j in range(8)), 16) for c in range(16)]
    exps = gen.integers(-24, 16, size=(n, 16))
    x = np.clip(gen.standard_normal((n, 16)) * 2.0**exps, -65504, 65504).astype(np.float16).astype(np.float64)
    x[0, :4] = [0.0, -0.0, 65504.0, -6e-8]
    pairs = np.array([_pairs(list(row)) for row in x], dtype=np.uint32).view(np.int32)
    w = torch.from_numpy(words.astype(np.uint32).view(np.int32).reshape(-1).copy())
    got = torch.empty(n, dtype=torch.float32)
    build_kernel(_block_dot_kernel, "interpret")[(1,)](w, torch.from_numpy(pairs.reshape(-1).copy()), got, N=n)
    want = [_block_dot_ptx(int(a), int(b), list(row)) for (a, b), row in zip(words.tolist(), x)]
    assert [_single_bits(v) for v in got.tolist()] == [_single_bits(v) for v in want]


def _pairs_kernel(x_ptr, o_ptr, d_ptr, G: tl.constexpr):
    x0, x1, x2, x3, x4, x5, x6, x7, down = x_f16_pairs(tl.load(x_ptr + tl.arange(0, 16 * G)), G)
    offs = tl.arange(0, G) * 8
    tl.store(o_ptr + offs, x0)
    tl.store(o_ptr + offs + 1, x1)
    tl.store(o_ptr + offs + 2, x2)
    tl.store(o_ptr + offs + 3, x3)
    tl.store(o_ptr + offs + 4, x4)
    tl.store(o_ptr + offs + 5, x5)
    tl.store(o_ptr + offs + 6, x6)
    tl.store(o_ptr + offs + 7, x7)
    tl.store(d_ptr + tl.arange(0, G), down)


def _block_scale(block: list[float]) -> int:
    """The spec of `x_f16_pairs`'s scaling, written from its description: the power of two (its
    exponent) that puts the block's largest magnitude in [2^TOP, 2^(TOP+1)), as if at least 2^-112."""
    top = max(abs(v) for v in block)
    exp = math.frexp(top)[1] - 1 if top >= 2.0**-112 else -112
    return F16_PRODUCTS_X_TOP - exp


@pytest.mark.skipif(not HAS_TRITON, reason="triton missing")
def test_x_f16_pairs_scales_each_block_by_its_own_power_of_two_and_packs_it_in_k_order():
    """Each block of sixteen: scaled so its largest magnitude is in [2^14, 2^15) (blocks of ordinary,
    huge, tiny, subnormal and zero activations, an exact power of two and one just below the next),
    rounded to fp16, packed in pairs in k order; the inverse scale beside it."""
    from evalsuite.kernels.triton import build_kernel

    g = 8
    x = torch.randn(16 * g, generator=torch.Generator().manual_seed(0)).double()
    x[16:32] *= 1e30
    x[32:48] *= 1e-30
    x[48:64] *= 2.0**-130  # bf16's (and fp32's) subnormals
    x[64:80] = 0.0
    x[80:96] *= 1e-3
    x[81] = 2.0**5  # the largest is a power of two
    x[96:112] *= 1e4
    x[100] = -(2.0**20) * (1 - 2.0**-24)  # just below 2^20
    x[112:128] *= 1e-6
    x[120] = 3e-4  # one block: a large value beside small ones (these keep fp16's absolute grid)
    x = x.float()
    got, down = torch.empty(8 * g, dtype=torch.int32), torch.empty(g, dtype=torch.float32)
    build_kernel(_pairs_kernel, "interpret")[(1,)](x, got, down, G=g)
    want, want_down = [], []
    for b in range(g):
        block = x[16 * b:16 * b + 16].double().tolist()
        shift = _block_scale(block)
        want += _pairs([float(np.float16(math.ldexp(v, shift))) for v in block])
        want_down.append(math.ldexp(1.0, -shift))
        assert all(abs(math.ldexp(v, shift)) < 2.0**15 for v in block)
    assert got.view(torch.int32).numpy().view(np.uint32).tolist() == want
    assert down.tolist() == want_down


@pytest.mark.skipif(not HAS_TRITON, reason="triton missing")
def test_x_f16_pairs_keep_inf_and_nan():
    from evalsuite.kernels.triton import build_kernel

    x = torch.ones(16)
    x[3], x[9] = float("inf"), float("nan")
    got, down = torch.empty(8, dtype=torch.int32), torch.empty(1, dtype=torch.float32)
    build_kernel(_pairs_kernel, "interpret")[(1,)](x, got, down, G=1)
    halves = got.numpy().view(np.uint32)
    values = np.array([[h & 0xFFFF, h >> 16] for h in halves.tolist()], dtype=np.uint16).view(np.float16).reshape(-1)
    assert np.isposinf(values[3]) and np.isnan(values[9]) and np.isfinite(np.delete(values, [3, 9])).all()


def test_alignment_checks_trace_under_torch_compile() -> None:
    """The compiled decode step traces the GEMV wrappers: data_ptr() broke the trace (fullgraph), so the
    fp4 compiled step always fell back. Eager still copies a view that starts off a word."""
    from evalsuite.kernels.triton.decode import scale_words, word_aligned

    q, s = torch.arange(8 * 36, dtype=torch.int32).to(torch.uint8).reshape(8, 36), torch.zeros(8, 4, dtype=torch.uint8)
    traced = torch.compile(lambda q, s: (word_aligned(q).float().sum(), scale_words(s, 64)), fullgraph=True,
                           backend="eager")
    total, words = traced(q[:, :32], s)
    assert total == q[:, :32].float().sum() and words is True
    odd = q[:, 1:33]
    assert odd.data_ptr() % 4 and word_aligned(odd).data_ptr() % 4 == 0 and torch.equal(word_aligned(odd), odd)
    assert not scale_words(torch.zeros(8, 5, dtype=torch.uint8)[:, 1:], 64)
