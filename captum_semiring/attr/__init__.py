"""Captum attribution classes for semiring backpropagation.

``IntegratedGradients(model)`` becomes ``TopGradientPath(model)`` or
``GradientEntropy(model)`` in one line; :class:`SemiringAttribution` takes any
semiring, and :class:`SemiringLayerAttribution` is the counterpart of
``LayerIntegratedGradients``.

Two helpers are public for modules that build their own sweeps with the same
conventions: :func:`select_output` (Captum's ``target`` selection down to one scalar per
example) and :func:`step_parameters` (integrated gradients' step sizes and alphas).
"""

from ._common import step_parameters
from ._functional import select_output, semiring_grad
from .layer import (
    LayerBranchFlow,
    SemiringLayerAttribution,
    SemiringLLMGradientAttribution,
)
from .semiring_attribution import GradientEntropy, SemiringAttribution, TopGradientPath

__all__ = [
    "semiring_grad",
    "select_output",
    "step_parameters",
    "SemiringAttribution",
    "TopGradientPath",
    "GradientEntropy",
    "SemiringLayerAttribution",
    "SemiringLLMGradientAttribution",
    "LayerBranchFlow",
]
