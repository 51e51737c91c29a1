"""One import package: the suite installs `evalsuite` and nothing else top-level, so it sits beside
libraries that own generic names (Hugging Face's `kernels`, which transformers imports)."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(code_or_args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, *code_or_args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_distribution_installs_only_evalsuite_top_level() -> None:
    owners = importlib.metadata.packages_distributions()
    ours = sorted(name for name, dists in owners.items() if "evalsuite" in dists)
    assert ours == ["evalsuite"]


def test_no_generic_top_level_package_in_the_checkout() -> None:
    generic = [d for d in ("model", "kernels", "tasks", "reports", "training", "serving")
               if (ROOT / d / "__init__.py").exists()]
    assert generic == []


@pytest.mark.parametrize("where", ["repo-root", "elsewhere"])
def test_transformers_nemotronh_imports_beside_the_suite(where: str, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    cwd = ROOT if where == "repo-root" else tmp_path
    code = ("import evalsuite.kernels, evalsuite.model.engine\n"
            "from transformers import NemotronHForCausalLM\n"
            "from evalsuite.kernels import quantize_model\n"
            "print(NemotronHForCausalLM.__name__, quantize_model.__module__)")
    proc = _run(["-c", code], cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["NemotronHForCausalLM", "evalsuite.kernels.swap"]


def test_cli_runs_from_any_directory(tmp_path: Path) -> None:
    proc = _run(["-m", "evalsuite", "list"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("docqa", "videoqa", "audioqa", "gui", "throughput", "fp4"):
        assert name in proc.stdout


def test_wheel_holds_only_evalsuite_with_its_checkpoint_and_templates(tmp_path: Path) -> None:
    """A non-editable install must run `--model fp4` from anywhere: the committed checkpoint, the
    report templates and the results schema travel as package data."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "evalsuite", src / "evalsuite", ignore=shutil.ignore_patterns("__pycache__", "train_state*",
                                                                                         "evals"))
    proc = _run(["-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(src)],
                tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import zipfile

    (wheel,) = tmp_path.glob("evalsuite-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"evalsuite"}
    for needed in ("evalsuite/model/checkpoints/tiny/model.safetensors", "evalsuite/model/checkpoints/tiny/config.json",
                   "evalsuite/reports/templates/run_report.html", "evalsuite/schema/results.schema.json"):
        assert needed in names
