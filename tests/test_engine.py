"""Engine behaviour: float32 numerics, flow through nodes, paths, and bad input."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from builders import tiny_bert_config, two_layer_mlp
from torch import nn

import captum_semiring as cs

LOG_SEMIRINGS = [cs.Entropy(), cs.LogSum(), cs.PathCount()]
NUMERIC_SEMIRINGS = LOG_SEMIRINGS + [
    cs.MaxProduct("positive"),
    cs.MaxProduct("absolute"),
]


def _global_hooks():
    from torch.nn.modules import module as m

    return len(m._global_forward_hooks), len(m._global_forward_pre_hooks)


def _deep_tanh_mlp(depth=24, width=16):
    torch.manual_seed(0)
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(width, 1))


def _compare_precisions(model, inputs, sources32, sources64, output_fn):
    model64 = copy.deepcopy(model).double()
    results = {}
    for precision, m, srcs in (
        ("32", model.float(), sources32(model)),
        ("64", model64, sources64(model64)),
    ):
        ins = tuple(
            t.double() if precision == "64" and t.is_floating_point() else t
            for t in inputs
        )
        ins_src = list(srcs) or [ins[0]]
        with cs.record(*ins_src) as graph:
            out = output_fn(m(*ins))
        key = ins_src[0]
        results[precision] = [graph.backward(out, sr)[key] for sr in NUMERIC_SEMIRINGS]
    for sr, r32, r64 in zip(
        NUMERIC_SEMIRINGS, results["32"], results["64"], strict=True
    ):
        assert torch.isfinite(r32).all(), f"{sr!r} is not finite in float32"
        torch.testing.assert_close(
            r32.double(), r64, rtol=1e-3, atol=1e-30, msg=f"{sr!r}"
        )


def test_float32_deep_tanh_mlp_matches_float64():
    model = _deep_tanh_mlp()
    x = torch.randn(3, 16)
    _compare_precisions(model, (x,), lambda m: [], lambda m: [], lambda out: out[:, 0])


def test_float32_twelve_layer_bert_matches_float64():
    from transformers import BertModel

    torch.manual_seed(0)
    config = tiny_bert_config(
        vocab_size=50,
        hidden_size=64,
        num_hidden_layers=12,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=16,
    )
    model = BertModel(config).eval()
    ids = torch.tensor([[2, 7, 11, 5, 3]])
    _compare_precisions(
        model,
        (ids,),
        lambda m: [m.embeddings],
        lambda m: [m.embeddings],
        lambda out: out.last_hidden_state[:, 0, 0],
    )


def test_log_space_semirings_survive_underflowing_paths():
    """Path products far below float32's range still give finite, exact logs."""
    x = torch.tensor([1.0, 2.0])
    with cs.record(x) as graph:
        y = x
        for _ in range(40):
            y = y * 1e-3  # each path product is 1e-120, which underflows float32
        out = y.sum()
    expected = 40 * math.log(1e-3)
    torch.testing.assert_close(
        graph.backward(out, "logsum")[x], torch.full((2,), expected), rtol=1e-5, atol=0
    )
    torch.testing.assert_close(
        graph.backward(out, "entropy")[x], torch.zeros(2), atol=1e-3, rtol=0
    )
    torch.testing.assert_close(graph.backward(out, "count")[x], torch.zeros(2))


def test_entropy_of_zero_flow_and_zero_weight_edges():
    x = torch.tensor([-1.0, 2.0])
    with cs.record(x) as graph:
        out = torch.relu(x).sum()  # x[0] reaches out only through a weight-0 edge
    ent = graph.backward(out, "entropy")[x]
    assert ent.tolist() == [0.0, 0.0]
    assert graph.backward(out, "logsum")[x][0] == -math.inf
    assert graph.backward(out, "count")[x].tolist() == [0.0, 0.0]


def test_flow_through_a_cut_sums_to_the_gradient():
    net, x = two_layer_mlp()
    with cs.record(x) as graph:
        hidden = net[:2](x)  # every path from x to the output crosses this layer once
        out = net[2:](hidden)[:, 0]
    grad = graph.backward(out, "sum")
    fwd = graph.forward("sum")
    torch.testing.assert_close(
        grad.flow(hidden, fwd).sum(), grad[x].sum(), rtol=1e-9, atol=1e-12
    )

    best = graph.backward(out, "max")
    best_fwd = graph.forward("max")
    torch.testing.assert_close(
        best.flow(hidden, best_fwd).max(), best[x].max(), rtol=1e-9, atol=0
    )


def test_forward_sweep_counts_paths_from_sources():
    x = torch.ones(3, dtype=torch.float64)
    with cs.record(x) as graph:
        y = x.sum() * x  # y_i is reached from x_i twice and from each x_j once
    counts = graph.forward("count")
    torch.testing.assert_close(
        counts.values(y)[0].exp(), torch.full((3,), 4.0, dtype=torch.float64)
    )


def test_aggregate_is_plus_before_finalize():
    x = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    with cs.record(x) as graph:
        out = (2 * x).sum(-1)  # one path of weight 2 per element
    res = graph.backward(out, "entropy")
    assert res[x].tolist() == [[0.0, 0.0]]
    torch.testing.assert_close(
        res.aggregate(x, dim=-1), torch.tensor([math.log(2)], dtype=torch.float64)
    )


# ----- bad input -------------------------------------------------------------------


def test_output_must_be_one_scalar_per_example():
    x = torch.randn(2, 3)
    with cs.record(x) as graph:
        out = x * 2
    with pytest.raises(ValueError, match="one scalar per example"):
        graph.backward(out, "sum")


def test_unknown_semiring_name():
    with pytest.raises(ValueError, match="unknown semiring 'maxx'"):
        cs.get_semiring("maxx")


def test_source_that_does_not_reach_output_is_zero():
    x, unused = torch.randn(3), torch.randn(2)
    with cs.record(x, unused) as graph:
        out = (x * 2).sum()
    assert graph.backward(out, "max")[unused].tolist() == [0.0, 0.0]
    assert graph.backward(out, cs.TopK(2))[unused].tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert graph.backward(out, "entropy")[unused].tolist() == [0.0, 0.0]
    assert graph.backward(out, "sum")[unused].tolist() == [0.0, 0.0]


def test_forward_sweep_through_softmax_and_layer_norm_is_a_jvp():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True)
    layer = layer.double().eval()
    x = torch.randn(1, 3, 4, dtype=torch.float64)
    with cs.record(x) as graph:
        y = torch.log_softmax(layer(x), -1).cumsum(-1)
    got = graph.forward("sum").values(y)[0]
    jacobian = torch.autograd.functional.jacobian(
        lambda t: torch.log_softmax(layer(t), -1).cumsum(-1), x
    )
    expected = jacobian.sum((3, 4, 5))  # J @ ones: the tangent of all sources at once
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("semiring", ["sum", "max", "logsum"])
def test_flow_across_a_layer_norm_cut(semiring):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True)
    layer = layer.double().eval()
    x = torch.randn(1, 3, 4, dtype=torch.float64)
    with cs.record(x) as graph:
        hidden = layer(x)  # ends in a layer norm: every path crosses it once
        out = torch.softmax(hidden.sum(-1), -1)[:, 0]
    res, fwd = graph.backward(out, semiring), graph.forward(semiring)
    sr = res.semiring
    through = sr.sum(sr.times(fwd.values(hidden), res.values(hidden)), [1, 2, 3])
    total = sr.sum(res.values(x), [1, 2, 3])
    torch.testing.assert_close(
        sr.finalize(through), sr.finalize(total), rtol=1e-9, atol=1e-12
    )


def test_entropy_is_never_negative_after_round_off():
    # (log Z, expected log-weight) of a single path can differ by round-off either way.
    state = torch.tensor([[2.0, 2.0, float("-inf")], [2.0 + 1e-6, 1.5, 0.0]])
    assert torch.equal(cs.Entropy().finalize(state), torch.tensor([0.0, 0.5, 0.0]))


def test_aggregate_and_path_reject_out_of_range_arguments():
    x = torch.randn(2, 3)
    with cs.record(x) as graph:
        out = (x * 2).sum(-1)
    res = graph.backward(out, "max")
    with pytest.raises(IndexError, match="aggregate dim 5 is out of range"):
        res.aggregate(x, dim=5)
    with pytest.raises(IndexError, match="flat index 99 is out of range"):
        res.path(x, 99)
