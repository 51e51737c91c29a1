"""The log is the contract: ``results.json`` plus ``samples/<task>.jsonl`` in a run folder.

- ``samples/<task>.jsonl``: one :class:`SampleResult` per line, appended as each sample finishes,
  flushed and fsynced, so a killed run loses at most the line it was writing. Readers drop a torn
  last line; when a run resumes, the file is first cut back to its last whole line.
- ``results.json``: written atomically (temp file in the same folder, fsync, rename) after each task
  and at the end, validated against ``schema/results.schema.json`` (``SCHEMA_VERSION``).

Reports, comparisons and the gate read only these files (``load_run``), never live objects. The
comparison and the gate write their own files in turn, ``compare.json`` and ``gate.json`` (versioned,
validated against ``schema/compare.schema.json`` and ``schema/gate.schema.json``), which their pages
read (``load_doc``).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from evalsuite.types import LOCATION_KEYS, SampleResult

SCHEMA_VERSION = "1.2"  # 1.1: the throughput task's load points; 1.2: status "interrupted", status_reasons, a task's chance level
SCHEMA_DIR = Path(__file__).parent / "schema"
SCHEMA_PATH = SCHEMA_DIR / "results.schema.json"
COMPARE_SCHEMA_VERSION = "1.2"  # 1.1: a task's excluded samples, a run's status_reasons; 1.2: lower_is_better
GATE_SCHEMA_VERSION = "1.2"  # 1.2: a task's p_worse_floor
VERSIONS = {"results": SCHEMA_VERSION, "compare": COMPARE_SCHEMA_VERSION, "gate": GATE_SCHEMA_VERSION}
CONFIG_KEYS = ("version", "args", "media")  # what makes two runs of a task comparable


class RunFormatError(ValueError):
    """A run folder or results file is not what evalsuite writes."""


# ---- JSON helpers -------------------------------------------------------------------------------
def _clean(obj: Any) -> Any:
    """NaN/inf are not JSON: write them as null."""
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def dumps(obj: Any, **kw: Any) -> str:
    return json.dumps(_clean(obj), ensure_ascii=False, allow_nan=False, default=str, **kw)


def kept_file_mode(path: str | os.PathLike[str]) -> int:
    """The permission bits a file rewritten at ``path`` by rename keeps: its own where it exists,
    else a new file's under the process umask (read from /proc where it can be: setting the umask to
    read it would change it for every thread for that moment)."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        pass
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            umask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        umask = os.umask(0)
        os.umask(umask)
    return 0o666 & ~umask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results and published pages must be readable
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, dumps(obj, indent=2) + "\n")


# ---- sample logs --------------------------------------------------------------------------------
def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read whole lines; a torn final line (a write cut short) is skipped."""
    return [row for _, row in _numbered_jsonl(path)]


def _numbered_jsonl(path: str | os.PathLike[str]) -> list[tuple[int, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append((i + 1, json.loads(line)))
        except ValueError:  # not JSON, or not UTF-8
            if i == len(lines) - 1:  # torn tail: the run was killed mid-write
                break
            raise RunFormatError(f"{path}:{i + 1}: not a JSON line (expected one sample result per line)") from None
    return rows


def repair_jsonl(path: str | os.PathLike[str]) -> None:
    """Make appends start on a fresh line: a last line that is whole JSON but lacks its newline gets
    it (the readers count that line, so it must stay); a torn one (a kill mid-write) is cut off."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb+") as f:
        data = f.read()
        if not data or data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1
        try:
            json.loads(data[keep:])
        except ValueError:  # torn
            f.truncate(keep)
        else:
            f.seek(0, os.SEEK_END)
            f.write(b"\n")
        f.flush()
        os.fsync(f.fileno())


_SAMPLE_FIELDS: dict[str, tuple[type, ...]] = {  # a sample result's fields and the JSON types they may hold
    "id": (str, int), "task": (str,), "prediction": (str, type(None)), "score": (int, float, type(None)),
    "scores": (dict,), "metadata": (dict,), "error": (str, type(None)), "usage": (dict,), "media": (list,),
    "prompt": (str,), "choices": (list, type(None)),
}
_JSON_NAMES = {str: "a string", int: "a number", float: "a number", dict: "an object", list: "a list", type(None): "null"}
_SAMPLE_REQUIRED = ("id", "task", "target", "prediction", "score")


def sample_from_row(row: Any, where: str) -> SampleResult:
    """A sample result from one parsed JSON line; RunFormatError naming ``where`` (file:line) and the
    field when the line is JSON but not a sample result (a list, a missing id, a score of "high")."""
    if not isinstance(row, dict):
        raise RunFormatError(f"{where}: expected a sample result object, got {type(row).__name__}")
    missing = [k for k in _SAMPLE_REQUIRED if k not in row]
    if missing:
        raise RunFormatError(f"{where}: sample result lacks {', '.join(missing)}")
    for k, types in _SAMPLE_FIELDS.items():
        v = row.get(k)
        if k in row and (not isinstance(v, types) or isinstance(v, bool)):
            want = " or ".join(dict.fromkeys(_JSON_NAMES[t] for t in types))
            raise RunFormatError(f"{where}: field {k!r} should be {want}, got {json.dumps(v)[:40]}")
    if any(not isinstance(m, dict) for m in row.get("media") or []):
        raise RunFormatError(f"{where}: field 'media' should be a list of objects, got {json.dumps(row['media'])[:40]}")
    if isinstance(row["score"], float) and not math.isfinite(row["score"]):
        raise RunFormatError(f"{where}: field 'score' should be a finite number or null, got {row['score']}")
    r = SampleResult.from_dict(row)
    r.id = str(r.id)
    return r


def read_samples(path: str | os.PathLike[str]) -> dict[str, SampleResult]:
    """Sample results by id; a later line for the same id replaces an earlier one."""
    out: dict[str, SampleResult] = {}
    for lineno, row in _numbered_jsonl(path):
        r = sample_from_row(row, f"{path}:{lineno}")
        out[r.id] = r
    return out


class SampleLog:
    """Append-only, fsynced JSON-lines writer for one task's sample results."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_jsonl(self.path)
        self._f = open(self.path, "a", encoding="utf-8")

    def append(self, result: SampleResult) -> None:
        self._f.write(dumps(result.to_dict()) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "SampleLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- results.json, compare.json, gate.json ------------------------------------------------------
@lru_cache(maxsize=None)
def schema(kind: str = "results") -> dict[str, Any]:
    if kind not in VERSIONS:
        raise ValueError(f"no schema for {kind!r} (have: {', '.join(VERSIONS)})")
    return json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text())


def validate(doc: dict[str, Any], kind: str = "results", path: str | os.PathLike[str] | None = None) -> None:
    """Raise RunFormatError with the first schema violation (the file, where in it, the message)."""
    import jsonschema

    name = str(path) if path is not None else f"{kind}.json"
    version = doc.get("schema_version") if isinstance(doc, dict) else None
    ours = VERSIONS[kind].split(".")[0]
    if isinstance(version, str) and version.split(".")[0].isdigit() and version.split(".")[0] != ours:
        raise RunFormatError(f"{name} is {kind} schema {version}, this evalsuite reads {ours}.x "
                             f"({'a newer' if int(version.split('.')[0]) > int(ours) else 'an older'} "
                             f"evalsuite wrote it)")
    validator = jsonschema.Draft202012Validator(schema(kind))
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise RunFormatError(f"{name} does not match schema {VERSIONS[kind]} at {where}: {e.message}")


def load_doc(path: str | os.PathLike[str], kind: str) -> dict[str, Any]:
    """A ``compare.json`` or ``gate.json`` (the file, or the folder holding it), validated."""
    p = Path(path)
    if p.is_dir():
        p = p / f"{kind}.json"
    if not p.exists():
        raise RunFormatError(f"no {kind}.json at {p} (expected the output folder of 'evalsuite {kind}')")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except ValueError as e:  # not JSON, or not UTF-8
        raise RunFormatError(f"{p} is not valid JSON: {e}") from None
    validate(doc, kind, p)
    return doc


def flatten(prefix: str, v: Any, out: dict[str, Any]) -> None:
    if isinstance(v, dict):
        for k, x in v.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), x, out)
    else:
        out[prefix] = v


def config_differences(task_a: dict[str, Any], task_b: dict[str, Any]) -> list[str]:
    """Differences in version, args and media settings between two results.json task entries. Where
    the data lives is not a setting: results written before it moved to ``data_location`` still
    hold ``data_dir`` / ``media_dir`` in their args, which are left out here too."""
    fa: dict[str, Any] = {}
    fb: dict[str, Any] = {}
    for key in CONFIG_KEYS:
        flatten(key, task_a.get(key), fa)
        flatten(key, task_b.get(key), fb)
    for k in [f"args.{x}" for x in LOCATION_KEYS]:
        fa.pop(k, None)
        fb.pop(k, None)
    return [f"{k}: {fa.get(k)!r} != {fb.get(k)!r}" for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]


# What names a model in a run (its results' ``model``): two runs with these equal ran the same weights
# the same way; other fields (where the weights were read from, batch size) may differ. A server
# (``openai:``) is one URL for every model it serves: its ``served_model`` counts too, where given.
MODEL_IDENTITY = ("name", "backend", "precision", "weights_sha256")
SERVED_MODEL = "served_model"


def model_identity(model: dict[str, Any]) -> dict[str, Any]:
    ident = {k: model.get(k) for k in MODEL_IDENTITY}
    if model.get(SERVED_MODEL) is not None:  # absent elsewhere: other backends' hashes stay as they were
        ident[SERVED_MODEL] = model[SERVED_MODEL]
    return ident


def json_value(x: Any) -> Any:
    """``x`` as it reads back from a results file (tuples as lists, keys as strings, NaN as null):
    for comparing a value in memory with one from a file."""
    return json.loads(dumps(x))


def other_data(a: SampleResult, b_target: Any, b_error: Any = None) -> bool:
    """Whether a sample's result ``a`` and another reading of the same id (its target, its error)
    come from other data: both have a target and the targets differ. A sample that could not be
    read (a missing media file: no target, or an error) says nothing about the data."""
    if a.error is not None or b_error is not None or a.target is None or b_target is None:
        return False
    return json_value(a.target) != json_value(b_target)


def results_path(run: str | os.PathLike[str]) -> Path:
    p = Path(run)
    return p if p.name.endswith(".json") else p / "results.json"


def load_results(run: str | os.PathLike[str]) -> dict[str, Any]:
    path = results_path(run)
    if not path.exists():
        raise RunFormatError(f"no results.json at {path} (expected a run folder written by 'evalsuite run')")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:  # not JSON, or not UTF-8
        raise RunFormatError(f"{path} is not valid JSON: {e}") from None
    validate(data, path=path)
    return data


def load_run(run: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, list[SampleResult]]]:
    """results.json and every task's sample results (in file order, latest line per id)."""
    results = load_results(run)
    base = results_path(run).parent
    samples: dict[str, list[SampleResult]] = {}
    for name, task in results["tasks"].items():
        rel = task.get("samples_file") or f"samples/{name}.jsonl"
        samples[name] = list(read_samples(base / rel).values())
    return results, samples


def iter_scored(results: Iterable[SampleResult]) -> list[SampleResult]:
    return [r for r in results if r.error is None and r.score is not None]


# ---- what a run's speed was measured on ----------------------------------------------------------
def hardware(results: dict[str, Any]) -> tuple[Any, ...]:
    """What a run's speed was measured on: the device, the CPU model and core count, the GPU model and
    count; for a remote model (``openai:``, device "remote") also the server: its base URL, the served
    model (a gateway may route names to other machines) and the device an evalsuite server reports."""
    env = results.get("environment") or {}
    gpu = env.get("gpu") or {}
    model = results["model"]
    server = None
    if model.get("device") == "remote":
        info = model.get("server") if isinstance(model.get("server"), dict) else {}
        server = (model.get("base_url") or model.get("name"), model.get("served_model"), info.get("device"))
    return (model.get("device"), env.get("cpu"), env.get("cpu_count"), gpu.get("name"), gpu.get("count"), server)


def describe_hardware(results: dict[str, Any]) -> str:
    device, cpu, cores, gpu, count, server = hardware(results)
    text = f"device {device}, cpu {cpu}" + (f", cpu_count {cores}" if cores is not None else "")
    text += f", gpu {count} x {gpu}" if gpu else ""
    if server is not None:
        url, served, on = server
        text += f", server {url} model {served}" + (f" on {on}" if on else "")
    return text


# run settings the efficiency figures depend on (the model's batch size, an openai: client's cap on
# requests in flight, the number of processes under torchrun); compared where both runs record them
SPEED_SETTINGS = ("batch_size", "max_concurrency", "processes")


def settings_differences(a: dict[str, Any], b: dict[str, Any], *, mixed_matches_mixed: bool = False) -> list[str]:
    """The speed settings two runs (their results.json) both record with different values: the
    model's own, else the run's (``environment.batch_size``, the runner's --batch-size, recorded for
    every backend: an openai: client sends that many requests at once, hf batches them). A setting
    recorded as null (a folder whose results ran at two batch sizes or process counts) is "mixed",
    which matches nothing (``mixed_matches_mixed``: another mixed one, as repeats of one side may be);
    one not recorded at all (results written before it was) is not compared."""
    def value(run: dict[str, Any], k: str) -> Any:
        env = run.get("environment") or {}
        if k in env and env[k] is None:  # the run's own record wins over the model's current setting
            return "mixed"  # recorded as none: the folder's results ran at more than one
        v = (run.get("model") or {}).get(k)
        return v if v is not None else env.get(k)

    out = []
    for k in SPEED_SETTINGS:
        va, vb = value(a, k), value(b, k)
        if va is not None and vb is not None and (va != vb or (va == "mixed" and not mixed_matches_mixed)):
            out.append(f"{k} {va} vs {vb}")
    return out


# ---- the throughput task's SLO claims, as its results state them ------------------------------
def evidence_mark(evidence: dict[str, Any] | None) -> str:
    """'' when a point's SLO claim is proven (or unknown: older results), else a short mark, e.g.
    ``p99 unproven: n=80, 0 over → p96.3 at 95% (needs ≥ 299 requests with none over)``."""
    if not isinstance(evidence, dict) or evidence.get("proven") is not False:
        return ""
    parts = []
    claim = float(evidence.get("claimable_percentile") or 0.0)
    pct = float(evidence.get("percentile") or 99.0)
    if claim < pct:
        conf = 100 * float(evidence.get("confidence") or 0.95)
        parts.append(f"p{pct:g} unproven: n={evidence.get('n')}, {evidence.get('n_over')} over → p{claim:.1f} at "
                     f"{conf:g}% (needs ≥ {evidence.get('n_needed')} requests with none over)")
    if evidence.get("window_short"):
        parts.append(f"rate unproven: arrivals spanned {float(evidence.get('window_s') or 0.0):.3g} s, under the "
                     f"{float(evidence.get('window_needed_s') or 0.0):.3g} s that shows a 20% overload")
    return "; ".join(parts)


def at_slo_marks(search: dict[str, Any] | None) -> list[str]:
    """What keeps a throughput task's "at SLO" figure from being a converged, proven result, from its
    results' ``slo_search``: a search that passed at the top of its range (``bounded``: capped by
    ``search_max``, ``--limit`` or the rate range, the true limit may be higher), and the best point's
    `evidence_mark`. Empty for a converged search on a proven point (and for results that predate the
    evidence, but for ``bounded``)."""
    if not isinstance(search, dict) or search.get("status") not in ("converged", "bounded"):
        return []
    marks = []
    if search.get("status") == "bounded":
        marks.append(f"bounded: still meets the SLO at the top of the search range ({search.get('best')}); "
                     "the highest load that meets it may be higher")
    mark = evidence_mark((search.get("best_point") or {}).get("slo_evidence"))
    return marks + ([mark] if mark else [])
