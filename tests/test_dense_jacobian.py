"""The dense-Jacobian fallback (issue 12): ops with no rule, checked path by path
against the brute-force reference (whose structure comes from NaN propagation, not
from the fallback's probes) and against autograd."""

from __future__ import annotations

import pytest
import torch
from builders import check_every_semiring, seeded_randn
from torch import Tensor, nn

import captum_semiring as cs
from captum_semiring import rules
from captum_semiring.rules import dense_jacobian


def _spd(n: int, batch: int, seed: int) -> Tensor:
    a = seeded_randn(batch, n, n, seed=seed).detach()
    return (a @ a.mT + n * torch.eye(n, dtype=a.dtype)).requires_grad_(True)


@pytest.mark.parametrize(
    "name, fn, sources",
    [
        # Block-diagonal over the batch: the matrices must not share edges.
        ("inv", torch.linalg.inv, lambda: [_spd(2, 2, seed=1)]),
        ("det", torch.linalg.det, lambda: [_spd(2, 3, seed=2)]),
        (
            "matrix_exp",
            torch.linalg.matrix_exp,
            lambda: [seeded_randn(1, 2, 2, seed=3)],
        ),
        (
            "solve",
            torch.linalg.solve,
            lambda: [_spd(2, 1, seed=4), seeded_randn(1, 2, 1, seed=5)],
        ),
        (
            "cdist",
            torch.cdist,
            lambda: [seeded_randn(3, 2, seed=6), seeded_randn(2, 2, seed=8)],
        ),
        (
            "bilinear",
            lambda a, b, w: nn.functional.bilinear(a, b, w),
            lambda: [
                seeded_randn(2, 2, seed=9),
                seeded_randn(2, 3, seed=10),
                seeded_randn(2, 2, 3, seed=11),
            ],
        ),
    ],
)
def test_fallback_matches_the_reference(name, fn, sources) -> None:
    check_every_semiring(fn, *sources())


def test_the_fallback_is_used_only_where_no_rule_exists() -> None:
    assert rules.rule_for(torch.ops.aten.mm.default).__name__ == "matmul_rule"
    assert (
        rules.rule_for(torch.ops.aten.linalg_inv_ex.default).__name__
        == "dense_jacobian_rule"
    )


def test_zero_only_at_the_point_stays_an_edge() -> None:
    # d det(A) / dA is the cofactor matrix: zero off the diagonal of a diagonal
    # A, but an edge there (the probes find it), as in autograd's graph.
    a = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]], dtype=torch.float64)
    with cs.record(a) as graph:
        out = torch.linalg.det(a).sum()
    counts = graph.backward(out, "count")[a]
    assert torch.equal(counts, torch.zeros_like(a))  # one path from each element
    torch.testing.assert_close(
        graph.backward(out, "sum")[a], torch.tensor([[[2.0, 0.0], [0.0, 1.0]]]).double()
    )


def test_over_the_budget_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(dense_jacobian, "MAX_ENTRIES", 10)
    a = _spd(2, 2, seed=1)
    with cs.record(a) as graph:
        out = torch.linalg.inv(a).sum()
    with pytest.raises(
        cs.UnsupportedOpError,
        match=r"linalg_inv_ex.*\(8 × 8 entries\) is over the budget of 10",
    ):
        graph.backward(out, "sum")


def test_an_op_without_an_autograd_kernel_is_a_clear_error() -> None:
    # Autograd warns and treats it as constant; we refuse instead.
    lib = torch.library.Library("cs_test_dense", "DEF")  # noqa: F841 (kept alive)
    lib.define("opaque(Tensor x) -> Tensor")
    lib.impl("opaque", lambda x: x.detach() * 2, "CPU")
    x = torch.randn(3, dtype=torch.float64)
    with cs.record(x) as graph:
        out = (torch.ops.cs_test_dense.opaque(x) + x).sum()
    with pytest.raises(
        cs.UnsupportedOpError, match=r"cs_test_dense\.opaque.*differentiate"
    ):
        graph.backward(out, "sum")


def test_a_random_op_without_a_rule_is_refused_at_record_time() -> None:
    # rrelu in training draws its slopes: a rerun would differentiate other ones.
    x = torch.randn(4, 5, dtype=torch.float64)
    with pytest.raises(
        cs.UnsupportedOpError, match=r"rrelu_with_noise.*random numbers"
    ):
        with cs.record(x):
            nn.functional.rrelu(x, training=True).sum()
