"""The report's inline SVG drawings, and the escaping and number formatting they
share with :mod:`captum_semiring.report`.

Each drawing is hand-written SVG inside a ``plotwrap`` box, followed by a
``hop-info`` box; the page's script (:data:`HOVER_JS`) writes the ``<title>`` of
whatever is hovered into that box. No external resources, no JavaScript library.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .analysis.branch_flow import TRANSFORMER_BRANCHES
from .paths import module_label

if TYPE_CHECKING:
    from .analysis.explain import LayerFlow

__all__ = ["HOVER_JS", "path_graph", "branch_flow_diagram"]


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: object, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return _esc(value)
    if not math.isfinite(x):
        return "–"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e4):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


# Hovering anything with a <title> in a drawing writes that title into the box
# under it (the titles also show as tooltips, but a fixed box can be read and
# copied).
HOVER_JS = """
document.querySelectorAll("svg.pathgraph, svg.branchflow").forEach(function (svg) {
  var info = svg.parentNode.nextElementSibling;
  svg.querySelectorAll("title").forEach(function (title) {
    title.parentNode.addEventListener("mouseenter", function () {
      info.textContent = title.textContent;
    });
  });
});
"""


def _svg(cls: str, width: float, height: float, body: Sequence[str], hint: str) -> str:
    """A drawing in a box that scrolls sideways, and the box the hover script
    writes into."""
    return (
        f'<div class="plotwrap"><svg class="{cls}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        + "".join(body)
        + f'</svg></div><div class="hop-info">{_esc(hint)}</div>'
    )


def path_graph(paths: Sequence[Any]) -> str:
    """The top paths merged at module level into one SVG graph: a node per module
    visited (with its branch and head), an edge per step, its width by the summed
    |value| of the paths that take it; hovering a node or an edge shows its hops."""
    depth: dict[tuple[Any, ...], int] = {}
    order: list[tuple[Any, ...]] = []
    info: dict[tuple[Any, ...], list[str]] = {}
    edges: dict[tuple[Any, Any], list[float]] = {}
    for p in paths:
        keys = []
        for i, st in enumerate(p.steps):
            key = (st.module, st.branch, st.head)
            if key not in depth:
                order.append(key)
            depth[key] = max(depth.get(key, 0), i)
            info.setdefault(key, []).append(
                f"path {p.rank}: {', '.join(st.ops)} at {tuple(st.index)}, weight {_fmt(st.weight)}"
            )
            keys.append(key)
        for a, b in zip(keys, keys[1:]):
            edges.setdefault((a, b), []).append(abs(p.value))
    if len(order) < 2:
        return ""
    columns: dict[int, list[tuple[Any, ...]]] = {}
    for key in order:
        columns.setdefault(depth[key], []).append(key)
    dx, dy, w, h = 150, 44, 132, 30
    pos = {
        key: (10 + d * dx, 10 + j * dy)
        for d, keys in columns.items()
        for j, key in enumerate(keys)
    }
    width = 20 + (max(columns) + 1) * dx
    height = 20 + max(len(k) for k in columns.values()) * dy
    top = max((sum(v) for v in edges.values()), default=1.0) or 1.0
    parts = []
    for (a, b), values in edges.items():
        (x1, y1), (x2, y2) = pos[a], pos[b]
        stroke = 1 + 7 * sum(values) / top
        parts.append(
            f'<line x1="{x1 + w}" y1="{y1 + h / 2}" x2="{x2}" y2="{y2 + h / 2}" '
            f'stroke="#c0392b" stroke-opacity="0.6" stroke-width="{stroke:.2f}">'
            f"<title>{len(values)} path(s), summed |value| {_fmt(sum(values))}</title></line>"
        )
    for key, (x, y) in pos.items():
        module, branch, head = key
        label = module.rsplit(".", 1)[-1] or module_label(module)
        extra = " ".join(
            v for v in (branch or "", "" if head is None else f"head {head}") if v
        )
        title = "\n".join([module_label(module), extra, *info[key]]).strip()
        parts.append(
            f'<g class="node"><title>{_esc(title)}</title>'
            f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="5" fill="#f4f6f8" stroke="#90a4ae"/>'
            f'<text x="{x + 6}" y="{y + 13}" font-size="11">{_esc(label[:20])}</text>'
            f'<text x="{x + 6}" y="{y + 25}" font-size="9" fill="#607d8b">{_esc(extra[:24])}</text></g>'
        )
    return _svg("pathgraph", width, height, parts, "hover a box or a line")


# The flow diagram's geometry, in pixels: the height of all the flow, the gap
# between bands where they part mid-layer, a layer's width, a junction's width.
_FLOW_H, _FLOW_GAP, _LAYER_DX, _NODE_W = 150.0, 12.0, 150.0, 6.0
_FLOW_TOP = 44.0  # room for the legend and the layer names


def branch_flow_diagram(flows: Sequence[LayerFlow]) -> str:
    """The branch flow of each layer as a Sankey-style SVG diagram, layers as
    columns left to right.

    A grey bar stands for a layer's input (the last one for the last layer's
    output). Between two bars, the layer's flow parts into one band per branch
    (skip, query, key, value) and joins again; a band's width is the branch's
    :attr:`~captum_semiring.analysis.explain.LayerFlow.shares` of the full height.
    Hovering a band shows its layer, branch, share and best path value, with the
    semiring that made them.

    Args:
        flows: the layers' flows, first layer first.

    Returns:
        The diagram as HTML (the SVG and its hover box); ``""`` when no layer has
        shares (those without are left out).
    """
    flows = [f for f in flows if f.shares]
    if not flows:
        return ""
    from .visualization import BRANCH_COLORS  # matplotlib is a dependency anyway

    n, nb = len(flows), len(TRANSFORMER_BRANCHES)
    node_y = _FLOW_TOP + (nb - 1) * _FLOW_GAP / 2
    # wide enough for the legend too (one layer alone is narrower)
    width = max(20 + n * _LAYER_DX + _NODE_W, 20 + 70 * nb)
    height = _FLOW_TOP + _FLOW_H + (nb - 1) * _FLOW_GAP + 10
    parts = []
    for j, branch in enumerate(TRANSFORMER_BRANCHES):
        color = BRANCH_COLORS.get(branch, "#333")
        parts.append(
            f'<rect x="{10 + 70 * j}" y="6" width="10" height="10" fill="{color}"/>'
            f'<text x="{24 + 70 * j}" y="15" font-size="11">{branch}</text>'
        )
    for i in range(n + 1):
        what = f"input of {flows[i].name}" if i < n else f"output of {flows[-1].name}"
        parts.append(
            f'<rect class="node" x="{10 + i * _LAYER_DX}" y="{node_y}" '
            f'width="{_NODE_W}" height="{_FLOW_H}" fill="#90a4ae">'
            f"<title>{_esc(what)}</title></rect>"
        )
    for i, flow in enumerate(flows):
        x0 = 10 + i * _LAYER_DX + _NODE_W
        x1 = x0 + _LAYER_DX - _NODE_W
        xm, q0, q1 = (x0 + x1) / 2, (3 * x0 + x1) / 4, (x0 + 3 * x1) / 4
        short = ".".join(flow.name.split(".")[-2:]) or module_label(flow.name)
        parts.append(
            f'<text x="{xm}" y="{_FLOW_TOP - 10}" font-size="11" '
            f'text-anchor="middle">{_esc(short)}</text>'
        )
        stacked = node_y
        for j, branch in enumerate(TRANSFORMER_BRANCHES):
            share = float(flow.shares.get(branch, 0.0))
            band = share * _FLOW_H
            y = stacked + band / 2  # the band's centre line at the bars
            ym = y + (j - (nb - 1) / 2) * _FLOW_GAP  # and where the bands part
            stacked += band
            title = (
                f"{flow.name}: {branch}, {flow.semiring}\n"
                f"share {share:.6g}: {100 * share:.4g}% of the layer input's "
                "elements with flow have their best path enter here\n"
                f"best path through {branch} (⊕ over every element): "
                f"{_fmt(flow.totals.get(branch), 6)}"
            )
            label = (
                f'<text x="{xm}" y="{ym + 4:.2f}" font-size="10" fill="#fff" '
                f'text-anchor="middle">{branch} {100 * share:.0f}%</text>'
                if band >= 14
                else ""
            )
            parts.append(
                f'<g class="band" data-layer="{_esc(flow.name)}" '
                f'data-branch="{branch}"><title>{_esc(title)}</title>'
                f'<path d="M {x0} {y:.2f} C {q0} {y:.2f}, {q0} {ym:.2f}, {xm} {ym:.2f} '
                f'C {q1} {ym:.2f}, {q1} {y:.2f}, {x1} {y:.2f}" fill="none" '
                f'stroke="{BRANCH_COLORS.get(branch, "#333")}" stroke-opacity="0.8" '
                f'stroke-width="{band:.3f}"/>{label}</g>'
            )
    return _svg("branchflow", width, height, parts, "hover a band")
