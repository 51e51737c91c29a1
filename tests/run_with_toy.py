"""`python tests/run_with_toy.py run …`: the CLI with the toy test task registered (for subprocess and torchrun tests)."""
import sys

import toytask  # noqa: F401

from evalsuite.cli import main

sys.exit(main(sys.argv[1:]))
