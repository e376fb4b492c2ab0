"""The fallback for the long tail: an op with no rule becomes its dense Jacobian.

When an op has neither a rule nor a decomposition that covers its arguments
(``linalg.inv``, ``cdist``, a fractional max-pool), each (input, output) Jacobian
is computed with ``torch.autograd`` at the recorded arguments, so SumProduct
reproduces autograd exactly. The edges are the entries that are non-zero at the
recorded point or at one of two nearby probe points: an entry that is zero only
by accident of the point (a kink, a tie) stays an edge of weight 0, as it is in
autograd's graph, while entries that are zero everywhere (another matrix in the
batch) are no edge at all.

A dense Jacobian holds ``outputs × inputs`` entries. Past :data:`MAX_ENTRIES` per
pair the rule raises :class:`UnsupportedOpError` naming the op and the sizes;
register a structured rule for such an op.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .._record import OpRecord
from ..semirings import Semiring
from . import UnsupportedOpError
from ._maps import Elementwise, LocalMap, MatMul

MAX_ENTRIES = 2**22  # per (input, output) pair: 32 MiB of float64
_PROBE_SEEDS = (1, 2)
_PROBE_SCALE = 1e-3  # relative: stays inside domains such as positive definiteness


def check_replayable(op: Any, module: str) -> None:
    """Refuse an op that draws random numbers (``rrelu`` in training): the fallback
    reruns the op, and a new draw would give another op's Jacobian. The recorder
    calls this for every op it records without a rule."""
    if torch.Tag.nondeterministic_seeded in getattr(op, "tags", ()):
        raise UnsupportedOpError(
            f"no rule for {op} (in module '{module}'), and it draws random numbers, "
            "so the dense-Jacobian fallback cannot rerun it; use the model in eval "
            "mode, or register a rule with captum_semiring.rules.register_rule"
        )


def dense_jacobian_rule(call: OpRecord) -> dict[tuple[int, int], LocalMap]:
    maps: dict[tuple[int, int], LocalMap] = {}
    for leaf, _ in call.inputs:
        x = call.leaves[leaf].detach()
        for p, _ in call.outputs:
            out = call.output(p)
            if out.numel() == 0:
                continue  # no elements, no edges
            if out.numel() * x.numel() > MAX_ENTRIES:
                raise UnsupportedOpError(
                    f"no rule for {call.func}, and its dense Jacobian "
                    f"({out.numel()} × {x.numel()} entries) is over the budget of "
                    f"{MAX_ENTRIES} (captum_semiring.rules.dense_jacobian.MAX_ENTRIES); "
                    "register a rule with captum_semiring.rules.register_rule"
                )

            # One output at a time: a multi-output backward (svd's) may be finite
            # only where the other outputs' cotangents are absent, not zero.
            def fn(t: Tensor, leaf: int = leaf, p: int = p) -> Tensor:
                return call.rerun({leaf: t})[p]

            weight = _jacobian(fn, x)
            if weight is None:
                maps[(leaf, p)] = Refused(call, p, tuple(x.shape), tuple(out.shape))
                continue
            structural = weight != 0
            for seed in _PROBE_SEEDS:
                probe = _jacobian(fn, _nearby(x, seed))
                if probe is not None:
                    structural |= (probe != 0) & probe.isfinite()
            maps[(leaf, p)] = _dense_map(
                weight, structural, tuple(x.shape), tuple(out.shape)
            )
    return maps


class Refused(LocalMap):
    """An output autograd cannot differentiate: as in autograd, an error only
    when a value flows through it."""

    def __init__(
        self,
        call: OpRecord,
        position: int,
        in_shape: tuple[int, ...],
        out_shape: tuple[int, ...],
    ) -> None:
        self.in_shape, self.out_shape = in_shape, out_shape
        self.message = (
            f"no rule for {call.func}, and autograd cannot differentiate its output "
            f"{position} at the recorded arguments (in module '{call.module}')"
        )

    def backward(self, sr: Semiring, values: Tensor) -> Tensor:
        raise UnsupportedOpError(self.message)

    def forward(self, sr: Semiring, values: Tensor) -> Tensor:
        raise UnsupportedOpError(self.message)


def _jacobian(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor | None:
    """The ``(outputs, inputs)`` Jacobian of ``fn`` at ``x``, or None where autograd
    fails there."""
    # Warnings are vmap's "no batching rule" notes, or autograd's note that the
    # op has no autograd kernel (it then treats the op as constant: we refuse).
    with torch.enable_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for vectorize in (True, False):
            try:
                jac = torch.autograd.functional.jacobian(
                    fn, x.clone(), vectorize=vectorize
                )
            except Exception:
                continue
            if any(
                "autograd kernel was not registered" in str(w.message) for w in caught
            ):
                return None
            return jac.detach().reshape(-1, x.numel())
    return None


def _nearby(x: Tensor, seed: int) -> Tensor:
    noise = torch.randn(
        x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype
    ).to(x.device)
    return x + _PROBE_SCALE * noise * (x.abs() + _PROBE_SCALE)


def _dense_map(
    weight: Tensor,
    structural: Tensor,
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
) -> LocalMap:
    n_out, n_in = math.prod(out_shape), math.prod(in_shape)
    if bool(structural.all()):  # a plain matrix: the semiring's matmul kernel
        return MatMul(weight.mT, "right", in_shape, out_shape, (1, n_in), (1, n_out))
    return Elementwise(
        weight,
        in_shape,
        out_shape,
        (n_out, n_in),
        in_view=(1, n_in),
        out_view=(n_out, 1),
        mask=structural,
    )
