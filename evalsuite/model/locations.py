"""Location tokens' first embeddings: a place on the screen starts where the image tokens' places are.

A model that gains location tokens (`OmniConfig.loc_bins`, `ByteTokenizer`) has new rows in its
embedding table and its ``lm_head``. Random rows would say nothing about where a bin lies; the vision
encoder's position table (`VisionConfig.token_pos`) already maps a normalized row and column to the
LM's width, and grounding is the question of which image token a target sits on. So `<loc_x_i>` starts
as that table's column part at bin i's centre, `<loc_y_j>` as its row part at bin j's centre (the same
sin/cos features as `vision.normalized_position_features`), each axis centred over its bins (what
every bin shares says nothing about which bin) and scaled to the mean norm of the byte rows, in the
embedding and in the (untied) ``lm_head`` alike: neighbouring bins start close, far bins apart.
"""

from __future__ import annotations

import math

import torch

from evalsuite.model.tokenizer import LOC_SCALE, N_BYTES


def axis_features(bins: int, dim: int, axis: str) -> torch.Tensor:
    """(bins, dim) position features of each bin centre on one axis, laid out as
    `normalized_position_features` lays a token's out: the row in dims [0, dim/2), the column in
    [dim/2, dim), each ``sin/cos(pi * k * u)`` for k = 1..dim/4; the other axis's half is zero."""
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    quarter = dim // 4
    k = torch.arange(1, quarter + 1, dtype=torch.float64) * math.pi
    u = (torch.arange(bins, dtype=torch.float64) + 0.5) / bins
    half = torch.cat([(u[:, None] * k).sin(), (u[:, None] * k).cos()], -1)  # (bins, dim/2)
    out = torch.zeros(bins, dim, dtype=torch.float64)
    start = 2 * quarter if axis == "x" else 0
    out[:, start:start + 2 * quarter] = half
    return out


def location_directions(token_pos: torch.Tensor, bins: int) -> torch.Tensor:
    """(2 * bins, width) unit rows: the x bins, then the y bins, through the position table
    ``token_pos`` (dim, width), each axis centred over its bins."""
    table = token_pos.detach().to(torch.float64).cpu()
    rows = []
    for axis in ("x", "y"):
        r = axis_features(bins, table.shape[0], axis) @ table  # (bins, width)
        r = r - r.mean(0, keepdim=True)
        rows.append(r)
    out = torch.cat(rows)
    return out / out.norm(dim=-1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def init_location_rows(model: torch.nn.Module) -> slice:
    """Set an `OmniModel`'s location-token rows in the embedding table and ``lm_head`` from its vision
    position table; returns the slice of vocabulary ids they occupy. A model without location tokens
    is left as it is (empty slice); one whose position table is absent or zero gets seeded random
    directions instead (nothing to start from)."""
    tok = model.tokenizer
    ids = slice(tok.loc_start, tok.vocab_size)
    if not tok.loc_bins:
        return ids
    emb = model.lm.backbone.embeddings.weight
    head = model.lm.lm_head.weight
    table = getattr(model.vision, "token_pos", None)
    if table is not None and bool(table.detach().abs().sum() > 0):
        dirs = location_directions(table, tok.loc_bins)
    else:
        gen = torch.Generator().manual_seed(LOC_SCALE + tok.loc_bins)
        dirs = torch.randn(2 * tok.loc_bins, emb.shape[1], generator=gen, dtype=torch.float64)
        dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    for weight in ({id(emb): emb, id(head): head}).values():  # once when tied
        scale = weight[:N_BYTES].detach().double().norm(dim=-1).mean()
        weight[ids] = (dirs * scale).to(device=weight.device, dtype=weight.dtype)
    return ids


__all__ = ["axis_features", "location_directions", "init_location_rows"]
