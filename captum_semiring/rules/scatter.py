"""Scatters that accumulate: each element of the scattered tensor reaches one output
element, and several may reach the same one (``scatter_add``, ``scatter_reduce``,
``index_add``, ``index_reduce``, ``index_put(accumulate=True)``, ``put``,
``max_unpool``).

The edges come from the index tensor, as an explicit edge list
(:class:`Edges`); the weights from autograd in one call (each input element reaches
at most one output, so the vector-Jacobian product with ones is exactly the weight
of its edge). Where the forward overwrites (``put`` without accumulation,
``max_unpool`` with a repeated index), the edges follow autograd's convention:
every scattered element gets the gradient of the position it was written to.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .._record import OpRecord
from ..semirings import Semiring
from . import register_rule
from ._maps import Elementwise, LocalMap

aten = torch.ops.aten


class Edges(LocalMap):
    """An explicit edge list: input element ``src[e]`` to output element ``dst[e]``
    with weight ``weight[e]`` (None: unit weights). Any pattern, including several
    edges into one output and several out of one input."""

    def __init__(
        self,
        src: Tensor,
        dst: Tensor,
        weight: Tensor | None,
        in_shape: tuple[int, ...],
        out_shape: tuple[int, ...],
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        src, dst = src.reshape(-1), dst.reshape(-1)
        # One edge per (input, output) pair, its weight the sum: the local
        # derivative (an input broadcast twice to one position has weight 2).
        n_out = math.prod(self.out_shape)
        pairs, inverse = torch.unique(src * n_out + dst, return_inverse=True)
        if pairs.numel() < src.numel():
            ones = torch.ones(src.shape, dtype=dtype, device=src.device)
            w = ones if weight is None else weight.reshape(-1)
            weight = w.new_zeros(pairs.shape).index_add_(0, inverse, w)
            src, dst = pairs // n_out, pairs % n_out
        self.src, self.dst = src, dst
        self.weight = None if weight is None else weight.reshape(-1)

    def _move(
        self, sr: Semiring, values: Tensor, frm: Tensor, to: Tensor, shape: tuple
    ) -> Tensor:
        flat = values.reshape(values.shape[0], -1)[:, frm]
        if self.weight is not None:
            flat = sr.scale(flat, self.weight)
        out = sr.segment_sum(flat, to, math.prod(shape))
        return out.reshape(values.shape[0], *shape)

    def backward(self, sr: Semiring, values: Tensor) -> Tensor:
        return self._move(sr, values, self.dst, self.src, self.in_shape)

    def forward(self, sr: Semiring, values: Tensor) -> Tensor:
        return self._move(sr, values, self.src, self.dst, self.out_shape)

    def edges_from(self, flat_index: int, like: Tensor) -> tuple[Tensor, Tensor]:
        hit = (self.src == flat_index).nonzero().flatten()
        weights = like.new_ones(hit.shape) if self.weight is None else self.weight[hit]
        return self.dst[hit], weights


def _positions(shape: Any, device: Any) -> Tensor:
    numel = math.prod(shape)
    return torch.arange(numel, device=device).reshape(tuple(shape))


def _at_least_1d(t: Tensor) -> Tensor:
    return t.reshape(1) if t.dim() == 0 else t


def vjp_ones(call: OpRecord) -> dict[int, Tensor]:
    """Autograd's vector-Jacobian product of output 0 with ones, per tracked input
    (zeros where autograd finds no use)."""
    probes = {
        i: call.leaves[i].detach().clone().requires_grad_(True) for i, _ in call.inputs
    }
    with torch.enable_grad():
        out = call.rerun(probes)[0]
        grads = torch.autograd.grad(
            out, list(probes.values()), torch.ones_like(out), allow_unused=True
        )
    return {
        i: torch.zeros_like(p) if g is None else g.detach()
        for (i, p), g in zip(probes.items(), grads, strict=True)
    }


def _scatter_maps(
    call: OpRecord,
    src_name: str,
    src_flat: Tensor,
    dst_flat: Tensor,
    include_self: bool,
    unit_weights: bool = False,
) -> dict[tuple[int, int], LocalMap]:
    """The maps of ``out = self ⊕ scatter(src)``: ``src`` element ``src_flat[e]``
    reaches output ``dst_flat[e]``; ``self`` reaches its own position, except where
    ``include_self`` is False and something was scattered there."""
    out = call.output(0)
    shape = tuple(out.shape)
    tracked = {i for i, _ in call.inputs}
    weights = {} if unit_weights else vjp_ones(call)
    maps: dict[tuple[int, int], LocalMap] = {}
    src = call.position(src_name)
    if src in tracked:
        w = None if unit_weights else weights[src].reshape(-1)[src_flat].to(out.dtype)
        maps[(src, 0)] = Edges(
            src_flat, dst_flat, w, tuple(call.leaves[src].shape), shape, out.dtype
        )
    me = call.position("self")
    if me in tracked:
        mask = None
        if not include_self:
            keep = torch.ones(out.numel(), dtype=torch.bool, device=out.device)
            keep[dst_flat] = False
            mask = keep.reshape(shape)
        w = None if unit_weights else weights[me].to(out.dtype)
        maps[(me, 0)] = Elementwise(w, shape, shape, shape, mask=mask)
    return maps


@register_rule(aten.scatter_add.default, aten.scatter_reduce.two)
def scatter_accumulate_rule(call: OpRecord) -> dict[tuple[int, int], LocalMap]:
    """``out[..., index[c], ...] ⊕= src[c]`` along ``dim`` for ``c`` in index's shape."""
    out = call.output(0)
    index = _at_least_1d(call.arg("index"))
    src = _at_least_1d(call.arg("src"))
    dim = call.arg("dim") % max(1, out.dim())
    positions = _at_least_1d(_positions(out.shape, out.device))
    dst = positions.gather(dim, index).reshape(-1)
    src_positions = _positions(src.shape, out.device)
    src_flat = src_positions[tuple(slice(0, n) for n in index.shape)].reshape(-1)
    include_self = call.arg("include_self", True)
    return _scatter_maps(call, "src", src_flat, dst, include_self)


@register_rule(aten.index_add.default, aten.index_reduce.default)
def index_accumulate_rule(call: OpRecord) -> dict[tuple[int, int], LocalMap]:
    """``out[..., index[j], ...] ⊕= source[..., j, ...]`` along ``dim``."""
    out = call.output(0)
    index = _at_least_1d(call.arg("index"))
    source = call.arg("source")
    dim = call.arg("dim") % max(1, out.dim())
    positions = _at_least_1d(_positions(out.shape, out.device))
    dst = positions.index_select(dim, index).reshape(-1)
    src_flat = torch.arange(source.numel(), device=out.device)
    include_self = call.arg("include_self", True)
    return _scatter_maps(call, "source", src_flat, dst, include_self)


def index_put_accumulate_rule(call: OpRecord) -> dict[tuple[int, int], LocalMap]:
    """``out[indices] += values``, values broadcast to the indexed shape."""
    out = call.output(0)
    positions = _positions(out.shape, out.device)
    indices = list(call.arg("indices"))
    dst = aten.index.Tensor(positions, indices)
    values = call.arg("values")
    src = _positions(values.shape, out.device).expand(dst.shape)
    return _scatter_maps(
        call, "values", src.reshape(-1), dst.reshape(-1), True, unit_weights=True
    )


@register_rule(aten.put.default)
def put_rule(call: OpRecord) -> dict[tuple[int, int], LocalMap]:
    """``out.view(-1)[index] = source`` (or ``+=``): autograd's convention without
    accumulation gives every source element the gradient of its position, repeated
    indices included, and ``self`` none where written."""
    out = call.output(0)
    numel = max(1, out.numel())
    dst = call.arg("index").reshape(-1) % numel
    src_flat = torch.arange(dst.numel(), device=out.device)
    accumulate = bool(call.arg("accumulate", False))
    return _scatter_maps(call, "source", src_flat, dst, accumulate, unit_weights=True)


@register_rule(aten.max_unpool2d.default, aten.max_unpool3d.default)
def max_unpool_rule(call: OpRecord) -> dict[tuple[int, int], LocalMap]:
    """Each input element goes to the flat spatial position its index names, in its
    own plane (autograd's convention with repeated indices: every one of them gets
    that position's gradient)."""
    ((i, _),) = call.inputs
    x, indices, out = call.leaves[i], call.arg("indices"), call.output(0)
    spatial = 2 if call.func is aten.max_unpool2d.default else 3
    plane_in = math.prod(x.shape[-spatial:])
    plane_out = math.prod(out.shape[-spatial:])
    planes = x.numel() // max(1, plane_in)
    offset = torch.arange(planes, device=out.device)[:, None] * plane_out
    dst = (offset + indices.reshape(planes, plane_in)).reshape(-1)
    src = torch.arange(x.numel(), device=out.device)
    return {(i, 0): Edges(src, dst, None, tuple(x.shape), tuple(out.shape))}
