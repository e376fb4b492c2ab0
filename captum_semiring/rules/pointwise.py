"""One rule for every op tagged ``torch.Tag.pointwise``.

The local derivative of output element ``o`` with respect to input ``i`` is the
elementwise partial at ``o``. Common ops have closed forms: arithmetic, and the
activations and functions below, through the backward kernels autograd itself calls
(``tanh_backward``, ``gelu_backward``, ...) with a gradient of ones, so the partials
are autograd's. Any other pointwise op gets all of them from autograd in one call,
once every tracked input is broadcast to the output shape (slower: a rerun under
grad mode per op).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch._decomp import decomposition_table

from .._record import OpRecord
from ..semirings import Semiring
from . import UnsupportedOpError, register_decomposition, register_rule
from ._maps import Elementwise

aten = torch.ops.aten


class Pointwise(Elementwise):
    """An :class:`Elementwise` map between equal shapes without a mask: one ⊗ by the
    weight per element, none of the general map's reshapes, expands and sums."""

    def backward(self, sr: Semiring, values: Tensor) -> Tensor:
        return values if self.weight is None else sr.scale(values, self.weight)

    def forward(self, sr: Semiring, values: Tensor) -> Tensor:
        return values if self.weight is None else sr.scale(values, self.weight)


def _arithmetic_partials(call: OpRecord) -> dict[int, Any] | None:
    """Closed-form partials of +, -, ×, ÷ (None: unit weight), broadcastable to the
    output; None when the op is not one of them."""
    if call.func not in _ARITHMETIC:
        return None
    dtype = call.output(0).dtype
    # Tensors, so that a Python 0 divides as torch does (to inf), not by raising.
    a = torch.as_tensor(call.arg("self"), dtype=dtype).detach()
    b = torch.as_tensor(call.arg("other"), dtype=dtype).detach()
    alpha = call.arg("alpha", 1)
    if call.func is aten.add.Tensor:
        by_name = {"self": None, "other": None if alpha == 1 else alpha}
    elif call.func is aten.sub.Tensor:
        by_name = {"self": None, "other": -alpha}
    elif call.func is aten.mul.Tensor:
        by_name = {"self": b, "other": a}
    else:
        by_name = {"self": 1 / b, "other": -a / (b * b)}
    partials: dict[int, Any] = {}
    self_position = call.position("self")
    for i, _ in call.inputs:
        w = by_name["self" if i == self_position else "other"]
        partials[i] = w if w is None else torch.as_tensor(w, dtype=dtype)
    return partials


_ARITHMETIC = {aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.div.Tensor}


def _ones(t: Tensor) -> Tensor:
    return torch.ones_like(t)


def _pow_partial(x: Tensor, y: Tensor, call: OpRecord) -> Any:
    exponent = call.arg("exponent")
    if not isinstance(exponent, (int, float)) or isinstance(exponent, bool):
        return _AUTOGRAD  # complex exponents
    if exponent == 0:
        return torch.zeros_like(x)
    return exponent * x.pow(exponent - 1)


def _clamp_partial(x: Tensor, y: Tensor, call: OpRecord) -> Tensor:
    # autograd's clamp_backward: the subgradient 1 at the bounds themselves.
    low, high = call.arg("min"), call.arg("max")
    keep = torch.ones_like(x, dtype=torch.bool)
    if low is not None:
        keep &= x >= low
    if high is not None:
        keep &= x <= high
    return keep.to(x.dtype)


# Partial of a one-tensor op with respect to its ``self`` argument, from the input
# ``x``, the output ``y`` and the call, following autograd's derivatives.yaml. None:
# unit weight (never materialized); _AUTOGRAD: no closed form for these arguments.
_AUTOGRAD = object()
UnaryPartial = Callable[[Tensor, Tensor, Any], Any]
_UNARY: dict[Any, UnaryPartial] = {
    aten.relu.default: lambda x, y, c: aten.threshold_backward(_ones(y), y, 0),
    aten.gelu.default: lambda x, y, c: aten.gelu_backward(
        _ones(x), x, approximate=c.arg("approximate", "none")
    ),
    aten.tanh.default: lambda x, y, c: aten.tanh_backward(_ones(y), y),
    aten.sigmoid.default: lambda x, y, c: aten.sigmoid_backward(_ones(y), y),
    aten.silu.default: lambda x, y, c: aten.silu_backward(_ones(x), x),
    aten.hardtanh.default: lambda x, y, c: aten.hardtanh_backward(
        _ones(x), x, c.arg("min_val", -1), c.arg("max_val", 1)
    ),
    aten.leaky_relu.default: lambda x, y, c: aten.leaky_relu_backward(
        _ones(x), x, c.arg("negative_slope", 0.01), False
    ),
    aten.elu.default: lambda x, y, c: aten.elu_backward(
        _ones(x),
        c.arg("alpha", 1),
        c.arg("scale", 1),
        c.arg("input_scale", 1),
        False,
        x,
    ),
    aten.softplus.default: lambda x, y, c: aten.softplus_backward(
        _ones(x), x, c.arg("beta", 1), c.arg("threshold", 20)
    ),
    aten.exp.default: lambda x, y, c: y,
    aten.expm1.default: lambda x, y, c: y + 1,
    aten.log.default: lambda x, y, c: x.reciprocal(),
    aten.log1p.default: lambda x, y, c: (x + 1).reciprocal(),
    aten.sqrt.default: lambda x, y, c: (2 * y).reciprocal(),
    aten.rsqrt.default: lambda x, y, c: -0.5 * y.pow(3),
    aten.reciprocal.default: lambda x, y, c: -(y * y),
    aten.erf.default: lambda x, y, c: (2.0 / math.sqrt(math.pi)) * torch.exp(-x.pow(2)),
    aten.sin.default: lambda x, y, c: x.cos(),
    aten.cos.default: lambda x, y, c: -x.sin(),
    aten.abs.default: lambda x, y, c: x.sgn(),
    aten.neg.default: lambda x, y, c: torch.full((), -1.0, dtype=y.dtype),
    aten.pow.Tensor_Scalar: _pow_partial,
    aten.clamp.default: _clamp_partial,
    aten.add.Scalar: lambda x, y, c: None,
    aten.sub.Scalar: lambda x, y, c: None,
    aten.rsub.Scalar: lambda x, y, c: torch.full((), -c.arg("alpha", 1), dtype=y.dtype),
    aten.mul.Scalar: lambda x, y, c: torch.full((), c.arg("other"), dtype=y.dtype),
    aten.div.Scalar: lambda x, y, c: torch.ones((), dtype=y.dtype) / c.arg("other"),
    # Selections: unit weights; the condition masks the edges (see _edge_masks).
    aten.where.self: lambda x, y, c: None,
    aten.where.ScalarOther: lambda x, y, c: None,
    aten.masked_fill.Scalar: lambda x, y, c: None,
}


def _closed_form_partials(call: OpRecord) -> dict[int, Any] | None:
    """Closed-form partials (None: unit weight), or None without a closed form."""
    partials = _arithmetic_partials(call)
    if partials is not None:
        return partials
    partial = _UNARY.get(call.func)
    if partial is None:
        return None
    y = call.output(0)
    if call.func in _SELECTING:  # every tracked tensor argument: unit weight
        return {i: None for i, _ in call.inputs}
    ((i, _),) = call.inputs  # the ops above read one tensor, ``self``
    w = partial(call.leaves[i].detach(), y.detach(), call)
    if w is _AUTOGRAD:
        return None
    if w is not None and w.dtype != y.dtype:
        w = w.to(y.dtype)
    return {i: w}


def _autograd_partials(call: OpRecord) -> dict[int, Any]:
    out = call.output(0)
    shape = out.shape
    expanded = {
        i: call.leaves[i].detach().expand(shape).clone().requires_grad_(True)
        for i, _ in call.inputs
    }
    with torch.enable_grad():
        result = call.rerun(expanded)[0]
        grads = torch.autograd.grad(
            result, list(expanded.values()), torch.ones_like(result), allow_unused=True
        )
    return {
        i: (g if g is not None else torch.zeros_like(x)).to(out.dtype)
        for (i, x), g in zip(expanded.items(), grads, strict=True)
    }


def _partials(call: OpRecord) -> dict[int, Any]:
    closed_form = _closed_form_partials(call)
    if closed_form is not None:
        return closed_form
    return _autograd_partials(call)


# Ops whose condition selects one tensor argument: (condition, selected argument).
_SELECTING = {
    aten.where.self: ("condition", "self"),
    aten.where.ScalarOther: ("condition", "self"),
    aten.masked_fill.Scalar: ("mask", "value"),
    aten.masked_fill.Tensor: ("mask", "value"),
}


def _edge_masks(call: OpRecord) -> dict[int, torch.Tensor]:
    """Inputs that a boolean condition hides from some outputs have no edge there."""
    if call.func not in _SELECTING:
        return {}
    condition_name, selected_name = _SELECTING[call.func]
    condition = call.arg(condition_name).expand(call.output(0).shape)
    selected = call.position(selected_name)
    return {i: condition if i == selected else ~condition for i, _ in call.inputs}


def pointwise_rule(call: OpRecord) -> dict[tuple[int, int], Elementwise]:
    out_shape = tuple(call.output(0).shape)
    masks = _edge_masks(call)
    maps: dict[tuple[int, int], Elementwise] = {}
    for i, weight in _partials(call).items():
        in_shape = tuple(call.leaves[i].shape)
        mask = masks.get(i)
        if mask is None and in_shape == out_shape:
            maps[(i, 0)] = Pointwise(weight, in_shape, out_shape, out_shape)
        else:
            maps[(i, 0)] = Elementwise(
                weight, in_shape, out_shape, out_shape, mask=mask
            )
    return maps


# This where overload carries no pointwise tag, but is pointwise; decompositions
# (nll_loss) call it.
register_rule(aten.where.ScalarOther)(pointwise_rule)


@register_decomposition(torch.ops.prims.where.default)
def prims_where(pred: Tensor, a: Any, b: Any) -> Tensor:
    """``prims.where``, which PyTorch's own decompositions (nanmean's) emit, is
    ``aten.where``."""
    like = a if isinstance(a, Tensor) else b
    a, b = (torch.as_tensor(v, dtype=like.dtype, device=like.device) for v in (a, b))
    return torch.where(pred, a, b)


@register_decomposition(aten.native_batch_norm.default)
def batch_norm(
    input: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    training: bool,
    momentum: float,
    eps: float,
) -> Any:
    """Batch norm in eval mode is one recorded op, pointwise per channel (its rule
    below; torch's decomposition would record about ten); training mode, whose
    statistics read the whole batch, goes through torch's decomposition."""
    if training or running_mean is None or running_var is None:
        return decomposition_table[aten.native_batch_norm.default](
            input, weight, bias, running_mean, running_var, training, momentum, eps
        )
    return aten._native_batch_norm_legit_no_training.default(
        input, weight, bias, running_mean, running_var, momentum, eps
    )


@register_rule(aten._native_batch_norm_legit_no_training.default)
def batch_norm_eval_rule(call: OpRecord) -> dict[tuple[int, int], Elementwise]:
    """``y = (x - mean) r w + b`` per channel (axis 1), ``r = (var + eps)^-1/2``."""
    x = call.arg("input").detach()
    shape, out_shape = [1] * x.dim(), tuple(x.shape)
    shape[1] = x.shape[1]

    def channel(name: str) -> Tensor | None:
        t = call.arg(name)
        return None if t is None else t.detach().to(x.dtype).reshape(shape)

    w, mean, var = channel("weight"), channel("running_mean"), channel("running_var")
    assert mean is not None and var is not None  # the schema requires both
    r = torch.rsqrt(var + call.arg("eps"))
    partials = {
        "input": lambda: r if w is None else r * w,
        "weight": lambda: (x - mean) * r,
        "bias": lambda: None,
    }
    positions = {call.position(name): name for name in partials}
    maps: dict[tuple[int, int], Elementwise] = {}
    for i, _ in call.inputs:
        name = positions.get(i)
        if name is None:  # autograd refuses this too
            raise UnsupportedOpError(
                f"{call.func} reads tracked running statistics; batch norm is "
                "differentiable in its input, weight and bias only"
            )
        weight = partials[name]()
        if weight is not None:
            weight = weight.expand(out_shape)
        if name == "input":
            maps[(i, 0)] = Pointwise(weight, out_shape, out_shape, out_shape)
        else:  # one per channel, to every output of its channel
            in_shape = tuple(call.leaves[i].shape)
            maps[(i, 0)] = Elementwise(
                weight, in_shape, out_shape, out_shape, in_view=tuple(shape)
            )
    return maps
