"""The result of a sweep: finalized values, eq. 3 aggregation, flows, paths and
branch flow for any recorded tensor."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path as FilePath
from typing import Any

from torch import Tensor

from ._engine import Sweep
from .branch_flow import BranchFlow, branch_flow
from .paths import Path, trace_path
from .saved import PathsWanted, SavedResult, summarize
from .semirings import Dims


class SemiringResult(Sweep):
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

    def __init__(self, sweep: Sweep) -> None:
        super().__init__(
            sweep.graph,
            sweep.semiring,
            sweep.env,
            sweep.root,
            sweep.output,
            sweep.kept,
            sweep.checkpoints,
        )

    def __getitem__(self, item: Any) -> Tensor:
        return self.semiring.finalize(self.values(item))

    def aggregate(self, item: Any, dim: Dims) -> Tensor:
        r"""The aggregated derivative (eq. 3): :math:`\bigoplus` over ``dim`` of the
        source's axes, then finalize. ``dim`` counts the source's own axes."""
        values = self.values(item)
        dims = [dim] if isinstance(dim, int) else list(dim)
        ndim = values.dim() - 1
        for d in dims:
            if not -ndim <= d < ndim:
                raise IndexError(
                    f"aggregate dim {d} is out of range for a source with {ndim} axes"
                )
        axes = [d % ndim + 1 for d in dims]
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
        return trace_path(self, item, index, rank)

    def branch_flow(self, item: Any, by: str = "module") -> BranchFlow:
        """Per consumer group of ``item``'s tensor, the flow into that group; see
        :func:`captum_semiring.branch_flow.branch_flow`."""
        return branch_flow(self, item, by=by)

    def summary(
        self,
        paths: PathsWanted | bool | None = None,
        branch_flow: Sequence[Any] | bool = False,
    ) -> SavedResult:
        """The finalized values of every source, top paths and branch flow, as a
        :class:`~captum_semiring.SavedResult` that needs neither model nor recording.

        Args:
            paths: which elements' top paths to keep. ``None`` (the default): the
                best element of each example of every source, where the semiring has
                paths (MaxProduct, TopK: all k ranks). A mapping: source (name,
                position, or the tensor, module or layer input) to element indices.
                ``False``: none.
            branch_flow: the sources whose :meth:`branch_flow` to keep (names,
                positions or items), ``True`` for all, ``False`` (default) for none.
        """
        return summarize(self, paths, branch_flow)

    def save(
        self,
        path: str | os.PathLike[str],
        paths: PathsWanted | bool | None = None,
        branch_flow: Sequence[Any] | bool = False,
    ) -> FilePath:
        """Save :meth:`summary` into the directory ``path`` (``summary.json`` and
        ``tensors.pt``); :func:`~captum_semiring.load_result` reads it back. To keep
        the whole result instead (recording included), pickle it or ``torch.save``
        it: a loaded one is indexed by source name or node index, not by tensor."""
        return self.summary(paths, branch_flow).save(path)

    def __repr__(self) -> str:
        return f"SemiringResult({self.semiring!r}, {len(self.env)} tensors reached)"

    def _repr_html_(self) -> str:
        """Notebook display: per source, its shape and the range of its finalized
        values."""
        rows = []
        for name, nodes in self.graph.named_sources():
            if not nodes:
                continue
            value = self.semiring.finalize(self.values(nodes[0]))
            finite = value[value.isfinite()]
            low, high = (
                (f"{float(finite.min()):.4g}", f"{float(finite.max()):.4g}")
                if finite.numel()
                else ("", "")
            )
            rows.append(
                f"<tr><td>{html.escape(name)}</td><td>{tuple(value.shape)}</td>"
                f"<td>{low}</td><td>{high}</td></tr>"
            )
        return (
            f"<div><b>SemiringResult</b> ({html.escape(repr(self.semiring))}, "
            f"{len(self.env)} tensors reached)<table><tr><th>source</th><th>shape</th>"
            f"<th>min</th><th>max</th></tr>{''.join(rows)}</table></div>"
        )
