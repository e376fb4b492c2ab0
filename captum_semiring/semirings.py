r"""Semirings for backpropagation.

A semiring value is a tensor with one leading *semiring axis* of fixed size
(:attr:`Semiring.size`), followed by the shape of the tensor it belongs to. Every
operation below acts on the trailing axes in the same way, so the propagation rules
are written once for all semirings.

Edge weights are real tensors. :meth:`Semiring.scale` multiplies semiring values by
lifted real weights, and :meth:`Semiring.matmul` contracts semiring values with a real
matrix; the defaults are generic, and subclasses override them with fast kernels.

Examples::

    >>> import torch, captum_semiring as cs
    >>> x = torch.tensor([0.5, -2.0], requires_grad=True)
    >>> with cs.record(x) as graph:
    ...     out = (x * 3.0).sum()
    >>> graph.backward(out, cs.MaxProduct("absolute"))[x]
    tensor([3., 3.])
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from . import kernels
from ._shapes import broadcast_shapes

Dims = int | Sequence[int]


def _dims(dim: Dims) -> list[int]:
    return [dim] if isinstance(dim, int) else list(dim)


class Semiring:
    r"""Base class of all semirings.

    A subclass defines :attr:`size`, :meth:`zeros`, :meth:`ones`, :meth:`plus`,
    :meth:`scale`, :meth:`sum` and :meth:`finalize`. Everything else has a generic
    default. Values have shape ``(size, *shape)``; ``dim`` arguments index the value
    tensor itself and are negative or at least 1.

    Examples::

        A min-product semiring: the smallest path product.

        >>> import torch, captum_semiring as cs
        >>> class MinProduct(cs.Semiring):
        ...     size = 1
        ...     def zeros(self, shape, like):
        ...         return like.new_full((1, *shape), float("inf"))
        ...     def ones(self, shape, like):
        ...         return like.new_ones((1, *shape))
        ...     def plus(self, a, b):
        ...         return torch.minimum(a, b)
        ...     def scale(self, x, w):
        ...         return torch.where(torch.isinf(x), x, x * w)
        ...     def sum(self, x, dim):
        ...         return x.amin(dim=dim)
        ...     def finalize(self, x):
        ...         return torch.where(torch.isinf(x[0]), 0.0, x[0])
        >>> x = torch.tensor([1.0])
        >>> with cs.record(x) as graph:
        ...     out = (3 * x - 5 * x + x).sum()  # paths 3, -5 and 1
        >>> graph.backward(out, MinProduct())[x]
        tensor([-5.])
    """

    #: Length of the leading semiring axis.
    size: int = 1
    #: Whether :meth:`path` can recover single paths for this semiring.
    has_paths: bool = False
    #: Whether ⊕ and ⊗ are ordinary + and ×, so that a map may apply autograd's own
    #: vector-Jacobian (and Jacobian-vector) kernels instead of a semiring contraction.
    linear: bool = False

    def zeros(self, shape: Sequence[int], like: Tensor) -> Tensor:
        """The semiring zero (no path), shaped ``(size, *shape)``."""
        raise NotImplementedError

    def ones(self, shape: Sequence[int], like: Tensor) -> Tensor:
        """The semiring one (the empty path), shaped ``(size, *shape)``."""
        raise NotImplementedError

    def plus(self, a: Tensor, b: Tensor) -> Tensor:
        r""":math:`a \oplus b`, elementwise."""
        raise NotImplementedError

    def scale(self, x: Tensor, w: Tensor) -> Tensor:
        r""":math:`x \otimes \mathrm{lift}(w)` for real weights ``w``, broadcasting."""
        raise NotImplementedError

    def sum(self, x: Tensor, dim: Dims) -> Tensor:
        r""":math:`\bigoplus` over ``dim`` (axes of the value tensor)."""
        raise NotImplementedError

    def finalize(self, x: Tensor) -> Tensor:
        """The user-facing number; shape ``x.shape[1:]`` (TopK keeps its axis)."""
        raise NotImplementedError

    def start_state(self, x: Tensor, rank: int) -> int:
        """Which entry of the semiring axis a path search starts from, for one
        element's values ``x`` (size,). Only for semirings with :attr:`has_paths`."""
        return rank

    def best_edge(
        self, weights: Tensor, values: Tensor, state: int
    ) -> tuple[int, int, float] | None:
        """Among edges with real ``weights`` (n,) into nodes with ``values`` (size, n),
        the one that continues the path at ``state``: ``(edge, next state, value)``,
        or None when no path continues."""
        raise NotImplementedError(f"{self.name} does not single out paths")

    def score(self, finalized: Tensor) -> Tensor:
        """A score of finalized values whose maximum is the semiring's best value (the
        largest by default)."""
        return finalized

    def best(self, finalized: Tensor) -> Tensor:
        """The best path's value from finalized values (TopK drops its rank axis)."""
        return finalized

    def magnitude(self, finalized: Tensor) -> Tensor:
        """A non-negative size of finalized values, comparable across elements (the
        finalized value itself by default: entropy, log path count)."""
        return finalized

    @property
    def has_fast_sum_others(self) -> bool:
        """Whether :meth:`sum_others` is overridden with an ``O(n)`` form; otherwise
        a dense contraction is as cheap."""
        return type(self).sum_others is not Semiring.sum_others

    def layer_norm_matmul(self, x: Tensor, normalized: Tensor) -> Tensor:
        r""":math:`\bigoplus_b x_b \otimes K_{ba}` for values ``x`` (size, rows, n) and
        the layer-norm blocks ``K`` of ``normalized`` rows (rows, n), see
        :func:`~captum_semiring.kernels.layer_norm_block`. The default builds the
        blocks in chunks of rows and uses :meth:`matmul`."""
        n = x.shape[-1]
        parts = []
        for chunk in kernels.row_chunks(normalized.shape[0], n * n):
            blocks = kernels.layer_norm_block(normalized[chunk])
            parts.append(self.matmul(x[:, chunk, None, :], blocks)[..., 0, :])
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def lift(self, w: Tensor) -> Tensor:
        """A real weight as a semiring value."""
        return self.scale(self.ones(w.shape, w), w)

    def times(self, a: Tensor, b: Tensor) -> Tensor:
        r""":math:`a \otimes b` of two semiring values; needed for flows."""
        raise NotImplementedError(f"{type(self).__name__} does not define times")

    def matmul(self, x: Tensor, w: Tensor) -> Tensor:
        r"""Semiring product of values ``x`` (size, ..., m, n) with real ``w`` (..., n, p).

        :math:`y_{ik} = \bigoplus_j x_{ij} \otimes \mathrm{lift}(w_{jk})`, batched over
        leading axes. The default broadcasts in chunks of rows.
        """
        n, p = x.shape[-1], w.shape[-1]
        batch = math.prod(broadcast_shapes(x.shape[1:-2], w.shape[:-2]))
        chunks = [
            self.sum(self.scale(x[..., rows, :, None], w[..., None, :, :]), -2)
            for rows in kernels.row_chunks(x.shape[-2], self.size * batch * n * p)
        ]
        return torch.cat(chunks, dim=-2) if len(chunks) > 1 else chunks[0]

    def sum_others(self, x: Tensor) -> Tensor:
        r""":math:`\bigoplus_{j \ne i} x_j` along the last axis, for every ``i``.

        Row-wise maps whose off-diagonal Jacobian has rank one need this, once per
        row. The default spreads each row over an ``n × n`` square with the semiring
        zero on its diagonal, in chunks of rows; semirings override it in ``O(n)``.
        """
        n = x.shape[-1]
        flat = x.reshape(x.shape[0], -1, n)
        eye = torch.eye(n, dtype=torch.bool, device=x.device)
        chunks = []
        for rows in kernels.row_chunks(flat.shape[1], self.size * n * n):
            square = flat[:, rows, None, :].expand(-1, -1, n, -1)
            zero = self.zeros(square.shape[1:], x)
            chunks.append(self.sum(torch.where(eye, zero, square), -1))
        return torch.cat(chunks, dim=1).reshape(x.shape)

    def segment_sum(self, x: Tensor, index: Tensor, size: int) -> Tensor:
        r""":math:`\bigoplus` of the columns of ``x`` (S, n) into ``size`` buckets.

        ``index`` (n,) names each column's bucket. The default pads every bucket to the
        largest one and reduces with :meth:`sum`.
        """
        out = self.zeros((size,), x)
        if index.numel() == 0:
            return out
        order = torch.argsort(index, stable=True)
        sorted_index = index[order]
        buckets, counts = torch.unique_consecutive(sorted_index, return_counts=True)
        starts = torch.cumsum(counts, 0) - counts
        width = int(counts.max())
        slot = torch.arange(width, device=x.device)
        position = starts[:, None] + slot[None, :]
        valid = slot[None, :] < counts[:, None]
        gathered = x[:, order[position.clamp(max=index.numel() - 1)]]
        padding = self.zeros(gathered.shape[1:], x)
        gathered = torch.where(valid, gathered, padding)
        out[:, buckets] = self.sum(gathered, -1)
        return out

    @property
    def name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"{self.name}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(vars(self).items()))))

    def to_dict(self) -> dict[str, Any]:
        """The semiring as JSON: its class, the constructor arguments it keeps as
        attributes of the same name, and its repr. :meth:`from_dict` inverts it.

        Examples::

            >>> import captum_semiring as cs
            >>> cs.TopK(2).to_dict()
            {'class': 'captum_semiring.semirings.TopK', 'params': {'k': 2}, 'repr': 'TopK(2)'}
            >>> cs.Semiring.from_dict(cs.MaxProduct("absolute").to_dict())
            MaxProduct(sign='absolute')
        """
        kept = vars(self)
        params = inspect.signature(type(self).__init__).parameters
        return {
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "params": {name: kept[name] for name in params if name in kept},
            "repr": repr(self),
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Semiring:
        """The semiring :meth:`to_dict` described. Its class must be defined (a
        custom semiring's module imported) before loading; none is imported here."""
        wanted = data["class"]
        classes: dict[type[Semiring], None] = {}
        todo: list[type[Semiring]] = [Semiring]
        while todo:
            cls = todo.pop()
            if cls not in classes:
                classes[cls] = None
                todo += cls.__subclasses__()
        found = [c for c in classes if f"{c.__module__}.{c.__qualname__}" == wanted]
        if not found:  # its module moved: the class name alone, where it is unique
            short = wanted.rpartition(".")[2]
            found = [c for c in classes if c.__qualname__ == short]
        if len(found) != 1:
            raise ValueError(
                f"cannot rebuild the semiring {data.get('repr', wanted)}: "
                f"{len(found) or 'no'} semiring classes named {wanted} are defined; "
                "import the module that defines it first"
            )
        return found[0](**data.get("params", {}))


class SumProduct(Semiring):
    r"""The ordinary :math:`(+, \times)` semiring: the gradient.

    Equals ``torch.autograd.grad`` of the output with respect to the source.

    Examples::

        >>> import torch, captum_semiring as cs
        >>> x = torch.tensor([1.0, 2.0], requires_grad=True)
        >>> with cs.record(x) as graph:
        ...     out = (x**2).sum()
        >>> graph.backward(out, cs.SumProduct())[x]
        tensor([2., 4.])
    """

    linear = True

    def zeros(self, shape: Sequence[int], like: Tensor) -> Tensor:
        return like.new_zeros((1, *shape))

    def ones(self, shape: Sequence[int], like: Tensor) -> Tensor:
        return like.new_ones((1, *shape))

    def plus(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b

    def times(self, a: Tensor, b: Tensor) -> Tensor:
        return a * b

    def scale(self, x: Tensor, w: Tensor) -> Tensor:
        return x * w

    def sum(self, x: Tensor, dim: Dims) -> Tensor:
        return x.sum(dim=_dims(dim))

    def matmul(self, x: Tensor, w: Tensor) -> Tensor:
        return torch.matmul(x, w)

    def sum_others(self, x: Tensor) -> Tensor:
        return x.sum(-1, keepdim=True) - x

    def segment_sum(self, x: Tensor, index: Tensor, size: int) -> Tensor:
        return self.zeros((size,), x).index_add_(1, index, x)

    def finalize(self, x: Tensor) -> Tensor:
        return x[0]

    def magnitude(self, finalized: Tensor) -> Tensor:
        return finalized.abs()


Sign = Literal["positive", "negative", "absolute"]


class MaxProduct(Semiring):
    r"""The max-product semiring: the value of the single best path.

    Each value holds the most positive and the most negative path product, as in
    App. A of Du et al. (2023), so that a negative edge can swap them.
    ``sign`` picks what :meth:`finalize` reports: the most positive product (the
    paper's top gradient path), the most negative one, or the one of largest
    magnitude, with its sign. An element with no path reports 0.

    Args:
        sign: ``"positive"``, ``"negative"`` or ``"absolute"``.

    Examples::

        >>> import torch, captum_semiring as cs
        >>> x = torch.tensor([1.0], requires_grad=True)
        >>> with cs.record(x) as graph:
        ...     out = (3 * x - 5 * x).sum()  # paths +3 and -5
        >>> res = graph.backward(out, cs.MaxProduct("negative"))
        >>> res[x]
        tensor([-5.])
    """

    size = 2
    has_paths = True

    def __init__(self, sign: Sign = "positive") -> None:
        if sign not in ("positive", "negative", "absolute"):
            raise ValueError(
                f"MaxProduct sign must be 'positive', 'negative' or 'absolute', "
                f"got {sign!r}"
            )
        self.sign = sign

    def __repr__(self) -> str:
        return f"MaxProduct(sign={self.sign!r})"

    def zeros(self, shape: Sequence[int], like: Tensor) -> Tensor:
        out = like.new_empty((2, *shape))
        out[0] = -math.inf
        out[1] = math.inf
        return out

    def ones(self, shape: Sequence[int], like: Tensor) -> Tensor:
        return like.new_ones((2, *shape))

    def plus(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.stack((torch.maximum(a[0], b[0]), torch.minimum(a[1], b[1])))

    def times(self, a: Tensor, b: Tensor) -> Tensor:
        no_path = torch.isinf(a[0]) | torch.isinf(b[0])
        a, b = torch.nan_to_num(a, posinf=0.0, neginf=0.0), b.nan_to_num(0, 0, 0)
        cands = torch.stack((a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]))
        out = torch.stack((cands.amax(0), cands.amin(0)))
        return torch.where(no_path, self.zeros(out.shape[1:], out), out)

    def scale(self, x: Tensor, w: Tensor) -> Tensor:
        return torch.stack(kernels.max_extend(x[0], x[1], w))

    def sum(self, x: Tensor, dim: Dims) -> Tensor:
        dims = [d - 1 if d > 0 else d for d in _dims(dim)]
        return torch.stack((x[0].amax(dim=dims), x[1].amin(dim=dims)))

    def matmul(self, x: Tensor, w: Tensor) -> Tensor:
        return torch.stack(kernels.max_times(x[0], x[1], w))

    def layer_norm_matmul(self, x: Tensor, normalized: Tensor) -> Tensor:
        return torch.stack(kernels.layer_norm_times("max", normalized, x[0], x[1]))

    def sum_others(self, x: Tensor) -> Tensor:
        # The best of the others is the row's best, or its runner-up at the best.
        return torch.stack(
            (kernels.best_of_others(x[0], True), kernels.best_of_others(x[1], False))
        )

    def segment_sum(self, x: Tensor, index: Tensor, size: int) -> Tensor:
        out = self.zeros((size,), x)
        expanded = index.expand_as(x[0])
        pos = out[0].scatter_reduce(0, expanded, x[0], "amax", include_self=True)
        neg = out[1].scatter_reduce(0, expanded, x[1], "amin", include_self=True)
        return torch.stack((pos, neg))

    def finalize(self, x: Tensor) -> Tensor:
        pos, neg = x[0], x[1]
        if self.sign == "positive":
            out = pos
        elif self.sign == "negative":
            out = neg
        else:
            out = torch.where(neg.abs() > pos.abs(), neg, pos)
        return torch.where(torch.isinf(out), 0.0, out)

    def score(self, finalized: Tensor) -> Tensor:
        """Largest for ``"positive"``, most negative for ``"negative"``, largest
        magnitude for ``"absolute"``."""
        if self.sign == "negative":
            return -finalized
        if self.sign == "absolute":
            return finalized.abs()
        return finalized

    def magnitude(self, finalized: Tensor) -> Tensor:
        return finalized.abs()

    def start_state(self, x: Tensor, rank: int = 0) -> int:
        """Which half (0 = most positive, 1 = most negative) the result reports."""
        if self.sign == "positive":
            return 0
        if self.sign == "negative":
            return 1
        return int(bool(x[1].abs() > x[0].abs()))

    def best_edge(
        self, weights: Tensor, values: Tensor, state: int
    ) -> tuple[int, int, float] | None:
        extended = self.scale(values, weights)[state]
        if bool(torch.isinf(extended).all()):
            return None  # only the semiring zero: no path continues
        best = int(extended.argmax() if state == 0 else extended.argmin())
        flip = bool(weights[best] < 0)
        return best, state ^ int(flip), float(extended[best])


class _LogMagnitude(Semiring):
    """Shared helpers for semirings that work with log |w| to stay in float range."""

    @staticmethod
    def _log_abs(w: Tensor) -> Tensor:
        return torch.log(w.abs())

    @staticmethod
    def _row_scaled(log_values: Tensor) -> tuple[Tensor, Tensor]:
        """exp(l - max_row(l)) and the row max, with empty rows scaled by 1."""
        top = log_values.amax(dim=-1, keepdim=True)
        top = torch.where(torch.isinf(top), 0.0, top)
        return torch.exp(log_values - top), top

    @staticmethod
    def _others(weight: Tensor, *values: Tensor) -> list[Tensor]:
        r""":math:`\sum_{j \ne i} v_j` along the last axis for each of ``values``.

        ``total - v_i`` cancels where ``i`` carries most of the ``weight`` (>= 0); but
        away from the row's heaviest element the others hold at least half of it, so
        there only the heaviest element's sums are taken directly, without it.
        """
        heaviest = torch.zeros_like(weight, dtype=torch.bool)
        heaviest.scatter_(-1, weight.argmax(-1, keepdim=True), True)
        out = []
        for v in values:
            direct = torch.where(heaviest, 0.0, v).sum(-1, keepdim=True)
            out.append(torch.where(heaviest, direct, v.sum(-1, keepdim=True) - v))
        return out


class LogSum(_LogMagnitude):
    r"""Log of the total absolute path flow, :math:`\log \sum_p |g(p)|`.

    Kept in log space, so it does not overflow or underflow on deep models.
    An element with no flow reports :math:`-\infty`.

    Examples::

        >>> import torch, captum_semiring as cs
        >>> x = torch.tensor([1.0], requires_grad=True)
        >>> with cs.record(x) as graph:
        ...     out = (3 * x - 5 * x).sum()  # |3| + |-5| = 8
        >>> graph.backward(out, "logsum")[x].exp()
        tensor([8.])
    """

    def zeros(self, shape: Sequence[int], like: Tensor) -> Tensor:
        return like.new_full((1, *shape), -math.inf)

    def ones(self, shape: Sequence[int], like: Tensor) -> Tensor:
        return like.new_zeros((1, *shape))

    def plus(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.logaddexp(a, b)

    def times(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b

    def _edge_log(self, w: Tensor) -> Tensor:
        return self._log_abs(w)

    def scale(self, x: Tensor, w: Tensor) -> Tensor:
        return x + self._edge_log(w)

    def sum(self, x: Tensor, dim: Dims) -> Tensor:
        return torch.logsumexp(x, dim=_dims(dim))

    def _edge_magnitude(self, w: Tensor) -> Tensor:
        return w.abs()

    def matmul(self, x: Tensor, w: Tensor) -> Tensor:
        scaled, top = self._row_scaled(x)
        return top + torch.log(torch.matmul(scaled, self._edge_magnitude(w)))

    def sum_others(self, x: Tensor) -> Tensor:
        scaled, top = self._row_scaled(x)
        return top + torch.log(self._others(scaled, scaled)[0])

    def layer_norm_matmul(self, x: Tensor, normalized: Tensor) -> Tensor:
        scaled, top = self._row_scaled(x[0])
        (total,) = kernels.layer_norm_times("sum", normalized, scaled)
        return (top + torch.log(total))[None]

    def segment_sum(self, x: Tensor, index: Tensor, size: int) -> Tensor:
        top = torch.full((x.shape[0], size), -math.inf, dtype=x.dtype, device=x.device)
        top = top.scatter_reduce(1, index.expand_as(x), x, "amax", include_self=True)
        top = torch.where(torch.isinf(top), 0.0, top)
        total = x.new_zeros((x.shape[0], size)).index_add_(
            1, index, torch.exp(x - top[:, index])
        )
        return top + torch.log(total)

    def finalize(self, x: Tensor) -> Tensor:
        return x[0]

    def magnitude(self, finalized: Tensor) -> Tensor:
        """Z itself, :math:`\\exp \\log Z`."""
        return finalized.exp()


class PathCount(LogSum):
    r"""Log of the number of paths.

    Every edge counts once, whatever its weight, so this is :class:`LogSum` with all
    edge weights set to 1.

    Examples::

        >>> import torch, captum_semiring as cs
        >>> x = torch.tensor([1.0, 2.0], requires_grad=True)
        >>> with cs.record(x) as graph:
        ...     out = (x * x.sum()).sum()  # x_i reaches out directly and via the sum
        >>> graph.backward(out, "count")[x].exp()
        tensor([3., 3.])
    """

    def _edge_log(self, w: Tensor) -> Tensor:
        return torch.zeros_like(w)

    def _edge_magnitude(self, w: Tensor) -> Tensor:
        return torch.ones_like(w)

    def layer_norm_matmul(self, x: Tensor, normalized: Tensor) -> Tensor:
        # Every pair in a row is one edge, whatever its weight.
        return self.sum(x, -1)[..., None].expand(x.shape)


class Entropy(_LogMagnitude):
    r"""Path entropy (eq. 6 of Du et al., 2023) in nats.

    Paths are weighted by :math:`|g(p)| / Z`. The state per node is
    :math:`(\log Z, E)` with :math:`E = \frac{1}{Z}\sum_p |g(p)| \log |g(p)|`, the
    expectation semiring of Eisner (2002) kept in log space. The entropy is
    :math:`\log Z - E`; an element with no flow (:math:`Z = 0`) has entropy 0.

    Examples::

        >>> import torch, captum_semiring as cs
        >>> x = torch.tensor([1.0], requires_grad=True)
        >>> with cs.record(x) as graph:
        ...     out = (2 * x + 2 * x).sum()  # two equal paths: entropy log 2
        >>> graph.backward(out, "entropy")[x]
        tensor([0.6931])
    """

    size = 2

    def zeros(self, shape: Sequence[int], like: Tensor) -> Tensor:
        out = like.new_zeros((2, *shape))
        out[0] = -math.inf
        return out

    def ones(self, shape: Sequence[int], like: Tensor) -> Tensor:
        return like.new_zeros((2, *shape))

    @staticmethod
    def _pack(log_z: Tensor, expectation: Tensor) -> Tensor:
        expectation = torch.where(torch.isinf(log_z), 0.0, expectation)
        return torch.stack((log_z, expectation))

    def plus(self, a: Tensor, b: Tensor) -> Tensor:
        log_z = torch.logaddexp(a[0], b[0])
        safe = torch.where(torch.isinf(log_z), 0.0, log_z)
        expectation = torch.exp(a[0] - safe) * a[1] + torch.exp(b[0] - safe) * b[1]
        return self._pack(log_z, expectation)

    def times(self, a: Tensor, b: Tensor) -> Tensor:
        return self._pack(a[0] + b[0], a[1] + b[1])

    def scale(self, x: Tensor, w: Tensor) -> Tensor:
        log_w = self._log_abs(w)
        return self._pack(x[0] + log_w, x[1] + log_w)

    def sum(self, x: Tensor, dim: Dims) -> Tensor:
        dims = [d - 1 if d > 0 else d for d in _dims(dim)]
        log_z = torch.logsumexp(x[0], dim=dims)
        safe = torch.where(torch.isinf(log_z), 0.0, log_z)
        for d in sorted(d % x[0].dim() for d in dims):
            safe = safe.unsqueeze(d)
        weights = torch.exp(x[0] - safe)
        return self._pack(log_z, (weights * x[1]).sum(dim=dims))

    def matmul(self, x: Tensor, w: Tensor) -> Tensor:
        scaled, top = self._row_scaled(x[0])
        magnitude, magnitude_log = kernels.magnitude_log(w)
        # Both products with |w| in one BLAS call (a 2-D w folds the stack into rows).
        total, weighted = torch.matmul(torch.stack((scaled, scaled * x[1])), magnitude)
        weighted = weighted + torch.matmul(scaled, magnitude_log)
        expectation = torch.where(total > 0, weighted / total, 0.0)
        return self._pack(top + torch.log(total), expectation)

    def sum_others(self, x: Tensor) -> Tensor:
        scaled, top = self._row_scaled(x[0])
        total, weighted = self._others(scaled, scaled, scaled * x[1])
        expectation = torch.where(total > 0, weighted / total, 0.0)
        return self._pack(top + torch.log(total), expectation)

    def segment_sum(self, x: Tensor, index: Tensor, size: int) -> Tensor:
        # As LogSum's, in O(n): the buckets' max log Z by a scatter, then sums.
        log_z, expectation = x[0], x[1]
        top = log_z.new_full((size,), -math.inf)
        top = top.scatter_reduce(0, index, log_z, "amax", include_self=True)
        top = torch.where(torch.isinf(top), 0.0, top)
        weight = torch.exp(log_z - top[index])
        total = log_z.new_zeros(size).index_add_(0, index, weight)
        weighted = log_z.new_zeros(size).index_add_(0, index, weight * expectation)
        expectation = torch.where(total > 0, weighted / total, 0.0)
        return self._pack(top + torch.log(total), expectation)

    def layer_norm_matmul(self, x: Tensor, normalized: Tensor) -> Tensor:
        scaled, top = self._row_scaled(x[0])
        total, weighted = kernels.layer_norm_times(
            "entropy", normalized, scaled, scaled * x[1]
        )
        expectation = torch.where(total > 0, weighted / total, 0.0)
        return self._pack(top + torch.log(total), expectation)

    def finalize(self, x: Tensor) -> Tensor:
        log_z, expectation = x[0], x[1]
        # An entropy is >= 0; where one path dominates, round-off can dip below.
        entropy = (log_z - expectation).clamp_min(0.0)
        return torch.where(torch.isinf(log_z), 0.0, entropy)


class TopK(Semiring):
    r"""The ``k`` paths of largest magnitude :math:`|g(p)|`, with their signs.

    The finalized result has shape ``(k, *x.shape)``, best first; paths of equal
    magnitude put the positive one first, and missing ranks are 0.

    A negative edge swaps signs, so a single list of k values cannot keep that tie
    order. As :class:`MaxProduct` does with its pair, each node keeps the k largest
    non-negative and the k most negative path values (a semiring axis of ``2k``);
    :meth:`finalize` merges them. Internally NaN marks "no path".

    Args:
        k: number of paths to keep.

    Examples::

        >>> import torch, captum_semiring as cs
        >>> x = torch.tensor([1.0], requires_grad=True)
        >>> with cs.record(x) as graph:
        ...     out = (3 * x - 5 * x + 0.5 * x).sum()
        >>> graph.backward(out, cs.TopK(2))[x]
        tensor([[-5.],
                [ 3.]])
    """

    has_paths = True

    def __init__(self, k: int) -> None:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"TopK needs an integer k >= 1, got {k!r}")
        self.k = k
        self.size = 2 * k

    def __repr__(self) -> str:
        return f"TopK({self.k})"

    def zeros(self, shape: Sequence[int], like: Tensor) -> Tensor:
        return like.new_full((self.size, *shape), math.nan)

    def ones(self, shape: Sequence[int], like: Tensor) -> Tensor:
        out = self.zeros(shape, like)
        out[0] = 1.0
        return out

    @staticmethod
    def _order(values: Tensor, descending: bool) -> Tensor:
        """Indices sorting ``values`` along axis 0, NaN (no path) last."""
        fill = -math.inf if descending else math.inf
        keys = torch.nan_to_num(values, nan=fill)
        return torch.sort(keys, dim=0, descending=descending, stable=True).indices

    def _keep(self, candidates: Tensor, descending: bool) -> Tensor:
        return kernels.keep_best(candidates, self.k, descending)

    def matmul(self, x: Tensor, w: Tensor) -> Tensor:
        return kernels.top_k_times(x, w, self.k)

    def layer_norm_matmul(self, x: Tensor, normalized: Tensor) -> Tensor:
        out = kernels.layer_norm_top_k(x, normalized, self.k)
        return super().layer_norm_matmul(x, normalized) if out is None else out

    def sum_others(self, x: Tensor) -> Tensor:
        pos, neg = self._split(x)
        return torch.cat(
            (
                kernels.best_k_of_others(pos, self.k, largest=True),
                kernels.best_k_of_others(neg, self.k, largest=False),
            )
        )

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x[: self.k], x[self.k :]

    def plus(self, a: Tensor, b: Tensor) -> Tensor:
        (a_pos, a_neg), (b_pos, b_neg) = self._split(a), self._split(b)
        pos = kernels.merge_best(a_pos, b_pos, self.k, largest=True)
        neg = kernels.merge_best(a_neg, b_neg, self.k, largest=False)
        return torch.cat((pos, neg))

    def times(self, a: Tensor, b: Tensor) -> Tensor:
        pairs = (a[:, None] * b[None, :]).flatten(0, 1)
        nonneg = pairs >= 0
        pos = self._keep(torch.where(nonneg, pairs, math.nan), descending=True)
        neg = self._keep(torch.where(nonneg, math.nan, pairs), descending=False)
        return torch.cat((pos, neg))

    def scale(self, x: Tensor, w: Tensor) -> Tensor:
        pos, neg = self._split(x)
        nonneg = w >= 0
        return torch.cat(
            (
                torch.where(nonneg, pos * w, neg * w),
                torch.where(nonneg, neg * w, pos * w),
            )
        )

    def sum(self, x: Tensor, dim: Dims) -> Tensor:
        dims = sorted(d % x.dim() for d in _dims(dim))
        moved = x.movedim(dims, list(range(1, len(dims) + 1)))
        # Each reduced element holds a sorted list: (2k, n, ...) with n their count.
        reduced = math.prod(moved.shape[1 : len(dims) + 1])
        lists = moved.reshape(self.size, reduced, *moved.shape[len(dims) + 1 :])
        pos, neg = self._split(lists)
        return torch.cat(
            (
                kernels.best_of_lists(pos, self.k, largest=True),
                kernels.best_of_lists(neg, self.k, largest=False),
            )
        )

    def ranked(self, x: Tensor) -> Tensor:
        """Indices into the ``2k`` axis in final order: larger magnitude first, the
        positive one first on ties, no path last."""
        by_sign = self._order(x, descending=True)
        magnitude = torch.where(torch.isnan(x), -1.0, x.abs()).gather(0, by_sign)
        by_magnitude = torch.sort(
            magnitude, dim=0, descending=True, stable=True
        ).indices
        return by_sign.gather(0, by_magnitude)

    def finalize(self, x: Tensor) -> Tensor:
        best = x.gather(0, self.ranked(x)[: self.k])
        return torch.nan_to_num(best, nan=0.0)

    def score(self, finalized: Tensor) -> Tensor:
        """Largest magnitude (apply to one rank, e.g. :meth:`best`'s result)."""
        return finalized.abs()

    def best(self, finalized: Tensor) -> Tensor:
        return finalized[0]

    def magnitude(self, finalized: Tensor) -> Tensor:
        """|value| of the best path; apply after :meth:`best`."""
        return finalized.abs()

    def start_state(self, x: Tensor, rank: int) -> int:
        """The position in the ``2k`` axis of the ``rank``-th best path."""
        if not 0 <= rank < self.k:
            raise IndexError(f"rank {rank} is out of range for {self!r}")
        return int(self.ranked(x[:, None])[rank, 0])

    def best_edge(
        self, weights: Tensor, values: Tensor, state: int
    ) -> tuple[int, int, float] | None:
        positive, rank = state < self.k, state % self.k
        extended = self.scale(values, weights)
        half = extended[: self.k] if positive else extended[self.k :]
        flat = half.T.reshape(-1)  # (edge, rank) pairs
        order = self._order(flat, descending=positive)
        pick = int(order[rank]) if rank < flat.numel() else -1
        if pick < 0 or bool(torch.isnan(flat[pick])):
            return None
        edge, next_rank = divmod(pick, self.k)
        same_list = bool(weights[edge] >= 0) == positive
        next_state = next_rank if same_list else self.k + next_rank
        return edge, next_state, float(flat[pick])


_BY_NAME = {
    "sum": SumProduct,
    "sumproduct": SumProduct,
    "grad": SumProduct,
    "max": MaxProduct,
    "maxproduct": MaxProduct,
    "entropy": Entropy,
    "logsum": LogSum,
    "count": PathCount,
    "pathcount": PathCount,
}


def get_semiring(semiring: Semiring | str) -> Semiring:
    """A semiring from an instance or a name ("sum", "max", "entropy", "logsum",
    "count", or "topk5" for ``TopK(5)``)."""
    if isinstance(semiring, Semiring):
        return semiring
    if isinstance(semiring, type) and issubclass(semiring, Semiring):
        return semiring()
    if isinstance(semiring, str):
        key = semiring.lower().replace("-", "").replace("_", "")
        if key in _BY_NAME:
            return _BY_NAME[key]()
        if key.startswith("topk") and key[4:].isdigit():
            return TopK(int(key[4:]))
    names = ", ".join(
        repr(n) for n in ("sum", "max", "entropy", "logsum", "count", "topk5")
    )
    raise ValueError(
        f"unknown semiring {semiring!r}; use a Semiring instance or one of {names}"
    )
