"""Matplotlib figures rendered to inline base64 PNG data URIs (pages work offline, no CDN)."""

from __future__ import annotations

import base64
import io
import math
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
# labels are model, task and run names as users wrote them: "$5 model" or "a_$b$" is text, not mathtext
# (which would misrender it or raise ValueError and lose the whole page)
matplotlib.rcParams["text.parse_math"] = False
import matplotlib.pyplot as plt  # noqa: E402


def fig_to_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def bar_with_ci(labels: Sequence[str], values: Sequence[float | None], cis: Sequence[tuple[float, float] | None],
                *, ylabel: str = "accuracy", title: str = "", chance: Sequence[float | None] | None = None) -> str:
    """`bar_figure` as a PNG data URI."""
    return fig_to_uri(bar_figure(labels, values, cis, ylabel=ylabel, title=title, chance=chance))


def bar_figure(labels: Sequence[str], values: Sequence[float | None], cis: Sequence[tuple[float, float] | None],
               *, ylabel: str = "accuracy", title: str = "", chance: Sequence[float | None] | None = None):
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
    # a negative figure (lm-eval's Matthews correlation) is drawn below 0, not cut off by the axis
    ends = vals + [float(c[0]) for c in cis if c] + [float(c[1]) for c in cis if c]
    bottom = min([0.0, *ends])
    ax.set_ylim(bottom * 1.05 if bottom < 0 else 0.0, 1.05 if all(v <= 1.0 for v in ends) else None)
    if bottom < 0:
        ax.axhline(0.0, color="black", lw=0.8)
    if title:
        ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return fig


def pareto_plot(points: Sequence[dict], front: Sequence[str], *, x_key: str, y_key: str, xlabel: str, ylabel: str,
                title: str = "") -> str:
    """`pareto_figure` as a PNG data URI."""
    return fig_to_uri(pareto_figure(points, front, x_key=x_key, y_key=y_key, xlabel=xlabel, ylabel=ylabel,
                                    title=title))


def pareto_figure(points: Sequence[dict], front: Sequence[str], *, x_key: str, y_key: str, xlabel: str, ylabel: str,
                  title: str = ""):
    """Load points as (x, y) markers (closed loop: circles, open loop: triangles), each labelled where
    the label covers no other label or marker, with the Pareto front (the points no other beats on both
    axes) joined by a line and the legend outside the axes."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    placed: list[dict] = []
    for kind, marker, colour in (("closed", "o", "#4c72b0"), ("open", "^", "#dd8452")):
        pts = [p for p in points if p.get("kind") == kind and p.get(x_key) is not None and p.get(y_key) is not None]
        if pts:
            ax.scatter([p[x_key] for p in pts], [p[y_key] for p in pts], marker=marker, color=colour, zorder=3,
                       label="closed loop (concurrency)" if kind == "closed" else "open loop (rate)")
            placed += pts
    by_label = {p.get("label"): p for p in points}
    fp = sorted((by_label[k] for k in front if k in by_label), key=lambda p: p[x_key])
    if len(fp) > 1:
        ax.plot([p[x_key] for p in fp], [p[y_key] for p in fp], color="#55a868", lw=1.5, zorder=2, label="Pareto front")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if placed:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
        ax.margins(0.12)  # room for labels at the edges
        place_labels(ax, [(p[x_key], p[y_key]) for p in placed], [str(p.get("label", "")) for p in placed])
    return fig


# Offsets (points) tried for a label, nearest first: the four diagonals, then the sides, then further out.
_LABEL_OFFSETS = [(dx * r, dy * r) for r in (4, 9, 15, 22)
                  for dx, dy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))]


def place_labels(ax, xy: Sequence[tuple[float, float]], labels: Sequence[str], *, fontsize: float = 7,
                 marker_pt: float = 6.0) -> list:
    """Annotate each point (data coordinates) with its label at the nearest offset whose text box
    overlaps no label placed before, no marker and no axes edge; where every offset collides, the one
    with the least overlap. Labels placed away from their point get a thin leader line. Returns the
    annotations."""
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    fig = ax.figure
    fig.canvas.draw()  # settle the axis limits (autoscaling is lazy) and the layout before measuring
    renderer = fig.canvas.get_renderer()
    px = fig.dpi / 72.0
    frame = ax.get_window_extent(renderer)
    centres = ax.transData.transform(list(xy)) if len(xy) else []
    half = marker_pt * px
    markers = [Bbox.from_extents(x - half, y - half, x + half, y + half) for x, y in centres]
    taken: list[Any] = []
    out = []

    def overlap(a, b) -> float:
        w = min(a.x1, b.x1) - max(a.x0, b.x0)
        h = min(a.y1, b.y1) - max(a.y0, b.y0)
        return w * h if w > 0 and h > 0 else 0.0

    for i, ((x, y), label) in enumerate(zip(xy, labels)):
        best = None
        for dx, dy in _LABEL_OFFSETS:
            ha = "left" if dx > 0 else "right" if dx < 0 else "center"
            va = "bottom" if dy > 0 else "top" if dy < 0 else "center"
            t = ax.annotate(label, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha, va=va,
                            fontsize=fontsize)
            box = t.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            cost = sum(overlap(box, o) for o in taken) + sum(overlap(box, m) for j, m in enumerate(markers) if j != i)
            cost += 0.0 if inside else box.width * box.height
            t.remove()
            if best is None or cost < best[0]:
                best = (cost, dx, dy, ha, va)
            if cost == 0.0:
                break
        assert best is not None
        _, dx, dy, ha, va = best
        far = max(abs(dx), abs(dy)) > 4
        t = ax.annotate(label, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha, va=va, fontsize=fontsize,
                        arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "#888", "shrinkA": 0, "shrinkB": 3}
                        if far else None)
        t.update_positions(renderer)
        taken.append(Text.get_window_extent(t, renderer))  # the text alone, not its leader line
        out.append(t)
    return out


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
