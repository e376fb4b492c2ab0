"""The sweeps: one reverse (or forward) walk over the recorded ops, any semiring.

The environment maps node index to its accumulated semiring value; a node with no
entry is the symbolic zero, and ops whose outputs are all zero are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .semirings import Dims, Semiring, get_semiring

if TYPE_CHECKING:
    from ._capture import Graph
    from .paths import Path


def _accumulate(
    sr: Semiring, env: dict[int, Tensor], node: int, value: Tensor, dtype: torch.dtype
) -> None:
    if value.dtype != dtype:
        value = value.to(dtype)
    previous = env.get(node)
    env[node] = value if previous is None else sr.plus(previous, value)


def _plan(graph: Graph) -> list[tuple[Any, dict[int, int], dict[int, int]]]:
    """Per record: the record, input node by leaf, output node by position. Cached on
    the graph; a sweep then does no per-record bookkeeping of its own."""
    plan = graph._sweep_plan
    if plan is None or len(plan) != len(graph.records):
        plan = [(r, dict(r.inputs), dict(r.outputs)) for r in graph.records]
        graph._sweep_plan = plan
    return plan


@torch.no_grad()
def backward(graph: Graph, output: Tensor, semiring: Semiring | str) -> SemiringResult:
    sr = get_semiring(semiring)
    if not isinstance(output, Tensor):
        raise TypeError(f"output must be a tensor, got {type(output).__name__}")
    if output.dim() > 1:
        raise ValueError(
            f"output must hold one scalar per example, shape () or (batch,); got shape "
            f"{tuple(output.shape)}. Select a target first, for example out[:, 3]"
        )
    try:
        root = graph.node_of(output)
    except KeyError:
        raise ValueError(
            "the output was not computed from the sources inside the `with cs.record(...)` "
            "block, so no path leads to it"
        ) from None
    graph.check_unchanged()
    env: dict[int, Tensor] = {root: sr.ones(output.shape, output.detach())}
    nodes = graph.nodes
    # Ops none of whose outputs reach the output (dead branches, or ops recorded
    # after it) have no value: they are skipped before their local maps are built.
    for record, ins, outs in reversed(_plan(graph)):
        live = {p: env[n] for p, n in outs.items() if n in env}
        if not live:
            continue
        for (leaf, position), local in graph.local_maps(record).items():
            value = live.get(position)
            if value is not None:
                node = ins[leaf]
                _accumulate(sr, env, node, local.backward(sr, value), nodes[node].dtype)
    return SemiringResult(graph, sr, env, root, output)


@torch.no_grad()
def forward(graph: Graph, semiring: Semiring | str) -> SemiringResult:
    sr = get_semiring(semiring)
    graph.check_unchanged()
    env: dict[int, Tensor] = {}
    nodes = graph.nodes
    for sources in graph.sources.values():
        for node in sources:
            meta = nodes[node]
            env[node] = sr.ones(meta.shape, torch.empty((), dtype=meta.dtype))
    for record, ins, outs in _plan(graph):
        live = {leaf: env[n] for leaf, n in ins.items() if n in env}
        if not live:
            continue
        for (leaf, position), local in graph.local_maps(record).items():
            value = live.get(leaf)
            if value is not None:
                node = outs[position]
                _accumulate(sr, env, node, local.forward(sr, value), nodes[node].dtype)
    return SemiringResult(graph, sr, env, None, None)


class SemiringResult:
    """The semiring values of one sweep, for every recorded tensor.

    Index it with a source (tensor, module or :func:`~captum_semiring.layer_input`)
    or any tensor computed inside the recording to get finalized values.

    Examples::

        >>> import torch, captum_semiring as cs
        >>> x = torch.randn(2, 3)
        >>> lin = torch.nn.Linear(3, 1)
        >>> with cs.record(x) as graph:
        ...     out = torch.tanh(lin(x)).sum(-1)
        >>> res = graph.backward(out, "max")
        >>> res[x].shape, res.aggregate(x, dim=-1).shape
        (torch.Size([2, 3]), torch.Size([2]))
        >>> path = res.path(x, (0, 1))
        >>> abs(path.value - float(res[x][0, 1])) < 1e-6
        True
    """

    def __init__(
        self,
        graph: Graph,
        semiring: Semiring,
        env: dict[int, Tensor],
        root: int | None,
        output: Tensor | None,
    ) -> None:
        self.graph, self.semiring, self.env, self.root, self.output = (
            graph,
            semiring,
            env,
            root,
            output,
        )

    def values(self, item: Any) -> Tensor:
        """Raw semiring values ``(S, *shape)``; the semiring zero where nothing flows."""
        node = self.graph.node_of(item)
        value = self.env.get(node)
        if value is None:
            meta = self.graph.nodes[node]
            value = self.semiring.zeros(meta.shape, torch.empty((), dtype=meta.dtype))
        return value

    def __getitem__(self, item: Any) -> Tensor:
        return self.semiring.finalize(self.values(item))

    def aggregate(self, item: Any, dim: Dims) -> Tensor:
        r"""The aggregated derivative (eq. 3): :math:`\bigoplus` over ``dim`` of the
        source's axes, then finalize. ``dim`` counts the source's own axes."""
        values = self.values(item)
        dims = [dim] if isinstance(dim, int) else list(dim)
        axes = [d % (values.dim() - 1) + 1 for d in dims]
        return self.semiring.finalize(self.semiring.sum(values, axes))

    def flow(self, item: Any, forward: SemiringResult) -> Tensor:
        r"""Flow through each element: :math:`\mathrm{forward} \otimes \mathrm{backward}`,
        all paths from any source through it to the output, finalized."""
        return self.semiring.finalize(
            self.semiring.times(forward.values(item), self.values(item))
        )

    def path(self, item: Any, index: int | Sequence[int], rank: int = 0) -> Path:
        """The best path (or the ``rank``-th best, for TopK) from one source element.

        Args:
            item: the source (tensor, module or layer input).
            index: the element, as a tuple into the source or a flat int.
            rank: for :class:`~captum_semiring.TopK`, which of the k paths.
        """
        from .paths import trace_path

        return trace_path(self, item, index, rank)

    def branch_flow(self, item: Any, by: str = "module") -> Any:
        """Per consumer group of ``item``'s tensor, the flow into that group; see
        :func:`captum_semiring.analysis.branch_flow`."""
        from .analysis.branch_flow import branch_flow

        return branch_flow(self, item, by=by)

    def __repr__(self) -> str:
        return f"SemiringResult({self.semiring!r}, {len(self.env)} tensors reached)"
