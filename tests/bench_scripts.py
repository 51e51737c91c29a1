"""Loads a script of bench/ as a module, for the tests of the benchmarks and studies there, and runs
its ``main`` expecting the one-line refusal of a bad option."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load_bench_script(name: str) -> ModuleType:
    """``bench/<name>.py`` as a fresh module called ``bench_<name>`` (registered in sys.modules, as
    dataclasses need to resolve its annotations)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def one_line_exit_2(main: Callable[[list[str]], Any], argv: list[str], capsys: Any, prefix: str = "") -> str:
    """``main(argv)`` exits 2 with one line on stderr and nothing on stdout; that line, less ``prefix``."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    return err.rstrip("\n").removeprefix(prefix)
