"""The loop: exact resume, extension, what each kind of stage trains, the per-stage table."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from evalsuite.model import weights
from evalsuite.model.omni import build_omni
from evalsuite.training import curriculum as C
from evalsuite.training import loop

SMALL_POOLS = {"docqa": 8, "gui": 4, "videoqa": 6, "audioqa": 6, "docqa-wide": 12, "gui-wide": 6}  # as conftest's pools


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(tmp_path):
    torch.set_num_threads(1)
    args = dict(stages=("text", "image"), steps={"text": 3, "image": 3, "video": 1, "audio": 1}, batch=2,
                eval_n=0, save_every=100, pool_sizes=SMALL_POOLS)
    full = loop.TrainArgs(out=str(tmp_path / "full"), **args)
    loop.train(full, progress=False)
    part = loop.TrainArgs(out=str(tmp_path / "part"), **args)
    loop.train(part, progress=False, stop_after=4)  # stops inside the image stage
    state = loop.read_state(tmp_path / "part" / loop.STATE_FILE)  # weights_only=True
    assert (state["stage"], state["step"]) == (1, 1)
    loop.train(part, progress=False)

    a = weights.load(tmp_path / "full").state_dict()
    b = weights.load(tmp_path / "part").state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert weights.weights_sha256(tmp_path / "full") == weights.weights_sha256(tmp_path / "part")
    curve = [c["global_step"] for c in json.loads((tmp_path / "part" / loop.HISTORY_FILE).read_text())["curve"]]
    assert curve == [3, 6]


def test_resume_refuses_different_settings(tmp_path):
    args = loop.TrainArgs(out=str(tmp_path), stages=("text",), steps={"text": 1, "image": 1, "video": 1, "audio": 1},
                       batch=1, eval_n=0, pool_sizes=SMALL_POOLS)
    loop.train(args, progress=False)
    other = loop.TrainArgs(out=str(tmp_path), stages=("text",), steps={"text": 1, "image": 1, "video": 1, "audio": 1},
                        batch=2, eval_n=0, pool_sizes=SMALL_POOLS)
    with pytest.raises(SystemExit, match=r"different settings: batch 1 \(now 2\) \(use another --out"):  # only what differs
        loop.train(other, progress=False)


def test_resume_may_change_steps_of_stages_not_begun(tmp_path):
    steps = {"text": 1, "image": 1, "video": 1, "audio": 1}
    args = loop.TrainArgs(out=str(tmp_path), stages=("text", "image"), steps=steps, batch=1, eval_n=0,
                       pool_sizes=SMALL_POOLS)
    loop.train(args, progress=False, stop_after=1)  # text done, image not begun
    later = loop.TrainArgs(out=str(tmp_path), stages=("text", "image"), steps=dict(steps, image=2), batch=1,
                        eval_n=0, pool_sizes=SMALL_POOLS)
    assert loop.load_state(tmp_path, later)["stage"] == 1
    earlier = loop.TrainArgs(out=str(tmp_path), stages=("text", "image"), steps=dict(steps, text=2), batch=1,
                          eval_n=0, pool_sizes=SMALL_POOLS)
    with pytest.raises(SystemExit, match=r"different settings: stages begun \{'text': 1\} \(now \{'text': 2\}\)"):
        loop.load_state(tmp_path, earlier)


def test_a_finished_run_extends_with_more_stages_but_not_with_other_ones(tmp_path):
    steps = {"text": 1, "image": 1, "video": 1, "audio": 1, "recall": 1}
    common = dict(out=str(tmp_path), steps=steps, batch=1, eval_n=0, pool_sizes=SMALL_POOLS)
    loop.train(loop.TrainArgs(stages=("text",), **common), progress=False)
    longer = loop.TrainArgs(stages=("text", "recall"), **common)
    assert loop.load_state(tmp_path, longer)["stage"] == 1  # continues after text
    with pytest.raises(SystemExit, match=r"stages begun \{'text': 1\} \(now \{'image': 1\}\)"):  # the stage that ran may not change
        loop.load_state(tmp_path, loop.TrainArgs(stages=("image", "recall"), **common))
    history = loop.train(longer, progress=False)
    assert history["done"] == ["text", "recall"] and tuple(history["args"]["stages"]) == ("text", "recall")
    assert [c["stage"] for c in history["curve"]] == ["text", "recall"]


@pytest.mark.slow
def test_encoder_stage_trains_only_the_reinitialised_encoder_and_align_keeps_it_frozen(tmp_path):
    torch.set_num_threads(1)
    steps = {"text": 1, "audio-ctc": 2, "audio-align": 2}
    common = dict(out=str(tmp_path), steps=steps, batch=2, eval_n=0, pool_sizes=SMALL_POOLS, save_every=100)
    loop.train(loop.TrainArgs(stages=("text",), **common), progress=False)

    before = weights.load(tmp_path).state_dict()
    fresh = build_omni("tiny", seed=0).state_dict()
    loop.train(loop.TrainArgs(stages=("text", "audio-ctc"), **common), progress=False)
    after_ctc = weights.load(tmp_path).state_dict()
    changed = {k for k in before if not torch.equal(before[k], after_ctc[k])}
    assert changed and all(k.startswith(("audio.subsample.", "audio.blocks.")) for k in changed)
    assert not torch.equal(after_ctc["audio.blocks.0.ff1.net.1.weight"], before["audio.blocks.0.ff1.net.1.weight"])
    # it started from the fresh encoder, not the text-stage one (two small steps stay close to it)
    k = "audio.subsample.out.weight"
    assert (after_ctc[k] - fresh[k]).abs().max() < 0.05
    loop.train(loop.TrainArgs(stages=("text", "audio-ctc", "audio-align"), **common), progress=False)
    after_align = weights.load(tmp_path).state_dict()
    assert all(torch.equal(after_align[k], after_ctc[k]) for k in after_ctc if k.startswith(("audio.subsample.", "audio.blocks.")))
    assert not torch.equal(after_align["audio.projector.net.1.weight"], after_ctc["audio.projector.net.1.weight"])
    state = loop.read_state(tmp_path / loop.STATE_FILE)  # weights_only=True, an encoder stage's state included
    assert state["aux"] is None  # the CTC head is gone once its stage ended
    counts = state["history"]["ctc_infeasible"]["audio-ctc"]  # examples too short for their transcript, counted
    assert counts["examples"] == 4 and 0 <= counts["infeasible"] <= 4


@pytest.mark.slow
def test_image_ctc_learns_to_read_and_image_align_keeps_the_vision_encoder_frozen(tmp_path):
    """A few hundred steps of image-ctc on rendered lines lower its loss well below the start (the
    column CTC has something to learn), and image-align leaves the encoder as image-ctc left it."""
    torch.set_num_threads(1)
    steps = {"text": 1, "image-ctc": 2, "image-align": 2}
    common = dict(out=str(tmp_path), steps=steps, batch=2, eval_n=0, pool_sizes=SMALL_POOLS, save_every=100)
    loop.train(loop.TrainArgs(stages=("text",), **common), progress=False)

    before = weights.load(tmp_path).state_dict()
    loop.train(loop.TrainArgs(stages=("text", "image-ctc"), **common), progress=False)
    after_ctc = weights.load(tmp_path).state_dict()
    changed = {k for k in before if not torch.equal(before[k], after_ctc[k])}
    # (the video encoder shares the vision transformer: the state dict lists it under both names)
    assert changed and all(k.removeprefix("video.").startswith(C.VISION_ENCODER) for k in changed)
    loop.train(loop.TrainArgs(stages=("text", "image-ctc", "image-align"), **common), progress=False)
    after_align = weights.load(tmp_path).state_dict()
    assert all(torch.equal(after_align[k], after_ctc[k]) for k in after_ctc
               if k.removeprefix("video.").startswith(C.VISION_ENCODER + C.AUDIO_ENCODER))
    assert not torch.equal(after_align["vision.projector.net.1.weight"], after_ctc["vision.projector.net.1.weight"])


@pytest.mark.slow
def test_continued_encoder_stage_fits_its_head_first_then_moves_the_encoder_it_was_given(tmp_path, monkeypatch):
    """image-ctc-chars keeps the trained encoder (no re-initialisation) and leaves it untouched for
    its `head_warmup` steps, while the new head learns; after them only the encoder moves."""
    torch.set_num_threads(1)
    monkeypatch.setitem(C.STAGES, "image-ctc-chars", dataclasses.replace(C.STAGES["image-ctc-chars"], head_warmup=2))

    def run(out, n):
        common = dict(out=str(out), steps={"text": 1, "image-ctc-chars": n}, batch=2, eval_n=0,
                      pool_sizes=SMALL_POOLS, save_every=100)
        loop.train(loop.TrainArgs(stages=("text",), **common), progress=False)
        before = weights.load(out).state_dict()
        # a re-initialising stage would copy these other values in: none may show up
        with monkeypatch.context() as m:
            m.setattr(loop, "build_omni", lambda *a, seed=0, **kw: build_omni(*a, seed=seed + 123, **kw))
            loop.train(loop.TrainArgs(stages=("text", "image-ctc-chars"), **common), progress=False)
        return before, weights.load(out).state_dict()

    before, after = run(tmp_path / "a", 2)
    assert all(torch.equal(before[k], after[k]) for k in before)
    before, after = run(tmp_path / "b", 4)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.removeprefix("video.").startswith(C.VISION_ENCODER) for k in changed)
    k = "vision.blocks.0.attn.qkv.weight"
    assert 0 < (after[k] - before[k]).abs().max() < 0.01


@pytest.mark.slow
def test_late_parameters_stay_at_their_start_until_their_stage_which_trains_them(tmp_path):
    """Every stage before `locate` keeps the image tokens' position table at its zero start, every
    stage before `widen` the projector's second branch (so a run from scratch takes the path the
    committed checkpoint took); their stages train them, the projector and the LM, and leave the
    vision and audio encoders as they were."""
    torch.set_num_threads(1)
    for late in ("locate", "widen"):
        prefixes = C.STAGES[late].introduces
        assert prefixes
        assert all(set(prefixes) <= set(C.frozen_prefixes(s)) for s in C.STAGE_NAMES[:C.STAGE_NAMES.index(late)])
        assert not set(prefixes) & set(C.frozen_prefixes(late))
    steps = {"text": 1, "image-align": 2, "locate": 2, "widen": 2}
    common = dict(out=str(tmp_path), steps=steps, batch=2, eval_n=0, pool_sizes=SMALL_POOLS, save_every=100)
    fresh = build_omni("tiny", seed=0).state_dict()
    states = {}
    for n in (2, 3, 4):
        loop.train(loop.TrainArgs(stages=("text", "image-align", "locate", "widen")[:n], **common), progress=False)
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
                   if k.removeprefix("video.").startswith(C.VISION_ENCODER + C.AUDIO_ENCODER))


def test_bench_table_shows_each_stage_and_its_sample_count_when_counts_differ():
    def ev(stage, step, docqa, n):
        table = {t: {"primary": "accuracy", "accuracy": 0.25} for t in C.EVAL_TASKS}
        table["docqa"]["accuracy"] = docqa
        return {"stage": stage, "global_step": step, "table": table, "n": n, "samples_per_s": 12.0}

    same = loop.bench_table({"evals": [ev("text", 10, 0.1, 60), ev("image", 30, 0.2, 60)]})
    assert same.splitlines()[0] == "| after stage | step | docqa | gui | videoqa | audioqa | samples/s |"
    assert same.splitlines()[3] == "| image | 30 | 0.200 | 0.250 | 0.250 | 0.250 | 12.0 |"
    mixed = loop.bench_table({"evals": [ev("text", 10, 0.1, 60), ev("read", 50, 0.225, 200)]}).splitlines()
    assert mixed[0].startswith("| after stage | step | n | docqa |")
    assert mixed[2].startswith("| text | 10 | 60 | 0.100 |")
    assert mixed[3] == "| read | 50 | 200 | 0.225 | 0.250 | 0.250 | 0.250 | 12.0 |"
    assert len({line.count("|") for line in mixed}) == 1


@pytest.mark.slow
def test_v2_starts_from_a_finished_run_and_its_dense_video_stage_trains_only_the_tubelet_embedding(tmp_path):
    """``--curriculum v2 --init CKPT``: the v2 stages run after the stages the checkpoint ran, on
    its weights; `video-dense` inflates the tubelet embedding again from the patch embedding and
    trains only it; a time index given with ``time_pos`` starts at zero and stays there until
    `video-open`, which introduces it."""
    torch.set_num_threads(1)
    v1 = tmp_path / "v1"
    loop.train(loop.TrainArgs(out=str(v1), stages=("text",), steps={"text": 1}, batch=1, eval_n=0,
                              pool_sizes=SMALL_POOLS), progress=False)
    before = weights.load(v1).state_dict()
    args = loop.TrainArgs(out=str(tmp_path / "v2"), stages=("text", "video-dense"), curriculum="v2", init=str(v1),
                          time_pos=8, steps={"text": 1, "video-dense": 2}, batch=2, eval_n=0,
                          pool_sizes=SMALL_POOLS, save_every=100)
    history = loop.train(args, progress=False)
    assert [c["stage"] for c in history["curve"]] == ["text", "video-dense"]
    assert history["init"]["from"] == str(v1)
    after = weights.load(tmp_path / "v2").state_dict()
    assert after["video.time_pos"].shape[0] == 8 and "video.time_pos" not in before
    assert torch.count_nonzero(after["video.time_pos"]) == 0
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"video.tubelet_embed.proj.weight", "video.tubelet_embed.proj.bias"}
    with pytest.raises(SystemExit, match="expected them as the first"):
        loop.train(dataclasses.replace(args, out=str(tmp_path / "x"), stages=("video-dense",)), progress=False)
    with pytest.raises(SystemExit, match="unknown stage"):
        loop.train(dataclasses.replace(args, curriculum="v1"), progress=False)


@pytest.mark.slow
def test_a_run_with_data_workers_takes_exactly_the_steps_of_one_without(tmp_path):
    """`workers` only moves where examples are made: the weights equal those of the in-process run,
    resumed part-way or not."""
    torch.set_num_threads(1)
    common = dict(stages=("text", "video"), steps={"text": 2, "video": 2}, batch=2, eval_n=0, save_every=100,
                  pool_sizes=SMALL_POOLS)
    loop.train(loop.TrainArgs(out=str(tmp_path / "a"), **common), progress=False)
    part = loop.TrainArgs(out=str(tmp_path / "b"), workers=2, **common)
    loop.train(part, progress=False, stop_after=3)
    loop.train(part, progress=False)
    assert weights.weights_sha256(tmp_path / "a") == weights.weights_sha256(tmp_path / "b")


@pytest.mark.slow
def test_gui_loc_gives_a_v1_checkpoint_location_tokens_from_its_position_table_and_trains_them(tmp_path):
    """``--loc-bins 40 --init CKPT``: the model gains 80 location ids (its embedding rows exist
    already); `gui-loc` sets their rows from the image position table when it begins and trains them;
    a stage that answers with locations refuses a model without them, and a checkpoint's bins stay."""
    from evalsuite.model.locations import location_directions

    torch.set_num_threads(1)
    v1 = tmp_path / "v1"
    loop.train(loop.TrainArgs(out=str(v1), stages=("text",), steps={"text": 1}, batch=1, eval_n=0,
                              pool_sizes=SMALL_POOLS), progress=False)
    trained = weights.load(v1)  # a position table as `locate` leaves it: not zero
    with torch.no_grad():
        trained.vision.token_pos.normal_(std=0.05, generator=torch.Generator().manual_seed(0))
    weights.save(trained, v1)
    args = loop.TrainArgs(out=str(tmp_path / "loc"), stages=("text", "gui-loc"), curriculum="v2", init=str(v1),
                          loc_bins=40, steps={"text": 1, "gui-loc": 2}, batch=2, eval_n=0,
                          pool_sizes=SMALL_POOLS, save_every=100)
    with pytest.raises(SystemExit, match="location tokens"):
        loop.train(dataclasses.replace(args, loc_bins=0, out=str(tmp_path / "none")), progress=False)
    loop.train(args, progress=False)
    model = weights.load(tmp_path / "loc")
    assert model.config.loc_bins == 40 and model.tokenizer.vocab_size == 352
    emb = model.lm.backbone.embeddings.weight.detach()
    before = weights.load(v1).lm.backbone.embeddings.weight.detach()
    start = location_directions(model.vision.token_pos, 40) * before[:256].double().norm(dim=-1).mean()
    moved = (emb[272:352].double() - start).norm(dim=-1)
    assert 0 < moved.max() < 0.2 * start.norm(dim=-1).mean()  # trained a little from their start
    again = dataclasses.replace(args, out=str(tmp_path / "again"), init=str(tmp_path / "loc"), loc_bins=20,
                                stages=("text", "gui-loc"))
    with pytest.raises(SystemExit, match="cannot change"):
        loop.train(again, progress=False)


# ---- bookkeeping: what a run writes, refuses and says (fake evaluations: the harness is not the point)
TINY = dict(steps={"text": 1, "recall": 1}, batch=1, save_every=100, pool_sizes=SMALL_POOLS)


def fake_evaluate(calls=None, fail_on=()):
    """An `evaluate` whose table is a function of the checkpoint it reads (its sha256), and which
    raises for the tags in ``fail_on`` the first time (a run killed during its evaluation)."""
    failed = set()

    def evaluate(out, tag, n, *a, **kw):
        if calls is not None:
            calls.append(tag)
        if tag in fail_on and tag not in failed:
            failed.add(tag)
            raise RuntimeError(f"killed during {tag}")
        sha = weights.weights_sha256(out)
        return {t: {"primary": "accuracy", "accuracy": int(sha[:6], 16) / 2**24} for t in C.EVAL_TASKS}
    return evaluate


def test_a_run_killed_during_a_stages_evaluation_evaluates_that_stage_when_resumed(tmp_path, monkeypatch):
    """The stage is saved as done before its evaluation; the state says the evaluation is pending, so
    the resumed run evaluates it first: the rows equal the uninterrupted run's."""
    torch.set_num_threads(1)
    common = dict(stages=("text", "recall"), eval_n=1, **TINY)
    monkeypatch.setattr(loop, "evaluate", fake_evaluate())
    full = loop.train(loop.TrainArgs(out=str(tmp_path / "full"), **common), progress=False)
    calls = []
    monkeypatch.setattr(loop, "evaluate", fake_evaluate(calls, fail_on={"after-text"}))
    part = loop.TrainArgs(out=str(tmp_path / "part"), **common)
    with pytest.raises(RuntimeError, match="killed during after-text"):
        loop.train(part, progress=False)
    state = loop.read_state(tmp_path / "part" / loop.STATE_FILE)
    assert (state["stage"], state["step"]) == (1, 0) and state["history"]["pending_eval"]["stage"] == "text"
    resumed = loop.train(part, progress=False)
    assert calls == ["after-text", "after-text", "after-recall"]

    def rows(h):
        return [{k: e[k] for k in ("stage", "global_step", "table", "n")} for e in h["evals"]]
    assert rows(resumed) == rows(full) and [e["stage"] for e in resumed["evals"]] == ["text", "recall"]
    assert "pending_eval" not in resumed and resumed["done"] == ["text", "recall"]
    on_disk = json.loads((tmp_path / "part" / loop.HISTORY_FILE).read_text())
    assert rows(on_disk) == rows(full) and "pending_eval" not in on_disk


def test_bench_writes_the_table_only_for_a_finished_curriculum_with_the_stages_and_command_it_ran(
        tmp_path, monkeypatch, capsys):
    import bench.report

    written = []
    monkeypatch.setattr(bench.report, "update", lambda path, section, body: written.append((section, body)))
    monkeypatch.setattr(loop, "evaluate", fake_evaluate())
    args = loop.TrainArgs(out=str(tmp_path / "a"), stages=("text",), eval_n=1, bench=True,
                          command="python -m evalsuite.training --stages text --bench", **TINY)
    loop.train(args, progress=False)  # one stage of v1's 18: BENCHMARKS.md keeps the committed run's table
    assert written == []
    assert "BENCHMARKS.md not written: the run is not finished (1 of the 18 stages of curriculum v1 done)" \
        in capsys.readouterr().err
    part = dataclasses.replace(args, out=str(tmp_path / "b"), stages=("text", "recall"))
    monkeypatch.setitem(C.CURRICULA, "v1", (C.STAGES["text"], C.STAGES["recall"]))  # a two-stage curriculum
    loop.train(part, progress=False, stop_after=1)  # time-boxed: stops after text
    assert written == []
    loop.train(part, progress=False)  # resumed to the end: now it is finished
    assert [section for section, _ in written] == ["Training curriculum"]
    body = written[0][1]
    assert "command: `python -m evalsuite.training --stages text --bench`" in body
    assert "the 2 stages of curriculum v1 with their steps: text 1, recall 1; batch 1" in body
    assert "image" not in body.split("\n\n")[0]
    assert [line.split(" | ")[0] for line in body.splitlines()[-2:]] == ["| text", "| recall"]


def test_an_out_holding_a_checkpoint_without_its_state_is_refused_unless_overwritten(tmp_path):
    out = tmp_path / "ckpt"
    args = loop.TrainArgs(out=str(out), stages=("text",), eval_n=0, **TINY)
    loop.train(args, progress=False)
    (out / loop.STATE_FILE).unlink()  # as the committed checkpoint: weights, config, history, no state
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(SystemExit, match=r"holds a checkpoint \(model.safetensors, history.json\) but no "
                                         r"train_state.pt to resume; .*--init .*--overwrite"):
        loop.train(args, progress=False)
    assert (out / "model.safetensors").read_bytes() == before and not (out / loop.STATE_FILE).exists()
    loop.train(dataclasses.replace(args, overwrite=True), progress=False)  # the in-place re-make
    assert (out / loop.STATE_FILE).is_file()


def test_done_lists_only_finished_stages_and_init_refuses_an_unfinished_run(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    loop.train(loop.TrainArgs(out=str(a), stages=("text",), eval_n=0, **TINY), progress=False)
    longer = loop.TrainArgs(out=str(b), init=str(a), stages=("text", "recall"), eval_n=0,
                            **dict(TINY, steps={"text": 1, "recall": 3}))
    loop.train(longer, progress=False, stop_after=1)  # part-way through recall
    history = json.loads((b / loop.HISTORY_FILE).read_text())
    assert "done" not in history and history["init"]["done"] == ["text"]
    with pytest.raises(SystemExit, match=r"--init .*b: expected a finished run; its train_state.pt is at stage "
                                         r"recall step 1 of its 2 stage\(s\)"):
        loop.train(loop.TrainArgs(out=str(tmp_path / "c"), init=str(b), stages=("text", "recall"), eval_n=0, **TINY),
                   progress=False)
    (b / loop.STATE_FILE).unlink()  # its history alone says it is not finished either
    with pytest.raises(SystemExit, match="expected a finished run; its history.json lists no stages done"):
        loop.train(loop.TrainArgs(out=str(tmp_path / "c"), init=str(b), stages=("text", "recall"), eval_n=0, **TINY),
                   progress=False)


def test_init_of_a_run_that_already_ran_every_stage_is_nothing_to_run(tmp_path):
    a = tmp_path / "a"
    loop.train(loop.TrainArgs(out=str(a), stages=("text",), eval_n=0, **TINY), progress=False)
    with pytest.raises(SystemExit, match=rf"^nothing to run: {a} already ran all 1 stages; append stages "
                                         r"\(e.g. --curriculum v2 --stages text,video-dense\)$"):
        loop.train(loop.TrainArgs(out=str(tmp_path / "b"), init=str(a), stages=("text",), eval_n=0, **TINY),
                   progress=False)
    assert not (tmp_path / "b").exists()


def test_a_stage_shorter_than_its_head_warmup_is_one_warning_line(tmp_path, capsys):
    args = loop.TrainArgs(out=str(tmp_path), stages=("text", "image-ctc-chars"), eval_n=0,
                          **dict(TINY, steps={"text": 1, "image-ctc-chars": 3}))
    loop.train(args, progress=False, stop_after=1)  # the warning comes at the start; text alone runs
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: stage image-ctc-chars has 3 step(s), no more than its head_warmup of 1500: only its "
                   "new head trains, the encoder stays as it is (give it more with --steps)"]
    loop.warn_head_warmup(loop.TrainArgs(), 0)  # the committed curriculum's steps: no warning
    loop.warn_head_warmup(loop.TrainArgs(curriculum="v2", stages=C.STAGE_NAMES + tuple(C.V2_ONLY),
                                         steps={s.name: s.steps for s in C.CURRICULA["v2"]}), 0)
    assert capsys.readouterr().err == ""


def test_speech_stages_without_espeak_are_refused_before_any_work(tmp_path, monkeypatch):
    from evalsuite.tasks.gen import audio

    monkeypatch.setattr(audio, "espeak_available", lambda: False)
    args = loop.TrainArgs(out=str(tmp_path / "run"), stages=("text", "image-ctc"), eval_n=0, **TINY)
    with pytest.raises(SystemExit, match=r"^espeak-ng is not installed; stage\(s\) \['text'\] need its speech clips "
                                         r"\(apt-get install espeak-ng, or make sysdeps\)$"):
        loop.train(args, progress=False)
    assert not (tmp_path / "run").exists()
    loop.check_speech(dataclasses.replace(args, stages=("image-ctc",)), 0)  # rendered lines only: no speech
    with pytest.raises(SystemExit, match="the audioqa evaluation"):
        loop.check_speech(dataclasses.replace(args, stages=("image-ctc",), eval_n=1), 0)


def test_ctrl_c_is_one_line_saying_where_the_last_save_is(tmp_path, monkeypatch):
    calls = []
    real = loop.batch_loss

    def batch_loss(*a, **kw):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*a, **kw)
    monkeypatch.setattr(loop, "batch_loss", batch_loss)
    args = loop.TrainArgs(out=str(tmp_path), stages=("text",), eval_n=0, **dict(TINY, steps={"text": 5}, save_every=2))
    with pytest.raises(loop.Interrupted) as e:
        loop.train(args, progress=False)
    assert e.value.code == (f"interrupted: the last save in {tmp_path} is at stage text step 2 (global step 2); "
                            "1 step(s) since it are lost; run the same command again to resume")


def test_a_time_box_spent_exactly_at_the_last_step_leaves_a_finished_run(tmp_path):
    """--stop-after N where N is the run's last step: the run returned before marking itself done, so
    --bench wrote nothing and --init refused it until the same command ran again."""
    args = loop.TrainArgs(out=str(tmp_path / "a"), stages=("text",), eval_n=0, **TINY)
    history = loop.train(args, progress=False, stop_after=1)  # TINY: one step a stage
    assert history.get("done") == ["text"]
    assert json.loads((tmp_path / "a" / "history.json").read_text())["done"] == ["text"]
