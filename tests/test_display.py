"""Notebook display of paths and branch flow, and k paths merged into one graph.

Each check compares the text with the object's own fields, computed here again."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections import Counter

import pytest
import torch
from builders import tiny_bert, two_layer_mlp

import captum_semiring as cs
from captum_semiring.paths import TOP_LEVEL, Hop, Path


def _rows(path: Path) -> list[list[Hop]]:
    """The display rows, built here again: a run of unit-weight hops within one
    module is one row; every other hop is a row of its own."""
    rows: list[list[Hop]] = []
    for hop in path.hops:
        last = rows[-1][-1] if rows else None
        if (
            last is not None
            and hop.weight == 1.0
            and last.weight == 1.0
            and hop.module == last.module
        ):
            rows[-1].append(hop)
        else:
            rows.append([hop])
    return rows


def _mlp_path(index: tuple[int, int] = (0, 1)) -> Path:
    net, x = two_layer_mlp()
    with cs.record(x) as graph:  # four index maps at the top level, then the MLP
        out = net(x.view(3, 2, 2).reshape(3, 4).t().t())[:, 0]
    return graph.backward(out, cs.MaxProduct()).path(x, index)


def test_path_repr_shows_value_hops_and_weights():
    path = _mlp_path()
    text = repr(path)
    lines = text.splitlines()
    assert lines[0].startswith("Path(")
    assert f"{path.value:.6g}" in lines[0]
    assert f"{len(path.hops)} hops" in lines[0]
    assert str(list(path.source)) in lines[0]
    rows = _rows(path)
    assert len(rows[0]) == 4  # the views merge into one row
    assert len(lines) == 1 + len(rows)
    for line, row in zip(lines[1:], rows, strict=True):
        hop = row[-1]
        assert line.split()[0] == (hop.module or TOP_LEVEL).split()[0]
        assert str(list(hop.index)) in line
        assert line.endswith(f"x {hop.weight:.4g}")
        for h in (row[0], row[-1]):
            assert h.op.removeprefix("aten.").removesuffix(".default") in line
    for hop in path.hops:
        assert f"{hop.weight:.4g}" in text
    assert "(4 ops)" in lines[1]
    assert TOP_LEVEL in text and path.hops[-1].module == ""
    assert TOP_LEVEL in str(path)  # the hop-by-hop print uses the same label


def test_path_html_is_a_well_formed_table():
    path = _mlp_path((2, 3))
    table = ET.fromstring(path._repr_html_())
    assert table.tag == "table"
    assert f"{path.value:.6g}" in table.findtext("caption", "")
    header = [th.text for th in table.iter("th")]
    assert header == ["module", "ops", "hops", "index", "weight"]
    body = table.find("tbody")
    assert body is not None
    cells = [[td.text or "" for td in tr.iter("td")] for tr in body.iter("tr")]
    rows = _rows(path)
    assert len(cells) == len(rows)
    for (module, _, hops, index, weight), row in zip(cells, rows, strict=True):
        assert module == (row[-1].module or TOP_LEVEL)  # "<top level>" escaped
        assert int(hops) == len(row)
        assert index == str(list(row[-1].index))
        assert weight == f"{math.prod(h.weight for h in row):.4g}"
    assert sum(int(c[2]) for c in cells) == len(path.hops)
    product = math.prod(float(c[4]) for c in cells)
    assert product == pytest.approx(path.value, rel=1e-3 * len(cells))


def test_long_path_repr_is_cut_in_the_middle():
    hops = [Hop("aten.mul.Tensor", f"m{i}", (i,), 2.0 + i, node=i) for i in range(60)]
    path = Path(math.prod(h.weight for h in hops), (0,), hops)
    lines = repr(path).splitlines()
    assert len(lines) == 1 + 24
    assert "(37 rows)" in lines[13]  # 12 shown, 37 elided, 11 shown
    assert lines[1].endswith(f"x {hops[0].weight:.4g}")
    assert lines[-1].endswith(f"x {hops[-1].weight:.4g}")
    assert len(_rows(path)) == 60


def _layer_flow(semiring: object) -> tuple[cs.BranchFlow, cs.SemiringResult, object]:
    model = tiny_bert(layers=1)
    layer_in = cs.layer_input(model.encoder.layer[0])
    ids = torch.tensor([[1, 5, 7, 3], [2, 4, 6, 8]])
    with cs.record(layer_in) as graph:
        out = model(ids).last_hidden_state[:, 0].sum(-1)
    res = graph.backward(out, semiring)
    return res.branch_flow(layer_in), res, layer_in


@pytest.mark.parametrize("semiring", ["sum", "max", "topk3"])
def test_branch_flow_repr_shows_labels_totals_and_shares(semiring):
    flow, res, layer_in = _layer_flow(semiring)
    sr = res.semiring
    assert len(flow.labels) == 4
    # Totals: each group's flow, semiring-summed over every element, finalized.
    totals = []
    for v in flow.values:
        final = sr.finalize(sr.sum(v, [1, 2, 3]))
        totals.append(float(final[0]) if final.dim() else float(final))
    whole = res.aggregate(layer_in, dim=[0, 1, 2])
    whole = float(whole[0]) if whole.dim() else float(whole)
    if semiring == "sum":  # the groups add up to the tensor's whole flow
        assert sum(totals) == pytest.approx(whole, rel=1e-9, abs=1e-12)
    else:  # the best group carries the tensor's best path
        assert max(totals, key=abs) == pytest.approx(whole, rel=1e-9)
    # Shares: per element, which group has the best finalized flow.
    final = flow.finalize()
    if semiring == "topk3":
        final = final[:, 0]
    score = final.abs() if semiring == "topk3" else final
    winner = score.flatten(1).argmax(0)
    flowing = (final.flatten(1) != 0).any(0)
    shares = [
        float(((winner == g) & flowing).sum()) / float(flowing.sum())
        for g in range(len(flow.labels))
    ]
    assert sum(shares) == pytest.approx(1.0)
    text = repr(flow)
    assert text.startswith(f"BranchFlow({sr!r}, 4 groups")
    lines = text.splitlines()[2:]
    for line, label, total, share in zip(
        lines, flow.labels, totals, shares, strict=True
    ):
        assert line.split() == [label, f"{total:.4g}", f"{share:.1%}"]
    torch.testing.assert_close(flow.totals(), torch.tensor(totals, dtype=torch.float64))
    torch.testing.assert_close(flow.shares(), torch.tensor(shares, dtype=torch.float64))

    table = ET.fromstring(flow._repr_html_())
    body = table.find("tbody")
    assert body is not None
    cells = [[td.text for td in tr.iter("td")] for tr in body.iter("tr")]
    assert cells == [
        [label, f"{total:.4g}", f"{share:.1%}"]
        for label, total, share in zip(flow.labels, totals, shares, strict=True)
    ]


def test_branch_flow_without_consumers_displays():
    x = torch.randn(2, 3, dtype=torch.float64)
    with cs.record(x) as graph:
        y = torch.tanh(x)
        out = y.sum(-1)
    flow = graph.backward(out, "max").branch_flow(out)
    assert flow.labels == []
    assert repr(flow).startswith("BranchFlow(MaxProduct(sign='positive'), 0 groups")
    assert ET.fromstring(flow._repr_html_()).find("tbody") is not None
    top = graph.backward(out, "sum").branch_flow(x, by="op")
    assert repr(top).splitlines()[2].split()[0] == "aten.tanh.default"


def test_path_to_networkx_keeps_repeated_ops_apart():
    x = torch.randn(2, 3, dtype=torch.float64)
    with cs.record(x) as graph:
        out = ((x + 1.0) + 1.0).sum(-1)  # two aten.add.Tensor at one index, top level
    path = graph.backward(out, "max").path(x, (1, 2))
    adds = [h for h in path.hops if h.op == "aten.add.Tensor"]
    assert len(adds) == 2 and adds[0].index == adds[1].index
    g = path.to_networkx()
    import networkx as nx

    assert g.number_of_nodes() == len(path.hops) + 1
    assert g.number_of_edges() == len(path.hops)
    assert nx.is_directed_acyclic_graph(g)
    assert [d["weight"] for *_, d in g.edges(data=True)] == [
        h.weight for h in path.hops
    ]


def test_merged_topk_paths_count_shared_nodes_and_edges():
    net, x = two_layer_mlp()
    with cs.record(x) as graph:
        out = net(x)[:, 0]
    res = graph.backward(out, cs.TopK(3))
    paths = [res.path(x, index, rank=r) for index in [(0, 1), (0, 2)] for r in range(3)]
    g = cs.merge_paths(paths)

    def keys(path: Path) -> list[tuple[object, ...]]:
        return [(path.source_node, path.source)] + [
            (h.node, h.index) for h in path.hops
        ]

    nodes = Counter(k for p in paths for k in keys(p))
    edges: Counter[tuple[object, object]] = Counter()
    values: dict[tuple[object, object], float] = {}
    for p in paths:
        ks = keys(p)
        for edge in zip(ks, ks[1:]):
            edges[edge] += 1
            values[edge] = values.get(edge, 0.0) + p.value
    assert len(nodes) < sum(len(p.hops) + 1 for p in paths)  # they do share
    assert g.number_of_nodes() == len(nodes)
    assert g.number_of_edges() == len(edges)
    assert g.graph["paths"] == len(paths)

    def key(n: tuple[object, ...]) -> tuple[object, object]:
        return (g.nodes[n]["node"], g.nodes[n]["index"])

    assert {key(n): d["count"] for n, d in g.nodes(data=True)} == dict(nodes)
    assert {(key(u), key(v)): d["count"] for u, v, d in g.edges(data=True)} == dict(
        edges
    )
    for u, v, d in g.edges(data=True):
        assert d["value"] == pytest.approx(values[key(u), key(v)])
    # Adding one more path into the same graph, as Path.to_networkx(graph) does.
    again = paths[0].to_networkx(g)
    assert again is g and g.graph["paths"] == len(paths) + 1
    assert g.number_of_edges() == len(edges)


def test_result_notebook_display_lists_each_source() -> None:
    import xml.etree.ElementTree as ET

    x = torch.tensor([[1.0, -2.0, 0.5]])
    with cs.record(x) as graph:
        out = torch.tanh(3 * x).sum(-1)
    res = graph.backward(out, "max")
    table = ET.fromstring(res._repr_html_())
    cells = [td.text for td in table.iter("td")]
    values = res[x]
    assert cells == [
        "tensor 0",
        str(tuple(x.shape)),
        f"{float(values.min()):.4g}",
        f"{float(values.max()):.4g}",
    ]
