"""Under SumProduct the classes are Captum's own methods, to 1e-5."""

from __future__ import annotations

import pytest
import torch
from attr_models import BertLike, hooks_of
from captum.attr import (
    InputXGradient,
    IntegratedGradients,
    LayerIntegratedGradients,
    Saliency,
)
from captum.testing.helpers.basic_models import BasicModel_MultiLayer

import captum_semiring as cs

METHODS = (
    "riemann_right",
    "riemann_left",
    "riemann_middle",
    "riemann_trapezoid",
    "gausslegendre",
)


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
    return a.shape == b.shape and torch.allclose(
        a.double(), b.double(), atol=atol, rtol=1e-5
    )


@pytest.mark.parametrize("method", METHODS)
def test_integrated_gradients_every_method(titanic, method):
    model, x = titanic
    b = torch.rand_like(x) * 0.1
    ours = cs.SemiringAttribution(model, "sum", multiply_by_inputs=True)
    got, delta = ours.attribute(
        x,
        baselines=b,
        target=1,
        n_steps=50,
        method=method,
        return_convergence_delta=True,
    )
    ref, ref_delta = IntegratedGradients(model).attribute(
        x,
        baselines=b,
        target=1,
        n_steps=50,
        method=method,
        return_convergence_delta=True,
    )
    assert close(got, ref)
    assert close(delta, ref_delta)


def test_integrated_gradients_tuple_inputs_with_additional_args(two_input):
    model, (x1, x2), args = two_input
    baselines = (torch.zeros(1, 3, dtype=torch.float64), 0.25)
    got = cs.SemiringAttribution(model, "sum", multiply_by_inputs=True).attribute(
        (x1, x2),
        baselines=baselines,
        target=[0, 2, 1],
        additional_forward_args=args,
        n_steps=50,
    )
    ref = IntegratedGradients(model).attribute(
        (x1, x2),
        baselines=baselines,
        target=[0, 2, 1],
        additional_forward_args=args,
        n_steps=50,
    )
    assert isinstance(got, tuple) and len(got) == 2
    assert all(close(g, r) for g, r in zip(got, ref))


def test_integrated_gradients_on_cnn(cnn):
    model, x = cnn
    got = cs.SemiringAttribution(model, "sum", multiply_by_inputs=True).attribute(
        x, baselines=torch.zeros_like(x), target=3, n_steps=20
    )
    ref = IntegratedGradients(model).attribute(
        x, baselines=torch.zeros_like(x), target=3, n_steps=20
    )
    assert close(got, ref)


@pytest.mark.parametrize("baselines", [None, 0.0, "zeros"])
def test_input_x_gradient(titanic, baselines):
    model, x = titanic
    b = torch.zeros_like(x) if baselines == "zeros" else baselines
    got = cs.SemiringAttribution(model, "sum", multiply_by_inputs=True).attribute(
        x, baselines=b, target=0, n_steps=1
    )
    assert close(got, InputXGradient(model).attribute(x, target=0))


def test_saliency_without_abs(titanic, cnn):
    for model, x in (titanic, cnn):
        got = cs.SemiringAttribution(model, "sum").attribute(x, target=1)
        assert close(got, Saliency(model).attribute(x, target=1, abs=False))


def test_functional_semiring_grad_is_autograd(two_input):
    model, (x1, x2), args = two_input
    got = cs.semiring_grad(
        model, (x1, x2), "sum", target=2, additional_forward_args=args
    )
    g1, g2 = (x1.clone().requires_grad_(), x2.clone().requires_grad_())
    ref = torch.autograd.grad(model(g1, g2, *args)[:, 2].sum(), (g1, g2))
    assert all(close(g, r) for g, r in zip(got, ref))
    assert not x1.requires_grad and not x2.requires_grad


def test_layer_integrated_gradients_on_bert_embeddings():
    model = BertLike()
    ids = torch.tensor([[101, 7, 12, 33, 4, 102], [101, 45, 9, 2, 18, 102]])
    baselines = torch.tensor([[101, 0, 0, 0, 0, 102]])
    layer = model.bert.embeddings
    ours = cs.SemiringLayerAttribution(model, layer, "sum", multiply_by_inputs=True)
    got, delta = ours.attribute(
        ids, baselines=baselines, target=1, n_steps=20, return_convergence_delta=True
    )
    ref, ref_delta = LayerIntegratedGradients(model, layer).attribute(
        ids, baselines=baselines, target=1, n_steps=20, return_convergence_delta=True
    )
    assert close(got, ref)
    assert close(delta, ref_delta)
    assert hooks_of(model) == []


@pytest.mark.parametrize("to_input", [False, True])
def test_layer_integrated_gradients_structures(to_input):
    """Tuple-valued layers give tuples and lists of layers give lists, as LayerIG does."""
    torch.manual_seed(0)
    model = BasicModel_MultiLayer(multi_input_module=True).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    for layer in (model.multi_relu, [model.linear1, model.linear1_alt]):
        ours = cs.SemiringLayerAttribution(model, layer, "sum", multiply_by_inputs=True)
        got = ours.attribute(x, target=0, n_steps=10, attribute_to_layer_input=to_input)
        ref = LayerIntegratedGradients(model, layer).attribute(
            x, target=0, n_steps=10, attribute_to_layer_input=to_input
        )
        assert type(got) is type(ref)
        flat_got = [
            t
            for part in (got if isinstance(got, list) else [got])
            for t in (part if isinstance(part, tuple) else (part,))
        ]
        flat_ref = [
            t
            for part in (ref if isinstance(ref, list) else [ref])
            for t in (part if isinstance(part, tuple) else (part,))
        ]
        assert len(flat_got) == len(flat_ref) > 0
        assert all(close(g, r) for g, r in zip(flat_got, flat_ref))
    assert hooks_of(model) == []


def test_layer_class_at_one_step_is_the_layer_gradient():
    from captum.attr import LayerGradientXActivation

    model = BertLike()
    ids = torch.tensor([[101, 7, 12, 33, 4, 102]])
    layer = model.bert.encoder.layer[0].output
    got = cs.SemiringLayerAttribution(model, layer, "sum").attribute(ids, target=0)
    ref = LayerGradientXActivation(model, layer, multiply_by_inputs=False).attribute(
        ids, target=0
    )
    assert close(got, ref)


def test_layer_inside_a_torch_transformer_layer():
    """A submodule of nn.TransformerEncoderLayer, which has a fused inference path."""
    from captum.attr import LayerGradientXActivation

    torch.manual_seed(0)
    block = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    model = torch.nn.Sequential(
        torch.nn.TransformerEncoder(block, 1, enable_nested_tensor=False)
    )
    model = model.double().eval()
    head = lambda x: model(x).sum(1)  # noqa: E731
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    layer = model[0].layers[0].linear1
    got = cs.SemiringLayerAttribution(head, layer, "sum").attribute(x, target=3)
    ref = LayerGradientXActivation(head, layer, multiply_by_inputs=False).attribute(
        x, target=3
    )
    assert close(got, ref)
    integrated = cs.SemiringLayerAttribution(head, layer, "max").attribute(
        x, target=3, n_steps=3
    )
    assert integrated.shape == (2, 5, 16) and torch.isfinite(integrated).all()
    assert hooks_of(model) == []
