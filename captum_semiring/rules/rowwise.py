"""Row-wise primitives with dense per-row Jacobians (softmax, log_softmax, layer
norm), and cumsum's lower-triangular one.

Their Jacobians have closed forms, built from the recorded outputs once per sweep;
the ordinary gradient skips them and uses the closed-form vector-Jacobian products.
With ``record(decompose=...)`` these ops are split into finer ops instead.
"""

from __future__ import annotations

import math

import torch

from .._record import OpRecord
from . import register_rule
from ._maps import CumulativeSum, Elementwise, LayerNormRows, RankOneRows

aten = torch.ops.aten


def _rows(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``t`` with ``dim`` moved last, flattened to (rows, n)."""
    return t.movedim(dim, -1).reshape(-1, t.shape[dim])


@register_rule(
    aten._softmax.default, aten._safe_softmax.default, aten._log_softmax.default
)
def softmax_rule(call: OpRecord) -> dict:
    """Softmax and log-softmax rows. ``_safe_softmax`` (SDPA's softmax) outputs a row
    of zeros where every input is -inf; its Jacobian there is zero, as the kernel's
    gradient is, so no NaN from the plain softmax of such a row enters the sweep."""
    ((i, _),) = call.inputs
    out = call.output(0).detach()
    dim = call.arg("dim") % max(1, out.dim())
    if out.dim() == 0:
        return {(i, 0): Elementwise(torch.zeros_like(out), (), (), ())}
    y = _rows(out, dim)
    shape = tuple(out.shape)
    if call.func is not aten._log_softmax.default:
        # J[j, i] = y_j (δ_ij - y_i): symmetric, so vjp and jvp agree.
        def apply(v: torch.Tensor) -> torch.Tensor:
            return y * (v - (v * y).sum(-1, keepdim=True))

        diag = y - y * y
        return {(i, 0): RankOneRows(shape, [dim], diag, -y, y, apply, apply)}

    # log_softmax: J[j, i] = δ_ij - s_i with s = softmax.
    s = torch.exp(y)

    def vjp(v: torch.Tensor) -> torch.Tensor:
        return v - s * v.sum(-1, keepdim=True)

    def jvp(v: torch.Tensor) -> torch.Tensor:
        return v - (s * v).sum(-1, keepdim=True)

    return {(i, 0): RankOneRows(shape, [dim], 1.0 - s, None, -s, vjp, jvp)}


@register_rule(aten.native_layer_norm.default)
def layer_norm_rule(call: OpRecord) -> dict:
    x, weight = call.arg("input"), call.arg("weight")
    k = len(call.arg("normalized_shape"))
    shape = tuple(x.shape)
    block = list(range(len(shape) - k, len(shape)))
    n = math.prod(shape[len(shape) - k :])
    mean, rstd = call.output(1).detach(), call.output(2).detach()
    normalized = ((x.detach() - mean) * rstd).reshape(-1, n)
    rstd = rstd.reshape(-1, 1)
    gamma = (
        weight.detach().reshape(n)
        if weight is not None
        else torch.ones_like(normalized[0])
    )

    # J[j, i] = gamma_j rstd (δ_ij - 1/n - x̂_j x̂_i / n)
    def vjp(v: torch.Tensor) -> torch.Tensor:
        g = v * gamma
        return rstd * (
            g
            - g.mean(-1, keepdim=True)
            - normalized * (g * normalized).mean(-1, keepdim=True)
        )

    def jvp(v: torch.Tensor) -> torch.Tensor:
        centred = (
            v
            - v.mean(-1, keepdim=True)
            - normalized * (normalized * v).mean(-1, keepdim=True)
        )
        return gamma * rstd * centred

    maps: dict = {}
    tracked = {p for p, _ in call.inputs}
    if call.position("input") in tracked:
        maps[(call.position("input"), 0)] = LayerNormRows(
            shape, block, normalized, gamma * rstd, vjp, jvp
        )
    for name, partial in (("weight", normalized.reshape(shape)), ("bias", None)):
        param = call.arg(name)
        if param is not None and call.position(name) in tracked:
            maps[(call.position(name), 0)] = Elementwise(
                partial, tuple(param.shape), shape, shape
            )
    return maps


@register_rule(aten.cumsum.default)
def cumsum_rule(call: OpRecord) -> dict:
    ((i, _),) = call.inputs
    out = call.output(0)
    if out.dim() == 0:
        return {(i, 0): Elementwise(None, (), (), ())}
    return {(i, 0): CumulativeSum(tuple(out.shape), call.arg("dim") % out.dim())}
