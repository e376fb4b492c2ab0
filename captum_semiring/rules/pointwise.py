"""One rule for every op tagged ``torch.Tag.pointwise``.

The local derivative of output element ``o`` with respect to input ``i`` is the
elementwise partial at ``o``; autograd gives all of them in one call once every tracked
input is broadcast to the output shape. Plain arithmetic uses closed forms instead.
"""

from __future__ import annotations

from typing import Any

import torch

from . import register_rule
from ._maps import Elementwise

aten = torch.ops.aten


def _arithmetic_partials(call: Any) -> dict[int, Any] | None:
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
    for i, _ in call.inputs:
        name = "self" if i == call.position("self") else "other"
        w = by_name[name]
        partials[i] = w if w is None else torch.as_tensor(w, dtype=dtype)
    return partials


_ARITHMETIC = {aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.div.Tensor}


def _partials(call: Any) -> dict[int, Any]:
    closed_form = _arithmetic_partials(call)
    if closed_form is not None:
        return closed_form
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


# Ops whose condition selects one tensor argument: (condition, selected argument).
_SELECTING = {
    aten.where.self: ("condition", "self"),
    aten.where.ScalarOther: ("condition", "self"),
    aten.masked_fill.Scalar: ("mask", "value"),
    aten.masked_fill.Tensor: ("mask", "value"),
}


def _edge_masks(call: Any) -> dict[int, torch.Tensor]:
    """Inputs that a boolean condition hides from some outputs have no edge there."""
    if call.func not in _SELECTING:
        return {}
    condition_name, selected_name = _SELECTING[call.func]
    condition = call.arg(condition_name).expand(call.output(0).shape)
    selected = call.position(selected_name)
    return {i: condition if i == selected else ~condition for i, _ in call.inputs}


def pointwise_rule(call: Any) -> dict[tuple[int, int], Elementwise]:
    out_shape = tuple(call.output(0).shape)
    masks = _edge_masks(call)
    maps = {}
    for i, weight in _partials(call).items():
        in_shape = tuple(call.leaves[i].shape)
        maps[(i, 0)] = Elementwise(
            weight, in_shape, out_shape, out_shape, mask=masks.get(i)
        )
    return maps


# This where overload carries no pointwise tag, but is pointwise; decompositions
# (nll_loss) call it.
register_rule(aten.where.ScalarOther)(pointwise_rule)
