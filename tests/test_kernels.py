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
