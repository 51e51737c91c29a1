"""Which skills a checkpoint has: teacher-forced answer exact match per training source.

    python -m evalsuite.training.probe evalsuite/model/checkpoints/tiny [--sources line,text:docqa,docqa] [--n 32] [--chars 300]
                                                    [--ctc 3000 [--ctc-at tokens]] [--text-form 200]
                                                    [--positions 120] [--choose 200]

For each source of the curriculum (`evalsuite.training.sources.make_example`: the reading bridges, the text forms,
the media tasks) it builds ``n`` examples the way training does and runs each through the model once.
An answer is a hit when every one of its tokens, and the closing ``<|end|>``, is the argmax given the
true prefix: for an example's first answer that is exactly when greedy decoding would produce it;
follow-up answers see the true earlier ones. It is much cheaper than a harness run and separates the
skills a task needs — a model that cannot answer ``text:docqa`` (the document given as text) cannot
answer ``docqa`` whatever its vision encoder reads. `encoder_spread` checks the other half: whether
each media encoder's tokens still depend on its input, and `ctc_readout` how much of a line of
random characters a linear head can read off the frozen vision encoder (the encoder's share of a
reading failure, apart from the projector's and the LM's; ``--ctc-at tokens`` reads the LM's image
tokens instead, the projector's share). `position_readout` (``--positions N``) asks whether an image
token says where it is: a ridge readout of each token's normalized row and column from the token
alone. `text_form_scores` (``--text-form N``) is
the LM's share: the tasks' *eval* questions answered, greedily through the harness's backend and
scored by each task's own rule, with the media replaced by its text form (a document's text, a
screen's element list, a video's event log, a transcript) — what the model would score if it
perceived perfectly. `choice_binding` (``--choose N``) isolates the one step every ``videoqa``
answer needs beyond finding its content: naming the option's letter. Each question names its option
outright ("Which option is red circle?", in videoqa's prompt format with its vocabularies), so a
model that can bind a content to its letter answers all of them; it also reports which letters the
model gives, so a model stuck on one letter shows as such. `video_open_scores` (``--video-open N``) is
the other step: the eval videos' questions asked without their options (the `videoqa-open` prompt)
and answered greedily, exact match with the right option's text, per question subtype — what the
model finds in a video apart from naming a letter.

The examples come from the tasks' ``train`` split (like everything training sees; the harness's eval
split stays unseen), drawn with their own seeds; the pools are large enough that a tiny model has not
memorised them, but a high score here is a skill check, not a benchmark number.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from typing import Any, Iterator, Sequence

import torch

from evalsuite.training.curriculum import EVAL_TASKS, STAGES
from evalsuite.training.losses import (IMAGE_CTC_FRAMES, column_ctc_logits, ctc_answer_loss, ctc_head, encode_rows,
                                       merged_column_logits)
from evalsuite.training.sources import (OPEN_INSTRUCTION, Pools, choice_question, make_example, question_text,
                                        text_form, text_form_question, vocabulary)

DEFAULT_SOURCES: tuple[str, ...] = ("line", "page-line", "transcribe", "docqa", "gui", "videoqa", "audioqa",
                                    "text:docqa", "text:gui", "text:videoqa", "text:audioqa")


def answer_hits(pred: torch.Tensor, labels: torch.Tensor) -> list[bool]:
    """Per answer (a maximal run of consecutive positions with ``labels >= 0``): whether every
    ``pred`` in it equals its label. ``pred`` and ``labels`` are 1-D and the same length."""
    if pred.shape != labels.shape or pred.dim() != 1:
        raise ValueError(f"answer_hits expects two 1-D tensors of one length, got {tuple(pred.shape)} "
                         f"and {tuple(labels.shape)}")
    hits: list[bool] = []
    run_ok: bool | None = None
    for p, y in zip(pred.tolist(), labels.tolist()):
        if y < 0:
            if run_ok is not None:
                hits.append(run_ok)
            run_ok = None
            continue
        run_ok = (p == y) if run_ok is None else (run_ok and p == y)
    if run_ok is not None:
        hits.append(run_ok)
    return hits


def teacher_forced(model: Any, examples: Sequence[Any]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Per example, the model's argmax at every position given the true prefix and the labels
    (both 1-D, one per position; labels < 0 where no loss is taken). Call under ``no_grad``."""
    for row, lab in encode_rows(model, examples):
        hidden = model.lm.hidden_states(inputs_embeds=row[None])[0]
        yield model.lm.lm_head(hidden).argmax(-1), torch.tensor(lab, device=row.device)


@torch.no_grad()
def probe(model: Any, pools: Pools, sources: Sequence[str] = DEFAULT_SOURCES, n: int = 32,
          seed: int = 0) -> dict[str, dict[str, float]]:
    """{source: {"answer_em", "token_acc", "answers"}} over ``n`` examples of each source."""
    was_training = model.training
    model.eval()
    out: dict[str, dict[str, float]] = {}
    try:
        for src in sources:
            examples = [make_example(pools, src, random.Random(f"probe:{seed}:{src}:{i}")) for i in range(n)]
            hits: list[bool] = []
            right = total = 0
            for pred, labels in teacher_forced(model, examples):
                mask = labels >= 0
                right += int((pred[mask] == labels[mask]).sum())
                total += int(mask.sum())
                hits += answer_hits(pred, labels)
            out[src] = {"answer_em": sum(hits) / max(1, len(hits)), "token_acc": right / max(1, total),
                        "answers": float(len(hits))}
    finally:
        model.train(was_training)
    return out


def word_kind(word: str, vocabulary: set[str]) -> str:
    """``vocab`` (a word of the document generator's vocabulary), ``number`` (digits, one optional
    decimal point) or ``code`` (anything else: ``K-53``, ``2019-11-16``, ``INV-5475``)."""
    if word in vocabulary:
        return "vocab"
    return "number" if word.replace(".", "", 1).isdigit() else "code"


@torch.no_grad()
def char_accuracy(model: Any, pools: Pools, source: str = "line", n: int = 300,
                  seed: int = 0) -> dict[str, dict[str, float]]:
    """Teacher-forced character accuracy on fresh rendered lines (``line`` or ``page-line``), split
    by character class (``char:digit|letter|other``), by the kind of word a character is in
    (``word:vocab|number|code``, see `word_kind`), by its place in the word (``vocab:first`` ...
    ``code:later``), and whole words right (``whole:vocab`` ...): {key: {"acc", "n"}}. A model that
    reads words from their shape and completes them from the vocabulary scores high on
    ``vocab:later`` and low on digits and codes; one that copies characters scores alike on all."""
    if source not in ("line", "page-line"):
        raise ValueError(f"char_accuracy reads rendered lines: source 'line' or 'page-line', got {source!r}")
    words = set(vocabulary())
    tok = model.tokenizer
    hit: dict[str, int] = {}
    tot: dict[str, int] = {}

    def count(key: str, ok: bool) -> None:
        tot[key] = tot.get(key, 0) + 1
        hit[key] = hit.get(key, 0) + int(ok)

    was_training = model.training
    model.eval()
    try:
        examples = [make_example(pools, source, random.Random(f"chars:{seed}:{source}:{i}")) for i in range(n)]
        for ex, (pred, labels) in zip(examples, teacher_forced(model, examples)):
            mask = labels >= 0
            ids = tok.encode(ex.answer)
            answer = labels[mask][: len(ids)]
            if len(ids) != len(ex.answer) or answer.tolist() != ids:
                raise ValueError(f"char_accuracy expects one byte-level token per character, got {ex.answer!r}")
            ok = (pred[mask][: len(ids)] == answer).tolist()
            pos = 0
            for word in ex.answer.split(" "):
                kind = word_kind(word, words)
                for j, ch in enumerate(word):
                    cls = "digit" if ch.isdigit() else "letter" if ch.isalpha() else "other"
                    for key in (f"char:{cls}", f"word:{kind}", f"{kind}:{'first' if j == 0 else 'later'}"):
                        count(key, ok[pos + j])
                count(f"whole:{kind}", all(ok[pos: pos + len(word)]))
                pos += len(word) + 1
    finally:
        model.train(was_training)
    return {k: {"acc": hit[k] / tot[k], "n": float(tot[k])} for k in sorted(tot)}


def ctc_greedy(frames: Sequence[int]) -> list[int]:
    """Greedy CTC decoding of per-frame argmax classes (blank = 0, class k + 1 = token k): repeats
    merge, blanks drop, a blank between two equal classes keeps both."""
    out: list[int] = []
    prev = 0
    for c in frames:
        if c != prev and c != 0:
            out.append(c - 1)
        prev = c
    return out


def matched_chars(target: str, text: str) -> int:
    """Characters of ``target`` that ``text`` reproduces in order (difflib's matching blocks)."""
    import difflib

    return sum(b.size for b in difflib.SequenceMatcher(None, target, text, autojunk=False).get_matching_blocks())


# Where `ctc_readout` reads the vision encoder: each patch column (the encoder's own CTC objective),
# or each merged column before the projector, or after it (the LM's image tokens).
CTC_AT: tuple[str, ...] = ("patches", "merged", "tokens")


def readout_logits(model: Any, head: torch.nn.Linear, pixels: Sequence[torch.Tensor], at: str = "patches"
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """CTC log-probabilities (B, T, C) and lengths read at ``at`` (`CTC_AT`): ``patches`` is
    `evalsuite.training.losses.column_ctc_logits`; ``merged`` and ``tokens`` average the merged features (before or
    after the projector) over the rows and give ``IMAGE_CTC_FRAMES * merge`` frames per merged column
    (the frames per pixel column stay the same)."""
    if at == "patches":
        return column_ctc_logits(model, head, pixels)
    if at not in CTC_AT:
        raise ValueError(f"readout_logits reads at one of {CTC_AT}, got {at!r}")
    return merged_column_logits(model, head, pixels, at)


def readout_head(model: Any, at: str, seed: int) -> torch.nn.Linear:
    """A fresh linear CTC head for `readout_logits` at ``at``, seeded, on the model's device."""
    if at == "patches":
        return ctc_head(model, "image", seed, 1_000_003)  # a stage index no run has: no stage's head
    cfg = model.vision.cfg
    width = cfg.merged_dim if at == "merged" else cfg.lm_hidden
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 1000 + 7 + CTC_AT.index(at))
        head = torch.nn.Linear(width, IMAGE_CTC_FRAMES * cfg.merge * (model.tokenizer.vocab_size + 1))
    return head.to(model.device)


def ctc_readout(model: Any, pools: Pools, source: str = "char-line", steps: int = 3000, n: int = 300,
                seed: int = 0, batch: int = 32, lr: float = 3e-3, at: str = "patches") -> dict[str, float]:
    """What the frozen vision encoder carries about a rendered line, without the LM: a fresh linear
    CTC head is fitted for ``steps`` steps on ``source`` lines, reading at ``at`` (`CTC_AT`: the
    patch columns as the encoder's own objective does, or the merged columns before or after the
    projector), then ``n`` fresh lines are decoded greedily. {"char_acc": matched characters / target
    characters (`matched_chars`), "exact": whole lines right, "n", "steps"}. The model's weights are
    left as they were."""
    if source not in ("line", "char-line"):
        raise ValueError(f"ctc_readout reads lines alone on their canvas: source 'line' or 'char-line', got {source!r}")
    if at not in CTC_AT:
        raise ValueError(f"ctc_readout reads at one of {CTC_AT}, got {at!r}")
    was_training = model.training
    grads = {p: p.requires_grad for p in model.parameters()}
    model.eval()

    def logits(chunk: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return readout_logits(model, head, [ex.media[0].pixels for ex in chunk], at)

    try:
        for p in grads:
            p.requires_grad_(False)
        head = readout_head(model, at, seed)
        opt = torch.optim.AdamW(head.parameters(), lr=lr)
        for step in range(steps):
            examples = [make_example(pools, source, random.Random(f"ctc:{seed}:{step}:{i}")) for i in range(batch)]
            loss, _ = ctc_answer_loss(model, *logits(examples), examples)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        matched = total = exact = 0
        with torch.no_grad():
            examples = [make_example(pools, source, random.Random(f"ctc-eval:{seed}:{i}")) for i in range(n)]
            for k in range(0, n, batch):
                chunk = examples[k: k + batch]
                logp, lengths = logits(chunk)
                for ex, lp, length in zip(chunk, logp, lengths.tolist()):
                    text = model.tokenizer.decode(ctc_greedy(lp[:length].argmax(-1).tolist()))
                    matched += matched_chars(ex.answer, text)
                    total += len(ex.answer)
                    exact += text == ex.answer
    finally:
        for p, g in grads.items():
            p.requires_grad_(g)
        model.train(was_training)
    return {"char_acc": matched / max(1, total), "exact": exact / max(1, n), "n": float(n), "steps": float(steps)}


def position_readout(model: Any, pools: Pools, source: str = "gui-wide", n: int = 120, seed: int = 0,
                     ridge: float = 0.1) -> dict[str, float]:
    """Whether each LM image token carries its place: a ridge regression from the tokens of the first
    three quarters of ``n`` images of ``source`` to their merged-grid cell's normalized centre (row,
    column in (0, 1)), scored on the last quarter's tokens: {"row_r2", "col_r2", "row_mae", "col_mae",
    "n"}, the mean absolute errors in thousandths (gui's norm1000 units). An R² near 0: the LM must
    count its way along the raster order to know where a token is."""
    from evalsuite.model.vision import grid_positions

    if n < 4:
        raise ValueError(f"position_readout needs n >= 4 images, got {n}")
    was_training = model.training
    model.eval()
    xs, ys = [], []
    try:
        with torch.no_grad():
            for i in range(n):
                ex = make_example(pools, source, random.Random(f"positions:{seed}:{i}"))
                px = ex.media[0].pixels.to(model.device)
                tokens = model.vision.encode([px])[0][0].float().cpu()  # first crop: (T, lm_hidden)
                unit = model.vision.cfg.patch_size * model.vision.cfg.merge  # pixels per merged token
                grid = (px.shape[-2] // unit, px.shape[-1] // unit)
                xs.append(tokens)
                ys.append((grid_positions(*grid).float() + 0.5) / torch.tensor(grid, dtype=torch.float32))
    finally:
        model.train(was_training)
    k = (3 * n) // 4
    x_fit, y_fit, x_test, y_test = torch.cat(xs[:k]), torch.cat(ys[:k]), torch.cat(xs[k:]), torch.cat(ys[k:])
    mu, sd = x_fit.mean(0), x_fit.std(0) + 1e-6

    def design(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([(x - mu) / sd, torch.ones(len(x), 1)], 1).double()

    a = design(x_fit)
    w = torch.linalg.solve(a.T @ a + ridge * torch.eye(a.shape[1], dtype=a.dtype), a.T @ y_fit.double())
    pred = (design(x_test) @ w).float()
    r2 = 1 - ((pred - y_test) ** 2).sum(0) / ((y_test - y_test.mean(0)) ** 2).sum(0).clamp_min(1e-12)
    mae = (pred - y_test).abs().mean(0) * 1000
    return {"row_r2": float(r2[0]), "col_r2": float(r2[1]), "row_mae": float(mae[0]), "col_mae": float(mae[1]),
            "n": float(n)}


# media kind -> the training source whose examples carry it
SPREAD_SOURCES: dict[str, str] = {"image": "docqa", "video": "videoqa", "audio": "audioqa"}


@torch.no_grad()
def encoder_spread(model: Any, pools: Pools, n: int = 4, seed: int = 0) -> dict[str, dict[str, float]]:
    """How much each encoder's output depends on its input: {kind: {"spread", "rms"}} where spread is
    the mean over pairs of consecutive examples of ``|a - b| / |a|`` (their tokens aligned, the longer
    one cut), ``rms`` the tokens' root mean square. An encoder whose spread falls near 0 emits the same
    tokens for every input (it has collapsed to a constant), and no amount of LM training recovers a
    task behind it."""
    if n < 2:
        raise ValueError(f"encoder_spread needs n >= 2 examples, got {n}")
    was_training = model.training
    model.eval()
    out: dict[str, dict[str, float]] = {}
    try:
        for kind, src in SPREAD_SOURCES.items():
            tokens, keys, i = [], set(), 0
            while len(tokens) < n and i < 50 * n:  # n examples of distinct media files
                ex = make_example(pools, src, random.Random(f"spread:{seed}:{src}:{i}"))
                i += 1
                if ex.media[0].path in keys:
                    continue
                keys.add(ex.media[0].path)
                tokens.append(model._encode(ex.media)[0].float())
            if len(tokens) < 2:
                continue
            diffs = []
            for a, b in zip(tokens, tokens[1:]):
                t = min(a.shape[0], b.shape[0])
                diffs.append(float((a[:t] - b[:t]).norm() / a[:t].norm().clamp_min(1e-12)))
            out[kind] = {"spread": sum(diffs) / len(diffs),
                         "rms": float(torch.cat(tokens).pow(2).mean().sqrt())}
    finally:
        model.train(was_training)
    return out


def text_form_request(task: Any, sample: Any) -> Any:
    """The task's request for ``sample`` with its media replaced by the media's text form, prompted as
    the text stages of training prompt it (`evalsuite.training.sources.text_example`); None for a sample whose text
    form is blank (a clip of beeps has no words)."""
    import dataclasses

    from evalsuite.types import user

    form = text_form(sample)
    if not form:
        return None
    return dataclasses.replace(task.request(sample), messages=[user(text_form_question(sample, form))], media={})


def text_form_scores(backend: Any, tasks: Sequence[str] = EVAL_TASKS, n: int = 200,
                     batch: int = 16) -> dict[str, dict[str, float]]:
    """Per task, the first ``n`` eval-split questions answered by ``backend`` from their text forms
    (`text_form_request`) and scored by the task: {task: {"accuracy", "n", "no_text_form",
    "category:<c>" ...}} (the category breakdown where the task's samples have one)."""
    import evalsuite.catalog  # noqa: F401  (registers the built-in tasks)
    from evalsuite.registry import TASKS

    out: dict[str, dict[str, float]] = {}
    for name in tasks:
        task = TASKS.get(name)(split="eval", n=n)
        pairs = [(s, text_form_request(task, s)) for s in task.samples() if s.error is None]
        kept = [(s, r) for s, r in pairs if r is not None]
        by_cat: dict[str, list[float]] = {}
        scores: list[float] = []
        for i in range(0, len(kept), batch):
            chunk = kept[i: i + batch]
            for (s, _), resp in zip(chunk, backend.generate([r for _, r in chunk])):
                score = float(task.score(s, resp.text)["score"])
                scores.append(score)
                if s.metadata.get("category") is not None:
                    by_cat.setdefault(str(s.metadata["category"]), []).append(score)
        out[name] = {"accuracy": sum(scores) / len(scores) if scores else float("nan"), "n": float(len(scores)),
                     "no_text_form": float(len(pairs) - len(kept)),
                     **{f"category:{c}": sum(v) / len(v) for c, v in sorted(by_cat.items())}}
    return out


def choice_prompts(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (prompt, letter) pairs of `evalsuite.training.sources.choice_question`, seeded apart from training's."""
    rng = random.Random(f"choose:{seed}")
    return [choice_question(rng) for _ in range(n)]


def choice_binding(backend: Any, n: int = 200, batch: int = 16, seed: int = 0) -> dict[str, float]:
    """Greedy answers of ``backend`` to ``n`` `choice_prompts`, read with videoqa's letter extractor:
    {"accuracy", "n", "unparsed", "letter:A" ... (the share of answers naming each letter)}."""
    from evalsuite.types import Request, user
    from evalsuite.tasks.scoring import extract_choice
    from evalsuite.tasks.videoqa import LETTERS

    pairs = choice_prompts(n, seed)
    got: list[str | None] = []
    for i in range(0, len(pairs), batch):
        chunk = pairs[i: i + batch]
        requests = [Request(sample_id=f"choose-{i + j}", messages=[user(q)], max_tokens=32, task="choose")
                    for j, (q, _) in enumerate(chunk)]
        got += [extract_choice(r.text, None, LETTERS) for r in backend.generate(requests)]
    total = max(1, len(pairs))
    return {"accuracy": sum(g == a for g, (_, a) in zip(got, pairs)) / total, "n": float(len(pairs)),
            "unparsed": sum(g is None for g in got) / total,
            **{f"letter:{x}": sum(g == x for g in got) / total for x in LETTERS}}


def video_open_request(task: Any, sample: Any) -> Any:
    """The videoqa ``task``'s request for ``sample`` without its options: the question and the
    `videoqa-open` instruction after the video, no choices."""
    import dataclasses

    from evalsuite.types import user

    question = question_text(sample).split("\n")[0]
    media = [p for m in sample.messages for p in m.content if p.type != "text"]
    return dataclasses.replace(task.request(sample), messages=[user(*media, f"{question}\n{OPEN_INSTRUCTION}")],
                               choices=None, max_tokens=24)


def video_open_scores(backend: Any, n: int = 200, batch: int = 8) -> dict[str, float]:
    """The first ``n`` videoqa eval questions answered by ``backend`` without options
    (`video_open_request`): {"accuracy", "n", "subtype:<category/subtype>" ...}, a hit when the
    answer is the right option's text (case and surrounding spaces aside)."""
    import evalsuite.catalog  # noqa: F401  (registers the built-in tasks)
    from evalsuite.registry import TASKS

    task = TASKS.get("videoqa")(split="eval", n=n)
    samples = [s for s in task.samples() if s.error is None]
    by_kind: dict[str, list[float]] = {}
    hits: list[float] = []
    for i in range(0, len(samples), batch):
        chunk = samples[i: i + batch]
        for s, resp in zip(chunk, backend.generate([video_open_request(task, s) for s in chunk])):
            hit = float(resp.text.strip().lower() == str(s.metadata["answer"]).strip().lower())
            hits.append(hit)
            by_kind.setdefault(str(s.metadata.get("subtype")), []).append(hit)
    return {"accuracy": sum(hits) / len(hits) if hits else float("nan"), "n": float(len(hits)),
            **{f"subtype:{k}": sum(v) / len(v) for k, v in sorted(by_kind.items())}}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m evalsuite.training.probe", description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="a directory written by model.weights.save")
    p.add_argument("--sources", default=",".join(DEFAULT_SOURCES))
    p.add_argument("--n", type=int, default=32, help="examples per source")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--chars", type=int, default=0, metavar="N",
                   help="also: character accuracy on N fresh rendered lines by character class and word kind")
    p.add_argument("--ctc", type=int, default=0, metavar="STEPS",
                   help="also: fit a linear CTC head on the frozen vision encoder for STEPS steps on "
                        "random-character lines and report how much of 300 fresh ones it reads")
    p.add_argument("--ctc-at", default="patches", choices=CTC_AT,
                   help="where --ctc reads: the patch columns (default), or each merged column before or "
                        "after the projector (the LM's image tokens)")
    p.add_argument("--positions", type=int, default=0, metavar="N",
                   help="also: how well a linear readout finds each image token's row and column from the "
                        "token alone (N gui screens)")
    p.add_argument("--text-form", type=int, default=0, metavar="N",
                   help="also: the first N eval questions of each task answered (bf16, greedy) from the "
                        "media's text form instead of the media, scored by the task")
    p.add_argument("--choose", type=int, default=0, metavar="N",
                   help="also: N multiple-choice questions that name their option outright, answered "
                        "(bf16, greedy) with the option's letter")
    p.add_argument("--video-open", type=int, default=0, metavar="N",
                   help="also: the first N videoqa eval questions asked without options (bf16, greedy), "
                        "exact match with the right option's text, per subtype")
    a = p.parse_args(argv)
    if a.n < 1:
        p.error(f"--n expects a number of examples per source >= 1, got {a.n}")
    if a.video_open < 0:
        p.error(f"--video-open expects a count of questions >= 0, got {a.video_open}")
    if a.chars < 0:
        p.error(f"--chars expects a count of lines >= 0, got {a.chars}")
    if a.ctc < 0:
        p.error(f"--ctc expects a count of steps >= 0, got {a.ctc}")
    if a.positions < 0:
        p.error(f"--positions expects a count of screens >= 0, got {a.positions}")
    if 0 < a.positions < 4:
        p.error(f"--positions needs at least 4 screens (3 quarters to fit, one to test), got {a.positions}")
    if a.text_form < 0:
        p.error(f"--text-form expects a count of questions >= 0, got {a.text_form}")
    if a.choose < 0:
        p.error(f"--choose expects a count of questions >= 0, got {a.choose}")
    known = {s for stage in STAGES.values() for s in stage.mix}
    sources = [s for s in a.sources.split(",") if s]
    bad = [s for s in sources if s not in known]
    if bad:
        p.error(f"--sources expects some of {sorted(known)}, got {bad}")
    from evalsuite.model import weights

    try:
        model = weights.load(a.checkpoint)
    except (FileNotFoundError, ValueError) as e:  # no checkpoint there, or one that does not load
        p.error(str(e))
    pools = Pools(model.config)
    result = probe(model, pools, sources, a.n)
    spread = encoder_spread(model, pools)
    chars = char_accuracy(model, pools, "line", a.chars) if a.chars > 0 else {}
    ctc = ctc_readout(model, pools, "char-line", a.ctc, at=a.ctc_at) if a.ctc > 0 else {}
    positions = position_readout(model, pools, "gui-wide", a.positions) if a.positions > 0 else {}
    forms: dict[str, dict[str, float]] = {}
    choose: dict[str, float] = {}
    opened: dict[str, float] = {}
    if a.text_form > 0 or a.choose > 0 or a.video_open > 0:
        from evalsuite.backends.reference import ReferenceBackend, using_checkpoint

        with using_checkpoint(a.checkpoint):
            backend = ReferenceBackend("bf16")
            try:
                forms = text_form_scores(backend, EVAL_TASKS, a.text_form) if a.text_form > 0 else {}
                choose = choice_binding(backend, a.choose) if a.choose > 0 else {}
                opened = video_open_scores(backend, a.video_open) if a.video_open > 0 else {}
            finally:
                backend.close()
    if a.json:
        print(json.dumps({"sources": result, "encoders": spread, **({"chars": chars} if chars else {}),
                          **({"ctc": ctc} if ctc else {}),
                          **({"positions": positions} if positions else {}), **({"text_form": forms} if forms else {}),
                          **({"choose": choose} if choose else {}), **({"video_open": opened} if opened else {})},
                         indent=1))
        return 0
    print(f"{'source':14s} {'answer EM':>9s} {'token acc':>9s} {'answers':>7s}")
    for src, r in result.items():
        print(f"{src:14s} {r['answer_em']:9.3f} {r['token_acc']:9.3f} {int(r['answers']):7d}")
    print(f"\n{'encoder':14s} {'spread':>9s} {'rms':>9s}   (spread near 0: the same tokens for every input)")
    for kind, r in spread.items():
        print(f"{kind:14s} {r['spread']:9.4f} {r['rms']:9.3f}")
    if chars:
        print(f"\n{'fresh lines':14s} {'char acc':>9s} {'n':>7s}   (teacher-forced, {a.chars} lines)")
        for key, r in chars.items():
            print(f"{key:14s} {r['acc']:9.3f} {int(r['n']):7d}")
    if ctc:
        print(f"\nvision encoder ({a.ctc_at}), linear CTC head fitted {a.ctc} steps on char-line: "
              f"char acc {ctc['char_acc']:.3f}, exact lines {ctc['exact']:.3f} ({int(ctc['n'])} fresh lines)")
    if positions:
        print(f"\nimage tokens' place, ridge readout from the token alone ({a.positions} gui screens): "
              f"row R² {positions['row_r2']:.3f} (MAE {positions['row_mae']:.0f}/1000), "
              f"column R² {positions['col_r2']:.3f} (MAE {positions['col_mae']:.0f}/1000)")
    if forms:
        print(f"\n{'text form':20s} {'accuracy':>9s} {'n':>7s}   (eval questions, the media given as text, bf16)")
        for name, r in forms.items():
            print(f"{name:20s} {r['accuracy']:9.3f} {int(r['n']):7d}")
            for key, v in r.items():
                if key.startswith("category:"):
                    print(f"  {key[9:]:18s} {v:9.3f}")
    if choose:
        letters = ", ".join(f"{k[7:]} {v:.2f}" for k, v in choose.items() if k.startswith("letter:"))
        print(f"\noption named outright, answer its letter ({a.choose} questions, bf16): accuracy "
              f"{choose['accuracy']:.3f} (chance 0.25); letters given: {letters}; unparsed {choose['unparsed']:.2f}")
    if opened:
        print(f"\nvideoqa without options, the option's text as the answer ({int(opened['n'])} eval questions, bf16): "
              f"exact {opened['accuracy']:.3f}")
        for key, v in opened.items():
            if key.startswith("subtype:"):
                print(f"  {key[8:]:18s} {v:9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
