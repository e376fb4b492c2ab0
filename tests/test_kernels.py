"""Compiled and eager semiring kernels give the same numbers."""

from __future__ import annotations

import pytest
import torch

import captum_semiring as cs
from captum_semiring import kernels


@pytest.mark.parametrize("semiring", [cs.MaxProduct("absolute"), cs.TopK(3)])
def test_compiled_kernels_match_eager(monkeypatch, semiring):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(6, 7), torch.nn.Tanh(), torch.nn.Linear(7, 1)
    )
    x = torch.randn(3, 6)
    with cs.record(x) as graph:
        out = net(x)[:, 0]
    monkeypatch.setenv("CAPTUM_SEMIRING_COMPILE", "0")
    eager = graph.backward(out, semiring)[x]
    monkeypatch.setenv("CAPTUM_SEMIRING_COMPILE", "1")
    monkeypatch.setattr(kernels, "COMPILE_THRESHOLD", 0)
    compiled = graph.backward(out, semiring)[x]
    torch.testing.assert_close(compiled, eager, rtol=0, atol=0)


def test_eager_kernels_chunk_rows(monkeypatch):
    """Row chunks under a small memory budget give the unchunked result."""
    torch.manual_seed(0)
    pos, w = torch.randn(2, 9, 5), torch.randn(2, 5, 4)
    neg = pos - 1.0
    whole = kernels.max_times(pos, neg, w)
    monkeypatch.setattr(kernels, "CHUNK_ELEMENTS", 7)
    monkeypatch.setenv("CAPTUM_SEMIRING_COMPILE", "0")
    for a, b in zip(kernels.max_times(pos, neg, w), whole, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _path_lists(k: int, shape: tuple[int, ...], generator: torch.Generator):
    """TopK values: k non-negative paths, best first, then k negative ones, most
    negative first; NaN marks missing paths (whole inputs without any, too)."""
    mags = torch.rand(2, k, *shape, generator=generator).sort(1, descending=True).values
    mags = mags.round(decimals=1)  # ties
    count = torch.randint(0, k + 1, (2, 1, *shape), generator=generator)
    mags = torch.where(
        torch.arange(k).view(1, k, *[1] * len(shape)) < count, mags, torch.nan
    )
    return torch.cat((mags[0], -mags[1]))


@pytest.mark.parametrize("n", [3, 40])  # fewer inputs than k, and more
def test_compiled_top_k_times_matches_eager(monkeypatch, n):
    k = 5
    generator = torch.Generator().manual_seed(n)
    values = _path_lists(k, (2, 6, n), generator)
    w = torch.randn(2, n, 7, generator=generator).round(decimals=1)
    w[0, 0] = 0.0  # a zero weight
    monkeypatch.setenv("CAPTUM_SEMIRING_COMPILE", "0")
    eager = kernels.top_k_times(values, w, k)
    monkeypatch.setenv("CAPTUM_SEMIRING_COMPILE", "1")
    monkeypatch.setattr(kernels, "COMPILE_THRESHOLD", 0)
    compiled = kernels.top_k_times(values, w, k)
    torch.testing.assert_close(compiled, eager, rtol=0, atol=0, equal_nan=True)
    # Against all 2k·n candidates of every output. (Zero weights are left out here:
    # a negative path times 0 gives -0.0, which TopK keeps on the negative side.)
    w = torch.where(w == 0, 0.5, w)
    got = kernels.top_k_times(values, w, k)
    cand = values.unsqueeze(-1) * w.unsqueeze(0).unsqueeze(-3)  # (2k, 2, 6, n, 7)
    cand = cand.movedim(-2, 1).flatten(0, 1)  # (2k·n, 2, 6, 7)
    hi = torch.nan_to_num(cand, nan=-torch.inf).topk(k, 0).values
    lo = torch.nan_to_num(cand, nan=torch.inf).topk(k, 0, largest=False).values
    want = torch.cat((hi.where(hi >= 0, torch.nan), lo.where(lo < 0, torch.nan)))
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize(
    "pos_shape, w_shape",
    [
        ((2, 3, 9, 5), (5, 4)),  # a 2-d weight: batch folded into the rows
        ((1, 9, 5), (3, 5, 4)),  # a broadcast batch
        ((2, 1, 9, 5), (3, 5, 4)),
        ((9, 5), (5, 4)),
    ],
)
def test_compiled_max_times_matches_eager_on_every_layout(
    monkeypatch, pos_shape, w_shape
):
    generator = torch.Generator().manual_seed(0)
    pos = torch.randn(pos_shape, generator=generator)
    neg = pos - torch.rand(pos_shape, generator=generator)
    w = torch.randn(w_shape, generator=generator)
    pos[..., 0, 1] = -torch.inf  # no path
    monkeypatch.setenv("CAPTUM_SEMIRING_COMPILE", "0")
    eager = kernels.max_times(pos, neg, w)
    monkeypatch.setenv("CAPTUM_SEMIRING_COMPILE", "1")
    monkeypatch.setattr(kernels, "COMPILE_THRESHOLD", 0)
    compiled = kernels.max_times(pos, neg, w)
    for a, b in zip(compiled, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
