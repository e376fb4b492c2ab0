"""Gradients versus ablation (``analysis.ablation``), the library part; the
``reproduce ablation`` tests are in ``tests/reproductions/test_ablation.py``.

Every number is checked against an independent reference: ablations against forward
passes of a modified copy of the model (zeroed weights, a module replaced by a
constant, the residual removed by hand), gradients against ``torch.autograd``, and
never against values copied from the module's own output.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn
from zoo import tiny_mlm

from captum_semiring import _captum_compat as compat
from captum_semiring.analysis import ablation as ab
from captum_semiring.analysis.ablation import (
    AblationComparison,
    ablated,
    compare_with_ablation,
    resolve_component,
    saturated_softmax_case,
    transformer_components,
)

# ----- small models ---------------------------------------------------------------


@pytest.fixture(scope="module")
def mlm() -> nn.Module:
    return tiny_mlm()


@pytest.fixture(scope="module")
def ids() -> Tensor:
    return torch.randint(1, 12, (4, 6), generator=torch.Generator().manual_seed(1))


#: Captum's tuple target on MLM logits (batch, seq, vocab): position 2, token 3.
TARGET = (2, 3)


def _f(model: nn.Module, ids: Tensor) -> Tensor:
    with torch.no_grad():
        return model(ids).logits[:, 2, 3].double()


def _hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()
    )


# ----- components -------------------------------------------------------------------


def test_component_enumeration_and_names(mlm: nn.Module) -> None:
    names = transformer_components(mlm)
    per_layer = ["skip", "query", "key", "value", "head.0", "head.1"]
    assert names == [f"layer.{i}.{k}" for i in range(2) for k in per_layer]
    assert transformer_components(mlm, heads=False) == [
        f"layer.{i}.{k}" for i in range(2) for k in ("skip", "query", "key", "value")
    ]
    # the base model and the task model name the same components
    assert transformer_components(mlm.bert) == names
    head = resolve_component(mlm, "layer.1.head.1")
    assert head.module is mlm.bert.encoder.layer[1].attention.output
    assert head.columns == slice(4, 8)
    assert resolve_component(mlm, "layer.0.key").module is (
        mlm.bert.encoder.layer[0].attention.self.key
    )
    for bad in ("layer.2.key", "layer.0.head.2", "layer.0.ffn", "key"):
        with pytest.raises(ValueError):
            resolve_component(mlm, bad)
    with pytest.raises(ValueError, match="BERT-style"):
        transformer_components(nn.Linear(2, 2))


# ----- hooks --------------------------------------------------------------------------


def test_hooks_are_removed_when_the_model_raises(mlm: nn.Module, ids: Tensor) -> None:
    before = _hook_count(mlm)

    def failing(output: object) -> Tensor:
        raise RuntimeError("target failed")

    with pytest.raises(RuntimeError, match="target failed"):
        compare_with_ablation(mlm, ids, target=failing, n_steps=2)
    assert _hook_count(mlm) == before
    with pytest.raises(RuntimeError, match="inside"):
        with ablated(mlm, "layer.0.skip"):
            assert _hook_count(mlm) == before + 1
            raise RuntimeError("inside")
    assert _hook_count(mlm) == before
    # a model whose forward raises after the hooked module ran
    broken = copy.deepcopy(mlm)
    broken.cls.predictions.decoder.register_forward_hook(
        lambda *args: (_ for _ in ()).throw(ValueError("model raised"))
    )
    before = _hook_count(broken)
    with pytest.raises(ValueError, match="model raised"):
        compare_with_ablation(broken, ids, ["layer.1.value"], target=TARGET, n_steps=2)
    assert _hook_count(broken) == before


# ----- ablations against modified copies --------------------------------------------


@pytest.fixture(scope="module")
def comparison(mlm: nn.Module, ids: Tensor) -> AblationComparison:
    return compare_with_ablation(mlm, ids, target=TARGET, n_steps=8)


def test_zero_ablation_equals_zeroed_weights(
    mlm: nn.Module, ids: Tensor, comparison: AblationComparison
) -> None:
    clean = _f(mlm, ids)
    for layer in range(2):
        for proj in ("query", "key", "value"):
            manual = copy.deepcopy(mlm)
            linear = getattr(manual.bert.encoder.layer[layer].attention.self, proj)
            with torch.no_grad():
                linear.weight.zero_()
                linear.bias.zero_()
            expected = _f(manual, ids) - clean
            got = comparison.per_example[f"layer.{layer}.{proj}"]["zero_ablation"]
            assert expected.abs().max() > 1e-3  # the ablation does something
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        for head in range(2):
            # zeroing head h's context columns = zeroing the columns of the output
            # projection that read them
            manual = copy.deepcopy(mlm)
            dense = manual.bert.encoder.layer[layer].attention.output.dense
            with torch.no_grad():
                dense.weight[:, 4 * head : 4 * head + 4] = 0
            expected = _f(manual, ids) - clean
            got = comparison.per_example[f"layer.{layer}.head.{head}"]["zero_ablation"]
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    row = comparison.row("layer.0.value")
    assert row["zero_ablation"] == pytest.approx(
        float(comparison.per_example["layer.0.value"]["zero_ablation"].abs().mean())
    )


class _Constant(nn.Module):
    def __init__(self, value: Tensor) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: Tensor) -> Tensor:
        return self.value.expand(x.shape[0], *self.value.shape)


def test_mean_ablation_equals_a_constant_module(
    mlm: nn.Module, ids: Tensor, comparison: AblationComparison
) -> None:
    clean = _f(mlm, ids)
    with torch.no_grad():
        hidden = mlm(ids, output_hidden_states=True).hidden_states
    for layer in range(2):
        linear = mlm.bert.encoder.layer[layer].attention.self.value
        # the projection is affine: its mean output is computed from the layer input
        mean = (hidden[layer] @ linear.weight.T + linear.bias).mean(0)
        manual = copy.deepcopy(mlm)
        manual.bert.encoder.layer[layer].attention.self.value = _Constant(mean)
        expected = _f(manual, ids) - clean
        got = comparison.per_example[f"layer.{layer}.value"]["mean_ablation"]
        assert expected.abs().max() > 1e-3
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


class _NoSkip(nn.Module):
    """BertSelfOutput without the residual, written out by hand."""

    def __init__(self, original: nn.Module, residual: Tensor | None = None) -> None:
        super().__init__()
        self.original, self.residual = original, residual

    def forward(self, hidden_states: Tensor, input_tensor: Tensor) -> Tensor:
        out = self.original.dense(hidden_states)
        if self.residual is not None:
            out = out + self.residual
        return self.original.LayerNorm(out)


def test_skip_ablation_matches_the_residual_removed(
    mlm: nn.Module, ids: Tensor, comparison: AblationComparison
) -> None:
    clean = _f(mlm, ids)
    with torch.no_grad():
        hidden = mlm(ids, output_hidden_states=True).hidden_states
    for layer in range(2):
        for column, residual in (
            ("zero_ablation", None),
            ("mean_ablation", hidden[layer].mean(0)),  # the skip carries the input
        ):
            manual = copy.deepcopy(mlm)
            attention = manual.bert.encoder.layer[layer].attention
            attention.output = _NoSkip(attention.output, residual)
            expected = _f(manual, ids) - clean
            got = comparison.per_example[f"layer.{layer}.skip"][column]
            assert expected.abs().max() > 1e-3
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_integrated_gradients_estimate_tends_to_the_zero_ablation(
    comparison: AblationComparison,
) -> None:
    # completeness of IG along the line from the zeroed activation, checked against
    # the forward-pass ablation
    for name, values in comparison.per_example.items():
        torch.testing.assert_close(
            values["ig"], values["zero_ablation"], rtol=2e-2, atol=2e-3, msg=name
        )
    assert set(comparison.correlations) == set(ab.MEASURES)
    assert comparison.correlations["ig"]["zero_ablation"] > 0.9


# ----- gradients against autograd ---------------------------------------------------


def _value_grads(model: nn.Module, ids: Tensor, alphas: list[float]) -> list[Tensor]:
    """Autograd of the target w.r.t. layer 0's value output, scaled by each alpha."""
    linear = model.bert.encoder.layer[0].attention.self.value
    grads = []
    for alpha in alphas:
        kept: dict[str, Tensor] = {}

        def scale(
            module: nn.Module,
            args: object,
            out: Tensor,
            alpha: float = alpha,
            kept: dict[str, Tensor] = kept,
        ) -> Tensor:
            kept["v"] = (alpha * out).detach().requires_grad_()
            return kept["v"]

        handle = linear.register_forward_hook(scale)
        try:
            out = model(ids).logits[:, 2, 3].sum()
            grads.append(torch.autograd.grad(out, kept["v"])[0])
        finally:
            handle.remove()
    return grads


def test_sum_product_flows_equal_autograd(mlm: nn.Module, ids: Tensor) -> None:
    cmp = compare_with_ablation(
        mlm, ids, ["layer.0.value"], target=TARGET, semiring="sum", n_steps=4
    )
    values = cmp.per_example["layer.0.value"]
    (plain,) = _value_grads(mlm, ids, [1.0])
    torch.testing.assert_close(
        values["flow"], plain.sum((1, 2)).abs().double(), rtol=1e-4, atol=1e-6
    )
    step_fn, alpha_fn = compat.approximation_parameters("gausslegendre")
    weights, alphas = step_fn(4), alpha_fn(4)
    grads = _value_grads(mlm, ids, list(alphas))
    expected = sum(w * g.sum((1, 2)).abs().double() for w, g in zip(weights, grads))
    torch.testing.assert_close(
        values["integrated_flow"], expected, rtol=1e-4, atol=1e-6
    )
    with torch.no_grad():
        act = mlm.bert.encoder.layer[0].attention.self.value(
            mlm(ids, output_hidden_states=True).hidden_states[0]
        )
    torch.testing.assert_close(
        values["atp"], -(act * plain).sum((1, 2)).double(), rtol=1e-4, atol=1e-6
    )


# ----- the saturated softmax --------------------------------------------------------


def test_saturated_softmax_hides_the_keys_from_plain_gradients() -> None:
    case = saturated_softmax_case()
    model, inputs = case.model, case.inputs
    key = model.encoder.layer[0].attention.self.key
    # autograd: the gradient into the keys vanishes
    kept: dict[str, Tensor] = {}
    handle = key.register_forward_hook(lambda m, a, out: kept.setdefault("k", out))
    try:
        out = case.target(model(inputs))
        (grad,) = torch.autograd.grad(out.sum(), kept["k"])
    finally:
        handle.remove()
    assert grad.abs().max() < 1e-6
    # a manual forward pass: without keys the attention is uniform, the target moves
    manual = copy.deepcopy(model)
    with torch.no_grad():
        manual.encoder.layer[0].attention.self.key.weight.zero_()
        delta = case.target(manual(inputs)) - case.target(model(inputs))
    assert delta.abs().min() > 1.0

    cmp = compare_with_ablation(model, inputs, target=case.target, n_steps=32)
    row = cmp.row(case.component)
    assert row["flow"] < 1e-6  # the plain top path misses the keys
    assert row["integrated_flow"] > 0.05  # integrated, it is found
    assert set(cmp.ranking("flow")[-2:]) == {"layer.0.key", "layer.0.query"}
    largest = max(cmp.column("integrated_flow"))
    assert row["integrated_flow"] > 0.1 * largest  # same order as the largest
    assert row["flow"] < 1e-6 * max(cmp.column("flow"))
    torch.testing.assert_close(
        cmp.per_example[case.component]["zero_ablation"], delta.double()
    )
    torch.testing.assert_close(
        cmp.per_example[case.component]["ig"], delta.double(), rtol=1e-3, atol=1e-3
    )
    assert cmp.per_example[case.component]["atp"].abs().max() < 1e-6


# ----- plot -------------------------------------------------------------------------


def test_plot_has_one_point_per_component(comparison: AblationComparison) -> None:
    fig = comparison.plot()
    axes = fig.get_axes()
    assert len(axes) == 3 * 2
    assert all(len(ax.texts) == len(comparison.rows) for ax in axes)
    assert axes[0].get_yscale() == "log"
