"""Turn a pytest-benchmark JSON file into a BENCHMARKS.md section.

    python bench/report.py .benchmarks/latest.json --section "Media decoding" --command "make bench"

Each group becomes a table: median time, ops/s, any throughput figures the benchmark recorded in
``extra_info`` (frames/s, GB/s…), and the ratio against the group's ``role: peer`` entry measured in
the same run. The section (between ``<!-- bench:NAME -->`` markers) is replaced in place, so
re-running a benchmark updates its table and leaves the others alone. Device and date are recorded.
With ``--skip-missing`` a JSON file that does not exist (pytest-benchmark writes none when every
benchmark was skipped or deselected) is one line and exit 0, the section left as it is.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import sys
from datetime import date
from pathlib import Path

from evalsuite.env import cpu_name, gpu_info
from evalsuite.results import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent


def device_line() -> str:
    gpu = gpu_info()
    cpu = f"{cpu_name() or platform.processor()} ({__import__('os').cpu_count()} cores)"
    return f"{gpu['name']} ×{gpu['count']} + {cpu}" if gpu else f"CPU only: {cpu}"


def tables(data: dict) -> str:
    groups: dict[str, list[dict]] = {}
    for b in data["benchmarks"]:
        groups.setdefault(b.get("group") or "(ungrouped)", []).append(b)
    out = []
    for g, rows in groups.items():
        peer = next((r for r in rows if r.get("extra_info", {}).get("role") == "peer"), None)
        extra_keys = sorted({k for r in rows for k in r.get("extra_info", {}) if k not in ("role", "note")})
        head = ["benchmark", "median", "ops/s", *extra_keys, f"speed vs peer ({peer['name'] if peer else '–'})"]
        out.append(f"**{g}**\n")
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for r in rows:
            med = r["stats"]["median"]
            ratio = f"{peer['stats']['median'] / med:.2f}×" if peer else "–"
            ex = [_fmt(r.get("extra_info", {}).get(k)) for k in extra_keys]
            out.append(f"| {r['name']} | {_time(med)} | {1.0 / med:,.2f} | " + " | ".join(ex) + (" | " if ex else "") + f"{ratio} |")
        notes = [r["extra_info"]["note"] for r in rows if r.get("extra_info", {}).get("note")]
        for n in notes:
            out.append(f"\n{n}")
        out.append("")
    return "\n".join(out)


def _time(s: float) -> str:
    return f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def _fmt(v) -> str:
    if v is None:
        return "–"
    return f"{v:,.2f}" if isinstance(v, float) else str(v)


def update(md: Path, section: str, body: str) -> None:
    text = md.read_text(encoding="utf-8") if md.exists() else "# Benchmarks\n\nMeasured numbers only; each section names its device, date and command.\n"
    tag = re.sub(r"[^a-z0-9]+", "-", section.lower()).strip("-")
    block = f"<!-- bench:{tag} -->\n## {section}\n\n{body}\n<!-- /bench:{tag} -->"
    pat = re.compile(rf"<!-- bench:{tag} -->.*?<!-- /bench:{tag} -->", re.S)
    text = pat.sub(lambda _: block, text) if pat.search(text) else text.rstrip() + "\n\n" + block + "\n"
    atomic_write_text(md, text)  # a failed write leaves the old file whole


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  (one line, no usage block)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def load_results(path: Path) -> dict:
    """The pytest-benchmark JSON at ``path``; `ValueError` saying what was expected when it is missing,
    not JSON, or holds no benchmark with a name and a positive median time."""
    what = "expected a pytest-benchmark JSON file (pytest --benchmark-json)"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: {what}: {exc.strerror or exc}") from None
    except ValueError as exc:  # JSONDecodeError, and bytes that are not UTF-8
        raise ValueError(f"{path}: {what}: not valid JSON ({str(exc).splitlines()[0]})") from None
    benchmarks = data.get("benchmarks") if isinstance(data, dict) else None
    if not isinstance(benchmarks, list) or not benchmarks:
        raise ValueError(f"{path}: {what} with a non-empty 'benchmarks' list")
    for i, b in enumerate(benchmarks):
        b = b if isinstance(b, dict) else {}
        stats = b.get("stats") if isinstance(b.get("stats"), dict) else {}
        med = stats.get("median")
        timed = isinstance(med, (int, float)) and not isinstance(med, bool) and math.isfinite(med) and med > 0
        if not isinstance(b.get("name"), str) or not timed or not isinstance(b.get("extra_info", {}), dict):
            raise ValueError(f"{path}: {what}: benchmarks[{i}] lacks a 'name', a positive 'stats.median' or an "
                             "object 'extra_info'")
    return data


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="python bench/report.py", description=__doc__.splitlines()[0])
    p.add_argument("json")
    p.add_argument("--section", required=True)
    p.add_argument("--command", required=True)
    p.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    p.add_argument("--skip-missing", action="store_true",
                   help="a missing JSON file (no benchmark ran) leaves the section as it is and exits 0")
    a = p.parse_args(argv)
    if a.skip_missing and not Path(a.json).exists():
        print(f"{p.prog}: {a.json} was not written (no benchmark ran: skipped or deselected); "
              f"section {a.section!r} of {a.out} left as it is")
        return 0
    try:
        data = load_results(Path(a.json))
    except ValueError as exc:
        p.error(str(exc))
    out = Path(a.out)
    if out.is_dir():
        p.error(f"--out {out} is a directory; expected the Markdown file to update")
    body = f"Device: {device_line()}. Date: {date.today().isoformat()}. Command: `{a.command}`.\n\n" + tables(data)
    try:
        update(out, a.section, body)
    except (OSError, UnicodeDecodeError) as exc:
        p.error(f"--out {out}: cannot update it: {exc}")
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
