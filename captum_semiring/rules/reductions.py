"""Reductions: each input element has one edge, to the output element it reduces into.

The edge weights come from autograd in one call (each input element reaches one output,
so the vector-Jacobian product with ones is exactly the per-edge weight). Max-like
reductions keep an edge of weight 0 to every element they read, like relu does.
Average pooling is decomposed into ``im2col`` and a mean.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._record import OpRecord
from . import register_decomposition, register_rule
from ._maps import Elementwise

aten = torch.ops.aten


def _reduced_dims(call: OpRecord, x: torch.Tensor) -> list[int]:
    dim = call.arg("dim")
    if dim is None or dim == [] or dim == ():
        return list(range(x.dim()))
    dims = [dim] if isinstance(dim, int) else list(dim)
    return [d % max(1, x.dim()) for d in dims]


@register_rule(
    aten.sum.default,
    aten.sum.dim_IntList,
    aten.mean.default,
    aten.mean.dim,
    aten.amax.default,
    aten.amin.default,
    aten.max.dim,
    aten.min.dim,
    aten.max.default,
    aten.min.default,
    aten.prod.default,
    aten.prod.dim_int,
    aten.linalg_vector_norm.default,
    aten.var.correction,
    aten.std.correction,
    aten.var_mean.correction,
    aten.var_mean.dim,
    aten.logsumexp.default,
)
def reduction_rule(call: OpRecord) -> dict:
    ((i, _),) = call.inputs
    x = call.leaves[i]
    dims = _reduced_dims(call, x)
    keep_shape = tuple(1 if d in dims else s for d, s in enumerate(x.shape))
    shape = tuple(x.shape)
    maps = {}
    for o, _ in call.outputs:
        out = call.output(o)
        if call.func in (aten.sum.default, aten.sum.dim_IntList):
            weight = None
        elif call.func in (aten.mean.default, aten.mean.dim):
            count = math.prod(x.shape[d] for d in dims if d < x.dim())
            weight = torch.ones((), dtype=out.dtype, device=out.device) / count
        else:
            probe = x.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                result = call.rerun({i: probe})[o]
                (weight,) = torch.autograd.grad(
                    result, probe, torch.ones_like(result), allow_unused=True
                )
            if weight is None:  # a norm of order 0 counts: zero derivative
                weight = torch.zeros_like(probe)
        maps[(i, o)] = Elementwise(
            weight, shape, tuple(out.shape), shape, shape, keep_shape
        )
    return maps


@register_decomposition(aten.avg_pool2d.default)
def avg_pool2d_as_mean(
    input,
    kernel_size,
    stride=(),
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
):  # type: ignore[no-untyped-def]
    """Average pooling as im2col (an index map) followed by a mean over the window."""
    kernel = tuple(kernel_size) * (2 if len(kernel_size) == 1 else 1)
    stride = tuple(stride or kernel) * (2 if len(stride or kernel) == 1 else 1)
    padding = (
        (padding, padding)
        if isinstance(padding, int)
        else tuple(padding) * (2 if len(padding) == 1 else 1)
    )
    if ceil_mode:
        return NotImplemented
    squeeze = input.dim() == 3
    x = input.unsqueeze(0) if squeeze else input
    n, c, h, w = x.shape
    oh = (h + 2 * padding[0] - kernel[0]) // stride[0] + 1
    ow = (w + 2 * padding[1] - kernel[1]) // stride[1] + 1
    cols = F.unfold(x, kernel, padding=padding, stride=stride).reshape(
        n, c, kernel[0] * kernel[1], oh * ow
    )
    total = cols.sum(2)
    if divisor_override:
        out = total / divisor_override
    elif count_include_pad or padding == (0, 0):
        out = total / (kernel[0] * kernel[1])
    else:
        ones = torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device)
        counts = (
            F.unfold(ones, kernel, padding=padding, stride=stride)
            .sum(1)
            .reshape(1, 1, oh * ow)
        )
        out = total / counts
    out = out.reshape(n, c, oh, ow)
    return out.squeeze(0) if squeeze else out
