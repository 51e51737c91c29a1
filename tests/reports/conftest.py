"""Makes ``runfolders`` (tests/evalsuite: hand-written run folders) importable from report tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "evalsuite"))
