"""``python -m evalsuite.lmeval``: lm-eval's own CLI with the suite's models registered."""

from evalsuite.lmeval import main

raise SystemExit(main())
