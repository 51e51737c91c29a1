"""Makes ``kernels_toy_model`` (a tiny model with NemotronH module names) importable."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
