"""The one-line swap from IntegratedGradients, and the values behind it."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from attr_models import BertLike, MiniLMHead, hooks_of
from captum.attr import IntegratedGradients, LayerIntegratedGradients
from torch import nn

import captum_semiring as cs
from captum_semiring.attr import step_parameters

EXPLAINERS = [IntegratedGradients, cs.TopGradientPath, cs.GradientEntropy]


def explain(explainer, x, b, t):
    """Code written for IntegratedGradients; only the class changes."""
    return explainer.attribute(x, baselines=b, target=t, n_steps=50)


def check(attr, x, name):
    assert attr.shape == x.shape, name
    assert torch.isfinite(attr).all(), name
    if name == "GradientEntropy":
        assert (attr >= 0).all()


@pytest.mark.parametrize(
    "ours, captum",
    [
        (cs.SemiringAttribution, IntegratedGradients),
        (cs.TopGradientPath, IntegratedGradients),
        (cs.GradientEntropy, IntegratedGradients),
        (cs.SemiringLayerAttribution, LayerIntegratedGradients),
    ],
    ids=lambda c: c.__name__,
)
def test_attribute_takes_captums_arguments_in_captums_order(ours, captum):
    """Every argument of Captum's ``attribute``, positionally and by name, so any
    call written for Captum works unchanged."""
    theirs = list(inspect.signature(captum.attribute).parameters)
    mine = list(inspect.signature(ours.attribute).parameters)
    assert mine[: len(theirs)] == theirs


@pytest.mark.parametrize("cls", EXPLAINERS, ids=lambda c: c.__name__)
def test_swap_titanic_mlp(titanic, cls):
    model, x = titanic
    attr = explain(cls(model), x, torch.zeros_like(x), 1)
    check(attr, x, cls.__name__)


@pytest.mark.parametrize("cls", EXPLAINERS, ids=lambda c: c.__name__)
def test_swap_cnn(cnn, cls):
    model, x = cnn
    attr = explain(cls(model), x, torch.zeros_like(x), 2)
    check(attr, x, cls.__name__)


def _minilm_case(minilm, text="a movie that was very good"):
    model, tokenizer = minilm
    ids = tokenizer([text], return_tensors="pt")["input_ids"]
    x = model.embeddings.word_embeddings(ids).detach()
    return MiniLMHead(model), ids, x


@pytest.mark.parametrize(
    "cls",
    [
        IntegratedGradients,
        # about 10-40 s each on two cores: a semiring sweep over 50 MiniLM passes
        pytest.param(cs.TopGradientPath, marks=pytest.mark.slow),
        pytest.param(cs.GradientEntropy, marks=pytest.mark.slow),
    ],
    ids=lambda c: c.__name__,
)
def test_swap_minilm_n_steps_50(minilm, cls):
    head, ids, x = _minilm_case(minilm)
    assert ids.shape[1] == 8
    attr = explain(cls(head), x, torch.zeros_like(x), 7)
    check(attr, x, cls.__name__)
    assert hooks_of(head) == []


def test_minilm_short_path_integration(minilm):
    """The same calls with fewer steps, on every run."""
    head, _, x = _minilm_case(minilm)
    b = torch.zeros_like(x)
    attr = cs.TopGradientPath(head).attribute(x, baselines=b, target=7, n_steps=2)
    check(attr, x, "TopGradientPath")
    tokens = cs.GradientEntropy(head, aggregate_dims=-1).attribute(
        x, baselines=b, target=7, n_steps=2
    )
    assert (
        tokens.shape == x.shape[:2]
        and (tokens >= 0).all()
        and torch.isfinite(tokens).all()
    )


def test_minilm_layer_class_on_token_ids(minilm):
    """LayerIntegratedGradients code on token ids swaps to SemiringLayerAttribution."""
    model, tokenizer = minilm
    ids = tokenizer(["a movie that was very good"], return_tensors="pt")["input_ids"]
    forward = lambda input_ids: model(input_ids).last_hidden_state.mean(1)  # noqa: E731
    b = torch.tensor([[101] + [0] * (ids.shape[1] - 2) + [102]])
    ref = LayerIntegratedGradients(forward, model.embeddings).attribute(
        ids, baselines=b, target=7, n_steps=2
    )
    same = cs.SemiringLayerAttribution(
        forward, model.embeddings, "sum", multiply_by_inputs=True
    )
    assert torch.allclose(
        same.attribute(ids, baselines=b, target=7, n_steps=2), ref, atol=1e-5
    )
    top = cs.SemiringLayerAttribution(forward, model.embeddings, "max")
    got = top.attribute(ids, target=7)  # at the inputs: one sweep
    assert got.shape == ref.shape == (1, ids.shape[1], 384)
    assert torch.isfinite(got).all() and (got != 0).any()


def test_minilm_branch_flow_at_a_layer_input(minilm):
    model, tokenizer = minilm
    ids = tokenizer(["a movie that was very good"], return_tensors="pt")["input_ids"]
    forward = lambda input_ids: model(input_ids).pooler_output  # noqa: E731
    lsa = cs.SemiringLayerAttribution(forward, model.encoder.layer[4], "max")
    flow = lsa.branch_flow(ids, target=0, attribute_to_layer_input=True)
    assert flow.values.shape == (1, ids.shape[1], 4)
    assert [label.rsplit(".", 1)[-1] for label in flow.labels] == [
        "query",
        "key",
        "value",
        "output",
    ]
    assert all(label.startswith("encoder.layer.4.attention") for label in flow.labels)
    assert (flow.values >= 0).all() and (flow.values > 0).any()
    ax = flow.plot(tokens=tokenizer.convert_ids_to_tokens(ids[0]))
    assert len(ax.patches) == 4 * ids.shape[1]
    assert hooks_of(model) == []


def test_top_branch_keeps_the_best_branch_per_position():
    model = BertLike()
    ids = torch.tensor([[101, 7, 12, 33, 4, 102], [101, 45, 9, 2, 18, 102]])
    lsa = cs.SemiringLayerAttribution(model, model.bert.encoder.layer[1], "max")
    flow = lsa.branch_flow(ids, target=2, attribute_to_layer_input=True)
    top = lsa.branch_flow(
        ids, target=2, attribute_to_layer_input=True, aggregation="top-branch"
    )
    assert flow.names == ["self.query", "self.key", "self.value", "output"]
    assert top.values.shape == flow.values.shape == (2, 6, 4)
    assert ((top.values != 0).sum(-1) == 1).all()
    assert torch.equal(top.values.amax(-1), flow.values.amax(-1))
    assert torch.equal(top.values.argmax(-1), flow.values.argmax(-1))
    kwargs = dict(
        target=2, attribute_to_layer_input=True, semiring=cs.MaxProduct("negative")
    )
    most_negative = lsa.branch_flow(ids, **kwargs)
    top_negative = lsa.branch_flow(ids, aggregation="top-branch", **kwargs)
    assert (most_negative.values <= 0).all() and (
        most_negative.values.amin(-1) < 0
    ).all()
    assert ((top_negative.values != 0).sum(-1) == 1).all()
    assert torch.equal(top_negative.values.amin(-1), most_negative.values.amin(-1))


def test_layer_input_with_a_padding_mask():
    """Eager attention passes a float mask positionally: the layer input is then
    (hidden states, mask), and branch flow follows the hidden states."""
    model = BertLike(attn_implementation="eager")
    ids = torch.tensor([[101, 7, 12, 102, 0], [101, 45, 9, 2, 102]])
    mask = (ids != 0).long()
    forward = lambda input_ids, attention_mask: (
        model.model(  # noqa: E731
            input_ids, attention_mask=attention_mask
        ).logits
    )
    lsa = cs.SemiringLayerAttribution(forward, model.bert.encoder.layer[1], "max")
    hidden, additive_mask = lsa.attribute(
        ids, target=0, additional_forward_args=mask, attribute_to_layer_input=True
    )
    assert hidden.shape == (2, 5, 16) and additive_mask.shape == (2, 1, 5, 5)
    flow = lsa.branch_flow(
        ids, target=0, additional_forward_args=mask, attribute_to_layer_input=True
    )
    assert flow.names == ["self.query", "self.key", "self.value", "output"]
    assert flow.values.shape == (2, 5, 4)
    # the padded token reaches [CLS] only through masked (zero-weight) attention
    assert torch.equal(flow.values[0, 4], torch.zeros(4, dtype=torch.float64))
    assert (flow.values[1, 4] != 0).any()
    assert hooks_of(model) == []


def test_top_gradient_path_is_the_engines_max_product(titanic):
    model, x = titanic
    tgp = cs.TopGradientPath(model)
    with cs.record(x) as graph:
        out = model(x)[:, 1]
    res = graph.backward(out, cs.MaxProduct())
    assert torch.equal(tgp.attribute(x, target=1), res[x].detach())
    # every element's value is the value of a path the engine can trace
    path = tgp.paths(x, target=1, index=(2, 5))
    assert math.isclose(path.value, float(res[x][2, 5]), rel_tol=1e-9)
    assert math.isclose(path.product(), path.value, rel_tol=1e-9)
    assert [m for m in path.modules() if m] == [
        "linear1",
        "sigmoid1",
        "linear2",
        "sigmoid2",
        "linear3",
        "softmax",
    ]
    assert "linear2" in str(path)


def test_top_gradient_path_along_the_line_is_the_average_of_engine_sweeps(titanic):
    model, x = titanic
    b = torch.rand_like(x) * 0.1
    got = cs.TopGradientPath(model, multiply_by_inputs=True).attribute(
        x, baselines=b, target=0, n_steps=7, method="riemann_middle"
    )
    sizes, alphas = step_parameters(7, "riemann_middle")
    expected = torch.zeros_like(x)
    for size, alpha in zip(sizes, alphas):
        point = (b + alpha * (x - b)).detach()
        with cs.record(point) as graph:
            out = model(point)[:, 0]
        expected += size * graph.backward(out, cs.MaxProduct())[point].detach()
    assert torch.allclose(got, expected * (x - b), atol=1e-12)


def test_paths_k_best_and_default_index(titanic):
    model, x = titanic
    tgp = cs.TopGradientPath(model)
    top = tgp.attribute(x, target=1)
    best = tgp.paths(x, target=1)
    assert len(best) == x.shape[0]
    for b, path in enumerate(best):
        assert path.source[0] == b
        assert math.isclose(path.value, float(top[b].max()), rel_tol=1e-9)
    k_best = tgp.paths(x, target=1, index=[(0, 3), (1, 0)], k=3)
    assert len(k_best) == 2 and all(len(paths) == 3 for paths in k_best)
    topk = cs.SemiringAttribution(model, cs.TopK(3)).attribute(x, target=1)
    for (b, i), paths in zip([(0, 3), (1, 0)], k_best):
        assert [p.value for p in paths] == pytest.approx(
            topk[:, b, i].tolist(), rel=1e-9
        )
        magnitudes = [abs(p.value) for p in paths]
        assert magnitudes == sorted(magnitudes, reverse=True)


def test_paths_from_checkpoints_are_the_same(titanic):
    """keep="checkpoints" sweeps the values again instead of keeping them: the same
    paths, hop by hop, for the best and the k best."""
    model, x = titanic
    tgp = cs.TopGradientPath(model)
    for k in (1, 3):
        every = tgp.paths(x, target=1, k=k)
        checked = tgp.paths(x, target=1, k=k, keep="checkpoints")
        flat = (lambda ps: ps) if k == 1 else (lambda ps: [p for g in ps for p in g])
        assert [p.to_dict() for p in flat(checked)] == [
            p.to_dict() for p in flat(every)
        ]
    with pytest.raises(ValueError, match="keep must be"):
        tgp.paths(x, target=1, keep="sources")


def test_paths_when_every_path_is_negative():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1)).double()
    with torch.no_grad():
        net[0].weight.copy_(net[0].weight.abs())
        net[1].weight.copy_(-net[1].weight.abs())
    x = torch.randn(2, 3, dtype=torch.float64)
    tgp = cs.TopGradientPath(net)
    top = tgp.attribute(x)
    assert (top < 0).all()  # the most positive path is still negative
    best = tgp.paths(x)
    assert [p.value for p in best] == pytest.approx(top.amax(1).tolist(), rel=1e-9)
    two = tgp.paths(x, k=2)
    topk = cs.SemiringAttribution(net, cs.TopK(2)).attribute(x)
    for b, paths in enumerate(two):
        assert [p.value for p in paths] == pytest.approx(
            topk[:, b][:, topk[0, b].abs().argmax()].tolist(), rel=1e-9
        )


def test_paths_with_tuple_inputs(two_input):
    model, (x1, x2), args = two_input
    tgp = cs.TopGradientPath(model)
    a1, a2 = tgp.attribute((x1, x2), target=0, additional_forward_args=args)
    path = tgp.paths(
        (x1, x2), target=0, additional_forward_args=args, index=(1, (2, 3))
    )
    assert math.isclose(path.value, float(a2[2, 3]), rel_tol=1e-9)
    best = tgp.paths((x1, x2), target=0, additional_forward_args=args)
    assert [p.value for p in best] == pytest.approx(
        [max(float(a1[b].max()), float(a2[b].max())) for b in range(3)], rel=1e-9
    )


def test_topk_attributions_have_a_leading_k_axis(titanic):
    model, x = titanic
    attr, delta = cs.SemiringAttribution(model, cs.TopK(3)).attribute(
        x,
        baselines=torch.zeros_like(x),
        target=1,
        n_steps=4,
        return_convergence_delta=True,
    )
    assert attr.shape == (3, *x.shape) and delta.shape == (x.shape[0],)
    single = cs.SemiringAttribution(model, cs.TopK(3)).attribute(x, target=1)
    best = cs.SemiringAttribution(model, cs.MaxProduct("absolute")).attribute(
        x, target=1
    )
    assert torch.allclose(single[0], best)
    assert (single[0].abs() >= single[1].abs()).all() and (
        single[1].abs() >= single[2].abs()
    ).all()


def test_gradient_entropy_is_the_engines_entropy(cnn):
    model, x = cnn
    with cs.record(x) as graph:
        out = model(x)[:, 3]
    res = graph.backward(out, cs.Entropy())
    assert torch.equal(
        cs.GradientEntropy(model).attribute(x, target=3), res[x].detach()
    )
    per_channel = cs.GradientEntropy(model, aggregate_dims=(-2, -1)).attribute(
        x, target=3
    )
    assert torch.allclose(per_channel, res.aggregate(x, dim=(-2, -1)))
    assert per_channel.shape == x.shape[:2]
    functional = cs.semiring_grad(
        model, x, "entropy", target=3, aggregate_dims=(-2, -1)
    )
    assert torch.equal(functional, per_channel)
