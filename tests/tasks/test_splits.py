"""The synthetic image tasks' split, determinism and cache guarantees (docqa and gui alike)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from evalsuite.task import Task
from evalsuite.tasks.common import seed_split
from evalsuite.tasks.docqa import DocQA
from evalsuite.tasks.gen.canvas import Canvas
from evalsuite.tasks.gen.doc import build_document
from evalsuite.tasks.gen.gui import build_screen
from evalsuite.tasks.gui import GUI

TASK_TYPES = [DocQA, GUI]


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _digests(paths: set[str]) -> set[str]:
    return {hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def _files(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_no_eval_sample_comes_from_a_train_seed(task_type: type[Task]) -> None:
    evals = list(task_type(split="eval", n=60).samples())
    trains = list(task_type(split="train", n=60).samples())
    assert {seed_split(s.metadata["seed"]) for s in evals} == {"eval"}
    assert {seed_split(s.metadata["seed"]) for s in trains} == {"train"}
    assert not {s.metadata["seed"] for s in evals} & {s.metadata["seed"] for s in trains}
    eval_images = {p.path for s in evals for p in s.media}
    train_images = {p.path for s in trains for p in s.media}
    assert not eval_images & train_images
    assert not _digests(eval_images) & _digests(train_images)  # the pictures differ, not only the names


@pytest.mark.parametrize("build", [build_document, build_screen])
def test_same_seed_gives_byte_identical_png(build, tmp_path: Path) -> None:
    for difficulty in ("easy", "default"):
        a, b, other = build(123, difficulty), build(123, difficulty), build(124, difficulty)
        a.canvas.save_png(tmp_path / "a.png")
        b.canvas.save_png(tmp_path / "b.png")
        other.canvas.save_png(tmp_path / "c.png")
        assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
        assert (tmp_path / "a.png").read_bytes() != (tmp_path / "c.png").read_bytes()


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_two_caches_hold_the_same_bytes(task_type: type[Task], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = list(task_type(n=12).samples())
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path / "other"))
    second = list(task_type(n=12).samples())
    assert [s.target for s in first] == [s.target for s in second]
    for a, b in zip(first, second):
        assert a.media[0].path != b.media[0].path
        assert Path(a.media[0].path).read_bytes() == Path(b.media[0].path).read_bytes()


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_second_pass_writes_nothing(task_type: type[Task], cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = [s.to_dict() for s in task_type(n=16).samples()]
    before = _files(cache)
    assert len(before) == len({s["metadata"]["cluster"] for s in first}) >= 4

    def refuse(self: Canvas, path: str | os.PathLike[str]) -> None:
        raise AssertionError(f"rendered {path} again")

    monkeypatch.setattr(Canvas, "save_png", refuse)
    again = [s.to_dict() for s in task_type(n=16).samples()]
    assert again == first
    assert _files(cache) == before  # same files, same modification times


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_a_missing_file_is_regenerated_identically(task_type: type[Task]) -> None:
    samples = list(task_type(n=4).samples())
    path = Path(samples[0].media[0].path)
    original = path.read_bytes()
    path.unlink()
    list(task_type(n=4).samples())
    assert path.read_bytes() == original
