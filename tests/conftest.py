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


_CHECKOUT_RESULTS = TESTS.parent / "results"


def _results_listing() -> set[str]:
    """Entries of the checkout's results/ and results/runs/ (where a run without --out lands)."""
    found: set[str] = set()
    for folder in (_CHECKOUT_RESULTS, _CHECKOUT_RESULTS / "runs"):
        if folder.is_dir():
            found |= {str(folder / name) for name in os.listdir(folder)}
    return found


@pytest.fixture(autouse=True)
def _checkout_results_stay_clean():
    """Tests write under tmp_path only: the test that adds anything to the checkout's results/ fails."""
    before = _results_listing()
    yield
    added = sorted(_results_listing() - before)
    if added:
        pytest.fail(f"test wrote into the checkout: {', '.join(added)}; write under tmp_path", pytrace=False)
