"""Local linear maps: the Jacobian of one op input, in a structured form.

A rule turns a recorded op call into one map per (tracked input, output) pair. A map
moves semiring values backward (output to input) and forward (input to output); the
engine needs nothing else. Every map holds real edge weights only, so one map serves
every semiring.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .. import kernels
from ..semirings import PathCount, Semiring, SumProduct

Shape = tuple[int, ...]


def _reduced_dims(view: Sequence[int], full: Sequence[int]) -> list[int]:
    """Value-tensor axes (semiring axis included) where ``view`` broadcasts to ``full``."""
    return [
        d + 1
        for d, (a, b) in enumerate(zip(view, full, strict=True))
        if a == 1 and b != 1
    ]


class LocalMap:
    """Base class: the edges from one op input to one op output."""

    in_shape: Shape
    out_shape: Shape

    def backward(self, sr: Semiring, values: Tensor) -> Tensor:
        """Values ``(S, *out_shape)`` to ``(S, *in_shape)``: ⊕ over out-edges."""
        raise NotImplementedError

    def forward(self, sr: Semiring, values: Tensor) -> Tensor:
        """Values ``(S, *in_shape)`` to ``(S, *out_shape)``: ⊕ over in-edges."""
        raise NotImplementedError

    def edges_from(self, flat_index: int, like: Tensor) -> tuple[Tensor, Tensor]:
        """Flat output indices reached from input element ``flat_index``, and weights."""
        one_hot = like.new_zeros((1, *self.in_shape))
        one_hot.view(-1)[flat_index] = 1.0
        weights = self.forward(SumProduct(), one_hot).reshape(-1)
        counts = PathCount()
        reach = counts.zeros(self.in_shape, like)
        reach.view(-1)[flat_index] = 0.0
        reached = ~torch.isinf(self.forward(counts, reach).reshape(-1))
        index = reached.nonzero().flatten()
        return index, weights[index]


class Elementwise(LocalMap):
    """Edges between positions that agree after broadcasting to a common shape.

    Covers pointwise ops (the input broadcasts up to the output) and reductions (the
    output broadcasts up to the input). ``weight`` has the common shape, or is None for
    unit weights; ``mask`` (common shape) removes edges that do not exist.
    """

    def __init__(
        self,
        weight: Tensor | None,
        in_shape: Shape,
        out_shape: Shape,
        common: Shape,
        in_view: Shape | None = None,
        out_view: Shape | None = None,
        mask: Tensor | None = None,
    ) -> None:
        self.weight, self.mask = weight, mask
        self.in_shape, self.out_shape, self.common = (
            tuple(in_shape),
            tuple(out_shape),
            tuple(common),
        )
        pad = len(common)
        self.in_view = (
            tuple(in_view)
            if in_view is not None
            else (1,) * (pad - len(in_shape)) + self.in_shape
        )
        self.out_view = (
            tuple(out_view)
            if out_view is not None
            else (1,) * (pad - len(out_shape)) + self.out_shape
        )

    def _apply(
        self,
        sr: Semiring,
        values: Tensor,
        src_view: Shape,
        dst_view: Shape,
        dst_shape: Shape,
    ) -> Tensor:
        x = values.reshape(values.shape[0], *src_view)
        if self.weight is not None:
            x = sr.scale(x, self.weight)
        x = x.expand(values.shape[0], *self.common)
        if self.mask is not None:
            x = torch.where(self.mask, x, sr.zeros(self.common, x))
        dims = _reduced_dims(dst_view, self.common)
        if dims:
            x = sr.sum(x, dims)
        return x.reshape(values.shape[0], *dst_shape)

    def backward(self, sr: Semiring, values: Tensor) -> Tensor:
        return self._apply(sr, values, self.out_view, self.in_view, self.in_shape)

    def forward(self, sr: Semiring, values: Tensor) -> Tensor:
        return self._apply(sr, values, self.in_view, self.out_view, self.out_shape)


class Reshape(LocalMap):
    """Element ``i`` of the input is element ``i`` of the output (view, clone, cast)."""

    def __init__(self, in_shape: Shape, out_shape: Shape) -> None:
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)

    def backward(self, sr: Semiring, values: Tensor) -> Tensor:
        return values.reshape(values.shape[0], *self.in_shape)

    def forward(self, sr: Semiring, values: Tensor) -> Tensor:
        return values.reshape(values.shape[0], *self.out_shape)


class Permute(LocalMap):
    """The output is the input with its axes permuted."""

    def __init__(self, in_shape: Shape, dims: Sequence[int]) -> None:
        self.in_shape = tuple(in_shape)
        self.dims = [d % len(in_shape) for d in dims] if in_shape else []
        self.out_shape = tuple(self.in_shape[d] for d in self.dims)
        self.inverse = sorted(range(len(self.dims)), key=lambda i: self.dims[i])

    def backward(self, sr: Semiring, values: Tensor) -> Tensor:
        return values.permute(0, *[d + 1 for d in self.inverse])

    def forward(self, sr: Semiring, values: Tensor) -> Tensor:
        return values.permute(0, *[d + 1 for d in self.dims])


class IndexMap(LocalMap):
    """Each output element copies one input element, or none (``source == -1``)."""

    def __init__(self, source: Tensor, in_shape: Shape, out_shape: Shape) -> None:
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.source = source.reshape(-1)
        self.valid = self.source >= 0
        self.all_valid = bool(self.valid.all())
        used = self.source[self.valid]
        self.used = used
        in_numel = math.prod(self.in_shape)
        self.injective = (
            used.numel() == 0
            or int(torch.bincount(used, minlength=in_numel).max()) <= 1
        )

    def backward(self, sr: Semiring, values: Tensor) -> Tensor:
        flat = values.reshape(values.shape[0], -1)
        if not self.all_valid:
            flat = flat[:, self.valid]
        in_numel = math.prod(self.in_shape)
        if self.injective:
            out = sr.zeros((in_numel,), values)
            out[:, self.used] = flat
        else:
            out = sr.segment_sum(flat, self.used, in_numel)
        return out.reshape(values.shape[0], *self.in_shape)

    def forward(self, sr: Semiring, values: Tensor) -> Tensor:
        flat = values.reshape(values.shape[0], -1)[:, self.source.clamp(min=0)]
        if not self.all_valid:
            flat = torch.where(self.valid, flat, sr.zeros(self.source.shape, flat))
        return flat.reshape(values.shape[0], *self.out_shape)

    def edges_from(self, flat_index: int, like: Tensor) -> tuple[Tensor, Tensor]:
        index = (self.source == flat_index).nonzero().flatten()
        return index, like.new_ones(index.shape)


class CumulativeSum(LocalMap):
    """``y_j = x_1 + ... + x_j`` along ``dim``: unit edges ``x_i → y_j`` for ``i ≤ j``
    only, applied as a semiring scan (``log n`` steps of ⊕, Hillis–Steele), so the
    ``n × n`` block is never built."""

    def __init__(self, shape: Shape, dim: int) -> None:
        self.in_shape = self.out_shape = tuple(shape)
        self.axis = dim + 1  # the semiring axis comes first

    def _scan(self, sr: Semiring, values: Tensor, reverse: bool) -> Tensor:
        if sr.linear:
            if reverse:
                return values.flip(self.axis).cumsum(self.axis).flip(self.axis)
            return values.cumsum(self.axis)
        n, shift = values.shape[self.axis], 1
        while shift < n:
            head = values.narrow(self.axis, 0, n - shift)
            tail = values.narrow(self.axis, shift, n - shift)
            if reverse:  # x_i ⊕= x_{i + shift}
                values = torch.cat(
                    [sr.plus(head, tail), values.narrow(self.axis, n - shift, shift)],
                    self.axis,
                )
            else:  # x_i ⊕= x_{i - shift}
                values = torch.cat(
                    [values.narrow(self.axis, 0, shift), sr.plus(tail, head)], self.axis
                )
            shift *= 2
        return values

    def backward(self, sr: Semiring, values: Tensor) -> Tensor:
        return self._scan(sr, values, reverse=True)

    def forward(self, sr: Semiring, values: Tensor) -> Tensor:
        return self._scan(sr, values, reverse=False)


class MatMul(LocalMap):
    """A contraction with a fixed real matrix: ``out = x @ weight`` (``side="right"``)
    or ``out = weight @ x`` (``side="left"``), batched, on the given views."""

    def __init__(
        self,
        weight: Tensor,
        side: str,
        in_shape: Shape,
        out_shape: Shape,
        in_view: Shape,
        out_view: Shape,
    ) -> None:
        self.weight, self.side = weight, side
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.in_view, self.out_view = tuple(in_view), tuple(out_view)

    def backward(self, sr: Semiring, values: Tensor) -> Tensor:
        y = values.reshape(values.shape[0], *self.out_view)
        if self.side == "right":
            x = sr.matmul(y, self.weight.mT)
        else:
            x = sr.matmul(y.mT, self.weight).mT
        return x.reshape(values.shape[0], *self.in_shape)

    def forward(self, sr: Semiring, values: Tensor) -> Tensor:
        x = values.reshape(values.shape[0], *self.in_view)
        if self.side == "right":
            y = sr.matmul(x, self.weight)
        else:
            y = sr.matmul(x.mT, self.weight.mT).mT
        return y.reshape(values.shape[0], *self.out_shape)


RowMap = Callable[[Tensor], Tensor]


class Blockwise(LocalMap):
    """Dense Jacobian blocks: the ``block`` axes of each row depend on each other.

    ``jacobian(rows)`` builds the ``(len(rows), n_out, n_in)`` blocks of a slice of
    rows, where rows enumerate the other axes in order and ``n`` is the product of the
    block axes (softmax, layer norm). All blocks together are too large to keep, so
    other semirings contract them in chunks of rows under the memory budget. ``vjp``
    and ``jvp``, when given, apply the blocks to ``(S, rows, n)`` values in the
    ordinary (+, ×) semiring without building them.
    """

    def __init__(
        self,
        jacobian: Callable[[slice], Tensor],
        shape: Shape,
        block: Sequence[int],
        vjp: RowMap | None = None,
        jvp: RowMap | None = None,
    ) -> None:
        self.jacobian, self.vjp, self.jvp = jacobian, vjp, jvp
        self.in_shape = self.out_shape = tuple(shape)
        nd = len(shape)
        self.block = [d % nd for d in block]
        self.rest = [d for d in range(nd) if d not in self.block]
        self.moved_shape = tuple(shape[d] for d in self.rest + self.block)
        self.rows = math.prod(shape[d] for d in self.rest)

    def _to_rows(self, values: Tensor) -> Tensor:
        moved = values.permute(0, *[d + 1 for d in self.rest + self.block])
        return moved.reshape(values.shape[0], self.rows, -1)

    def _from_rows(self, rows: Tensor) -> Tensor:
        moved = rows.reshape(rows.shape[0], *self.moved_shape)
        order = self.rest + self.block
        inverse = sorted(range(len(order)), key=lambda i: order[i])
        return moved.permute(0, *[d + 1 for d in inverse])

    def _row_of(self, flat_index: int, like: Tensor) -> tuple[int, int, Tensor]:
        """The row and block position of input element ``flat_index``, and the flat
        indices of that row's elements."""
        numel = math.prod(self.in_shape)
        flat = torch.arange(numel, device=like.device).reshape(1, *self.in_shape)
        rows = self._to_rows(flat)[0]
        row, position = divmod(
            int((rows.reshape(-1) == flat_index).nonzero()), rows.shape[1]
        )
        return row, position, rows[row]

    def _dense(self, sr: Semiring, rows: Tensor, transpose: bool) -> Tensor:
        """Contract ``rows`` (S, rows, n) with the blocks, built in chunks of rows."""
        n = rows.shape[-1]
        parts = []
        for chunk in kernels.row_chunks(self.rows, n * n):
            blocks = self.jacobian(chunk)
            part = sr.matmul(
                rows[:, chunk, None, :], blocks.mT if transpose else blocks
            )
            parts.append(part[..., 0, :])
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def _rows_apply(self, sr: Semiring, rows: Tensor, transpose: bool) -> Tensor:
        """``rows`` (S, rows, n) through the blocks (transposed: forward)."""
        return self._dense(sr, rows, transpose)

    def _apply(self, sr: Semiring, values: Tensor, transpose: bool) -> Tensor:
        rows = self._to_rows(values)
        direct = self.jvp if transpose else self.vjp
        if direct is not None and sr.linear:
            return self._from_rows(direct(rows))
        return self._from_rows(self._rows_apply(sr, rows, transpose))

    def backward(self, sr: Semiring, values: Tensor) -> Tensor:
        return self._apply(sr, values, transpose=False)

    def forward(self, sr: Semiring, values: Tensor) -> Tensor:
        return self._apply(sr, values, transpose=True)


class RankOneRows(Blockwise):
    r"""Row blocks that are diagonal plus rank one off the diagonal (softmax,
    log_softmax): :math:`J_{ji} = d_i` for :math:`j = i`, else :math:`p_j q_i`.

    Backward, input ``i`` collects :math:`\bigoplus_{j \ne i} (v_j \otimes p_j)
    \otimes q_i \oplus v_i \otimes d_i`: one :meth:`Semiring.sum_others` per row,
    ``O(n)`` instead of the ``n × n`` block. Forward swaps ``p`` and ``q``.
    ``diag``, ``p`` and ``q`` are ``(rows, n)``; ``None`` stands for ones.
    """

    def __init__(
        self,
        shape: Shape,
        block: Sequence[int],
        diag: Tensor,
        p: Tensor | None,
        q: Tensor | None,
        vjp: RowMap | None = None,
        jvp: RowMap | None = None,
    ) -> None:
        super().__init__(self._blocks, shape, block, vjp, jvp)
        self.diag, self.p, self.q = diag, p, q

    def _blocks(self, rows: slice) -> Tensor:
        d = self.diag[rows]
        p = self.p[rows] if self.p is not None else torch.ones_like(d)
        q = self.q[rows] if self.q is not None else torch.ones_like(d)
        blocks = p[:, :, None] * q[:, None, :]
        blocks.diagonal(dim1=1, dim2=2).copy_(d)
        return blocks

    def _rows_apply(self, sr: Semiring, rows: Tensor, transpose: bool) -> Tensor:
        if not sr.has_fast_sum_others:
            return self._dense(sr, rows, transpose)
        inner, outer = (self.q, self.p) if transpose else (self.p, self.q)
        others = sr.sum_others(rows if inner is None else sr.scale(rows, inner))
        if outer is not None:
            others = sr.scale(others, outer)
        return sr.plus(others, sr.scale(rows, self.diag))

    def edges_from(self, flat_index: int, like: Tensor) -> tuple[Tensor, Tensor]:
        row, i, index = self._row_of(flat_index, like)
        p = self.p[row] if self.p is not None else torch.ones_like(self.diag[row])
        weights = p * (self.q[row, i] if self.q is not None else 1.0)
        weights[i] = self.diag[row, i]
        return index, weights


class LayerNormRows(Blockwise):
    r"""Layer-norm row blocks :math:`J_{ji} = c_j K_{ji}` with
    :math:`K = I - (1 + s s^\top) / n` (:func:`~captum_semiring.kernels.layer_norm_block`)
    for normalized rows ``s`` and scale ``c`` = gamma · rstd, both ``(rows, n)``.

    ``K`` has no low-rank form under ``|·|`` (a sign change inside each row), so the
    semiring's :meth:`~captum_semiring.Semiring.layer_norm_matmul` builds it inside a fused kernel, never all rows at once;
    ``c`` scales the values before (backward) or after (forward) the contraction.
    """

    def __init__(
        self,
        shape: Shape,
        block: Sequence[int],
        normalized: Tensor,
        scale: Tensor,
        vjp: RowMap | None = None,
        jvp: RowMap | None = None,
    ) -> None:
        super().__init__(self._blocks, shape, block, vjp, jvp)
        self.normalized, self.scale = normalized, scale

    def _blocks(self, rows: slice) -> Tensor:
        blocks = kernels.layer_norm_block(self.normalized[rows])
        return blocks.mul_(self.scale[rows, :, None])

    def _rows_apply(self, sr: Semiring, rows: Tensor, transpose: bool) -> Tensor:
        if transpose:
            return sr.scale(sr.layer_norm_matmul(rows, self.normalized), self.scale)
        return sr.layer_norm_matmul(sr.scale(rows, self.scale), self.normalized)

    def edges_from(self, flat_index: int, like: Tensor) -> tuple[Tensor, Tensor]:
        row, i, index = self._row_of(flat_index, like)
        s = self.normalized[row]
        column = (1.0 + s * s[i]) * (-1.0 / s.shape[-1])
        column[i] += 1.0
        return index, self.scale[row] * column


__all__ = [
    "LocalMap",
    "Elementwise",
    "Reshape",
    "Permute",
    "IndexMap",
    "MatMul",
    "Blockwise",
    "RankOneRows",
    "LayerNormRows",
]
