"""Row-wise primitives with dense per-row Jacobians: softmax, log_softmax, layer
norm, cumsum.

Their Jacobians have closed forms, built here from the recorded outputs. With
``record(decompose=...)`` these ops are split into finer ops instead.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from . import register_rule
from ._maps import Blockwise, Elementwise

aten = torch.ops.aten


def _rows(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``t`` with ``dim`` moved last, flattened to (rows, n)."""
    return t.movedim(dim, -1).reshape(-1, t.shape[dim])


@register_rule(aten._softmax.default, aten._log_softmax.default)
def softmax_rule(call: Any) -> dict:
    ((i, _),) = call.inputs
    out = call.output(0).detach()
    dim = call.arg("dim") % max(1, out.dim())
    if out.dim() == 0:
        return {(i, 0): Elementwise(torch.zeros_like(out), (), (), ())}
    y = _rows(out, dim)
    eye = torch.eye(y.shape[-1], dtype=y.dtype, device=y.device)
    if call.func is aten._softmax.default:
        jacobian = torch.diag_embed(y) - y[:, :, None] * y[:, None, :]
    else:
        jacobian = eye - torch.exp(y)[:, None, :]
    return {(i, 0): Blockwise(jacobian, tuple(out.shape), [dim])}


@register_rule(aten.native_layer_norm.default)
def layer_norm_rule(call: Any) -> dict:
    x, weight = call.arg("input"), call.arg("weight")
    k = len(call.arg("normalized_shape"))
    shape = tuple(x.shape)
    block = list(range(len(shape) - k, len(shape)))
    n = math.prod(shape[len(shape) - k :])
    mean, rstd = call.output(1).detach(), call.output(2).detach()
    normalized = ((x.detach() - mean) * rstd).reshape(-1, n)
    rows = normalized.shape[0]
    gamma = weight.detach().reshape(1, n, 1) if weight is not None else 1.0
    eye = torch.eye(n, dtype=x.dtype, device=x.device)
    inner = eye - 1.0 / n - normalized[:, :, None] * normalized[:, None, :] / n
    jacobian = gamma * inner * rstd.reshape(rows, 1, 1)
    maps: dict = {}
    tracked = {p for p, _ in call.inputs}
    if call.position("input") in tracked:
        maps[(call.position("input"), 0)] = Blockwise(jacobian, shape, block)
    for name, partial in (("weight", normalized.reshape(shape)), ("bias", None)):
        param = call.arg(name)
        if param is not None and call.position(name) in tracked:
            maps[(call.position(name), 0)] = Elementwise(
                partial, tuple(param.shape), shape, shape
            )
    return maps


@register_rule(aten.cumsum.default)
def cumsum_rule(call: Any) -> dict:
    ((i, _),) = call.inputs
    out = call.output(0)
    if out.dim() == 0:
        return {(i, 0): Elementwise(None, (), (), ())}
    dim = call.arg("dim") % out.dim()
    n = out.shape[dim]
    rows = out.numel() // max(1, n)
    lower = torch.ones(n, n, dtype=out.dtype, device=out.device).tril()
    return {(i, 0): Blockwise(lower.expand(rows, n, n), tuple(out.shape), [dim])}
