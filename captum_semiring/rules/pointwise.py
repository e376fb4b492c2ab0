"""One rule for every op tagged ``torch.Tag.pointwise``.

The local derivative of output element ``o`` with respect to input ``i`` is the
elementwise partial at ``o``; autograd gives all of them in one call once every tracked
input is broadcast to the output shape.
"""

from __future__ import annotations

from typing import Any

import torch

from . import register_rule
from ._maps import Elementwise

aten = torch.ops.aten


def _partials(call: Any) -> dict[int, torch.Tensor]:
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
