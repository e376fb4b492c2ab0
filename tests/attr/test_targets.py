"""Captum's target forms, tuple inputs with additional arguments, internal batching,
and Captum's own test configurations."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from attr_models import BertLike, hooks_of
from captum.attr import IntegratedGradients, LayerIntegratedGradients, NoiseTunnel
from captum.testing.attr.helpers.gen_test_utils import (
    get_target_layer,
    parse_test_config,
)
from captum.testing.attr.helpers.test_config import config as CAPTUM_CONFIG
from torch import Tensor, nn

import captum_semiring as cs


class MultiOutput(nn.Module):
    """Output (batch, 3, 2): int targets on the flattened 2D view, tuples on 3D."""

    def __init__(self, flat: bool) -> None:
        super().__init__()
        self.flat = flat
        self.body = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 6))

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        return out if self.flat else out.reshape(-1, 3, 2)


FORMS = {
    "int": (True, 2, [2, 2, 2, 2]),
    "scalar tensor": (True, torch.tensor(4), [4, 4, 4, 4]),
    "one-element tensor": (True, torch.tensor([1]), [1, 1, 1, 1]),
    "tensor per example": (True, torch.tensor([0, 5, 1, 3]), [0, 5, 1, 3]),
    "list of ints": (True, [3, 0, 2, 5], [3, 0, 2, 5]),
    "negative int": (True, -1, [-1, -1, -1, -1]),
    "tuple": (False, (2, 1), [(2, 1)] * 4),
    "list of tuples": (
        False,
        [(0, 1), (2, 0), (1, 1), (0, 0)],
        [(0, 1), (2, 0), (1, 1), (0, 0)],
    ),
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("semiring", ["sum", "max", "entropy"])
def test_every_target_form(form, semiring):
    torch.manual_seed(0)
    flat, target, per_example = FORMS[form]
    model = MultiOutput(flat).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    explainer = cs.SemiringAttribution(model, semiring)
    batched = explainer.attribute(x, baselines=0.1, target=target, n_steps=3)
    for i, t in enumerate(per_example):
        alone = explainer.attribute(x[i : i + 1], baselines=0.1, target=t, n_steps=3)
        assert torch.allclose(batched[i : i + 1], alone, atol=1e-12), (form, i)
    if semiring == "sum":
        ig = IntegratedGradients(model, multiply_by_inputs=False).attribute(
            x, baselines=0.1, target=target, n_steps=3
        )
        assert torch.allclose(batched, ig, atol=1e-10)


def test_no_target_for_one_value_per_example():
    torch.manual_seed(0)
    body = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    x = torch.randn(3, 5, dtype=torch.float64)
    column = cs.SemiringAttribution(body, "max").attribute(x)  # output (batch, 1)
    vector = cs.SemiringAttribution(lambda v: body(v)[:, 0], "max").attribute(
        x
    )  # (batch,)
    assert torch.equal(column, vector)
    assert torch.equal(
        cs.SemiringAttribution(body, "max").attribute(x, target=0), column
    )


@pytest.mark.parametrize("semiring", ["max", "entropy", cs.TopK(2)], ids=str)
def test_tuple_inputs_with_mixed_additional_args(two_input, semiring):
    model, (x1, x2), (extra, scale) = two_input
    explainer = cs.SemiringAttribution(model, semiring)
    target = [2, 0, 1]
    batched = explainer.attribute(
        (x1, x2), target=target, additional_forward_args=(extra, scale), n_steps=4
    )
    assert isinstance(batched, tuple) and len(batched) == 2
    k = 2 if isinstance(semiring, cs.TopK) else None
    for i in range(3):
        alone = explainer.attribute(
            (x1[i : i + 1], x2[i : i + 1]),
            target=target[i],
            additional_forward_args=(extra[i : i + 1], scale),
            n_steps=4,
        )
        for b, a in zip(batched, alone):
            part = b[:, i : i + 1] if k else b[i : i + 1]
            assert torch.allclose(part, a, atol=1e-12)


@pytest.mark.parametrize("semiring", ["sum", "max", "entropy", cs.TopK(3)], ids=str)
@pytest.mark.parametrize("size", [3, 4, 10, 500])
def test_internal_batch_size_changes_nothing(two_input, semiring, size):
    model, inputs, args = two_input
    explainer = cs.SemiringAttribution(model, semiring)
    kwargs = dict(
        baselines=(0.0, -0.5),
        target=[0, 1, 2],
        additional_forward_args=args,
        n_steps=6,
        method="riemann_trapezoid",
    )
    whole = explainer.attribute(inputs, **kwargs)
    split = explainer.attribute(inputs, internal_batch_size=size, **kwargs)
    assert all(torch.allclose(w, s, atol=1e-13, rtol=0) for w, s in zip(whole, split))


def test_internal_batch_size_for_the_layer_class():
    model = BertLike()
    ids = torch.tensor([[101, 7, 12, 33, 4, 102], [101, 45, 9, 2, 18, 102]])
    for semiring in ("max", "entropy"):
        explainer = cs.SemiringLayerAttribution(
            model, model.bert.embeddings, semiring, multiply_by_inputs=semiring == "max"
        )
        whole = explainer.attribute(ids, target=[0, 2], n_steps=5)
        split = explainer.attribute(
            ids, target=[0, 2], n_steps=5, internal_batch_size=4
        )
        assert torch.allclose(whole, split, atol=1e-13, rtol=0)
    assert hooks_of(model) == []


def test_internal_batch_size_smaller_than_the_batch_warns_as_captum_does(titanic):
    model, x = titanic
    explainer = cs.TopGradientPath(model)
    whole = explainer.attribute(x, target=1, n_steps=3)
    with pytest.warns(UserWarning, match="Internal batch size cannot be less"):
        split = explainer.attribute(x, target=1, n_steps=3, internal_batch_size=1)
    assert torch.allclose(whole, split, atol=1e-13, rtol=0)


# ----- Captum's own configurations (captum.testing) ----------------------------------


def _captum_cases():
    for case in CAPTUM_CONFIG:
        algorithms, model, args, layer, noise_tunnel, baseline_distr = (
            parse_test_config(case)
        )
        if baseline_distr:
            continue
        if IntegratedGradients in algorithms:
            yield pytest.param(case, False, id=case["name"])
        if LayerIntegratedGradients in algorithms:
            yield pytest.param(case, True, id=case["name"])


def _build(case, is_layer, semiring):
    algorithms, model, args, layer, noise_tunnel, _ = parse_test_config(case)
    if is_layer:
        target_layer = get_target_layer(model, layer)
        ours = cs.SemiringLayerAttribution(
            model, target_layer, semiring, multiply_by_inputs=True
        )
        ref = LayerIntegratedGradients(model, target_layer)
    else:
        ours = cs.SemiringAttribution(model, semiring, multiply_by_inputs=True)
        ref = IntegratedGradients(model)
    if noise_tunnel:
        ours, ref = NoiseTunnel(ours), NoiseTunnel(ref)
    return model, dict(args, n_steps=10), ours, ref


def _flat(result):
    if isinstance(result, Tensor):
        return [result]
    return [t for part in result for t in _flat(part)]


@pytest.mark.parametrize(("case", "is_layer"), list(_captum_cases()))
def test_captum_config_matches_captum(case, is_layer):
    model, args, ours, ref = _build(case, is_layer, "sum")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = ours.attribute(**copy.deepcopy(args))
        expected = ref.attribute(**copy.deepcopy(args))
    assert type(got) is type(expected)
    for g, e in zip(_flat(got), _flat(expected), strict=True):
        assert g.shape == e.shape
        assert torch.allclose(g, e, atol=1e-4, rtol=1e-4)
    assert hooks_of(model) == []


def _slice_example(value, i, n):
    if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == n:
        return value[i : i + 1]
    if isinstance(value, tuple):
        return tuple(_slice_example(v, i, n) for v in value)
    return value


@pytest.mark.parametrize(
    ("case", "is_layer"),
    [
        p
        for p in _captum_cases()
        if isinstance(p.values[0]["attribute_args"]["target"], list)
        or (
            isinstance(p.values[0]["attribute_args"]["target"], Tensor)
            and p.values[0]["attribute_args"]["target"].numel() > 1
        )
    ],
)
def test_captum_config_targets_per_example(case, is_layer):
    """Captum's target test: a batch with per-example targets equals each example
    attributed alone."""
    model, args, ours, _ = _build(case, is_layer, "max")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batched = _flat(ours.attribute(**copy.deepcopy(args)))
        inputs = args["inputs"]
        n = (inputs[0] if isinstance(inputs, tuple) else inputs).shape[0]
        for i in range(n):
            single = {key: _slice_example(value, i, n) for key, value in args.items()}
            single["target"] = args["target"][i]
            alone = _flat(ours.attribute(**copy.deepcopy(single)))
            for b, a in zip(batched, alone, strict=True):
                assert torch.allclose(b[i : i + 1], a, atol=1e-5, rtol=1e-5)


def test_public_select_output_is_captums_selection(titanic):
    """``captum_semiring.attr.select_output`` (used by analyses outside attr) gives
    Captum's selection, one scalar per example, for every target form."""
    from captum_semiring.attr import _functional, select_output

    assert _functional.select_output is select_output  # the old path still works
    torch.manual_seed(0)
    model = MultiOutput(flat=True).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    out = model(x)
    for _, (flat, target, per_example) in FORMS.items():
        if not flat:
            continue
        expected = out[torch.arange(4), torch.tensor(per_example)]
        assert torch.equal(select_output(out, target, 4), expected)
    with pytest.raises(ValueError, match="one scalar per example"):
        select_output(out, None, 4)
    with pytest.raises(ValueError, match="rows for 3 examples"):
        select_output(out, 0, 3)


@pytest.mark.parametrize(
    "method",
    [
        "riemann_right",
        "riemann_left",
        "riemann_middle",
        "riemann_trapezoid",
        "gausslegendre",
    ],
)
def test_public_step_parameters_are_integrated_gradients(method):
    """``captum_semiring.attr.step_parameters`` gives IG's own steps: a sweep with them
    reproduces IntegratedGradients on a model whose gradient is known."""
    from captum_semiring.attr import _common, step_parameters

    assert _common.step_parameters is step_parameters  # the old path still works
    sizes, alphas = step_parameters(6, method)
    assert len(sizes) == len(alphas) == 6
    x = torch.tensor([[0.7, -1.3]], dtype=torch.float64)
    square = lambda t: (t**2).sum(1, keepdim=True)  # gradient 2t along the line
    ig = IntegratedGradients(square).attribute(x, target=0, n_steps=6, method=method)
    ours = sum(size * 2 * alpha * x for size, alpha in zip(sizes, alphas)) * x
    torch.testing.assert_close(ours, ig, rtol=1e-6, atol=0)  # Captum: float32 steps
