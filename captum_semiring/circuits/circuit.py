"""Circuits: subgraphs of the component graph, chosen from edge scores or paths."""

from __future__ import annotations

import heapq
import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..paths import Path
from .components import Edge
from .graph import ComponentGraph, EdgeScores


@dataclass
class Circuit:
    """A set of component-graph edges, in the order they were chosen.

    Attributes:
        edges: the edges, most important first.
        method: how they were chosen (``"top-edges/max"``, ``"greedy/eap-ig"``,
            ``"paths/topk"``, ...).
        scores: the score of each edge under ``method``'s scores, where it has one.
    """

    edges: list[Edge]
    method: str
    scores: dict[Edge, float] = field(default_factory=dict)

    @property
    def nodes(self) -> list[str]:
        """The components the edges join, in order of first appearance."""
        seen: dict[str, None] = {}
        for e in self.edges:
            seen.setdefault(e.upstream)
            seen.setdefault(e.downstream)
        return list(seen)

    def __len__(self) -> int:
        return len(self.edges)

    def first(self, n: int) -> Circuit:
        """The circuit of the first ``n`` edges."""
        return Circuit(self.edges[:n], self.method, self.scores)

    def precision_recall(
        self, known: Iterable[Edge | tuple[str, str, str]]
    ) -> tuple[float, float]:
        """Precision and recall of the edges against a known circuit."""
        truth = {e if isinstance(e, Edge) else Edge(*e) for e in known}
        found = set(self.edges)
        hits = len(found & truth)
        return (
            hits / len(found) if found else 0.0,
            hits / len(truth) if truth else 0.0,
        )

    def to_networkx(self) -> Any:
        """A ``networkx.MultiDiGraph``: one edge per (upstream, downstream, slot),
        with ``slot``, ``rank`` and ``score`` attributes."""
        import networkx as nx

        g = nx.MultiDiGraph(method=self.method)
        for rank, e in enumerate(self.edges):
            g.add_edge(
                e.upstream,
                e.downstream,
                key=e.slot,
                slot=e.slot,
                rank=rank,
                score=self.scores.get(e),
            )
        return g

    def __repr__(self) -> str:
        lines = [
            f"Circuit({self.method}, {len(self.edges)} edges, {len(self.nodes)} components)"
        ]
        for e in self.edges[:12]:
            score = self.scores.get(e)
            lines.append(f"  {e}" + ("" if score is None else f"  {score:.4g}"))
        if len(self.edges) > 12:
            lines.append(f"  ... {len(self.edges) - 12} more")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{i + 1}</td><td>{html.escape(str(e))}</td>"
            f"<td>{'' if self.scores.get(e) is None else f'{self.scores[e]:.4g}'}</td></tr>"
            for i, e in enumerate(self.edges)
        )
        return (
            f"<table><caption>Circuit: {html.escape(self.method)}, {len(self.edges)} "
            f"edges</caption><tr><th>#</th><th>edge</th><th>score</th></tr>{rows}</table>"
        )


def top_edges(scores: EdgeScores, n: int | None = None) -> Circuit:
    """The ``n`` edges of largest score (all of them, ranked, when ``n`` is None).

    Args:
        scores: edge scores from :meth:`ComponentGraph.edge_flows`, :func:`eap` or
            :func:`eap_ig`.
        n: how many edges to keep.
    """
    ranked = scores.top(len(scores.edges) if n is None else n)
    return Circuit(ranked, f"top-edges/{scores.method}", scores.as_dict())


def greedy(scores: EdgeScores, n: int | None = None) -> Circuit:
    """Grow a circuit from the logits: repeatedly add the best-scoring edge into a
    component already in the circuit, until ``n`` edges (or every edge that
    connects to the logits).

    Args:
        scores: edge scores.
        n: how many edges to keep.
    """
    ranking = scores.ranking().tolist()
    into: dict[str, list[int]] = {}
    for i, e in enumerate(scores.edges):
        into.setdefault(e.downstream, []).append(i)
    # a heap of the edges into the circuit's components, best first (ties: order)
    heap = [(-ranking[i], i) for i in into.get("logits", [])]
    heapq.heapify(heap)
    reached, chosen = {"logits"}, list[Edge]()
    limit = len(scores.edges) if n is None else n
    while heap and len(chosen) < limit:
        _, i = heapq.heappop(heap)
        edge = scores.edges[i]
        chosen.append(edge)
        if edge.upstream not in reached:
            reached.add(edge.upstream)
            for j in into.get(edge.upstream, []):
                heapq.heappush(heap, (-ranking[j], j))
    return Circuit(chosen, f"greedy/{scores.method}", scores.as_dict())


def path_union(
    graph: ComponentGraph, k: int, paths: list[Path] | None = None
) -> Circuit:
    """The union of the edges of the ``k`` best paths (TopK semiring), each
    path's new edges in path order, best path first.

    Args:
        graph: the component graph.
        k: how many paths.
        paths: the best paths, best first, when already found
            (:meth:`ComponentGraph.top_paths` with at least ``k``).
    """
    chosen: dict[Edge, float] = {}
    for path in graph.top_paths(k) if paths is None else paths[:k]:
        for e in graph.path_edges(path):
            chosen.setdefault(e, path.value)
    return Circuit(list(chosen), f"paths/topk{k}", chosen)
