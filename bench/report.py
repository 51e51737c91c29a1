"""Turn a pytest-benchmark JSON file into a BENCHMARKS.md section.

    python bench/report.py .benchmarks/latest.json --section "Media decoding" --command "make bench"

Each group becomes a table: median time, ops/s, any throughput figures the benchmark recorded in
``extra_info`` (frames/s, GB/s…), and the ratio against the group's ``role: peer`` entry measured in
the same run. The section (between ``<!-- bench:NAME -->`` markers) is replaced in place, so
re-running a benchmark updates its table and leaves the others alone. Device and date are recorded.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
from datetime import date
from pathlib import Path

from evalsuite.env import cpu_name, gpu_info

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
    text = md.read_text() if md.exists() else "# Benchmarks\n\nMeasured numbers only; each section names its device, date and command.\n"
    tag = re.sub(r"[^a-z0-9]+", "-", section.lower()).strip("-")
    block = f"<!-- bench:{tag} -->\n## {section}\n\n{body}\n<!-- /bench:{tag} -->"
    pat = re.compile(rf"<!-- bench:{tag} -->.*?<!-- /bench:{tag} -->", re.S)
    text = pat.sub(lambda _: block, text) if pat.search(text) else text.rstrip() + "\n\n" + block + "\n"
    md.write_text(text)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("json")
    p.add_argument("--section", required=True)
    p.add_argument("--command", required=True)
    p.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    a = p.parse_args()
    data = json.loads(Path(a.json).read_text())
    body = f"Device: {device_line()}. Date: {date.today().isoformat()}. Command: `{a.command}`.\n\n" + tables(data)
    update(Path(a.out), a.section, body)
    print(body)


if __name__ == "__main__":
    main()
