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
from typing import Any

from .paths import module_label

__all__ = ["HOVER_JS", "path_graph"]


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


# Hovering a path-graph node or edge writes its hops under the graph (the SVG
# titles also show as tooltips, but a fixed box can be read and copied).
HOVER_JS = """
document.querySelectorAll("svg.pathgraph").forEach(function (svg) {
  var info = svg.parentNode.nextElementSibling;
  svg.querySelectorAll("g.node, line").forEach(function (el) {
    el.addEventListener("mouseenter", function () {
      info.textContent = el.querySelector("title").textContent;
    });
  });
});
"""


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
    parts = [
        f'<div class="plotwrap"><svg class="pathgraph" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
    ]
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
    parts.append('</svg></div><div class="hop-info">hover a box or a line</div>')
    return "".join(parts)
