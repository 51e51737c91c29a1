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
                *, ylabel: str = "accuracy", title: str = "", chance: Sequence[float | None] | None = None) -> str:
    """Bars with CI whiskers; with ``chance``, each task's chance level as a dashed black segment
    across its bar, and bars whose interval contains it drawn grey."""
    fig, ax = plt.subplots(figsize=(max(3.0, 1.1 * len(labels) + 1.5), 3.0))
    xs = range(len(labels))
    vals = [v if v is not None and not math.isnan(v) else 0.0 for v in values]
    lo = [max(0.0, v - c[0]) if c else 0.0 for v, c in zip(vals, cis)]
    hi = [max(0.0, c[1] - v) if c else 0.0 for v, c in zip(vals, cis)]
    levels = list(chance) if chance is not None else [None] * len(labels)
    colours = ["#999999" if ch is not None and ci and ci[0] <= ch <= ci[1] else "#4c72b0" for ch, ci in zip(levels, cis)]
    ax.bar(xs, vals, color=colours, yerr=[lo, hi], capsize=4)
    drawn = False
    for x, ch in zip(xs, levels):
        if ch is not None:
            ax.hlines(ch, x - 0.45, x + 0.45, colors="black", linestyles="dashed", lw=1.2,
                      label=None if drawn else "chance")
            drawn = True
    if drawn:
        ax.legend(fontsize=7, loc="upper right")
    ax.set_xticks(list(xs), labels, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.05 if all(v <= 1.0 for v in vals) else None)
    if title:
        ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return fig_to_uri(fig)


def pareto_plot(points: Sequence[dict], front: Sequence[str], *, x_key: str, y_key: str, xlabel: str, ylabel: str,
                title: str = "") -> str:
    """Load points as (x, y) markers (closed loop: circles, open loop: triangles), labelled, with the
    Pareto front (the points no other beats on both axes) joined by a line."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for kind, marker, colour in (("closed", "o", "#4c72b0"), ("open", "^", "#dd8452")):
        pts = [p for p in points if p.get("kind") == kind and p.get(x_key) is not None and p.get(y_key) is not None]
        if pts:
            ax.scatter([p[x_key] for p in pts], [p[y_key] for p in pts], marker=marker, color=colour, zorder=3,
                       label="closed loop (concurrency)" if kind == "closed" else "open loop (rate)")
            for p in pts:
                ax.annotate(str(p.get("label", "")), (p[x_key], p[y_key]), textcoords="offset points", xytext=(4, 4),
                            fontsize=7)
    by_label = {p.get("label"): p for p in points}
    fp = sorted((by_label[k] for k in front if k in by_label), key=lambda p: p[x_key])
    if len(fp) > 1:
        ax.plot([p[x_key] for p in fp], [p[y_key] for p in fp], color="#55a868", lw=1.5, zorder=2, label="Pareto front")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig_to_uri(fig)


def latency_boxplots(groups: dict[str, dict[str, list[float]]], metrics: Sequence[tuple[str, str]]) -> str:
    """One panel per metric (key, title), one box per group (load point): box = quartiles, whiskers at
    the 1st and 99th percentiles, milliseconds on the axis."""
    labels = list(groups)
    cols = 2
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(min(12.0, max(7.0, 0.5 * len(labels) * cols + 2)), 3.0 * rows),
                             squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    for ax, (key, title) in zip(axes.flat, metrics):
        data = [[1000.0 * v for v in groups[g].get(key, [])] or [math.nan] for g in labels]
        ax.boxplot(data, whis=(1, 99), showfliers=False)
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=45, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("ms")
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig_to_uri(fig)
