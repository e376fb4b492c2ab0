"""captum-semiring: semiring backpropagation for any PyTorch model, through Captum.

The Captum attribution classes and :func:`attribute_dataset` load on first use:
Captum imports matplotlib and more, which the engine alone does not need.
"""

from typing import TYPE_CHECKING, Any

from ._capture import Graph, record
from ._record import LayerInput, OpRecord, RecordingError, layer_input
from .branch_flow import BranchFlow
from .paths import Hop, Path, merge_paths
from .result import SemiringResult
from .rules import UnsupportedOpError, register_decomposition, register_rule
from .saved import SavedResult, load_result
from .semirings import (
    Entropy,
    LogSum,
    MaxProduct,
    PathCount,
    Semiring,
    SumProduct,
    TopK,
    get_semiring,
)

if TYPE_CHECKING:
    from . import circuits
    from .attr import (
        GradientEntropy,
        LayerBranchFlow,
        SemiringAttribution,
        SemiringLayerAttribution,
        SemiringLLMGradientAttribution,
        TopGradientPath,
        semiring_grad,
    )
    from .runs import attribute_dataset

__version__ = "0.1.0"

_FROM_ATTR = (
    "semiring_grad",
    "SemiringAttribution",
    "TopGradientPath",
    "GradientEntropy",
    "SemiringLayerAttribution",
    "SemiringLLMGradientAttribution",
    "LayerBranchFlow",
)


def __getattr__(name: str) -> Any:
    # Lazy re-exports: the public name lives in a layer above this module, which
    # builds on the engine; it is loaded only when asked for.
    if name in _FROM_ATTR:
        from . import attr

        return getattr(attr, name)
    if name == "attribute_dataset":
        from . import runs

        return runs.attribute_dataset
    if name == "circuits":
        import importlib

        return importlib.import_module(".circuits", __name__)
    raise AttributeError(f"module 'captum_semiring' has no attribute {name!r}")


__all__ = [
    "record",
    "layer_input",
    "Graph",
    "LayerInput",
    "OpRecord",
    "SemiringResult",
    "SavedResult",
    "load_result",
    "BranchFlow",
    "Path",
    "Hop",
    "merge_paths",
    "Semiring",
    "SumProduct",
    "MaxProduct",
    "Entropy",
    "LogSum",
    "PathCount",
    "TopK",
    "get_semiring",
    "register_rule",
    "register_decomposition",
    "RecordingError",
    "UnsupportedOpError",
    "semiring_grad",
    "SemiringAttribution",
    "TopGradientPath",
    "GradientEntropy",
    "SemiringLayerAttribution",
    "SemiringLLMGradientAttribution",
    "LayerBranchFlow",
    "attribute_dataset",
    "circuits",
]
