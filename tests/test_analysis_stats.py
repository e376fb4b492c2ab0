"""The shared statistics and branch-flow grouping used by the reproductions."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import captum_semiring as cs
from captum_semiring.analysis.stats import mean_ci, spearman

scipy_stats = pytest.importorskip("scipy.stats")


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-5, 5), st.integers(-5, 5)), min_size=2, max_size=30)
)
def test_spearman_matches_scipy(pairs: list[tuple[int, int]]) -> None:
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    ours = spearman(a, b)
    if len(set(a)) < 2 or len(set(b)) < 2:
        assert ours is None
    else:
        assert ours == pytest.approx(scipy_stats.spearmanr(a, b).statistic, abs=1e-12)


def test_mean_ci_matches_t_free_normal_interval() -> None:
    x = torch.tensor([[1.0, 2.0], [3.0, 2.0], [5.0, 2.0]])
    mean, low, high = mean_ci(x)
    assert mean.tolist() == [3.0, 2.0]
    assert float(high[0] - mean[0]) == pytest.approx(1.96 * 2.0 / 3**0.5)
    assert float(high[1]) == float(low[1]) == 2.0


def test_grouped_merges_with_semiring_plus() -> None:
    torch.manual_seed(0)

    class Three(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = (torch.nn.Linear(4, 3) for _ in range(3))

        def forward(self, h: torch.Tensor) -> torch.Tensor:
            return self.a(h).sum(-1) - self.b(h).sum(-1) + 2 * self.c(h).sum(-1)

    x = torch.randn(1, 4)
    with cs.record(x) as graph:
        out = Three()(x)
    flow = graph.backward(out, cs.MaxProduct()).branch_flow(x)
    assert sorted(flow.labels) == ["a", "b", "c"]
    merged = flow.grouped(lambda label: "ab" if label in "ab" else None, ["ab", "none"])
    assert merged.labels == ["ab", "none"]
    per_group = dict(zip(flow.labels, flow.finalize(), strict=True))
    torch.testing.assert_close(
        merged.finalize()[0], torch.maximum(per_group["a"], per_group["b"])
    )
    assert torch.all(merged.finalize()[1] == 0)
