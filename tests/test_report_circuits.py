"""The circuit drawings of the report: an edge's width follows |score| and its colour
the slot, with the scores computed here from a hand-written forward of the toy model
(tests/circuit_models.py); every component is drawn, by layer; the page compares
circuits and their faithfulness."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest
import torch
from circuit_models import reference_run, toy

from captum_semiring import circuits
from captum_semiring.analysis.explain import ExplainReport
from captum_semiring.circuits import Circuit, Edge
from captum_semiring.report import (
    CircuitComparison,
    render_circuit_report,
    render_html_report,
)
from captum_semiring.report_svg import circuit_diagram, faithfulness_plot

SVG = "{http://www.w3.org/2000/svg}"
# the documented colours, written out again: a changed colour must fail here
COLORS = {"q": "#1f77b4", "k": "#d62728", "v": "#2ca02c", "in": "#7b4ea3"}


@pytest.fixture(scope="module")
def setup():  # type: ignore[no-untyped-def]
    model, x = toy(batch=3, tokens=4, d=8, heads=2, layers=2, vocab=5)
    corrupted = torch.randn_like(x)
    f = lambda e: model(e)[:, -1, 1]  # noqa: E731
    return model, x, corrupted, f, circuits.trace(f, x)


def _svg(page: str, cls: str = "circuitgraph") -> list[ET.Element]:
    """The drawings of class ``cls`` in ``page``, parsed as XML."""
    found = re.findall(rf'<svg class="{cls}".*?</svg>', page, flags=re.S)
    return [ET.fromstring(s) for s in found]


def _edges(svg: ET.Element) -> dict[str, ET.Element]:
    return {
        g.get("data-edge", ""): g
        for g in svg.iter(f"{SVG}g")
        if g.get("class") == "edge"
    }


def _wire(g: ET.Element) -> ET.Element:
    (wire,) = [p for p in g.iter(f"{SVG}path") if p.get("class") == "wire"]
    return wire


def _eap_by_hand(model, x, corrupted) -> dict[Edge, float]:  # type: ignore[no-untyped-def]
    """EAP from the reference forward: per edge, the upstream write's change times
    the gradient at the downstream read, summed over the batch."""
    point = x.detach().requires_grad_()
    out, writes, reads = reference_run(model, point, lambda e: True, None)
    out[:, -1, 1].sum().backward()
    with torch.no_grad():
        _, other, _ = reference_run(model, corrupted, lambda e: True, None)
    scores = {}
    for (down, slot), read in reads.items():
        for up, w in writes.items():
            diff = w.detach() - other[up]
            assert read.grad is not None
            scores[Edge(up, down, slot)] = float((diff * read.grad).sum())
    return scores


def test_edge_widths_and_colours_follow_scores_computed_by_hand(setup) -> None:
    model, x, corrupted, f, cg = setup
    circuit = circuits.top_edges(circuits.eap(f, x, corrupted))  # all, ranked
    n = len(circuit)
    assert {e.slot for e in circuit.edges} == set(COLORS)
    by_hand = _eap_by_hand(model, x, corrupted)
    (svg,) = _svg(circuit_diagram(circuit, cg))
    drawn = _edges(svg)
    assert set(drawn) == {str(e) for e in circuit.edges}
    top = max(abs(by_hand[e]) for e in circuit.edges)
    ranked = sorted(drawn.values(), key=lambda g: int(g.get("data-rank", 0)))
    sizes = [abs(by_hand[Edge(*_parse(g.get("data-edge", "")))]) for g in ranked]
    assert sizes == sorted(sizes, reverse=True), "ranks out of |score| order"
    assert [int(g.get("data-rank", 0)) for g in ranked] == list(range(1, n + 1))
    for e in circuit.edges:
        g = drawn[str(e)]
        wire = _wire(g)
        want = 1 + 9 * abs(by_hand[e]) / top
        assert float(wire.get("stroke-width", 0)) == pytest.approx(want, abs=2e-3)
        assert wire.get("stroke") == COLORS[e.slot]
        assert (wire.get("stroke-dasharray") is not None) == (by_hand[e] < 0)
        title = g.findtext(f"{SVG}title") or ""
        assert f"of {n}: {e}" in title and f"slot: {e.slot}" in title
        printed = re.search(r"score: (\S+) \(top-edges/eap\)", title)
        assert printed and float(printed[1]) == pytest.approx(by_hand[e], rel=1e-4)


def _parse(label: str) -> tuple[str, str, str]:
    up, rest = label.split(" -> ")
    down, slot = rest.rsplit(".", 1)
    return up, down, slot


def test_hand_made_scores_give_the_documented_widths(setup) -> None:
    *_, cg = setup
    e1, e2, e3 = cg.edges[0], cg.edges[-1], cg.edges[5]
    circuit = Circuit([e1, e2, e3], "hand", {e1: 2.0, e2: -1.0})
    drawn = _edges(_svg(circuit_diagram(circuit, cg))[0])
    widths = [float(_wire(drawn[str(e)]).get("stroke-width", 0)) for e in (e1, e2)]
    assert widths == [10.0, 5.5]
    assert float(_wire(drawn[str(e3)]).get("stroke-width", 0)) == 5.5  # no score
    assert "score: – (hand)" in (drawn[str(e3)].findtext(f"{SVG}title") or "")


def test_every_component_is_drawn_by_layer_and_dim_outside_the_circuit(setup) -> None:
    *_, cg = setup
    names = [c.name for c in cg.components]
    assert "blocks.0.mlp" in names and "blocks.1.attn.head1" in names
    circuit = Circuit([Edge("blocks.0.mlp", "logits", "in")], "one", {})
    (svg,) = _svg(circuit_diagram(circuit, cg))
    boxes = {
        g.get("data-name"): g
        for g in svg.iter(f"{SVG}g")
        if (g.get("class") or "").startswith("component")
    }
    assert set(boxes) == set(names)
    dim = {n for n, g in boxes.items() if "dim" in (g.get("class") or "")}
    assert dim == set(names) - {"blocks.0.mlp", "logits"}

    def x(name: str) -> float:
        rect = boxes[name].find(f"{SVG}rect")
        assert rect is not None
        return float(rect.get("x", 0))

    order = ["embed", "blocks.0.attn.head0", "blocks.0.mlp", "blocks.1.attn.head0"]
    order += ["blocks.1.mlp", "logits"]
    xs = [x(n) for n in order]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    assert x("blocks.0.attn.head0") == x("blocks.0.attn.head1")  # one column
    # the gap between layers is wider than between one layer's modules
    assert xs[3] - xs[2] > xs[2] - xs[1]


def test_known_edges_the_circuit_misses_are_drawn_dotted(setup) -> None:
    *_, cg = setup
    kept, missed = cg.edges[0], cg.edges[3]
    circuit = Circuit([kept], "one", {kept: 1.0})
    page = circuit_diagram(
        circuit, cg, known=[kept, (missed.upstream, missed.downstream, missed.slot)]
    )
    (svg,) = _svg(page)
    groups = [g for g in svg.iter(f"{SVG}g") if "edge" in (g.get("class") or "")]
    assert [g.get("class") for g in groups] == ["edge missed", "edge"]
    assert groups[0].get("data-edge") == str(missed)
    assert "in the known circuit: yes" in (groups[1].findtext(f"{SVG}title") or "")
    with pytest.raises(ValueError, match="does not have"):
        circuit_diagram(Circuit([Edge("embed", "nowhere", "in")], "x"), cg)


def test_the_faithfulness_plot_puts_each_point_at_its_value() -> None:
    (svg,) = _svg(faithfulness_plot({"a": {0: 0.0, 2: 1.0, 4: 0.5}}), "faithplot")
    dots = list(svg.iter(f"{SVG}circle"))
    ys = [float(c.get("cy", 0)) for c in dots]
    xs = [float(c.get("cx", 0)) for c in dots]
    assert xs[1] - xs[0] == pytest.approx(xs[2] - xs[1])
    assert ys[0] > ys[2] > ys[1]  # 0 lowest, 1 highest
    assert ys[2] == pytest.approx((ys[0] + ys[1]) / 2)
    assert "a: first 2 edges, faithfulness 1" in (dots[1].findtext(f"{SVG}title") or "")


def test_the_page_compares_circuits_with_their_precision_and_faithfulness(
    setup,
) -> None:
    model, x, corrupted, f, cg = setup
    scores = {"sum": cg.edge_flows("sum"), "eap": circuits.eap(f, x, corrupted)}
    chosen = {m: circuits.top_edges(s, 5) for m, s in scores.items()}
    known = chosen["sum"].edges[:2] + [cg.edges[1]]
    patch = circuits.EdgePatching(f, x, corrupted)
    curves = {
        m: dict(zip([1, 5], patch.curve(circuits.top_edges(s).edges, [1, 5])))
        for m, s in scores.items()
    }
    page = render_circuit_report(chosen, cg, curves, known)
    assert len(_svg(page)) == 2 and len(_svg(page, "faithplot")) == 1
    for m, c in chosen.items():
        precision, recall = c.precision_recall(known)
        assert (
            f'<td class="l">{m}</td><td class="l"><code>{c.method}</code></td>'
            f"<td>5</td><td>{len(c.nodes)}</td><td>{precision:.3g}</td>"
            f"<td>{recall:.3g}</td><td>{curves[m][5]:.3g}</td>"
        ) in page
    assert page.count("<script>") == 1 and "http" not in page.replace(
        "http://www.w3.org/2000/svg", ""
    )


def test_the_explain_report_takes_a_circuit_section(setup) -> None:
    *_, cg = setup
    loaded = SimpleNamespace(
        description="stub",
        layer_name="embed",
        val_accuracy=None,
        random_weights=[],
        notes=[],
    )  # what the page reads of a loaded model
    report = ExplainReport(loaded, [], top_k=3)  # type: ignore[arg-type]
    assert len(_svg(render_html_report(report))) == 0
    section = CircuitComparison(
        cg, {"sum": circuits.top_edges(cg.edge_flows("sum"), 4)}, title="Its circuit"
    )
    page = render_html_report(report, section)
    assert "<h2>Its circuit</h2>" in page and len(_svg(page)) == 1
