"""Saving results: SemiringResult.save / cs.load_result round-trip exactly, paths and
branch flow survive JSON, and a Graph or SemiringResult pickles (and can be swept
again after loading)."""

from __future__ import annotations

import io
import json
import math
import pickle

import pytest
import torch
from builders import SEMIRINGS
from torch import nn

import captum_semiring as cs
from captum_semiring.saved import SUMMARY, TENSORS

ROUND_TRIP = {
    "sum": cs.SumProduct,
    "max": cs.MaxProduct,
    "max_absolute": lambda: cs.MaxProduct("absolute"),
    "entropy": cs.Entropy,
    "topk2": lambda: cs.TopK(2),
}


def _recorded():
    """A float64 3-4-1 tanh MLP recorded from its input, a hidden layer's output
    and the last layer's input; the output is one scalar per example."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    items = (x, net[1], cs.layer_input(net[2]))
    with cs.record(*items) as graph:
        out = net(x)[:, 0]
    return graph, out, items


def _round_trip(obj, how):
    if how == "pickle":
        return pickle.loads(pickle.dumps(obj))
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.mark.parametrize("name", list(ROUND_TRIP))
def test_saved_values_equal_the_result_exactly(tmp_path, name):
    graph, out, items = _recorded()
    res = graph.backward(out, ROUND_TRIP[name]())
    res.save(tmp_path, paths=False)
    saved = cs.load_result(tmp_path)
    assert saved.semiring == res.semiring
    assert saved.names == ["tensor 0", "output of 1", "input of 2"]
    for position, item in enumerate(items):
        assert torch.equal(saved[position], res[item])
        assert torch.equal(saved[saved.names[position]], res[item])
        assert saved[position].dtype == torch.float64
    assert torch.equal(saved.output, out.detach())
    # the tensor file needs neither the model nor captum_semiring's classes
    tensors = torch.load(tmp_path / TENSORS, weights_only=True)
    assert torch.equal(tensors["values"]["tensor 0"], res[items[0]])
    json.loads((tmp_path / SUMMARY).read_text())  # strict JSON


@pytest.mark.parametrize("name", ["max", "max_absolute", "topk2"])
def test_saved_paths_round_trip_hop_by_hop(tmp_path, name):
    graph, out, items = _recorded()
    x = items[0]
    res = graph.backward(out, ROUND_TRIP[name]())
    res.save(tmp_path)
    saved = cs.load_result(tmp_path)
    paths = saved.paths["tensor 0"]
    ranks = 2 if name == "topk2" else 1
    assert len(paths) == x.shape[0] * ranks  # the best element of each example
    best = res.semiring.score(res.semiring.best(res[x])).argmax(dim=1)
    for b in range(x.shape[0]):
        for rank in range(ranks):
            path = paths[b * ranks + rank]
            assert path.source == (b, int(best[b]))
            expected = res.path(x, path.source, rank)
            assert path.value == expected.value
            assert len(path.hops) == len(expected.hops)
            for hop, hop_expected in zip(path.hops, expected.hops, strict=True):
                assert hop.op == hop_expected.op
                assert hop.module == hop_expected.module
                assert hop.index == hop_expected.index
                assert hop.weight == hop_expected.weight
            assert math.prod(h.weight for h in path.hops) == pytest.approx(
                path.value, rel=1e-12
            )
            value = res[x][(rank, *path.source) if ranks > 1 else path.source]
            assert path.value == pytest.approx(float(value), rel=1e-12)
    assert [hop.module for hop in paths[0].hops] == ["0", "1", "2", ""]


def test_chosen_path_elements_by_item_name_or_position(tmp_path):
    graph, out, items = _recorded()
    res = graph.backward(out, "max")
    saved = res.summary(paths={items[0]: [(0, 2), 4], "output of 1": [(1, 3)]})
    assert [p.source for p in saved.paths["tensor 0"]] == [(0, 2), (1, 1)]
    assert saved.paths["tensor 0"][1] == res.path(items[0], 4)
    assert saved.paths["output of 1"] == [res.path(items[1], (1, 3))]
    assert res.summary(paths={2: [(0, 0)]}).paths["input of 2"] == [
        res.path(items[2], (0, 0))
    ]
    assert res.summary(paths=False).paths == {}
    with pytest.raises(IndexError):
        res.summary(paths={items[0]: [(9, 0)]})
    with pytest.raises(KeyError, match="not a source"):
        res.summary(paths={out: [0]})
    # semirings without paths save none by default, and refuse chosen elements
    assert graph.backward(out, "entropy").summary().paths == {}
    with pytest.raises(TypeError, match="does not single out paths"):
        graph.backward(out, "sum").summary(paths={items[0]: [(0, 0)]})
    # a forward sweep has no output to trace paths to
    forward = graph.forward("max")
    saved = forward.summary()
    assert saved.paths == {} and saved.output is None
    assert torch.equal(saved["output of 1"], forward[items[1]])
    with pytest.raises(TypeError, match="forward sweep"):
        forward.summary(paths=True)
    again = cs.load_result(forward.save(tmp_path / "forward"))
    assert again.output is None and torch.equal(again[0], forward[items[0]])


def test_path_json_round_trip_is_exact_and_strict():
    graph, out, items = _recorded()
    path = graph.backward(out, "max").path(items[0], (2, 1))
    text = json.dumps(path.to_dict(), allow_nan=False)
    assert cs.Path.from_dict(json.loads(text)) == path
    odd = cs.Path(math.inf, (0,), [cs.Hop("aten.mul.Tensor", "", (0,), math.nan)])
    again = cs.Path.from_dict(json.loads(json.dumps(odd.to_dict(), allow_nan=False)))
    assert again.value == math.inf and math.isnan(again.hops[0].weight)
    assert again.hops[0].index == (0,) and again.source == (0,)


@pytest.mark.parametrize("name", ["sum", "max", "entropy", "topk2"])
def test_branch_flow_round_trips(tmp_path, name):
    graph, out, items = _recorded()
    res = graph.backward(out, ROUND_TRIP[name]())
    flow = res.branch_flow(items[0])
    # raw values hold the semiring's zero (inf for MaxProduct, NaN for TopK)
    text = json.dumps(flow.to_dict(), allow_nan=False)
    again = cs.BranchFlow.from_dict(json.loads(text))
    assert again.labels == flow.labels and again.semiring == flow.semiring
    assert torch.equal(again.values.nan_to_num(7.0), flow.values.nan_to_num(7.0))
    assert again.values.dtype == flow.values.dtype
    res.save(tmp_path, paths=False, branch_flow=["tensor 0", items[1]])
    saved = cs.load_result(tmp_path)
    assert sorted(saved.branch_flows) == ["output of 1", "tensor 0"]
    loaded = saved.branch_flows["output of 1"]
    expected = res.branch_flow(items[1])
    assert loaded.labels == expected.labels == ["2"]
    assert torch.equal(loaded.values.nan_to_num(7.0), expected.values.nan_to_num(7.0))
    assert torch.equal(loaded.finalize(), expected.finalize())


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_pickled_graph_sweeps_to_the_same_values(how):
    graph, out, items = _recorded()
    root = graph.node_of(out)
    loaded = _round_trip(graph, how)
    assert loaded.source_names() == graph.source_names()
    for factory, *_ in SEMIRINGS.values():
        before = graph.backward(out, factory())
        after = loaded.backward(root, factory())
        for name, item in zip(graph.source_names(), items, strict=True):
            assert torch.equal(after[name], before[item])
        assert torch.equal(
            loaded.forward(factory())["output of 1"], graph.forward(factory())[items[1]]
        )
    res = loaded.backward(root, "max")
    assert res.path("tensor 0", (1, 2)) == graph.backward(out, "max").path(
        items[0], (1, 2)
    )


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_pickled_result_is_indexed_by_name_or_node(tmp_path, how):
    graph, out, items = _recorded()
    res = graph.backward(out, cs.TopK(2))
    loaded = _round_trip(res, how)
    assert loaded.semiring == res.semiring and loaded.root == res.root
    for name, item in zip(graph.source_names(), items, strict=True):
        assert torch.equal(loaded[name], res[item])
        assert torch.equal(loaded[graph.node_of(item)], res[item])
    assert torch.equal(
        loaded.aggregate("tensor 0", dim=-1), res.aggregate(items[0], -1)
    )
    assert loaded.path("tensor 0", (0, 0), rank=1) == res.path(items[0], (0, 0), 1)
    loaded.save(tmp_path)
    assert torch.equal(cs.load_result(tmp_path)["input of 2"], res[items[2]])
    # what named nodes by identity does not survive: a clear error
    for item in items:
        with pytest.raises(KeyError, match="loaded from a pickle.*source's name"):
            loaded[item]
    with pytest.raises(ValueError, match="loaded from a pickle"):
        loaded.graph.backward(out, "max")
    with pytest.raises(KeyError, match="no source is named 'x'"):
        loaded["x"]


def test_a_module_that_ran_twice_is_saved_per_run(tmp_path):
    torch.manual_seed(0)
    block = nn.Linear(2, 2).double()
    x = torch.randn(3, 2, dtype=torch.float64)
    with cs.record(block) as graph:
        out = block(torch.tanh(block(x))).sum(-1)
    res = graph.backward(out, "max")
    assert graph.source_names() == [
        "output of Linear",
        "output of Linear #0",
        "output of Linear #1",
    ]
    res.save(tmp_path)
    saved = cs.load_result(tmp_path)
    assert sorted(saved.values) == ["output of Linear #0", "output of Linear #1"]
    assert torch.equal(saved["output of Linear #1"], res["output of Linear #1"])
    assert len(saved.paths["output of Linear #0"]) == 3
    with pytest.raises(KeyError, match="ran 2 times"):
        saved[0]
    with pytest.raises(KeyError, match="ran 2 times"):
        res["output of Linear"]
    loaded = pickle.loads(pickle.dumps(res))
    assert torch.equal(loaded["output of Linear #0"], res["output of Linear #0"])


def test_graph_with_decompose_and_memory_format_pickles():
    x = torch.randn(2, 3, dtype=torch.float64)
    with cs.record(x, decompose=("softmax",)) as graph:
        y = torch.softmax(x, -1).clone(memory_format=torch.contiguous_format)
        out = (y * x).sum(-1)
    root = graph.node_of(out)
    for how in ("pickle", "torch.save"):
        loaded = _round_trip(graph, how)
        assert loaded.decompose == graph.decompose
        assert torch.equal(
            loaded.backward(root, "sum")["tensor 0"], graph.backward(out)[x]
        )


def test_semirings_round_trip_through_to_dict():
    for factory, *_ in SEMIRINGS.values():
        sr = factory()
        assert cs.Semiring.from_dict(json.loads(json.dumps(sr.to_dict()))) == sr
    with pytest.raises(ValueError, match="cannot rebuild the semiring"):
        cs.Semiring.from_dict({"class": "elsewhere.NoSuchSemiring", "params": {}})


def test_load_result_checks_its_input(tmp_path):
    graph, out, items = _recorded()
    folder = graph.backward(out, "entropy").save(tmp_path / "result")
    summary = json.loads((folder / SUMMARY).read_text())
    summary["semiring"]["class"] = "mine.Unknown"
    (folder / SUMMARY).write_text(json.dumps(summary))
    with pytest.raises(ValueError, match="import the module"):
        cs.load_result(folder)
    assert cs.load_result(folder, semiring=cs.Entropy()).semiring == cs.Entropy()
    summary["version"] = 99
    (folder / SUMMARY).write_text(json.dumps(summary))
    with pytest.raises(ValueError, match="format version 99"):
        cs.load_result(folder)
    (folder / SUMMARY).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a saved captum-semiring result"):
        cs.load_result(folder)
