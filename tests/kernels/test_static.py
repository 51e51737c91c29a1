"""The GEMV kernels compiled for sm_90 without a GPU (`kernels.triton.static`): what ptxas made of them.

These guard the compile-time half of the kernels' speed, which CI can check: a memory-bound GEMV must
read its weight stream in 128-bit loads and must not spill. The speed itself is `make bench-gpu`'s.
"""

from __future__ import annotations

import pytest
import torch

from evalsuite.kernels.triton import HAS_TRITON, TRITON_MISSING_REASON

pytestmark = pytest.mark.skipif(not HAS_TRITON, reason=TRITON_MISSING_REASON or "triton missing")

PTX = """
    @%p10 ld.global.b8 { %rs1 }, [ %rd47 + 0 ];
    ld.global.v4.b32 { %r1, %r2, %r3, %r4 }, [ %rd2 + 0 ];
    ld.global.nc.L1::evict_last.v2.b32 { %r5, %r6 }, [ %rd3 + 0 ];
    @%p1 ld.global.L1::evict_last.L2::cache_hint.b16 { %rs2 }, [ %rd4 + 0 ], %rd5;
    ld.shared.v4.b32 { %r7, %r8, %r9, %r10 }, [ %r11 + 0 ];
    cp.async.cg.shared.global [ %r44 + 0 ], [ %rd20 + 0 ], 0x10, %r46;
    cp.async.ca.shared.global [ %r38 + 0 ], [ %rd16 + 0 ], 0x8, %r40;
    cp.async.commit_group;
    @%p2 st.global.v4.b32 [ %rd6 + 0 ], { %r1, %r2, %r3, %r4 };
    st.global.b16 [ %rd7 + 0 ], { %rs1 };
    @%p3 atom.global.gpu.acq_rel.add.f32 %f1, [ %rd8 + 0 ], %f2;
"""


SASS = """
        /*0900*/                   IMAD.MOV.U32 R1, RZ, RZ, c[0x0][0x28] ;
        /*0910*/                   LOP3.LUT R4, R2, 0x7, RZ, 0xc0, !PT ;
        /*0920*/                   F2FP.F16.E4M3.UNPACK_B R5, R4 ;
        /*0930*/               @P1 BRA 0x910 ;
        /*0940*/                   BRA 0x960;
        /*0950*/                   EXIT ;
"""


def test_the_longest_loop_is_counted_from_its_backward_branch():
    from evalsuite.kernels.triton.static import global_loads_by_width, local_accesses, loop_body, loop_instructions

    assert loop_instructions(SASS) == 3  # 0x910..0x930; the forward branch is not a loop
    assert local_accesses(loop_body(SASS)) == 0
    assert local_accesses(["STL [R1], R11", "@P0 LDL.LU R10, [R1]", "LDS R2, [R3]", "FADD R1, R2, R3"]) == 2
    assert global_loads_by_width(["@P0 LDG.E.128 R4, desc[UR4][R2.64]", "LDG.E.U8 R1, desc[UR4][R2.64]",
                                  "LDG.E R5, desc[UR4][R6.64]", "LDG.E.64 R2, [R4]", "LDS R1, [R2]"]) == {
        128: 1, 8: 1, 32: 1, 64: 1}  # fmt: skip
    assert loop_instructions(SASS.replace("@P1 BRA 0x910", "@P1 BRA 0x950")) == 0


def test_ptx_loads_and_stores_are_counted_by_width():
    from evalsuite.kernels.triton.static import global_loads, global_stores

    loads, copies = global_loads(PTX)
    assert loads == {8: 1, 128: 2, 64: 2, 16: 1}  # shared loads and atomics are not global loads
    assert copies == 2
    assert global_stores(PTX) == {128: 1, 16: 1}


@pytest.fixture
def toolchain(tmp_path, monkeypatch):
    from evalsuite.kernels.triton.static import toolchain_missing

    missing = toolchain_missing()
    if missing:  # pragma: no cover - a triton build without the NVIDIA toolchain
        pytest.skip(missing)
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("TRITON_DEFAULT_FP_FUSION", "1")


def _meta(*shape, dtype=torch.bfloat16):
    return torch.empty(shape, dtype=dtype, device="meta")


N, K = 2688, 1856  # the full-size config's expert down projection: K a multiple of 64, not of 256


def test_gemv_kernels_for_sm90_load_128_bits_and_do_not_spill(toolchain):
    from triton.runtime import driver

    from evalsuite.kernels.triton import _static_hook
    from evalsuite.kernels.triton.fp8_gemv import fp8_gemv
    from evalsuite.kernels.triton.nvfp4_gemv import nvfp4_dequantize_triton, nvfp4_gemv
    from evalsuite.kernels.triton.static import compile_for

    before = driver._active
    fp4 = (_meta(N, K // 2, dtype=torch.uint8), _meta(N, K // 16, dtype=torch.float8_e4m3fn), _meta(dtype=torch.float32))
    fp8w = (_meta(N, K, dtype=torch.float8_e4m3fn), _meta(N, 1, dtype=torch.float32))
    with compile_for(90) as rec:
        for m in (1, 16):
            assert nvfp4_gemv(_meta(m, K), *fp4).shape == (m, N)
            assert fp8_gemv(_meta(m, K), *fp8w).shape == (m, N)
        nvfp4_dequantize_triton(*fp4)
    assert driver._active is before and not _static_hook
    reports = rec.reports()
    by = {}
    for r in reports:
        by.setdefault((r.kernel, r.config.get("BLOCK_M")), []).append(r)
    # every autotune config a launch would time: one row tries 1 stage only, 16 rows 1 and 3
    assert {k: len(v) for k, v in by.items()} == {
        ("_nvfp4_gemv_kernel", 1): 9, ("_nvfp4_gemv_kernel", 16): 16,
        ("_fp8_gemv_kernel", 1): 5, ("_fp8_gemv_kernel", 16): 5, ("_dequant_kernel", None): 1,
    }  # fmt: skip
    for r in reports:
        assert not r.spills, r.describe()
        assert r.arch == 90 and 0 < r.registers <= 255
    for r in by[("_nvfp4_gemv_kernel", 1)]:
        # the weight in 128-bit loads; no per-value table reads in the K loop (the fp32 table took
        # 65-129 32-bit loads), only the activation's (1-2: a 64-wide K step spreads 128 bytes over
        # 128 threads in two reads) and the block scales' (K = 1856 is a multiple of 64: a word of
        # four scales per load, up to 2 a thread, no byte loads); the split-K epilogue's 32-bit reads
        # of the partials are after it
        loads = r.loop_loads
        assert r.widest_load == 128 and loads.get(32, 0) <= 4 and loads.get(8, 0) == 0, (loads, r.describe())
    for r in by[("_nvfp4_gemv_kernel", 16)]:
        # the single-stage tiles load straight into registers 16 bytes at a time
        if r.config["num_stages"] == 1:
            assert r.async_copies == 0 and r.loop_loads.get(64, 0) == 0 and r.loop_loads.get(128, 0) > 0, r.describe()
        assert r.loads_of(32) <= 1, r.describe()
    for r in by[("_fp8_gemv_kernel", 1)] + by[("_fp8_gemv_kernel", 16)]:
        assert r.widest_load == 128, r.describe()
    # the one-row loop's SASS per weight value a thread decodes per K step: the issue rate an H200
    # offers (~33.5e12 thread-instructions/s) over it bounds values/s. Bit-arithmetic E4M3 decoding
    # took FP8 to ~26 (below bf16 cuBLAS), a register-table E2M1 decode NVFP4 to ~13.7, byte-wise bit
    # moves into E4M3 positions to ~10; the word-wide PTX decode (`decode.E2M1X8_PTX`) to ~5, and
    # fp16 products (`decode.e2m1_block_dot`: no fp32 conversion or FFMA per value) to 3.2-4.4, each
    # block of activations scaled by its own power of two (`decode.x_f16_pairs`) to 3.4-5.0, and
    # the block scales read four to a word (`decode.nvfp4_step`) to 3.1-4.6.
    for key, most in ((("_nvfp4_gemv_kernel", 1), 4.7), (("_fp8_gemv_kernel", 1), 5.0)):
        for r in by[key]:
            per_value = r.loop_per_value
            assert 0 < per_value <= most, (per_value, r.describe())
    (dq,) = by[("_dequant_kernel", None)]
    assert dq.widest_load == 128 and max(dq.global_stores) == 128, dq.describe()
    mma = [c for name, kw, c in rec.compiled if kw.get("USE_DOT")]
    assert mma and all("mma" in c.asm["ptx"] for c in mma)  # 16 rows multiply on the tensor cores


def test_grouped_nvfp4_for_sm90_loads_128_bits_and_does_not_spill(toolchain):
    from evalsuite.kernels.triton.grouped_gemm import AUTOTUNE_CONFIGS, ONE_ROW_CONFIGS, grouped_gemm
    from evalsuite.kernels.triton.static import compile_for

    experts = 8
    w = (_meta(experts, N, K // 2, dtype=torch.uint8), _meta(experts, N, K // 16, dtype=torch.float8_e4m3fn),
         _meta(experts, dtype=torch.float32))  # fmt: skip
    with compile_for(90) as rec:
        # decode at a row per expert (one-row tiles) and at a few (16-row tiles), prefill (64-row tiles)
        for rows in (6, 40, 512):
            offsets = _meta(experts + 1, dtype=torch.int64)
            assert grouped_gemm(_meta(rows, K), offsets, *w).shape == (rows, N)
    reports = rec.reports()
    assert sorted({r.config["BLOCK_M"] for r in reports}) == [1, 16, 64]
    assert len(reports) == 2 * len(AUTOTUNE_CONFIGS) + len(ONE_ROW_CONFIGS)
    for r in reports:
        if r.config["BLOCK_M"] == 1:  # the one-row GEMV's loop: fp16 products, 128-bit weight loads
            per_value = r.loop_per_value
            assert per_value <= 4.5 and r.widest_load == 128, (per_value, r.describe())
    # (the weight as [BLOCK_K/2, BLOCK_N] with a scale load per byte spilled 16-408 B at 64 rows and
    # never loaded more than 64 bits). Nothing spills inside the K loop; a few 16-row tiles keep a
    # register or two in local memory across it (8-16 B, stored before the loop and loaded after:
    # once per program, not per step).
    for r in reports:
        assert not r.spills_in_loop and r.stack_bytes + r.local_bytes <= 16, r.describe()
        if r.config["BLOCK_M"] == 64:
            assert r.widest_load == 128, r.describe()
        elif r.config["num_stages"] == 1:  # decode tiles loading straight into registers
            assert r.async_copies == 0 and r.widest_load == 128, r.describe()


def test_e4m3_is_converted_by_the_gpu_on_sm90_and_by_arithmetic_on_sm80(toolchain):
    """Triton has no E4M3 type before sm_89: there the kernels compile the bit-arithmetic decode."""
    from evalsuite.kernels.triton import e4m3_convert
    from evalsuite.kernels.triton.fp8_gemv import fp8_gemv
    from evalsuite.kernels.triton.grouped_gemm import grouped_gemm
    from evalsuite.kernels.triton.nvfp4_gemv import nvfp4_dequantize_triton, nvfp4_gemv
    from evalsuite.kernels.triton.static import compile_for, sass

    n, k = 256, 512
    fp4 = (_meta(n, k // 2, dtype=torch.uint8), _meta(n, k // 16, dtype=torch.float8_e4m3fn), _meta(dtype=torch.float32))
    g4 = (_meta(2, n, k // 2, dtype=torch.uint8), _meta(2, n, k // 16, dtype=torch.float8_e4m3fn),
          _meta(2, dtype=torch.float32))  # fmt: skip
    tile = dict(block_n=32, block_k=128, split_k=2)
    for arch, converts in ((80, False), (90, True)):
        with compile_for(arch) as rec:
            assert e4m3_convert(torch.device("meta")) is converts
            nvfp4_gemv(_meta(1, k), *fp4, **tile)
            fp8_gemv(_meta(16, k), _meta(n, k, dtype=torch.float8_e4m3fn), _meta(n, 1, dtype=torch.float32), **tile)
            nvfp4_dequantize_triton(*fp4)
            grouped_gemm(_meta(3, k), _meta(3, dtype=torch.int64), *g4, block_n=32, block_k=64)
        assert len(rec.compiled) == 4
        for name, _, compiled in rec.compiled:
            assert ("E4M3" in sass(compiled.asm["cubin"])) is converts, (arch, name)  # F2FP.F16.E4M3.UNPACK_B
            # the word-wide inline PTX (its first mask) in the NVFP4 GEMV and grouped kernels, on sm_89+
            words = name in ("_nvfp4_gemv_kernel", "_grouped_kernel")
            assert ("0x07070707" in compiled.asm["ptx"]) is (converts and words), (arch, name)


def test_use_ptx_false_compiles_the_triton_decode_on_sm90(toolchain):
    """``use_ptx=False``: the same kernel with the E2M1 decode in Triton ops (no inline PTX), for
    comparing the two on a GPU; still the GPU's E4M3 conversion."""
    from evalsuite.kernels.triton.nvfp4_gemv import nvfp4_gemv
    from evalsuite.kernels.triton.static import compile_for, sass

    n, k = 256, 512
    fp4 = (_meta(n, k // 2, dtype=torch.uint8), _meta(n, k // 16, dtype=torch.float8_e4m3fn), _meta(dtype=torch.float32))
    with compile_for(90) as rec:
        for use_ptx in (None, False):
            nvfp4_gemv(_meta(1, k), *fp4, block_n=32, block_k=128, split_k=2, use_ptx=use_ptx)
    (_, _, default), (_, kw, plain) = rec.compiled
    assert "0x07070707" in default.asm["ptx"] and "0x07070707" not in plain.asm["ptx"]
    assert kw["WORD_PTX"] is False and "E4M3" in sass(plain.asm["cubin"])


def test_one_row_multiplies_in_fp16_unless_asked_not_to_on_sm90(toolchain):
    """One row of bf16: the fp16 products (``fma.rn.f16x2``: HFMA2 in the SASS, no fp32 conversion
    per value); ``f16_products=False`` and fp32 activations: each value converted and multiplied in
    fp32, more instructions per value."""
    from evalsuite.kernels.triton.nvfp4_gemv import nvfp4_gemv
    from evalsuite.kernels.triton.static import compile_for, loop_body, sass

    fp4 = (_meta(N, K // 2, dtype=torch.uint8), _meta(N, K // 16, dtype=torch.float8_e4m3fn), _meta(dtype=torch.float32))
    tile = dict(block_n=32, block_k=256, split_k=2)
    with compile_for(90) as rec:
        nvfp4_gemv(_meta(1, K), *fp4, **tile)
        nvfp4_gemv(_meta(1, K), *fp4, **tile, f16_products=False)
        nvfp4_gemv(_meta(1, K, dtype=torch.float32), *fp4, **tile)
    loops = [loop_body(sass(c.asm["cubin"])) for _, _, c in rec.compiled]
    assert [kw["F16_PRODUCTS"] for _, kw, _ in rec.compiled] == [True, False, False]
    f16, f32, fp32_x = ([next(t for t in ins.split() if not t.startswith("@")) for ins in loop] for loop in loops)
    packed = sum(f16.count(op) for op in ("HFMA2", "HFMA2.MMA", "HMUL2"))  # ptxas runs some fma.f16x2 as .MMA
    assert packed >= 32 and f16.count("FFMA") <= 8, f16  # 64 values a thread: 32 pairs, 4 blocks
    assert f32.count("FFMA") >= 64 and fp32_x.count("FFMA") >= 64
    assert len(f16) < 0.85 * len(f32), (len(f16), len(f32))


def test_compile_for_restores_the_driver_and_the_interpreter_after_an_error(toolchain):
    from triton.runtime import driver

    from evalsuite.kernels import nvfp4
    from evalsuite.kernels.triton import _static_hook
    from evalsuite.kernels.triton.nvfp4_gemm import nvfp4_gemm_ref
    from evalsuite.kernels.triton.nvfp4_gemv import nvfp4_gemv
    from evalsuite.kernels.triton.static import compile_for

    before = driver._active
    with pytest.raises(ValueError, match="at most 16 rows"):
        with compile_for(90):
            nvfp4_gemv(_meta(17, 64), _meta(16, 32, dtype=torch.uint8),
                       _meta(16, 4, dtype=torch.float8_e4m3fn), _meta(dtype=torch.float32))  # fmt: skip
    assert driver._active is before and not _static_hook
    # CPU tensors still run under the interpreter, inside the block too
    q = nvfp4.quantize(torch.randn(16, 64, generator=torch.Generator().manual_seed(0)))
    x = torch.randn(1, 64, generator=torch.Generator().manual_seed(1))
    with compile_for(90) as rec:
        y = nvfp4_gemv(x, *q)
    assert rec.compiled == []
    torch.testing.assert_close(y, nvfp4_gemm_ref(x, *q), rtol=1e-5, atol=1e-5)


def test_compile_for_says_what_is_missing(monkeypatch):
    from evalsuite.kernels.triton import static

    monkeypatch.setattr(static, "toolchain_missing", lambda: "Triton's NVIDIA toolchain has no working ptxas: gone")
    with pytest.raises(RuntimeError, match=r"compile_for\(sm_90\): .*no working ptxas"):
        with static.compile_for(90):
            pass  # pragma: no cover


def test_the_decode_choice_per_device_and_under_torch_compile(monkeypatch):
    """sm_89+ converts; a compiled decode step asks the device once, while tracing (no graph break)."""
    import evalsuite.kernels.triton as kt

    asked = []
    capability = {0: (8, 0), 1: (9, 0)}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: asked.append(index) or capability[index])
    assert kt.e4m3_convert(torch.device("cpu")) is True  # the interpreter emulates the conversion
    assert kt.e4m3_convert(torch.device("meta")) is True  # outside compile_for: the GPUs this targets
    assert [kt.e4m3_convert(torch.device("cuda", i)) for i in (0, 1)] == [False, True]

    @torch.compile(backend="eager", fullgraph=True)
    def step(x):
        return x + 1 if kt.e4m3_convert(torch.device("cuda", 0)) else x - 1

    asked.clear()
    torch._dynamo.reset()
    assert step(torch.zeros(2)).tolist() == [-1.0, -1.0] and step(torch.ones(2)).tolist() == [0.0, 0.0]
    assert asked == [0]


def test_a_decode_call_is_the_kernel_alone(toolchain):
    """On a GPU every PyTorch op a wrapper dispatches is one more kernel launch per layer per token
    (the GEMVs were three launches, a grouped call ~20: a zeroed workspace and a cast, a tile table).
    Dispatched on meta tensors under `compile_for`, beyond views and allocations, there are none."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from evalsuite.kernels.triton.fp8_gemv import fp8_gemv
    from evalsuite.kernels.triton.grouped_gemm import grouped_gemm
    from evalsuite.kernels.triton.nvfp4_gemv import nvfp4_gemv
    from evalsuite.kernels.triton.static import compile_for

    free = {"view", "reshape", "_reshape_alias", "_unsafe_view", "empty", "empty_strided", "as_strided", "alias",
            "detach", "lift_fresh", "expand", "slice", "select", "unsqueeze", "t", "transpose"}  # fmt: skip

    class Ops(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            if func.__name__.split(".")[0] not in free:
                self.seen.append(func.__name__)
            return func(*args, **(kwargs or {}))

    n, k, e = 256, 512, 4
    fp4 = (_meta(n, k // 2, dtype=torch.uint8), _meta(n, k // 16, dtype=torch.float8_e4m3fn), _meta(dtype=torch.float32))
    g4 = (_meta(e, n, k // 2, dtype=torch.uint8), _meta(e, n, k // 16, dtype=torch.float8_e4m3fn),
          _meta(e, dtype=torch.float32))  # fmt: skip
    tile = dict(block_n=32, block_k=128)
    calls = [
        lambda: nvfp4_gemv(_meta(1, k), *fp4, **tile, split_k=4),
        lambda: fp8_gemv(_meta(1, k), _meta(n, k, dtype=torch.float8_e4m3fn), _meta(n, 1, dtype=torch.float32),
                         **tile, split_k=4),  # fmt: skip
        lambda: grouped_gemm(_meta(6, k), _meta(e + 1, dtype=torch.int64), *g4, block_n=32, block_k=64),
    ]
    with compile_for(90) as rec:
        for call in calls:
            call()  # the first call may allocate the split-K counters once
            with Ops() as ops:
                call()
            assert ops.seen == [], ops.seen
    assert len(rec.compiled) == 6


def test_every_kernel_compiles_with_fused_multiply_adds_whatever_tritons_default(toolchain, monkeypatch):
    """The launches pass ``enable_fp_fusion=True`` (`kernels.triton.COMPILE_OPTIONS`): Triton 3.9 warns
    that its default turns fusion off in 3.10, which would split every FFMA the instruction counts
    assume. With the default set off, every wrapper's kernels still compile with fusion on."""
    from evalsuite.kernels.triton.fp8_gemv import fp8_gemv
    from evalsuite.kernels.triton.grouped_gemm import grouped_gemm
    from evalsuite.kernels.triton.nvfp4_gemm import nvfp4_gemm
    from evalsuite.kernels.triton.nvfp4_gemv import nvfp4_dequantize_triton, nvfp4_gemv
    from evalsuite.kernels.triton.static import compile_for

    monkeypatch.setenv("TRITON_DEFAULT_FP_FUSION", "0")
    n, k, e = 64, 256, 4
    fp4 = (_meta(n, k // 2, dtype=torch.uint8), _meta(n, k // 16, dtype=torch.float8_e4m3fn), _meta(dtype=torch.float32))
    g4 = (_meta(e, n, k // 2, dtype=torch.uint8), _meta(e, n, k // 16, dtype=torch.float8_e4m3fn),
          _meta(e, dtype=torch.float32))  # fmt: skip
    with compile_for(90) as rec:
        nvfp4_gemv(_meta(1, k), *fp4, block_n=32, block_k=128, split_k=2)
        fp8_gemv(_meta(1, k), _meta(n, k, dtype=torch.float8_e4m3fn), _meta(n, 1, dtype=torch.float32),
                 block_n=32, block_k=128, split_k=2)  # fmt: skip
        grouped_gemm(_meta(3, k), _meta(e + 1, dtype=torch.int64), *g4, block_m=1, block_n=32, block_k=128)
        nvfp4_gemm(_meta(32, k), *fp4)
        nvfp4_dequantize_triton(*fp4)
    names = [c.metadata.name for _, _, c in rec.compiled]
    assert len(names) == 5 and all(c.metadata.enable_fp_fusion for _, _, c in rec.compiled), names
