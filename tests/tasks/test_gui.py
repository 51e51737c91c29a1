"""gui: generated screens, their targets, the point-in-box scoring and the coordinate formats."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evalsuite.registry import TASKS
from evalsuite.task import TaskArgError
from evalsuite.tasks.common import split_seed
from evalsuite.tasks.gen.canvas import Canvas
from evalsuite.tasks.gen.gui import GLYPHS, build_screen, draw_glyph
from evalsuite.tasks.gui import GUI


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path))
    return tmp_path


def test_registered_under_its_catalog_name() -> None:
    import evalsuite.catalog  # noqa: F401

    assert TASKS.get("gui") is GUI


def test_samples_carry_instruction_box_and_metadata() -> None:
    samples = list(GUI(n=40).samples())
    assert len(samples) == 40 and len({s.id for s in samples}) == 40
    for s in samples:
        (image,) = s.media
        w, h = s.target["size"]
        with Image.open(image.path) as im:
            assert im.size == (w, h) and max(w, h) <= 320
        x1, y1, x2, y2 = s.target["box"]
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        prompt = s.messages[0].text
        assert prompt.startswith("Click: ") and prompt.endswith("Answer (x, y), 0-1000.")
        name = prompt.splitlines()[0].removeprefix("Click: ")
        assert (s.metadata["ui_type"] == "icon") == name.endswith(" icon")
        assert f'"{name}"' in s.metadata["text_form"]
    assert {s.metadata["ui_type"] for s in samples} == {"text", "icon"}
    assert {s.metadata["platform"] for s in samples} == {"desktop", "web", "mobile"}
    assert max(Counter(s.cluster for s in samples).values()) == 4


@pytest.mark.parametrize("difficulty", ["easy", "default", "hard"])
def test_names_are_unique_and_boxes_disjoint(difficulty: str) -> None:
    for i in range(8 if difficulty == "hard" else 30):
        screen = build_screen(split_seed("gui", "eval", i), difficulty)
        names = [e.name for e in screen.elements]
        assert len(names) == len(set(names)), i
        for a, b in itertools.combinations(screen.elements, 2):
            overlap = a.box[0] < b.box[2] and b.box[0] < a.box[2] and a.box[1] < b.box[3] and b.box[1] < a.box[3]
            assert not overlap, (i, a, b)
        assert all(t.target for t in screen.targets)


def test_hard_screens_are_large_with_small_targets() -> None:
    def shares(difficulty: str) -> list[float]:
        out = []
        for i in range(4):
            screen = build_screen(split_seed("gui", "eval", i), difficulty)
            w, h = screen.canvas.size
            if difficulty == "hard":
                assert max(w, h) >= 1440 and w <= 2560 and h <= 2560
            out += [(t.box[2] - t.box[0]) * (t.box[3] - t.box[1]) / (w * h) for t in screen.targets]
        return out

    hard, default = shares("hard"), shares("default")
    assert max(hard) < 0.005 and sum(hard) / len(hard) < 0.001  # ScreenSpot-Pro: ~0.07% on average
    assert sum(default) / len(default) > 5 * sum(hard) / len(hard)


@pytest.mark.parametrize("coords", ["norm1000", "norm1", "pixels"])
def test_canonical_answer_scores_and_a_point_outside_does_not(coords: str) -> None:
    task = GUI(n=20, coords=coords)
    for s in task.samples():
        assert task.score(s, s.target["answer"])["score"] == 1.0
        x1, y1, x2, y2 = s.target["box"]
        w, h = s.target["size"]
        inside_edge = f"({x2}, {y1})" if coords == "pixels" else None
        if inside_edge:
            assert task.score(s, inside_edge)["score"] == 1.0  # borders count
        if x2 + 3 < w:
            px = x2 + 3
            outside = {"norm1000": f"({px / w * 1000:.1f}, {y1 / h * 1000:.1f})",
                       "norm1": f"({px / w:.4f}, {y1 / h:.4f})", "pixels": f"({px}, {y1})"}[coords]
            assert task.score(s, outside)["score"] == 0.0


def test_prompt_and_text_form_follow_coords() -> None:
    s = next(iter(GUI(n=1, coords="pixels").samples()))
    assert s.messages[0].text.endswith("Answer (x, y) in pixels.")
    x1, y1, x2, y2 = s.target["box"]
    assert f"[{x1}, {y1}, {x2}, {y2}]" in s.metadata["text_form"]
    s1 = next(iter(GUI(n=1, coords="norm1").samples()))
    assert s1.messages[0].text.endswith("Answer (x, y), 0-1.")
    assert s1.target["box"] == s.target["box"]  # the same screen, whatever the format


def test_unparsable_prediction_scores_zero() -> None:
    task = GUI(n=1)
    s = next(iter(task.samples()))
    assert task.score(s, "the save button") == {"score": 0.0, "point": None}


def test_bad_coords_end_in_one_clear_line() -> None:
    with pytest.raises(TaskArgError, match="norm1000, norm1, pixels"):
        GUI(coords="percent")


def test_every_glyph_draws_and_glyphs_are_distinct_at_12px() -> None:
    arrays = {}
    for g in GLYPHS:
        c = Canvas(14, 14)
        draw_glyph(c, g, (1, 1, 13, 13), (0, 0, 0))
        a = np.asarray(c.render().convert("L")) < 128
        assert a.sum() >= 6, g
        arrays[g] = a
    for a, b in itertools.combinations(arrays, 2):
        assert (arrays[a] != arrays[b]).sum() >= 4, (a, b)
