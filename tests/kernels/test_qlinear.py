"""FP8Linear / NVFP4Linear: built from nn.Linear, forward equals the reference math."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from evalsuite.kernels import fp8, nvfp4
from evalsuite.kernels.qlinear import FP8Linear, NVFP4Linear
from evalsuite.kernels.triton import HAS_TRITON


def _linear(n: int, k: int, bias: bool = True, dtype: torch.dtype = torch.bfloat16) -> nn.Linear:
    torch.manual_seed(n * 1000 + k)
    return nn.Linear(k, n, bias=bias).to(dtype)


@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_fp8_linear_holds_the_codec_output_and_matches_reference(granularity):
    lin = _linear(32, 64)
    q = FP8Linear.from_linear(lin, granularity)
    expected = fp8.quantize(lin.weight, granularity)
    assert torch.equal(q.qdata.view(torch.uint8), expected.qdata.view(torch.uint8))
    assert torch.equal(q.scale, expected.scales)
    assert q.fmt == ("fp8" if granularity == "tensor" else "fp8-channel")
    x = torch.randn(2, 3, 64, dtype=torch.bfloat16)
    y = q(x)
    xq = fp8.quantize(x, "token")
    ref = (fp8.dequantize(*xq) @ q.dequantized_weight().t() + lin.bias.float()).to(torch.bfloat16)
    assert y.dtype == torch.bfloat16 and y.shape == (2, 3, 32)
    torch.testing.assert_close(y, ref, rtol=0, atol=0)
    # and it is close to the unquantized layer
    rel = (y.float() - lin(x).float()).norm() / lin(x).float().norm()
    assert rel < 0.06


def test_nvfp4_linear_holds_the_codec_output_and_matches_reference():
    lin = _linear(48, 64, bias=False)
    q = NVFP4Linear.from_linear(lin)
    expected = nvfp4.quantize(lin.weight)
    assert torch.equal(q.qdata, expected.qdata)
    assert torch.equal(q.block_scales.view(torch.uint8), expected.block_scales.view(torch.uint8))
    assert torch.equal(q.global_scale, expected.global_scale)
    x = torch.randn(5, 64, dtype=torch.bfloat16)
    ref = (x.float() @ q.dequantized_weight().t()).to(torch.bfloat16)
    torch.testing.assert_close(q(x), ref, rtol=0, atol=0)
    rel = (q(x).float() - lin(x).float()).norm() / lin(x).float().norm()
    assert rel < 0.15


@pytest.mark.skipif(not HAS_TRITON, reason="triton missing")
def test_nvfp4_linear_triton_backend_matches_ref_backend():
    lin = _linear(32, 48)
    q = NVFP4Linear.from_linear(lin)
    x = torch.randn(4, 48, dtype=torch.bfloat16)
    q.backend = "ref"
    ref = q(x)
    q.backend = "triton"  # CPU tensors: runs under the Triton interpreter
    torch.testing.assert_close(q(x).float(), ref.float(), rtol=2.0**-7, atol=2.0**-7)


def test_sizes_and_bits_per_weight():
    lin = _linear(32, 64, bias=False)
    f8 = FP8Linear.from_linear(lin)
    f4 = NVFP4Linear.from_linear(lin)
    assert f8.nbytes == 32 * 64 + 4
    assert f4.nbytes == 32 * 64 // 2 + 32 * 64 // 16 + 4  # 4.5 bits/weight + global scale


def test_meta_linear_converts_to_meta_layer():
    with torch.device("meta"):
        lin = nn.Linear(4096, 2048, bias=False)
    q = NVFP4Linear.from_linear(lin)
    assert q.qdata.is_meta and q.qdata.shape == (2048, 2048)
    assert q.nbytes == 2048 * 4096 // 2 + 2048 * 4096 // 16 + 4


def test_state_dict_round_trip_into_empty_layer():
    lin = _linear(16, 32)
    q = NVFP4Linear.from_linear(lin)
    fresh = NVFP4Linear(32, 16, bias=True)
    fresh.load_state_dict(q.state_dict())
    x = torch.randn(3, 32, dtype=torch.bfloat16)
    assert torch.equal(fresh(x), q(x))
    assert sorted(q.state_dict()) == ["bias", "block_scales", "global_scale", "qdata"]


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="in_features must be a multiple of 16, got 20"):
        NVFP4Linear(20, 8)
    with pytest.raises(ValueError, match="granularity must be 'tensor' or 'channel'"):
        FP8Linear(16, 16, granularity="token")


@pytest.mark.skipif(not HAS_TRITON, reason="triton missing")
@pytest.mark.parametrize("backend, m", [("gemv", 3), ("dequant", 5), ("triton", 4)])
def test_nvfp4_linear_every_backend_matches_ref_backend(backend, m):
    lin = _linear(40, 64)
    q = NVFP4Linear.from_linear(lin)
    x = torch.randn(m, 64, dtype=torch.bfloat16)
    q.backend = "ref"
    ref = q(x)
    q.backend = backend  # CPU tensors: the Triton kernels run under the interpreter
    torch.testing.assert_close(q(x).float(), ref.float(), rtol=2.0**-6, atol=2.0**-6)


def test_nvfp4_auto_backend_by_rows_and_device():
    from evalsuite.kernels.qlinear import NVFP4_DEQUANT_MIN_M, NVFP4_GEMV_MAX_M, nvfp4_backend_for

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert nvfp4_backend_for(1, cpu) == "cached"  # the reference arithmetic, weight dequantized once
    if HAS_TRITON:
        assert nvfp4_backend_for(1, cuda) == "gemv" and nvfp4_backend_for(NVFP4_GEMV_MAX_M, cuda) == "gemv"
        assert nvfp4_backend_for(NVFP4_GEMV_MAX_M + 1, cuda) == "triton"
        assert nvfp4_backend_for(NVFP4_DEQUANT_MIN_M, cuda) == "dequant"
    q = NVFP4Linear.from_linear(_linear(16, 32))
    q.backend = "bogus"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="backend must be one of"):
        q(torch.randn(1, 32, dtype=torch.bfloat16))


def test_fp8_auto_backend_above_the_gemv_rows_reaches_fp8_gemm(monkeypatch):
    """On CUDA, more rows than the GEMV takes resolve to "auto" (fp8_gemm picks scaled_mm or its
    reference by shape): FP8Linear refused its own resolution, so every CUDA prefill of an fp8/fp4
    model failed. The CUDA answer is forced here; fp8_gemm's "auto" runs its reference on a CPU."""
    from evalsuite.kernels import qlinear

    monkeypatch.setattr(qlinear, "fp8_backend_for", lambda m, device: "gemv" if m <= 16 else "auto")
    q = FP8Linear.from_linear(_linear(32, 64))
    x = torch.randn(17, 64, dtype=torch.bfloat16)
    xq = fp8.quantize(x, "token")
    ref = (fp8.dequantize(*xq) @ q.dequantized_weight().t() + q.bias.float()).to(torch.bfloat16)
    torch.testing.assert_close(q(x), ref, rtol=0, atol=0)
    q.backend = "bogus"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="backend must be one of"):
        q(x)


@pytest.mark.parametrize("fmt", ["fp8", "fp8-channel", "nvfp4"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_cached_weight_equals_the_reference_and_follows_buffer_writes(fmt: str, dtype: torch.dtype) -> None:
    """Off CUDA, 'auto' keeps the dequantized weight between calls; outputs equal the uncached
    reference bit for bit, also after the buffers are written in place or replaced."""
    from evalsuite.kernels import formats

    torch.manual_seed(0)
    lin = nn.Linear(64, 24)
    layer = formats.get(fmt).from_linear(lin)
    x = torch.randn(3, 64).to(dtype)

    def both() -> tuple[torch.Tensor, torch.Tensor]:
        layer.backend = "auto"
        fast = layer(x)
        layer.backend = "ref"
        return fast, layer(x)

    fast, ref = both()
    assert torch.equal(fast, ref) and fast.dtype == dtype
    assert layer._cache.weight is not None
    other = formats.get(fmt).from_linear(nn.Linear(64, 24))
    layer.qdata.copy_(other.qdata)  # an in-place write bumps the version
    fast, ref = both()
    assert torch.equal(fast, ref)
    layer.load_state_dict(formats.get(fmt).from_linear(nn.Linear(64, 24)).state_dict(), assign=True)  # new tensors
    fast, ref = both()
    assert torch.equal(fast, ref)


def test_cached_backend_with_inference_tensors_dequantizes_every_call() -> None:
    """Buffers made under inference_mode have no version counter: the layer still matches the
    reference after an in-place write, because it keeps no cache for them."""
    torch.manual_seed(0)
    with torch.inference_mode():
        layer = NVFP4Linear.from_linear(nn.Linear(64, 8))
        x = torch.randn(2, 64)
        first = layer(x)
        assert layer._cache.weight is None
        layer.qdata.copy_(NVFP4Linear.from_linear(nn.Linear(64, 8)).qdata)
        layer.backend = "ref"
        ref = layer(x)
        layer.backend = "auto"
        assert torch.equal(layer(x), ref) and not torch.equal(first, ref)


@pytest.mark.parametrize("make", [lambda lin: FP8Linear.from_linear(lin, "channel"), NVFP4Linear.from_linear])
def test_a_dtype_cast_keeps_the_quantized_format(make):
    # PyTorch counts float8 as floating: .to(bf16) cast the codes (the next forward failed) and rounded
    # the fp32 scales to bf16
    lin = _linear(32, 64, dtype=torch.float32)
    q = make(lin)
    q.backend = "ref"
    before = {n: b.clone() for n, b in q.named_buffers()}
    x = torch.randn(3, 64)
    y = q(x)
    for cast in (lambda m: m.to(torch.bfloat16), lambda m: m.half(), lambda m: m.double(), lambda m: m.float()):
        cast(q)
        for n, b in q.named_buffers():
            assert b.dtype == before[n].dtype and torch.equal(b.reshape(-1).view(torch.uint8),
                                                              before[n].reshape(-1).view(torch.uint8)), n
    assert q.bias.dtype == torch.float32  # the bias follows the casts (rounded through bf16, as nn.Linear's)
    q.bias.data = lin.bias.detach().clone()
    assert torch.equal(q(x), y)  # the weight is exactly the one before the casts
    wrapped = nn.Sequential(make(lin)).to(torch.bfloat16)  # through a parent module too
    assert {b.dtype for b in wrapped.buffers()} == {b.dtype for b in before.values()}
    meta = make(nn.Linear(64, 32, device="meta")).to_empty(device="cpu")  # to_empty still allocates
    assert {n: b.dtype for n, b in meta.named_buffers()} == {n: b.dtype for n, b in before.items()}


def test_the_cached_weight_follows_a_data_swap():
    q = NVFP4Linear.from_linear(_linear(32, 64, dtype=torch.float32))
    q.backend = "cached"
    x = torch.randn(2, 64)
    q(x)  # fills the cache
    q.qdata.data = torch.randint(0, 256, q.qdata.shape, dtype=torch.uint8)  # same tensor, same version
    expected = x @ nvfp4.dequantize(q.qdata, q.block_scales, q.global_scale, torch.float32).t() + q.bias.float()
    assert torch.equal(q(x), expected.to(x.dtype))  # was the stale weight


def test_tiny_and_empty_inputs_are_handled_in_one_line():
    q = nvfp4.quantize(torch.full((1, 16), 1e-44))
    assert float(q.global_scale) > 0  # was 0.0, a scale the codec itself refuses
    nvfp4.quantize(torch.full((1, 16), 1e-44), global_scale=q.global_scale)
    with pytest.raises(ValueError, match=r"^nvfp4.quantize: expected a non-empty tensor, got shape \(0, 16\)$"):
        nvfp4.quantize(torch.empty(0, 16))
    with pytest.raises(ValueError, match=r"^fp8.quantize: expected a non-empty tensor \(granularity 'token'\), got shape \(4, 0\)$"):
        fp8.quantize(torch.empty(4, 0), "token")
    with pytest.raises(ValueError, match="FP8Linear: backend must be one of auto, gemv, cached, scaled_mm, ref"):
        q8 = FP8Linear.from_linear(_linear(16, 32))
        q8.backend = "fast"
        q8(torch.randn(1, 32).bfloat16())
