"""Rules for accumulating scatters, selections and scans (issue 12): brute-force
path checks against ``tests/reference.py`` on tiny float64 cases, and the
one-path-per-element property of selections. The OpInfo sweep checks the same
rules against autograd on PyTorch's own samples."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from builders import check_every_semiring, seeded_randn
from reference import mismatches
from torch import Tensor

import captum_semiring as cs

DTYPE = torch.float64


INDEX = torch.tensor([[0, 2, 0], [1, 0, 1]])


@pytest.mark.parametrize(
    "name, fn, shapes",
    [
        ("scatter_add", lambda x, s: x.scatter_add(0, INDEX, s), [(3, 3), (2, 3)]),
        (
            "scatter_reduce_mean",
            lambda x, s: x.scatter_reduce(0, INDEX, s, "mean", include_self=False),
            [(3, 3), (2, 3)],
        ),
        (
            "scatter_reduce_amax",
            lambda x, s: x.scatter_reduce(0, INDEX, s, "amax"),
            [(3, 3), (2, 3)],
        ),
        (
            "index_add",
            lambda x, s: x.index_add(1, torch.tensor([2, 0, 2]), s, alpha=-0.5),
            [(2, 3), (2, 3)],
        ),
        (
            "index_put_accumulate",
            lambda x, v: x.index_put((torch.tensor([0, 2, 0]),), v, accumulate=True),
            [(3, 2), (2,)],
        ),
        (
            "put_accumulate",
            lambda x, v: x.put(torch.tensor([5, 0, 5]), v, accumulate=True),
            [(2, 3), (3,)],
        ),
        ("cumprod", lambda x: torch.cumprod(x, 1), [(2, 4)]),
        ("logcumsumexp", lambda x: torch.logcumsumexp(x, 0), [(3, 2)]),
        ("cumsum", lambda x: torch.cumsum(x, 1), [(2, 5)]),
    ],
)
def test_bruteforce(name: str, fn: Callable[..., Tensor], shapes: list) -> None:
    sources = [seeded_randn(*shape, seed=i) for i, shape in enumerate(shapes)]
    check_every_semiring(fn, *sources)


def test_cumprod_with_a_zero() -> None:
    x = seeded_randn(2, 4)
    with cs.record(x) as graph:
        y = torch.cumprod(x * torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=DTYPE), 1)
        total = (y * seeded_randn(2, 4, seed=3).detach()).sum()
    (grad,) = torch.autograd.grad(total, x)
    assert not mismatches(graph.backward(total, "sum")[x], grad)


def test_max_unpool_repeated_index_follows_autograd() -> None:
    """Two inputs written to one position: autograd gives both its gradient."""
    x = seeded_randn(1, 1, 1, 2)
    indices = torch.tensor([[[[1, 1]]]])
    with cs.record(x) as graph:
        y = torch.nn.functional.max_unpool2d(x, indices, (1, 2), output_size=(1, 3))
        total = (y * torch.tensor([2.0, 3.0, 5.0], dtype=DTYPE)).sum()
    (grad,) = torch.autograd.grad(total, x)
    assert grad.flatten().tolist() == [3.0, 3.0]
    assert graph.backward(total, "sum")[x].flatten().tolist() == [3.0, 3.0]
    assert graph.backward(total, cs.TopK(2))[x][0].flatten().tolist() == [3.0, 3.0]


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: torch.sort(x, 1, descending=True).values,
        lambda x: torch.topk(x, 2, dim=0).values,
        lambda x: torch.kthvalue(x, 2, dim=1).values,
        lambda x: torch.median(x, dim=0, keepdim=True).values,
        lambda x: torch.mode(x.round(), dim=1).values,
        lambda x: torch.msort(x),
    ],
)
def test_selection_is_an_index_map(fn: Callable[[Tensor], Tensor]) -> None:
    """A selection followed by a weighted sum: each input element has at most one
    path, so every semiring reports the gradient, and reached elements count one
    path."""
    x = seeded_randn(4, 3)
    with cs.record(x) as graph:
        y = fn(x)
        total = (y * seeded_randn(*y.shape, seed=5).detach()).sum()
    (grad,) = torch.autograd.grad(total, x)
    assert not mismatches(graph.backward(total, "sum")[x], grad)
    assert not mismatches(graph.backward(total, cs.TopK(1))[x][0], grad)
    assert not mismatches(graph.backward(total, cs.MaxProduct("absolute"))[x], grad)
    counts = graph.backward(total, "count")[x]
    assert bool((counts <= 0.0).all())  # log of at most one path


@pytest.mark.parametrize("op", [torch.cummax, torch.cummin])
def test_cumulative_selection_counts_each_output_once(op: Callable) -> None:
    """``cummax``: one edge from the running maximum to each output it fills."""
    x = seeded_randn(4, 3)
    with cs.record(x) as graph:
        result = op(x, 1)
        total = (result.values * seeded_randn(4, 3, seed=5).detach()).sum()
    (grad,) = torch.autograd.grad(total, x)
    assert not mismatches(graph.backward(total, "sum")[x], grad)
    chosen = torch.zeros(12, dtype=DTYPE).index_add_(
        0,
        (result.indices + 3 * torch.arange(4)[:, None]).reshape(-1),
        torch.ones(12, dtype=DTYPE),
    )
    counts = graph.backward(total, "count")[x].reshape(-1).exp()
    assert not mismatches(torch.where(chosen > 0, counts, 0.0), chosen)


def test_median_of_all_shares_among_ties() -> None:
    x = torch.tensor([3.0, 1.0, 2.0, 2.0, 5.0], dtype=DTYPE, requires_grad=True)
    with cs.record(x) as graph:
        total = torch.median(x) * 4.0
    (grad,) = torch.autograd.grad(total, x)
    assert graph.backward(total, "sum")[x].tolist() == grad.tolist()
    assert math.isclose(float(graph.backward(total, "max")[x][2]), 2.0)


def test_empty_tensors_have_no_edges() -> None:
    """Zero-size inputs reach rules as no edges (a crash before)."""
    x = torch.randn(0, 3, dtype=DTYPE, requires_grad=True)
    b = torch.randn(3, dtype=DTYPE, requires_grad=True)
    with cs.record(x, b) as graph:
        y = torch.addmm(
            b, torch.randn(2, 0, dtype=DTYPE), torch.randn(0, 3, dtype=DTYPE)
        )
        z = torch.softmax(x, 1).sum() + (y * 2).sum()
    res = graph.backward(z, "sum")
    assert res[x].shape == (0, 3)
    assert res[b].tolist() == [4.0, 4.0, 4.0]
    for semiring in ("max", "entropy", cs.TopK(2)):
        assert bool(torch.isfinite(graph.backward(z, semiring)[b]).all())


def test_cumsum_forward_counts_the_lower_triangle_only() -> None:
    x = seeded_randn(2, 5)
    with cs.record(x) as graph:
        y = torch.cumsum(x, 1)
    counts = graph.forward("count").values(y)[0]  # log of the paths into each y_j
    expected = torch.arange(1, 6, dtype=DTYPE).log().expand(2, 5)
    assert not mismatches(counts, expected)
