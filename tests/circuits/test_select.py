"""Circuit selection: top edges, greedy growth from the logits, unions of best paths."""

from __future__ import annotations

import pytest
import torch
from circuit_models import toy

import captum_semiring as cs
from captum_semiring import circuits


@pytest.fixture(scope="module")
def graph():
    model, x = toy(batch=2, tokens=4, d=8, heads=2, layers=2)
    return circuits.trace(lambda e: model(e)[:, -1, 0], x)


def test_top_edges_rank_by_magnitude(graph) -> None:
    scores = graph.edge_flows("sum")
    circuit = circuits.top_edges(scores, 5)
    totals = scores.totals().abs()
    want = sorted(range(len(scores.edges)), key=lambda i: -float(totals[i]))[:5]
    assert circuit.edges == [scores.edges[i] for i in want]
    assert len(circuits.top_edges(scores)) == len(scores.edges)


def test_greedy_grows_a_connected_circuit_from_the_logits(graph) -> None:
    scores = graph.edge_flows(cs.MaxProduct("absolute"))
    circuit = circuits.greedy(scores, 8)
    assert len(circuit) == 8
    reached = {"logits"}
    ranking = dict(zip(scores.edges, scores.ranking().tolist()))
    for e in circuit.edges:
        assert e.downstream in reached
        # no better edge into the circuit was passed over
        better = [
            o
            for o in scores.edges
            if o.downstream in reached
            and o not in circuit.edges[: circuit.edges.index(e)]
            and ranking[o] > ranking[e]
        ]
        assert not better, better
        reached.add(e.upstream)


def test_path_union_holds_whole_paths(graph) -> None:
    paths = graph.top_paths(6)
    values = [abs(p.value) for p in paths]
    assert values == sorted(values, reverse=True) and len(paths) == 6
    for p in paths:
        assert p.product() == pytest.approx(p.value)
    circuit = circuits.path_union(graph, 6, paths)
    for p in paths:
        assert set(graph.path_edges(p)) <= set(circuit.edges)
    assert set(circuits.path_union(graph, 2, paths).edges) <= set(circuit.edges)
    # the best paths found by TopK(6) begin with the best single path
    assert graph.top_paths(1)[0].value == pytest.approx(paths[0].value)


def test_precision_recall_and_networkx(graph) -> None:
    edges = graph.edges[:4]
    circuit = circuits.Circuit(edges[:2] + [graph.edges[10]], "hand")
    precision, recall = circuit.precision_recall(edges)
    assert (precision, recall) == (pytest.approx(2 / 3), 0.5)
    g = circuit.to_networkx()
    assert g.number_of_edges() == 3
    assert set(g.nodes) == set(circuit.nodes)
    whole = graph.to_networkx(graph.edge_flows("sum"))
    assert whole.number_of_edges() == len(graph.edges)
    assert all(d["score"] is not None for _, _, d in whole.edges(data=True))
    assert torch.isfinite(
        torch.tensor([d["score"] for *_, d in whole.edges(data=True)])
    ).all()
