"""Single paths: recover the best (or k-th best) path the Viterbi way.

The sweep keeps only values. To follow a path, each step recomputes the local edges out
of the current element and picks the one whose extension reproduces the value.
Paths print hop by hop, display as a table in notebooks, and export to networkx, one
at a time or k of them merged (:func:`merge_paths`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ._engine import Sweep, local_maps

#: How a module path of ``""`` (an op the model runs outside any submodule, such as
#: the target selection) is shown, here, in the command line and in legends.
TOP_LEVEL = "<top level>"


def module_label(module: str) -> str:
    """``module``, or :data:`TOP_LEVEL` for the top level (``""``)."""
    return module or TOP_LEVEL


@dataclass(frozen=True)
class Hop:
    """One edge of a path, named by the op output it arrives at.

    Attributes:
        op: the ATen overload, e.g. ``"aten.addmm.default"``.
        module: dotted module path where the op ran ("" at the top level).
        index: the element of the op's output (a tuple).
        weight: the local derivative along this edge.
        node: the recorded tensor node of the op's output, which tells apart two
            ops of one name in one module (``None`` when unknown).
    """

    op: str
    module: str
    index: tuple[int, ...]
    weight: float
    node: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The hop as JSON; :meth:`from_dict` inverts it exactly."""
        return {
            "op": self.op,
            "module": self.module,
            "index": list(self.index),
            "weight": json_float(self.weight),
            "node": self.node,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hop:
        """The hop :meth:`to_dict` described."""
        return cls(
            data["op"],
            data["module"],
            tuple(data["index"]),
            float_from_json(data["weight"]),
            data.get("node"),
        )


@dataclass
class Path:
    """A path from a source element to the output.

    Attributes:
        value: the path product, which equals the product of ``hops`` weights.
        source: the source element (a tuple index).
        hops: the edges in order from the source to the output.
        source_node: the recorded tensor node of the source (``None`` when unknown).

    Printing a path (``str``) lists every hop; its ``repr`` and notebook display
    merge runs of unit-weight hops (views, copies) within one module into one row.

    Examples::

        >>> p = Path(0.5, (0, 1), [Hop("aten.view.default", "fc", (1,), 1.0),
        ...                        Hop("aten.mm.default", "fc", (0,), 0.5)])
        >>> p
        Path(value=0.5, 2 hops from source [0, 1])
          fc  view  [1]  x 1
          fc  mm    [0]  x 0.5
    """

    value: float
    source: tuple[int, ...]
    hops: list[Hop] = field(default_factory=list)
    source_node: int | None = None

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
            "source_node": self.source_node,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Path:
        """The path :meth:`to_dict` described."""
        return cls(
            float_from_json(data["value"]),
            tuple(data["source"]),
            [Hop.from_dict(hop) for hop in data["hops"]],
            data.get("source_node"),
        )

    def to_networkx(self, graph: Any = None) -> Any:
        """The path as a ``networkx.DiGraph``, or added into ``graph``.

        Nodes are ``(op, module, tensor node, index)`` tuples (the source is
        ``("source", "", source_node, source)``), so paths that pass through one
        element share its node; see :func:`merge_paths` for the attributes.
        """
        if graph is None:
            import networkx as nx

            graph = nx.DiGraph()
            graph.graph["paths"] = 0
        graph.graph["paths"] = graph.graph.get("paths", 0) + 1
        previous: tuple[Any, ...] = ("source", "", self.source_node, self.source)
        _add_node(graph, previous, "source", "", self.source_node, self.source)
        for hop in self.hops:
            node = (hop.op, hop.module, hop.node, hop.index)
            _add_node(graph, node, hop.op, hop.module, hop.node, hop.index)
            if graph.has_edge(previous, node):
                edge = graph.edges[previous, node]
                edge["count"] += 1
                edge["value"] += self.value
            else:
                graph.add_edge(
                    previous, node, weight=hop.weight, count=1, value=self.value
                )
            previous = node
        return graph

    def _rows(self) -> list[tuple[str, str, tuple[int, ...], float, int]]:
        """(module, ops, index, weight, hops) per display row: a run of unit-weight
        hops within one module is one row, at the index where it arrives."""
        rows: list[tuple[str, list[str], tuple[int, ...], float, int]] = []
        for hop in self.hops:
            op = _short_op(hop.op)
            last = rows[-1] if rows else None
            if (
                last is not None
                and hop.weight == 1.0
                and last[3] == 1.0
                and last[0] == hop.module
            ):
                rows[-1] = (last[0], [*last[1], op], hop.index, 1.0, last[4] + 1)
            else:
                rows.append((hop.module, [op], hop.index, hop.weight, 1))
        return [(m, _op_run(ops), i, w, n) for m, ops, i, w, n in rows]

    def _header(self) -> str:
        hops = f"{len(self.hops)} hop{'s' if len(self.hops) != 1 else ''}"
        return f"value={self.value:.6g}, {hops} from source {list(self.source)}"

    def __repr__(self) -> str:
        rows = [
            (module_label(m), ops, str(list(i)), f"x {w:.4g}")
            for m, ops, i, w, _ in self._rows()
        ]
        if len(rows) > _REPR_ROWS:
            head, tail = _REPR_ROWS // 2, _REPR_ROWS - _REPR_ROWS // 2 - 1
            hidden = len(rows) - head - tail
            rows = [*rows[:head], ("...", f"({hidden} rows)", "", ""), *rows[-tail:]]
        widths = [max((len(r[c]) for r in rows), default=0) for c in range(3)]
        lines = [f"Path({self._header()})"]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths)]
            lines.append(("  " + "  ".join([*cells, row[3]])).rstrip())
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        esc = html.escape
        body = "".join(
            f"<tr><td>{esc(module_label(m))}</td><td>{esc(ops)}</td>"
            f"<td>{n}</td><td>{esc(str(list(i)))}</td><td>{w:.4g}</td></tr>"
            for m, ops, i, w, n in self._rows()
        )
        return (
            '<table class="captum-semiring-path">'
            f"<caption>Path: {esc(self._header())}</caption>"
            "<thead><tr><th>module</th><th>ops</th><th>hops</th><th>index</th>"
            "<th>weight</th></tr></thead>"
            f"<tbody>{body}</tbody></table>"
        )

    def __str__(self) -> str:
        lines = [f"path value {self.value:.6g} from source{list(self.source)}"]
        for hop in self.hops:
            where = module_label(hop.module)
            lines.append(
                f"  -> {where:40s} {hop.op:32s} {list(hop.index)}  x {hop.weight:.4g}"
            )
        return "\n".join(lines)


#: At most this many rows in a path's ``repr``; the middle of a longer one is elided.
_REPR_ROWS = 24


def _short_op(op: str) -> str:
    """``aten.view.default`` -> ``view``, ``aten.add.Tensor`` -> ``add.Tensor``."""
    return op.removeprefix("aten.").removesuffix(".default")


def _op_run(ops: list[str]) -> str:
    """One row's ops, a run of more than three as its ends and its length."""
    if len(ops) > 3:
        return f"{ops[0]}, ..., {ops[-1]} ({len(ops)} ops)"
    return ", ".join(ops)


def _add_node(
    graph: Any,
    key: tuple[Any, ...],
    op: str,
    module: str,
    node: int | None,
    index: tuple[int, ...],
) -> None:
    if key in graph:
        graph.nodes[key]["count"] += 1
    else:
        graph.add_node(key, op=op, module=module, node=node, index=index, count=1)


def merge_paths(paths: Iterable[Path], graph: Any = None) -> Any:
    """Merge paths into one ``networkx.DiGraph`` (or into ``graph``).

    A node is one element of one recorded tensor, keyed ``(op, module, tensor node,
    index)`` (sources: ``("source", "", source_node, source)``), so the k paths of
    :class:`~captum_semiring.TopK`, or the best paths from many elements, share the
    nodes and edges they have in common.

    Args:
        paths: the paths, e.g. ``[res.path(x, i, rank=r) for r in range(k)]``.
        graph: a ``DiGraph`` to add them to; a new one when ``None``.

    Returns:
        The graph. Node attributes: ``op``, ``module``, ``node``, ``index`` and
        ``count`` (how many paths pass through it). Edge attributes: ``weight`` (the
        local derivative), ``count`` (how many paths use the edge) and ``value`` (the
        sum of those paths' values). ``graph.graph["paths"]`` counts the paths.

    Examples::

        >>> a = Path(2.0, (0,), [Hop("aten.mul.Tensor", "", (0,), 2.0, node=1)])
        >>> b = Path(3.0, (0,), [Hop("aten.mul.Tensor", "", (0,), 3.0, node=2),
        ...                      Hop("aten.mul.Tensor", "", (0,), 1.0, node=1)])
        >>> g = merge_paths([a, b])
        >>> g.number_of_nodes(), g.number_of_edges(), g.graph["paths"]
        (3, 3, 2)
    """
    if graph is None:
        import networkx as nx

        graph = nx.DiGraph()
    graph.graph.setdefault("paths", 0)
    for path in paths:
        path.to_networkx(graph)
    return graph


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
    result.require_every_value("a path")  # it reads the values along the way
    graph = result.graph
    node = graph.node_of(item)
    shape = graph.nodes[node].shape
    flat = _flat_index(index, shape)
    values = result.values(item).reshape(sr.size, -1)[:, flat]
    state = sr.start_state(values, rank)
    if not 0 <= state < sr.size:
        raise IndexError(f"rank {rank} is out of range for {sr!r}")
    path = Path(value=0.0, source=_unravel(flat, shape), source_node=node)
    while True:
        edges = []  # (record, output node, flat output indices, weights)
        for record, leaf in graph.consumers.get(node, ()):
            out_nodes = dict(record.outputs)
            for (map_leaf, position), local in local_maps(graph, record).items():
                target = out_nodes[position]
                like = result.value(target) if map_leaf == leaf else None
                if like is None:
                    continue
                out_index, edge_weights = local.edges_from(flat, like)
                edges.append((record, target, like, out_index, edge_weights))
        weights = [w for *_, w in edges]
        candidates = [v.reshape(sr.size, -1)[:, i] for _, _, v, i, _ in edges]
        if node == result.root:
            like = result.value(node)
            assert like is not None  # the seed
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
        for record, target, _, out_index, w in edges:
            if choice < w.numel():
                out_flat = int(out_index[choice])
                out_shape = graph.nodes[target].shape
                path.hops.append(
                    Hop(
                        record.op_name,
                        record.module,
                        _unravel(out_flat, out_shape),
                        float(w[choice]),
                        target,
                    )
                )
                node, flat = target, out_flat
                break
            choice -= w.numel()
        else:
            return path
