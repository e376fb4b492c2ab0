"""Single paths: recover the best (or k-th best) path the Viterbi way.

The sweep keeps only values. To follow a path, each step recomputes the local edges out
of the current element and picks the one whose extension reproduces the value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ._engine import Sweep, local_maps


@dataclass(frozen=True)
class Hop:
    """One edge of a path, named by the op output it arrives at.

    Attributes:
        op: the ATen overload, e.g. ``"aten.addmm.default"``.
        module: dotted module path where the op ran ("" at the top level).
        index: the element of the op's output (a tuple).
        weight: the local derivative along this edge.
    """

    op: str
    module: str
    index: tuple[int, ...]
    weight: float


@dataclass
class Path:
    """A path from a source element to the output.

    Attributes:
        value: the path product, which equals the product of ``hops`` weights.
        source: the source element (a tuple index).
        hops: the edges in order from the source to the output.
    """

    value: float
    source: tuple[int, ...]
    hops: list[Hop] = field(default_factory=list)

    def product(self) -> float:
        return math.prod(h.weight for h in self.hops)

    def modules(self) -> list[str]:
        """Module paths along the path, consecutive repeats merged."""
        names: list[str] = []
        for hop in self.hops:
            if not names or names[-1] != hop.module:
                names.append(hop.module)
        return names

    def to_networkx(self) -> Any:
        """The path as a ``networkx.DiGraph`` whose nodes are (op, module, index)."""
        import networkx as nx

        g = nx.DiGraph()
        previous: Any = ("source", "", self.source)
        g.add_node(previous)
        for hop in self.hops:
            node = (hop.op, hop.module, hop.index)
            g.add_edge(previous, node, weight=hop.weight)
            previous = node
        return g

    def __str__(self) -> str:
        lines = [f"path value {self.value:.6g} from source{list(self.source)}"]
        for hop in self.hops:
            where = hop.module or "<top>"
            lines.append(
                f"  -> {where:40s} {hop.op:32s} {list(hop.index)}  x {hop.weight:.4g}"
            )
        return "\n".join(lines)


def _flat_index(index: int | Sequence[int], shape: Sequence[int]) -> int:
    if isinstance(index, int):
        size = math.prod(shape)
        if not 0 <= index < size:
            raise IndexError(
                f"flat index {index} is out of range for a source of shape "
                f"{tuple(shape)} ({size} elements)"
            )
        return index
    index = tuple(index)
    if len(index) != len(shape):
        raise IndexError(f"index {index} does not fit a source of shape {tuple(shape)}")
    flat = 0
    for i, n in zip(index, shape, strict=True):
        if not -n <= i < n:
            raise IndexError(f"index {index} is out of range for shape {tuple(shape)}")
        flat = flat * n + (i % n)
    return flat


def _unravel(flat: int, shape: Sequence[int]) -> tuple[int, ...]:
    out = []
    for n in reversed(shape):
        out.append(flat % n)
        flat //= n
    return tuple(reversed(out))


@torch.no_grad()
def trace_path(
    result: Sweep, item: Any, index: int | Sequence[int], rank: int = 0
) -> Path:
    """The best (or ``rank``-th best) path from one element of ``item`` to the
    output of a backward sweep."""
    sr = result.semiring
    if not sr.has_paths:
        raise TypeError(f"{sr!r} does not single out paths; use MaxProduct or TopK")
    graph = result.graph
    node = graph.node_of(item)
    shape = graph.nodes[node].shape
    flat = _flat_index(index, shape)
    values = result.values(item).reshape(sr.size, -1)[:, flat]
    state = sr.start_state(values, rank)
    if not 0 <= state < sr.size:
        raise IndexError(f"rank {rank} is out of range for {sr!r}")
    path = Path(value=0.0, source=_unravel(flat, shape))
    while True:
        edges = []  # (record, output node, flat output indices, weights)
        for record, leaf in graph.consumers.get(node, ()):
            out_nodes = dict(record.outputs)
            for (map_leaf, position), local in local_maps(graph, record).items():
                target = out_nodes[position]
                if map_leaf != leaf or target not in result.env:
                    continue
                like = result.env[target]
                out_index, edge_weights = local.edges_from(flat, like)
                edges.append((record, target, out_index, edge_weights))
        weights = [w for *_, w in edges]
        candidates = [result.env[t].reshape(sr.size, -1)[:, i] for _, t, i, _ in edges]
        if node == result.root:
            like = result.env[node]
            weights.append(like.new_ones(1))
            candidates.append(sr.ones((1,), like))
        if not weights:
            raise RuntimeError(
                "no path leaves this element; its value is the semiring zero"
            )
        best = sr.best_edge(torch.cat(weights), torch.cat(candidates, dim=1), state)
        if best is None:
            raise ValueError(
                f"no path of rank {rank} from source element {path.source}"
            )
        choice, state, value = best
        if not path.hops:
            path.value = value
        for record, target, out_index, w in edges:
            if choice < w.numel():
                out_flat = int(out_index[choice])
                out_shape = graph.nodes[target].shape
                path.hops.append(
                    Hop(
                        record.op_name,
                        record.module,
                        _unravel(out_flat, out_shape),
                        float(w[choice]),
                    )
                )
                node, flat = target, out_flat
                break
            choice -= w.numel()
        else:
            return path
