"""Makes ``runfolders`` (hand-written run folders for compare/gate/leaderboard tests) importable."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
