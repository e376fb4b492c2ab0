"""Bilinear contractions: every pair in the contraction is an edge.

Each operand's map contracts with the other operand as a fixed real matrix. One rule serves
mm, bmm, mv, dot and the fused ``add*`` forms; convolution is
decomposed into ``im2col`` (an index map) and a matmul.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._record import OpRecord
from . import UnsupportedOpError, register_decomposition, register_rule
from ._maps import Elementwise, MatMul

aten = torch.ops.aten


# The two contracted operands of each op, by schema name.
_OPERANDS = {
    aten.mm.default: ("self", "mat2"),
    aten.bmm.default: ("self", "mat2"),
    aten.mv.default: ("self", "vec"),
    aten.dot.default: ("self", "tensor"),
    aten.addmm.default: ("mat1", "mat2"),
    aten.baddbmm.default: ("batch1", "batch2"),
    aten.addmv.default: ("mat", "vec"),
}


_WITH_BIAS = {aten.addmm.default, aten.baddbmm.default, aten.addmv.default}


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """Broadcast batch shapes (``torch.broadcast_shapes`` costs far more per call)."""
    if a == b:
        return a
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    return tuple(y if x == 1 else x for x, y in zip(a, b, strict=True))


@register_rule(*_OPERANDS)
def matmul_rule(call: OpRecord) -> dict:
    """``out = beta * self + alpha * (left @ right)``; vectors are viewed as a row
    (left) or a column (right) matrix."""
    left, right = (call.position(name) for name in _OPERANDS[call.func])
    a, b = call.leaves[left], call.leaves[right]
    a_view = tuple(a.shape) if a.dim() >= 2 else (1, a.shape[0])
    b_view = tuple(b.shape) if b.dim() >= 2 else (b.shape[0], 1)
    out_view = (*_broadcast(a_view[:-2], b_view[:-2]), a_view[-2], b_view[-1])
    out_shape = tuple(call.output(0).shape)
    alpha = call.arg("alpha", 1)
    tracked = {i for i, _ in call.inputs}
    maps: dict = {}
    if left in tracked:
        weight = b.detach().reshape(b_view)
        maps[(left, 0)] = MatMul(
            weight if alpha == 1 else weight * alpha,
            "right",
            tuple(a.shape),
            out_shape,
            a_view,
            out_view,
        )
    if right in tracked:
        weight = a.detach().reshape(a_view)
        maps[(right, 0)] = MatMul(
            weight if alpha == 1 else weight * alpha,
            "left",
            tuple(b.shape),
            out_shape,
            b_view,
            out_view,
        )
    if call.func in _WITH_BIAS:
        bias = call.position("self")
        if bias in tracked:
            beta = call.arg("beta", 1)
            scale = (
                None
                if beta == 1
                else torch.tensor(float(beta), dtype=call.output(0).dtype)
            )
            maps[(bias, 0)] = Elementwise(
                scale, tuple(call.leaves[bias].shape), out_shape, out_shape
            )
    return maps


@register_decomposition(aten.convolution.default)
def convolution_as_matmul(
    input, weight, bias, stride, padding, dilation, transposed, output_padding, groups
):  # type: ignore[no-untyped-def]
    """Convolution as im2col (an index map) followed by a batched matmul."""
    if transposed:
        raise UnsupportedOpError(
            "transposed convolution has no rule yet (aten.convolution.default)"
        )
    spatial = input.dim() - 2
    # A one-element list stands for every spatial axis (conv2d(padding="valid")).
    stride, padding, dilation = (
        tuple(v) * spatial if len(v) == 1 else tuple(v)
        for v in (stride, padding, dilation)
    )
    if spatial == 1:
        out = convolution_as_matmul(
            input.unsqueeze(2),
            weight.unsqueeze(2),
            bias,
            (1, *stride),
            (0, *padding),
            (1, *dilation),
            transposed,
            output_padding,
            groups,
        )
        return out.squeeze(2)
    if spatial != 2:
        raise UnsupportedOpError(
            f"{spatial}-d convolution has no rule yet (aten.convolution.default)"
        )
    n, channels, height, width = input.shape
    out_channels, _, kh, kw = weight.shape
    cols = F.unfold(input, (kh, kw), dilation=dilation, padding=padding, stride=stride)
    oh = (height + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (width + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    cols = cols.reshape(n, groups, -1, oh * ow)
    kernel = weight.reshape(groups, out_channels // groups, -1)
    out = torch.matmul(kernel, cols).reshape(n, out_channels, oh, ow)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out


@register_decomposition(aten.addbmm.default)
def addbmm(
    self: torch.Tensor,
    batch1: torch.Tensor,
    batch2: torch.Tensor,
    *,
    beta: float = 1,
    alpha: float = 1,
) -> torch.Tensor:
    """``beta * self + alpha * Σ_b batch1[b] @ batch2[b]``; with ``beta=0`` self is
    not read, as in the kernel."""
    total = torch.bmm(batch1, batch2).sum(0)
    if alpha != 1:
        total = total * alpha
    if beta == 0:
        return total
    return (self if beta == 1 else self * beta) + total
