"""Library analyses built on semiring sweeps: branch flow and its aggregation, the
comparison with ablation, statistics (:mod:`.stats`) and output helpers (:mod:`.io`).
The paper's experiments live in :mod:`captum_semiring.reproductions`."""

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
