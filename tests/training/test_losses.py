"""Losses: answer-only labels, length-bucketed batches, the encoders' CTC objectives."""

from __future__ import annotations

import random

import pytest
import torch

from evalsuite.model.omni import build_omni
from evalsuite.training import curriculum as C
from evalsuite.training import losses as L
from evalsuite.training import sources as S


def test_labels_cover_exactly_the_answer_and_its_end(pools):
    model = build_omni("tiny")
    ex = S.line_example(pools, random.Random(3), on_page=False)
    embeds, labels = L.encode_batch(model, [ex, S.text_example(pools, "docqa", random.Random(1))])
    tok = model.tokenizer
    row = labels[0][labels[0] >= 0].tolist()
    assert row == tok.encode(ex.answer) + [tok.end_id]
    assert embeds.shape[:2] == labels.shape and embeds.shape[-1] == model.config.backbone.hidden_size
    # the image placeholders were replaced by encoder outputs, not the placeholder embedding
    ids = tok.apply_chat(ex.messages, media_tokens=lambda part: ex.media[0].n_tokens)
    span = tok.media_spans(ids)[0]
    placeholder = model.lm.backbone.embeddings.weight[tok.placeholder_ids["image"]]
    assert not torch.allclose(embeds[0, span.start], placeholder)
    loss, n = L.batch_loss(model, [ex])
    assert n == len(ex.answer) + 1 and torch.isfinite(loss)


def test_length_groups_bound_padding_and_cover_every_index():
    lengths = [1140, 200, 210, 30, 820, 215, 28, 300]
    groups = L.length_groups(lengths)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        assert min(lengths[i] for i in g) >= 0.7 * max(lengths[i] for i in g)
    assert groups == [[0, 4], [7, 5, 2], [1], [3, 6]]


def test_bucketed_loss_and_gradients_equal_one_padded_batch(pools):
    torch.manual_seed(0)
    model = build_omni("tiny").float()
    rng = random.Random(2)
    exs = [S.line_example(pools, rng, on_page=False), S.text_example(pools, "gui", rng),
           S.task_example(pools, "docqa", rng), S.line_example(pools, rng, on_page=True)]
    grads = []
    for bucket in (False, True):
        model.zero_grad()
        loss, n = L.batch_loss(model, exs, bucket=bucket)
        loss.backward()
        grads.append((loss.item(), n, [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (l0, n0, g0), (l1, n1, g1) = grads
    assert n0 == n1 and l1 == pytest.approx(l0, rel=1e-5)
    assert len(g0) == len(g1)
    for a, b in zip(g0, g1):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_ctc_loss_reads_the_encoder_before_its_projector_and_matches_a_direct_computation(pools):
    model = build_omni("tiny")
    head = L.ctc_head(model, "audio", seed=0, stage_index=6)
    assert torch.equal(head.weight, L.ctc_head(model, "audio", seed=0, stage_index=6).weight)  # seeded
    examples = [S.make_example(pools, "hear", random.Random(i)) for i in range(3)]
    loss, n = L.ctc_batch_loss(model, head, examples)
    assert n == sum(len(model.tokenizer.encode(e.answer)) for e in examples)
    # one clip at a time, by hand: the same mean (F.ctc_loss divides each by its target length)
    per = []
    for e in examples:
        feats, lengths = model.audio.batch_features([e.media[0].pixels])
        hidden, out_len = model.audio.hidden(feats, lengths)
        target = torch.tensor(model.tokenizer.encode(e.answer)) + 1
        lp = head(hidden).log_softmax(-1).transpose(0, 1)
        per.append(torch.nn.functional.ctc_loss(lp, target[None], out_len, torch.tensor([len(target)]),
                                                zero_infinity=True))
    assert loss.item() == pytest.approx(torch.stack(per).mean().item(), rel=1e-4)
    loss.backward()
    assert model.audio.blocks[0].ff1.net[1].weight.grad is not None
    assert all(p.grad is None for p in model.audio.projector.parameters())
    assert all(p.grad is None for p in model.lm.parameters())


def test_image_ctc_reads_the_columns_of_the_vision_encoder_before_its_merge_and_projector(pools):
    model = build_omni("tiny")
    head = L.ctc_head(model, "image", seed=0, stage_index=8)
    c = model.tokenizer.vocab_size + 1
    assert head.out_features == L.IMAGE_CTC_FRAMES * c and head.in_features == model.vision.cfg.width
    examples = [S.make_example(pools, "line", random.Random(i)) for i in range(3)]
    logp, lengths = L.column_ctc_logits(model, head, [e.media[0].pixels for e in examples])
    grids = [e.media[0].grid for e in examples]
    assert lengths.tolist() == [L.IMAGE_CTC_FRAMES * gw for _, gw in grids]
    assert logp.shape == (3, max(lengths), c)
    # one image by hand: its patch features averaged over rows, each column split into frames
    px = examples[0].media[0].pixels
    (h,) = model.vision.hidden([px])
    gh, gw = grids[0]
    assert h.shape == (1, gh, gw, model.vision.cfg.width)
    by_hand = head(h[0].mean(0)).view(-1, c).log_softmax(-1)
    torch.testing.assert_close(logp[0, : lengths[0]], by_hand)
    # the same features the LM tokens are made of: merged and projected they are the encoder's output
    torch.testing.assert_close(model.vision.encode([px])[0], model.vision(px))
    loss, n = L.ctc_batch_loss(model, head, examples, "image")
    assert n == sum(len(e.answer.encode()) for e in examples) and loss.item() > 0
    loss.backward()
    assert model.vision.blocks[0].attn.qkv.weight.grad is not None
    assert all(p.grad is None for p in model.vision.projector.parameters())
    assert all(p.grad is None for p in model.lm.parameters())


def test_image_ctc_loss_falls_on_rendered_lines(pools):
    torch.manual_seed(0)
    model = build_omni("tiny", seed=0)
    head = L.ctc_head(model, "image", seed=0, stage_index=8)
    params = [p for n, p in model.named_parameters() if n.startswith(C.VISION_ENCODER)] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=3e-3)
    fixed = [S.make_example(pools, "line", random.Random(i)) for i in range(8)]
    first = L.ctc_batch_loss(model, head, fixed, "image")[0].item()
    for _ in range(60):  # fit eight lines
        loss, _ = L.ctc_batch_loss(model, head, fixed, "image")
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_video_state_head_reads_each_tubelet_and_its_loss_falls_on_a_fixed_batch(pools):
    """The dense video objective: per tubelet frame, every cell's colour and shape, the counter and
    the caption, read off the tokens before EVS; a few steps on four fresh videos overfit them."""
    torch.manual_seed(0)
    model = build_omni("tiny", seed=0)
    head = L.video_state_head(model, seed=0, stage_index=18)
    assert torch.equal(head.out.weight, L.video_state_head(model, seed=0, stage_index=18).out.weight)
    fixed = [S.make_example(pools, "video-dense", random.Random(i)) for i in range(4)]
    media = fixed[0].media[0]
    out = head(model.video.encode_tubelets(media.pixels, media.grid))
    t = media.pixels.shape[0] // 2
    assert out["colour"].shape == (t, 2, S.VIDEO_CELLS, 9) and out["caption"].shape == (t, 2, 25)
    loss, n = L.video_state_loss(model, head, fixed)
    assert n == sum(e.targets.shape[0] for e in fixed)
    loss.backward()
    assert model.video.tubelet_embed.proj.weight.grad is not None
    assert all(p.grad is None for p in model.lm.parameters())
    params = list(model.video.tubelet_embed.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=3e-3)
    first = loss.item()
    for _ in range(25):
        loss, _ = L.video_state_loss(model, head, fixed)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first
    with pytest.raises(ValueError, match="video-dense examples"):
        L.video_state_loss(model, head, [S.make_example(pools, "line", random.Random(0))])


@pytest.mark.parametrize("time_pos", [0, 8])
def test_batched_video_encoding_equals_one_clip_at_a_time(pools, time_pos):
    """`encode_videos` runs a batch's clips of one grid through the encoder together; every clip's
    tokens (EVS applied, time index added) are those the model gives it alone, and the batch loss is
    the same with it or without."""
    import dataclasses as dc

    from evalsuite.model.omni import OmniModel

    cfg = build_omni("tiny").config
    cfg = dc.replace(cfg, video=dc.replace(cfg.video, time_pos=time_pos, evs_rate=0.5))
    torch.manual_seed(0)
    model = OmniModel(cfg).eval()
    if time_pos:
        torch.nn.init.normal_(model.video.time_pos, std=0.5)
    exs = [S.make_example(pools, "videoqa-fresh", random.Random(i)) for i in range(3)]
    exs.append(S.make_example(pools, "docqa", random.Random(0)))
    for ex in exs[:2]:
        ex.media[0].info["evs_rate"] = 0.5
        ex.media[0].n_tokens = L.encode_videos(model, ex.media)[0].shape[0]
    clips = [ex.media[0] for ex in exs[:3]]
    with torch.no_grad():
        batched = L.encode_videos(model, clips)
        for clip, tokens in zip(clips, batched):
            torch.testing.assert_close(tokens, model._encode([clip])[0], rtol=1e-5, atol=1e-5)
        assert batched[0].shape[0] < clips[0].info["before_evs"]  # EVS pruned half the candidates
        a, n = L.batch_loss(model, exs)
        b, m = L.batch_loss(model, exs, batch_video=True)
    assert n == m and b.item() == pytest.approx(a.item(), rel=1e-5)


def test_grounding_answers_are_learnt_as_location_ids_when_the_tokenizer_has_them(pools):
    import dataclasses

    from evalsuite.model.config import OmniConfig

    ex = S.make_example(pools, "point", random.Random(5))
    plain = build_omni("tiny")
    model = build_omni(dataclasses.replace(OmniConfig.preset("tiny"), loc_bins=40))
    tok = model.tokenizer
    _, labels = L.encode_batch(model, [ex])
    row = labels[0][labels[0] >= 0].tolist()
    want = []
    for answer in [ex.answer] + [a for _, a in ex.more]:
        want += tok.point_ids(answer) + [tok.end_id]
    assert row == want and len(row) == 3 * (1 + len(ex.more))
    _, labels = L.encode_batch(plain, [ex])  # without location tokens: the answer's bytes
    assert labels[0][labels[0] >= 0].tolist()[:len(ex.answer)] == tok.encode(ex.answer)
    text = S.make_example(pools, "text:docqa", random.Random(1))  # not a grounding source: bytes as ever
    _, labels = L.encode_batch(model, [text])
    assert labels[0][labels[0] >= 0].tolist() == [i for a in [text.answer] + [a for _, a in text.more]
                                                   for i in tok.encode(a) + [tok.end_id]]


def test_token_ctc_reads_the_merged_columns_of_the_image_tokens_and_trains_only_the_projector(pools):
    """The ``tokens`` objective: the LM's image tokens (after the projector and the position table)
    averaged over their rows, ``IMAGE_CTC_FRAMES * merge`` frames per merged column; with the vision
    transformer frozen only the projector (and the position table, where trained) get gradients."""
    model = build_omni("tiny")
    m = model.vision.cfg.merge
    head = L.ctc_head(model, "tokens", seed=0, stage_index=20)
    c = model.tokenizer.vocab_size + 1
    assert head.out_features == L.IMAGE_CTC_FRAMES * m * c and head.in_features == model.vision.cfg.lm_hidden
    examples = [S.make_example(pools, "char-line", random.Random(i)) for i in range(3)]
    px = examples[0].media[0].pixels
    logp, lengths = L.merged_column_logits(model, head, [e.media[0].pixels for e in examples])
    assert lengths.tolist() == [L.IMAGE_CTC_FRAMES * m * (e.media[0].grid[1] // m) for e in examples]
    gh, gw = examples[0].media[0].grid
    tokens = model.vision(px)  # (1, gh/m * gw/m, lm_hidden): what the LM reads
    by_hand = head(tokens[0].view(gh // m, gw // m, -1).mean(0)).view(-1, c).log_softmax(-1)
    torch.testing.assert_close(logp[0, : lengths[0]], by_hand, rtol=1e-4, atol=1e-4)
    for p in model.vision.parameters():
        p.requires_grad_(False)
    for p in model.vision.projector.parameters():
        p.requires_grad_(True)
    loss, n = L.ctc_batch_loss(model, head, examples, "tokens")
    loss.backward()
    assert n == sum(len(e.answer.encode()) for e in examples) and loss.item() > 0
    assert all(p.grad is not None for p in model.vision.projector.parameters() if p.requires_grad)
    assert all(p.grad is None for p in model.vision.blocks.parameters())
    assert all(p.grad is None for p in model.lm.parameters())
    with pytest.raises(ValueError, match="no encoder objective"):
        L.ctc_head(model, "video", 0, 0)


def test_ctc_infeasible_counts_exactly_the_examples_whose_loss_is_infinite():
    """CTC needs a frame per label and a blank between a repeated pair: the examples without enough
    frames are the ones `zero_infinity` zeroes, and `ctc_infeasible` counts exactly them."""
    import torch.nn.functional as F

    targets = [torch.tensor([1, 2, 3]), torch.tensor([1, 1, 2]), torch.tensor([4, 4]), torch.tensor([5])]
    out_len = torch.tensor([3, 3, 3, 1])  # enough, one short (needs 4), enough (needs 3), enough
    logp = torch.randn(4, 3, 7).log_softmax(-1)
    loss = F.ctc_loss(logp.transpose(0, 1), torch.cat(targets), out_len, torch.tensor([len(t) for t in targets]),
                      blank=0, reduction="none")
    assert torch.isinf(loss).tolist() == [False, True, False, False]
    assert L.ctc_infeasible(out_len, targets) == 1
    assert L.ctc_infeasible(torch.tensor([2, 2, 2, 0]), targets) == 4
