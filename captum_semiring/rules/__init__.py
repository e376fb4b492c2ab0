"""The rule registry: for each ATen overload, how to build its local maps, and the
per-op facts the recorder asks for.

A rule takes an :class:`~captum_semiring._record.OpRecord` and returns a dict that
maps ``(input leaf position, output position)`` to a
:class:`~captum_semiring.rules._maps.LocalMap`. Ops tagged ``torch.Tag.pointwise``
share one generic rule. Decompositions registered here split an op into recorded
pieces (for example convolution into im2col and a matmul). The facts: which ops
only copy elements (:func:`only_copies`), which have float outputs that do not
depend on the values read (:func:`is_constant`), which in-place ops change only
metadata (:func:`changes_metadata_only`), and each in-place op's out-of-place form
(:func:`out_of_place`).

Examples::

    >>> import torch
    >>> from captum_semiring.rules import register_rule, rule_for
    >>> rule_for(torch.ops.aten.mm.default).__name__
    'matmul_rule'
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from .._record import OpRecord

if TYPE_CHECKING:
    from ._maps import LocalMap

Rule = Callable[[OpRecord], "Mapping[tuple[int, int], LocalMap]"]

_RULES: dict[Any, Rule] = {}
_DECOMPOSITIONS: dict[Any, Callable[..., Any]] = {}
_COPIES: set[Any] = set()
_CONSTANT: set[Any] = set()


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


def register_rule(*ops: Any, copies: bool = False) -> Callable[[Rule], Rule]:
    """Register a rule for ATen overloads (a packet registers all its overloads).

    ``copies=True`` says the ops only copy or view elements, so no NaN can first
    appear in their outputs. The decorated function is returned unchanged.
    Registering an op twice raises.
    """

    def decorate(rule: Rule) -> Rule:
        for op in _overloads(ops):
            if op in _RULES:
                raise ValueError(f"a rule for {op} is already registered")
            _RULES[op] = rule
            if copies:
                _COPIES.add(op)
        return rule

    return decorate


def register_constant(*ops: Any) -> None:
    """Declare ops whose float outputs do not depend on the values they read
    (``zeros_like``, ``detach``, random draws): autograd does not track them, so a
    path ends there."""
    _CONSTANT.update(_overloads(ops))


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
    """The rule for ``op``: its registered rule, the generic pointwise rule, or
    else the dense-Jacobian fallback (:mod:`.dense_jacobian`).

    The rule is wrapped so that tensors with no elements never reach it: they have
    no edges (a zero-size batch, an empty inner dimension)."""
    rule = _RULES.get(op)
    if rule is None:
        rule = (
            pointwise.pointwise_rule
            if _is_pointwise(op)
            else dense_jacobian.dense_jacobian_rule
        )
    guarded = _GUARDED.get(rule)
    if guarded is None:
        guarded = _GUARDED[rule] = _skip_empty(rule)
    return guarded


_GUARDED: dict[Rule, Rule] = {}


def _skip_empty(rule: Rule) -> Rule:
    @functools.wraps(rule)
    def guarded(call: OpRecord) -> Mapping[tuple[int, int], LocalMap]:
        leaves, outs = call.leaves, call.out_leaves
        if all(outs[p].numel() for p, _ in call.outputs) and all(
            leaves[i].numel() for i, _ in call.inputs
        ):
            return rule(call)
        if not any(outs[p].numel() for p, _ in call.outputs):
            return {}
        inputs = [(i, n) for i, n in call.inputs if leaves[i].numel()]
        if not inputs:
            return {}
        return rule(dataclasses.replace(call, inputs=inputs))

    return guarded


def decomposition_for(op: Any) -> Callable[..., Any] | None:
    return _DECOMPOSITIONS.get(op)


def only_copies(op: Any) -> bool:
    """Whether ``op`` only copies or views elements (registered ``copies=True``)."""
    return op in _COPIES


def is_constant(op: Any) -> bool:
    """Whether ``op``'s float outputs do not depend on the values read."""
    return op in _CONSTANT


_METADATA_ONLY: dict[Any, bool] = {}


def changes_metadata_only(op: Any) -> bool:
    """Whether in-place ``op`` changes only shape or strides, never data (the ops
    PyTorch tags ``inplace_view``: ``transpose_``, ``unsqueeze_``, ...)."""
    found = _METADATA_ONLY.get(op)
    if found is None:
        found = _METADATA_ONLY[op] = torch.Tag.inplace_view in getattr(op, "tags", ())
    return found


_WRITES_RESULT: dict[Any, bool] = {}


def writes_its_result(op: Any) -> bool:
    """Whether ``op`` writes its result into an argument (``add_``, ``copy_``,
    ``out=`` forms), as opposed to also updating side state, as batch norm's
    running statistics are."""
    found = _WRITES_RESULT.get(op)
    if found is None:
        name = op._schema.name.split("::")[-1]
        found = _WRITES_RESULT[op] = (
            name.endswith("_")
            or torch.Tag.inplace in op.tags
            or any(
                a.alias_info is not None and a.alias_info.is_write
                for a in op._schema.returns
            )
        )
    return found


def out_of_place(op: Any) -> Any | None:
    """The out-of-place overload of in-place ``op`` (``add_.Tensor`` to
    ``add.Tensor``), by ATen's naming convention: same name without the trailing
    underscore, same overload name, or else the overload with as many arguments."""
    name = op._schema.name.split("::")[-1]
    if not name.endswith("_"):
        return None
    packet = getattr(torch.ops.aten, name[:-1], None)
    if packet is None:
        return None
    overload = getattr(packet, op._overloadname, None)
    if overload is not None:
        return overload
    n_args = len(op._schema.arguments)
    for overload_name in packet.overloads():
        candidate = getattr(packet, overload_name)
        if len(candidate._schema.arguments) == n_args:
            return candidate
    return None


from . import (  # noqa: E402
    attention,
    constants,
    contractions,
    dense_jacobian,
    embedding_bag,
    index_maps,
    pointwise,
    reductions,
    rowwise,
    scatter,
    selection,
)

__all__ = [
    "register_rule",
    "register_decomposition",
    "rule_for",
    "has_rule",
    "decomposition_for",
    "register_constant",
    "only_copies",
    "is_constant",
    "changes_metadata_only",
    "out_of_place",
    "writes_its_result",
    "UnsupportedOpError",
    "attention",
    "constants",
    "embedding_bag",
    "contractions",
    "dense_jacobian",
    "index_maps",
    "pointwise",
    "reductions",
    "rowwise",
    "scatter",
    "selection",
]
