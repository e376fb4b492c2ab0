"""Silent wrong answers found by an adversarial probe (2026-12-03) and not fixed
yet: SumProduct against autograd on inputs nobody here wrote. Each is a strict
xfail, so a fix turns it red until its mark is removed; a fix may also make the
case a clear error, which then replaces the comparison."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import captum_semiring as cs


class _DoubleInPlace(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a):  # type: ignore[no-untyped-def]
        a.mul_(2)
        ctx.mark_dirty(a)
        return a

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def]
        return 2 * g


class _SquareInNumpy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(a)
        return torch.from_numpy(a.detach().numpy() ** 2)

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def]
        (a,) = ctx.saved_tensors
        return 2 * a * g


def _stale_view_of_fresh_buffer(x):
    buf = torch.zeros(2, 2, dtype=x.dtype)
    view = buf[0]  # made before the write below
    buf[0] = x[0] * 3
    return (view * x[1]).sum()


def _detach_in_place(x):
    y = x * 2
    y.detach_()  # autograd: y is a constant from here on
    return (x * y).sum()


CASES = {
    # a view of an untracked buffer, taken before a tracked write, reads as 0
    "stale view of a fresh buffer": (_stale_view_of_fresh_buffer, [[1, 2], [3, 4]]),
    # detach_ never reaches the dispatch mode, so the path stays
    "detach_ in the block": (_detach_in_place, [1, 2, 3]),
    # the Function's in-place forward under no_grad is dropped
    "Function with mark_dirty": (
        lambda x: _DoubleInPlace.apply(x * 1).sin().sum(),
        [0.5, 1, -1.5],
    ),
    # a forward outside torch leaves no recorded path, and no warning
    "Function computed in numpy": (
        lambda x: _SquareInNumpy.apply(x).sum() + x.sum(),
        [0.5, 1, -1.5],
    ),
    # a zero edge (relu's mask) times sqrt's infinite partial at 0 gives NaN
    "relu then sqrt at zero": (lambda x: torch.relu(x).sqrt().sum(), [-1, 0, 4]),
    # std_mean's decomposition divides by a zero std on a constant row
    "std_mean of a constant row": (lambda x: torch.std_mean(x)[0], [1, 1, 1]),
    # autograd's one-sided conventions at hardswish's kinks
    "hardswish at its kinks": (lambda x: F.hardswish(x).sum(), [-3, 3]),
}


@pytest.mark.xfail(
    strict=True, raises=AssertionError, reason="known silent wrong answer"
)
@pytest.mark.parametrize("name", sorted(CASES))
def test_known_wrong_answer(name):
    fn, values = CASES[name]
    x = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    with cs.record(x) as graph:
        out = fn(x)
    (expected,) = torch.autograd.grad(out, x)
    torch.testing.assert_close(graph.backward(out, "sum")[x], expected)
