"""A brute-force reference for semiring backpropagation, independent of the library.

It takes only the *skeleton* of a recording from the library: the list of recorded
ATen calls (``graph.records``: which op ran, on which saved values, reading which
tracked tensors and writing which). Everything else is recomputed from scratch:

* edge weights: the dense Jacobian of every tracked output of a call with respect to
  every tracked input leaf, by ``torch.autograd.functional.jacobian`` on
  ``record.rerun``;
* edge structure: NaN propagation. For each input element ``u`` we rerun the call with
  ``u`` set to NaN; the output elements that turn NaN are the elements that read
  ``u`` (DESIGN §1: "∂v/∂u is not zero by the operator's structure"). An edge whose
  Jacobian entry is exactly 0 (relu at a negative input) is still an edge;
* every path from a source element to an output element is enumerated explicitly, and
  each semiring value is computed from the plain list of path products.

None of the library's rules, local maps or semirings are used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

# A path: (product of its edge weights, its hops from the source to the output).
# A hop is (op name, output node, output element as a tuple index, weight).
RefHop = tuple[str, int, tuple[int, ...], float]
RefPath = tuple[float, tuple[RefHop, ...]]

MAX_PATHS = 200_000

SEMIRING_NAMES = (
    "sum",
    "max_positive",
    "max_negative",
    "max_absolute",
    "entropy",
    "logsum",
    "pathcount",
)


@dataclass
class Edge:
    target: tuple[int, int]  # (node, flat element)
    weight: float
    op: str
    index: tuple[int, ...]  # the element of the op output, as a tuple


def _unravel(flat: int, shape: Sequence[int]) -> tuple[int, ...]:
    out = []
    for n in reversed(shape):
        out.append(flat % n)
        flat //= n
    return tuple(reversed(out))


def _numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


class ReferenceGraph:
    """The scalar multigraph of a recording, built by brute force."""

    def __init__(self, graph: Any, output: Tensor) -> None:
        self.graph = graph
        self.root = graph.node_of(output)
        self.root_shape = tuple(output.shape)
        self.edges: dict[tuple[int, int], list[Edge]] = {}
        for record in graph.records:
            self._add_record(record)
        self._memo: dict[tuple[int, int], list[RefPath]] = {}
        self._count = 0

    # ----- edges ------------------------------------------------------------
    def _add_record(self, record: Any) -> None:
        # An output with no elements has no edges (batch norm's saved statistics).
        out_nodes = {p: n for p, n in record.outputs if record.output(p).numel()}
        if not out_nodes:
            return
        with torch.no_grad():
            base = record.rerun({})
        for p in out_nodes:  # the saved arguments must still reproduce the output
            if not torch.equal(
                torch.nan_to_num(base[p]), torch.nan_to_num(record.output(p))
            ):
                raise AssertionError(
                    f"reference: rerunning {record.func} does not reproduce its recorded output"
                )
        base_nan = {p: torch.isnan(base[p]).reshape(-1) for p in out_nodes}
        op = str(record.func)
        for leaf, in_node in record.inputs:
            value = record.leaves[leaf].detach()
            in_shape = tuple(value.shape)
            n_in = _numel(in_shape)
            positions = sorted(out_nodes)

            def fn(
                t: Tensor, leaf: int = leaf, positions: list[int] = positions
            ) -> tuple[Tensor, ...]:
                outs = record.rerun({leaf: t})
                return tuple(outs[p] for p in positions)

            with torch.enable_grad():
                jac = torch.autograd.functional.jacobian(fn, value.clone())
            jacobians = {
                p: j.detach().reshape(_numel(base[p].shape), n_in).to(torch.float64)
                for p, j in zip(positions, jac)
            }
            for u in range(n_in):
                probe = value.clone()
                probe[_unravel(u, in_shape)] = math.nan
                with torch.no_grad():
                    outs = record.rerun({leaf: probe})
                for p in positions:
                    reached = torch.isnan(outs[p]).reshape(-1) & ~base_nan[p]
                    column = jacobians[p][:, u]
                    nonzero = (column != 0) & ~torch.isnan(column)
                    if bool((nonzero & ~reached).any()):
                        raise AssertionError(
                            f"reference: {op} has a nonzero derivative that NaN does not "
                            "propagate through; the NaN structure probe does not apply"
                        )
                    out_shape = tuple(base[p].shape)
                    for o in torch.nonzero(reached).reshape(-1).tolist():
                        self.edges.setdefault((in_node, u), []).append(
                            Edge(
                                (out_nodes[p], o),
                                float(column[o]),
                                op,
                                _unravel(o, out_shape),
                            )
                        )

    # ----- paths ------------------------------------------------------------
    def paths_from(self, element: tuple[int, int]) -> list[RefPath]:
        """Every path from ``element`` (node, flat index) to an output element."""
        memo = self._memo.get(element)
        if memo is not None:
            return memo
        node, _ = element
        paths: list[RefPath] = []
        if node == self.root:
            paths.append((1.0, ()))
        for edge in self.edges.get(element, ()):
            hop: RefHop = (edge.op, edge.target[0], edge.index, edge.weight)
            for product, hops in self.paths_from(edge.target):
                paths.append((edge.weight * product, (hop, *hops)))
        self._count += len(paths)
        if self._count > MAX_PATHS * 4:
            raise AssertionError(
                "reference: too many paths; make the test model smaller"
            )
        self._memo[element] = paths
        return paths

    def source_paths(self, source: Any) -> list[list[RefPath]]:
        """Paths from each element (flat order) of a source."""
        node = self.graph.node_of(source)
        shape = self.graph.nodes[node].shape
        result = [self.paths_from((node, u)) for u in range(_numel(shape))]
        if sum(len(p) for p in result) > MAX_PATHS:
            raise AssertionError(
                "reference: too many paths; make the test model smaller"
            )
        return result

    def is_path(
        self,
        source: Any,
        flat: int,
        hops: Sequence[tuple[str, tuple[int, ...], float]],
        tol: float = 1e-9,
    ) -> bool:
        """Whether ``hops`` ((op, output index, weight) from the source element on) is a
        path of this graph from element ``flat`` of ``source`` to an output element."""
        current = {(self.graph.node_of(source), flat)}
        for op, index, weight in hops:
            current = {
                edge.target
                for element in current
                for edge in self.edges.get(element, ())
                if edge.op == op
                and edge.index == tuple(index)
                and abs(edge.weight - weight) <= tol + tol * abs(weight)
            }
        return any(node == self.root for node, _ in current)

    def source_shape(self, source: Any) -> tuple[int, ...]:
        return tuple(self.graph.nodes[self.graph.node_of(source)].shape)

    def products(self, source: Any) -> list[list[float]]:
        return [[p for p, _ in paths] for paths in self.source_paths(source)]

    def expected(self, source: Any, name: str, k: int | None = None) -> Tensor:
        """The expected finalized result for ``source``: shape like the source, or
        ``(k, *shape)`` for ``name == "topk"``."""
        shape = self.source_shape(source)
        per_element = self.products(source)
        if name == "topk":
            assert k is not None
            cols = [topk(ps, k) for ps in per_element]
            return torch.tensor(cols, dtype=torch.float64).T.reshape(k, *shape)
        fn = SCALAR_RESULTS[name]
        return torch.tensor(
            [fn(ps) for ps in per_element], dtype=torch.float64
        ).reshape(shape)


# ----- semiring values from plain lists of path products ---------------------
def sum_product(ps: list[float]) -> float:
    return math.fsum(ps)


def max_positive(ps: list[float]) -> float:
    return max(ps) if ps else 0.0


def max_negative(ps: list[float]) -> float:
    return min(ps) if ps else 0.0


def max_absolute(ps: list[float]) -> float:
    # Largest magnitude; on a magnitude tie the positive one.
    return max(ps, key=lambda v: (abs(v), v)) if ps else 0.0


def entropy(ps: list[float]) -> float:
    z = math.fsum(abs(p) for p in ps)
    if z == 0:
        return 0.0
    total = 0.0
    for p in ps:
        q = abs(p) / z
        if q > 0:
            total -= q * math.log(q)
    return total


def log_sum(ps: list[float]) -> float:
    z = math.fsum(abs(p) for p in ps)
    return math.log(z) if z > 0 else -math.inf


def path_count(ps: list[float]) -> float:
    return math.log(len(ps)) if ps else -math.inf


def topk(ps: list[float], k: int) -> list[float]:
    # Largest |g| first; ties in |g| put the larger signed value first; pad with 0.
    best = sorted(ps, key=lambda v: (-abs(v), -v))[:k]
    return best + [0.0] * (k - len(best))


SCALAR_RESULTS: dict[str, Callable[[list[float]], float]] = {
    "sum": sum_product,
    "max_positive": max_positive,
    "max_negative": max_negative,
    "max_absolute": max_absolute,
    "entropy": entropy,
    "logsum": log_sum,
    "pathcount": path_count,
}


# ----- comparison ------------------------------------------------------------
def mismatches(got: Tensor, expected: Tensor, tol: float = 1e-9) -> list[str]:
    """Elements where ``got`` differs from ``expected`` beyond ``tol`` (absolute plus
    relative); an infinite expected value must be matched exactly."""
    got = got.detach().to(torch.float64)
    if tuple(got.shape) != tuple(expected.shape):
        return [f"shape {tuple(got.shape)} != expected {tuple(expected.shape)}"]
    bad = []
    for idx in _indices(expected.shape):
        g, e = float(got[idx]), float(expected[idx])
        if math.isinf(e) or math.isinf(g) or math.isnan(e) or math.isnan(g):
            ok = g == e
        else:
            ok = abs(g - e) <= tol + tol * abs(e)
        if not ok:
            bad.append(f"{list(idx)}: got {g!r}, expected {e!r}")
    return bad


def _indices(shape: Iterable[int]) -> list[tuple[int, ...]]:
    shape = tuple(shape)
    return [_unravel(i, shape) for i in range(_numel(shape))]


def all_indices(shape: Iterable[int]) -> list[tuple[int, ...]]:
    return _indices(shape)
