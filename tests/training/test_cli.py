"""``python -m evalsuite.training``: flags."""

from __future__ import annotations

import pytest

from evalsuite.training import cli


def test_cli_parses_steps_and_rejects_unknown_stage():
    args, stop = cli.parse(["--steps", "text=5,image=7", "--steps-scale", "2", "--stop-after", "3", "--eval-n", "0"])
    assert args.steps["text"] == 10 and args.steps["image"] == 14 and stop == 3
    with pytest.raises(SystemExit):
        cli.parse(["--steps", "pictures=5"])
