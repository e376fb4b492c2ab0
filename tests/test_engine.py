"""Engine behaviour: float32 numerics, flow through nodes, paths, and bad input."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import _get_current_dispatch_mode

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
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50,
        hidden_size=64,
        num_hidden_layers=12,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=16,
        attn_implementation="eager",
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


def _two_layer():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 1)
    ).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    return net, x


def test_flow_through_a_cut_sums_to_the_gradient():
    net, x = _two_layer()
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


def test_max_path_multiplies_out_and_matches_result():
    net, x = _two_layer()
    with cs.record(x) as graph:
        out = net(x)[:, 0]
    for sign in ("positive", "negative", "absolute"):
        res = graph.backward(out, cs.MaxProduct(sign))
        for index in [(0, 0), (2, 3)]:
            path = res.path(x, index)
            assert path.value == pytest.approx(
                float(res[x][index]), rel=1e-9, abs=1e-15
            )
            assert path.product() == pytest.approx(path.value, rel=1e-9, abs=1e-15)
            assert path.hops[-1].op == "aten.select.int"
            assert str(path).startswith("path value")


def test_minilm_top_path_names_its_modules():
    from captum_semiring.reproductions.tasks import load_minilm

    model, tokenizer = load_minilm()
    enc = tokenizer("the keys to the cabinet are on the table", return_tensors="pt")
    with cs.record(model.embeddings) as graph:
        out = model(**enc).last_hidden_state[:, 0, 0]
    res = graph.backward(out, "max")
    token_values = res.aggregate(model.embeddings, dim=-1)[0]
    token = int(token_values.argmax())
    hidden = int(res[model.embeddings][0, token].argmax())
    path = res.path(model.embeddings, (0, token, hidden))
    names = {name for name, _ in model.named_modules()}
    assert all(hop.module in names for hop in path.hops)
    layers = {m.split(".")[2] for m in path.modules() if m.startswith("encoder.layer.")}
    assert layers == {str(i) for i in range(6)}  # the path crosses every layer
    assert path.product() == pytest.approx(path.value, rel=1e-4)
    assert path.value == pytest.approx(float(token_values[token]), rel=1e-4)


def _tiny_bert(layers: int) -> nn.Module:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30,
        hidden_size=8,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=16,
        attn_implementation="eager",
    )
    return BertModel(config).double().eval()


def test_branch_flow_groups_by_consumer_module():
    model = _tiny_bert(layers=1)
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


def test_layer_input_of_a_padded_hf_batch_is_the_hidden_states():
    # The layer also receives a float attention mask; only the hidden states count.
    model = _tiny_bert(layers=2)
    layer = model.encoder.layer[1]
    ids = torch.tensor([[1, 5, 7, 3], [2, 4, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    with cs.record(cs.layer_input(layer)) as graph:
        out = model(ids, attention_mask=mask).last_hidden_state[:, 0].sum()
    got = graph.backward(out, "sum")[cs.layer_input(layer)]

    calls: list[tuple] = []
    handle = layer.register_forward_pre_hook(
        lambda m, args, kwargs: calls.append((args, kwargs)), with_kwargs=True
    )
    try:
        model(ids, attention_mask=mask)
    finally:
        handle.remove()
    (first, *rest), kwargs = calls[0]
    hidden = first.detach().requires_grad_(True)
    o = layer(hidden, *rest, **kwargs)
    o = o[0] if isinstance(o, tuple) else o
    want = torch.autograd.grad(o[:, 0].sum(), hidden)[0]
    assert got.shape == hidden.shape
    torch.testing.assert_close(got, want)


# ----- bad input -------------------------------------------------------------------
def test_unsupported_op_names_overload_and_module():
    class Block(nn.Module):
        def forward(self, x):
            return torch.linalg.svdvals(x).sum()

    model = nn.Sequential(nn.Linear(3, 3), Block())
    x = torch.randn(3, 3)
    before = _global_hooks()
    with pytest.raises(
        cs.UnsupportedOpError, match=r"aten\._linalg_svd\.default.*module '1'"
    ):
        with cs.record(x):
            model(x)
    assert _global_hooks() == before
    assert _get_current_dispatch_mode() is None


def test_model_raising_mid_forward_leaves_nothing_installed():
    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model = nn.Sequential(nn.Linear(2, 2), Boom())
    source_module = model[0]
    before = _global_hooks()
    with pytest.raises(RuntimeError, match="boom"):
        with cs.record(source_module, cs.layer_input(model[1])):
            model(torch.randn(1, 2))
    assert _global_hooks() == before
    assert not source_module._forward_hooks and not model[1]._forward_pre_hooks
    assert _get_current_dispatch_mode() is None


def test_output_must_be_one_scalar_per_example():
    x = torch.randn(2, 3)
    with cs.record(x) as graph:
        out = x * 2
    with pytest.raises(ValueError, match="one scalar per example"):
        graph.backward(out, "sum")


def test_output_not_recorded():
    x = torch.randn(2)
    with cs.record(x) as graph:
        pass
    with pytest.raises(ValueError, match="not computed from the sources"):
        graph.backward((x * 2).sum(), "sum")


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_integer_sources_are_rejected(dtype):
    with pytest.raises(TypeError, match="floating-point"):
        with cs.record(torch.zeros(3, dtype=dtype)):
            pass


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


def test_inplace_on_recorded_tensor_is_exact():
    x = torch.randn(4, dtype=torch.float64)
    with cs.record(x) as graph:
        y = x * 2
        z = y * 3  # reads y before it changes
        y.mul_(y)  # then y changes in place
        out = (z + y).sum()
    leaf = x.detach().requires_grad_(True)
    y2 = leaf * 2
    (expected,) = torch.autograd.grad((y2 * 3 + y2 * y2).sum(), leaf)
    torch.testing.assert_close(graph.backward(out, "sum")[x], expected)


def test_inplace_through_an_alias_then_read_is_an_error():
    x = torch.randn(2, 3)
    with pytest.raises(
        cs.RecordingError,
        match=r"changed in place through an alias \(aten\.add_\.Tensor",
    ):
        with cs.record(x):
            y = x * 2
            row = y[0]
            row.add_(1.0)  # changes y too
            (y * 1).sum()


def test_mutation_after_recording_is_detected():
    x = torch.randn(3)
    w = torch.randn(3)
    with cs.record(x) as graph:
        out = (x * w).sum()
    w.add_(1.0)
    with pytest.raises(
        cs.RecordingError, match="changed in place after it was recorded"
    ):
        graph.backward(out, "sum")


def test_nan_in_forward_warns_with_op_name():
    x = torch.tensor([1.0, -1.0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with cs.record(x) as graph:
            torch.sqrt(x).sum()
    messages = [
        str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)
    ]
    assert any("aten.sqrt.default" in m for m in messages)
    assert graph.records


def test_sources_restore_requires_grad():
    x = torch.randn(2)
    with cs.record(x):
        assert x.requires_grad
    assert not x.requires_grad


def test_module_source_that_never_runs():
    used, unused = nn.Linear(2, 2), nn.Linear(2, 2)
    with cs.record(unused) as graph:
        out = used(torch.randn(1, 2)).sum()
    del out
    with pytest.raises(KeyError, match="never ran"):
        graph.node_of(unused)


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


def test_inplace_under_no_grad_keeps_history_like_autograd():
    """F.cosine_similarity clamps a norm in place under no_grad; autograd keeps the
    norm's history, so the recording must too."""
    x = torch.randn(3, 4, dtype=torch.float64)

    def f(t):
        n = t.norm(dim=-1, keepdim=True).clone()
        with torch.no_grad():
            n.clamp_min_(1e-8)
        return (t / n).sum(-1)

    leaf = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(f(leaf).sum(), leaf)
    torch.testing.assert_close(cs.semiring_grad(f, x, "sum"), expected)


def test_entropy_is_never_negative_after_round_off():
    # (log Z, expected log-weight) of a single path can differ by round-off either way.
    state = torch.tensor([[2.0, 2.0, float("-inf")], [2.0 + 1e-6, 1.5, 0.0]])
    assert torch.equal(cs.Entropy().finalize(state), torch.tensor([0.0, 0.5, 0.0]))
