"""Plots for semiring attributions: per-token scores and branch flow.

Everything here uses matplotlib's object-oriented API (:class:`matplotlib.figure.Figure`,
no ``pyplot``), so it never opens a window, works on headless machines and leaves the
user's pyplot backend alone. Save with ``fig.savefig(path)`` or :func:`figure_to_png`.

Examples::

    >>> from captum_semiring.visualization import plot_token_scores
    >>> fig = plot_token_scores(["the", "cat"], {"top path": [0.2, 0.5]})
    >>> png = figure_to_png(fig)
    >>> png[:4] == b"\\x89PNG"
    True
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, LogLocator, NullFormatter, NullLocator

__all__ = [
    "BRANCH_COLORS",
    "plot_token_scores",
    "plot_branch_flow",
    "plot_branch_summary",
    "figure_to_png",
]

BRANCH_COLORS: dict[str, str] = {
    "skip": "#7f7f7f",
    "query": "#1f77b4",
    "key": "#d62728",
    "value": "#2ca02c",
    "other": "#bcbd22",
}
"""One color per branch of a transformer layer's input."""

_SCORE_COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]


def figure_to_png(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)  # the figures use constrained layout
    return buf.getvalue()


def _finite(values: Sequence[float | None]) -> list[float]:
    return [
        float(v) if v is not None and math.isfinite(float(v)) else 0.0 for v in values
    ]


def _log_axis(ax: Any) -> None:
    ax.set_yscale("log")
    # plain "1e-03" labels: mathtext tick labels cost ~0.5 s per figure
    # and no minor ticks: over many decades they cost seconds per figure
    ax.yaxis.set_major_locator(LogLocator(numticks=6))
    ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=True))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_formatter(NullFormatter())


def _short(token: str, width: int = 10) -> str:
    return token if len(token) <= width else token[: width - 1] + "…"


def plot_token_scores(
    tokens: Sequence[str],
    scores: Mapping[str, Sequence[float | None]],
    title: str | None = None,
    highlight: Sequence[int] = (),
    log: Sequence[str] = (),
) -> Figure:
    """One bar chart per score, tokens on a shared x axis.

    Args:
        tokens: the token strings.
        scores: name → one value per token (``None`` or non-finite plots as 0).
        title: the figure title.
        highlight: token positions whose labels are drawn in bold red.
        log: names of scores drawn on a log scale (when all their values are > 0).

    Returns:
        The figure.
    """
    names = list(scores)
    width = max(6.0, 0.55 * len(tokens) + 2.0)
    fig = Figure(figsize=(width, 1.9 * len(names) + 0.6), layout="constrained")
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    x = list(range(len(tokens)))
    for i, (ax, name) in enumerate(zip(axes, names)):
        vals = _finite(scores[name])
        colors = [
            _SCORE_COLORS[i % len(_SCORE_COLORS)] if v >= 0 else "#999999" for v in vals
        ]
        ax.bar(x, vals, color=colors, width=0.75)
        if name in log and vals and all(v > 0 for v in vals):
            _log_axis(ax)
            name += " (log)"
        else:
            ax.axhline(0, color="black", linewidth=0.6)
        ax.set_ylabel(name, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[-1].set_xticks(x)
    axes[-1].set_xticklabels(
        [_short(t) for t in tokens],
        rotation=45 if len(tokens) > 12 else 0,
        ha="right" if len(tokens) > 12 else "center",
        fontsize=8,
    )
    for pos in highlight:
        if 0 <= pos < len(tokens):
            label = axes[-1].get_xticklabels()[pos]
            label.set_color("#c00000")
            label.set_fontweight("bold")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_branch_flow(
    tokens: Sequence[str],
    layers: Sequence[Mapping[str, object]],
    title: str | None = None,
    branches: Sequence[str] = ("skip", "query", "key", "value"),
) -> Figure:
    """Per-layer branch flow of one input, two panels per layer.

    Left: the paper's top-branch aggregation (per token, the branch carrying the
    token's top path gets its value; the bar's color names the branch). Right: each
    branch's own ⊕ over the hidden dims (``branch-max``), grouped bars, log scale.

    Args:
        tokens: the token strings.
        layers: one mapping per layer with ``"name"``, ``"top_branch"`` and
            ``"branch_max"`` (each: branch → one value per token).
        title: the figure title.
        branches: the branches to draw, in order.

    Returns:
        The figure.
    """
    n = max(len(layers), 1)
    width = max(9.0, 0.9 * len(tokens) + 3.0)
    fig = Figure(figsize=(width, 2.3 * n + 0.8), layout="constrained")
    axes = fig.subplots(n, 2, squeeze=False)
    x = list(range(len(tokens)))
    labels = [_short(t) for t in tokens]
    rotate = len(tokens) > 10
    for row, layer in enumerate(layers):
        ax_top, ax_all = axes[row]
        top = layer.get("top_branch", {})
        allb = layer.get("branch_max", {})
        assert isinstance(top, Mapping) and isinstance(allb, Mapping)
        for b in branches:
            vals = [abs(v) for v in _finite(top.get(b, [0.0] * len(tokens)))]
            ax_top.bar(
                x,
                [v if v > 0 else float("nan") for v in vals],
                color=BRANCH_COLORS.get(b, "#333"),
                width=0.75,
                label=b,
            )
        group = len(branches)
        bar_w = 0.8 / group
        for j, b in enumerate(branches):
            vals = [abs(v) for v in _finite(allb.get(b, [0.0] * len(tokens)))]
            pos = [xi - 0.4 + bar_w * (j + 0.5) for xi in x]
            ax_all.bar(
                pos,
                [v if v > 0 else float("nan") for v in vals],
                width=bar_w,
                color=BRANCH_COLORS.get(b, "#333"),
                label=b,
            )
        for ax, data in ((ax_top, top), (ax_all, allb)):
            if any(abs(v) > 0 for b in branches for v in _finite(data.get(b, []))):
                _log_axis(ax)
        name = str(layer.get("name", f"layer {row}"))
        ax_top.set_title(f"{name}: top-branch (paper), |value| (log)", fontsize=9)
        ax_all.set_title(f"{name}: branch-max, |value| (log)", fontsize=9)
        for ax in (ax_top, ax_all):
            ax.set_xticks(x)
            ax.set_xticklabels(
                labels,
                fontsize=8,
                rotation=45 if rotate else 0,
                ha="right" if rotate else "center",
            )
            ax.tick_params(axis="y", labelsize=8)
            ax.grid(axis="y", alpha=0.3)
    axes[0][1].legend(
        fontsize=8,
        ncol=len(branches),
        loc="lower right",
        bbox_to_anchor=(1.0, 1.12),
        frameon=False,
    )
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_branch_summary(
    rows: Sequence[Mapping[str, object]],
    title: str | None = None,
    branches: Sequence[str] = ("skip", "query", "key", "value"),
    ax: Any = None,
    log: bool = False,
) -> Figure:
    """Grouped bars: one group per row (e.g. a token type or a layer), one bar per
    branch, with optional error bars.

    Args:
        rows: mappings with ``"label"``, ``"mean"`` (branch → value) and optionally
            ``"low"`` / ``"high"`` (branch → confidence bounds).
        ax: draw into this axes (of an existing figure) instead of a new figure.
        log: log-scale y axis (zero bars are left out).

    Returns:
        The figure that holds the plot.
    """
    if ax is None:
        fig = Figure(
            figsize=(max(5.0, 1.6 * len(rows) + 2.0), 3.4), layout="constrained"
        )
        ax = fig.subplots()
    else:
        fig = ax.figure
    group = len(branches)
    bar_w = 0.8 / group
    for j, b in enumerate(branches):
        xs, ys, err_lo, err_hi = [], [], [], []
        for i, row in enumerate(rows):
            mean = row["mean"]
            assert isinstance(mean, Mapping)
            m = float(mean.get(b, 0.0))
            xs.append(i - 0.4 + bar_w * (j + 0.5))
            ys.append(m)
            low, high = row.get("low"), row.get("high")
            err_lo.append(
                m - float(low[b]) if isinstance(low, Mapping) and b in low else 0.0
            )
            err_hi.append(
                float(high[b]) - m if isinstance(high, Mapping) and b in high else 0.0
            )
        ax.bar(
            xs,
            ys,
            width=bar_w,
            color=BRANCH_COLORS.get(b, "#333"),
            label=b,
            yerr=[err_lo, err_hi],
            capsize=2,
        )
    ax.set_xticks(list(range(len(rows))))
    ax.set_xticklabels([str(r["label"]) for r in rows], fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    if log:
        _log_axis(ax)
    ax.legend(fontsize=8, ncol=group, frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    return fig
