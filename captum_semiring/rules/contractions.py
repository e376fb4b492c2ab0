"""Bilinear contractions: every pair in the contraction is an edge.

Each operand's map contracts with the other operand as a fixed real matrix. One rule serves
mm, bmm, mv, dot and the fused ``add*`` forms; convolution is
decomposed into ``im2col`` (an index map) and a matmul.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._record import OpRecord
from .._shapes import broadcast_shapes
from . import register_decomposition, register_rule
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


@register_rule(*_OPERANDS)
def matmul_rule(call: OpRecord) -> dict:
    """``out = beta * self + alpha * (left @ right)``; vectors are viewed as a row
    (left) or a column (right) matrix."""
    left, right = (call.position(name) for name in _OPERANDS[call.func])
    a, b = call.leaves[left], call.leaves[right]
    a_view = tuple(a.shape) if a.dim() >= 2 else (1, a.shape[0])
    b_view = tuple(b.shape) if b.dim() >= 2 else (b.shape[0], 1)
    out_view = (*broadcast_shapes(a_view[:-2], b_view[:-2]), a_view[-2], b_view[-1])
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
    """Convolution as im2col (an index map) followed by a batched matmul; 1-d and
    3-d convolutions through 2-d ones, transposed ones through ordinary ones."""
    spatial = input.dim() - 2
    # A one-element list stands for every spatial axis (conv2d(padding="valid")).
    stride, padding, dilation, output_padding = (
        tuple(v) * spatial if len(v) == 1 else tuple(v)
        for v in (stride, padding, dilation, output_padding)
    )
    if transposed:
        return _transposed_as_ordinary(
            input, weight, bias, stride, padding, dilation, output_padding, groups
        )
    if spatial == 1:
        out = _convolution(
            input.unsqueeze(2),
            weight.unsqueeze(2),
            bias,
            (1, *stride),
            (0, *padding),
            (1, *dilation),
            groups,
        )
        return out.squeeze(2)
    if spatial == 3:
        return _depth_as_batch(input, weight, bias, stride, padding, dilation, groups)
    n, channels, height, width = input.shape
    out_channels, _, kh, kw = weight.shape
    cols = F.unfold(input, (kh, kw), dilation=dilation, padding=padding, stride=stride)
    oh = (height + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (width + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if groups == 1:  # bmm itself: matmul's decomposition dispatches many more ops
        kernel = weight.reshape(1, out_channels, -1).expand(n, -1, -1)
        out = torch.bmm(kernel, cols).reshape(n, out_channels, oh, ow)
    else:
        cols = cols.reshape(n, groups, -1, oh * ow)
        kernel = weight.reshape(groups, out_channels // groups, -1)
        out = torch.matmul(kernel, cols).reshape(n, out_channels, oh, ow)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out


def _convolution(input, weight, bias, stride, padding, dilation, groups):  # type: ignore[no-untyped-def]
    spatial = input.dim() - 2
    return aten.convolution.default(
        input, weight, bias, stride, padding, dilation, False, [0] * spatial, groups
    )


def _depth_as_batch(input, weight, bias, stride, padding, dilation, groups):  # type: ignore[no-untyped-def]
    """A 3-d convolution as one 2-d convolution per kernel depth, each over the
    depth slices it reads (moved into the batch), summed."""
    n, channels, depth = input.shape[:3]
    kernel_depth = weight.shape[2]
    x = F.pad(input, (0, 0, 0, 0, padding[0], padding[0]))
    out_depth = (
        depth + 2 * padding[0] - dilation[0] * (kernel_depth - 1) - 1
    ) // stride[0] + 1
    total = None
    for k in range(kernel_depth):
        start = k * dilation[0]
        slices = x[:, :, start : start + stride[0] * (out_depth - 1) + 1 : stride[0]]
        slices = slices.transpose(1, 2).reshape(n * out_depth, channels, *x.shape[3:])
        part = _convolution(
            slices, weight[:, :, k], None, stride[1:], padding[1:], dilation[1:], groups
        )
        total = part if total is None else total + part
    assert total is not None
    out = total.reshape(n, out_depth, *total.shape[1:]).transpose(1, 2)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1, 1)
    return out


def _transposed_as_ordinary(
    input, weight, bias, stride, padding, dilation, output_padding, groups
):  # type: ignore[no-untyped-def]
    """A transposed convolution is an ordinary one (stride 1) over the input with
    ``stride - 1`` zeros between elements, padded by ``dilation * (k - 1) -
    padding``, with the kernel flipped and its channel axes swapped per group."""
    x = input
    for axis in range(2, input.dim()):
        step = stride[axis - 2]
        if step > 1:  # the inserted zeros are constants: no paths through them
            size = x.shape[axis]
            zeros = x.new_zeros((*x.shape[: axis + 1], step - 1, *x.shape[axis + 1 :]))
            x = torch.cat([x.unsqueeze(axis + 1), zeros], axis + 1).flatten(
                axis, axis + 1
            )
            x = x[(slice(None),) * axis + (slice(0, (size - 1) * step + 1),)]
    pads: list[int] = []
    for axis in reversed(range(input.dim() - 2)):  # F.pad's order: last axis first
        reach = dilation[axis] * (weight.shape[axis + 2] - 1)
        pads += [reach - padding[axis], reach - padding[axis] + output_padding[axis]]
    x = F.pad(x, pads)
    in_channels, per_group = weight.shape[:2]
    kernel = (
        weight.reshape(groups, in_channels // groups, per_group, *weight.shape[2:])
        .transpose(1, 2)
        .reshape(groups * per_group, in_channels // groups, *weight.shape[2:])
        .flip(list(range(2, weight.dim())))
    )
    spatial = input.dim() - 2
    return _convolution(
        x, kernel, bias, (1,) * spatial, (0,) * spatial, dilation, groups
    )


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
