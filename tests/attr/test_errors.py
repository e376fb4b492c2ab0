"""Bad input gives a clear error, and nothing is left hooked afterwards."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from attr_models import BertLike, hooks_of
from torch import nn

import captum_semiring as cs


@pytest.fixture
def bert():
    return BertLike(num_layers=1), torch.tensor(
        [[101, 7, 12, 33, 102], [101, 45, 9, 2, 102]]
    )


def input_classes(model):
    return [
        cs.SemiringAttribution(model, "sum"),
        cs.TopGradientPath(model),
        cs.GradientEntropy(model),
    ]


def assert_clean(model, *tensors):
    assert hooks_of(model) == []
    assert not any(t.requires_grad for t in tensors)


@pytest.mark.parametrize(
    "target",
    [
        2,
        -3,
        (0, 1),
        torch.tensor(7),
        torch.tensor([0, 1, 2, 0]),
        [0, 1, 0, 5],
        [(1,), (0,), (2,), (0,)],
    ],
    ids=str,
)
def test_target_out_of_range(titanic, target):
    model, x = titanic  # two classes
    for explainer in input_classes(model):
        with pytest.raises(ValueError, match="target"):
            explainer.attribute(x, target=target)
    with pytest.raises(ValueError, match="target"):
        cs.semiring_grad(model, x, "max", target=target)
    assert_clean(model, x)


def test_target_out_of_range_names_the_output_shape(titanic, bert):
    model, x = titanic
    with pytest.raises(
        ValueError,
        match=r"target 2 is out of range for the model output of shape \(4, 2\)",
    ):
        cs.TopGradientPath(model).attribute(x, target=2)
    with pytest.raises(
        ValueError,
        match=r"target list has 3 entries for 4 examples|target has 3 entries",
    ):
        cs.TopGradientPath(model).attribute(x, target=[0, 1, 0])
    with pytest.raises(ValueError, match="one scalar per example"):
        cs.TopGradientPath(model).attribute(x)
    bert_model, ids = bert
    with pytest.raises(ValueError, match="out of range"):
        cs.SemiringLayerAttribution(bert_model, bert_model.bert.embeddings).attribute(
            ids, target=3, n_steps=2
        )
    assert_clean(bert_model)


@pytest.mark.parametrize("bad", ["shape", "batch", "count", "type"])
def test_baselines_of_the_wrong_shape(titanic, bad):
    model, x = titanic
    baselines = {
        "shape": torch.zeros(4, 11, dtype=torch.float64),
        "batch": torch.zeros(3, 12, dtype=torch.float64),
        "count": (torch.zeros_like(x), torch.zeros_like(x)),
        "type": "zeros",
    }[bad]
    error = TypeError if bad == "type" else ValueError
    for explainer in input_classes(model):
        with pytest.raises(error, match="baseline"):
            explainer.attribute(x, baselines=baselines, target=0, n_steps=3)
    layer = cs.SemiringLayerAttribution(model, model.linear2)
    with pytest.raises(error, match="baseline"):
        layer.attribute(x, baselines=baselines, target=0, n_steps=3)
    assert_clean(model, x)


def test_baseline_shape_message(titanic):
    model, x = titanic
    with pytest.raises(
        ValueError,
        match=r"baseline 0 has shape \(4, 11\), but input 0 has shape \(4, 12\)",
    ):
        cs.TopGradientPath(model).attribute(
            x, baselines=torch.zeros(4, 11), target=0, n_steps=2
        )


def test_layer_that_never_runs(titanic, bert):
    model, x = titanic
    stray = nn.Linear(12, 12)
    for to_input in (False, True):
        explainer = cs.SemiringLayerAttribution(model, stray, "max")
        with pytest.raises(ValueError, match="never ran in the forward pass"):
            explainer.attribute(x, target=0, attribute_to_layer_input=to_input)
        with pytest.raises(ValueError, match="never ran"):
            explainer.branch_flow(x, target=0, attribute_to_layer_input=to_input)
    in_list = cs.SemiringLayerAttribution(model, [model.linear1, stray], "max")
    with pytest.raises(ValueError, match=r"layer Linear never ran"):
        in_list.attribute(x, target=0, n_steps=3)
    bert_model, ids = bert
    pooler_free = lambda input_ids: bert_model.bert.embeddings(input_ids).sum((1, 2))  # noqa: E731
    with pytest.raises(
        ValueError, match=r"'inner.model.bert.encoder.layer.0' \(BertLayer\) never ran"
    ):
        cs.SemiringLayerAttribution(
            _Named(bert_model, pooler_free), bert_model.bert.encoder.layer[0]
        ).attribute(ids)
    assert_clean(model, x)
    assert_clean(stray)
    assert_clean(bert_model)


class _Named(nn.Module):
    """A forward function that holds the model, so errors can name its layers."""

    def __init__(self, model: nn.Module, fn) -> None:
        super().__init__()
        self.inner = model
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


@pytest.mark.parametrize(
    "inputs",
    [[[0.0] * 12] * 4, np.zeros((4, 12)), "x", None, (torch.zeros(4, 12), "y"), ()],
    ids=["list", "numpy", "str", "None", "tuple with str", "empty tuple"],
)
def test_non_tensor_input(titanic, inputs):
    model, _ = titanic
    for explainer in input_classes(model) + [
        cs.SemiringLayerAttribution(model, model.linear1)
    ]:
        with pytest.raises(
            TypeError, match="must be a tensor or a non-empty tuple of tensors"
        ):
            explainer.attribute(inputs, target=0)
    with pytest.raises(TypeError, match="must be a tensor"):
        cs.semiring_grad(model, inputs, "max", target=0)
    with pytest.raises(TypeError, match="must be a tensor"):
        cs.TopGradientPath(model).paths(inputs, target=0)
    assert_clean(model)


def test_integer_inputs_point_to_the_layer_class(bert):
    model, ids = bert
    with pytest.raises(TypeError, match="SemiringLayerAttribution"):
        cs.TopGradientPath(model).attribute(ids, target=0)
    with pytest.raises(TypeError, match="holds no floating-point tensor"):
        cs.SemiringLayerAttribution(
            model, model.bert.embeddings.word_embeddings
        ).attribute(ids, target=0, attribute_to_layer_input=True)
    assert_clean(model)


def test_forward_func_must_return_a_tensor(bert):
    model, ids = bert
    with pytest.raises(TypeError, match="forward_func must return a tensor"):
        cs.SemiringLayerAttribution(model.model, model.bert.embeddings).attribute(
            ids, target=0
        )
    assert_clean(model)


@pytest.mark.parametrize("name", ["maxx", "sumproduct2", "topk", ""])
def test_unknown_semiring_name(titanic, name):
    model, x = titanic
    with pytest.raises(ValueError, match="unknown semiring"):
        cs.SemiringAttribution(model, name)
    with pytest.raises(ValueError, match="unknown semiring"):
        cs.SemiringLayerAttribution(model, model.linear1, name)
    with pytest.raises(ValueError, match="unknown semiring"):
        cs.semiring_grad(model, x, name, target=0)
    with pytest.raises(ValueError, match="unknown semiring"):
        cs.SemiringLayerAttribution(model, model.linear1).branch_flow(
            x.unsqueeze(1), semiring=name
        )


@pytest.mark.parametrize("n_steps", [0, -1, 2.5, True, None])
def test_n_steps_below_one(titanic, n_steps):
    model, x = titanic
    for explainer in input_classes(model) + [
        cs.SemiringLayerAttribution(model, model.linear2)
    ]:
        with pytest.raises(ValueError, match="n_steps must be an integer >= 1"):
            explainer.attribute(x, target=0, n_steps=n_steps)
    assert_clean(model, x)


def test_other_bad_arguments(titanic):
    model, x = titanic
    explainer = cs.TopGradientPath(model)
    with pytest.raises(ValueError, match="unknown method 'simpson'"):
        explainer.attribute(x, target=0, n_steps=4, method="simpson")
    with pytest.raises(ValueError, match="internal_batch_size"):
        explainer.attribute(x, target=0, n_steps=4, internal_batch_size=0)
    with pytest.raises(ValueError, match="batch axis"):
        cs.GradientEntropy(model, aggregate_dims=0).attribute(x, target=0)
    with pytest.raises(ValueError, match="do not fit"):
        cs.GradientEntropy(model, aggregate_dims=2).attribute(x, target=0)
    with pytest.raises(ValueError, match="multiply_by_inputs"):
        cs.SemiringAttribution(
            model, "entropy", multiply_by_inputs=True, aggregate_dims=-1
        )
    with pytest.raises(ValueError, match="k must be"):
        explainer.paths(x, target=0, k=0)
    with pytest.raises(IndexError, match="does not fit input 0"):
        explainer.paths(x, target=0, index=(0,))
    with pytest.raises(ValueError, match="aggregation"):
        cs.SemiringLayerAttribution(model, model.linear1).branch_flow(
            x, target=0, aggregation="sum"
        )
    with pytest.raises(TypeError, match="layer must be"):
        cs.SemiringLayerAttribution(model, "linear1")
    assert_clean(model, x)


def test_user_tensors_are_left_as_they_were(titanic):
    model, x = titanic
    before = x.clone()
    cs.TopGradientPath(model).attribute(x, baselines=x * 0.5, target=1, n_steps=3)
    cs.GradientEntropy(model).attribute(x, target=1)
    assert torch.equal(x, before) and not x.requires_grad and x.grad is None
    assert all(p.grad is None for p in model.parameters())


def test_grad_kwargs_are_accepted_empty_and_rejected_otherwise(titanic):
    """LayerIntegratedGradients passes grad_kwargs to torch.autograd.grad; a semiring
    sweep never calls it, so a non-empty value cannot be honoured."""
    model, x = titanic
    layer = cs.SemiringLayerAttribution(model, model.linear2, "max")
    expected = layer.attribute(x, target=0)
    assert torch.equal(layer.attribute(x, target=0, grad_kwargs=None), expected)
    assert torch.equal(layer.attribute(x, target=0, grad_kwargs={}), expected)
    with pytest.raises(
        ValueError,
        match=r"SemiringLayerAttribution cannot honour grad_kwargs \('retain_graph'\)"
        ".*never calls autograd",
    ):
        layer.attribute(x, target=0, grad_kwargs={"retain_graph": True})
    with pytest.raises(TypeError, match="grad_kwargs must be a dict"):
        layer.attribute(x, target=0, grad_kwargs=[("retain_graph", True)])
    assert_clean(model, x)


def test_attribute_future_is_not_implemented(titanic):
    model, _ = titanic
    for explainer in input_classes(model) + [
        cs.SemiringLayerAttribution(model, model.linear1)
    ]:
        name = type(explainer).__name__
        with pytest.raises(
            NotImplementedError, match=f"attribute_future is not implemented for {name}"
        ):
            explainer.attribute_future()
