"""Losses: the LM's answer-only cross-entropy and the encoders' CTC objectives.

Only answer tokens (and each answer's closing ``<|end|>``) carry the LM's loss; a batch runs as
micro-batches of similar length (`length_groups`), which gives the loss of one right-padded batch
without paying for the padding. An encoder stage trains one encoder alone: the audio encoder's frames
or the vision encoder's patch columns (`column_ctc_logits`) against the example's answer with CTC,
through a linear head (`ctc_head`) that lives only in the training state, never in the checkpoint.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from evalsuite.model.omni import OmniModel
from evalsuite.training.sources import Example

# Encoder objectives: the audio encoder's frames, the vision encoder's patch columns, or its merged
# columns after the projector and the position table (the image tokens the LM reads).
ENCODER_KINDS: tuple[str, ...] = ("audio", "image", "tokens")
# CTC frames per patch column of the image objective: a column is 8 px, about 1.3 characters of the
# bitmap font, and CTC needs at least one frame per character (two for a doubled one).
IMAGE_CTC_FRAMES = 2
# Sources whose answers are points "(x, y)" on the 0–1000 scale: with a tokenizer that has location
# tokens, such an answer is learnt as its two location ids (`ByteTokenizer.point_ids`).
GROUNDING_SOURCES: frozenset[str] = frozenset({"gui", "gui-wide", "gui-fresh", "gui-dense", "point", "text:gui"})


def example_ids(tok: Any, ex: Example) -> tuple[list[int], list[int]]:
    """Token ids of an example's whole chat and its labels (``labels[k]`` is the id to predict after
    position k, -100 where no loss applies: only answers and their closing ``<|end|>`` carry loss).
    A grounding source's point answers are location ids where the tokenizer has them."""
    counts = iter([m.n_tokens for m in ex.media])
    ids = tok.apply_chat(ex.messages, media_tokens=lambda part: next(counts))
    labels = [-100] * len(ids)
    grounding = ex.source in GROUNDING_SOURCES and getattr(tok, "loc_bins", 0)

    def answer(text: str) -> None:
        start = len(ids)  # the answer's first token; position start - 1 (the assistant role) predicts it
        ids.extend(((grounding and tok.point_ids(text)) or tok.encode(text)) + [tok.end_id])
        labels.extend([-100] * (len(ids) - len(labels)))
        for k in range(start - 1, len(ids) - 1):
            labels[k] = ids[k + 1]

    answer(ex.answer)
    for question, ans in ex.more:
        ids.extend([tok.role_ids["user"]] + tok.encode(question) + [tok.end_id, tok.role_ids["assistant"]])
        labels.extend([-100] * (len(ids) - len(labels)))
        answer(ans)
    return ids, labels


def encode_videos(model: OmniModel, media: Sequence[Any]) -> list[torch.Tensor]:
    """The tokens `OmniModel._encode` gives each video clip (after EVS, with the time index where the
    model has one), the clips of one frame grid going through the tubelet embedding and the vision
    transformer in one call instead of one call each."""
    from evalsuite.model.omni import _evs_rate_of
    from evalsuite.model.video import apply_evs, evs_keep_mask, feature_change, pixel_change, time_features

    video = model.video
    cfg = video.cfg
    m = cfg.vision.merge
    out: list[torch.Tensor | None] = [None] * len(media)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, clip in enumerate(media):
        groups.setdefault(tuple(clip.grid), []).append(i)
    for grid, idx in groups.items():
        pixels = [media[i].pixels.to(model.device) for i in idx]
        tokens = video.encode_tubelets(torch.cat(pixels), grid)  # (ΣT, n, lm_hidden)
        for i, px, tok in zip(idx, pixels, tokens.split([p.shape[0] // cfg.tubelet for p in pixels])):
            change = pixel_change(px, grid, cfg) if cfg.evs_metric == "pixel" else feature_change(tok)
            keep = evs_keep_mask(change, _evs_rate_of(media[i], model.config))
            if cfg.time_pos:
                when = time_features(tok.shape[0], cfg.time_pos, tok.device, tok.dtype)
                tok = tok + (when @ video.time_pos.to(tok.dtype))[:, None, :]
            out[i] = apply_evs(tok, keep, (grid[0] // m, grid[1] // m))[0]
    return [t for t in out if t is not None]


def encode_rows(model: OmniModel, examples: Sequence[Example], batch_video: bool = False
                ) -> list[tuple[torch.Tensor, list[int]]]:
    """Each example → (inputs_embeds row [T, D] with encoder outputs at its media placeholders, labels).
    With ``batch_video`` the batch's video clips are encoded together (`encode_videos`)."""
    tok = model.tokenizer
    emb_layer = model.lm.backbone.embeddings
    out: list[tuple[torch.Tensor, list[int]]] = []
    clips = [m for ex in examples for m in ex.media if m.kind == "video"] if batch_video else []
    ready = {id(m): t for m, t in zip(clips, encode_videos(model, clips) if clips else [])}
    for ex in examples:
        ids, lab = example_ids(tok, ex)
        row = emb_layer(torch.tensor(ids, dtype=torch.long, device=model.device))  # [T, D]
        if ex.media:
            spans = tok.media_spans(ids)
            others = [m for m in ex.media if id(m) not in ready]
            rest = iter(model._encode(others) if others else [])
            encoded = [ready[id(m)] if id(m) in ready else next(rest) for m in ex.media]
            pieces, at = [], 0
            for span, tokens in zip(spans, encoded):
                if tokens.shape[0] != span.length:
                    raise RuntimeError(f"{span.kind} encoder gave {tokens.shape[0]} tokens for a span of {span.length}")
                pieces += [row[at:span.start], tokens.to(row.dtype)]
                at = span.start + span.length
            pieces.append(row[at:])
            row = torch.cat(pieces)
        out.append((row, lab))
    return out


def _pad(rows: Sequence[tuple[torch.Tensor, list[int]]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    t = max(r.shape[0] for r, _ in rows)
    embeds = torch.stack([F.pad(r, (0, 0, 0, t - r.shape[0])) for r, _ in rows])
    lab_t = torch.full((len(rows), t), -100, dtype=torch.long)
    for i, (_, lab) in enumerate(rows):
        lab_t[i, : len(lab)] = torch.tensor(lab)
    return embeds, lab_t.to(device)


def encode_batch(model: OmniModel, examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    """Examples → (inputs_embeds [B, T, D] right-padded, labels [B, T] with -100 off the answers)."""
    return _pad(encode_rows(model, examples), model.device)


def length_groups(lengths: Sequence[int], ratio: float = 0.7) -> list[list[int]]:
    """Indices grouped into micro-batches of similar length (longest first): a new group starts when
    an example is shorter than ``ratio`` × its group's longest, so padding stays under ~30%."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    groups: list[list[int]] = []
    for i in order:
        if groups and lengths[i] >= ratio * lengths[groups[-1][0]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def batch_loss(model: OmniModel, examples: Sequence[Example], bucket: bool = True, batch_video: bool = False
               ) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over the answer tokens of a batch, and how many there were.

    With ``bucket`` the batch runs as micro-batches of similar length (`length_groups`): the same
    loss as one right-padded batch (padding sits after every real token, and the model is causal),
    without paying for padding a long text-form example up to everything else. ``batch_video``: the
    batch's video clips are encoded in one call per frame grid (`encode_videos`)."""
    rows = encode_rows(model, examples, batch_video)
    groups = length_groups([r.shape[0] for r, _ in rows]) if bucket else [list(range(len(rows)))]
    total = torch.zeros((), device=model.device)
    count = 0
    for g in groups:
        embeds, labels = _pad([rows[i] for i in g], model.device)
        hidden = model.lm.hidden_states(inputs_embeds=embeds)
        mask = labels >= 0
        logits = model.lm.lm_head(hidden[mask]).float()
        total = total + F.cross_entropy(logits, labels[mask], reduction="sum")
        count += int(mask.sum())
    return total / max(1, count), count


def ctc_head(model: OmniModel, kind: str, seed: int, stage_index: int) -> torch.nn.Linear:
    """The encoder stage's output layer, seeded by (seed, stage): width → blank + the tokenizer's ids
    (audio: per frame; image: `IMAGE_CTC_FRAMES` such frames per patch column; tokens: as many per
    merged column, i.e. ``IMAGE_CTC_FRAMES * merge``, the same per pixel column). It lives in the
    training state only, never in the checkpoint."""
    if kind not in ENCODER_KINDS:
        raise ValueError(f"no encoder objective for {kind!r} (expected one of {list(ENCODER_KINDS)})")
    vcfg = model.vision.cfg
    width = {"audio": model.audio.cfg.width, "image": vcfg.width, "tokens": vcfg.lm_hidden}[kind]
    frames = {"audio": 1, "image": IMAGE_CTC_FRAMES, "tokens": IMAGE_CTC_FRAMES * vcfg.merge}[kind]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 1000 + stage_index)
        head = torch.nn.Linear(width, frames * (model.tokenizer.vocab_size + 1))
    return head.to(model.device)


def column_ctc_logits(model: OmniModel, head: torch.nn.Linear, pixels: Sequence[torch.Tensor]
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities (B, T, C) and lengths of the image-CTC frames: each image's patch features
    (`VisionEncoder.hidden`) are averaged over the rows, and every column gives `IMAGE_CTC_FRAMES`
    frames, left to right (a line of text reads along the columns)."""
    c = model.tokenizer.vocab_size + 1
    seqs = []
    for h in model.vision.hidden([p.to(model.device) for p in pixels]):
        cols = h.float().mean(dim=1)  # (N, gw, D): N tiles of one image side by side
        seqs.append(head(cols.flatten(0, 1)).view(-1, c).log_softmax(-1))
    return stack_frames(seqs)


def merged_column_logits(model: OmniModel, head: torch.nn.Linear, pixels: Sequence[torch.Tensor],
                         at: str = "tokens") -> tuple[torch.Tensor, torch.Tensor]:
    """CTC log-probabilities (B, T, C) and lengths read off each image's merged columns: the merged
    features before the projector (``at="merged"``) or the LM's image tokens after the projector and
    the position table (``at="tokens"``), averaged over the rows, each column giving ``head``'s frames
    left to right. The vision transformer runs as `VisionEncoder.hidden`; gradients reach only what
    comes after it and requires them."""
    from evalsuite.model.vision import spatial_merge

    if at not in ("merged", "tokens"):
        raise ValueError(f"merged_column_logits reads at 'merged' or 'tokens', got {at!r}")
    c, m = model.tokenizer.vocab_size + 1, model.vision.cfg.merge
    seqs = []
    for h in model.vision.hidden([p.to(model.device) for p in pixels]):
        n, gh, gw, _ = h.shape
        x = h.flatten(1, 2)
        y = spatial_merge(x, (gh, gw), m) if at == "merged" else model.vision.project(x, (gh, gw))
        cols = y.float().view(n, gh // m, gw // m, -1).mean(dim=1)
        seqs.append(head(cols.flatten(0, 1)).view(-1, c).log_softmax(-1))
    return stack_frames(seqs)


def stack_frames(seqs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image CTC log-probabilities (T_i, C) → one zero-padded (B, max T_i, C) tensor and the T_i."""
    lengths = torch.tensor([x.shape[0] for x in seqs])
    t = int(lengths.max())
    return torch.stack([F.pad(x, (0, 0, 0, t - x.shape[0])) for x in seqs]), lengths


def ctc_batch_loss(model: OmniModel, head: torch.nn.Linear, examples: Sequence[Example],
                   kind: str = "audio", stats: dict[str, int] | None = None) -> tuple[torch.Tensor, int]:
    """CTC loss of one encoder's features against each example's answer in the tokenizer's ids
    (blank = 0, id k = class k + 1), averaged over the batch: the audio encoder's frames against a
    clip's transcript, the vision encoder's columns (before its projector) against a rendered line, or
    (``tokens``) the image tokens' merged columns, after the projector, against it. ``stats``, where
    given, gets the `ctc_answer_loss` counts."""
    if kind == "audio":
        enc = model.audio
        waves = [ex.media[0].pixels.to(model.device) for ex in examples]
        feats, lengths = enc.batch_features(waves)
        hidden, out_len = enc.hidden(feats, lengths.to(model.device))
        logp = head(hidden.float()).log_softmax(-1)  # (B, T', C)
    elif kind == "tokens":
        logp, out_len = merged_column_logits(model, head, [ex.media[0].pixels for ex in examples], "tokens")
    else:
        logp, out_len = column_ctc_logits(model, head, [ex.media[0].pixels for ex in examples])
    return ctc_answer_loss(model, logp, out_len, examples, stats)


def ctc_infeasible(out_len: torch.Tensor, targets: Sequence[torch.Tensor]) -> int:
    """How many of the examples have fewer frames than CTC needs for their target: one per label and
    a blank between each repeated pair. Their loss is infinite; `ctc_answer_loss` zeroes it
    (``zero_infinity``), so they teach nothing (docs/training.md)."""
    need = [len(t) + int((t[1:] == t[:-1]).sum()) for t in targets]
    return sum(int(n) < m for n, m in zip(out_len.tolist(), need))


def ctc_answer_loss(model: OmniModel, logp: torch.Tensor, out_len: torch.Tensor, examples: Sequence[Example],
                    stats: dict[str, int] | None = None) -> tuple[torch.Tensor, int]:
    """CTC loss of frames ``logp`` (B, T, C; ``out_len`` each) against each example's answer in the
    tokenizer's ids (blank = 0, id k = class k + 1), averaged over the batch; and the target count.
    ``stats``, where given, gets ``examples`` and ``infeasible`` (`ctc_infeasible`): bookkeeping only."""
    targets = [torch.tensor(model.tokenizer.encode(ex.answer), dtype=torch.long) + 1 for ex in examples]
    if stats is not None:
        stats["examples"] = len(targets)
        stats["infeasible"] = ctc_infeasible(out_len, targets)
    loss = F.ctc_loss(logp.transpose(0, 1), torch.cat(targets).to(model.device), out_len,
                      torch.tensor([len(t) for t in targets]), blank=0, zero_infinity=True)
    return loss, sum(len(t) for t in targets)


class VideoStateHead(torch.nn.Module):
    """The dense video objective's readout: one tubelet's video tokens (before EVS, before the LM),
    flattened, through one linear layer to, for each of the tubelet's frames, every cell's colour and
    shape (or empty), the counter digit and the caption word (`sources.video_state_targets`). It
    lives in the training state only, never in the checkpoint."""

    def __init__(self, n_tokens: int, width: int, tubelet: int) -> None:
        from evalsuite.training.sources import VIDEO_CELLS, video_classes

        super().__init__()
        self.n_tokens, self.tubelet, self.classes = n_tokens, tubelet, video_classes()
        c = self.classes
        self.per_frame = VIDEO_CELLS * (c["colour"] + c["shape"]) + c["counter"] + c["caption"]
        self.out = torch.nn.Linear(n_tokens * width, tubelet * self.per_frame)

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Tubelet tokens (T, n, D) → logits: colour and shape (T, k, cells, C), counter and caption (T, k, C)."""
        from evalsuite.training.sources import VIDEO_CELLS

        if tokens.shape[1] != self.n_tokens:
            raise ValueError(f"video state head reads {self.n_tokens} tokens per tubelet, got {tokens.shape[1]} "
                             "(clips of another frame size)")
        c = self.classes
        y = self.out(tokens.float().flatten(1)).view(tokens.shape[0], self.tubelet, self.per_frame)
        colour, shape, counter, caption = y.split([VIDEO_CELLS * c["colour"], VIDEO_CELLS * c["shape"],
                                                   c["counter"], c["caption"]], -1)
        return {"colour": colour.unflatten(-1, (VIDEO_CELLS, c["colour"])),
                "shape": shape.unflatten(-1, (VIDEO_CELLS, c["shape"])), "counter": counter, "caption": caption}


def video_state_head(model: OmniModel, seed: int, stage_index: int) -> VideoStateHead:
    """The head for the videoqa frames' tubelets (their 96x64 canvas sets the patch grid), seeded by
    (seed, stage) like `ctc_head`."""
    from evalsuite.model.video import frame_grid
    from evalsuite.tasks.gen.video import BASE_H, BASE_W

    cfg = model.config.video
    gh, gw = frame_grid(BASE_H, BASE_W, cfg)
    m = cfg.vision.merge
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 1000 + stage_index)
        head = VideoStateHead((gh // m) * (gw // m), cfg.vision.lm_hidden, cfg.tubelet)
    return head.to(model.device)


def video_state_loss(model: OmniModel, head: VideoStateHead, examples: Sequence[Example]
                     ) -> tuple[torch.Tensor, int]:
    """Cross-entropy of `VideoStateHead` against each ``video-dense`` example's per-tubelet labels:
    the mean over cells of the colour and shape losses plus the counter's and the caption's, per
    tubelet frame, averaged; and the number of tubelets. The clips of one frame grid go through the
    tubelet embedding and the vision transformer together (one call per grid)."""
    from evalsuite.training.sources import VIDEO_CELLS

    by_grid: dict[Any, list[Example]] = {}
    for ex in examples:
        if ex.targets is None:
            raise ValueError(f"the video state loss needs video-dense examples, got a {ex.source!r} one")
        by_grid.setdefault(tuple(ex.media[0].grid), []).append(ex)
    total = torch.zeros((), device=model.device)
    count = 0
    for grid, group in by_grid.items():
        pixels = torch.cat([ex.media[0].pixels for ex in group]).to(model.device)
        tokens = model.video.encode_tubelets(pixels, grid)  # (ΣT, n, D)
        targets = torch.cat([ex.targets for ex in group]).to(model.device)  # (ΣT, k, 2 cells + 2)
        out = head(tokens)
        cells = F.cross_entropy(out["colour"].flatten(0, 2), targets[..., :VIDEO_CELLS].flatten(), reduction="sum") \
            + F.cross_entropy(out["shape"].flatten(0, 2), targets[..., VIDEO_CELLS:2 * VIDEO_CELLS].flatten(),
                              reduction="sum")
        rest = F.cross_entropy(out["counter"].flatten(0, 1), targets[..., -2].flatten(), reduction="sum") \
            + F.cross_entropy(out["caption"].flatten(0, 1), targets[..., -1].flatten(), reduction="sum")
        total = total + cells / VIDEO_CELLS + rest
        count += targets.shape[0] * targets.shape[1]
    return total / max(1, count), count // head.tubelet
