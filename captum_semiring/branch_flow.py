"""Branch flow: how much of a tensor's flow goes into each group of its consumers.

For an element t and a group c of consumer ops,
:math:`b(t, c) = \\bigoplus_{(t \\to v),\\, v \\in c} w(t, v) \\otimes B[v]`.
Grouping by module path separates a transformer layer input's query, key and value
projections from the residual (skip) connection.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ._engine import Sweep, local_maps
from .paths import float_from_json, json_float, module_label
from .semirings import Semiring


def keep_top_branch(per_group: Tensor, semiring: Semiring) -> Tensor:
    """The paper's aggregation of finalized per-group values ``(groups, ...)`` (one
    rank: TopK's best, see :meth:`Semiring.best`): the group with the best value
    keeps it, the others get 0."""
    winner = semiring.score(per_group).argmax(dim=0, keepdim=True)
    return torch.zeros_like(per_group).scatter(0, winner, per_group.gather(0, winner))


@dataclass
class BranchFlow:
    """Semiring flow per consumer group.

    Attributes:
        labels: one label per group (module path, or op name with ``by="op"``).
        values: raw semiring values, shape ``(groups, S, *tensor.shape)``.
        semiring: the semiring of the sweep.

    Its ``repr`` and notebook display list each group with its :meth:`totals` and
    :meth:`shares`.
    """

    labels: list[str]
    values: Tensor
    semiring: Semiring

    def to_dict(self) -> dict[str, Any]:
        """The branch flow as JSON: labels, semiring (:meth:`Semiring.to_dict`) and the
        raw values as dtype, shape and flat data (non-finite numbers as ``"NaN"``,
        ``"Infinity"``, ``"-Infinity"``). :meth:`from_dict` gives back equal values,
        on the CPU.

        Examples::

            >>> import json, torch, captum_semiring as cs
            >>> x = torch.tensor([[1.0, -2.0]])
            >>> with cs.record(x) as graph:
            ...     out = (torch.tanh(x) + 3 * x).sum(-1)
            >>> flow = graph.backward(out, "max").branch_flow(x, by="op")
            >>> flow.labels
            ['aten.tanh.default', 'aten.mul.Tensor']
            >>> again = cs.BranchFlow.from_dict(json.loads(json.dumps(flow.to_dict())))
            >>> again.labels == flow.labels and torch.equal(again.values, flow.values)
            True
        """
        return {
            "labels": list(self.labels),
            "semiring": self.semiring.to_dict(),
            "values": {
                "dtype": str(self.values.dtype).removeprefix("torch."),
                "shape": list(self.values.shape),
                "data": [json_float(v) for v in self.values.reshape(-1).tolist()],
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BranchFlow:
        """The branch flow :meth:`to_dict` described."""
        values = data["values"]
        data_ = [float_from_json(v) for v in values["data"]]
        tensor = torch.tensor(data_, dtype=getattr(torch, values["dtype"]))
        return cls(
            list(data["labels"]),
            tensor.reshape(values["shape"]),
            Semiring.from_dict(data["semiring"]),
        )

    def finalize(self) -> Tensor:
        """Finalized flow per group: ``(groups, *tensor.shape)``."""
        return torch.stack([self.semiring.finalize(v) for v in self.values])

    def aggregate(self, dim: int | list[int]) -> Tensor:
        """⊕ over the tensor's ``dim`` within each group, then finalize."""
        dims = [dim] if isinstance(dim, int) else list(dim)
        nd = self.values.dim() - 2
        axes = [d % nd + 1 for d in dims]
        return torch.stack(
            [self.semiring.finalize(self.semiring.sum(v, axes)) for v in self.values]
        )

    def top_branch(self, dim: int | list[int]) -> Tensor:
        """The paper's aggregation: per position, the group carrying the best path over
        ``dim`` gets that path's value and the other groups get 0. "Best" follows the
        semiring: most negative for ``MaxProduct("negative")``, largest magnitude for
        ``"absolute"``, largest otherwise."""
        per_group = self.aggregate(dim)
        best = torch.stack([self.semiring.best(v) for v in per_group])
        return keep_top_branch(best, self.semiring)

    def grouped(
        self, key: Callable[[str], str | None], names: Sequence[str]
    ) -> BranchFlow:
        """Groups merged by ``key(label)`` with ⊕, one per entry of ``names`` and in
        that order. Labels whose key is not in ``names`` are dropped; a name that no
        label maps to gets the semiring zero."""
        sr, merged = self.semiring, []
        for name in names:
            rows = [i for i, label in enumerate(self.labels) if key(label) == name]
            if rows:
                merged.append(sr.sum(self.values[rows].movedim(0, 1), 1))
            else:
                merged.append(sr.zeros(self.values.shape[2:], self.values))
        return BranchFlow(list(names), torch.stack(merged), sr)

    def totals(self) -> Tensor:
        """Per group, ⊕ over every element of the tensor (the batch included), then
        finalized; TopK keeps its best path (:meth:`Semiring.best`). Shape
        ``(groups,)``."""
        nd = self.values.dim() - 2
        whole = self.aggregate(list(range(nd))) if nd else self.finalize()
        return torch.stack([self.semiring.best(v) for v in whole])

    def shares(self) -> Tensor:
        """Per group, the fraction of the tensor's elements whose best flow (the
        paper's top branch) enters through it, among the elements with any flow.
        Shape ``(groups,)``; the shares add up to 1, or are all 0 without flow."""
        sr = self.semiring
        per_element = self.finalize()
        best = torch.stack([sr.best(v) for v in per_element]).flatten(1)
        none = sr.best(sr.finalize(sr.zeros((), self.values)))
        flowing = (best != none).any(dim=0)
        winner = sr.score(best).argmax(dim=0)
        counts = torch.stack([(winner[flowing] == g).sum() for g in range(len(best))])
        return counts.to(torch.float64) / max(int(flowing.sum()), 1)

    def _rows(self) -> list[tuple[str, float, float]]:
        if not self.labels:
            return []
        totals, shares = self.totals().tolist(), self.shares().tolist()
        return [
            (module_label(label), total, share)
            for label, total, share in zip(self.labels, totals, shares)
        ]

    def _header(self) -> str:
        groups = len(self.labels)
        shape = tuple(self.values.shape[2:])
        return (
            f"{self.semiring!r}, {groups} group{'s' if groups != 1 else ''} "
            f"over a tensor of shape {shape}"
        )

    def __repr__(self) -> str:
        rows = self._rows()
        lines = [f"BranchFlow({self._header()})"]
        if rows:
            width = max(len("group"), *(len(label) for label, _, _ in rows))
            lines.append(f"  {'group':{width}s}  {'total':>10s}  top branch")
            for label, total, share in rows:
                lines.append(f"  {label:{width}s}  {total:>10.4g}  {share:>10.1%}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        body = "".join(
            f"<tr><td>{html.escape(label)}</td><td>{total:.4g}</td>"
            f"<td>{share:.1%}</td></tr>"
            for label, total, share in self._rows()
        )
        return (
            '<table class="captum-semiring-branch-flow">'
            f"<caption>BranchFlow: {html.escape(self._header())}</caption>"
            "<thead><tr><th>group</th><th>total (⊕ over all elements)</th>"
            "<th>top branch (share of elements)</th></tr></thead>"
            f"<tbody>{body}</tbody></table>"
        )


#: The four branches a transformer layer's input feeds (Fig. 2 of the paper).


@torch.no_grad()
def branch_flow(result: Sweep, item: Any, by: str = "module") -> BranchFlow:
    """The flow from ``item``'s tensor into each group of its consumers.

    Args:
        result: a backward sweep.
        item: a source, module (its output) or recorded tensor.
        by: ``"module"`` groups consumers by the module path they ran in, ``"op"``
            by their ATen overload.

    Returns:
        A :class:`BranchFlow`.
    """
    if by not in ("module", "op"):
        raise ValueError(f"by must be 'module' or 'op', got {by!r}")
    result.require_every_value("branch flow")  # it reads the consumers' values
    graph, sr = result.graph, result.semiring
    node = graph.node_of(item)
    groups: dict[str, Tensor] = {}
    for record, leaf in graph.consumers.get(node, ()):
        outs = dict(record.outputs)
        for (map_leaf, position), local in local_maps(graph, record).items():
            value = result.value(outs[position])
            if map_leaf != leaf or value is None:
                continue
            label = record.module if by == "module" else record.op_name
            flow = local.backward(sr, value).to(graph.nodes[node].dtype)
            groups[label] = (
                flow if label not in groups else sr.plus(groups[label], flow)
            )
    if not groups:
        meta = graph.nodes[node]
        return BranchFlow(
            [],
            sr.zeros((0, *meta.shape), torch.empty((), dtype=meta.dtype)).movedim(1, 0),
            sr,
        )
    labels = list(groups)
    return BranchFlow(labels, torch.stack([groups[k] for k in labels]), sr)
