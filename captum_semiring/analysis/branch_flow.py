"""Branch flow of transformer layers: which consumer group is which branch (skip,
query, key, value), and mean-with-CI rows over sentences for tables and plots.

The flow itself is computed by :func:`captum_semiring.branch_flow.branch_flow`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from torch import Tensor

from .stats import mean_ci

if TYPE_CHECKING:
    pass


TRANSFORMER_BRANCHES = ("skip", "query", "key", "value")


def transformer_branch(label: str, layer_name: str) -> str | None:
    """Which of :data:`TRANSFORMER_BRANCHES` a consumer module of a BERT-style layer
    input belongs to: the ``query``/``key``/``value`` projections, or the residual add
    in ``attention.output`` (the skip connection); None for anything else."""
    for branch in ("query", "key", "value"):
        if label.endswith(f".{branch}"):
            return branch
    prefix = f"{layer_name}." if layer_name else ""
    return "skip" if label == f"{prefix}attention.output" else None


#: The two per-token summaries of a transformer branch flow, with their plot titles:
#: the paper's (the branch carrying the token's top path gets its value, the others
#: 0) and each branch's own ⊕ over the hidden dims.
AGGREGATION_TITLES = {
    "top-branch": "top-branch (paper's aggregation)",
    "branch-max": "branch-max (each branch's ⊕ over hidden)",
}
AGGREGATIONS = tuple(AGGREGATION_TITLES)


#: The columns of :func:`branch_ci_rows`' rows with ``layer``, ``token_group`` and
#: ``aggregation`` as their ``columns``, the CSV layout of fig4 and of run aggregates.
BRANCH_CI_COLUMNS = (
    "layer",
    "token_group",
    "branch",
    "aggregation",
    "mean",
    "ci_low",
    "ci_high",
    "n",
)


def branch_ci_rows(samples: Tensor, **columns: Any) -> list[dict[str, Any]]:
    """Table rows for per-example values of the :data:`TRANSFORMER_BRANCHES`
    (``samples``: n × 4): ``columns``, then each branch's mean over the examples with
    its 95% interval (``mean``, ``ci_low``, ``ci_high``) and ``n``."""
    mean, low, high = mean_ci(samples)
    return [
        {
            **columns,
            "branch": branch,
            "mean": float(mean[i]),
            "ci_low": float(low[i]),
            "ci_high": float(high[i]),
            "n": int(samples.shape[0]),
        }
        for i, branch in enumerate(TRANSFORMER_BRANCHES)
    ]


def bar_group(label: str, rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One group of bars for :func:`~captum_semiring.visualization.plot_branch_summary`
    from rows of :func:`branch_ci_rows`."""
    rows = list(rows)
    return {
        "label": label,
        "mean": {r["branch"]: r["mean"] for r in rows},
        "low": {r["branch"]: r["ci_low"] for r in rows},
        "high": {r["branch"]: r["ci_high"] for r in rows},
    }
