"""Training sources: train-split data only, every source's examples, deterministic steps."""

from __future__ import annotations

import random

import pytest
import torch

from evalsuite.model.omni import build_omni
from evalsuite.tasks.common import seed_split
from evalsuite.training import curriculum as C
from evalsuite.training import losses as L
from evalsuite.training import sources as S

SMALL_POOLS = {"docqa": 8, "gui": 4, "videoqa": 6, "audioqa": 6, "docqa-wide": 12, "gui-wide": 6}  # as conftest's pools


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
    for stage in C.STAGES:
        for step in range(3):
            for ex in S.step_examples(pools, 0, C.STAGE_NAMES.index(stage), step, stage, 10, 6):
                paths = {str(p.path) for m in ex.messages for p in m.content if p.type != "text"}
                assert not paths & eval_ids
                assert all("/eval/" not in p for p in paths), paths


def test_wide_pools_extend_the_narrow_ones_and_answer_like_their_task(pools):
    """A wide source draws the same task's train questions from a longer pool whose start is the
    narrow pool (so stages that drew from the narrow one are unchanged)."""
    for wide, name in S.WIDE_POOLS.items():
        narrow, more = pools.samples(name), pools.samples(wide)
        assert len(more) == SMALL_POOLS[wide] > len(narrow)
        assert [s.id for s in more[: len(narrow)]] == [s.id for s in narrow]
        ex = S.make_example(pools, wide, random.Random(3))
        assert ex.source == wide and ex.answer in {S.answer_text(name, x) for x in more}
        assert ex.media and ex.media[0].kind == "image"
        assert S.task_of(wide) == name and S.task_of(name) == name


def test_point_asks_for_each_scattered_widgets_centre_in_the_gui_answer_format(pools):
    """`point`: widgets scattered on an empty screen; every question names one of them and its
    answer is that widget's box centre in norm1000, as the gui task writes it."""
    from evalsuite.tasks.gen.gui import scatter_screen
    from evalsuite.tasks.scoring import parse_point, point_in_box

    for i in range(20):
        rng = random.Random(f"p{i}")
        ex = S.make_example(pools, "point", rng)
        rng = random.Random(f"p{i}")
        screen = scatter_screen(rng.randrange(2 ** 31), rng.randint(1, 6))
        assert ex.source == "point" and ex.media[0].kind == "image"
        w, h = ex.media[0].info["size"]
        assert (w, h) == screen.canvas.size
        turns = [(ex.messages[0].content[1].text, ex.answer)] + ex.more
        assert 1 <= len(turns) <= min(S.MAX_TURNS, len(screen.targets))
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
    from evalsuite.tasks.scoring import extract_choice

    letters = []
    for i in range(12):
        ex = S.make_example(pools, "choose", random.Random(i))
        again = S.make_example(pools, "choose", random.Random(i))
        assert (ex.answer, ex.more) == (again.answer, again.more)
        assert ex.source == "choose" and ex.media == [] and len(ex.more) == S.MAX_TURNS - 1
        assert [p.type for m in ex.messages for p in m.content] == ["text"]
        for question, answer in [(ex.messages[0].content[0].text, ex.answer), *ex.more]:
            head, *options, tail = question.split("\n")
            assert tail == "Answer with the option's letter." and len(options) == 4
            named = [o[0] for o in options if o[3:] in head]
            assert named == [answer] and extract_choice(answer) == answer
            letters.append(answer)
    assert set(letters) == set("ABCD")


def test_choose_say_answers_the_same_questions_with_the_option_text_then_its_letter(pools):
    """`choose-say` asks `choose`'s questions (same rng, same prompts) and answers each with the named
    option's text, then "Answer: <letter>", which videoqa's extractor reads as that letter."""
    from evalsuite.tasks.scoring import extract_choice

    for i in range(12):
        plain = S.make_example(pools, "choose", random.Random(i))
        said = S.make_example(pools, "choose-say", random.Random(i))
        assert said.source == "choose-say" and said.media == [] and said.messages == plain.messages
        for (question, letter), (q2, answer) in zip([(plain.messages[0].content[0].text, plain.answer), *plain.more],
                                                    [(said.messages[0].content[0].text, said.answer), *said.more]):
            options = question.split("\n")[1:5]
            text = options["ABCD".index(letter)][3:]
            assert q2 == question and answer == f"{text}. Answer: {letter}" == S.say_answer(text, letter)
            assert extract_choice(answer, options) == letter


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
        ex = S.make_example(pools, "char-line", random.Random(f"c{i}"))
        assert ex.source == "char-line" and ex.media[0].kind == "image"
        words = ex.answer.split(" ")
        assert 1 <= len(words) <= 3 and all(2 <= len(w) <= 7 for w in words), ex.answer
        assert set(ex.answer) <= set(S.CHAR_LINE_CHARS) | {" "}
        w, h = ex.media[0].info["size"]
        assert h < 40  # a line's own canvas, not a page
        texts.append(ex.answer)
    assert len(set(texts)) == len(texts)
    assert not set(" ".join(texts).split()) & set(S.vocabulary())
    again = S.make_example(pools, "char-line", random.Random("c0"))
    assert again.answer == texts[0]


def test_steps_are_a_pure_function_of_seed_stage_and_step(pools):
    a = S.step_examples(pools, 0, 1, 7, "image", 100, 8)
    b = S.step_examples(pools, 0, 1, 7, "image", 100, 8)
    c = S.step_examples(pools, 0, 1, 8, "image", 100, 8)
    key = lambda exs: [(e.source, e.answer) for e in exs]  # noqa: E731
    assert key(a) == key(b)
    assert key(a) != key(c)
    assert all(torch.equal(x.pixels, y.pixels) for ea, eb in zip(a, b) for x, y in zip(ea.media, eb.media))


def test_followup_questions_share_the_media_and_each_answer_carries_loss(pools):
    model = build_omni("tiny")
    tok = model.tokenizer
    ex = S.task_example(pools, "docqa", random.Random(5))
    assert ex.more, "a train document has several questions"
    first = next(x for x in pools.samples("docqa") if list(x.messages) == ex.messages)
    siblings = {(S.question_text(x), S.answer_text("docqa", x)) for x in pools.samples("docqa")
                if S.media_key(x) == S.media_key(first) and x.id != first.id}
    assert set(ex.more) <= siblings
    ids, labels = L.example_ids(tok, ex)
    supervised = [ids[k + 1] for k, v in enumerate(labels) if v >= 0]
    expected = tok.encode(ex.answer) + [tok.end_id]
    for _, a in ex.more:
        expected += tok.encode(a) + [tok.end_id]
    assert supervised == expected
    assert all(labels[k] == ids[k + 1] for k, v in enumerate(labels) if v >= 0)


def test_hear_bridge_is_a_train_clip_with_words_and_its_transcript(pools):
    """The audio encoder's own target: a clip with words (never a tone-only clip) and its transcript."""
    by_path = {str(s.messages[0].content[0].path): s for s in pools.samples("audioqa")}
    for i in range(6):
        ex = S.make_example(pools, "hear", random.Random(i))
        (part,) = [p for m in ex.messages for p in m.content if p.type == "audio"]
        assert "/train/" in str(part.path) and [m.kind for m in ex.media] == ["audio"]
        assert ex.answer == by_path[str(part.path)].metadata["text_form"].strip() != ""


@pytest.mark.slow
def test_a_feed_with_worker_processes_gives_exactly_the_examples_of_step_examples(pools):
    """Made in two spawned processes, ahead of time, the examples of each step (fresh sources, pool
    sources and text alike) are those `step_examples` makes in the loop's own process."""
    import dataclasses as dc

    from evalsuite.training.feed import StepFeed

    stage = C.Stage("mixed", 3, {"videoqa-fresh": (1, 1), "docqa": (1, 1), "video-dense": (1, 1), "choose": (1, 1)})
    with pytest.MonkeyPatch.context() as m:
        m.setitem(C.V2_ONLY, "mixed", stage)
        with StepFeed(pools, seed=0, batch=4, workers=2) as feed:
            for step in range(3):
                got = feed.step(19, step, "mixed", 3)
                want = S.step_examples(pools, 0, 19, step, "mixed", 3, 4)
                assert [(e.source, e.answer, e.more) for e in got] == [(e.source, e.answer, e.more) for e in want]
                for a, b in zip(got, want):
                    assert [x.path for x in a.media] == [x.path for x in b.media]
                    assert all(torch.equal(x.pixels, y.pixels) for x, y in zip(a.media, b.media))
                    assert (a.targets is None) == (b.targets is None)
                    assert a.targets is None or torch.equal(a.targets, b.targets)
                    assert [dc.replace(x, pixels=None) for x in a.media] == [dc.replace(x, pixels=None) for x in b.media]
