"""Branch flow: flow into each consumer group, and the paper's top-branch view."""

from __future__ import annotations

import pytest
import torch
from builders import tiny_bert

import captum_semiring as cs


def test_branch_flow_groups_by_consumer_module():
    model = tiny_bert(layers=1)
    layer = model.encoder.layer[0]
    ids = torch.tensor([[1, 5, 7, 3]])
    with cs.record(cs.layer_input(layer)) as graph:
        out = model(ids).last_hidden_state[:, 0].sum(-1)
    for semiring in ("sum", "max"):
        res = graph.backward(out, semiring)
        flow = res.branch_flow(cs.layer_input(layer))
        suffixes = sorted(
            label.rsplit(".", 2)[-2] + "." + label.rsplit(".", 1)[-1]
            for label in flow.labels
        )
        assert suffixes == ["attention.output", "self.key", "self.query", "self.value"]
        total = flow.values[0]
        for v in flow.values[1:]:
            total = res.semiring.plus(total, v)
        torch.testing.assert_close(
            res.semiring.finalize(total), res[cs.layer_input(layer)]
        )
    top = (
        graph.backward(out, "max").branch_flow(cs.layer_input(layer)).top_branch(dim=-1)
    )
    assert ((top != 0).sum(0) <= 1).all()  # one branch per token carries the top path


def test_top_branch_follows_the_sign():
    x = torch.tensor([[1.0]], dtype=torch.float64)
    with cs.record(x) as graph:
        a, b = x * 2.0, x / (-1.0 / 3.0)  # two consumer groups: mul (+2) and div (-3)
        out = (a + b).sum(-1)
    for sign, expected in (
        ("positive", {"aten.mul.Tensor": 2.0, "aten.div.Tensor": 0.0}),
        ("negative", {"aten.mul.Tensor": 0.0, "aten.div.Tensor": -3.0}),
        ("absolute", {"aten.mul.Tensor": 0.0, "aten.div.Tensor": -3.0}),
    ):
        flow = graph.backward(out, cs.MaxProduct(sign)).branch_flow(x, by="op")
        top = flow.top_branch(dim=-1)[:, 0].tolist()
        assert dict(zip(flow.labels, top, strict=True)) == pytest.approx(expected), sign
