"""Location tokens: ids after the specials, "(x, y)" answers as two ids, rendered back as bin centres;
their first embeddings from the image position table; the engine's text shows them as places."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from evalsuite.model.config import OmniConfig
from evalsuite.model.engine import Engine, SamplingParams
from evalsuite.model.locations import axis_features, init_location_rows, location_directions
from evalsuite.model.omni import build_omni
from evalsuite.model.tokenizer import LOC_SCALE, ByteTokenizer
from evalsuite.model.vision import normalized_position_features
from evalsuite.model import weights
from evalsuite.tasks.scoring import parse_point

TOK = ByteTokenizer(40)


def test_location_ids_follow_the_specials_x_bins_then_y_bins():
    assert (TOK.loc_start, TOK.vocab_size) == (272, 352)
    assert ByteTokenizer().vocab_size == 272 and not ByteTokenizer().is_location(272)
    assert TOK.point_ids("(0, 0)") == [272, 312]
    assert TOK.point_ids("(1000, 1000)") == [311, 351]
    assert TOK.point_ids("(512, 37)") == [272 + 20, 312 + 1]  # 512 * 40 // 1000 = 20; 37 * 40 // 1000 = 1
    assert [TOK.location_name(t) for t in TOK.point_ids("(512, 37)")] == ["<loc_x_20>", "<loc_y_1>"]
    assert TOK.decode(TOK.point_ids("(512, 37)")) == "(512, 38)"  # bin centres: (20.5 * 25, 1.5 * 25)
    assert TOK.decode(TOK.encode("at ") + TOK.point_ids("(0, 999)")) == "at (12, 988)"
    assert not TOK.is_special(272) and TOK.is_special(271) and TOK.is_location(351) and not TOK.is_location(352)


@pytest.mark.parametrize("text", ["(12, 40) and more", "12, 40", "(1001, 5)", "(x, y)", ""])
def test_point_ids_take_only_one_whole_point_on_the_0_1000_scale(text):
    assert TOK.point_ids(text) is None
    assert ByteTokenizer().point_ids("(12, 40)") is None  # no location tokens: no ids


def test_bad_bin_counts_and_ids_are_refused_with_one_line():
    with pytest.raises(ValueError, match="loc_bins must be an int in"):
        ByteTokenizer(-1)
    with pytest.raises(ValueError, match="not a location token"):
        TOK.location_text(271)
    with pytest.raises(ValueError, match="out of range"):
        TOK.decode([352])
    with pytest.raises(ValueError, match="location bins need"):
        OmniConfig(loc_bins=200)  # 272 + 400 ids > the tiny backbone's 512


@given(st.integers(0, LOC_SCALE), st.integers(0, LOC_SCALE), st.integers(1, 100))
def test_a_point_round_trips_to_its_bin_centre_within_half_a_bin(x, y, bins):
    tok = ByteTokenizer(bins)
    text = tok.decode(tok.point_ids(f"({x}, {y})"))
    px, py = parse_point(text, "norm1000", 1000, 1000)
    half = LOC_SCALE / bins / 2 + 0.5  # half a bin, and the centre's rounding
    assert abs(px - x) <= half and abs(py - y) <= half
    assert tok.point_ids(text) == tok.point_ids(f"({x}, {y})")  # a centre stays in its bin


def test_axis_features_are_the_image_tokens_position_features_of_a_row_or_a_column():
    bins, dim = 8, 16
    grid = normalized_position_features(bins, bins, dim).double().view(bins, bins, dim)
    x, y = axis_features(bins, dim, "x"), axis_features(bins, dim, "y")
    # a token's features are its row's plus its column's
    assert torch.allclose(grid, y[:, None, :] + x[None, :, :], atol=1e-6)


def test_location_rows_start_from_the_position_table_near_bins_close_far_bins_apart():
    model = build_omni(dataclasses.replace(OmniConfig.preset("tiny"), loc_bins=40), seed=0)
    with torch.no_grad():
        model.vision.token_pos.normal_(generator=torch.Generator().manual_seed(1))
    before = model.lm.backbone.embeddings.weight.detach().clone()
    ids = init_location_rows(model)
    assert (ids.start, ids.stop) == (272, 352)
    emb, head = model.lm.backbone.embeddings.weight.detach(), model.lm.lm_head.weight.detach()
    assert torch.equal(emb[:272], before[:272]) and torch.equal(emb[352:], before[352:])
    byte_norm = emb[:256].norm(dim=-1).mean()
    assert torch.allclose(emb[ids].norm(dim=-1), torch.full((80,), float(byte_norm)), rtol=1e-4)
    assert torch.allclose(head[ids].norm(dim=-1), torch.full((80,), float(head[:256].norm(dim=-1).mean())), rtol=1e-4)
    dirs = location_directions(model.vision.token_pos, 40)
    assert torch.allclose(emb[ids].double() / byte_norm, dirs, atol=1e-5)
    cos = torch.nn.functional.cosine_similarity
    x = emb[272:312]
    assert cos(x[10], x[11], dim=0) > cos(x[10], x[30], dim=0)
    y = emb[312:352]
    assert cos(y[5], y[6], dim=0) > cos(y[5], y[35], dim=0)


def test_a_model_without_location_tokens_is_untouched_and_bins_survive_save_and_load(tmp_path):
    plain = build_omni("tiny", seed=0)
    sd = {k: v.clone() for k, v in plain.state_dict().items()}
    assert init_location_rows(plain) == slice(272, 272)
    assert all(torch.equal(sd[k], v) for k, v in plain.state_dict().items())
    model = build_omni(dataclasses.replace(OmniConfig.preset("tiny"), loc_bins=40), seed=0)
    weights.save(model, tmp_path / "ckpt")
    assert weights.load(tmp_path / "ckpt").tokenizer.loc_bins == 40
    cfg = weights.config_to_dict(plain.config)
    del cfg["loc_bins"]  # a checkpoint written before location tokens
    assert weights.config_from_dict(cfg).loc_bins == 0


def test_the_engine_samples_location_tokens_only_with_a_tokenizer_that_has_them_and_writes_them_as_a_point():
    model = build_omni(dataclasses.replace(OmniConfig.preset("tiny"), loc_bins=40), seed=0)
    engine = Engine(model.lm, 2, 64, tokenizer=model.tokenizer)
    assert engine.vocab_limit == 352
    assert Engine(model.lm, 2, 64).vocab_limit == 272  # a byte-only tokenizer never samples them
    pieces = []
    h = engine.submit(torch.tensor(TOK.encode("hi", bos=True)), SamplingParams(max_tokens=8),
                      on_token=lambda ev: pieces.append(ev.text))
    for t in TOK.encode("at ") + TOK.point_ids("(512, 37)") + [TOK.end_id]:
        engine._emit(h, t, 0.0)
    assert h.text == "at (512, 38)" and h.finish_reason == "stop"
    assert "".join(pieces) == "at (512, 38)" and pieces[3:5] == ["(512, ", "38)"]
