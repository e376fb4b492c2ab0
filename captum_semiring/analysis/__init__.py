"""Analyses built on semiring sweeps: branch flow, the paper's reproductions, and the
comparison with ablation."""

from .ablation import (
    AblationComparison,
    compare_with_ablation,
    saturated_softmax_case,
    transformer_components,
)
from .branch_flow import TRANSFORMER_BRANCHES, transformer_branch

__all__ = ["TRANSFORMER_BRANCHES", "transformer_branch"]
__all__ += [
    "AblationComparison",
    "compare_with_ablation",
    "saturated_softmax_case",
    "transformer_components",
]
