"""One rule for every op tagged ``torch.Tag.pointwise``.

The local derivative of output element ``o`` with respect to input ``i`` is the
elementwise partial at ``o``; autograd gives all of them in one call once every tracked
input is broadcast to the output shape.
"""

from __future__ import annotations

from typing import Any

import torch

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


def _edge_masks(call: Any) -> dict[int, torch.Tensor]:
    """Inputs that a boolean condition hides from some outputs have no edge there."""
    shape = call.output(0).shape
    if call.func in (aten.where.self, aten.where.ScalarSelf, aten.where.ScalarOther):
        condition = call.arg("condition").expand(shape)
        selected = (
            call.position("self") if call.func is not aten.where.ScalarSelf else -1
        )
        return {i: condition if i == selected else ~condition for i, _ in call.inputs}
    if call.func in (aten.masked_fill.Scalar, aten.masked_fill.Tensor):
        hidden = call.arg("mask").expand(shape)
        value = call.position("value") if call.func is aten.masked_fill.Tensor else -1
        return {i: hidden if i == value else ~hidden for i, _ in call.inputs}
    return {}


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
