"""A self-contained HTML report of ``captum-semiring explain`` results.

The report is one file: CSS, the SVG drawings (:mod:`captum_semiring.report_svg`) and
a short hover script inline, PNG plots embedded as base64 ``data:`` URIs, and no
external resources, so it opens anywhere (also offline, from a mail attachment or a
CI artifact).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .analysis.explain import IG_DELTA_WARNING, relative_delta
from .paths import module_label
from .report_svg import (
    HOVER_JS,
    _esc,
    _fmt,
    branch_flow_diagram,
    circuit_diagram,
    faithfulness_plot,
    path_graph,
)

if TYPE_CHECKING:
    from .analysis.explain import ExplainReport, ExplainResult
    from .circuits import Circuit, ComponentGraph, Edge

__all__ = [
    "CircuitComparison",
    "write_html_report",
    "render_html_report",
    "write_circuit_report",
    "render_circuit_report",
]

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0;
       background: #f4f5f7; color: #1d2329; line-height: 1.45; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 1.6em; margin: 0.2em 0 0.1em; }
h2 { font-size: 1.25em; margin: 0 0 0.4em; }
h3 { font-size: 1.0em; margin: 1.2em 0 0.4em; color: #3a4450; }
.sub { color: #5b6670; margin: 0 0 1em; }
.card { background: #fff; border: 1px solid #dde1e6; border-radius: 8px; padding: 18px 22px;
        margin: 18px 0; box-shadow: 0 1px 2px rgba(0,0,0,0.04); }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.3em 0; }
th, td { border-bottom: 1px solid #e5e8eb; padding: 3px 10px; text-align: right; }
th { background: #f0f2f4; font-weight: 600; white-space: nowrap; }
td.l, th.l { text-align: left; }
table.kv td { text-align: left; }
table.kv td:first-child { color: #5b6670; padding-right: 18px; }
.tokens { display: flex; flex-wrap: wrap; gap: 4px; margin: 0.4em 0 0.2em; }
.tok { font-family: ui-monospace, Menlo, Consolas, monospace; padding: 2px 6px; border-radius: 4px;
       border: 1px solid #d0d5da; font-size: 0.92em; }
.tok.hl { border: 2px solid #c00000; }
.legend { font-size: 0.8em; color: #5b6670; }
ol.paths { padding-left: 1.4em; margin: 0.3em 0; }
ol.paths li { margin: 0.35em 0; }
.chain { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.82em; color: #37414b;
         word-break: break-word; }
.chain .arrow { color: #9aa3ab; }
.val { font-weight: 600; }
.plotwrap { overflow-x: auto; max-width: 100%; }
.hop-info { white-space: pre-line; font-family: monospace; font-size: 0.85em; color: #37474f;
  min-height: 3em; border-left: 3px solid #c0392b; padding: 2px 8px; margin: 4px 0; }
img.plot { max-width: none; height: auto; display: block; margin: 0.6em 0; border: 1px solid #eceff1;
           border-radius: 4px; }
.banner { background: #fde8e8; border: 2px solid #c0392b; border-radius: 6px; padding: 8px 12px;
  margin: 8px 0; font-weight: 600; color: #7b1d14; }
.note { background: #fff8e5; border: 1px solid #f0dca4; border-radius: 6px; padding: 6px 10px;
        font-size: 0.88em; margin: 0.5em 0; }
.grid { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 28px; }
@media (max-width: 800px) { .grid { grid-template-columns: 1fr; } }
code { font-size: 0.9em; }
td code { font-size: 1.05em; }
.grid > div { min-width: 0; }
main.wide { max-width: 1500px; }
.circuits { display: flex; flex-wrap: wrap; gap: 18px; }
.circuits > .card { flex: 1 1 520px; min-width: 0; margin: 0; }
"""


def _img(png: bytes, alt: str) -> str:
    """The PNG at its own size (read off its header), in a box that scrolls
    sideways when it is wider than the page: a long input stays readable."""
    data = base64.b64encode(png).decode("ascii")
    width = int.from_bytes(png[16:20], "big") if png[:8] == b"\x89PNG\r\n\x1a\n" else 0
    size = f' width="{width}"' if width else ""
    return (
        f'<div class="plotwrap"><img class="plot"{size} alt="{_esc(alt)}" '
        f'src="data:image/png;base64,{data}"></div>'
    )


def _token_strip(
    tokens: Sequence[str], scores: Sequence[float | None], highlight: Sequence[int] = ()
) -> str:
    """Token chips shaded on a log scale of |score| over three decades below the
    largest (a linear scale shows one token when values span orders of
    magnitude); red for positive, blue for negative."""
    finite = [
        abs(float(s)) for s in scores if s is not None and math.isfinite(float(s))
    ]
    top = max(finite) if finite else 0.0
    parts = []
    for i, (tok, s) in enumerate(zip(tokens, scores)):
        value = float(s) if s is not None else math.nan
        alpha = 0.0
        if top > 0 and math.isfinite(value) and value != 0:
            alpha = max(0.0, 1.0 + math.log10(abs(value) / top) / _DECADES)
        color = "214, 39, 40" if value >= 0 else "31, 119, 180"
        style = f"background: rgba({color}, {0.06 + 0.74 * alpha:.3f})"
        cls = "tok hl" if i in highlight else "tok"
        parts.append(
            f'<span class="{cls}" style="{style}" title="{_esc(_fmt(s))}">{_esc(tok)}</span>'
        )
    return f'<div class="tokens">{"".join(parts)}</div>'


_DECADES = 3.0  # the token shading spans this many orders of magnitude


def _steps_table(steps: Sequence[Any]) -> str:
    """Per module visited: its branch, head, ops, the element reached and the
    product of the hop weights there."""
    if not steps:
        return ""
    rows = "".join(
        f'<tr><td class="l">{_esc(module_label(st.module))}</td>'
        f'<td class="l">{_esc(st.branch or "")}</td>'
        f"<td>{'' if st.head is None else st.head}</td>"
        f'<td class="l">{_esc(", ".join(st.ops))}</td>'
        f'<td class="l">{_esc(tuple(st.index))}</td><td>{_fmt(st.weight)}</td></tr>'
        for st in steps
    )
    return (
        '<details><summary>hops by module</summary><table class="steps"><tr>'
        '<th class="l">module</th><th class="l">branch</th><th>head</th>'
        '<th class="l">ops</th><th class="l">element</th><th>weight</th></tr>'
        f"{rows}</table></details>"
    )


def _chain(modules: Sequence[str]) -> str:
    names = [_esc(module_label(m)) for m in modules]
    return (
        '<span class="chain">'
        + ' <span class="arrow">→</span> '.join(names)
        + "</span>"
    )


def _kv(rows: Sequence[tuple[str, object]]) -> str:
    body = "".join(
        f"<tr><td>{_esc(k)}</td><td>{v if isinstance(v, str) and v.startswith('<') else _esc(v)}</td></tr>"
        for k, v in rows
    )
    return f'<table class="kv">{body}</table>'


_HOW_TO_READ = (
    '<details class="note" open><summary><b>How to read this</b></summary><ul>'
    "<li><b>A top path is one path, not the token's importance.</b> It is the largest "
    "product of local derivatives along one route through the network. A token can "
    "matter through many small paths and have a small top path; docs/results.md shows "
    "top paths and ablation disagree on which token matters most.</li>"
    "<li><b>Granularity.</b> Paths run through the recorded ATen ops: softmax and "
    "layer norm are single ops with dense Jacobians unless <code>--decompose</code> "
    "splits them; max-product and entropy change with that choice, gradients do not.</li>"
    "<li><b>Saturation.</b> Derivatives are local: a saturated unit (a softmax near one "
    "hot key, a tanh near ±1) passes little gradient even when it decides the output.</li>"
    "<li><b>Entropy</b> is on the scale of the number of paths: H / log #paths near 1 "
    "means the flow is spread over nearly all paths, and the top-path share says how "
    "much of the total |flow| the single best path carries.</li>"
    "<li><b>What agrees with ablation.</b> On the components measured in "
    "docs/results.md, integrated gradients × activation change track zero ablation "
    "(Spearman +0.97 to +0.99); the plain top path does not (−0.58 to +0.12). Trust IG "
    "only when its convergence delta below is small.</li>"
    "</ul></details>"
)


def _comparison(results: Sequence[ExplainResult]) -> str:
    """One row per input: its target and output, the token with the best path and
    that path's value, how spread the flow is, and how IG agrees."""
    head = (
        '<section class="card"><h2>Inputs compared</h2><table><tr>'
        '<th class="l">input</th><th class="l">target</th><th>output</th>'
        '<th class="l">prediction</th><th class="l">top-path token</th>'
        "<th>best path (TopK rank 1)</th><th>mean H / log #paths</th>"
        "<th>Spearman vs IG</th><th>IG delta / output</th></tr>"
    )
    rows = []
    for r in results:
        norm = [v for v in r.normalized_entropy_per_token if v is not None]
        ig = r.integrated_gradients
        best = r.top_paths[0].value if r.top_paths else None
        token = r.tokens[r.most_important_token]
        rows.append(
            f'<tr><td class="l">{r.index + 1}</td><td class="l">{_esc(r.target.description)}</td>'
            f'<td>{_fmt(r.output)}</td><td class="l">{_fmt(r.prediction)}</td>'
            f'<td class="l"><code>{_esc(token)}</code> ({r.most_important_token})</td>'
            f"<td>{_fmt(best)}</td><td>{_fmt(sum(norm) / len(norm) if norm else None, 3)}</td>"
            f"<td>{_fmt(ig.spearman if ig else None, 3)}</td>"
            f"<td>{f'{_fmt(100 * relative_delta(ig, r.output), 3)}%' if ig else '–'}</td></tr>"
        )
    return head + "".join(rows) + "</table></section>"


def _input_section(result: ExplainResult, images: Mapping[str, bytes]) -> str:
    tokens = [str(t) for t in result.tokens]
    top = result.top_path_per_token
    ent = result.entropy_per_token
    ig = result.integrated_gradients
    highlight = [result.most_important_token]
    out = [f'<section class="card"><h2>Input {result.index + 1}</h2>']
    rows: list[tuple[str, object]] = [
        ("target", result.target.description),
        ("target output", _fmt(result.output)),
    ]
    if result.prediction is not None:
        rows.append(("prediction", result.prediction))
    if result.label is not None:
        rows.append(("correct label", result.label))
    out.append(_kv(rows))
    out.append(
        "<h3>Tokens, shaded by their top gradient path value (MaxProduct, positive)</h3>"
    )
    out.append(_token_strip(tokens, top, highlight))
    out.append(
        '<div class="legend">darker = larger |top-path value|, on a log scale over three '
        "orders of magnitude; red positive, blue negative; the framed token carries the "
        "best path</div>"
    )

    paths = result.top_paths
    if paths:
        out.append(
            f"<h3>{'Top gradient path' if len(paths) == 1 else f'Top {len(paths)} gradient paths'}"
            " from the most important token</h3>"
            + (
                '<div class="legend">MaxProduct (positive): the most positive path '
                "product.</div>"
                if len(paths) == 1
                else f'<div class="legend">TopK({len(paths)}): the {len(paths)} paths '
                "with the largest |path product|, ranked by magnitude and shown with "
                "their sign; so a value here may be negative where the per-token "
                "column (the most positive path) is not.</div>"
            )
            + '<ol class="paths">'
        )
        for p in paths:
            out.append(
                f'<li><span class="val">{_fmt(p.value)}</span> from token {p.token_index} '
                f"<code>{_esc(p.token)}</code>, element {_esc(tuple(p.element))} "
                f"({p.hops} hops):<br>{_chain(p.modules)}{_steps_table(p.steps)}</li>"
            )
        out.append("</ol>")
        graph = path_graph(paths)
        if graph:
            out.append(
                '<div class="legend">The paths merged by module (hover a box or a line '
                "for its hops); a line's width is the summed |value| of the paths that "
                "take it.</div>" + graph
            )

    out.append('<div class="grid"><div>')
    out.append(
        '<h3>Per-token values</h3><table><tr><th class="l">#</th><th class="l">token</th>'
        '<th title="MaxProduct(positive): the most positive path product">top path (max, +)</th>'
        '<th title="Entropy semiring, nats">entropy (nats)</th>'
        '<th title="entropy / log(number of paths): 0 = one path carries all, 1 = all equal">'
        "H / log #paths</th>"
        '<th title="MaxProduct(absolute) / Z: the share of the total |flow| of the largest path">'
        "top-path share of Z</th>"
        '<th title="LayerIntegratedGradients, summed over hidden units">IG</th></tr>'
    )
    ig_tok: Sequence[float | None] = ig.per_token if ig else [None] * len(tokens)
    norm = result.normalized_entropy_per_token
    share = result.top_path_share_per_token
    for i, tok in enumerate(tokens):
        cells = [
            _fmt(top[i] if i < len(top) else None),
            _fmt(ent[i] if i < len(ent) else None),
            _fmt(norm[i] if i < len(norm) else None, 3),
            _fmt(share[i] if i < len(share) else None, 3),
            _fmt(ig_tok[i] if i < len(ig_tok) else None),
        ]
        out.append(
            f'<tr><td class="l">{i}</td><td class="l"><code>{_esc(tok)}</code></td>'
            + "".join(f"<td>{c}</td>" for c in cells)
            + "</tr>"
        )
    out.append("</table>")

    out.append("</div><div>")
    if ig:
        out.append("<h3>Agreement with Integrated Gradients</h3>")
        out.append(
            _kv(
                [
                    ("Spearman ρ (top path vs IG)", _fmt(ig.spearman, 3)),
                    ("Spearman ρ (top path vs |IG|)", _fmt(ig.spearman_abs, 3)),
                    ("same most important token", _fmt(ig.top_token_agrees)),
                    (
                        "IG steps / convergence delta",
                        f"{ig.n_steps} / {_fmt(ig.convergence_delta, 3)} "
                        f"({_fmt(100 * relative_delta(ig, result.output), 3)}% of the output)",
                    ),
                ]
            )
        )
        if abs(relative_delta(ig, result.output)) > IG_DELTA_WARNING:
            out.append(
                '<div class="note">IG has not converged: its completeness error is '
                f"{_fmt(100 * abs(relative_delta(ig, result.output)), 3)}% of the output. "
                "Its per-token values are unreliable here; use more --ig-steps.</div>"
            )
        out.append(
            '<div class="legend">Integrated Gradients from a baseline of padding ids (special tokens '
            "kept), summed over each token's hidden units; ρ is Spearman's rank correlation across "
            "the tokens.</div>"
        )
    out.append("</div></div>")

    plots = result.plots
    if "tokens" in plots and plots["tokens"] in images:
        out.append(
            "<h3>Per-token scores</h3>"
            + _img(images[plots["tokens"]], "per-token scores")
        )
    flows = result.branch_flow
    if flows:
        out.append("<h3>Branch flow per layer (skip / query / key / value)</h3>")
        diagram = branch_flow_diagram(flows)
        if diagram:
            out.append(
                '<div class="legend">Each layer parts its flow into its branches '
                "and joins it again; a band's width is the share of the layer "
                "input's elements (token × hidden unit) whose best path (MaxProduct, "
                "positive) enters through that branch. Hover a band for its "
                "numbers.</div>" + diagram
            )
        summary_rows = []
        for layer in flows:
            wins = layer.wins()
            summary_rows.append(
                f'<tr><td class="l">{_esc(layer.name)}</td>'
                + "".join(
                    f"<td>{wins.get(b, 0)}</td>"
                    for b in ("skip", "query", "key", "value")
                )
                + "</tr>"
            )
        out.append(
            '<table><tr><th class="l">layer</th><th>skip</th><th>query</th><th>key</th><th>value</th></tr>'
            + "".join(summary_rows)
            + "</table>"
        )
        out.append(
            '<div class="legend">tokens whose top path enters the layer through each branch</div>'
        )
        if "branch_flow" in plots and plots["branch_flow"] in images:
            out.append(
                "<details><summary>per token: top branch and branch-max (PNG)"
                "</summary>"
                + _img(images[plots["branch_flow"]], "branch flow per token")
                + "</details>"
            )
    elif result.branch_flow_note:
        out.append(f'<div class="note">{_esc(result.branch_flow_note)}</div>')
    out.append("</section>")
    return "\n".join(out)


@dataclass
class CircuitComparison:
    """Circuits of one component graph, to draw side by side.

    Attributes:
        graph: the component graph (:func:`captum_semiring.circuits.trace`).
        circuits: the circuits by the name to show for each (its method).
        faithfulness: per method, the faithfulness of its first ``n`` edges by
            ``n`` (``dict(zip(sizes, patching.curve(ranked, sizes)))``); plotted
            and tabled when given, and the methods need not be those of
            ``circuits``.
        known: a known circuit's edges, for precision and recall and to show the
            edges each circuit misses.
        title: the section's heading.
    """

    graph: ComponentGraph
    circuits: Mapping[str, Circuit]
    faithfulness: Mapping[str, Mapping[int, float]] | None = None
    known: Iterable[Edge | tuple[str, str, str]] | None = None
    title: str = "Circuits"


def _circuit_section(comparison: CircuitComparison) -> str:
    """A summary table, one card per circuit with its drawing and its edges, and
    the faithfulness curves."""
    known = list(comparison.known) if comparison.known is not None else None
    curves = comparison.faithfulness or {}
    graph = comparison.graph
    out = [f'<section class="card"><h2>{_esc(comparison.title)}</h2>']
    out.append(
        f'<p class="sub">{len(graph.components)} components, {len(graph.edges)} '
        "edges. An edge is drawn from the upstream component's write to the slot it "
        "feeds downstream, coloured by that slot, its width by |score| relative to "
        "the circuit's largest (scores of different methods are in different "
        "units). Components the circuit leaves out are dim.</p>"
    )
    head = '<tr><th class="l">method</th><th class="l">chosen by</th><th>edges</th>'
    head += "<th>components</th>"
    if known is not None:
        head += f"<th>precision</th><th>recall (of {len(set(map(str, known)))})</th>"
    if curves:
        head += "<th>faithfulness</th>"
    rows = []
    for name, c in comparison.circuits.items():
        row = (
            f'<tr><td class="l">{_esc(name)}</td><td class="l"><code>'
            f"{_esc(c.method)}</code></td><td>{len(c)}</td><td>{len(c.nodes)}</td>"
        )
        if known is not None:
            precision, recall = c.precision_recall(known)
            row += f"<td>{_fmt(precision, 3)}</td><td>{_fmt(recall, 3)}</td>"
        if curves:
            row += f"<td>{_fmt(curves.get(name, {}).get(len(c)), 3)}</td>"
        rows.append(row + "</tr>")
    out.append(f"<table>{head}</tr>{''.join(rows)}</table>")
    if curves:
        out.append(
            '<div class="legend">faithfulness: the share of the clean metric kept '
            "when every edge outside the circuit is patched (1 = the whole graph, "
            "0 = every edge patched), at the circuit's size, where the curve has "
            "it.</div>"
        )
    out.append("</section>")
    out.append('<div class="circuits">')
    for name, c in comparison.circuits.items():
        edges = "".join(
            f'<tr><td>{i + 1}</td><td class="l"><code>{_esc(e)}</code></td>'
            f"<td>{_fmt(c.scores.get(e))}</td></tr>"
            for i, e in enumerate(c.edges)
        )
        out.append(
            f'<section class="card circuit" data-method="{_esc(name)}">'
            f"<h3>{_esc(name)} <small><code>{_esc(c.method)}</code>, {len(c)} edges"
            "</small></h3>"
            + circuit_diagram(c, graph, known)
            + '<details><summary>edges</summary><table><tr><th>#</th><th class="l">'
            f"edge</th><th>score</th></tr>{edges}</table></details></section>"
        )
    out.append("</div>")
    if curves:
        sizes = sorted({n for curve in curves.values() for n in curve})
        table = "".join(
            f"<tr><td>{n}</td>"
            + "".join(f"<td>{_fmt(curve.get(n), 3)}</td>" for curve in curves.values())
            + "</tr>"
            for n in sizes
        )
        out.append(
            '<section class="card"><h2>Faithfulness</h2>'
            '<div class="legend">The faithfulness of each method\'s best n edges, '
            "against n.</div>"
            + faithfulness_plot(curves)
            + '<table class="faithfulness"><tr><th>edges</th>'
            + "".join(f"<th>{_esc(m)}</th>" for m in curves)
            + f"</tr>{table}</table></section>"
        )
    return "\n".join(out)


def _page(title: str, body: Sequence[str], wide: bool = False) -> str:
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_esc(title)}</title>",
            f"<style>{_CSS}</style></head><body>"
            + ('<main class="wide">' if wide else "<main>"),
            *body,
            f"<script>{HOVER_JS}</script></main></body></html>",
        ]
    )


def render_circuit_report(
    circuits: Mapping[str, Circuit],
    graph: ComponentGraph,
    faithfulness: Mapping[str, Mapping[int, float]] | None = None,
    known: Iterable[Edge | tuple[str, str, str]] | None = None,
    title: str = "captum-semiring circuits",
) -> str:
    """A standalone HTML page comparing circuits of one component graph: their
    drawings side by side (:func:`~captum_semiring.report_svg.circuit_diagram`), a
    summary table, and the faithfulness curves when given.

    Args:
        circuits: the circuits by the name to show for each.
        graph: their component graph.
        faithfulness: per method, the faithfulness of its first ``n`` edges by
            ``n``.
        known: a known circuit's edges (precision, recall, missed edges).
        title: the page's title.

    Returns:
        The page.

    Examples::

        >>> from captum_semiring import circuits
        >>> from captum_semiring.reproductions.tasks import induction as ind
        >>> model = ind.AttentionOnlyTransformer(ind.SMALL_CONFIG)
        >>> ids = ind.repeated_sequences(2, 10, 24, seed=0)
        >>> f = lambda e: ind.target_logit(model, ids, inputs_embeds=e)
        >>> cg = circuits.trace(f, model.embed(ids))
        >>> sums = circuits.top_edges(cg.edge_flows("sum"), 3)
        >>> page = render_circuit_report({"sum": sums}, cg, {"sum": {1: 0.5, 3: 0.9}})
        >>> page.count('<svg class="circuitgraph"'), page.count('<svg class="faithplot"')
        (1, 1)
    """
    comparison = CircuitComparison(graph, circuits, faithfulness, known, "Circuits")
    body = [
        f"<h1>{_esc(title)}</h1>",
        '<p class="sub">Circuits on the component graph (embeddings, attention heads '
        "read through their query, key and value, MLPs, logits), chosen from edge "
        "scores; hover an edge for its rank, slot and score.</p>",
        _circuit_section(comparison),
    ]
    return _page(title, body, wide=True)


def write_circuit_report(
    circuits: Mapping[str, Circuit],
    graph: ComponentGraph,
    path: str | Path,
    faithfulness: Mapping[str, Mapping[int, float]] | None = None,
    known: Iterable[Edge | tuple[str, str, str]] | None = None,
    title: str = "captum-semiring circuits",
) -> Path:
    """Write :func:`render_circuit_report` to ``path`` (one self-contained file)
    and return it.

    Examples::

        >>> import tempfile, pathlib
        >>> from captum_semiring import circuits
        >>> from captum_semiring.reproductions.tasks import induction as ind
        >>> model = ind.AttentionOnlyTransformer(ind.SMALL_CONFIG)
        >>> ids = ind.repeated_sequences(2, 10, 24, seed=0)
        >>> f = lambda e: ind.target_logit(model, ids, inputs_embeds=e)
        >>> cg = circuits.trace(f, model.embed(ids))
        >>> c = circuits.greedy(cg.edge_flows("max"), 4)
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "circuits.html"
        >>> write_circuit_report({"max": c}, cg, out).stat().st_size > 0
        True
    """
    path = Path(path)
    page = render_circuit_report(circuits, graph, faithfulness, known, title)
    path.write_text(page, encoding="utf-8")
    return path


def render_html_report(
    report: ExplainReport, circuits: CircuitComparison | None = None
) -> str:
    """The report of an ``explain`` run as an HTML string.

    Args:
        report: the run's results (see :mod:`captum_semiring.analysis.explain`);
            the plots are their :attr:`~captum_semiring.analysis.explain.ExplainResult.images`.
        circuits: circuits of the model to add as a last section.
    """
    model = report.model
    images = report.images
    head: list[tuple[str, object]] = [
        ("model", model.description),
        ("attribution layer", f"<code>{_esc(model.layer_name)}</code>"),
    ]
    if model.val_accuracy is not None:
        head.append(("validation accuracy", f"{100 * float(model.val_accuracy):.1f}%"))
    head.append(("inputs", len(report.results)))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>captum-semiring report</title>",
        f"<style>{_CSS}</style></head><body><main>",
        "<h1>captum-semiring report</h1>",
        '<p class="sub">Semiring backpropagation (Du et al., ACL 2023): top gradient paths '
        "(max-product), gradient path entropy, and branch flow, compared with Integrated Gradients.</p>",
        '<section class="card">' + _kv(head),
    ]
    if model.random_weights:
        parts.append(
            '<div class="banner">Warning: this model has '
            f"{len(model.random_weights)} randomly initialized "
            f"weight{'s' if len(model.random_weights) > 1 else ''} (the checkpoint "
            "lacks them, e.g. a classifier head). Its outputs are noise, and so is every "
            "attribution below.</div>"
        )
    for note in model.notes:
        parts.append(f'<div class="note">{_esc(note)}</div>')
    parts.append(
        '<div class="legend">Top path: the largest product of local derivatives along one path from a '
        "token's layer output to the target (⊕ = max over the token's hidden units). Entropy: the "
        "entropy of the distribution of |path products| over all paths from the token (nats). "
        "Branch flow: at each transformer layer's input, the flow into the query, key and value "
        "projections and into the residual (skip) connection.</div>"
    )
    parts.append(_HOW_TO_READ)
    parts.append("</section>")
    if len(report.results) > 1:
        parts.append(_comparison(report.results))
    parts += [_input_section(result, images) for result in report.results]
    if circuits is not None:
        parts.append(_circuit_section(circuits))
    parts.append(f"<script>{HOVER_JS}</script></main></body></html>")
    return "\n".join(parts)


def write_html_report(
    report: ExplainReport,
    path: str | Path,
    circuits: CircuitComparison | None = None,
) -> Path:
    """Write :func:`render_html_report` to ``path`` and return it."""
    path = Path(path)
    path.write_text(render_html_report(report, circuits), encoding="utf-8")
    return path
