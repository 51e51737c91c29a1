import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))


# Tests pin the reference model's weights to the seed-0 initialisation, so their expected values do not
# move when the committed checkpoint (evalsuite/model/checkpoints/tiny) is retrained; tests of checkpoint loading
# set EVALSUITE_CHECKPOINT themselves.
os.environ["EVALSUITE_CHECKPOINT"] = "random"


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The toy task with its images in a fresh folder; returns that folder."""
    d = tmp_path / "toy"
    monkeypatch.setenv("TOY_DIR", str(d))
    import toytask  # noqa: F401  (registers 'toy')

    return d


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Generated task data goes to a per-session temp cache unless a test sets its own."""
    if "EVALSUITE_CACHE" not in os.environ:
        monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
