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

import torch
from torch import Tensor

#: Elements of the broadcast product per eager chunk.
CHUNK_ELEMENTS = 1 << 24
#: Problems smaller than this (m·n·p) skip the compiler.
COMPILE_THRESHOLD = 1 << 22

_compiled: dict[str, Callable[..., tuple[Tensor, Tensor]] | None] = {}


def compile_enabled() -> bool:
    """Whether compiled kernels may be used (``CAPTUM_SEMIRING_COMPILE``, default on)."""
    return os.environ.get("CAPTUM_SEMIRING_COMPILE", "1") not in ("0", "false", "no")


def _max_times(pos: Tensor, neg: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Most positive and most negative of ``x_ij · w_jk`` over ``j``, for the
    (most positive, most negative) pair ``x = (pos, neg)``; ``pos = -inf`` is no path."""
    p, n, w = pos.unsqueeze(-1), neg.unsqueeze(-1), w.unsqueeze(-3)
    nonneg = w >= 0
    dead = torch.isinf(p)
    hi = torch.where(dead, -math.inf, torch.where(nonneg, w * p, w * n))
    lo = torch.where(dead, math.inf, torch.where(nonneg, w * n, w * p))
    return hi.amax(-2), lo.amin(-2)


def _compiled_kernel(name: str, fn: Callable[..., tuple[Tensor, Tensor]]) -> Callable[..., tuple[Tensor, Tensor]] | None:
    if name not in _compiled:
        try:
            _compiled[name] = torch.compile(fn, dynamic=True)
        except Exception as err:  # pragma: no cover - depends on the toolchain
            warnings.warn(f"torch.compile unavailable ({err}); using eager kernels", stacklevel=3)
            _compiled[name] = None
    return _compiled[name]


def _chunked(fn: Callable[..., tuple[Tensor, Tensor]], pos: Tensor, neg: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    m, n, p = pos.shape[-2], pos.shape[-1], w.shape[-1]
    batch = math.prod(torch.broadcast_shapes(pos.shape[:-2], w.shape[:-2]))
    rows = max(1, CHUNK_ELEMENTS // max(1, batch * n * p))
    if rows >= m:
        return fn(pos, neg, w)
    parts = [fn(pos[..., i : i + rows, :], neg[..., i : i + rows, :], w) for i in range(0, m, rows)]
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
                warnings.warn(f"compiled kernel failed ({err}); using eager kernels", stacklevel=2)
                _compiled["max_times"] = None
    return _chunked(_max_times, pos, neg, w)
