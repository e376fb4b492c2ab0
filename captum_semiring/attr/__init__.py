"""Captum attribution classes for semiring backpropagation.

``IntegratedGradients(model)`` becomes ``TopGradientPath(model)`` or
``GradientEntropy(model)`` in one line; :class:`SemiringAttribution` takes any
semiring, and :class:`SemiringLayerAttribution` is the counterpart of
``LayerIntegratedGradients``.
"""

from ._functional import semiring_grad
from .layer import (
    LayerBranchFlow,
    SemiringLayerAttribution,
    SemiringLLMGradientAttribution,
)
from .semiring_attribution import GradientEntropy, SemiringAttribution, TopGradientPath

__all__ = [
    "semiring_grad",
    "SemiringAttribution",
    "TopGradientPath",
    "GradientEntropy",
    "SemiringLayerAttribution",
    "SemiringLLMGradientAttribution",
    "LayerBranchFlow",
]
