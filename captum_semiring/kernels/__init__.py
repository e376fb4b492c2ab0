"""Fast semiring contractions.

Max-times and top-k-times have no BLAS kernel, and broadcasting them eagerly
materializes an ``m × n × p`` tensor. On CPU they run as native kernels
(:mod:`.native`: C++ built once and cached, no compile stall). Elsewhere, or with
``CAPTUM_SEMIRING_NATIVE=0``, ``torch.compile`` fuses the products into the
reduction, with dynamic shapes so a new sentence length does not recompile. Without
either (or with ``CAPTUM_SEMIRING_COMPILE=0`` too) the same expression runs eagerly
in row chunks under a memory budget. Small problems skip the compiler, where
compiling costs more than it saves.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .._shapes import broadcast_shapes
from . import native

#: Elements of the broadcast product per eager chunk.
CHUNK_ELEMENTS = 1 << 24
#: Problems smaller than this (m·n·p) skip the compiler (measured: at 2.4M, a
#: small CNN's convolutions, the compiled kernel is 3.5x faster than eager).
COMPILE_THRESHOLD = 1 << 16

_compiled: dict[str, Callable[..., Any] | None] = {}


def compile_enabled() -> bool:
    """Whether compiled kernels may be used (``CAPTUM_SEMIRING_COMPILE``, default on)."""
    return os.environ.get("CAPTUM_SEMIRING_COMPILE", "1") not in ("0", "false", "no")


def max_extend(pos: Tensor, neg: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """The (most positive, most negative) pair ``(pos, neg)`` times real weights
    ``w``, broadcasting: a negative weight swaps the two. ``pos = -inf`` is no path and
    stays so (the 0 · inf in the branch ``where`` drops is harmless)."""
    nonneg = w >= 0
    dead = torch.isinf(pos)
    hi = torch.where(dead, -math.inf, torch.where(nonneg, w * pos, w * neg))
    lo = torch.where(dead, math.inf, torch.where(nonneg, w * neg, w * pos))
    return hi, lo


def _max_times(pos: Tensor, neg: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Most positive and most negative of ``x_ij · w_jk`` over ``j``."""
    hi, lo = max_extend(pos.unsqueeze(-1), neg.unsqueeze(-1), w.unsqueeze(-3))
    return hi.amax(-2), lo.amin(-2)


def _compiled_kernel(name: str, fn: Callable[..., Any]) -> Callable[..., Any] | None:
    if name not in _compiled:
        try:
            _compiled[name] = torch.compile(fn, dynamic=True)
        except Exception as err:  # pragma: no cover - depends on the toolchain
            warnings.warn(
                f"torch.compile unavailable ({err}); using eager kernels", stacklevel=3
            )
            _compiled[name] = None
    return _compiled[name]


def _plain(t: Any) -> Any:
    """A tensor as contiguous, at storage offset 0 and not a view (dynamo guards on
    all three, a view's base sizes included)."""
    if not isinstance(t, Tensor) or (
        t._base is None and t.is_contiguous() and t.storage_offset() == 0
    ):
        return t
    return t.clone(memory_format=torch.contiguous_format)


def _call_compiled(kernel: Callable[..., Any], *args: Any) -> Any:
    """Call a compiled kernel with plain operands, under a higher recompile limit.

    Dynamo compiles anew for each stride pattern, storage offset 0 or not, and size
    0 or 1; after its default eight versions it would run the kernel eagerly, and
    silently slower. Plain operands keep the versions few; the limit covers the
    rest (one per rank, dtype and such size pattern)."""
    with torch._dynamo.config.patch(recompile_limit=64):
        return kernel(*(_plain(a) for a in args))


def row_chunks(m: int, row_elements: int) -> list[slice]:
    """Slices of ``m`` rows, each with at most :data:`CHUNK_ELEMENTS` elements of
    broadcast work when one row costs ``row_elements``."""
    rows = max(1, CHUNK_ELEMENTS // max(1, row_elements))
    return [slice(i, i + rows) for i in range(0, m, rows)]


def _chunked(
    fn: Callable[..., tuple[Tensor, Tensor]], pos: Tensor, neg: Tensor, w: Tensor
) -> tuple[Tensor, Tensor]:
    n, p = pos.shape[-1], w.shape[-1]
    batch = math.prod(broadcast_shapes(pos.shape[:-2], w.shape[:-2]))
    chunks = row_chunks(pos.shape[-2], batch * n * p)
    if len(chunks) == 1:
        return fn(pos, neg, w)
    parts = [fn(pos[..., rows, :], neg[..., rows, :], w) for rows in chunks]
    return torch.cat([a for a, _ in parts], -2), torch.cat([b for _, b in parts], -2)


def _compiles(size: int) -> bool:
    """Whether a problem of ``size`` (m·n·p) runs as a compiled kernel."""
    return size >= COMPILE_THRESHOLD and compile_enabled()


def _batched(t: Tensor, batch: Sequence[int], *tail: int) -> Tensor:
    """``t`` broadcast to ``(*batch, *tail)`` with the batch flattened into one
    leading axis: compiled kernels see one rank, so compile one version."""
    return t.expand(*batch, *tail).reshape(-1, *tail)


def _try_compiled(
    name: str, fn: Callable[..., Any], size: int, *args: Any
) -> Any | None:
    """``fn(*args)`` compiled, or None where problems of ``size`` run eagerly (small,
    compiling switched off, or no working compiler)."""
    if not _compiles(size):
        return None
    kernel = _compiled_kernel(name, fn)
    if kernel is None:
        return None
    try:
        return _call_compiled(kernel, *args)
    except Exception as err:  # pragma: no cover - depends on the toolchain
        warnings.warn(
            f"compiled kernel failed ({err}); using eager kernels", stacklevel=3
        )
        _compiled[name] = None
        return None


def _native_fits(
    weights: Tensor, *values: Tensor, nan_is_no_path: bool = False
) -> bool:
    """Whether the native kernels take these operands: on CPU in float32/64, with
    finite weights and (unless NaN marks "no path", as in TopK) no NaN values. Their
    loops would drop a NaN that torch's reductions keep; an infinite value is the
    max-product zero."""
    return (
        native.available(weights, *values)
        and not native.any_bad(weights)
        and (
            nan_is_no_path or not any(native.any_bad(v, nan_only=True) for v in values)
        )
    )


def magnitude_log(w: Tensor) -> tuple[Tensor, Tensor]:
    """``|w|`` and ``|w| log |w|`` (0 where ``w`` is 0): the entropy semiring's edge
    terms."""
    if native.available(w):
        return native.magnitude_log(w)
    magnitude = w.abs()
    return magnitude, -torch.special.entr(magnitude)


def max_times(pos: Tensor, neg: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """The max-product contraction of a (pos, neg) pair with a real matrix ``w``."""
    (m, n), p = pos.shape[-2:], w.shape[-1]
    batch = broadcast_shapes(pos.shape[:-2], w.shape[:-2])
    size = m * n * p * math.prod(batch)
    use_native = native.available(w, pos, neg)  # the kernel checks the values
    if use_native or _compiles(size):
        # One layout for every call: 3-d operands, a 2-d w as (1, n, p) with the
        # batch folded into the rows.
        if w.dim() == 2:
            args = (pos.reshape(1, -1, n), neg.reshape(1, -1, n), w.unsqueeze(0))
        else:
            args = (
                _batched(pos, batch, m, n),
                _batched(neg, batch, m, n),
                _batched(w, batch, n, p),
            )
        pos3, neg3, w3 = args  # a transposed w is read as it is stored
        out = (
            native.max_times(pos3.contiguous(), neg3.contiguous(), w3)
            if use_native
            else None
        )
        if out is None and _compiles(size):  # None from native: non-finite operands
            out = _try_compiled("max_times", _max_times, size, *args)
        if out is not None:
            return out[0].reshape(*batch, m, p), out[1].reshape(*batch, m, p)
    return _chunked(_max_times, pos, neg, w)


# ----- layer norm: per-row Jacobians built inside the contraction ------------------
def layer_norm_block(s: Tensor, index: Tensor | None = None) -> Tensor:
    r"""The layer-norm Jacobian of normalized rows ``s`` (..., n) without its scale:
    :math:`K_{ba} = \delta_{ab} - (1 + s_a s_b) / n`, symmetric, (..., n, n).

    ``index`` is ``arange(n)`` in the dtype of ``s``: a float comparison finds the
    diagonal much faster than an integer one inside compiled kernels."""
    n = s.shape[-1]
    if index is None:
        index = torch.arange(n, dtype=s.dtype, device=s.device)
    off = (1.0 + s.unsqueeze(-1) * s.unsqueeze(-2)) * (-1.0 / n)
    return torch.where(index.unsqueeze(-1) == index, off + 1.0, off)


# The kernels reduce over the last axis (K is symmetric), which vectorizes best.
def _ln_max(
    pos: Tensor, neg: Tensor, dead: Tensor, s: Tensor, index: Tensor
) -> tuple[Tensor, Tensor]:
    """Max-times with the blocks. ``pos, neg`` hold 0 where ``dead`` (-inf, else 0)
    marks no path: for a path, ``pos >= neg``, so the extension by ``K`` is just
    ``max(K pos, K neg)``, and adding ``dead`` drops the rest. That is far cheaper
    than :func:`max_extend`'s sign test and selects."""
    k = layer_norm_block(s, index)
    a, b, dead = pos.unsqueeze(-2) * k, neg.unsqueeze(-2) * k, dead.unsqueeze(-2)
    return (torch.maximum(a, b) + dead).amax(-1), (torch.minimum(a, b) - dead).amin(-1)


def _ln_sum(x: Tensor, s: Tensor, index: Tensor) -> tuple[Tensor]:
    return ((x.unsqueeze(-2) * layer_norm_block(s, index).abs()).sum(-1),)


def _ln_entropy(
    x: Tensor, xe: Tensor, s: Tensor, index: Tensor
) -> tuple[Tensor, Tensor]:
    magnitude = layer_norm_block(s, index).abs()
    magnitude_log = torch.where(magnitude > 0, magnitude * torch.log(magnitude), 0.0)
    x, xe = x.unsqueeze(-2), xe.unsqueeze(-2)
    total = (x * magnitude).sum(-1)
    weighted = (xe * magnitude + x * magnitude_log).sum(-1)
    return total, weighted


_LN_KERNELS: dict[str, Callable[..., tuple[Tensor, ...]]] = {
    "max": _ln_max,
    "sum": _ln_sum,
    "entropy": _ln_entropy,
}


def layer_norm_times(kind: str, s: Tensor, *values: Tensor) -> tuple[Tensor, ...]:
    r"""Contract rows of ``values`` (rows, n) with their layer-norm blocks
    :func:`layer_norm_block` of ``s`` (rows, n), never holding all blocks at once.

    ``kind`` is ``"max"`` (values ``pos, neg``: max-times, as :func:`max_times`),
    ``"sum"`` (values ``x >= 0``: :math:`\sum_b x_b |K_{ba}|`) or ``"entropy"``
    (values ``x >= 0, e``: that sum, and :math:`\sum_b |K_{ba}| (x_b e_b + x_b \log
    |K_{ba}|)`). Compiled, the blocks live only in registers; eagerly, in row chunks.
    """
    fn = _LN_KERNELS[kind]
    rows, n = s.shape
    if _native_fits(s, *values):
        return native.layer_norm_times(kind, s, *values)
    if kind == "max":
        pos, neg = values
        dead = torch.isinf(pos)
        values = (
            torch.where(dead, 0.0, pos),
            torch.where(dead, 0.0, neg),
            torch.where(dead, -math.inf, 0.0).to(pos.dtype),
        )
    index = torch.arange(n, dtype=s.dtype, device=s.device)
    out = _try_compiled(f"layer_norm_{kind}", fn, rows * n * n, *values, s, index)
    if out is not None:
        return tuple(out)
    parts = [
        fn(*(v[r] for v in values), s[r], index) for r in row_chunks(rows, 4 * n * n)
    ]
    return tuple(torch.cat(p) for p in zip(*parts, strict=True))


def layer_norm_top_k(values: Tensor, s: Tensor, k: int) -> Tensor | None:
    """TopK's contraction of ``values`` (2k, rows, n) with the layer-norm blocks of
    ``s`` (rows, n), as a native kernel; None where that cannot run (the caller
    then builds the blocks)."""
    if k <= native.MAX_K and _native_fits(s, values, nan_is_no_path=True):
        return native.layer_norm_top_k(values, s, k)
    return None


def keep_best(candidates: Tensor, k: int, largest: bool) -> Tensor:
    """The ``k`` largest (or most negative) values along axis 0, best first; NaN marks
    "no path" and pads when there are fewer than ``k``."""
    if candidates.shape[0] < k:
        pad = candidates.new_full(
            (k - candidates.shape[0], *candidates.shape[1:]), math.nan
        )
        candidates = torch.cat((candidates, pad))
    keys = torch.nan_to_num(candidates, nan=-math.inf if largest else math.inf)
    # Tied values are equal, so topk's unstable choice among them is harmless.
    best = torch.topk(keys, k, dim=0, largest=largest, sorted=True).values
    return torch.where(torch.isinf(best), math.nan, best)


def merge_best(a: Tensor, b: Tensor, k: int, largest: bool) -> Tensor:
    """:func:`keep_best` of two sorted path lists ``a, b`` (k, ...) stacked, in one
    native pass where it can run (TopK's ⊕)."""
    if (
        a.shape == b.shape
        and a.shape[0] == k <= native.MAX_K
        and native.available(a, b)
    ):
        return native.merge_best(a, b, largest)
    return keep_best(torch.cat((a, b)), k, largest)


# Below this many lists per pass, a merge pass costs more than it saves.
TREE_MERGE_MIN = 1024


def best_of_lists(lists: Tensor, k: int, largest: bool) -> Tensor:
    """:func:`keep_best` of ``n`` sorted path lists ``lists`` (k, n, ...): a tree of
    native merges, each pass halving ``n``, where they can run (linear in ``n``, where
    a top-k over all ``k n`` candidates is several times slower); else one top-k."""
    if (
        lists.shape[1] < 2
        or lists[0, 0].numel() < TREE_MERGE_MIN
        or lists.shape[0] != k
        or k > native.MAX_K
        or not native.available(lists)
    ):
        return keep_best(lists.flatten(0, 1), k, largest)
    while lists.shape[1] > 1:
        pairs = lists.shape[1] // 2
        merged = native.merge_best(
            lists[:, : 2 * pairs : 2], lists[:, 1 : 2 * pairs : 2], largest
        )
        lists = torch.cat((merged, lists[:, 2 * pairs :]), dim=1)
    return lists[:, 0]


def best_of_others(x: Tensor, largest: bool) -> Tensor:
    """For each ``i`` along the last axis, the largest (or smallest) of the others:
    the row's best, or its runner-up at the best. An empty set gives -inf (inf)."""
    n = x.shape[-1]
    if n < 2:
        return torch.full_like(x, -math.inf if largest else math.inf)
    top = torch.topk(x, 2, dim=-1, largest=largest)
    at_best = torch.zeros_like(x, dtype=torch.bool).scatter_(
        -1, top.indices[..., :1], True
    )
    return torch.where(at_best, top.values[..., 1:], top.values[..., :1])


def best_k_of_others(lists: Tensor, k: int, largest: bool) -> Tensor:
    """For path lists ``(k, ..., n)`` (NaN = no path), each ``i``'s best ``k`` among
    the other ``n - 1`` lists: the row's best ``2k`` candidates hold them, since at
    most ``k`` of those are ``i``'s own."""
    n = lists.shape[-1]
    flat = lists.movedim(0, -1).reshape(*lists.shape[1:-1], n * k)
    keys = torch.nan_to_num(flat, nan=-math.inf if largest else math.inf)
    best = torch.topk(keys, min(2 * k, n * k), dim=-1, largest=largest, sorted=True)
    owner = torch.div(best.indices, k, rounding_mode="floor")
    own = owner.unsqueeze(-2) == torch.arange(n, device=lists.device)[:, None]
    values = torch.where(torch.isinf(best.values), math.nan, best.values)
    candidates = torch.where(own, math.nan, values.unsqueeze(-2))
    return keep_best(candidates.movedim(-1, 0), k, largest)


def _extend(a: Tensor, b: Tensor, w: Tensor) -> Tensor:
    """``w · a`` where ``w >= 0``, else ``w · b`` (a best path extended by an edge)."""
    return torch.where(w >= 0, w * a, w * b)


def _head_keys_ranked(a: Tensor, b: Tensor, wt: Tensor, sign: Tensor) -> Tensor:
    """Head keys of every output and input, laid out (B, m, p, n), times ``sign``
    (-1 ranks the most negative first); no path (NaN) ranks last."""
    keys = sign * _extend(a.unsqueeze(-2), b.unsqueeze(-2), wt.unsqueeze(-3))
    return torch.where(torch.isnan(keys), -math.inf, keys)


def _best_inputs(a: Tensor, b: Tensor, wt: Tensor, k: int, largest: bool) -> Tensor:
    """For each output, the ``k`` inputs ``j`` whose best path extends best."""
    (m, n), p = a.shape[-2:], wt.shape[-2]
    batch = broadcast_shapes(a.shape[:-2], wt.shape[:-2])
    size = m * n * p * math.prod(batch)
    # Few versions of the compiled kernel: 3-d operands, the direction a tensor.
    a, b = _batched(a, batch, m, n), _batched(b, batch, m, n)
    wt = _batched(wt, batch, p, n)
    sign = torch.tensor(1.0 if largest else -1.0, dtype=a.dtype, device=a.device)
    parts = []
    for rows in row_chunks(m, size // max(1, m)):
        args = (a[:, rows], b[:, rows], wt, sign)
        keys = _try_compiled("head_keys", _head_keys_ranked, size, *args)
        if keys is None:
            keys = _head_keys_ranked(*args)
        # Sorting these keys is most of a TopK sweep: torch.topk costs about 35 ms
        # for 49k rows of 384 on 2 cores, several times the fused key kernel.
        parts.append(torch.topk(keys, min(k, n), dim=-1).indices)
    best = torch.cat(parts, 1) if len(parts) > 1 else parts[0]
    return best.reshape(*batch, m, p, best.shape[-1])


def _merge(
    same: Tensor, other: Tensor, wt: Tensor, chosen: Tensor, k: int, largest: bool
) -> Tensor:
    """Top ``k`` over the chosen inputs' whole path lists (``k × k`` candidates)."""
    shape = (same.shape[0], *chosen.shape[:-1], same.shape[-1])
    index = chosen.expand(same.shape[0], *chosen.shape)
    same_g = same.unsqueeze(-2).expand(shape).gather(-1, index)
    other_g = other.unsqueeze(-2).expand(shape).gather(-1, index)
    w_shape = (*chosen.shape[:-1], wt.shape[-1])
    w_g = wt.unsqueeze(-3).expand(w_shape).gather(-1, chosen)
    candidates = _extend(same_g, other_g, w_g)
    return keep_best(candidates.movedim(-1, 1).flatten(0, 1), k, largest)


def top_k_times(values: Tensor, w: Tensor, k: int) -> Tensor:
    """The TopK contraction of values ``(2k, ..., m, n)`` (k best non-negative, then k
    most negative path values) with a real matrix ``w`` (..., n, p).

    Each input's list is sorted, so only the ``k`` inputs with the best first entries
    can contribute: find those, then merge their lists.
    """
    (m, n), p = values.shape[-2:], w.shape[-1]
    if k <= native.MAX_K and native.available(w, values):  # it checks the weights
        batch = broadcast_shapes(values.shape[1:-2], w.shape[:-2])
        if w.dim() == 2:  # the batch folded into the rows
            flat, w3 = values.reshape(2 * k, 1, -1, n), w.unsqueeze(0)
        else:
            flat = values.expand(2 * k, *batch, m, n).reshape(2 * k, -1, m, n)
            w3 = _batched(w, batch, n, p)
        # (native.top_k_times lays the values out itself)
        out = native.top_k_times(flat, w3.contiguous(), k)
        if out is not None:
            return out.reshape(2 * k, *batch, m, p)
    pos, neg = values[:k], values[k:]
    wt = w.mT
    hi = _best_inputs(pos[0], neg[0], wt, k, largest=True)
    lo = _best_inputs(neg[0], pos[0], wt, k, largest=False)
    return torch.cat(
        (_merge(pos, neg, wt, hi, k, True), _merge(neg, pos, wt, lo, k, False))
    )
