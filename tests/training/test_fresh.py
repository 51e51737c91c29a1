"""Fresh sources: a new train item per example, drawn in memory, equal to what the file path gives."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from evalsuite.model.omni import load_media
from evalsuite.tasks.common import seed_split, split_seed
from evalsuite.training import curriculum as C
from evalsuite.training import sources as S


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def seed_of(ex: S.Example) -> int:
    return int(ex.media[0].path.rsplit(":", 1)[1].rstrip(">"))


def test_the_committed_curriculum_draws_from_no_fresh_source():
    """Fresh sources are opt-in: `make train` keeps drawing what the committed run drew."""
    for stage in C.CURRICULUM:
        assert not set(stage.mix) & set(S.FRESH_SOURCES), stage.name


@pytest.mark.parametrize("source", S.FRESH_SOURCES)
def test_fresh_sources_draw_new_train_items_and_are_pure_functions_of_their_rng(pools, source):
    examples = [S.make_example(pools, source, random.Random(f"f{i}")) for i in range(4)]
    seeds = [seed_of(ex) for ex in examples]
    assert len(set(seeds)) == 4 and {seed_split(s) for s in seeds} == {"train"}
    assert all(ex.source == source and len(ex.media) == 1 for ex in examples)
    again = S.make_example(pools, source, random.Random("f0"))
    assert (again.answer, again.more, seed_of(again)) == (examples[0].answer, examples[0].more, seeds[0])
    assert torch.equal(again.media[0].pixels, examples[0].media[0].pixels)


def test_videoqa_open_asks_the_fresh_video_questions_without_options_and_answers_with_the_option_text(
        pools, monkeypatch):
    """`videoqa-open` is `videoqa-fresh`'s video and questions: no lettered options in the prompt, the
    right option's own text as the answer."""
    from evalsuite.tasks.gen.video import build_video
    from evalsuite.tasks.videoqa import BUCKET_CYCLE

    index = 11
    monkeypatch.setattr(S, "fresh_seed", lambda task, rng: (index, split_seed(task, "train", index)))
    ex = S.make_example(pools, "videoqa-open", random.Random(0))
    letters = S.make_example(pools, "videoqa-fresh", random.Random(0))
    spec = build_video(split_seed("videoqa", "train", index), BUCKET_CYCLE[index % len(BUCKET_CYCLE)])
    turns = {(f"{q.text}\n{S.OPEN_INSTRUCTION}", q.options[q.answer]) for q in spec.questions}
    asked = [(ex.messages[0].content[1].text, ex.answer)] + ex.more
    assert len(asked) == S.MAX_TURNS and set(asked) <= turns
    assert not any("A. " in q or "letter" in q for q, _ in asked)
    assert torch.equal(ex.media[0].pixels, letters.media[0].pixels)


def test_videoqa_say_asks_the_lettered_questions_and_answers_content_then_letter(pools, monkeypatch):
    """`videoqa-say` is `videoqa-fresh` (same video, same lettered prompts) with each answer the right
    option's text and then its letter; the task's scorer counts every such answer right."""
    from evalsuite.tasks.gen.video import build_video
    from evalsuite.tasks.videoqa import BUCKET_CYCLE, LETTERS, prompt
    from evalsuite.tasks.scoring import extract_choice

    index = 7
    monkeypatch.setattr(S, "fresh_seed", lambda task, rng: (index, split_seed(task, "train", index)))
    said = S.make_example(pools, "videoqa-say", random.Random(0))
    plain = S.make_example(pools, "videoqa-fresh", random.Random(0))
    spec = build_video(split_seed("videoqa", "train", index), BUCKET_CYCLE[index % len(BUCKET_CYCLE)])
    want = {prompt(q.text, q.options): (q.options[q.answer], LETTERS[q.answer], q.options) for q in spec.questions}
    asked = [(said.messages[0].content[1].text, said.answer)] + said.more
    assert [q for q, _ in asked] == [plain.messages[0].content[1].text] + [q for q, _ in plain.more]
    for question, answer in asked:
        text, letter, options = want[question]
        assert answer == f"{text}. Answer: {letter}"
        assert extract_choice(answer, [f"{x}. {o}" for x, o in zip(LETTERS, options)]) == letter
    assert said.source == "videoqa-say" and torch.equal(said.media[0].pixels, plain.media[0].pixels)


def test_repeated_frames_are_preprocessed_exactly_as_every_frame_alone(pools):
    from evalsuite.model.video import preprocess_frames
    from evalsuite.tasks.gen.video import build_video, draw_sampled_frames

    for seed, bucket, n in ((3, "short", 32), (4, "medium", 32), (5, "short", 7)):
        frames, _ = draw_sampled_frames(build_video(seed, bucket), 0.5, n)
        fast, grid = S.preprocess_repeated_frames(frames, pools.cfg.video)
        slow, grid2 = preprocess_frames(frames, pools.cfg.video)
        assert grid == grid2 and torch.equal(fast, slow)


def test_videoqa_fresh_is_what_loading_the_rendered_mp4_gives_up_to_codec_loss(pools, cache, monkeypatch):
    """The video's questions and lettered answers are the task's; its frames, stamps, grid and token
    count are those `load_media` makes of the video's file; the pixels differ by the codec's loss."""
    from evalsuite.tasks.gen.video import build_video, render_video
    from evalsuite.tasks.videoqa import LETTERS, BUCKET_CYCLE, prompt

    index = 7
    monkeypatch.setattr(S, "fresh_seed", lambda task, rng: (index, split_seed(task, "train", index)))
    ex = S.make_example(pools, "videoqa-fresh", random.Random(0))
    spec = build_video(split_seed("videoqa", "train", index), BUCKET_CYCLE[index % len(BUCKET_CYCLE)])
    turns = {(prompt(q.text, q.options), LETTERS[q.answer]) for q in spec.questions}
    asked = [(ex.messages[0].content[1].text, ex.answer)] + ex.more
    assert len(asked) == S.MAX_TURNS and set(asked) <= turns and len(set(asked)) == len(asked)

    render_video(spec, cache / "v.mp4")
    msgs = [S.user(S.ContentPart.of_media("video", str(cache / "v.mp4")), "q")]
    (ref,) = load_media(msgs, pools.cfg, pools.task("videoqa").media_settings())
    got = ex.media[0]
    assert (got.kind, got.n_tokens, got.grid) == (ref.kind, ref.n_tokens, ref.grid)
    assert got.info == ref.info and got.pixels.shape == ref.pixels.shape
    # normalized pixels: std ~0.27 per grey level / 255; codec loss is a few grey levels
    diff = (got.pixels - ref.pixels).abs() * 0.27
    assert diff.mean() < 3 / 255 and diff.reshape(len(diff), -1).mean(1).max() < 6 / 255


@pytest.mark.parametrize("task", ["docqa", "gui"])
def test_image_fresh_sources_equal_the_task_sample_read_from_its_png(pools, cache, monkeypatch, task):
    """docqa-fresh / gui-fresh on the item of train index 0 ask the task's own questions with its
    answers, and their in-memory image is the task's PNG to the last pixel."""
    monkeypatch.setattr(S, "fresh_seed", lambda name, rng: (0, split_seed(name, "train", 0)))
    import evalsuite.catalog  # noqa: F401
    from evalsuite.registry import TASKS

    t = TASKS.get(task)(split="train", n=40)
    first = [s for s in t.samples() if s.metadata["cluster"].endswith("-00000")]
    ex = S.make_example(pools, f"{task}-fresh", random.Random(1))
    turns = {(S.question_text(s), S.answer_text(task, s)) for s in first}
    asked = [(ex.messages[0].content[1].text, ex.answer)] + ex.more
    assert set(asked) <= turns and len(asked) == min(S.MAX_TURNS, len(turns))
    (ref,) = load_media(first[0].messages, pools.cfg, t.media_settings())
    got = ex.media[0]
    assert (got.n_tokens, got.grid, got.info) == (ref.n_tokens, ref.grid, ref.info)
    assert torch.equal(got.pixels, ref.pixels)


def test_video_state_targets_label_what_each_tubelet_frame_shows(pools):
    """Every label is read off `spec.state` at the frame's stamp, and agrees with the pixels drawn:
    a cell labelled with a colour shows that colour, an empty cell only the background."""
    from evalsuite.tasks.gen.video import BACKGROUND, COLOURS, SHAPES, WORDS, build_video, draw_sampled_frames

    colours = list(COLOURS)
    spec = build_video(split_seed("videoqa", "train", 11), "short")
    frames, stamps = draw_sampled_frames(spec, 0.5, 32)
    targets = S.video_state_targets(spec, stamps, 2)
    t = len(stamps)
    assert targets.shape == ((t + 1) // 2, 2, 2 * S.VIDEO_CELLS + 2)
    flat = targets.view(-1, targets.shape[-1])
    seen_colour = False
    for j in range(flat.shape[0]):
        k = min(j, t - 1)  # the padding repeats the last frame
        shown, counter, word = spec.state(stamps[k])
        assert flat[j, 2 * S.VIDEO_CELLS] == counter
        assert flat[j, -1] == (1 + WORDS.index(word) if word else 0)
        for cell in range(S.VIDEO_CELLS):
            x0, y0, x1, y1 = spec.cell_box(cell)
            pix = frames[k, y0:y1, x0:x1].reshape(-1, 3)
            colour, shape = int(flat[j, cell]), int(flat[j, S.VIDEO_CELLS + cell])
            if colour:
                rgb = np.array(COLOURS[colours[colour - 1]])
                assert (pix == rgb).all(1).sum() > 20
                assert (SHAPES[shape - 1], cell, colours[colour - 1]) in shown
                seen_colour = True
            else:
                assert shape == 0 and (pix == np.array(BACKGROUND)).all()
    assert seen_colour


def test_video_dense_example_carries_targets_for_every_tubelet(pools):
    ex = S.make_example(pools, "video-dense", random.Random(2))
    media = ex.media[0]
    tubelets = media.pixels.shape[0] // pools.cfg.video.tubelet
    assert ex.targets.shape == (tubelets, pools.cfg.video.tubelet, 2 * S.VIDEO_CELLS + 2)
    classes = S.video_classes()
    assert int(ex.targets[..., :S.VIDEO_CELLS].max()) < classes["colour"]
    assert int(ex.targets[..., -1].max()) < classes["caption"]


def test_gui_dense_asks_for_every_element_of_a_fresh_screen_that_can_be_asked_for(pools):
    from evalsuite.tasks.gen.gui import build_screen

    ex = S.make_example(pools, "gui-dense", random.Random("d"))
    screen = build_screen(seed_of(ex), pools.task("gui").args["difficulty"])
    askable = [e for e in screen.elements if e.target]
    asked = [ex.messages[0].content[-1].text] + [q for q, _ in ex.more]
    assert len(asked) == min(len(askable), S.DENSE_TURNS) > len(screen.targets)
    names = {e.name: e for e in askable}
    w, h = screen.canvas.size
    for question, answer in zip(asked, [ex.answer] + [a for _, a in ex.more]):
        e = names[question.split("\n")[0].removeprefix("Click: ")]
        x, y = (e.box[0] + e.box[2]) / 2 / w * 1000, (e.box[1] + e.box[3]) / 2 / h * 1000
        assert answer == f"({round(x)}, {round(y)})"
