"""``python -m evalsuite.training``: flags."""

from __future__ import annotations

import pytest

from evalsuite.training import cli


def test_cli_parses_steps_and_rejects_unknown_stage():
    args, stop = cli.parse(["--steps", "text=5,image=7", "--steps-scale", "2", "--stop-after", "3", "--eval-n", "0"])
    assert args.steps["text"] == 10 and args.steps["image"] == 14 and stop == 3
    with pytest.raises(SystemExit):
        cli.parse(["--steps", "pictures=5"])


def test_cli_v2_curriculum_runs_the_video_stages_after_the_committed_ones():
    from evalsuite.training import curriculum as C

    args, _ = cli.parse(["--curriculum", "v2", "--init", "ckpt", "--time-pos", "16", "--steps", "video-dense=5",
                         "--batch-video", "--workers", "3"])
    assert args.stages == C.STAGE_NAMES + ("video-dense", "video-open", "video-align", "settle", "gui-loc", "gui-loc-more", "tokens-ctc", "read-tokens")
    assert args.steps["video-dense"] == 5 and args.steps["video-align"] == C.stage_named("video-align").steps
    assert (args.curriculum, args.init, args.time_pos, args.device) == ("v2", "ckpt", 16, "auto")
    assert args.batch_video and args.workers == 3 and "workers" not in args.fingerprint()
    assert cli.parse([])[0].stages == C.STAGE_NAMES  # v1 by default: the committed run's stages
    with pytest.raises(SystemExit):
        cli.parse(["--time-pos", "16"])  # a time index only for a model started from --init
    with pytest.raises(SystemExit):
        cli.parse(["--steps", "video-dense=5"])  # not a v1 stage


def test_cli_loc_bins():
    args, _ = cli.parse(["--curriculum", "v2", "--init", "ckpt", "--loc-bins", "40"])
    assert args.loc_bins == 40 and args.fingerprint()["loc_bins"] == 40
    assert cli.parse([])[0].loc_bins == 0
    with pytest.raises(SystemExit):
        cli.parse(["--loc-bins", "101"])
