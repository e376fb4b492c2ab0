"""Whole sweeps give the same numbers on every kernel backend: native C++, compiled
(``torch.compile``, native off) and eager (both off).

The kernel tests check each contraction against brute force; this checks that the
dispatch around them (layouts, batch folding, fallbacks) keeps real models exact.
Each model is recorded once and swept under each backend; float64, so that any
difference beyond summation order is a bug.
"""

from __future__ import annotations

import pytest
import torch
from arch_zoo import _record, build
from test_kernels import use_backend

import captum_semiring as cs

CASES = ["bert-eager", "gpt2-sdpa", "resnet", "torch-bilstm"]
SEMIRINGS = [cs.MaxProduct("absolute"), cs.TopK(3), cs.Entropy(), cs.LogSum()]


@pytest.mark.parametrize("backend", ["native", "compiled"])
@pytest.mark.parametrize("case_id", CASES)
def test_every_semiring_agrees_with_the_eager_kernels(monkeypatch, case_id, backend):
    case = build(case_id)
    graph, key, out = _record(case, case.inputs)
    use_backend(monkeypatch, "eager")
    want = [graph.backward(out, sr)[key] for sr in SEMIRINGS]
    use_backend(monkeypatch, backend)
    for sr, expected in zip(SEMIRINGS, want, strict=True):
        got = graph.backward(out, sr)[key]
        torch.testing.assert_close(
            got, expected, rtol=1e-10, atol=1e-12, msg=lambda m, sr=sr: f"{sr}: {m}"
        )
