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

    def to_dict(self) -> dict[str, Any]:
        """The hop as JSON; :meth:`from_dict` inverts it exactly."""
        return {
            "op": self.op,
            "module": self.module,
            "index": list(self.index),
            "weight": json_float(self.weight),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hop:
        """The hop :meth:`to_dict` described."""
        return cls(
            data["op"],
            data["module"],
            tuple(data["index"]),
            float_from_json(data["weight"]),
        )


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

    def to_dict(self) -> dict[str, Any]:
        """The path as JSON (non-finite numbers as ``"NaN"``, ``"Infinity"``);
        :meth:`from_dict` gives back an equal path.

        Examples::

            >>> import json, torch, captum_semiring as cs
            >>> x = torch.tensor([[1.0, 2.0]])
            >>> with cs.record(x) as graph:
            ...     out = torch.tanh(3 * x).sum(-1)
            >>> path = graph.backward(out, "max").path(x, (0, 0))
            >>> [hop["op"] for hop in path.to_dict()["hops"]]
            ['aten.mul.Tensor', 'aten.tanh.default', 'aten.sum.dim_IntList']
            >>> cs.Path.from_dict(json.loads(json.dumps(path.to_dict()))) == path
            True
        """
        return {
            "value": json_float(self.value),
            "source": list(self.source),
            "hops": [hop.to_dict() for hop in self.hops],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Path:
        """The path :meth:`to_dict` described."""
        return cls(
            float_from_json(data["value"]),
            tuple(data["source"]),
            [Hop.from_dict(hop) for hop in data["hops"]],
        )

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


def json_float(x: float) -> float | str:
    """``x`` for strict JSON: finite numbers as they are (``json`` writes them
    exactly), the others as ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``.

    Examples::

        >>> from captum_semiring.paths import float_from_json, json_float
        >>> json_float(0.1), json_float(float("-inf")), float_from_json("-Infinity")
        (0.1, '-Infinity', -inf)
    """
    x = float(x)
    if math.isfinite(x):
        return x
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def float_from_json(x: float | str) -> float:
    """The number :func:`json_float` wrote."""
    return float(x)


class NoPathError(ValueError, RuntimeError):
    """No path (of the asked rank) leaves a source element: its value is the
    semiring zero there.

    Examples::

        >>> import torch, captum_semiring as cs
        >>> from captum_semiring.paths import NoPathError
        >>> x = torch.tensor([1.0, 2.0])
        >>> with cs.record(x) as graph:
        ...     out = x[0] * 3
        >>> try:
        ...     graph.backward(out, "max").path(x, 1)
        ... except NoPathError as err:
        ...     print(err)
        no path of rank 0 from source element (1,)
    """


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
            raise NoPathError(
                "no path leaves this element; its value is the semiring zero"
            )
        best = sr.best_edge(torch.cat(weights), torch.cat(candidates, dim=1), state)
        if best is None:
            raise NoPathError(
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
