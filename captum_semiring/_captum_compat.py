"""The one place that imports Captum's private helpers.

Captum's underscore helpers change between releases (the project pins
``captum>=0.9,<0.10``). Everything the attribution classes need from them is imported
here and re-exported under plain names, so a Captum upgrade is a change to this file
only. The public Captum names (base classes, ``log_usage``) are re-exported too, so the
attribution modules import Captum from one place.

The type names of Captum's ``attribute`` signatures (``TargetType``, ``BaselineType``,
``TensorOrTupleOfTensorsGeneric``) live in the private ``captum._utils.typing``; they
are re-exported here so that the attribution classes are typed exactly as Captum's.
"""

from __future__ import annotations

import sys
import typing
from collections.abc import Iterable
from typing import TypeVar

from captum._utils.common import (
    _expand_additional_forward_args as expand_additional_forward_args,
)
from captum._utils.common import _expand_target as expand_target
from captum._utils.common import (
    _format_additional_forward_args as format_additional_forward_args,
)
from captum._utils.common import _format_output as format_output
from captum._utils.common import _format_outputs as format_outputs
from captum._utils.common import _run_forward as run_forward
from captum._utils.common import _select_targets as select_targets
from captum._utils.progress import IterableProgress, Progress
from captum._utils.progress import progress as _captum_progress
from captum._utils.typing import BaselineType, TargetType, TensorOrTupleOfTensorsGeneric
from captum.attr import GradientAttribution, LayerAttribution, LLMGradientAttribution
from captum.attr._utils.approximation_methods import (
    SUPPORTED_METHODS as APPROXIMATION_METHODS,
)
from captum.attr._utils.approximation_methods import approximation_parameters
from captum.attr._utils.batching import _batch_attribution as batch_attribution
from captum.log import log_usage

__all__ = [
    "APPROXIMATION_METHODS",
    "BaselineType",
    "GradientAttribution",
    "LLMGradientAttribution",
    "LayerAttribution",
    "Progress",
    "TargetType",
    "TensorOrTupleOfTensorsGeneric",
    "approximation_parameters",
    "batch_attribution",
    "expand_additional_forward_args",
    "expand_target",
    "format_additional_forward_args",
    "format_output",
    "format_outputs",
    "log_usage",
    "progress",
    "run_forward",
    "select_targets",
]

T = TypeVar("T")


@typing.overload
def progress(
    iterable: None = None,
    *,
    desc: str,
    total: int | None = None,
    unit: str = "it",
    show: bool,
) -> Progress: ...


@typing.overload
def progress(
    iterable: Iterable[T],
    *,
    desc: str,
    total: int | None = None,
    unit: str = "it",
    show: bool,
) -> IterableProgress[T]: ...


def progress(
    iterable: Iterable[T] | None = None,
    *,
    desc: str,
    total: int | None = None,
    unit: str = "it",
    show: bool,
) -> Progress | IterableProgress[T]:
    """Captum's progress bar (``tqdm.auto``, as its ``show_progress`` uses) on
    stderr; with ``show=False`` it is tqdm's disabled bar, which prints nothing."""
    return _captum_progress(
        iterable, desc=desc, total=total, file=sys.stderr, unit=unit, disable=not show
    )
