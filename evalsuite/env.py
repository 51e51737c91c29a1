"""Provenance of a run: code version, software versions, hardware (GPU via NVML, or null)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "numpy", "av", "pillow", "transformers", "safetensors", "triton", "evalsuite")
REPO_ROOT = Path(__file__).resolve().parent.parent


DEVICE_RE = re.compile(r"auto|cpu|cuda(:\d+)?")  # the device names a run or training accepts


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a CUDA device is present, else ``cpu``; any other name unchanged."""
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def folder_problem(flag: str, value: str | Path, expected: str, folder: Path | None = None) -> str | None:
    """Why files cannot be written into ``folder`` (default: the path ``value`` given to ``flag``), as
    the one-line error a CLI prints, e.g. ``--out x/y: x is a file; expected a folder to write into``;
    None when they can (creating it and its parents if need be)."""
    given = Path(value)
    folder = given if folder is None else folder
    for f in (folder, *folder.absolute().parents):
        if f.exists():
            where = f"{flag} {value}" if f == given else f"{flag} {value}: {f}"
            if not f.is_dir():
                return f"{where} is a file; expected {expected}"
            return None if os.access(f, os.W_OK | os.X_OK) else f"{where} is not writable; expected {expected}"
    return None


def git_state(root: Path = REPO_ROOT) -> tuple[str | None, bool | None]:
    """(HEAD sha, whether tracked files differ from it); (None, None) outside a git checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None, None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=10
        )
        return sha.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def cpu_name() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def gpu_info() -> dict[str, Any] | None:
    """Name, count and driver from NVML; None (not an empty dict) when NVML or a GPU is absent."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        count = pynvml.nvmlDeviceGetCount()
        if count == 0:
            return None
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
        driver = pynvml.nvmlSystemGetDriverVersion()
        as_str = lambda v: v.decode() if isinstance(v, bytes) else str(v)  # noqa: E731
        return {"name": as_str(name), "count": int(count), "driver": as_str(driver)}
    except Exception:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment(command: list[str] | None, seed: int, wall_time_s: float) -> dict[str, Any]:
    sha, dirty = git_state()
    pk = package_versions()
    return {
        "git_sha": sha,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "torch": pk.get("torch"),
        "packages": pk,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu_info(),
        "command": " ".join(command if command is not None else sys.argv),
        "seed": int(seed),
        "wall_time_s": round(float(wall_time_s), 3),
    }
