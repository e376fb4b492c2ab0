"""The rule registry: for each ATen overload, how to build its local maps.

A rule takes an :class:`~captum_semiring._capture.OpRecord` and returns a dict that
maps ``(input leaf position, output position)`` to a
:class:`~captum_semiring.rules._maps.LocalMap`. Ops tagged ``torch.Tag.pointwise``
share one generic rule. Decompositions registered here split an op into recorded
pieces (for example convolution into im2col and a matmul).

Examples::

    >>> import torch
    >>> from captum_semiring.rules import register_rule, rule_for
    >>> rule_for(torch.ops.aten.mm.default).__name__
    'matmul_rule'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Rule = Callable[[Any], dict]

_RULES: dict[Any, Rule] = {}
_DECOMPOSITIONS: dict[Any, Callable[..., Any]] = {}


class UnsupportedOpError(NotImplementedError):
    """An op read a tracked tensor, but it has neither a rule nor a decomposition."""


def _overloads(ops: tuple[Any, ...]) -> list[Any]:
    result: list[Any] = []
    for op in ops:
        if isinstance(op, torch._ops.OpOverloadPacket):
            result.extend(getattr(op, name) for name in op.overloads())
        else:
            result.append(op)
    return result


def register_rule(*ops: Any) -> Callable[[Rule], Rule]:
    """Register a rule for ATen overloads (a packet registers all its overloads).

    The decorated function is returned unchanged. Registering an op twice raises.
    """

    def decorate(rule: Rule) -> Rule:
        for op in _overloads(ops):
            if op in _RULES:
                raise ValueError(f"a rule for {op} is already registered")
            _RULES[op] = rule
        return rule

    return decorate


def register_decomposition(
    *ops: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a function that computes an op from ops that have rules."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for op in _overloads(ops):
            if op in _DECOMPOSITIONS:
                raise ValueError(f"a decomposition for {op} is already registered")
            _DECOMPOSITIONS[op] = fn
        return fn

    return decorate


_POINTWISE: dict[Any, bool] = {}


def _is_pointwise(op: Any) -> bool:
    # Reading ``op.tags`` builds a list each time; the answer never changes.
    found = _POINTWISE.get(op)
    if found is None:
        found = _POINTWISE[op] = torch.Tag.pointwise in getattr(op, "tags", ())
    return found


def has_rule(op: Any) -> bool:
    return op in _RULES or _is_pointwise(op)


def rule_for(op: Any) -> Rule:
    """The rule for ``op``; raises :class:`UnsupportedOpError` naming it if none."""
    rule = _RULES.get(op)
    if rule is not None:
        return rule
    if _is_pointwise(op):
        return pointwise.pointwise_rule
    raise UnsupportedOpError(f"no semiring rule for {op}")


def decomposition_for(op: Any) -> Callable[..., Any] | None:
    return _DECOMPOSITIONS.get(op)


from . import contractions, index_maps, pointwise, reductions, rowwise  # noqa: E402

__all__ = [
    "register_rule",
    "register_decomposition",
    "rule_for",
    "has_rule",
    "decomposition_for",
    "UnsupportedOpError",
    "contractions",
    "index_maps",
    "pointwise",
    "reductions",
    "rowwise",
]
