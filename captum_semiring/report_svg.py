"""The report's inline SVG drawings, and the escaping and number formatting they
share with :mod:`captum_semiring.report`.

Each drawing is hand-written SVG inside a ``plotwrap`` box, followed by a
``hop-info`` box; the page's script (:data:`HOVER_JS`) writes the ``<title>`` of
whatever is hovered into that box. No external resources, no JavaScript library.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .analysis.branch_flow import TRANSFORMER_BRANCHES
from .paths import module_label

if TYPE_CHECKING:
    from .analysis.explain import LayerFlow
    from .circuits import Circuit, Component, ComponentGraph, Edge

__all__ = [
    "HOVER_JS",
    "SLOT_COLORS",
    "path_graph",
    "branch_flow_diagram",
    "circuit_diagram",
    "faithfulness_plot",
]


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
document.querySelectorAll(
  "svg.pathgraph, svg.branchflow, svg.circuitgraph, svg.faithplot"
).forEach(function (svg) {
  var info = svg.parentNode.nextElementSibling;
  svg.querySelectorAll("title").forEach(function (title) {
    title.parentNode.addEventListener("mouseenter", function () {
      info.textContent = title.textContent;
    });
  });
});
"""


def _svg(
    cls: str,
    width: float,
    height: float,
    body: Sequence[str],
    hint: str,
    scale: bool = False,
) -> str:
    """A drawing in a box that scrolls sideways (or, with ``scale``, that shrinks
    to the width it is given, also outside the report's stylesheet, as in a
    notebook), and the box the hover script writes into."""
    style = ' style="max-width: 100%; height: auto"' if scale else ""
    return (
        f'<div class="plotwrap"><svg class="{cls}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg"{style}>'
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


# ----- circuits ----------------------------------------------------------------------

SLOT_COLORS: dict[str, str] = {
    "q": "#1f77b4",
    "k": "#d62728",
    "v": "#2ca02c",
    "in": "#7b4ea3",
}
"""The colour of an edge by the slot it enters: a head's query, key or value (the
branch flow diagram's colours for them), or the ``"in"`` of an MLP or the logits."""

_SLOT_WHAT = {
    "q": "the head's query",
    "k": "the head's key",
    "v": "the head's value",
    "in": "its input",
}
# where a slot's edges end on the left side of a box, as a fraction of its height
_SLOT_PORT = {"q": 0.22, "k": 0.5, "v": 0.78, "in": 0.5}

# The circuit drawing's geometry, in pixels: a box, the rows of a column, the
# columns of one layer's modules, the extra gap between layers, the top band
# (legend and layer names), and the thinnest and widest edge.
_BOX_W, _BOX_H, _ROW_DY, _SUB_DX, _LAYER_GAP = 92.0, 34.0, 50.0, 128.0, 36.0
_CIRCUIT_TOP, _ARC_LANE = 46.0, 7.0
EDGE_WIDTH_MIN, EDGE_WIDTH_MAX = 1.0, 10.0
"""An edge of a circuit drawing is ``EDGE_WIDTH_MIN`` px wide at score 0 and
``EDGE_WIDTH_MAX`` at the circuit's largest |score|, linear in between."""


def edge_width(score: float | None, top: float) -> float:
    """The stroke width of an edge of |score| ``score`` when the circuit's largest
    |score| is ``top``: linear from :data:`EDGE_WIDTH_MIN` to :data:`EDGE_WIDTH_MAX`;
    the middle of the two without a score or when every score is 0.

    Examples::

        >>> edge_width(-2.0, 4.0), edge_width(4.0, 4.0), edge_width(None, 4.0)
        (5.5, 10.0, 5.5)
    """
    if score is None or not math.isfinite(score) or not top > 0:
        return (EDGE_WIDTH_MIN + EDGE_WIDTH_MAX) / 2
    return EDGE_WIDTH_MIN + (EDGE_WIDTH_MAX - EDGE_WIDTH_MIN) * abs(score) / top


def _triple(edge: Edge | tuple[str, str, str]) -> tuple[str, str, str]:
    if isinstance(edge, tuple):
        return edge
    return (edge.upstream, edge.downstream, edge.slot)


def _layer_of(c: Component) -> str:
    """The layer a component belongs to: its module path up to the first number
    (``blocks.0`` for ``blocks.0.attn`` and ``blocks.0.mlp``), else its module."""
    parts = c.module.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[: i + 1])
    return c.module


def _columns(components: Sequence[Component]) -> list[tuple[str, list[Component]]]:
    """The drawing's columns left to right, each named by its layer: embed, then
    one column per module of each layer (its heads stacked, by head), then
    logits."""
    inner = [c for c in components if c.kind not in ("embed", "logits")]
    layers: dict[str, dict[str, list[Component]]] = {}
    for c in sorted(inner, key=lambda c: (c.order, c.head or 0)):
        layers.setdefault(_layer_of(c), {}).setdefault(c.module, []).append(c)
    columns = [("", [c for c in components if c.kind == "embed"])]
    for layer, modules in layers.items():
        columns += [(layer, cs) for cs in modules.values()]
    columns.append(("", [c for c in components if c.kind == "logits"]))
    return [(layer, cs) for layer, cs in columns if cs]


def _box_label(c: Component) -> tuple[str, str]:
    if c.kind == "head":
        return f"head {c.head}", c.module
    if c.kind == "mlp":
        return "mlp", c.module
    return c.name, ""


def circuit_diagram(
    circuit: Circuit,
    graph: ComponentGraph,
    known: Iterable[Edge | tuple[str, str, str]] | None = None,
) -> str:
    """A circuit drawn on its component graph, as SVG.

    Every component of ``graph`` is a box: embed at the left, one column per module
    of each layer (an attention module's heads stacked, then its MLP), logits at the
    right; those the circuit does not touch are dim. Each edge of the circuit is a
    curve from its upstream box to its slot on the downstream box (a head's query,
    key and value enter at its top, middle and bottom), coloured by slot
    (:data:`SLOT_COLORS`), :func:`edge_width` wide by its |score| relative to the
    circuit's largest, dashed when the score is negative. An edge that skips a column
    arcs around the boxes. Hovering an edge shows its rank, slot and score, a box its
    component.

    Args:
        circuit: the circuit; its :attr:`~captum_semiring.circuits.Circuit.scores`
            give the widths (edges without one are drawn mid-width).
        graph: the component graph its edges belong to.
        known: a known circuit's edges: those the circuit misses are drawn as thin
            dotted grey lines, and an edge's hover text says whether it is known.

    Returns:
        The drawing as HTML (the SVG and its hover box).

    Raises:
        ValueError: when an edge joins components ``graph`` does not have.

    Examples::

        >>> from captum_semiring import circuits
        >>> from captum_semiring.reproductions.tasks import induction as ind
        >>> model = ind.AttentionOnlyTransformer(ind.SMALL_CONFIG)
        >>> ids = ind.repeated_sequences(2, 10, 24, seed=0)
        >>> f = lambda e: ind.target_logit(model, ids, inputs_embeds=e)
        >>> cg = circuits.trace(f, model.embed(ids))
        >>> c = circuits.top_edges(cg.edge_flows("sum"), 3)
        >>> svg = circuit_diagram(c, cg)
        >>> svg.count('<g class="edge"'), svg.count('<g class="component')
        (3, 6)
    """
    columns = _columns(graph.components)
    names = {c.name for c in graph.components}
    unknown = [e for e in circuit.edges if not {e.upstream, e.downstream} <= names]
    if unknown:
        raise ValueError(
            f"edges of components the graph does not have: {[str(e) for e in unknown[:3]]}"
        )
    truth = {_triple(e) for e in known} if known is not None else None
    chosen = {_triple(e) for e in circuit.edges}
    tallest = max(len(cs) for _, cs in columns)
    stack_height = tallest * _ROW_DY - (_ROW_DY - _BOX_H)
    # first with the stack's top at 0, to size the room the arcs need
    pos: dict[str, tuple[float, float, int]] = {}
    headers: list[str] = []
    x, last_layer = 10.0, None
    for i, (layer, cs) in enumerate(columns):
        if i and layer != last_layer:
            x += _LAYER_GAP
        if layer and layer != last_layer:
            headers.append(
                f'<text x="{x + _BOX_W / 2}" y="{_CIRCUIT_TOP - 4}" font-size="11" '
                f'text-anchor="middle" fill="#37474f">{_esc(layer)}</text>'
            )
        y0 = (tallest - len(cs)) * _ROW_DY / 2
        for j, c in enumerate(cs):
            pos[c.name] = (x, y0 + j * _ROW_DY, i)
        x += _SUB_DX
        last_layer = layer
    width = x - _SUB_DX + _BOX_W + 10

    def ends(up: str, down: str, slot: str) -> tuple[float, float, float, float, int]:
        x0, y0, i0 = pos[up]
        x3, y3, i3 = pos[down]
        y3 += _BOX_H * _SLOT_PORT.get(slot, 0.5)
        return x0 + _BOX_W, y0 + _BOX_H / 2, x3, y3, i3 - i0

    def above(y0: float, y3: float) -> bool:
        return (y0 + y3) / 2 <= stack_top + stack_height / 2

    stack_top = 0.0
    room = {True: 0.0, False: 0.0}
    for up, down, slot in chosen | (truth or set()):
        if up in pos and down in pos:
            _, y0, _, y3, span = ends(up, down, slot)
            if span > 1:
                side = above(y0, y3)
                room[side] = max(room[side], _ARC_LANE * (span + 1))
    stack_top = _CIRCUIT_TOP + room[True]
    pos = {n: (x, y + stack_top, i) for n, (x, y, i) in pos.items()}
    height = stack_top + stack_height + room[False] + 8

    def curve(up: str, down: str, slot: str) -> str:
        x0, y0, x3, y3, span = ends(up, down, slot)
        if span <= 1:  # neighbours: an S from side to side
            xm = (x0 + x3) / 2
            return f"M {x0} {y0:.1f} C {xm} {y0:.1f}, {xm} {y3:.1f}, {x3} {y3:.1f}"
        # around the boxes in between, on the nearer side, one lane per span
        lane = _ARC_LANE * span
        peak = stack_top - lane if above(y0, y3) else stack_top + stack_height + lane
        yc = (peak - (y0 + y3) / 8) / 0.75  # the cubic's y at t = 1/2 is the peak
        dx = (x3 - x0) / 3
        return (
            f"M {x0} {y0:.1f} C {x0 + dx:.1f} {yc:.1f}, {x3 - dx:.1f} {yc:.1f}, "
            f"{x3} {y3:.1f}"
        )

    parts = _slot_legend(truth is not None) + headers
    for up, down, slot in sorted(truth - chosen) if truth else []:
        if up in pos and down in pos:
            parts.append(
                f'<g class="edge missed" data-edge="{_esc(f"{up} -> {down}.{slot}")}">'
                f"<title>{_esc(f'missed: {up} -> {down}.{slot} is in the known circuit, not in this one')}</title>"
                f'<path d="{curve(up, down, slot)}" fill="none" stroke="#90a4ae" '
                f'stroke-width="1.5" stroke-dasharray="2 3"/>'
                f'<path d="{curve(up, down, slot)}" fill="none" stroke="transparent" '
                f'stroke-width="8" pointer-events="stroke"/></g>'
            )
    scores = [circuit.scores.get(e) for e in circuit.edges]
    top = max((abs(s) for s in scores if s is not None and math.isfinite(s)), default=0)
    n = len(circuit.edges)
    # the best edge last, so that it lies on top
    for rank in reversed(range(n)):
        e, score = circuit.edges[rank], scores[rank]
        w = edge_width(score, top)
        color = SLOT_COLORS.get(e.slot, "#333")
        dash = ' stroke-dasharray="6 3"' if score is not None and score < 0 else ""
        title = [
            f"#{rank + 1} of {n}: {e}",
            f"slot: {e.slot} ({_SLOT_WHAT.get(e.slot, e.slot)})",
            f"score: {_fmt(score, 6)} ({circuit.method})",
        ]
        if truth is not None:
            known_here = "yes" if _triple(e) in truth else "no"
            title.append(f"in the known circuit: {known_here}")
        d, text = curve(e.upstream, e.downstream, e.slot), "\n".join(title)
        parts.append(
            f'<g class="edge" data-edge="{_esc(e)}" data-slot="{_esc(e.slot)}" '
            f'data-rank="{rank + 1}" data-score="{"" if score is None else repr(float(score))}">'
            f"<title>{_esc(text)}</title>"
            f'<path class="wire" d="{d}" fill="none" stroke="{color}" '
            f'stroke-opacity="0.75" stroke-width="{w:.3f}"{dash}/>'
            f'<path class="hit" d="{d}" fill="none" stroke="transparent" '
            f'stroke-width="{max(w + 4, 10):.1f}" pointer-events="stroke"/></g>'
        )
    used = set(circuit.nodes)
    degree: dict[str, int] = {}
    for e in circuit.edges:
        degree[e.upstream] = degree.get(e.upstream, 0) + 1
        degree[e.downstream] = degree.get(e.downstream, 0) + 1
    for c in graph.components:
        bx, by, _ = pos[c.name]
        inside = c.name in used
        big, small = _box_label(c)
        about = f"{c.name} ({c.kind})\n" + (
            f"in the circuit: {degree[c.name]} edge(s)"
            if inside
            else "not in the circuit"
        )
        slots = "".join(
            f'<text x="{bx + 3}" y="{by + _BOX_H * _SLOT_PORT[s] + 3:.1f}" '
            f'font-size="8" fill="{SLOT_COLORS[s]}">{s}</text>'
            for s in ("q", "k", "v")
            if c.kind == "head"
        )
        parts.append(
            f'<g class="component{"" if inside else " dim"}" data-name="{_esc(c.name)}" '
            f'opacity="{1 if inside else 0.35}"><title>{_esc(about)}</title>'
            f'<rect x="{bx}" y="{by:.1f}" width="{_BOX_W}" height="{_BOX_H}" rx="5" '
            f'fill="{"#eef3f7" if inside else "#f7f8f9"}" '
            f'stroke="{"#546e7a" if inside else "#b0bec5"}"/>'
            f'<text x="{bx + _BOX_W / 2}" y="{by + 15:.1f}" font-size="11" '
            f'text-anchor="middle">{_esc(big)}</text>'
            f'<text x="{bx + _BOX_W / 2}" y="{by + 27:.1f}" font-size="8" '
            f'text-anchor="middle" fill="#607d8b">{_esc(small[-22:])}</text>{slots}</g>'
        )
    return _svg(
        "circuitgraph", width, height, parts, "hover an edge or a component", True
    )


def _slot_legend(with_known: bool) -> list[str]:
    parts = []
    x = 10.0
    for slot, color in SLOT_COLORS.items():
        parts.append(
            f'<line x1="{x}" y1="11" x2="{x + 18}" y2="11" stroke="{color}" '
            f'stroke-width="4"/><text x="{x + 22}" y="15" font-size="11">{slot}</text>'
        )
        x += 48
    parts.append(
        f'<line x1="{x}" y1="11" x2="{x + 18}" y2="11" stroke="#555" stroke-width="2" '
        f'stroke-dasharray="6 3"/><text x="{x + 22}" y="15" font-size="11">'
        "negative</text>"
    )
    if with_known:
        x += 82
        parts.append(
            f'<line x1="{x}" y1="11" x2="{x + 18}" y2="11" stroke="#90a4ae" '
            f'stroke-width="1.5" stroke-dasharray="2 3"/><text x="{x + 22}" y="15" '
            'font-size="11">known, missed</text>'
        )
    return parts


METHOD_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
"""The colour of each method in a faithfulness plot, in the order given."""


def faithfulness_plot(curves: Mapping[str, Mapping[int, float]]) -> str:
    """Faithfulness against circuit size, one line per method, as SVG.

    Args:
        curves: per method, the faithfulness of its first ``n`` edges by ``n``
            (as :meth:`~captum_semiring.circuits.EdgePatching.curve` gives for a
            list of sizes).

    Returns:
        The plot as HTML (the SVG and its hover box; hovering a point shows its
        method, size and faithfulness); ``""`` without any point.

    Examples::

        >>> svg = faithfulness_plot({"a": {1: 0.2, 4: 0.9}, "b": {1: 0.0, 4: 0.5}})
        >>> svg.count("<polyline"), svg.count("<circle")
        (2, 4)
    """
    points = {m: sorted(c.items()) for m, c in curves.items() if c}
    if not points:
        return ""
    values = [float(v) for pts in points.values() for _, v in pts if math.isfinite(v)]
    sizes = sorted({n for pts in points.values() for n, _ in pts})
    lo, hi = min([0.0, *values]), max([1.0, *values])
    left, right, top, bottom = 48.0, 150.0, 14.0, 36.0
    w, h = 420.0, 220.0
    xmax = max(sizes) or 1

    def sx(n: float) -> float:
        return left + w * n / xmax

    def sy(v: float) -> float:
        return top + h * (hi - v) / (hi - lo)

    parts = [
        f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#fafbfc" '
        'stroke="#cfd8dc"/>'
    ]
    for v in sorted({lo, 0.0, 1.0, hi}):
        dash = "" if v in (0.0, 1.0) else ' stroke-dasharray="3 3"'
        parts.append(
            f'<line x1="{left}" y1="{sy(v):.1f}" x2="{left + w}" y2="{sy(v):.1f}" '
            f'stroke="#cfd8dc"{dash}/>'
            f'<text x="{left - 6}" y="{sy(v) + 4:.1f}" font-size="10" '
            f'text-anchor="end">{_fmt(v, 3)}</text>'
        )
    ticks = sizes if len(sizes) <= 12 else sizes[:: math.ceil(len(sizes) / 12)]
    for n in ticks:
        parts.append(
            f'<text x="{sx(n):.1f}" y="{top + h + 14}" font-size="10" '
            f'text-anchor="middle">{n}</text>'
        )
    parts.append(
        f'<text x="{left + w / 2}" y="{top + h + 30}" font-size="11" '
        'text-anchor="middle">edges kept (best first)</text>'
        f'<text x="12" y="{top + h / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + h / 2})">faithfulness</text>'
    )
    for i, (method, pts) in enumerate(points.items()):
        color = METHOD_COLORS[i % len(METHOD_COLORS)]
        xy = [(sx(n), sy(v)) for n, v in pts if math.isfinite(v)]
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
        dots = "".join(
            f'<circle cx="{sx(n):.1f}" cy="{sy(v):.1f}" r="4" fill="{color}">'
            f"<title>{_esc(f'{method}: first {n} edges, faithfulness {_fmt(v)}')}"
            "</title></circle>"
            for n, v in pts
            if math.isfinite(v)
        )
        ly = top + 8 + 16 * i
        parts.append(
            f'<g class="curve" data-method="{_esc(method)}">'
            f'<polyline points="{line}" fill="none" stroke="{color}" '
            f'stroke-width="2"/>{dots}'
            f'<line x1="{left + w + 12}" y1="{ly}" x2="{left + w + 30}" y2="{ly}" '
            f'stroke="{color}" stroke-width="3"/><text x="{left + w + 34}" '
            f'y="{ly + 4}" font-size="11">{_esc(method[:18])}</text></g>'
        )
    return _svg(
        "faithplot",
        left + w + right,
        top + h + bottom + 6,
        parts,
        "hover a point",
        True,
    )
