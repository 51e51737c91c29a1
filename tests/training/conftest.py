import pytest

from evalsuite.model.omni import build_omni
from evalsuite.training.sources import Pools


@pytest.fixture(scope="module")
def pools():
    """Train pools small enough to list in a test (the curriculum's hold thousands of questions)."""
    small = {"docqa": 8, "gui": 4, "videoqa": 6, "audioqa": 6, "docqa-wide": 12, "gui-wide": 6}
    return Pools(build_omni("tiny").config, small)
