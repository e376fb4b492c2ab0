"""Structured row-wise maps (softmax, log_softmax, layer norm) against dense blocks.

The reference Jacobian comes from ``torch.autograd.functional.jacobian`` of the op
itself, and the reference contraction is the base class's generic broadcast
:meth:`Semiring.matmul`; neither uses the structured code under test.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import captum_semiring as cs
from captum_semiring import kernels
from captum_semiring.rules._maps import Blockwise

SEMIRINGS = {
    "max_positive": cs.MaxProduct("positive"),
    "max_absolute": cs.MaxProduct("absolute"),
    "entropy": cs.Entropy(),
    "logsum": cs.LogSum(),
    "pathcount": cs.PathCount(),
    "topk1": cs.TopK(1),
    "topk3": cs.TopK(3),
    "sum": cs.SumProduct(),
}
TOL = {
    torch.float64: dict(rtol=1e-8, atol=1e-10),
    torch.float32: dict(rtol=2e-4, atol=1e-5),
}


def _op_map(fn: Callable[[Tensor], Tensor], x: Tensor) -> Blockwise:
    x = x.clone().requires_grad_(True)
    with cs.record(x) as graph:
        fn(x)
    (record,) = [
        r for r in graph.records if "softmax" in r.op_name or "norm" in r.op_name
    ]
    (local,) = [
        m for m in graph.local_maps(record).values() if isinstance(m, Blockwise)
    ]
    return local


def _values(sr: cs.Semiring, shape: tuple[int, ...], dtype: torch.dtype, gen) -> Tensor:
    """Random semiring values: the ⊕ of a few lifted real weights per element, with
    ties, zeros and unreachable (semiring zero) elements mixed in."""
    weights = torch.randn((4, *shape), generator=gen, dtype=dtype)
    weights[:, 0, :2] = weights[:, 0, 2:3]  # ties inside a row
    weights[:, -1, 1] = 0.0  # a zero path value
    lifted = torch.stack([sr.lift(w) for w in weights], dim=1)  # (S, 4, *shape)
    values = sr.sum(lifted, 1)
    dead = torch.rand(shape, generator=gen) < 0.25
    dead[1] = True  # one row with no path at all
    return torch.where(dead, sr.zeros(shape, values), values)


def _reference(sr: cs.Semiring, values: Tensor, fn, x: Tensor, transpose: bool):
    jac = torch.autograd.functional.jacobian(fn, x)  # (R, n, R, n): d out / d in
    rows = []
    for r in range(x.shape[0]):
        block = jac[r, :, r, :]  # [j, i] = d out_j / d in_i
        w = block.T if transpose else block
        rows.append(cs.Semiring.matmul(sr, values[:, r, None, :], w)[:, 0])
    return torch.stack(rows, dim=1)


def _softmax(x: Tensor) -> Tensor:
    return torch.softmax(x, -1)


def _log_softmax(x: Tensor) -> Tensor:
    return torch.log_softmax(x, -1)


def _layer_norm_fn(gamma: Tensor) -> Callable[[Tensor], Tensor]:
    return lambda x: F.layer_norm(x, (x.shape[-1],), gamma, None, 1e-5)


def _inputs(dtype: torch.dtype, gen) -> Tensor:
    x = torch.randn(5, 7, generator=gen, dtype=dtype) * 3
    x[2, 3] = x[2, 5]  # equal inputs: tied Jacobian entries
    # Saturated softmax (outputs of exactly 0 and 1). Not [200, 0, ..., 0]: its layer
    # norm has a diagonal entry of exactly 0, only rounding noise in float32.
    x[3] = torch.tensor([200.0, 0.0, 50.0, -40.0, 10.0, -60.0, 30.0])
    return x


CASES = {
    "softmax": lambda x, gen: _softmax,
    "log_softmax": lambda x, gen: _log_softmax,
    "layer_norm": lambda x, gen: _layer_norm_fn(
        torch.randn(x.shape[-1], generator=gen, dtype=x.dtype)
    ),
    "layer_norm_zero_gamma": lambda x, gen: _layer_norm_fn(
        torch.tensor([1.0, 0.0, -2.0, 0.5, 0.0, 3.0, -1.0], dtype=x.dtype)
    ),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", list(SEMIRINGS))
@pytest.mark.parametrize("direction", ["backward", "forward"])
def test_structured_map_matches_dense_blocks(dtype, case, name, direction, monkeypatch):
    sr = SEMIRINGS[name]
    gen = torch.Generator().manual_seed(zlib.crc32(f"{case}{name}{direction}".encode()))
    x = _inputs(dtype, gen)
    fn = CASES[case](x, gen)
    local = _op_map(fn, x)
    assert type(local) is not Blockwise  # the structured map is what is tested
    values = _values(sr, tuple(x.shape), dtype, gen)
    expected = _reference(sr, values, fn, x, transpose=direction == "forward")
    for compiled in ("0", "1"):
        monkeypatch.setenv("CAPTUM_SEMIRING_COMPILE", compiled)
        monkeypatch.setattr(kernels, "COMPILE_THRESHOLD", 0 if compiled == "1" else 1)
        got, want = getattr(local, direction)(sr, values), expected
        if isinstance(sr, cs.TopK):
            # A path of value 0 may sit in either list (as 0.0 or -0.0); the
            # finalized ranks, where missing ones are 0 too, do not tell them apart.
            got, want = sr.finalize(got), sr.finalize(want)
        torch.testing.assert_close(got, want, equal_nan=True, **TOL[dtype])


@pytest.mark.parametrize("name", list(SEMIRINGS))
def test_sum_others_is_the_sum_without_each_element(name):
    sr = SEMIRINGS[name]
    gen = torch.Generator().manual_seed(1)
    for dtype in (torch.float64, torch.float32):
        values = _values(sr, (6, 5), dtype, gen)
        values[:, 4] = values[:, 4, :1]  # a row of identical values
        expected = torch.stack(
            [
                sr.sum(torch.cat((values[..., :i], values[..., i + 1 :]), -1), -1)
                for i in range(values.shape[-1])
            ],
            dim=-1,
        )
        got = sr.sum_others(values)
        torch.testing.assert_close(got, expected, equal_nan=True, **TOL[dtype])
        generic = cs.Semiring.sum_others(sr, values)
        torch.testing.assert_close(generic, expected, equal_nan=True, **TOL[dtype])


def test_logsum_others_do_not_cancel():
    """One element far above the others: the others' log-sum must not be lost."""
    x = torch.tensor([[[50.0, 0.0, -1.0, -3.0]]])
    got = cs.LogSum().sum_others(x)[0, 0]
    expected = [
        math.log(1 + math.exp(-1) + math.exp(-3)),
        math.log(math.exp(50) + math.exp(-1) + math.exp(-3)),
        math.log(math.exp(50) + 1 + math.exp(-3)),
        math.log(math.exp(50) + 1 + math.exp(-1)),
    ]
    # (absolute: the row scale 50 is added back in float32)
    torch.testing.assert_close(got, torch.tensor(expected), rtol=0, atol=1e-5)
    entropy = cs.Entropy().sum_others(torch.stack((x[0], torch.full_like(x[0], 2.0))))
    assert entropy[0, 0, 0] == pytest.approx(expected[0], abs=1e-5)
    assert entropy[1, 0, 0] == pytest.approx(2.0, rel=1e-6)


def test_zero_flow_rows_stay_zero():
    """A row without any path gives the semiring zero: no NaN, entropy 0."""
    x = torch.randn(3, 4)
    fn = _layer_norm_fn(torch.ones(4))
    for case_fn in (_softmax, _log_softmax, fn):
        local = _op_map(case_fn, x)
        for sr in SEMIRINGS.values():
            values = sr.zeros(x.shape, x)
            out = local.backward(sr, values)
            torch.testing.assert_close(out, values, equal_nan=True, rtol=0, atol=0)
            assert not torch.isnan(sr.finalize(out)).any()


@pytest.mark.parametrize("case", list(CASES))
def test_edges_from_is_a_column_of_the_jacobian(case):
    gen = torch.Generator().manual_seed(3)
    x = _inputs(torch.float64, gen)
    fn = CASES[case](x, gen)
    local = _op_map(fn, x)
    jac = torch.autograd.functional.jacobian(fn, x)
    for flat in (0, 9, 24, 34):
        r, i = divmod(flat, x.shape[1])
        index, weights = local.edges_from(flat, x)
        assert sorted(index.tolist()) == list(range(r * 7, r * 7 + 7))  # whole row
        expected = jac.reshape(35, 35)[index, flat]
        torch.testing.assert_close(weights, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["max", "sum", "entropy"])
def test_layer_norm_kernels_chunk_and_compile(kind, monkeypatch):
    torch.manual_seed(0)
    s = torch.randn(9, 6)
    values = [torch.rand(9, 6), -torch.rand(9, 6)]
    monkeypatch.setenv("CAPTUM_SEMIRING_COMPILE", "0")
    n = 1 if kind == "sum" else 2
    whole = kernels.layer_norm_times(kind, s, *values[:n])
    monkeypatch.setattr(kernels, "CHUNK_ELEMENTS", 100)
    for a, b in zip(kernels.layer_norm_times(kind, s, *values[:n]), whole, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    monkeypatch.setenv("CAPTUM_SEMIRING_COMPILE", "1")
    monkeypatch.setattr(kernels, "COMPILE_THRESHOLD", 0)
    for a, b in zip(kernels.layer_norm_times(kind, s, *values[:n]), whole, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
