"""``python -m evalsuite.training``: run or resume the curriculum (`evalsuite.training.cli`)."""

from evalsuite.training.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
