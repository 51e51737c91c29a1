"""Vision encoder: a ViT that reads images at (close to) their native aspect ratio.

Features, top-down: image → dynamic-resolution resize (patch budget) → patch embedding (Conv2d,
stride = patch) → 2D rotary positions → pre-norm transformer blocks → 2×2 spatial merge
(pixel-shuffle concat) → MLP projector (RMSNorm → Linear → ReLU² → Linear) to the LM hidden size.

Dynamic resolution, the rationale
---------------------------------
Fixed square tiles (the older recipe, kept here as ``mode="tiling"`` for ablation) distort
non-square pages and waste tokens on padding. Instead each image is resized to a grid of
``gh × gw`` patches where both sides are multiples of the merge factor (so the 2×2 merge tiles the
grid exactly), the area is inside ``[min_patches, max_patches]`` and ``gw/gh`` is as close to the
image's ``W/H`` as integer rounding allows:

1. work in *units* of ``merge × merge`` patches (``u = patch * merge`` pixels per side);
2. keep the native size when its unit area is inside the budget, else scale both sides by
   ``sqrt(budget / area)`` (the nearest budget edge);
3. round each side to whole units, at least one (down when shrinking to the maximum, up when
   growing to the minimum, to nearest otherwise);
4. if rounding left the area outside the budget, step the side whose change hurts the aspect ratio
   least (shrink the relatively longer side / grow the relatively shorter one) until it fits;
5. polish: take one-unit steps on either side while they bring the aspect ratio closer and keep
   the area inside the budget.

An image then costs ``gh * gw / merge**2`` LM tokens (see :func:`image_tokens`). Images far more
extreme than the budget allows (e.g. 1:10,000) keep one unit on the short side and lose aspect.

Positions are 2D RoPE rather than an interpolated learned table: the first half of each head's
dimensions rotates with the patch row, the second half with the column, so every grid size is
handled exactly, attention depends only on relative offsets, and packing images of different
sizes in one sequence (block-diagonal mask) gives the same result as encoding them one by one.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from evalsuite.model.config_encoders import ImageMode, VisionConfig

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

Grid = tuple[int, int]


# ---- preprocessing ------------------------------------------------------------------------------
def dynamic_grid(height: int, width: int, cfg: VisionConfig, *, min_patches: int | None = None,
                 max_patches: int | None = None) -> Grid:
    """Patch grid (gh, gw) for an image of ``height × width`` pixels under the patch budget.

    Both sides are multiples of ``cfg.merge``; ``min_patches <= gh*gw <= max_patches`` (budgets are
    rounded to whole merge units); ``gw/gh`` tracks ``width/height``.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image must have a positive size, got {width}x{height}")
    m = cfg.merge
    lo = min_patches if min_patches is not None else cfg.min_patches
    hi = max_patches if max_patches is not None else cfg.max_patches
    min_units = max(1, math.ceil(lo / (m * m)))
    max_units = hi // (m * m)
    if max_units < min_units:
        raise ValueError(f"patch budget [{lo}, {hi}] holds no whole {m}x{m} merge unit")
    unit_px = cfg.patch_size * m
    area = (height / unit_px) * (width / unit_px)  # native size, in units
    # Round so the common case already lands inside the budget: down when shrinking to the
    # maximum (floor*floor <= max), up when growing to the minimum, to nearest otherwise.
    scale, rnd = 1.0, round
    if area > max_units:
        scale, rnd = math.sqrt(max_units / area), math.floor
    elif area < min_units:
        scale, rnd = math.sqrt(min_units / area), math.ceil
    uh = max(1, int(rnd(height * scale / unit_px)))
    uw = max(1, int(rnd(width * scale / unit_px)))
    ratio = height / width
    while uh * uw > max_units:  # shrink the side that is relatively too long
        if (uh / uw > ratio and uh > 1) or uw == 1:
            uh -= 1
        else:
            uw -= 1
    while uh * uw < min_units:  # grow the side that is relatively too short
        if uh / uw < ratio:
            uh += 1
        else:
            uw += 1
    # Polish: take single-unit steps that bring gw/gh closer to W/H while staying in budget
    # (e.g. 640x480 into 64 units: floor gives 6x9 = 1.50, one more row gives 7x9 = 1.29 ≈ 1.33).
    def aspect_err(a: int, b: int) -> float:
        return abs(math.log((b / a) * ratio))

    while True:
        steps = [(uh + dh, uw + dw) for dh, dw in ((1, 0), (-1, 0), (0, 1), (0, -1))]
        steps = [(a, b) for a, b in steps if a >= 1 and b >= 1 and min_units <= a * b <= max_units]
        best = min(steps, key=lambda ab: aspect_err(*ab), default=None)
        if best is None or aspect_err(*best) >= aspect_err(uh, uw) - 1e-12:
            break
        uh, uw = best
    if not min_units <= uh * uw <= max_units:
        # The single-unit walks above can step over a narrow budget (e.g. exactly 2x2 units for a
        # 5:3 image: 2x3 is too many, 1x3 too few). Search every in-budget grid for the best aspect.
        fits = [(a, b) for a in range(1, max_units + 1)
                for b in {max(1, math.ceil(min_units / a)), max(1, max_units // a), max(1, round(a / ratio))}
                if min_units <= a * b <= max_units]
        if not fits:
            raise ValueError(f"cannot fit a {width}x{height} image in the patch budget [{lo}, {hi}]")
        uh, uw = min(fits, key=lambda ab: (aspect_err(*ab), -ab[0] * ab[1]))
    return uh * m, uw * m


def tile_layout(height: int, width: int, max_tiles: int, tile_size: int) -> Grid:
    """(rows, cols) of square tiles, rows*cols <= max_tiles, whose aspect best matches the image;
    ties go to the layout whose pixel area is closest to the image's."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image must have a positive size, got {width}x{height}")
    best: tuple[float, float, int, int] | None = None
    for r in range(1, max_tiles + 1):
        for c in range(1, max_tiles // r + 1):
            aspect_err = abs(math.log((c / r) / (width / height)))
            area_err = abs(math.log(r * c * tile_size * tile_size / (height * width)))
            key = (round(aspect_err, 9), area_err, r, c)
            if best is None or key < best:
                best = key
    assert best is not None
    return best[2], best[3]


def _to_tensor(image: "PILImage", cfg: VisionConfig) -> torch.Tensor:
    """PIL RGB image → normalized float tensor (3, H, W)."""
    arr = np.asarray(image, dtype=np.float32) / 255.0  # (H, W, 3)
    x = torch.from_numpy(arr).permute(2, 0, 1)  # (3, H, W)
    mean = torch.tensor(cfg.image_mean).view(3, 1, 1)
    std = torch.tensor(cfg.image_std).view(3, 1, 1)
    return (x - mean) / std


def _check_image(image: object) -> None:
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL.Image (use evalsuite.media.load_image), got {type(image).__name__}")
    if image.width <= 0 or image.height <= 0:
        raise ValueError(f"image must have a positive size, got {image.width}x{image.height}")


def preprocess_image(image: "PILImage", cfg: VisionConfig, mode: ImageMode | None = None) -> tuple[torch.Tensor, Grid]:
    """Resize and normalize one PIL image.

    Returns ``(pixels, grid)``: pixels is ``(N, 3, gh*patch, gw*patch)`` with N = 1 in ``dynamic``
    mode and N = tiles (+1 thumbnail when there is more than one tile) in ``tiling`` mode; grid is
    the per-crop patch grid ``(gh, gw)``.
    """
    from PIL import Image

    _check_image(image)
    mode = mode or cfg.mode
    image = image.convert("RGB")
    p = cfg.patch_size
    if mode == "dynamic":
        gh, gw = dynamic_grid(image.height, image.width, cfg)
        resized = image.resize((gw * p, gh * p), Image.BICUBIC)
        return _to_tensor(resized, cfg).unsqueeze(0), (gh, gw)
    if mode == "tiling":
        s = cfg.tile_size
        rows, cols = tile_layout(image.height, image.width, cfg.max_tiles, s)
        big = image.resize((cols * s, rows * s), Image.BICUBIC)
        crops = [big.crop((c * s, r * s, (c + 1) * s, (r + 1) * s)) for r in range(rows) for c in range(cols)]
        if rows * cols > 1:
            crops.append(image.resize((s, s), Image.BICUBIC))  # thumbnail: the whole image, one tile
        return torch.stack([_to_tensor(t, cfg) for t in crops]), (s // p, s // p)
    raise ValueError(f"image mode must be 'dynamic' or 'tiling', got {mode!r}")


def image_tokens(height: int, width: int, cfg: VisionConfig, mode: ImageMode | None = None) -> int:
    """LM tokens one image of ``height × width`` pixels costs (without begin/end markers)."""
    mode = mode or cfg.mode
    m2 = cfg.merge * cfg.merge
    if mode == "dynamic":
        gh, gw = dynamic_grid(height, width, cfg)
        return gh * gw // m2
    if mode == "tiling":
        rows, cols = tile_layout(height, width, cfg.max_tiles, cfg.tile_size)
        crops = rows * cols + (1 if rows * cols > 1 else 0)
        return crops * (cfg.tile_size // cfg.patch_size) ** 2 // m2
    raise ValueError(f"image mode must be 'dynamic' or 'tiling', got {mode!r}")


# ---- positions ----------------------------------------------------------------------------------
def grid_positions(gh: int, gw: int, device: torch.device | None = None) -> torch.Tensor:
    """(gh*gw, 2) integer (row, col) of each patch in row-major order."""
    rows = torch.arange(gh, device=device).repeat_interleave(gw)
    cols = torch.arange(gw, device=device).repeat(gh)
    return torch.stack([rows, cols], dim=-1)


def normalized_position_features(gh: int, gw: int, dim: int, device: torch.device | None = None,
                                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(gh*gw, dim) fixed features of each patch centre's normalized (row, col) in [0, 1]: half the
    dims for the row, half for the column, each ``sin/cos(pi * k * u)`` for k = 1..dim/4 (no
    parameters, so any grid size works and checkpoints are unchanged)."""
    quarter = dim // 4
    k = torch.arange(1, quarter + 1, device=device, dtype=torch.float32) * math.pi
    u_r = (torch.arange(gh, device=device, dtype=torch.float32) + 0.5) / gh
    u_c = (torch.arange(gw, device=device, dtype=torch.float32) + 0.5) / gw
    fr = torch.cat([(u_r[:, None] * k).sin(), (u_r[:, None] * k).cos()], -1)  # (gh, dim/2)
    fc = torch.cat([(u_c[:, None] * k).sin(), (u_c[:, None] * k).cos()], -1)  # (gw, dim/2)
    feats = torch.cat([fr[:, None].expand(gh, gw, -1), fc[None].expand(gh, gw, -1)], -1)
    out = torch.zeros(gh * gw, dim, device=device, dtype=torch.float32)
    out[:, : 4 * quarter] = feats.reshape(gh * gw, 4 * quarter)
    return out.to(dtype)


class Rope2D(nn.Module):
    """2D rotary embedding: dims [0, d/2) rotate with the row, [d/2, d) with the column."""

    def __init__(self, head_dim: int, theta: float) -> None:
        super().__init__()
        self.head_dim, self.theta = head_dim, theta
        self.register_buffer("inv_freq", self._inv_freq(), persistent=False)

    def _inv_freq(self) -> torch.Tensor:
        quarter = self.head_dim // 4
        return 1.0 / self.theta ** (torch.arange(quarter, dtype=torch.float32) / quarter)

    def _apply(self, fn: Any, recurse: bool = True) -> "Rope2D":
        # The angle table stays float32 when the module is cast (model.to(torch.bfloat16)):
        # recomputed exactly as at construction, on the buffer's new device.
        super()._apply(fn, recurse)
        if self.inv_freq.dtype != torch.float32:
            self.inv_freq = self._inv_freq().to(self.inv_freq.device)
        return self

    def forward(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pos (L, 2) → float32 cos, sin (L, head_dim) (callers cast them to their compute dtype)."""
        ang_r = pos[:, :1].float() * self.inv_freq  # (L, d/4)
        ang_c = pos[:, 1:].float() * self.inv_freq  # (L, d/4)
        ang = torch.cat([ang_r, ang_r, ang_c, ang_c], dim=-1)  # (L, d): rotate-half layout per half
        return ang.cos(), ang.sin()


def apply_rope_2d(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (..., L, d) rotated per half: each half pairs element i with i + d/4."""
    d = x.shape[-1]
    h = d // 2
    out = []
    for part, c, s in ((x[..., :h], cos[:, :h], sin[:, :h]), (x[..., h:], cos[:, h:], sin[:, h:])):
        a, b = part[..., : h // 2], part[..., h // 2:]
        rot = torch.cat([-b, a], dim=-1)
        out.append(part * c + rot * s)
    return torch.cat(out, dim=-1)


# ---- transformer --------------------------------------------------------------------------------
class Attention(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, d // self.heads)  # (B, L, 3, H, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, L, hd)
        q, k = apply_rope_2d(q, cos, sin), apply_rope_2d(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, L, hd)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.mlp = nn.Sequential(nn.Linear(cfg.width, cfg.mlp_dim), nn.GELU(), nn.Linear(cfg.mlp_dim, cfg.width))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cos, sin, mask)
        return x + self.mlp(self.norm2(x))


class ReLU2(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).square()


class Projector(nn.Module):
    """Merged features → LM hidden: RMSNorm → Linear → ReLU² → Linear (as in Nemotron Nano VL).

    ``extra`` > 0 adds a second Linear → ReLU² → Linear branch of that many hidden units on the same
    normalized input, summed into the output; its output layer starts at zero (the projector's
    function is the one without it) and its weights are drawn from their own seeded stream, so every
    other parameter of a model initializes exactly as without it."""

    EXTRA_SEED = 1_000_033

    def __init__(self, in_dim: int, hidden: int, out_dim: int, eps: float = 1e-6, extra: int = 0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.RMSNorm(in_dim, eps=eps), nn.Linear(in_dim, hidden, bias=False), ReLU2(),
                                 nn.Linear(hidden, out_dim, bias=False))
        if extra:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.EXTRA_SEED)
                self.extra = nn.Sequential(nn.Linear(in_dim, extra, bias=False), ReLU2(),
                                           nn.Linear(extra, out_dim, bias=False))
            with torch.no_grad():
                self.extra[2].weight.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "extra"):
            return self.net(x)
        n = self.net[0](x)
        return self.net[3](self.net[2](self.net[1](n))) + self.extra(n)


def spatial_merge(x: torch.Tensor, grid: Grid, m: int) -> torch.Tensor:
    """Pixel-shuffle merge: (N, gh*gw, D) → (N, gh/m * gw/m, m*m*D), m×m neighbours concatenated."""
    n, _, d = x.shape
    gh, gw = grid
    x = x.view(n, gh // m, m, gw // m, m, d)  # (N, gh/m, m, gw/m, m, D)
    x = x.permute(0, 1, 3, 2, 4, 5)  # (N, gh/m, gw/m, m, m, D)
    return x.reshape(n, (gh // m) * (gw // m), m * m * d)


class VisionEncoder(nn.Module):
    """pixels (N, 3, gh*p, gw*p) → LM-space tokens (N, gh*gw/merge², lm_hidden)."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = nn.Conv2d(cfg.in_channels, cfg.width, cfg.patch_size, stride=cfg.patch_size)
        self.rope = Rope2D(cfg.width // cfg.heads, cfg.rope_theta)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.projector = Projector(cfg.merged_dim, cfg.projector_hidden, cfg.lm_hidden, cfg.norm_eps,
                                   extra=cfg.projector_extra)
        if cfg.token_pos:  # zeros, drawn from no random stream: the other modules initialize as without it
            self.token_pos = nn.Parameter(torch.zeros(cfg.token_pos, cfg.lm_hidden))

    def _grid_of(self, pixels: torch.Tensor) -> Grid:
        if pixels.dim() != 4 or pixels.shape[1] != self.cfg.in_channels:
            raise ValueError(f"expected pixels (N, {self.cfg.in_channels}, H, W), got {tuple(pixels.shape)}")
        p, m = self.cfg.patch_size, self.cfg.merge
        h, w = pixels.shape[-2:]
        if h % (p * m) or w % (p * m):
            raise ValueError(f"pixel size {w}x{h} is not a multiple of patch*merge = {p * m}; use preprocess_image")
        return h // p, w // p

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype, which the encoder computes in (float32, or bfloat16 as the recipes store it)."""
        return self.patch_embed.weight.dtype

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) → patch features (N, gh*gw, D) in row-major order, in the weights' dtype
        (pixels of any float dtype are cast where they enter; a no-op for float32 weights)."""
        x = self.patch_embed(pixels.to(self.dtype))
        return x.flatten(2).transpose(1, 2)  # (N, D, gh, gw) → (N, gh*gw, D)

    def add_position(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Patch features (..., gh*gw, D) plus the normalized-position features (``cfg.abs_pos``)."""
        if not self.cfg.abs_pos:
            return x
        return x + normalized_position_features(grid[0], grid[1], x.shape[-1], x.device, x.dtype)

    def transform(self, x: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Transformer blocks + final norm over patch features x (B, L, D) at positions pos (L, 2).

        The rotary tables are computed in float32 and cast to x's dtype (bfloat16 weights: q, k and v
        then all stay bfloat16 through attention)."""
        cos, sin = self.rope(pos)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        for blk in self.blocks:
            x = blk(x, cos, sin, mask)
        return self.norm(x)

    def from_patches(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Patch features (N, gh*gw, D) of same-size crops → LM tokens (N, T, lm_hidden), in the
        weights' dtype (features from another embedding, e.g. video tubelets, are cast on entry)."""
        x = x.to(self.dtype)
        x = self.transform(self.add_position(x, grid), grid_positions(*grid, device=x.device))
        return self.project(x, grid)

    def project(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Encoded patch features (N, gh*gw, D) → LM tokens (N, T, lm_hidden): the merge, the projector,
        and each merged token's place (``cfg.token_pos``)."""
        m = self.cfg.merge
        out = self.projector(spatial_merge(x, grid, m))
        if self.cfg.token_pos:
            feats = normalized_position_features(grid[0] // m, grid[1] // m, self.cfg.token_pos, out.device,
                                                 out.dtype)
            out = out + feats @ self.token_pos.to(out.dtype)
        return out

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        grid = self._grid_of(pixels)
        return self.from_patches(self.embed(pixels), grid)

    def hidden(self, crops: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Patch features of crops of different sizes, encoded in one packed sequence: ``crops[i]``
        is (N_i, 3, H_i, W_i) as returned by :func:`preprocess_image`, the result ``[i]`` is
        (N_i, gh_i, gw_i, width) after the final norm, before the merge and the projector (what an
        encoder-alone objective such as the training's column CTC reads).

        All crops are concatenated along the sequence and attend only within themselves
        (block-diagonal mask), which equals encoding each one alone. The dense mask costs O(L²)
        memory: fine for a reference, a varlen kernel would replace it at scale.
        """
        feats, poss, seg, grids = [], [], [], []
        for pixels in crops:
            grid = self._grid_of(pixels)
            x = self.add_position(self.embed(pixels), grid)  # (N_i, L_i, D)
            for j in range(x.shape[0]):
                feats.append(x[j])
                poss.append(grid_positions(*grid, device=x.device))
                seg.append(torch.full((x.shape[1],), len(seg), device=x.device))
            grids.append((pixels.shape[0], grid))
        if not feats:
            return []
        packed = torch.cat(feats).unsqueeze(0)  # (1, ΣL, D)
        ids = torch.cat(seg)
        mask = ids[:, None] == ids[None, :]  # (ΣL, ΣL) block-diagonal
        y = self.transform(packed, torch.cat(poss), mask)[0]  # (ΣL, D)
        out, start = [], 0
        for n, (gh, gw) in grids:
            out.append(y[start:start + n * gh * gw].view(n, gh, gw, -1))
            start += n * gh * gw
        return out

    def encode(self, crops: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Encode crops of different sizes (:meth:`hidden`) into LM tokens: the result ``[i]`` is
        (N_i, T_i, lm_hidden), merged and projected."""
        return [self.project(h.flatten(1, 2), (h.shape[1], h.shape[2])) for h in self.hidden(crops)]

    def encode_images(self, images: Sequence["PILImage"],
                      mode: ImageMode | None = None) -> tuple[list[torch.Tensor], dict[str, Any]]:
        """PIL images → per-image LM tokens (T_i, lm_hidden) (tiles flattened in order) + info."""
        pre = [preprocess_image(im, self.cfg, mode) for im in images]
        outs = self.encode([p for p, _ in pre])
        tokens = [o.reshape(-1, o.shape[-1]) for o in outs]  # (N_i*T_i, lm_hidden)
        info = {"image_tokens": [t.shape[0] for t in tokens], "image_grids": [list(g) for _, g in pre],
                "image_mode": mode or self.cfg.mode}
        return tokens, info


__all__ = [
    "dynamic_grid", "tile_layout", "preprocess_image", "image_tokens", "grid_positions", "Rope2D",
    "apply_rope_2d", "spatial_merge", "Projector", "VisionEncoder",
]
