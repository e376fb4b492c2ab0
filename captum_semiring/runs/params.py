"""Parameters as the sources of a dataset run: per example and per parameter group,
the semiring ⊕ over every element of the group's parameters (eq. 3), finalized.

A group is named by a pattern over ``model.named_parameters()`` names, or is one
module's own parameters (:data:`BY_MODULE`). With ``SumProduct`` a group's value is
the sum of the output's gradient over the group's elements; with ``MaxProduct`` it is
the best path from any element of the group; with ``Entropy`` the entropy of the
distribution over all paths that start in the group.

Parameters are shared by the examples of a batch, and a batch's output holds one
scalar per example: a sweep seeded at every example's output would add the flows of
all of them at each parameter element. So :func:`parameter_flow` records and sweeps
one example at a time, whatever the run's batch size.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from .. import record
from ..analysis.explain import (
    PER_TOKEN_SEMIRINGS,
    Example,
    Target,
    batch_target,
    forward_logits,
    stack_examples,
)
from ..analysis.models import LoadedModel

__all__ = ["BY_MODULE", "ParameterGroup", "parameter_groups", "parameter_flow"]

#: The entry of ``parameters`` that makes one group of each module's own parameters,
#: named by the module's path. It contains a hyphen, so no module path equals it.
BY_MODULE = "by-module"


@dataclass
class ParameterGroup:
    """Parameters whose flow is ⊕-ed into one value per example.

    Attributes:
        name: the pattern, or the module path for a :data:`BY_MODULE` group.
        names: the parameters' names, in ``named_parameters()`` order.
        parameters: the parameters.
    """

    name: str
    names: list[str]
    parameters: list[Tensor]

    @property
    def elements(self) -> int:
        """The number of scalar elements in the group."""
        return sum(p.numel() for p in self.parameters)


def _matches(pattern: str, name: str) -> bool:
    """Whether ``pattern`` (``fnmatch``; ``*`` may span dots) matches the parameter
    name or the path of a module above it."""
    parts = name.split(".")
    return any(
        fnmatch.fnmatchcase(".".join(parts[:end]), pattern)
        for end in range(1, len(parts) + 1)
    )


def parameter_groups(
    model: nn.Module, parameters: Sequence[str]
) -> list[ParameterGroup]:
    """The parameter groups that ``parameters`` names.

    Args:
        model: the model; names are those of ``model.named_parameters()`` (a shared
            parameter counts once, under its first name).
        parameters: each entry is a pattern, matched with ``fnmatch`` against each
            parameter's name and the module paths above it (``*`` may span dots):
            ``bert.encoder.layer.*.attention`` is one group holding every layer's
            attention parameters, ``*.LayerNorm`` every layer norm's; or
            :data:`BY_MODULE`, one group per module that owns parameters.

    Returns:
        The groups, in the order given (:data:`BY_MODULE` groups in module order).

    Raises:
        ValueError: an empty ``parameters``, a pattern that matches no parameter, or
            two groups of one name.

    Examples::

        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
        >>> [(g.name, g.names) for g in parameter_groups(net, ["0"])]
        [('0', ['0.weight', '0.bias'])]
        >>> [(g.name, g.elements) for g in parameter_groups(net, ["by-module", "*.bias"])]
        [('0', 9), ('2', 4), ('*.bias', 4)]
    """
    named = list(model.named_parameters())
    if not parameters:
        raise ValueError("parameters is empty: give a pattern or 'by-module'")
    groups: list[ParameterGroup] = []
    for spec in dict.fromkeys(parameters):
        if spec == BY_MODULE:
            by_module: dict[str, ParameterGroup] = {}
            for name, p in named:
                module = name.rpartition(".")[0] or name  # a root parameter: itself
                group = by_module.setdefault(module, ParameterGroup(module, [], []))
                group.names.append(name)
                group.parameters.append(p)
            groups += by_module.values()
            continue
        hits = [(name, p) for name, p in named if _matches(spec, name)]
        if not hits:
            some = ", ".join(repr(n) for n, _ in named[:3])
            raise ValueError(
                f"parameter pattern {spec!r} matches no parameter of the model; "
                f"names look like {some} (a leading '*' matches any prefix)"
            )
        groups.append(ParameterGroup(spec, [n for n, _ in hits], [p for _, p in hits]))
    seen: set[str] = set()
    for group in groups:
        if group.name in seen:
            raise ValueError(
                f"two parameter groups are named {group.name!r}; drop one of them"
            )
        seen.add(group.name)
    return groups


def parameter_flow(
    model: LoadedModel,
    example: Example,
    target: Target,
    groups: Sequence[ParameterGroup],
    semirings: Sequence[str],
    decompose: tuple[str, ...] = (),
) -> list[dict[str, float | int | str]]:
    """One example's flow from each parameter group to its explained output.

    Records the example alone (see the module's note on batches), sweeps once per
    semiring keeping only the parameters' values, and takes per group the semiring's
    own ⊕ (:meth:`~captum_semiring.Semiring.sum` over each parameter's elements,
    :meth:`~captum_semiring.Semiring.plus` across its parameters) before finalizing:
    the aggregated derivative of eq. 3.

    Args:
        model: the loaded model.
        example: the input.
        target: what is explained (the runner's :class:`Target` of the example).
        groups: from :func:`parameter_groups`.
        semirings: names of
            :data:`~captum_semiring.analysis.explain.PER_TOKEN_SEMIRINGS`.
        decompose: composite primitives recorded as their finer ops.

    Returns:
        Per group: ``group`` (its name), ``elements`` (its scalar count) and one
        float per semiring name.

    Examples::

        >>> import torch
        >>> from torch import nn
        >>> from captum_semiring.analysis.explain import prepare_target, token_example
        >>> from captum_semiring.analysis.models import from_module
        >>> _ = torch.manual_seed(0)
        >>> loaded = from_module(nn.Sequential(nn.Embedding(8, 3), nn.Flatten(),
        ...                                    nn.Linear(6, 2)))
        >>> ex = token_example(loaded, [1, 5])
        >>> target = prepare_target(loaded, ex, target_class=1)[0]
        >>> groups = parameter_groups(loaded.model, ["by-module"])
        >>> [r["group"] for r in parameter_flow(loaded, ex, target, groups, ["sum"])]
        ['0', '2']
    """
    ids, extra = stack_examples(model, [example])
    fn = batch_target([target])
    sources = list({id(p): p for g in groups for p in g.parameters}.values())
    with record(*sources, decompose=decompose) as graph:
        out = fn(forward_logits(model, ids, extra))
    rows: list[dict[str, float | int | str]] = [
        {"group": g.name, "elements": g.elements} for g in groups
    ]
    for name in semirings:
        sr = PER_TOKEN_SEMIRINGS[name]()
        # only the parameters' values are read: free the rest as the sweep goes
        result = graph.backward(out, sr, keep="sources")
        for row, group in zip(rows, groups, strict=True):
            total: Tensor | None = None
            for p in group.parameters:
                values = result.values(p).double()
                # ⊕ over the element axes (all but the leading semiring axis)
                values = sr.sum(values, list(range(1, values.dim())))
                total = values if total is None else sr.plus(total, values)
            assert total is not None  # a group has at least one parameter
            row[name] = float(sr.finalize(total).reshape(()))
    return rows
