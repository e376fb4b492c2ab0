"""Edge flows of the component graph against brute-force path enumeration.

Each path of the scalar graph is classified by the modules its hops ran in (the
test's own reading of the toy model, not the library's discovery): the attention
module and projection give the head's slot, the transposed (batch, head, ...) view
gives the head. A path takes the edge between each two consecutive components.
"""

from __future__ import annotations

import math

import pytest
import torch
from builders import SEMIRINGS
from circuit_models import toy
from reference import SCALAR_RESULTS, ReferenceGraph, mismatches, topk

import captum_semiring as cs
from captum_semiring import Hop, Path, circuits


def _component_sequence(graph, hops, heads: int) -> list[tuple[str, str]]:
    """[(component, slot)] in order along one reference path."""
    seq: list[tuple[str, str]] = [("embed", "")]
    segment: str | None = None
    slot = head = None
    for op, node, index, _ in hops:
        module = graph.nodes[node].producer.module
        parts = module.split(".")
        if module == "unembed":
            seq.append(("logits", "in"))
            break
        if len(parts) >= 3 and parts[2] == "attn":
            where = ".".join(parts[:3])
            if segment != where:
                segment, slot, head = where, None, None
            if len(parts) == 4 and parts[3] in "qkv" and slot is None:
                slot = parts[3]
            if head is None and op == "aten.transpose.int" and len(index) == 4:
                head = index[1]
                seq.append((f"{where}.head{head}", slot))
            continue
        if len(parts) >= 3 and parts[2] == "mlp":
            where = ".".join(parts[:3])
            if segment != where:
                segment = where
                seq.append((where, "in"))
            continue
        segment = None
    assert seq[-1][0] == "logits", seq
    return seq


def _expected(graph, out, x, heads: int) -> dict[circuits.Edge, list[float]]:
    ref = ReferenceGraph(graph, out)
    per_edge: dict[circuits.Edge, list[float]] = {}
    for paths in ref.source_paths(x):
        for product, hops in paths:
            seq = _component_sequence(graph, hops, heads)
            for (u, _), (v, slot) in zip(seq, seq[1:]):
                per_edge.setdefault(circuits.Edge(u, v, slot), []).append(product)
    return per_edge


# small enough to enumerate every path (about 150,000 and 50,000)
CASES = {
    "pre-ln": dict(layers=1, mlp=True),
    "post-ln": dict(layers=1, mlp=True, post_ln=True),
    "attention-only": dict(layers=2, mlp=False, d=2, ln=False, tokens=3),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_edge_flows_equal_path_enumeration(case: str) -> None:
    config = dict(CASES[case])
    tokens = config.pop("tokens", 2)
    model, x = toy(tokens=tokens, **config)
    cg = circuits.trace(lambda e: model(e)[:, -1, 1], x)
    heads = model.blocks[0].attn.heads
    expected = _expected(cg.graph, cg.output, cg.inputs[0], heads)
    # every edge some path takes is an edge of the component graph, and back
    assert set(expected) == set(cg.edges), set(expected) ^ set(cg.edges)
    for name, (make, ref_name, k) in SEMIRINGS.items():
        if name == "pathcount":
            continue
        got = cg.edge_flows(make()).finalize()
        for i, edge in enumerate(cg.edges):
            ps = expected[edge]
            if ref_name == "topk":
                want = torch.tensor(topk(ps, k), dtype=torch.float64)[:, None]
            else:
                want = torch.tensor([SCALAR_RESULTS[ref_name](ps)], dtype=torch.float64)
            bad = mismatches(got[i], want, tol=1e-8)
            assert not bad, f"{name} {edge}: {bad}"


def test_flows_into_a_read_partition_its_flow() -> None:
    """Every path into a read takes exactly one incoming edge, so under SumProduct
    the incoming edges add up to the read's whole flow, and the edges into the
    logits add up to the gradient summed over the input."""
    model, x = toy(batch=3, tokens=4, d=8, heads=2, layers=3)
    f = lambda e: model(e)[:, -1, 0]  # noqa: E731
    cg = circuits.trace(f, x)
    scores = cg.edge_flows("sum").finalize()
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(xg).sum(), xg)
    into_logits = sum(
        scores[i] for i, e in enumerate(cg.edges) if e.downstream == "logits"
    )
    torch.testing.assert_close(into_logits, grad.sum((1, 2)))
    assert math.isfinite(float(scores.abs().sum()))


@pytest.mark.parametrize("case", sorted(CASES))
def test_path_edges_follow_the_modules(case: str) -> None:
    config = dict(CASES[case])
    tokens = config.pop("tokens", 2)
    model, x = toy(tokens=tokens, **config)
    cg = circuits.trace(lambda e: model(e)[:, -1, 1], x)
    source = cg.inputs[0]
    node = cg.graph.node_of(source)
    ref = ReferenceGraph(cg.graph, cg.output)
    shape = cg.graph.nodes[node].shape
    for flat, paths in enumerate(ref.source_paths(source)):
        for product, hops in paths[::97]:
            path = Path(
                product,
                tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), shape)),
                [
                    Hop(op, cg.graph.nodes[n].producer.module, index, w, n)
                    for op, n, index, w in hops
                ],
                node,
            )
            seq = _component_sequence(cg.graph, hops, 0)
            want = [
                circuits.Edge(u, v, slot) for (u, _), (v, slot) in zip(seq, seq[1:])
            ]
            assert cg.path_edges(path) == want


def test_the_best_paths_edges_carry_its_value() -> None:
    """The best path passes each of its edges, and no path through an edge beats
    the best path: the MaxProduct flow of each of its edges is its value."""
    model, x = toy(batch=1, tokens=4, d=8, heads=2, layers=2)
    cg = circuits.trace(lambda e: model(e)[:, -1, 0], x)
    (best,) = cg.top_paths(1)
    flows = cg.edge_flows(cs.MaxProduct("absolute")).totals()
    edges = cg.path_edges(best)
    assert edges[0].upstream == "embed" and edges[-1].downstream == "logits"
    for a, b in zip(edges, edges[1:]):
        assert a.downstream == b.upstream
    for e in edges:
        assert float(flows[cg.edges.index(e)]) == pytest.approx(best.value, rel=1e-9)
    assert float(flows.abs().max()) == pytest.approx(abs(best.value), rel=1e-9)


def test_read_flow_adds_up_to_the_edges_into_the_read() -> None:
    """Under SumProduct the flow into a read, summed over its elements, is the sum of
    the flows of the edges into it (every path into it takes one of them)."""
    model, x = toy(batch=1, tokens=3, d=8, heads=2, layers=2)
    cg = circuits.trace(lambda e: model(e)[:, -1, 0], x)
    flows = cg.edge_flows("sum").totals()
    for name, slot in [("blocks.1.attn.head0", "k"), ("blocks.1.mlp", "in")]:
        got = float(cs.SumProduct().finalize(cg.read_flow(name, slot, "sum")).sum())
        want = sum(
            float(flows[i])
            for i, e in enumerate(cg.edges)
            if (e.downstream, e.slot) == (name, slot)
        )
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
    with pytest.raises(ValueError, match="reads are"):
        cg.read_flow("blocks.1.attn.head0", "in")
