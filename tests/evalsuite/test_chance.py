"""Chance levels: each task declares what a uniform random guess scores; the runner writes the mean
over the scored samples; the run report and the leaderboard show it and mark scores at chance."""

from __future__ import annotations

import json

import pytest
from runfolders import binary_samples, write_run

from evalsuite.reports.leaderboard import build_leaderboard
from evalsuite.reports.run_report import at_chance, render_run_report
from evalsuite.runner import RunConfig, chance_level, run
from evalsuite.task import Task
from evalsuite.tasks.docqa import DocQA
from evalsuite.tasks.gui import GUI
from evalsuite.types import Sample, SampleResult, user


def _mc(i: int, k: int) -> Sample:
    return Sample(id=f"q{i}", messages=[user("?")], target="A", choices=[f"c{j}" for j in range(k)])


def _res(s: Sample) -> SampleResult:
    return SampleResult(id=s.id, task="t", target=s.target, prediction="A", score=1.0)


def test_multiple_choice_chance_is_one_over_the_choices():
    task = Task()
    samples = [_mc(0, 4), _mc(1, 4), _mc(2, 2)]
    assert [task.chance(s) for s in samples] == [0.25, 0.25, 0.5]
    level, method = chance_level(task, samples, [_res(s) for s in samples])
    assert level == pytest.approx((0.25 + 0.25 + 0.5) / 3) and method.startswith("analytic")
    # Only the scored samples count (an errored one is not in the mean).
    assert chance_level(task, samples, [_res(samples[2])])[0] == 0.5
    # A sample without choices has no chance level, so neither has the task.
    free = Sample(id="f", messages=[user("?")], target="x")
    assert chance_level(task, [*samples, free], [_res(s) for s in [*samples, free]]) == (
        None, "none: not defined for this task")


def test_gui_chance_is_the_box_share_of_the_screen():
    s = Sample(id="g", messages=[user("click")], target={"box": [10, 20, 60, 40], "size": [200, 100]})
    assert GUI().chance(s) == pytest.approx(50 * 20 / (200 * 100))


def test_docqa_declares_why_it_has_no_chance_level():
    s = Sample(id="d", messages=[user("?")], target="42")
    level, method = chance_level(DocQA(), [s], [_res(s)])
    assert level is None and method.startswith("none: free-text answers")


def test_runner_writes_the_chance_level(toy, tmp_path):
    # The toy task: odd samples are multiple choice among 4 colours, even ones free text.
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": f"toy-{i:03d}", "prediction": "B"}) + "\n" for i in range(20)))
    out = tmp_path / "run"
    run(RunConfig(model=f"replay:{preds}", tasks=["toy"], out=out, quiet=True, report=False,
                  task_args={"toy": {"n": "1"}}))
    t = json.loads((out / "results.json").read_text())["tasks"]["toy"]
    assert t["chance"] is None and t["chance_method"] == "none: not defined for this task"  # toy-000 has no choices


def _chance_run(tmp_path, accuracy: float, chance: float | None):
    rows = binary_samples("videoqa", 40, n_clusters=10, accuracy=accuracy, seed=4)
    folder = write_run(tmp_path, {"videoqa": rows}, name=f"m{accuracy}")
    doc = json.loads((folder / "results.json").read_text())
    doc["tasks"]["videoqa"]["chance"] = chance
    doc["tasks"]["videoqa"]["chance_method"] = "analytic: 1 / number of choices, a uniform guess among them"
    (folder / "results.json").write_text(json.dumps(doc))
    return folder, doc["tasks"]["videoqa"]["ci95"]["accuracy"]


def test_report_and_leaderboard_mark_a_score_at_chance(tmp_path):
    guess, ci = _chance_run(tmp_path / "guess", 0.25, 0.25)
    assert at_chance(ci, 0.25)
    html = render_run_report(guess).read_text()
    assert '<td class="num" title="analytic: 1 / number of choices, a uniform guess among them">0.250</td>' in html
    assert 'class="at-chance bad"' in html and "≈ chance" in html
    good, ci_good = _chance_run(tmp_path / "good", 0.9, 0.25)
    assert not at_chance(ci_good, 0.25)
    assert 'class="at-chance bad"' not in render_run_report(good).read_text()
    index = build_leaderboard([guess, good], tmp_path / "site").read_text()
    assert index.count('<span class="bad small at-chance">≈ chance (0.250)</span>') == 1


def test_at_chance_edges():
    assert at_chance([0.2, 0.3], 0.2) and at_chance([0.2, 0.3], 0.3)
    assert not at_chance([0.2, 0.3], 0.31) and not at_chance(None, 0.25) and not at_chance([0.2, 0.3], None)
