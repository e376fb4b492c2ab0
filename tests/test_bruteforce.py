"""Brute-force checks of every semiring against an independent reference.

The reference (``tests/reference.py``) takes only the list of recorded ATen calls from
the library, rebuilds the scalar gradient graph from Jacobians and NaN propagation,
enumerates every path explicitly and computes each semiring from the plain list of path
products. Tiny random float64 models (hypothesis) are compared element by element to
1e-9 (absolute plus relative); an expected -inf must be matched exactly.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from builders import SEMIRINGS
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from reference import ReferenceGraph, all_indices, mismatches
from torch import Tensor, nn

import captum_semiring as cs

DTYPE = torch.float64


# Deterministic examples, so that a run is reproducible (and a regression shows up on
# the same model every time). No shrinking: a failure prints its (already tiny) model
# spec, and shrinking one costs a minute.
FAST: dict[str, Any] = dict(
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)


# ----- building cases --------------------------------------------------------------
@dataclass
class Case:
    graph: Any
    out: Tensor
    sources: list[Tensor]
    ref: ReferenceGraph
    grads: list[Tensor]  # torch.autograd gradients of out.sum(), one per source


def _fresh(module: nn.Module, gen: torch.Generator, scale: float = 1.0) -> nn.Module:
    """Replace every parameter by a fresh random float64 Parameter (version counter 0)."""
    module = module.to(DTYPE)
    for sub in list(module.modules()):
        for name, p in list(sub.named_parameters(recurse=False)):
            setattr(
                sub,
                name,
                nn.Parameter(torch.randn(p.shape, generator=gen, dtype=DTYPE) * scale),
            )
    return module


def _make_case(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    params: list[Tensor],
    decompose: tuple[str, ...] = (),
) -> Case:
    sources = [x, *params]
    with cs.record(*sources, decompose=decompose) as graph:
        out = fn(x)
    ref = ReferenceGraph(graph, out)
    # An independent check of the reference itself: its SumProduct is the gradient.
    xg = x.detach().clone().requires_grad_(True)
    out2 = fn(xg)
    grads = torch.autograd.grad(out2.sum(), [xg, *params], allow_unused=True)
    grads = [torch.zeros_like(s) if g is None else g for s, g in zip(sources, grads)]
    return Case(graph, out, sources, ref, list(grads))


_ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


@functools.lru_cache(maxsize=64)
def mlp_case(
    seed: int,
    depth: int,
    width: int,
    n_in: int,
    act: str,
    batch: int,
    mode: str,
    param_source: str,
    decompose: bool = False,
) -> Case:
    gen = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    size = n_in
    for _ in range(depth):
        layers += [nn.Linear(size, width), _ACTIVATIONS[act]()]
        size = width
    layers.append(nn.Linear(size, 1))
    net = _fresh(nn.Sequential(*layers), gen)
    params: list[Tensor] = []
    if param_source == "weight":
        params = [net[0].weight]
    elif param_source == "bias":
        params = [net[2 * (depth - 1)].bias]
    if mode == "batch":  # one output per example, shape (batch,)
        x = torch.randn(batch, n_in, generator=gen, dtype=DTYPE)
        fn = lambda t: net(t)[:, 0]
    elif mode == "scalar":  # shape (); rows other than 0 do not reach the output
        x = torch.randn(batch, n_in, generator=gen, dtype=DTYPE)
        fn = lambda t: net(t)[0, 0]
    else:  # "vector": one unbatched example, shape ()
        x = torch.randn(n_in, generator=gen, dtype=DTYPE)
        fn = lambda t: net(t)[0]
    return _make_case(fn, x, params, ("gelu",) if decompose else ())


def _specs(*choices: Sequence[Any]) -> st.SearchStrategy[tuple]:
    """Model specs ``(seed, *one choice from each of choices)``.

    Hypothesis draws only the seed, and the structure follows from it: on a budget of a
    few dozen examples, hypothesis left to draw each field itself returns near-copies
    of a handful of models (one relu MLP in 40), while this spreads them out.
    """

    def spec(seed: int) -> tuple:
        rng = random.Random(seed)
        return (seed, *(rng.choice(list(c)) for c in choices))

    return st.integers(0, 2**32 - 1).map(spec)


mlp_specs = _specs(
    [1, 2, 3],  # depth
    [1, 2, 3],  # width
    [1, 2, 3],  # input size
    sorted(_ACTIVATIONS),
    [1, 2],  # batch
    ["batch", "scalar", "vector"],
    ["none", "weight", "bias"],  # a parameter as a second source
    [False, True],  # record(decompose=("gelu",))
)


class Attention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q, self.k, self.v = (
            nn.Linear(dim, dim),
            nn.Linear(dim, dim),
            nn.Linear(dim, dim),
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.q(x), self.k(x), self.v(x)
        scores = q @ k.transpose(-2, -1) / math.sqrt(x.shape[-1])
        h = x + torch.softmax(scores, dim=-1) @ v
        return self.head(self.norm(h)).sum()


@functools.lru_cache(maxsize=64)
def attention_case(
    seed: int, seq: int, batched: bool, param_source: bool, decompose: bool = False
) -> Case:
    gen = torch.Generator().manual_seed(seed)
    net = _fresh(Attention(2), gen)
    shape = (1, seq, 2) if batched else (seq, 2)
    x = torch.randn(shape, generator=gen, dtype=DTYPE)
    return _make_case(
        net,
        x,
        [net.q.weight] if param_source else [],
        ("softmax", "layer_norm") if decompose else (),
    )


# (seed, seq len, batched 3-d input, q.weight as a second source, decompose softmax and
# layer_norm). With softmax decomposed, exp(s - amax(s)) gives every score two paths of
# opposite sign and equal magnitude (directly, and through amax): exact TopK ties after
# negative edges (regression: test_topk_tie_after_negative_edge).
attention_specs = _specs([2, 3], [False, True], [False, True], [False, True])


@functools.lru_cache(maxsize=64)
def conv_case(seed: int, size: int, pool: str, batch: int, scalar: bool) -> Case:
    gen = torch.Generator().manual_seed(seed)
    pooling = nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2)
    side = (size - 1) // 2
    net = _fresh(
        nn.Sequential(
            nn.Conv2d(1, 2, 2),
            nn.ReLU(),
            pooling,
            nn.Flatten(),
            nn.Linear(2 * side * side, 1),
        ),
        gen,
    )
    x = torch.randn(batch, 1, size, size, generator=gen, dtype=DTYPE)
    fn = (lambda t: net(t)[0, 0]) if scalar else (lambda t: net(t)[:, 0])
    return _make_case(fn, x, [])


conv_specs = _specs(
    [3, 4], ["max", "avg"], [1, 2], [False, True]
)  # size, pool, batch, scalar


@functools.lru_cache(maxsize=64)
def lstm_case(seed: int, n_in: int, hidden: int) -> Case:
    gen = torch.Generator().manual_seed(seed)
    lstm = _fresh(nn.LSTM(n_in, hidden, batch_first=True), gen)
    readout = torch.randn(hidden, generator=gen, dtype=DTYPE)
    x = torch.randn(1, 2, n_in, generator=gen, dtype=DTYPE)  # two steps

    def fn(t: Tensor) -> Tensor:
        _, (h, _) = lstm(t)
        return (h[-1, 0] * readout).sum()

    return _make_case(fn, x, [])


lstm_specs = _specs([1, 2], [1, 2])  # input size, hidden size


# ----- checking ----------------------------------------------------------------------
def check_semirings(case: Case, names: list[str]) -> None:
    # The reference itself must reproduce autograd.
    for source, grad in zip(case.sources, case.grads):
        assert not mismatches(grad, case.ref.expected(source, "sum")), (
            "reference disagrees with autograd"
        )
    failures = []
    for name in names:
        make, ref_name, k = SEMIRINGS[name]
        result = case.graph.backward(case.out, make())
        for i, source in enumerate(case.sources):
            bad = mismatches(result[source], case.ref.expected(source, ref_name, k))
            if bad:
                failures.append(
                    f"{name}, source {i} (shape {tuple(source.shape)}): "
                    + "; ".join(bad[:4])
                )
    assert not failures, "\n".join(failures)


ALL = list(SEMIRINGS)


@settings(max_examples=40, **FAST)
@given(spec=mlp_specs)
def test_mlp(spec: tuple) -> None:
    check_semirings(mlp_case(*spec), ALL)


# About half the examples decompose softmax: TopK ties (see attention_specs).
@settings(max_examples=14, **FAST)
@given(spec=attention_specs)
def test_attention(spec: tuple) -> None:
    check_semirings(attention_case(*spec), ALL)


@settings(max_examples=12, **FAST)
@given(spec=conv_specs)
def test_conv(spec: tuple) -> None:
    check_semirings(conv_case(*spec), ALL)


@settings(max_examples=12, **FAST)
@given(spec=lstm_specs)
def test_lstm(spec: tuple) -> None:
    check_semirings(lstm_case(*spec), ALL)


# ----- paths ------------------------------------------------------------------------
def _hop_key(path: Any) -> list[tuple[str, tuple[int, ...]]]:
    return [(h.op, tuple(h.index)) for h in path.hops]


def _weighted_hop_key(path: Any) -> list[tuple[str, tuple[int, ...], float]]:
    # Parallel edges (the two arguments of one sub, both reading 2*x) have the same op
    # and index; their weights tell them apart.
    return [(h.op, tuple(h.index), h.weight) for h in path.hops]


def _close(a: float, b: float, tol: float = 1e-9) -> bool:
    return abs(a - b) <= tol + tol * abs(b)


def check_paths(case: Case, semiring: Any, ranks: int) -> None:
    result = case.graph.backward(case.out, semiring)
    x = case.sources[0]
    values = result[x]
    if isinstance(semiring, cs.TopK):
        expected = case.ref.expected(x, "topk", semiring.k)
    else:
        expected = case.ref.expected(x, f"max_{semiring.sign}")[None]
    for flat, idx in enumerate(all_indices(x.shape)):
        ref_paths = case.ref.source_paths(x)[flat]
        keys = []
        previous = math.inf
        for rank in range(min(ranks, len(ref_paths))):
            path = result.path(x, idx, rank)
            reported = (
                float(values[rank][idx])
                if isinstance(semiring, cs.TopK)
                else float(values[idx])
            )
            product = math.prod(h.weight for h in path.hops)
            assert _close(product, path.value), (
                f"{idx} rank {rank}: hops multiply to {product}, value {path.value}"
            )
            assert _close(path.value, reported), (
                f"{idx} rank {rank}: path value {path.value} != result {reported}"
            )
            want = float(expected[rank][idx])
            assert _close(path.value, want), (
                f"{idx} rank {rank}: path value {path.value}, reference {want}"
            )
            assert case.ref.is_path(
                x, flat, [(h.op, tuple(h.index), h.weight) for h in path.hops]
            ), f"{idx} rank {rank}: {path} is not a path of the reference graph"
            assert abs(path.value) <= previous * (1 + 1e-12), (
                f"{idx}: ranks not sorted by |value|"
            )
            previous = abs(path.value)
            keys.append(_hop_key(path))
        for a in range(len(keys)):
            for b in range(a):
                assert keys[a] != keys[b], (
                    f"{idx}: ranks {b} and {a} return the same path"
                )


@settings(max_examples=20, **FAST)
@given(spec=mlp_specs)
def test_paths(spec: tuple) -> None:
    case = mlp_case(*spec)
    for sign in ("positive", "negative", "absolute"):
        check_paths(case, cs.MaxProduct(sign), 1)
    check_paths(case, cs.TopK(3), 3)


# ----- deterministic constructions -------------------------------------------------
def _check_all(graph: Any, out: Tensor, sources: list[Tensor]) -> ReferenceGraph:
    ref = ReferenceGraph(graph, out)
    for name, (make, ref_name, k) in SEMIRINGS.items():
        result = graph.backward(out, make())
        for source in sources:
            bad = mismatches(result[source], ref.expected(source, ref_name, k))
            assert not bad, f"{name}: {bad}"
    result = graph.backward(out, cs.TopK(4))
    for source in sources:
        assert not mismatches(result[source], ref.expected(source, "topk", 4)), "topk4"
    return ref


def test_zero_weight_relu_edge_is_an_edge() -> None:
    # Paths from x: x -> neg -> relu (weight exactly 0 at -1) -> add: product 0;
    # x -> mul(-2) -> add: product -2.
    x = torch.tensor([1.0], dtype=DTYPE)
    with cs.record(x) as graph:
        out = (torch.relu(-x) + (-2.0) * x).sum()
    ref = _check_all(graph, out, [x])
    assert sorted(ref.products(x)[0]) == [-2.0, 0.0]
    assert ref.expected(x, "pathcount").tolist() == [math.log(2)]
    assert ref.expected(x, "max_positive").tolist() == [
        0.0
    ]  # the zero-weight path wins
    assert ref.expected(x, "max_negative").tolist() == [-2.0]
    result = graph.backward(out, cs.MaxProduct("positive"))
    assert result[x].tolist() == [0.0]
    path = result.path(x, (0,))
    assert path.value == 0.0 and any(h.weight == 0.0 for h in path.hops)
    assert "aten.relu.default" in [h.op for h in path.hops]
    assert ref.is_path(x, 0, [(h.op, tuple(h.index), h.weight) for h in path.hops])
    assert torch.equal(
        graph.backward(out, cs.PathCount())[x].exp(), torch.tensor([2.0], dtype=DTYPE)
    )


def test_topk_ranks_and_ties() -> None:
    x = torch.tensor([1.5, -0.5], dtype=DTYPE)
    with cs.record(x) as graph:
        out = (2 * x - 2 * x + 0.5 * x).sum()
    ref = _check_all(graph, out, [x])
    expected = torch.tensor(
        [[2.0, 2.0], [-2.0, -2.0], [0.5, 0.5], [0.0, 0.0]], dtype=DTYPE
    )
    assert torch.equal(ref.expected(x, "topk", 4), expected)
    result = graph.backward(out, cs.TopK(4))
    assert not mismatches(result[x], expected)
    for i in range(2):
        paths = [result.path(x, (i,), rank) for rank in range(3)]
        assert [p.value for p in paths] == [2.0, -2.0, 0.5]
        assert len({tuple(_weighted_hop_key(p)) for p in paths}) == 3
        for p in paths:
            assert math.prod(h.weight for h in p.hops) == p.value
            assert ref.is_path(x, i, [(h.op, tuple(h.index), h.weight) for h in p.hops])
    # MaxProduct(absolute): |+2| ties |-2|, the positive one wins.
    assert graph.backward(out, cs.MaxProduct("absolute"))[x].tolist() == [2.0, 2.0]


def test_unreached_sources_are_zero_not_errors() -> None:
    x = torch.tensor([0.3, -1.2], dtype=DTYPE)  # x[1] does not reach the output
    y = torch.tensor([2.0, 3.0], dtype=DTYPE)  # read, but not on the way to the output
    z = torch.tensor([4.0], dtype=DTYPE)  # never read
    with cs.record(x, y, z) as graph:
        _ = torch.tanh(y) * 2
        out = torch.sigmoid(x[0] * 3.0)
    ref = _check_all(graph, out, [x, y, z])
    assert (
        ref.products(x)[1] == []
        and ref.products(y) == [[], []]
        and ref.products(z) == [[]]
    )
    for name, (make, ref_name, k) in SEMIRINGS.items():
        result = graph.backward(out, make())
        no_path = -math.inf if ref_name in ("logsum", "pathcount") else 0.0
        for source in (y, z):
            got = result[source]
            expected_shape = (k, *source.shape) if k else tuple(source.shape)
            assert tuple(got.shape) == expected_shape, name
            assert (got == no_path).all(), f"{name}: {got}"
        assert float(result[x].reshape(-1, 2)[0, 1]) == no_path, name


# ----- regression tests for library bugs found by the tests above -------------------
@pytest.mark.parametrize("k", [1, 2])
def test_topk_tie_after_negative_edge(k: int) -> None:
    # Regression: TopK once scaled its k values by a negative edge weight without
    # re-sorting, so two paths tied in |g| came out negative first (and with k=1 the
    # positive one was dropped). The documented tie-break is the larger signed value
    # first. Paths from x: (-3)(+2) = -6 and (-3)(-2) = +6, tied in magnitude.
    x = torch.tensor([1.0], dtype=DTYPE)
    with cs.record(x) as graph:
        h = -3 * x
        out = (2 * h - 2 * h).sum()
    ref = ReferenceGraph(graph, out)
    expected = ref.expected(x, "topk", k)
    assert expected.tolist() == [[6.0], [-6.0]][:k]
    got = graph.backward(out, cs.TopK(k))[x]
    assert not mismatches(got, expected), got.tolist()


def test_entropy_matmul_second_row() -> None:
    # Regression: Entropy.matmul once added top[0] (the running max of the first row of
    # the value matrix) to log Z instead of each row's own max, so every other row of an
    # mm/addmm/bmm operand whose max differed got a wrong log Z and entropy.
    # One path per element, so the entropy is 0 everywhere; the second row of the mm
    # operand has a different log Z (log 2) than the first (log 1).
    x = torch.ones(2, 1, dtype=DTYPE)
    w = torch.ones(1, 1, dtype=DTYPE)
    c = torch.tensor([[1.0], [2.0]], dtype=DTYPE)
    with cs.record(x) as graph:
        out = ((x @ w) * c)[:, 0]
    ref = ReferenceGraph(graph, out)
    expected = ref.expected(x, "entropy")
    assert torch.equal(expected, torch.zeros(2, 1, dtype=DTYPE))
    got = graph.backward(out, cs.Entropy())[x]
    assert not mismatches(got, expected), got.tolist()


def test_parameter_sources_with_default_init() -> None:
    # nn.Linear's own parameters (initialized in place, so their version counter is not
    # 0) as sources; the addmm reads the weight through a view (aten.t).
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 1)).to(DTYPE)
    x = torch.tensor([[0.5, -1.0], [2.0, 0.25]], dtype=DTYPE)
    x.mul_(1.0)  # a source whose version counter is not 0 either
    with cs.record(x, net[0].weight, net[2].weight, net[0].bias) as graph:
        out = net(x)[:, 0]
    # Every semiring, Entropy included (these mm operands have rows with different
    # maxima: see test_entropy_matmul_second_row).
    _check_all(graph, out, [x, net[0].weight, net[2].weight, net[0].bias])
