"""evalsuite.training.probe: per-answer teacher-forced exact match, the skill check behind the training notes."""

from __future__ import annotations

import random

import pytest
import torch

from evalsuite.model.omni import build_omni
from evalsuite.training import losses as L
from evalsuite.training import probe as P
from evalsuite.training import sources as S

SMALL_POOLS = {"docqa": 8, "gui": 4, "videoqa": 6, "audioqa": 6}


def test_answer_hits_split_runs_and_need_every_token():
    labels = torch.tensor([-100, 5, 6, 2, -100, -100, 7, 2, -100, 9])
    pred = torch.tensor([0, 5, 6, 2, 1, 1, 7, 3, 4, 9])
    assert P.answer_hits(pred, labels) == [True, False, True]  # the last run ends the sequence
    assert P.answer_hits(labels.clamp(min=0), labels) == [True, True, True]
    assert P.answer_hits(torch.tensor([1, 2]), torch.tensor([-100, -100])) == []
    with pytest.raises(ValueError, match="1-D tensors of one length"):
        P.answer_hits(torch.tensor([1, 2]), torch.tensor([1]))


def test_probe_counts_every_answer_of_multi_turn_examples_and_restores_mode():
    torch.manual_seed(0)
    model = build_omni("tiny").train()
    pools = S.Pools(model.config, SMALL_POOLS)
    out = P.probe(model, pools, ["line", "text:docqa"], n=3)
    assert model.training
    assert out["line"]["answers"] == 3  # one answer per line example
    # every question about one document is one multi-turn example: answers = all turns
    examples = [S.make_example(pools, "text:docqa", random.Random(f"probe:0:text:docqa:{i}"))
                for i in range(3)]
    assert out["text:docqa"]["answers"] == sum(1 + len(e.more) for e in examples) > 3
    for r in out.values():
        assert 0.0 <= r["answer_em"] <= 1.0 and 0.0 <= r["token_acc"] <= 1.0


def test_probe_of_an_oracle_head_is_one(monkeypatch):
    """With an lm_head that returns the label itself, every answer is a hit (checks the alignment of
    hidden positions and labels: labels[k] is the token after position k)."""
    model = build_omni("tiny").eval()
    pools = S.Pools(model.config, SMALL_POOLS)
    ex = [S.make_example(pools, "text:audioqa", random.Random(f"probe:0:text:audioqa:{i}"))
          for i in range(2)]
    labels = [lab for _, lab in L.encode_rows(model, ex)]
    vocab = model.config.backbone.vocab_size
    calls = []

    def hidden_states(inputs_embeds):  # hidden state k of row r is just (r, k)
        calls.append(inputs_embeds.shape[1])
        t = inputs_embeds.shape[1]
        return torch.stack([torch.full((t,), len(calls) - 1.0), torch.arange(t, dtype=torch.float)], -1)[None]

    class Oracle(torch.nn.Module):
        def forward(self, h):
            ids = [max(0, labels[int(r)][int(k)]) for r, k in h.tolist()]
            return torch.nn.functional.one_hot(torch.tensor(ids), vocab).float()

    monkeypatch.setattr(model.lm, "hidden_states", hidden_states)
    monkeypatch.setattr(model.lm, "lm_head", Oracle())
    out = P.probe(model, pools, ["text:audioqa"], n=2)
    assert out["text:audioqa"]["answer_em"] == 1.0 and out["text:audioqa"]["token_acc"] == 1.0
    assert calls == [len(lab) for lab in labels]


def test_cli_rejects_unknown_sources(capsys):
    with pytest.raises(SystemExit):
        P.main(["evalsuite/model/checkpoints/tiny", "--sources", "pictures"])
    assert "--sources expects some of" in capsys.readouterr().err


def test_encoder_spread_is_zero_for_a_constant_encoder_and_positive_otherwise(monkeypatch):
    model = build_omni("tiny").eval()
    pools = S.Pools(model.config, {"docqa": 12, "gui": 4, "videoqa": 12, "audioqa": 12})
    fresh = P.encoder_spread(model, pools, n=2)
    assert set(fresh) == {"image", "video", "audio"}
    assert all(r["spread"] > 0.01 and r["rms"] > 0 for r in fresh.values())
    from evalsuite.model.vision import Projector

    monkeypatch.setattr(Projector, "forward", lambda self, x: torch.ones(*x.shape[:-1], 128))
    flat = P.encoder_spread(model, pools, n=2)
    assert all(r["spread"] == 0.0 and r["rms"] == pytest.approx(1.0) for r in flat.values())
    with pytest.raises(ValueError, match="n >= 2"):
        P.encoder_spread(model, pools, n=1)


def test_cli_names_a_missing_checkpoint_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        P.main([str(tmp_path / "nowhere")])
    err = capsys.readouterr().err.strip().splitlines()
    assert "no omni checkpoint at" in err[-1] and "config.json" in err[-1]


def test_word_kind_tells_vocabulary_words_numbers_and_codes():
    vocab = {"PEAR", "TOTAL"}
    assert P.word_kind("PEAR", vocab) == "vocab"
    assert [P.word_kind(w, vocab) for w in ("4296", "25.21", "1.2.3", "K-53", "2019-11-16", "pear")] == \
        ["number", "number", "code", "code", "code", "code"]


def test_char_accuracy_counts_every_character_and_blames_the_wrong_ones(monkeypatch):
    """An lm_head that returns the label itself, except a wrong token wherever the label is a digit:
    digits score 0, everything else 1, and the counts are the lines' characters."""
    model = build_omni("tiny").eval()
    pools = S.Pools(model.config, SMALL_POOLS)
    examples = [S.make_example(pools, "line", random.Random(f"chars:0:line:{i}")) for i in range(6)]
    labels = [lab for _, lab in L.encode_rows(model, examples)]
    vocab = model.config.backbone.vocab_size
    digit_ids = set(model.tokenizer.encode("0123456789"))
    calls = []

    def hidden_states(inputs_embeds):
        calls.append(inputs_embeds.shape[1])
        t = inputs_embeds.shape[1]
        return torch.stack([torch.full((t,), len(calls) - 1.0), torch.arange(t, dtype=torch.float)], -1)[None]

    class DigitBlind(torch.nn.Module):
        def forward(self, h):
            ids = []
            for r, k in h.tolist():
                y = max(0, labels[int(r)][int(k)])
                ids.append(ord("x") if y in digit_ids else y)
            return torch.nn.functional.one_hot(torch.tensor(ids), vocab).float()

    monkeypatch.setattr(model.lm, "hidden_states", hidden_states)
    monkeypatch.setattr(model.lm, "lm_head", DigitBlind())
    out = P.char_accuracy(model, pools, "line", n=6)
    text = "".join(e.answer.replace(" ", "") for e in examples)
    n_digits = sum(c.isdigit() for c in text)
    assert n_digits > 0
    assert out["char:digit"] == {"acc": 0.0, "n": float(n_digits)}
    assert out["char:letter"] == {"acc": 1.0, "n": float(sum(c.isalpha() for c in text))}
    assert sum(r["n"] for k, r in out.items() if k.startswith("char:")) == len(text)
    words = [w for e in examples for w in e.answer.split(" ")]
    assert sum(r["n"] for k, r in out.items() if k.startswith("whole:")) == len(words)
    if "whole:number" in out:
        assert out["whole:number"]["acc"] == 0.0
    with pytest.raises(ValueError, match="source 'line' or 'page-line'"):
        P.char_accuracy(model, pools, "docqa", n=1)


@pytest.mark.parametrize("flag, value, message", [
    ("--chars", "-3", "--chars expects a count of lines >= 0, got -3"),
    ("--ctc", "-1", "--ctc expects a count of steps >= 0, got -1"),
    ("--positions", "-1", "--positions expects a count of screens >= 0, got -1"),
    ("--positions", "2", "--positions needs at least 4 screens"),
    ("--text-form", "-1", "--text-form expects a count of questions >= 0, got -1"),
    ("--choose", "-2", "--choose expects a count of questions >= 0, got -2"),
    ("--n", "0", "--n expects a number of examples per source >= 1, got 0"),
    ("--n", "-3", "--n expects a number of examples per source >= 1, got -3"),
])
def test_cli_rejects_a_bad_count_in_one_line(capsys, flag, value, message):
    with pytest.raises(SystemExit):
        P.main(["evalsuite/model/checkpoints/tiny", flag, value])
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]


def test_ctc_greedy_merges_repeats_drops_blanks_and_keeps_doubles():
    assert P.ctc_greedy([0, 5, 5, 0, 5, 3, 3, 0, 0, 7]) == [4, 4, 2, 6]
    assert P.ctc_greedy([]) == [] and P.ctc_greedy([0, 0, 0]) == []
    assert P.matched_chars("AB12", "AB12") == 4 and P.matched_chars("AB12", "A12") == 3
    assert P.matched_chars("AB", "") == 0 and P.matched_chars("AB", "xxABxx") == 2


@pytest.mark.parametrize("blind", [False, True])
def test_ctc_readout_scores_an_oracle_encoder_and_one_blind_to_digits(monkeypatch, blind):
    """Column log-probabilities that spell each line (or the line without its digits) score 1.0, or
    exactly the share of non-digit characters, and no whole line with a digit in it."""
    model = build_omni("tiny").eval()
    pools = S.Pools(model.config, SMALL_POOLS)
    n = 8
    examples = [S.make_example(pools, "char-line", random.Random(f"ctc-eval:0:{i}")) for i in range(n)]
    answer_of = {float(ex.media[0].pixels.sum()): ex.answer for ex in examples}
    c = model.tokenizer.vocab_size + 1

    def fake_logits(model_, head, pixels):
        seqs = []
        for px in pixels:
            text = answer_of[float(px.sum())]
            if blind:
                text = "".join(ch for ch in text if not ch.isdigit())
            frames = [k for t in model.tokenizer.encode(text) for k in (t + 1, 0)] or [0]
            seqs.append(torch.nn.functional.one_hot(torch.tensor(frames), c).float().log_softmax(-1))
        t = max(len(x) for x in seqs)
        return (torch.stack([torch.nn.functional.pad(x, (0, 0, 0, t - len(x))) for x in seqs]),
                torch.tensor([len(x) for x in seqs]))

    monkeypatch.setattr(P, "column_ctc_logits", fake_logits)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = P.ctc_readout(model, pools, "char-line", steps=0, n=n, batch=3)
    text = "".join(ex.answer for ex in examples)
    share = 1 - sum(ch.isdigit() for ch in text) / len(text) if blind else 1.0
    assert out["char_acc"] == pytest.approx(share)
    assert out["exact"] == (sum(not any(ch.isdigit() for ch in ex.answer) for ex in examples) / n if blind else 1.0)
    assert out["n"] == n and all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError, match="source 'line' or 'char-line'"):
        P.ctc_readout(model, pools, "docqa", steps=0, n=1)


def test_ctc_readout_fits_its_head_without_touching_the_model():
    model = build_omni("tiny").train()
    pools = S.Pools(model.config, SMALL_POOLS)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = P.ctc_readout(model, pools, "char-line", steps=2, n=3, batch=2)
    assert 0.0 <= out["char_acc"] <= 1.0 and out["steps"] == 2.0
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("at", ["merged", "tokens"])
def test_readout_at_merged_columns_reads_before_or_after_the_projector(at):
    """`readout_logits` at a merged column: the merge (or the LM's image tokens) averaged over rows,
    `IMAGE_CTC_FRAMES * merge` frames a column; the readout leaves the model as it was."""
    from evalsuite.model.vision import spatial_merge

    model = build_omni("tiny").eval()
    with torch.no_grad():  # a trained-looking projector: its late parts non-zero
        model.vision.token_pos.normal_()
        model.vision.projector.extra[2].weight.normal_()
    pools = S.Pools(model.config, SMALL_POOLS)
    head = P.readout_head(model, at, seed=0)
    assert head.in_features == (256 if at == "merged" else 128)
    assert torch.equal(head.weight, P.readout_head(model, at, seed=0).weight)
    ex = S.make_example(pools, "char-line", random.Random(3))
    px = ex.media[0].pixels
    logp, lengths = P.readout_logits(model, head, [px], at)
    (h,) = model.vision.hidden([px])
    _, gh, gw, _ = h.shape
    assert lengths.tolist() == [L.IMAGE_CTC_FRAMES * gw]
    x = h.flatten(1, 2)
    y = spatial_merge(x, (gh, gw), 2) if at == "merged" else model.vision.encode([px])[0]
    by_hand = head(y.view(1, gh // 2, gw // 2, -1).mean(1)[0]).view(-1, model.tokenizer.vocab_size + 1)
    torch.testing.assert_close(logp[0], by_hand.log_softmax(-1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = P.ctc_readout(model, pools, "char-line", steps=2, n=3, batch=2, at=at)
    assert 0.0 <= out["char_acc"] <= 1.0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError, match="reads at one of"):
        P.ctc_readout(model, pools, "char-line", steps=0, n=1, at="pixels")


def test_position_readout_finds_places_the_tokens_carry_and_not_ones_they_do_not():
    """Tokens that are only `token_pos`'s position features (the projector's output zeroed) give a
    readout near R² 1; tokens that carry nothing give none."""
    model = build_omni("tiny").eval()
    pools = S.Pools(model.config, SMALL_POOLS)
    with torch.no_grad():
        model.vision.projector.net[3].weight.zero_()
        model.vision.token_pos.zero_()
    blind = P.position_readout(model, pools, "gui-wide", n=8)
    assert blind["row_r2"] < 0.05 and blind["col_r2"] < 0.05 and blind["n"] == 8.0
    with torch.no_grad():
        table = torch.randn(model.vision.token_pos.shape, generator=torch.Generator().manual_seed(0))
        model.vision.token_pos.copy_(table)
    placed = P.position_readout(model, pools, "gui-wide", n=8)
    assert placed["row_r2"] > 0.95 and placed["col_r2"] > 0.95
    assert placed["row_mae"] < 30 and placed["col_mae"] < 30
    with pytest.raises(ValueError, match="n >= 4"):
        P.position_readout(model, pools, "gui-wide", n=3)


def test_text_form_request_replaces_the_media_with_its_text_form_and_keeps_the_choices():
    import evalsuite.catalog  # noqa: F401
    from evalsuite.registry import TASKS

    task = TASKS.get("videoqa")(split="eval", n=2)
    sample = next(iter(task.samples()))
    req = P.text_form_request(task, sample)
    (message,) = req.messages
    assert [p.type for p in message.content] == ["text"]
    text = message.content[0].text
    assert text.startswith("Events in the video:\n" + sample.metadata["text_form"])
    assert text.endswith(S.question_text(sample))
    assert req.choices == sample.choices and req.media == {} and req.task == "videoqa"
    blank = sample.__class__(**{**sample.__dict__, "metadata": {**sample.metadata, "text_form": "  "}})
    assert P.text_form_request(task, blank) is None


class _Answering:
    """A backend that answers each request with ``answer(sample)`` for the sample of its id."""

    def __init__(self, samples, answer):
        self.by_id, self.answer, self.seen = {s.id: s for s in samples}, answer, []

    def generate(self, requests):
        from evalsuite.types import Response

        self.seen += requests
        return [Response(text=self.answer(self.by_id[r.sample_id])) for r in requests]


def test_text_form_scores_use_the_tasks_scoring_and_split_docqa_by_category():
    import evalsuite.catalog  # noqa: F401
    from evalsuite.registry import TASKS

    samples = list(TASKS.get("docqa")(split="eval", n=6).samples())
    oracle = _Answering(samples, lambda s: f"It is {s.target}.")
    got = P.text_form_scores(oracle, ("docqa",), n=6, batch=4)["docqa"]
    assert got["accuracy"] == 1.0 and got["n"] == 6 and got["no_text_form"] == 0
    assert {k for k in got if k.startswith("category:")} == {f"category:{s.metadata['category']}" for s in samples}
    assert all(not any(p.type != "text" for m in r.messages for p in m.content) for r in oracle.seen)
    wrong = P.text_form_scores(_Answering(samples, lambda s: "zzz"), ("docqa",), n=6)["docqa"]
    assert wrong["accuracy"] == 0.0 and all(v == 0.0 for k, v in wrong.items() if k.startswith("category:"))


def test_choice_prompts_name_exactly_one_option_in_videoqas_format_and_are_seeded():
    from evalsuite.tasks.videoqa import LETTERS

    pairs = P.choice_prompts(60, seed=3)
    assert pairs == P.choice_prompts(60, seed=3) and pairs != P.choice_prompts(60, seed=4)
    assert {a for _, a in pairs} == set(LETTERS)
    for q, a in pairs:
        lines = q.split("\n")
        assert lines[-1] == "Answer with the option's letter." and len(lines) == 6
        options = {line[0]: line[3:] for line in lines[1:5]}
        assert list(options) == list(LETTERS) and len(set(options.values())) == 4
        named = [x for x, text in options.items() if text in lines[0]]
        assert named == [a]


class _Letters:
    """A backend answering every request with ``answer(prompt)``."""

    def __init__(self, answer):
        self.answer = answer

    def generate(self, requests):
        from evalsuite.types import Response

        return [Response(text=self.answer(r.messages[0].content[0].text)) for r in requests]


def test_choice_binding_scores_letters_and_reports_which_ones_are_given():
    truth = dict(P.choice_prompts(40))

    oracle = P.choice_binding(_Letters(lambda q: f"{truth[q]}."), n=40, batch=7)
    assert oracle["accuracy"] == 1.0 and oracle["n"] == 40 and oracle["unparsed"] == 0.0
    assert sum(oracle[f"letter:{x}"] for x in "ABCD") == pytest.approx(1.0)
    share_b = sum(a == "B" for a in truth.values()) / 40
    assert oracle["letter:B"] == pytest.approx(share_b)

    stuck = P.choice_binding(_Letters(lambda q: "B"), n=40)
    assert stuck["accuracy"] == pytest.approx(share_b) and stuck["letter:B"] == 1.0 and stuck["letter:A"] == 0.0
    mute = P.choice_binding(_Letters(lambda q: "hmm"), n=40)
    assert mute["accuracy"] == 0.0 and mute["unparsed"] == 1.0


def test_video_open_asks_without_options_and_scores_the_option_text_per_subtype():
    import evalsuite.catalog  # noqa: F401
    from evalsuite.registry import TASKS

    task = TASKS.get("videoqa")(split="eval", n=6)
    samples = list(task.samples())
    req = P.video_open_request(task, samples[0])
    (message,) = req.messages
    assert [p.type for p in message.content] == ["video", "text"] and req.choices is None
    question = S.question_text(samples[0]).split("\n")[0]
    assert message.content[1].text == f"{question}\n{S.OPEN_INSTRUCTION}" and "A. " not in message.content[1].text
    oracle = P.video_open_scores(_Answering(samples, lambda s: f" {s.metadata['answer'].upper()} "), n=6, batch=4)
    assert oracle["accuracy"] == 1.0 and oracle["n"] == 6
    assert {k for k in oracle if k.startswith("subtype:")} == {f"subtype:{s.metadata['subtype']}" for s in samples}
    letters = P.video_open_scores(_Answering(samples, lambda s: s.target), n=6)  # a letter is not the content
    assert letters["accuracy"] == 0.0
