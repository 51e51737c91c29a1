"""Vision encoder: dynamic-resolution grids and token counts, tiling, RoPE, merge, packing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from evalsuite.model.card import encoder_params
from evalsuite.model.config_encoders import VisionConfig
from evalsuite.model.vision import (
    VisionEncoder,
    apply_rope_2d,
    dynamic_grid,
    grid_positions,
    image_tokens,
    preprocess_image,
    spatial_merge,
    tile_layout,
)

TINY = VisionConfig.preset("tiny", max_patches=256)  # a small budget, so the budget cases below bite
FULL = VisionConfig.preset("nano-omni-30b-a3b")


def _image(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def encoder() -> VisionEncoder:
    torch.manual_seed(0)
    return VisionEncoder(TINY).eval()


@pytest.mark.parametrize(
    "w,h,grid",
    [
        (64, 256, (32, 8)),  # tall 1:4, exactly the 256-patch maximum
        (256, 64, (8, 32)),  # wide 4:1
        (96, 96, (12, 12)),  # square, native size inside the budget
        (640, 480, (12, 16)),  # large 4:3 scaled down to <= 256 patches, exact 3:4
    ],
)
def test_token_count_matches_grid_formula(encoder: VisionEncoder, w: int, h: int, grid: tuple[int, int]) -> None:
    pixels, g = preprocess_image(_image(w, h), TINY)
    assert g == grid
    assert pixels.shape == (1, 3, grid[0] * 8, grid[1] * 8)
    with torch.no_grad():
        out = encoder(pixels)
    expected = (grid[0] // 2) * (grid[1] // 2)
    assert out.shape == (1, expected, TINY.lm_hidden)
    assert image_tokens(h, w, TINY) == expected
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "w,h,grid,tokens",
    [
        (448, 1792, (112, 28), 784),  # 1:4
        (1792, 448, (28, 112), 784),  # 4:1
        (8000, 8000, (114, 114), 3249),  # shrunk to the 13,312-patch maximum, still square
        (100, 100, (32, 32), 256),  # grown to the 1,024-patch minimum
    ],
)
def test_full_size_grids(w: int, h: int, grid: tuple[int, int], tokens: int) -> None:
    assert dynamic_grid(h, w, FULL) == grid
    assert image_tokens(h, w, FULL) == tokens
    assert FULL.min_patches <= grid[0] * grid[1] <= FULL.max_patches


@settings(max_examples=300, deadline=None)
@given(h=st.integers(1, 6000), w=st.integers(1, 6000), full=st.booleans())
def test_budget_respected_and_aspect_tracked(h: int, w: int, full: bool) -> None:
    cfg = FULL if full else TINY
    gh, gw = dynamic_grid(h, w, cfg)
    assert gh % cfg.merge == 0 and gw % cfg.merge == 0
    assert cfg.min_patches <= gh * gw <= cfg.max_patches
    if max(h / w, w / h) <= 8:
        # Aspect error is at most about one merge unit on the short side.
        short_units = min(gh, gw) // cfg.merge
        err = abs(math.log((gw / gh) / (w / h)))
        assert err <= math.log(1 + 1 / short_units) + 1e-9, (h, w, gh, gw)


def _normalized(img: Image.Image) -> torch.Tensor:
    """Reference normalization, written out: (3, H, W)."""
    arr = np.asarray(img, dtype=np.float64) / 255.0
    mean, std = np.array(TINY.image_mean), np.array(TINY.image_std)
    return torch.from_numpy(((arr - mean) / std).transpose(2, 0, 1)).float()


def test_native_size_kept_inside_budget() -> None:
    # 96x80 px = 12x10 patches = 120 patches, inside [16, 256]: no resize at all.
    img = _image(96, 80)
    pixels, grid = preprocess_image(img, TINY)
    assert grid == (10, 12)
    torch.testing.assert_close(pixels[0], _normalized(img))


def test_budget_too_small_for_a_merge_unit() -> None:
    with pytest.raises(ValueError, match="merge unit"):
        dynamic_grid(64, 64, TINY, min_patches=1, max_patches=3)


def test_tiling_gives_tiles_plus_thumbnail(encoder: VisionEncoder) -> None:
    img = _image(192, 64, seed=3)  # 3:1 → one row of three 32-px tiles
    assert tile_layout(64, 192, TINY.max_tiles, TINY.tile_size) == (1, 3)
    pixels, grid = preprocess_image(img, TINY, "tiling")
    assert pixels.shape == (4, 3, 32, 32) and grid == (4, 4)
    # Tiles are consecutive 32-px crops of the image resized to 96x32; the last crop is the thumbnail.
    big = _normalized(img.resize((96, 32), Image.BICUBIC))
    for i in range(3):
        torch.testing.assert_close(pixels[i], big[:, :, 32 * i:32 * (i + 1)])
    torch.testing.assert_close(pixels[3], _normalized(img.resize((32, 32), Image.BICUBIC)))
    with torch.no_grad():
        out = encoder(pixels)
    assert out.shape == (4, 4, TINY.lm_hidden)
    assert image_tokens(64, 192, TINY, "tiling") == 16
    # One tile only: no thumbnail.
    one, _ = preprocess_image(_image(30, 34), TINY, "tiling")
    assert one.shape[0] == 1 and image_tokens(34, 30, TINY, "tiling") == 4


def test_tile_layout_respects_max_tiles() -> None:
    for h, w in [(100, 1000), (1000, 100), (500, 500), (300, 900)]:
        r, c = tile_layout(h, w, 6, 32)
        assert r * c <= 6
    assert tile_layout(100, 1000, 6, 32) == (1, 6)
    assert tile_layout(500, 500, 6, 32) in {(1, 1), (2, 2)}


def test_rope_2d_is_relative() -> None:
    torch.manual_seed(0)
    from evalsuite.model.vision import Rope2D

    rope = Rope2D(16, 100.0)
    q, k = torch.randn(16), torch.randn(16)

    def score(pq: tuple[int, int], pk: tuple[int, int]) -> float:
        cos, sin = rope(torch.tensor([pq, pk]))
        x = apply_rope_2d(torch.stack([q, k]), cos, sin)
        return float(x[0] @ x[1])

    a = score((1, 2), (4, 7))
    b = score((11, 5), (14, 10))  # same (3, 5) offset
    c = score((1, 2), (5, 7))  # different row offset
    print("rope scores", a, b, c)
    assert a == pytest.approx(b, abs=1e-4)
    assert abs(a - c) > 1e-3
    # Norm-preserving rotation.
    cos, sin = rope(torch.tensor([[3, 9]]))
    assert float(apply_rope_2d(q[None], cos, sin).norm()) == pytest.approx(float(q.norm()), rel=1e-5)


def test_spatial_merge_matches_loop() -> None:
    gh, gw, d = 4, 6, 3
    x = torch.randn(2, gh * gw, d)
    out = spatial_merge(x, (gh, gw), 2)
    assert out.shape == (2, 6, 12)
    grid = x.view(2, gh, gw, d)
    for n in range(2):
        t = 0
        for r in range(0, gh, 2):
            for c in range(0, gw, 2):
                ref = torch.cat([grid[n, r, c], grid[n, r, c + 1], grid[n, r + 1, c], grid[n, r + 1, c + 1]])
                torch.testing.assert_close(out[n, t], ref)
                t += 1
    assert grid_positions(2, 3).tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]


def test_packed_batch_equals_one_by_one(encoder: VisionEncoder) -> None:
    images = [_image(64, 256, 1), _image(96, 96, 2), _image(256, 64, 3), _image(40, 72, 4)]
    crops = [preprocess_image(im, TINY)[0] for im in images] + [preprocess_image(images[1], TINY, "tiling")[0]]
    with torch.no_grad():
        packed = encoder.encode(crops)
        single = [encoder(c) for c in crops]
    for p, s in zip(packed, single):
        assert p.shape == s.shape
        print("packed vs single max diff", float((p - s).abs().max()))
        torch.testing.assert_close(p, s, atol=1e-5, rtol=1e-4)
    tokens, info = encoder.encode_images(images)
    assert info["image_tokens"] == [64, 36, 64, image_tokens(72, 40, TINY)]
    torch.testing.assert_close(tokens[0], single[0][0], atol=1e-5, rtol=1e-4)


def test_bad_inputs_raise_one_clear_error(encoder: VisionEncoder) -> None:
    with pytest.raises(TypeError, match="PIL.Image"):
        preprocess_image(np.zeros((8, 8, 3)), TINY)
    with pytest.raises(ValueError, match="multiple of patch"):
        encoder(torch.zeros(1, 3, 24, 40))
    with pytest.raises(ValueError, match="image mode"):
        preprocess_image(_image(16, 16), TINY, "mosaic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown vision preset"):
        VisionConfig.preset("huge")


def test_full_size_parameter_count_is_vit_h_class() -> None:
    n = encoder_params(FULL)
    with torch.device("meta"):
        enc = VisionEncoder(FULL)
    vit = n - sum(p.numel() for p in enc.projector.parameters())
    print(f"vision params: total {n / 1e6:.1f}M, ViT {vit / 1e6:.1f}M")
    assert 0.60e9 < vit < 0.66e9  # ViT-H/16: ~0.63B
    assert n == vit + 5120 + 5120 * 10752 + 10752 * 2688


def test_narrow_budget_that_the_unit_walk_steps_over_still_fits() -> None:
    # 40x24 into exactly 16 patches (2x2 merge units): 2x3 units overshoot, 1x3 undershoot.
    cfg = VisionConfig.preset("tiny")
    gh, gw = dynamic_grid(24, 40, cfg, min_patches=16, max_patches=16)
    assert gh * gw == 16 and (gh, gw) == (4, 4)
    gh, gw = dynamic_grid(24, 40, cfg, min_patches=16, max_patches=24)
    assert 16 <= gh * gw <= 24 and gw > gh


def test_token_pos_adds_each_merged_tokens_place_through_its_table() -> None:
    """`token_pos`: zero at initialization (the tokens of a model without it, and the same random
    stream for every other weight), and once trained the projector's output plus the merged grid's
    normalized-position features times the table."""
    from evalsuite.model.vision import normalized_position_features

    torch.manual_seed(0)
    plain = VisionEncoder(VisionConfig.preset("tiny", token_pos=0, projector_extra=0))
    torch.manual_seed(0)
    placed = VisionEncoder(VisionConfig.preset("tiny"))
    assert placed.cfg.token_pos == 64 and not hasattr(plain, "token_pos")
    assert torch.count_nonzero(placed.token_pos) == 0
    theirs = dict(placed.named_parameters())
    assert all(torch.equal(p, theirs[n]) for n, p in plain.named_parameters())  # the same draws
    px = torch.randn(1, 3, 48, 64)  # a 6x8 patch grid, 3x4 merged tokens
    torch.testing.assert_close(placed(px), plain(px), rtol=0, atol=0)
    with torch.no_grad():
        placed.token_pos.normal_()
    feats = normalized_position_features(3, 4, 64)
    torch.testing.assert_close(placed(px), plain(px) + feats @ placed.token_pos)
    # the packed path (`encode`, what the omni model calls) adds the same
    torch.testing.assert_close(placed.encode([px])[0], placed(px))
    # the place is readable from the added term alone: tokens of a constant image differ by row
    flat = placed(torch.zeros(1, 3, 48, 64))[0]
    assert not torch.allclose(flat[0], flat[4]) and not torch.allclose(flat[0], flat[1])


@pytest.mark.parametrize("bad", [-4, 6])
def test_token_pos_must_be_zero_or_a_multiple_of_four(bad: int) -> None:
    with pytest.raises(ValueError, match="token_pos must be 0 or a positive multiple of 4"):
        VisionConfig.preset("tiny", token_pos=bad)


def test_projector_extra_branch_starts_as_nothing_and_adds_its_relu2_units_once_trained() -> None:
    """`projector_extra`: its output layer starts at zero (the projector of a model without it), its
    weights come from their own stream (every other weight draws as without it, and they are the
    same whatever the global seed), and once trained it adds W2 relu²(W1 norm(x))."""
    from evalsuite.model.vision import Projector

    torch.manual_seed(0)
    plain = Projector(256, 128, 128)
    torch.manual_seed(0)
    wide = Projector(256, 128, 128, extra=384)
    torch.manual_seed(5)
    other = Projector(256, 128, 128, extra=384)
    theirs = dict(wide.named_parameters())
    assert all(torch.equal(p, theirs[n]) for n, p in plain.named_parameters())
    assert torch.equal(wide.extra[0].weight, other.extra[0].weight) and wide.extra[0].weight.abs().sum() > 0
    assert torch.count_nonzero(wide.extra[2].weight) == 0
    x = torch.randn(5, 256)
    torch.testing.assert_close(wide(x), plain(x), rtol=0, atol=0)
    with torch.no_grad():
        wide.extra[2].weight.normal_()
    n = wide.net[0](x)
    branch = torch.relu(n @ wide.extra[0].weight.T).square() @ wide.extra[2].weight.T
    torch.testing.assert_close(wide(x), plain(x) + branch)
    assert VisionConfig.preset("tiny").projector_extra == 384 and FULL.projector_extra == 0
    with pytest.raises(ValueError, match="projector_extra must be >= 0"):
        VisionConfig.preset("tiny", projector_extra=-1)


def test_checkpoint_config_without_token_pos_loads_without_the_table() -> None:
    """Checkpoints written before the field (v7 and earlier) load as they were written."""
    import dataclasses

    from evalsuite.model.weights import _from_dict

    data = dataclasses.asdict(VisionConfig.preset("tiny"))
    del data["token_pos"]
    data = {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}
    del data["projector_extra"]
    assert _from_dict(VisionConfig, data) == VisionConfig.preset("tiny", token_pos=0, projector_extra=0)
