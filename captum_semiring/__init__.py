"""captum-semiring: semiring backpropagation for any PyTorch model, through Captum."""

from ._capture import Graph, record
from ._record import LayerInput, OpRecord, RecordingError, layer_input
from .attr import (
    GradientEntropy,
    LayerBranchFlow,
    SemiringAttribution,
    SemiringLayerAttribution,
    SemiringLLMGradientAttribution,
    TopGradientPath,
    semiring_grad,
)
from .branch_flow import BranchFlow
from .paths import Hop, Path
from .result import SemiringResult
from .rules import UnsupportedOpError, register_decomposition, register_rule
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

__version__ = "0.1.0"

__all__ = [
    "record",
    "layer_input",
    "Graph",
    "LayerInput",
    "OpRecord",
    "SemiringResult",
    "BranchFlow",
    "Path",
    "Hop",
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
]
