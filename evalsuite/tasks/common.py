"""Shared plumbing for the synthetic generators: split seeds, the media cache, atomic file writes.

Seeds: sample ``i`` of split ``s`` of task ``t`` uses ``split_seed(t, s, i)``. The eval split draws
from [EVAL_BASE, EVAL_BASE + SPLIT_SPAN) and the train split from [TRAIN_BASE, TRAIN_BASE +
SPLIT_SPAN); the ranges are disjoint, so no eval sample can ever be regenerated from a train seed
(a test asserts this). The task name is mixed in so two tasks never share a random stream.

Cache: generated media go under ``cache_dir()/<task>/v<version>/<split>/...``; the version is in the
path, so a generator change that bumps the task version never reuses stale files. Files are written
to a temporary name and renamed, so a killed generator leaves no half-written media behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

SPLITS = ("train", "eval")
SPLIT_SPAN = 1 << 40
TRAIN_BASE = 0
EVAL_BASE = 1 << 41


def split_seed(task: str, split: str, index: int) -> int:
    """The deterministic seed of sample ``index`` of ``split``; disjoint ranges per split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not 0 <= index < SPLIT_SPAN:
        raise ValueError(f"sample index must be in [0, {SPLIT_SPAN}), got {index}")
    base = EVAL_BASE if split == "eval" else TRAIN_BASE
    salt = int.from_bytes(hashlib.sha256(task.encode()).digest()[:4], "little")
    return base + ((index * 2654435761 + salt) % SPLIT_SPAN)


def seed_split(seed: int) -> str:
    """Which split a seed belongs to (for the no-overlap test and for sanity checks)."""
    if EVAL_BASE <= seed < EVAL_BASE + SPLIT_SPAN:
        return "eval"
    if TRAIN_BASE <= seed < TRAIN_BASE + SPLIT_SPAN:
        return "train"
    raise ValueError(f"seed {seed} is in no split")


def cache_dir() -> Path:
    """Root of generated data: $EVALSUITE_CACHE, else ~/.cache/evalsuite."""
    root = os.environ.get("EVALSUITE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "evalsuite")
    return Path(root)


def task_cache(task: str, version: str, split: str) -> Path:
    p = cache_dir() / task / f"v{version}" / split
    p.mkdir(parents=True, exist_ok=True)
    return p


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary path beside ``final`` (same suffix); rename it into place on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=final.suffix, dir=final.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shared cache must be readable by a server or other users
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# What a media part's text form is called when a prompt carries it instead of the media (the text
# stage of training, and a cascade whose OCR/ASR specialists hand text to a text-only reasoner).
TEXT_FORM_LABELS = {"image": "Text in the image", "video": "Events in the video", "audio": "Transcript of the audio"}


def text_form_prompt(kind: str, text_form: str, question: str) -> str:
    """The text-only prompt of a media question: the media's text form, then the question."""
    if kind not in TEXT_FORM_LABELS:
        raise ValueError(f"media kind must be one of {sorted(TEXT_FORM_LABELS)}, got {kind!r}")
    return f"{TEXT_FORM_LABELS[kind]}:\n{text_form}\n\n{question}"
