"""Fast semiring contractions.

Max-times has no BLAS kernel, and broadcasting it eagerly materializes an
``m × n × p`` tensor. ``torch.compile`` fuses the products into the reduction, with
dynamic shapes so a new sentence length does not recompile. Without a compiler (or
with ``CAPTUM_SEMIRING_COMPILE=0``) the same expression runs eagerly in row chunks
under a memory budget. Small problems always run eagerly, where compiling costs more
than it saves.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

#: Elements of the broadcast product per eager chunk.
CHUNK_ELEMENTS = 1 << 24
#: Problems smaller than this (m·n·p) skip the compiler.
COMPILE_THRESHOLD = 1 << 22

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


def row_chunks(m: int, row_elements: int) -> list[slice]:
    """Slices of ``m`` rows, each with at most :data:`CHUNK_ELEMENTS` elements of
    broadcast work when one row costs ``row_elements``."""
    rows = max(1, CHUNK_ELEMENTS // max(1, row_elements))
    return [slice(i, i + rows) for i in range(0, m, rows)]


def _chunked(
    fn: Callable[..., tuple[Tensor, Tensor]], pos: Tensor, neg: Tensor, w: Tensor
) -> tuple[Tensor, Tensor]:
    n, p = pos.shape[-1], w.shape[-1]
    batch = math.prod(torch.broadcast_shapes(pos.shape[:-2], w.shape[:-2]))
    chunks = row_chunks(pos.shape[-2], batch * n * p)
    if len(chunks) == 1:
        return fn(pos, neg, w)
    parts = [fn(pos[..., rows, :], neg[..., rows, :], w) for rows in chunks]
    return torch.cat([a for a, _ in parts], -2), torch.cat([b for _, b in parts], -2)


def max_times(pos: Tensor, neg: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """The max-product contraction of a (pos, neg) pair with a real matrix ``w``."""
    size = pos.shape[-2] * pos.shape[-1] * w.shape[-1]
    size *= math.prod(torch.broadcast_shapes(pos.shape[:-2], w.shape[:-2]))
    if size >= COMPILE_THRESHOLD and compile_enabled():
        kernel = _compiled_kernel("max_times", _max_times)
        if kernel is not None:
            try:
                return kernel(pos, neg, w)
            except Exception as err:  # pragma: no cover - depends on the toolchain
                warnings.warn(
                    f"compiled kernel failed ({err}); using eager kernels", stacklevel=2
                )
                _compiled["max_times"] = None
    return _chunked(_max_times, pos, neg, w)


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


def _head_keys(a: Tensor, b: Tensor, wt: Tensor) -> Tensor:
    """``w_jc · a_ij`` where ``w_jc >= 0``, else ``w_jc · b_ij``, laid out (..., m, p, n)."""
    wt = wt.unsqueeze(-3)
    return torch.where(wt >= 0, wt * a.unsqueeze(-2), wt * b.unsqueeze(-2))


def _head_keys_high(a: Tensor, b: Tensor, wt: Tensor) -> Tensor:
    """Keys for the largest values: no path (NaN) sorts last."""
    keys = _head_keys(a, b, wt)
    return torch.where(torch.isnan(keys), -math.inf, keys)


def _head_keys_low(a: Tensor, b: Tensor, wt: Tensor) -> Tensor:
    """Keys for the most negative values: no path (NaN) sorts last."""
    keys = _head_keys(a, b, wt)
    return torch.where(torch.isnan(keys), math.inf, keys)


def _best_inputs(a: Tensor, b: Tensor, wt: Tensor, k: int, largest: bool) -> Tensor:
    """For each output, the ``k`` inputs ``j`` whose best path extends best."""
    m, n, p = a.shape[-2], a.shape[-1], wt.shape[-2]
    size = m * n * p * math.prod(torch.broadcast_shapes(a.shape[:-2], wt.shape[:-2]))
    keys_of: Callable[..., Tensor] = _head_keys_high if largest else _head_keys_low
    if size >= COMPILE_THRESHOLD and compile_enabled():
        keys_of = _compiled_kernel(keys_of.__name__, keys_of) or keys_of
    parts = []
    for rows in row_chunks(m, size // max(1, m)):
        keys = keys_of(a[..., rows, :], b[..., rows, :], wt)
        parts.append(torch.topk(keys, min(k, n), dim=-1, largest=largest).indices)
    return torch.cat(parts, -3) if len(parts) > 1 else parts[0]


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
    candidates = torch.where(w_g >= 0, w_g * same_g, w_g * other_g)
    return keep_best(candidates.movedim(-1, 1).flatten(0, 1), k, largest)


def top_k_times(values: Tensor, w: Tensor, k: int) -> Tensor:
    """The TopK contraction of values ``(2k, ..., m, n)`` (k best non-negative, then k
    most negative path values) with a real matrix ``w`` (..., n, p).

    Each input's list is sorted, so only the ``k`` inputs with the best first entries
    can contribute: find those, then merge their lists.
    """
    pos, neg = values[:k], values[k:]
    wt = w.mT
    hi = _best_inputs(pos[0], neg[0], wt, k, largest=True)
    lo = _best_inputs(neg[0], pos[0], wt, k, largest=False)
    return torch.cat(
        (_merge(pos, neg, wt, hi, k, True), _merge(neg, pos, wt, lo, k, False))
    )
