"""Selections and scans along one axis.

Selection ops (``sort``, ``topk``, ``kthvalue``, ``median``, ``mode``, ``cummax``,
``cummin``) return values and the indices they were taken from: the values output
is an index map of the input, read off the indices output (a probe with element
positions would reorder the values). ``median`` and ``nanmedian`` over all
elements follow autograd: the gradient is shared evenly among the elements equal
to the median.

Scans with a dense lower-triangular Jacobian per row (``cumprod``,
``logcumsumexp``) get the edges ``x_i → y_j`` for ``i ≤ j`` only, with weights in
closed form.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._record import OpRecord
from . import register_rule
from ._maps import IndexMap, LocalMap
from .scatter import Edges

aten = torch.ops.aten


def _source_from_indices(x: Tensor, indices: Tensor, dim: int, keepdim: bool) -> Tensor:
    """Flat input positions of the selected elements: ``positions.gather(dim,
    indices)``, with ``dim`` restored where the op dropped it."""
    if x.dim() == 0:
        return torch.zeros(indices.shape, dtype=torch.int64, device=x.device)
    dim %= x.dim()
    if not keepdim and indices.dim() < x.dim():
        indices = indices.unsqueeze(dim)
    positions = torch.arange(x.numel(), device=x.device).reshape(x.shape)
    return positions.gather(dim, indices)


# op -> (keeps dim by default, reads keepdim from the call)
_SELECTING = {
    aten.sort.default: True,
    aten.sort.stable: True,
    aten.topk.default: True,
    aten.cummax.default: True,
    aten.cummin.default: True,
    aten.kthvalue.default: False,
    aten.median.dim: False,
    aten.nanmedian.dim: False,
    aten.mode.default: False,
}


@register_rule(*_SELECTING, copies=True)
def selection_rule(call: OpRecord) -> dict[tuple[int, int], LocalMap]:
    ((i, _),) = call.inputs
    x = call.leaves[i]
    values, indices = call.out_leaves[0], call.out_leaves[1]
    keepdim = True if _SELECTING[call.func] else bool(call.arg("keepdim", False))
    source = _source_from_indices(x, indices, call.arg("dim", -1), keepdim)
    return {(i, 0): IndexMap(source, tuple(x.shape), tuple(values.shape))}


@register_rule(aten.median.default, aten.nanmedian.default)
def median_all_rule(call: OpRecord) -> dict[tuple[int, int], LocalMap]:
    """One output; autograd shares its gradient among the elements equal to it."""
    ((i, _),) = call.inputs
    x, out = call.leaves[i].detach(), call.output(0).detach()
    flat = x.reshape(-1)
    if bool(torch.isnan(out)):  # median propagates NaN: autograd picks the NaNs
        hit = torch.isnan(flat)
    else:
        hit = flat == out
    src = hit.nonzero().flatten()
    weight = torch.full(src.shape, 1.0 / max(1, src.numel()), dtype=out.dtype)
    dst = torch.zeros_like(src)
    return {(i, 0): Edges(src, dst, weight, tuple(x.shape), ())}


def _scan_edges(call: OpRecord, block: Tensor) -> dict[tuple[int, int], LocalMap]:
    """Edges ``x_i → y_j`` (``i ≤ j``) of each row along ``dim``; ``block`` holds
    the weights ``(rows, n_j, n_i)`` of the rows in order (``dim`` moved last)."""
    ((i, _),) = call.inputs
    out = call.output(0)
    shape = tuple(out.shape)
    if out.dim() == 0:
        src = torch.zeros(1, dtype=torch.int64)
        return {(i, 0): Edges(src, src, block.reshape(1), (), ())}
    dim = call.arg("dim") % out.dim()
    n = shape[dim]
    positions = torch.arange(out.numel(), device=out.device).reshape(shape)
    rows = positions.movedim(dim, -1).reshape(-1, n)  # flat position of (row, k)
    j, k = torch.tril_indices(n, n, device=out.device)  # pairs with k <= j
    src = rows[:, k].reshape(-1)
    dst = rows[:, j].reshape(-1)
    weight = block[:, j, k].reshape(-1).to(out.dtype)
    return {(i, 0): Edges(src, dst, weight, shape, shape)}


def _row_values(t: Tensor, dim: int) -> Tensor:
    if t.dim() == 0:
        return t.reshape(1, 1)
    return t.movedim(dim % t.dim(), -1).reshape(-1, t.shape[dim])


@register_rule(aten.cumprod.default)
def cumprod_rule(call: OpRecord) -> dict[tuple[int, int], LocalMap]:
    r""":math:`\partial y_j / \partial x_i = \prod_{k \le j, k \ne i} x_k` for
    :math:`i \le j`, built without division so that zeros are exact."""
    ((i, _),) = call.inputs
    x = call.leaves[i].detach().to(call.output(0).dtype)
    rows = _row_values(x, call.arg("dim"))
    n = rows.shape[-1]
    # factors[r, i, k] = x[r, k], with 1 at k == i; the cumulative product over k
    # at j is the product over k <= j without x_i.
    factors = rows[:, None, :].expand(-1, n, -1).clone()
    factors.diagonal(dim1=1, dim2=2).fill_(1.0)
    block = factors.cumprod(-1).transpose(1, 2)  # (rows, j, i)
    return _scan_edges(call, block)


@register_rule(aten.logcumsumexp.default)
def logcumsumexp_rule(call: OpRecord) -> dict[tuple[int, int], LocalMap]:
    r""":math:`\partial y_j / \partial x_i = \exp(x_i - y_j)` for :math:`i \le j`."""
    ((i, _),) = call.inputs
    out = call.output(0).detach()
    dim = call.arg("dim")
    x = _row_values(call.leaves[i].detach().to(out.dtype), dim)
    y = _row_values(out, dim)
    block = torch.exp(x[:, None, :] - y[:, :, None])  # (rows, j, i)
    # y_j = -inf (every x_k = -inf up to j): autograd gives 0, not NaN.
    block = torch.nan_to_num(block, nan=0.0)
    return _scan_edges(call, block)


__all__ = ["selection_rule", "median_all_rule", "cumprod_rule", "logcumsumexp_rule"]
