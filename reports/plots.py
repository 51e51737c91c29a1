"""Matplotlib figures rendered to inline base64 PNG data URIs (pages work offline, no CDN)."""

from __future__ import annotations

import base64
import io
import math
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def fig_to_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def bar_with_ci(labels: Sequence[str], values: Sequence[float | None], cis: Sequence[tuple[float, float] | None],
                *, ylabel: str = "accuracy", title: str = "") -> str:
    fig, ax = plt.subplots(figsize=(max(3.0, 1.1 * len(labels) + 1.5), 3.0))
    xs = range(len(labels))
    vals = [v if v is not None and not math.isnan(v) else 0.0 for v in values]
    lo = [max(0.0, v - c[0]) if c else 0.0 for v, c in zip(vals, cis)]
    hi = [max(0.0, c[1] - v) if c else 0.0 for v, c in zip(vals, cis)]
    ax.bar(xs, vals, color="#4c72b0", yerr=[lo, hi], capsize=4)
    ax.set_xticks(list(xs), labels, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.05 if all(v <= 1.0 for v in vals) else None)
    if title:
        ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return fig_to_uri(fig)
