"""The trainer: train-split-only data, deterministic steps, answer-only loss, exact resume."""

from __future__ import annotations

import json
import random

import pytest
import torch

from evalsuite.model import train as T
from evalsuite.model.omni import build_omni
from evalsuite.tasks.common import seed_split

SMALL_POOLS = {"docqa": 8, "gui": 4, "videoqa": 6, "audioqa": 6, "docqa-wide": 12, "gui-wide": 6}


@pytest.fixture(scope="module")
def pools():
    model = build_omni("tiny")
    return T.Pools(model.config, SMALL_POOLS)


def test_every_pool_comes_from_the_train_split(pools):
    for name in ("docqa", "gui", "videoqa", "audioqa"):
        samples = pools.samples(name)
        assert samples, name
        for s in samples:
            assert seed_split(int(s.metadata["seed"])) == "train", (name, s.id)
            assert s.id.startswith("train-"), s.id


def test_every_source_draws_train_data_only(pools):
    """Whatever a step draws — task questions, text forms, transcriptions — is from train seeds."""
    eval_ids = set()
    import evalsuite.catalog  # noqa: F401
    from evalsuite.registry import TASKS

    for name in ("docqa", "gui"):
        for s in TASKS.get(name)(split="eval", n=8).samples():
            eval_ids.add(str(s.messages[0].content[0].path))
    for stage in T.STAGES:
        for step in range(3):
            for ex in T.step_examples(pools, 0, T.STAGE_NAMES.index(stage), step, stage, 10, 6):
                paths = {str(p.path) for m in ex.messages for p in m.content if p.type != "text"}
                assert not paths & eval_ids
                assert all("/eval/" not in p for p in paths), paths


def test_wide_pools_extend_the_narrow_ones_and_answer_like_their_task(pools):
    """A wide source draws the same task's train questions from a longer pool whose start is the
    narrow pool (so stages that drew from the narrow one are unchanged)."""
    for wide, name in T.WIDE_POOLS.items():
        narrow, more = pools.samples(name), pools.samples(wide)
        assert len(more) == SMALL_POOLS[wide] > len(narrow)
        assert [s.id for s in more[: len(narrow)]] == [s.id for s in narrow]
        ex = T.make_example(pools, wide, random.Random(3))
        assert ex.source == wide and ex.answer in {T._answer_text(name, x) for x in more}
        assert ex.media and ex.media[0].kind == "image"
        assert T.task_of(wide) == name and T.task_of(name) == name


def test_point_asks_for_each_scattered_widgets_centre_in_the_gui_answer_format(pools):
    """`point`: widgets scattered on an empty screen; every question names one of them and its
    answer is that widget's box centre in norm1000, as the gui task writes it."""
    from evalsuite.tasks.gen.gui import scatter_screen
    from evalsuite.tasks.scoring import parse_point, point_in_box

    for i in range(20):
        rng = random.Random(f"p{i}")
        ex = T.make_example(pools, "point", rng)
        rng = random.Random(f"p{i}")
        screen = scatter_screen(rng.randrange(2 ** 31), rng.randint(1, 6))
        assert ex.source == "point" and ex.media[0].kind == "image"
        w, h = ex.media[0].info["size"]
        assert (w, h) == screen.canvas.size
        turns = [(ex.messages[0].content[1].text, ex.answer)] + ex.more
        assert 1 <= len(turns) <= min(T.MAX_TURNS, len(screen.targets))
        by_name = {e.name: e for e in screen.targets}
        for question, answer in turns:
            assert question.startswith("Click: ") and question.endswith("Answer (x, y), 0-1000.")
            e = by_name[question[len("Click: "):].split("\n")[0]]
            x, y = parse_point(answer, "norm1000", w, h)
            assert point_in_box(x, y, e.box)
        assert len({q for q, _ in turns}) == len(turns)


def test_choose_asks_text_only_questions_whose_letter_marks_the_option_they_name(pools):
    """`choose`: videoqa's prompt format, the question naming one option outright, the answer its
    letter, several such turns per example and the examples a pure function of the rng."""
    import random

    from evalsuite.tasks.scoring import extract_choice

    letters = []
    for i in range(12):
        ex = T.make_example(pools, "choose", random.Random(i))
        again = T.make_example(pools, "choose", random.Random(i))
        assert (ex.answer, ex.more) == (again.answer, again.more)
        assert ex.source == "choose" and ex.media == [] and len(ex.more) == T.MAX_TURNS - 1
        assert [p.type for m in ex.messages for p in m.content] == ["text"]
        for question, answer in [(ex.messages[0].content[0].text, ex.answer), *ex.more]:
            head, *options, tail = question.split("\n")
            assert tail == "Answer with the option's letter." and len(options) == 4
            named = [o[0] for o in options if o[3:] in head]
            assert named == [answer] and extract_choice(answer) == answer
            letters.append(answer)
    assert set(letters) == set("ABCD")


def test_scatter_screen_is_deterministic_and_its_widgets_do_not_overlap():
    from evalsuite.tasks.gen.gui import scatter_screen

    for seed in range(30):
        s = scatter_screen(seed, 6)
        w, h = s.canvas.size
        assert 1 <= len(s.targets) <= 6 and s.targets == s.elements
        assert len({e.name for e in s.targets}) == len(s.targets)
        for i, a in enumerate(s.targets):
            assert 0 <= a.box[0] < a.box[2] <= w and 0 <= a.box[1] < a.box[3] <= h
            for b in s.targets[i + 1:]:
                assert a.box[2] <= b.box[0] or b.box[2] <= a.box[0] or a.box[3] <= b.box[1] or b.box[3] <= a.box[1]
        again = scatter_screen(seed, 6)
        assert [e.box for e in again.targets] == [e.box for e in s.targets]
        assert again.canvas.render().tobytes() == s.canvas.render().tobytes()
    with pytest.raises(ValueError, match="widgets >= 1"):
        scatter_screen(0, 0)


def test_char_line_is_random_characters_rendered_and_read_back(pools):
    """`char-line` renders 1-3 "words" of 2-7 characters from `CHAR_LINE_CHARS` (no vocabulary to
    guess from) on a small canvas, and its answer is exactly that text."""
    texts = []
    for i in range(40):
        ex = T.make_example(pools, "char-line", random.Random(f"c{i}"))
        assert ex.source == "char-line" and ex.media[0].kind == "image"
        words = ex.answer.split(" ")
        assert 1 <= len(words) <= 3 and all(2 <= len(w) <= 7 for w in words), ex.answer
        assert set(ex.answer) <= set(T.CHAR_LINE_CHARS) | {" "}
        w, h = ex.media[0].info["size"]
        assert h < 40  # a line's own canvas, not a page
        texts.append(ex.answer)
    assert len(set(texts)) == len(texts)
    assert not set(" ".join(texts).split()) & set(T._vocabulary())
    again = T.make_example(pools, "char-line", random.Random("c0"))
    assert again.answer == texts[0]


def test_steps_are_a_pure_function_of_seed_stage_and_step(pools):
    a = T.step_examples(pools, 0, 1, 7, "image", 100, 8)
    b = T.step_examples(pools, 0, 1, 7, "image", 100, 8)
    c = T.step_examples(pools, 0, 1, 8, "image", 100, 8)
    key = lambda exs: [(e.source, e.answer) for e in exs]  # noqa: E731
    assert key(a) == key(b)
    assert key(a) != key(c)
    assert all(torch.equal(x.pixels, y.pixels) for ea, eb in zip(a, b) for x, y in zip(ea.media, eb.media))


def test_mixture_moves_from_bridges_to_tasks():
    early, late = T.stage_weights("image", 0.0), T.stage_weights("image", 1.0)
    assert early["line"] == 6 and late["line"] == 0.5
    assert early["docqa"] == 1 and late["docqa"] == 5
    mid = T.stage_weights("image", 0.5)
    assert mid["line"] == pytest.approx(3.25)


def test_labels_cover_exactly_the_answer_and_its_end(pools):
    model = build_omni("tiny")
    ex = T.line_example(pools, random.Random(3), on_page=False)
    embeds, labels = T.encode_batch(model, [ex, T.text_example(pools, "docqa", random.Random(1))])
    tok = model.tokenizer
    row = labels[0][labels[0] >= 0].tolist()
    assert row == tok.encode(ex.answer) + [tok.end_id]
    assert embeds.shape[:2] == labels.shape and embeds.shape[-1] == model.config.backbone.hidden_size
    # the image placeholders were replaced by encoder outputs, not the placeholder embedding
    ids = tok.apply_chat(ex.messages, media_tokens=lambda part: ex.media[0].n_tokens)
    span = tok.media_spans(ids)[0]
    placeholder = model.lm.backbone.embeddings.weight[tok.placeholder_ids["image"]]
    assert not torch.allclose(embeds[0, span.start], placeholder)
    loss, n = T.batch_loss(model, [ex])
    assert n == len(ex.answer) + 1 and torch.isfinite(loss)


def test_lr_schedule_warms_up_holds_and_decays():
    assert T.lr_at(0, 1000, 1e-3) == pytest.approx(1e-3 / 50)
    assert T.lr_at(100, 1000, 1e-3) == 1e-3
    assert T.lr_at(749, 1000, 1e-3) == 1e-3
    assert T.lr_at(999, 1000, 1e-3) == pytest.approx(1e-3 * (1 - 0.9 * 249 / 250))


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(tmp_path):
    torch.set_num_threads(1)
    args = dict(stages=("text", "image"), steps={"text": 3, "image": 3, "video": 1, "audio": 1}, batch=2,
                eval_n=0, save_every=100, pool_sizes=SMALL_POOLS)
    full = T.TrainArgs(out=str(tmp_path / "full"), **args)
    T.train(full, progress=False)
    part = T.TrainArgs(out=str(tmp_path / "part"), **args)
    T.train(part, progress=False, stop_after=4)  # stops inside the image stage
    state = torch.load(tmp_path / "part" / T.STATE_FILE, weights_only=False)
    assert (state["stage"], state["step"]) == (1, 1)
    T.train(part, progress=False)
    from evalsuite.model import weights

    a = weights.load(tmp_path / "full").state_dict()
    b = weights.load(tmp_path / "part").state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert weights.weights_sha256(tmp_path / "full") == weights.weights_sha256(tmp_path / "part")
    curve = [c["global_step"] for c in json.loads((tmp_path / "part" / T.HISTORY_FILE).read_text())["curve"]]
    assert curve == [3, 6]


def test_resume_refuses_different_settings(tmp_path):
    args = T.TrainArgs(out=str(tmp_path), stages=("text",), steps={"text": 1, "image": 1, "video": 1, "audio": 1},
                       batch=1, eval_n=0, pool_sizes=SMALL_POOLS)
    T.train(args, progress=False)
    other = T.TrainArgs(out=str(tmp_path), stages=("text",), steps={"text": 1, "image": 1, "video": 1, "audio": 1},
                        batch=2, eval_n=0, pool_sizes=SMALL_POOLS)
    with pytest.raises(SystemExit, match="different settings"):
        T.train(other, progress=False)


def test_cli_parses_steps_and_rejects_unknown_stage():
    args, stop = T.parse(["--steps", "text=5,image=7", "--steps-scale", "2", "--stop-after", "3", "--eval-n", "0"])
    assert args.steps["text"] == 10 and args.steps["image"] == 14 and stop == 3
    with pytest.raises(SystemExit):
        T.parse(["--steps", "pictures=5"])


def test_resume_may_change_steps_of_stages_not_begun(tmp_path):
    steps = {"text": 1, "image": 1, "video": 1, "audio": 1}
    args = T.TrainArgs(out=str(tmp_path), stages=("text", "image"), steps=steps, batch=1, eval_n=0,
                       pool_sizes=SMALL_POOLS)
    T.train(args, progress=False, stop_after=1)  # text done, image not begun
    later = T.TrainArgs(out=str(tmp_path), stages=("text", "image"), steps=dict(steps, image=2), batch=1,
                        eval_n=0, pool_sizes=SMALL_POOLS)
    assert T.load_state(tmp_path, later)["stage"] == 1
    earlier = T.TrainArgs(out=str(tmp_path), stages=("text", "image"), steps=dict(steps, text=2), batch=1,
                          eval_n=0, pool_sizes=SMALL_POOLS)
    with pytest.raises(SystemExit, match="different settings"):
        T.load_state(tmp_path, earlier)


def test_followup_questions_share_the_media_and_each_answer_carries_loss(pools):
    model = build_omni("tiny")
    tok = model.tokenizer
    ex = T.task_example(pools, "docqa", random.Random(5))
    assert ex.more, "a train document has several questions"
    first = next(x for x in pools.samples("docqa") if list(x.messages) == ex.messages)
    siblings = {(T._question_text(x), T._answer_text("docqa", x)) for x in pools.samples("docqa")
                if T._media_key(x) == T._media_key(first) and x.id != first.id}
    assert set(ex.more) <= siblings
    ids, labels = T.example_ids(tok, ex)
    supervised = [ids[k + 1] for k, v in enumerate(labels) if v >= 0]
    expected = tok.encode(ex.answer) + [tok.end_id]
    for _, a in ex.more:
        expected += tok.encode(a) + [tok.end_id]
    assert supervised == expected
    assert all(labels[k] == ids[k + 1] for k, v in enumerate(labels) if v >= 0)


def test_length_groups_bound_padding_and_cover_every_index():
    lengths = [1140, 200, 210, 30, 820, 215, 28, 300]
    groups = T.length_groups(lengths)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        assert min(lengths[i] for i in g) >= 0.7 * max(lengths[i] for i in g)
    assert groups == [[0, 4], [7, 5, 2], [1], [3, 6]]


def test_bucketed_loss_and_gradients_equal_one_padded_batch(pools):
    torch.manual_seed(0)
    model = build_omni("tiny").float()
    rng = random.Random(2)
    exs = [T.line_example(pools, rng, on_page=False), T.text_example(pools, "gui", rng),
           T.task_example(pools, "docqa", rng), T.line_example(pools, rng, on_page=True)]
    grads = []
    for bucket in (False, True):
        model.zero_grad()
        loss, n = T.batch_loss(model, exs, bucket=bucket)
        loss.backward()
        grads.append((loss.item(), n, [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (l0, n0, g0), (l1, n1, g1) = grads
    assert n0 == n1 and l1 == pytest.approx(l0, rel=1e-5)
    assert len(g0) == len(g1)
    for a, b in zip(g0, g1):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_a_finished_run_extends_with_more_stages_but_not_with_other_ones(tmp_path):
    steps = {"text": 1, "image": 1, "video": 1, "audio": 1, "recall": 1}
    common = dict(out=str(tmp_path), steps=steps, batch=1, eval_n=0, pool_sizes=SMALL_POOLS)
    T.train(T.TrainArgs(stages=("text",), **common), progress=False)
    longer = T.TrainArgs(stages=("text", "recall"), **common)
    assert T.load_state(tmp_path, longer)["stage"] == 1  # continues after text
    with pytest.raises(SystemExit, match="different settings"):  # the stage that ran may not change
        T.load_state(tmp_path, T.TrainArgs(stages=("image", "recall"), **common))
    history = T.train(longer, progress=False)
    assert history["done"] == ["text", "recall"] and tuple(history["args"]["stages"]) == ("text", "recall")
    assert [c["stage"] for c in history["curve"]] == ["text", "recall"]


def test_hear_bridge_is_a_train_clip_with_words_and_its_transcript(pools):
    """The audio encoder's own target: a clip with words (never a tone-only clip) and its transcript."""
    by_path = {str(s.messages[0].content[0].path): s for s in pools.samples("audioqa")}
    for i in range(6):
        ex = T.make_example(pools, "hear", random.Random(i))
        (part,) = [p for m in ex.messages for p in m.content if p.type == "audio"]
        assert "/train/" in str(part.path) and [m.kind for m in ex.media] == ["audio"]
        assert ex.answer == by_path[str(part.path)].metadata["text_form"].strip() != ""


def test_ctc_loss_reads_the_encoder_before_its_projector_and_matches_a_direct_computation(pools):
    model = build_omni("tiny")
    head = T.ctc_head(model, "audio", seed=0, stage_index=6)
    assert torch.equal(head.weight, T.ctc_head(model, "audio", seed=0, stage_index=6).weight)  # seeded
    examples = [T.make_example(pools, "hear", random.Random(i)) for i in range(3)]
    loss, n = T.ctc_batch_loss(model, head, examples)
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


@pytest.mark.slow
def test_encoder_stage_trains_only_the_reinitialised_encoder_and_align_keeps_it_frozen(tmp_path):
    torch.set_num_threads(1)
    steps = {"text": 1, "audio-ctc": 2, "audio-align": 2}
    common = dict(out=str(tmp_path), steps=steps, batch=2, eval_n=0, pool_sizes=SMALL_POOLS, save_every=100)
    T.train(T.TrainArgs(stages=("text",), **common), progress=False)
    from evalsuite.model import weights

    before = weights.load(tmp_path).state_dict()
    fresh = build_omni("tiny", seed=0).state_dict()
    T.train(T.TrainArgs(stages=("text", "audio-ctc"), **common), progress=False)
    after_ctc = weights.load(tmp_path).state_dict()
    changed = {k for k in before if not torch.equal(before[k], after_ctc[k])}
    assert changed and all(k.startswith(("audio.subsample.", "audio.blocks.")) for k in changed)
    assert not torch.equal(after_ctc["audio.blocks.0.ff1.net.1.weight"], before["audio.blocks.0.ff1.net.1.weight"])
    # it started from the fresh encoder, not the text-stage one (two small steps stay close to it)
    k = "audio.subsample.out.weight"
    assert (after_ctc[k] - fresh[k]).abs().max() < 0.05
    T.train(T.TrainArgs(stages=("text", "audio-ctc", "audio-align"), **common), progress=False)
    after_align = weights.load(tmp_path).state_dict()
    assert all(torch.equal(after_align[k], after_ctc[k]) for k in after_ctc if k.startswith(("audio.subsample.", "audio.blocks.")))
    assert not torch.equal(after_align["audio.projector.net.1.weight"], after_ctc["audio.projector.net.1.weight"])
    state = torch.load(tmp_path / T.STATE_FILE, weights_only=False)
    assert state["aux"] is None  # the CTC head is gone once its stage ended


def test_image_ctc_reads_the_columns_of_the_vision_encoder_before_its_merge_and_projector(pools):
    model = build_omni("tiny")
    head = T.ctc_head(model, "image", seed=0, stage_index=8)
    c = model.tokenizer.vocab_size + 1
    assert head.out_features == T.IMAGE_CTC_FRAMES * c and head.in_features == model.vision.cfg.width
    examples = [T.make_example(pools, "line", random.Random(i)) for i in range(3)]
    logp, lengths = T.column_ctc_logits(model, head, [e.media[0].pixels for e in examples])
    grids = [e.media[0].grid for e in examples]
    assert lengths.tolist() == [T.IMAGE_CTC_FRAMES * gw for _, gw in grids]
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
    loss, n = T.ctc_batch_loss(model, head, examples, "image")
    assert n == sum(len(e.answer.encode()) for e in examples) and loss.item() > 0
    loss.backward()
    assert model.vision.blocks[0].attn.qkv.weight.grad is not None
    assert all(p.grad is None for p in model.vision.projector.parameters())
    assert all(p.grad is None for p in model.lm.parameters())


@pytest.mark.slow
def test_image_ctc_learns_to_read_and_image_align_keeps_the_vision_encoder_frozen(tmp_path):
    """A few hundred steps of image-ctc on rendered lines lower its loss well below the start (the
    column CTC has something to learn), and image-align leaves the encoder as image-ctc left it."""
    torch.set_num_threads(1)
    steps = {"text": 1, "image-ctc": 2, "image-align": 2}
    common = dict(out=str(tmp_path), steps=steps, batch=2, eval_n=0, pool_sizes=SMALL_POOLS, save_every=100)
    T.train(T.TrainArgs(stages=("text",), **common), progress=False)
    from evalsuite.model import weights

    before = weights.load(tmp_path).state_dict()
    T.train(T.TrainArgs(stages=("text", "image-ctc"), **common), progress=False)
    after_ctc = weights.load(tmp_path).state_dict()
    changed = {k for k in before if not torch.equal(before[k], after_ctc[k])}
    # (the video encoder shares the vision transformer: the state dict lists it under both names)
    assert changed and all(k.removeprefix("video.").startswith(T.VISION_ENCODER) for k in changed)
    T.train(T.TrainArgs(stages=("text", "image-ctc", "image-align"), **common), progress=False)
    after_align = weights.load(tmp_path).state_dict()
    assert all(torch.equal(after_align[k], after_ctc[k]) for k in after_ctc
               if k.removeprefix("video.").startswith(T.VISION_ENCODER + T.AUDIO_ENCODER))
    assert not torch.equal(after_align["vision.projector.net.1.weight"], after_ctc["vision.projector.net.1.weight"])


@pytest.mark.slow
def test_continued_encoder_stage_fits_its_head_first_then_moves_the_encoder_it_was_given(tmp_path, monkeypatch):
    """image-ctc-chars keeps the trained encoder (no re-initialisation) and leaves it untouched for
    its `HEAD_WARMUP` steps, while the new head learns; after them only the encoder moves."""
    torch.set_num_threads(1)
    monkeypatch.setitem(T.HEAD_WARMUP, "image-ctc-chars", 2)
    from evalsuite.model import weights

    def run(out, n):
        common = dict(out=str(out), steps={"text": 1, "image-ctc-chars": n}, batch=2, eval_n=0,
                      pool_sizes=SMALL_POOLS, save_every=100)
        T.train(T.TrainArgs(stages=("text",), **common), progress=False)
        before = weights.load(out).state_dict()
        # a re-initialising stage would copy these other values in: none may show up
        with monkeypatch.context() as m:
            m.setattr(T, "build_omni", lambda *a, seed=0, **kw: build_omni(*a, seed=seed + 123, **kw))
            T.train(T.TrainArgs(stages=("text", "image-ctc-chars"), **common), progress=False)
        return before, weights.load(out).state_dict()

    before, after = run(tmp_path / "a", 2)
    assert all(torch.equal(before[k], after[k]) for k in before)
    before, after = run(tmp_path / "b", 4)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.removeprefix("video.").startswith(T.VISION_ENCODER) for k in changed)
    k = "vision.blocks.0.attn.qkv.weight"
    assert 0 < (after[k] - before[k]).abs().max() < 0.01


@pytest.mark.slow
def test_late_parameters_stay_at_their_start_until_their_stage_which_trains_them(tmp_path):
    """Every stage before `locate` keeps the image tokens' position table at its zero start, every
    stage before `widen` the projector's second branch (so a run from scratch takes the path the
    committed checkpoint took); their stages train them, the projector and the LM, and leave the
    vision and audio encoders as they were."""
    torch.set_num_threads(1)
    from evalsuite.model import weights

    for late, prefixes in T.LATE_PARAMS.items():
        assert all(set(prefixes) <= set(T.FROZEN[s]) for s in T.STAGE_NAMES[:T.STAGE_NAMES.index(late)])
        assert not set(prefixes) & set(T.FROZEN[late])
    steps = {"text": 1, "image-align": 2, "locate": 2, "widen": 2}
    common = dict(out=str(tmp_path), steps=steps, batch=2, eval_n=0, pool_sizes=SMALL_POOLS, save_every=100)
    fresh = build_omni("tiny", seed=0).state_dict()
    states = {}
    for n in (2, 3, 4):
        T.train(T.TrainArgs(stages=("text", "image-align", "locate", "widen")[:n], **common), progress=False)
        states[n] = weights.load(tmp_path).state_dict()
    extra = [k for k in fresh if k.startswith("vision.projector.extra.")]
    assert extra and torch.count_nonzero(fresh["vision.projector.extra.2.weight"]) == 0
    assert torch.count_nonzero(states[2]["vision.token_pos"]) == 0
    assert torch.count_nonzero(states[3]["vision.token_pos"]) > 0
    assert all(torch.equal(states[3][k], fresh[k]) for k in extra)  # still as built
    assert all(not torch.equal(states[4][k], fresh[k]) for k in extra)
    for a, b in ((2, 3), (3, 4)):
        assert not torch.equal(states[b]["vision.projector.net.1.weight"], states[a]["vision.projector.net.1.weight"])
        assert all(torch.equal(states[b][k], states[a][k]) for k in states[a]
                   if k.removeprefix("video.").startswith(T.VISION_ENCODER + T.AUDIO_ENCODER))


def test_image_ctc_loss_falls_on_rendered_lines(pools):
    torch.manual_seed(0)
    model = build_omni("tiny", seed=0)
    head = T.ctc_head(model, "image", seed=0, stage_index=8)
    params = [p for n, p in model.named_parameters() if n.startswith(T.VISION_ENCODER)] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=3e-3)
    fixed = [T.make_example(pools, "line", random.Random(i)) for i in range(8)]
    first = T.ctc_batch_loss(model, head, fixed, "image")[0].item()
    for _ in range(60):  # fit eight lines
        loss, _ = T.ctc_batch_loss(model, head, fixed, "image")
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_bench_table_shows_each_stage_and_its_sample_count_when_counts_differ():
    def ev(stage, step, docqa, n):
        table = {t: {"primary": "accuracy", "accuracy": 0.25} for t in T.EVAL_TASKS}
        table["docqa"]["accuracy"] = docqa
        return {"stage": stage, "global_step": step, "table": table, "n": n, "samples_per_s": 12.0}

    same = T.bench_table({"evals": [ev("text", 10, 0.1, 60), ev("image", 30, 0.2, 60)]})
    assert same.splitlines()[0] == "| after stage | step | docqa | gui | videoqa | audioqa | samples/s |"
    assert same.splitlines()[3] == "| image | 30 | 0.200 | 0.250 | 0.250 | 0.250 | 12.0 |"
    mixed = T.bench_table({"evals": [ev("text", 10, 0.1, 60), ev("read", 50, 0.225, 200)]}).splitlines()
    assert mixed[0].startswith("| after stage | step | n | docqa |")
    assert mixed[2].startswith("| text | 10 | 60 | 0.100 |")
    assert mixed[3] == "| read | 50 | 200 | 0.225 | 0.250 | 0.250 | 0.250 | 12.0 |"
    assert len({line.count("|") for line in mixed}) == 1
