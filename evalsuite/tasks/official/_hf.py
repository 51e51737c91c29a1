"""Reading the official benchmarks from Hugging Face dataset snapshots, offline, through ``datasets``.

Most users already hold these benchmarks as the snapshots lmms-eval loads (``echo840/OCRBench``,
``rootsautomation/ScreenSpot``, …). A task finds one in two ways:

- ``data_dir=DIR``: a folder as ``huggingface-cli download <repo> --repo-type dataset --local-dir DIR``
  leaves it. The adapter tells the release layout from a snapshot by what DIR holds.
- ``hf=<repo>``: the snapshot in the local Hugging Face hub cache (``$HF_HUB_CACHE``, else
  ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``), found with ``local_files_only``: the hub is
  never asked, and a repo that is not cached is one error naming the download command.

A split is the parquet shards named after it (``data/test-00000-of-00003.parquet`` …), read in name
order with ``datasets`` in streaming mode with decoding off: nothing is copied into an Arrow cache
and a media cell stays the ``{"bytes", "path"}`` it is stored as. Column names are checked against
the schema the task expects before any row is read (one error listing the missing columns).

Media bytes become files, because a content part points at a local file (so every backend sees
the same thing as for a release folder): :func:`media_file` writes them once into the task's cache,
``<cache>/<task>/media/<sha256[:2]>/<sha256><ext>``, atomically and keyed by content, so a second
run reuses them and two questions on one image share one file. A cell that is empty or whose file
cannot be written fails that sample only; the runner then checks the file as any file on disk.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

from evalsuite.task import DataLayoutError
from evalsuite.tasks.common import atomic_path, cache_dir

# Where a split's shards may sit in a snapshot, most common first (``huggingface-cli`` layouts of
# ``push_to_hub`` and of the hub's parquet conversion, and lmms-lab's per-config folders).
_SHARD_PATTERNS = ("data/{split}-*.parquet", "data/{split}/*.parquet", "{split}-*.parquet", "{split}/*.parquet",
                   "*/{split}-*.parquet", "*/{split}/*.parquet")

_IMAGE_MAGIC = ((b"\x89PNG", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"), (b"BM", ".bmp"),
                (b"II*\x00", ".tif"), (b"MM\x00*", ".tif"))
_AUDIO_MAGIC = ((b"fLaC", ".flac"), (b"OggS", ".ogg"), (b"ID3", ".mp3"))
_KNOWN_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".wav", ".flac", ".mp3",
                   ".ogg", ".m4a", ".mp4", ".mkv", ".webm"}


def download_command(repo: str) -> str:
    return f"huggingface-cli download {repo} --repo-type dataset"


def hub_cache() -> Path:
    """The hub cache as huggingface_hub resolves it, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home).expanduser() / "hub"


def hf_home() -> Path:
    return Path(os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")).expanduser()


def cached_snapshot(task: str, repo: str) -> Path:
    """The local snapshot folder of dataset ``repo``; never a network call."""
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise DataLayoutError(f"{task}: hf must name a dataset repo as owner/name, got {repo!r}")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:
        raise DataLayoutError(f"{task}: hf={repo} needs huggingface_hub (pip install datasets): {e}") from None
    try:
        path = snapshot_download(repo_id=repo, repo_type="dataset", cache_dir=str(hub_cache()), local_files_only=True)
    except Exception:  # LocalEntryNotFoundError, or a damaged cache entry
        # A download pinned to a commit leaves no refs/main: use its snapshot when it is the only one.
        snapshots = hub_cache() / f"datasets--{repo.replace('/', '--')}" / "snapshots"
        found = [p for p in snapshots.iterdir() if p.is_dir()] if snapshots.is_dir() else []
        if len(found) == 1:
            return found[0]
        raise DataLayoutError(f"{task}: dataset {repo} is not in the local Hugging Face cache ({hub_cache()}); "
                              f"fetch it once with `{download_command(repo)}` (the hub is never asked here)") from None
    return Path(path)


def locate(task: str, args: dict[str, Any], expected: str, repo: str) -> Path:
    """The folder to read: ``data_dir`` as given, or the cached snapshot of ``hf``."""
    data_dir, hf = str(args.get("data_dir") or ""), str(args.get("hf") or "")
    if data_dir and hf:
        raise DataLayoutError(f"{task}: pass either data_dir or hf, not both (got data_dir={data_dir!r}, hf={hf!r})")
    if hf:
        return cached_snapshot(task, hf)
    if not data_dir:
        raise DataLayoutError(f"{task}: no data given; pass --task-arg {task}.data_dir=DIR (a folder with {expected}, "
                              f"or a snapshot of the Hugging Face dataset {repo}) or --task-arg {task}.hf={repo}")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataLayoutError(f"{task}: data folder not found: {root} (expected {expected}, or a snapshot of {repo})")
    return root


def split_shards(root: Path, split: str) -> list[Path]:
    """The parquet shards of ``split`` under a snapshot folder, in name (= row) order; [] if none."""
    for pattern in _SHARD_PATTERNS:
        files = sorted(p for p in root.glob(pattern.format(split=split)) if p.is_file())
        if files:
            return files
    return []


def neither(task: str, root: Path, expected: str, repo: str, split: str) -> DataLayoutError:
    return DataLayoutError(f"{task}: {root} holds neither the release layout ({expected}) nor a snapshot of the "
                           f"Hugging Face dataset {repo} (parquet shards of split {split!r}, e.g. "
                           f"data/{split}-00000-of-00001.parquet)")


def check_columns(task: str, files: Sequence[Path], required: Sequence[str], repo: str) -> set[str]:
    """The columns every shard has; DataLayoutError listing the missing ones in one line."""
    import pyarrow.parquet as pq

    common: set[str] | None = None
    for f in files:
        try:
            names = set(pq.read_schema(f).names)
        except Exception as e:  # pyarrow raises its own types for damaged files
            raise DataLayoutError(f"{task}: cannot read parquet {f} ({first_line(e)})") from None
        missing = [c for c in required if c not in names]
        if missing:
            raise DataLayoutError(f"{task}: {f} lacks column(s) {', '.join(missing)} (expected the {repo} schema: "
                                  f"{', '.join(required)}; has {', '.join(sorted(names))})")
        common = names if common is None else common & names
    return common or set()


def column_values(files: Sequence[Path], column: str) -> list[Any]:
    """One column of the whole split, read alone (ids, boxes: no media bytes are touched)."""
    import pyarrow.parquet as pq

    return [v for f in files for v in pq.read_table(f, columns=[column]).column(column).to_pylist()]


def read_rows(task: str, files: Sequence[Path], split: str) -> Iterator[dict[str, Any]]:
    """The rows of the split, lazily, media cells left undecoded (``{"bytes", "path"}``)."""
    try:
        import datasets
    except ImportError as e:
        raise DataLayoutError(f"{task}: reading a Hugging Face snapshot needs datasets (pip install datasets): {e}") from None
    try:
        ds = datasets.load_dataset("parquet", data_files={split: [str(f) for f in files]}, split=split, streaming=True)
        rows = iter(ds.decode(False))
    except Exception as e:
        raise DataLayoutError(f"{task}: cannot open the parquet shards of split {split!r} ({first_line(e)})") from None
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except Exception as e:  # a damaged shard part way: nothing after it can be located
            raise DataLayoutError(f"{task}: cannot read the parquet shards of split {split!r} ({first_line(e)})") from None
        yield row


def media_file(task: str, cell: Any, kind: str, root: Path | None = None) -> str:
    """A local file holding the media of one cell; ValueError (one line) when the cell has none.

    ``cell`` is what a datasets Image/Audio column stores (``{"bytes", "path"}``), raw bytes, or a
    path string. Bytes are written into the task's media cache (see the module docstring); a cell
    with only a path names a file beside the snapshot (``root``) or an absolute one.
    """
    data: Any = None
    src: Any = None
    if isinstance(cell, dict):
        data, src = cell.get("bytes"), cell.get("path")
    elif isinstance(cell, (bytes, bytearray, memoryview)):
        data = cell
    elif isinstance(cell, str):
        src = cell
    elif cell is not None:
        raise ValueError(f"{kind} cell is a {type(cell).__name__}, expected encoded bytes")
    if data:
        return _materialize(task, bytes(data), kind, str(src or ""))
    if src:
        p = Path(str(src))
        p = p if p.is_absolute() or root is None else root / p
        if p.is_file():
            return str(p)
        raise ValueError(f"{kind} cell has no bytes and its path is not a file: {p}")
    raise ValueError(f"{kind} cell is empty (no bytes, no path)")


def _materialize(task: str, data: bytes, kind: str, name: str) -> str:
    digest = hashlib.sha256(data).hexdigest()
    suffix = Path(name).suffix.lower()
    if suffix not in _KNOWN_SUFFIXES:
        suffix = sniff_suffix(data, kind)
    out = cache_dir() / task / "media" / digest[:2] / f"{digest}{suffix}"
    if not out.is_file() or out.stat().st_size != len(data):
        try:
            with atomic_path(out) as tmp:
                Path(tmp).write_bytes(data)
        except OSError as e:
            raise ValueError(f"cannot write {kind} bytes to {out}: {first_line(e)}") from None
    return str(out)


def sniff_suffix(data: bytes, kind: str) -> str:
    """A file suffix from the leading bytes (readers sniff content, the suffix is for people)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return ".wav"
    for magic, suffix in _IMAGE_MAGIC + _AUDIO_MAGIC:
        if data.startswith(magic):
            return suffix
    if data[4:8] == b"ftyp":
        return ".m4a" if kind == "audio" else ".mp4"
    if len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0 and kind == "audio":
        return ".mp3"
    return {"image": ".img", "audio": ".audio", "video": ".video"}.get(kind, ".bin")


def first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def row_id(split: str, row: int) -> str:
    """The id of a row that carries no id of the benchmark's own: ``<split>:<row>`` (0-based)."""
    return f"{split}:{row}"


def text(value: Any) -> str:
    """A string cell as text; None (a null cell) as ''."""
    return "" if value is None else str(value)
