"""The component graph of a recorded model, and its edge flows under any semiring."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .. import _engine
from .._capture import Graph, record
from .._shapes import unravel_index
from ..paths import Path
from ..semirings import Semiring, TopK, get_semiring
from .components import (
    Branch,
    Component,
    Edge,
    Seed,
    Structure,
    components_of,
    find_branches,
    head_axis,
)

Env = dict[int, Tensor]


def _seeded(
    sr: Semiring, seeds: Sequence[Seed], values: Callable[[int], Tensor]
) -> Env:
    env: Env = {}
    for seed in seeds:
        value = values(seed.node)
        if seed.mask is not None:
            value = torch.where(seed.mask, value, sr.zeros(value.shape[1:], value))
        previous = env.get(seed.node)
        env[seed.node] = value if previous is None else sr.plus(previous, value)
    return env


@dataclass
class EdgeScores:
    """Scores of the component graph's edges.

    Attributes:
        edges: the edges, upstream in residual order.
        values: raw semiring values ``(edges, S, batch)`` (``(edges, S)`` for an
            unbatched output).
        semiring: the semiring the values are in.
        method: what computed them (``"max"``, ``"eap"``, ``"eap-ig"``, ...).
    """

    edges: list[Edge]
    values: Tensor
    semiring: Semiring
    method: str

    def finalize(self) -> Tensor:
        """Finalized values per edge and example: ``(edges, batch)``, TopK
        ``(edges, k, batch)``."""
        return torch.stack([self.semiring.finalize(v) for v in self.values])

    def totals(self) -> Tensor:
        """One value per edge: ⊕ over the batch, finalized, the best path's value for
        TopK. Shape ``(edges,)``."""
        sr = self.semiring
        whole = [e if e.dim() == 1 else sr.sum(e, 1) for e in self.values]
        return torch.stack([sr.best(sr.finalize(e)) for e in whole])

    def ranking(self) -> Tensor:
        """A size per edge to rank by (:meth:`Semiring.magnitude` of
        :meth:`totals`, the absolute value for sums and path products)."""
        return self.semiring.magnitude(self.totals())

    def as_dict(self) -> dict[Edge, float]:
        return dict(zip(self.edges, self.totals().tolist()))

    def top(self, n: int) -> list[Edge]:
        """The ``n`` highest-ranked edges, best first."""
        order = torch.argsort(self.ranking(), descending=True, stable=True)
        return [self.edges[i] for i in order[:n].tolist()]

    def __repr__(self) -> str:
        lines = [f"EdgeScores({self.method}, {len(self.edges)} edges)"]
        totals = self.as_dict()
        for edge in self.top(10):
            lines.append(f"  {str(edge):60s} {totals[edge]: .4g}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        totals = self.as_dict()
        rows = "".join(
            f"<tr><td>{html.escape(str(e))}</td><td>{totals[e]:.4g}</td></tr>"
            for e in self.top(20)
        )
        return (
            f"<table><caption>EdgeScores: {html.escape(self.method)}, "
            f"{len(self.edges)} edges (top 20)</caption>{rows}</table>"
        )


class ComponentGraph:
    """The component graph of one recording: embeddings, attention heads, MLPs and
    logits, and the edges from each component's write to every later read.

    Heads are read through their query, key and value separately. An edge carries
    the paths that leave the upstream write and reach the downstream read without
    entering another component; its flow under a semiring is

    .. math::

        f(u \\to v) = \\bigoplus_{x} T_u[x] \\otimes B_v[x],

    where :math:`T_u[x]` is the forward value of the paths from the sources through
    ``u``'s write to the read tensor element :math:`x`, and :math:`B_v[x]` the
    backward value of the paths from :math:`x` through ``v``'s read to the output
    (eq. 3, over the hidden and position axes). Under ``SumProduct`` every path's
    product is counted once, so the flows into one read add up to that read's whole
    flow. MaxProduct gives the best path through each edge.

    Args:
        graph: a recording whose sources are the model's input (its embeddings).
        output: the recorded output, one scalar per example.
        inputs: the source tensors, for :meth:`top_paths` (:func:`trace` passes
            them).

    Examples::

        >>> import torch
        >>> from captum_semiring import circuits
        >>> from captum_semiring.reproductions.tasks import induction
        >>> torch.manual_seed(0) and None
        >>> model = induction.AttentionOnlyTransformer(induction.SMALL_CONFIG)
        >>> ids = induction.repeated_sequences(2, 10, 24, seed=0)
        >>> f = lambda e: induction.target_logit(model, ids, inputs_embeds=e)
        >>> cg = circuits.trace(f, model.embed(ids))
        >>> cg
        ComponentGraph(1 embed, 4 head, 1 logits; 29 edges)
        >>> [c.name for c in cg.components][:3]
        ['embed', 'blocks.0.attn.head0', 'blocks.0.attn.head1']
        >>> str(cg.edges[0])
        'embed -> blocks.0.attn.head0.q'
        >>> flows = cg.edge_flows("max")           # best path through each edge
        >>> flows.finalize().shape                 # (edges, examples)
        torch.Size([29, 2])
    """

    def __init__(
        self, graph: Graph, output: Tensor, inputs: Sequence[Tensor] = ()
    ) -> None:
        if output.dim() > 1:
            raise ValueError(
                "output must hold one scalar per example, shape () or (batch,); got "
                f"shape {tuple(output.shape)}"
            )
        self.graph, self.output = graph, output
        self.inputs = tuple(inputs)
        self.batch = output.shape[0] if output.dim() == 1 else 0
        self.structure = Structure(graph)
        self.branches: list[Branch] = find_branches(self.structure, max(self.batch, 1))
        self.components: list[Component] = components_of(
            self.structure, self.branches, graph.node_of(output), max(self.batch, 1)
        )
        interior = set().union(*(b.records for b in self.branches))
        steps = self.structure.steps
        self.edge_steps = [steps[i] for i in range(len(steps)) if i not in interior]
        self.edges: list[Edge] = self._connected_edges()
        self._drop_dead_ends()
        self.by_name = {c.name: c for c in self.components}

    def _connected_edges(self) -> list[Edge]:
        """The edges some path can take: the write reaches the read's tensors through
        the ops between components."""
        edges = []
        for u in self.components:
            if u.write is None:
                continue
            reached = set(u.write.outputs)
            for _, ins, outs in self.edge_steps:
                if any(n in reached for n in ins.values()):
                    reached.update(outs.values())
            for v in self.components:
                if v.order <= u.order:
                    continue
                for slot, read in v.reads.items():
                    if reached.intersection(read.inputs):
                        edges.append(Edge(u.name, v.name, slot))
        return edges

    def _drop_dead_ends(self) -> None:
        """Drop components no path leads on from (an unused pooler, say), and the
        edges into them."""
        while True:
            feeding = {e.upstream for e in self.edges} | {"logits"}
            dead = {c.name for c in self.components if c.name not in feeding}
            if not dead:
                return
            self.components = [c for c in self.components if c.name not in dead]
            self.edges = [e for e in self.edges if e.downstream not in dead]

    # ----- sweeps ----------------------------------------------------------------
    def read_values(self, sr: Semiring, backward: Env) -> dict[tuple[str, str], Env]:
        """Per (component, slot): the backward values at its read tensors of the
        paths through that read, from a backward sweep's values ``backward``."""
        out = {}
        for c in self.components:
            for slot, read in c.reads.items():
                env = _seeded(sr, read.seeds, lambda n: self._value(sr, backward, n))
                _engine.reverse(self.graph, sr, env, steps=read.steps)
                out[c.name, slot] = {n: env[n] for n in read.inputs if n in env}
        return out

    def write_values(self, sr: Semiring, forward: Env) -> dict[str, Env]:
        """Per component: the forward values at its write tensors of the paths through
        it, from a forward sweep's (or activation differences') values ``forward``."""
        out = {}
        for c in self.components:
            if c.write is None:
                continue
            env = _seeded(sr, c.write.seeds, lambda n: self._value(sr, forward, n))
            _engine.propagate(self.graph, sr, env, steps=c.write.steps)
            out[c.name] = {n: env[n] for n in c.write.outputs if n in env}
        return out

    def _value(self, sr: Semiring, env: Env, node: int) -> Tensor:
        value = env.get(node)
        if value is None:
            meta = self.graph.nodes[node]
            value = sr.zeros(meta.shape, torch.empty((), dtype=meta.dtype))
        return value

    def _batch_first(self) -> bool:
        """Whether every tensor between components holds the batch on its first
        axis, so that one sweep gives every example's flows."""
        nodes = [n for c in self.components for r in c.reads.values() for n in r.inputs]
        nodes += [n for c in self.components if c.write for n in c.write.outputs]
        shapes = [self.graph.nodes[n].shape for n in nodes]
        return all(shape and shape[0] == self.batch for shape in shapes)

    def combine(
        self,
        sr: Semiring,
        writes: dict[str, Env],
        reads: dict[tuple[str, str], Env],
        by_example: bool,
    ) -> Tensor:
        """Raw flow per edge ``(edges, S[, batch])`` from write and read values,
        ⊕ over every element but the batch axis (``by_example``) or over all."""
        like = next(iter(next(iter(writes.values())).values()))
        shape = (self.batch,) if by_example else ()
        zero = sr.zeros(shape, like)
        first = 2 if by_example else 1
        flows: dict[Edge, Tensor] = {}
        by_upstream: dict[str, list[Edge]] = {}
        for edge in self.edges:
            by_upstream.setdefault(edge.upstream, []).append(edge)
        for name, edges in by_upstream.items():
            env = dict(writes.get(name, {}))
            if env:
                _engine.propagate(self.graph, sr, env, steps=self.edge_steps)
            for edge in edges:
                total = zero
                for node, b in reads.get((edge.downstream, edge.slot), {}).items():
                    t = env.get(node)
                    if t is not None:
                        value = sr.times(t, b)
                        if value.dim() > first:
                            value = sr.sum(value, list(range(first, value.dim())))
                        total = sr.plus(total, value.to(total.dtype))
                flows[edge] = total
        return torch.stack([flows[e] for e in self.edges]) if self.edges else zero[None]

    def edge_flows(self, semiring: Semiring | str = "max") -> EdgeScores:
        """Every edge's flow under ``semiring``: two full sweeps, then one local sweep
        per read and per write, and one sweep of the ops between components per
        upstream component.

        Args:
            semiring: any semiring, or its name.

        Returns:
            :class:`EdgeScores` with one value per edge and example.
        """
        sr = get_semiring(semiring)
        writes = self.write_values(sr, _engine.forward(self.graph, sr).env)
        return EdgeScores(self.edges, self.flows(sr, writes), sr, sr.name)

    def flows(self, sr: Semiring, writes: dict[str, Env]) -> Tensor:
        """Raw flow per edge and example ``(edges, S[, batch])`` of the given write
        values (a forward sweep's, or activation differences) and this recording's
        backward sweep."""
        parts = [
            self.combine(sr, writes, reads, by) for reads, by in self.read_sweeps(sr)
        ]
        return parts[0] if len(parts) == 1 else torch.stack(parts, -1)

    def read_flow(
        self, component: str, slot: str, semiring: Semiring | str = "max"
    ) -> Tensor:
        r"""The flow into one read at each element of its read tensor:
        :math:`F[x] \otimes B_v[x]`, all paths from the sources through ``x`` into
        ``component``'s ``slot``. For a residual stream ``(batch, tokens,
        hidden)`` it tells which token a head's query or key reads; ⊕ it over the
        hidden axis first with ``semiring.sum`` for one value per token.

        Args:
            component: a component's name.
            slot: ``"q"``, ``"k"``, ``"v"`` or ``"in"``.
            semiring: any semiring, or its name.

        Returns:
            Raw semiring values ``(S, *read tensor shape)``; finalize them with the
            semiring's ``finalize``.
        """
        sr = get_semiring(semiring)
        read = self.by_name[component].reads.get(slot)
        if read is None or len(read.inputs) != 1:
            raise ValueError(
                f"{component!r} has no read {slot!r} of one tensor; its reads are "
                f"{sorted(self.by_name[component].reads)}"
            )
        (node,) = read.inputs
        backward = _engine.backward(self.graph, self.output, sr).env
        forward = _engine.forward(self.graph, sr).env
        reads = self.read_values(sr, backward)[component, slot]
        return sr.times(self._value(sr, forward, node), self._value(sr, reads, node))

    def read_sweeps(
        self, sr: Semiring
    ) -> list[tuple[dict[tuple[str, str], Env], bool]]:
        """Read values of one backward sweep when the batch axis comes first,
        else of one sweep per example seeded at that example's output alone."""
        self.graph.check_unchanged()
        root = self.graph.node_of(self.output)
        ones = sr.ones(self.output.shape, self.output.detach())
        if not self.batch or self._batch_first():
            env = _engine.reverse(self.graph, sr, {root: ones})
            return [(self.read_values(sr, env), bool(self.batch))]
        found = []
        for b in range(self.batch):
            mask = torch.zeros(self.batch, dtype=torch.bool)
            mask[b] = True
            seed = torch.where(mask, ones, sr.zeros(self.output.shape, ones))
            env = _engine.reverse(self.graph, sr, {root: seed})
            found.append((self.read_values(sr, env), False))
        return found

    # ----- paths -----------------------------------------------------------------
    def path_edges(self, path: Path) -> list[Edge]:
        """The component edges one path of the recording takes, in order: it enters
        a head at the score product (by the query or key operand) or at the value
        product (by the values), an MLP or the logits at their read."""
        s = self.structure
        owner = {
            i: c.branch for c in self.components if c.branch for i in c.branch.records
        }
        name = {
            id(c.branch): c.name
            for c in self.components
            if c.branch and c.kind != "head"
        }
        edges: list[Edge] = []
        current, inside, head = "embed", None, 0
        previous = path.source_node
        for hop in path.hops:
            if hop.node is None:
                raise ValueError("the path's hops do not name their tensors")
            node = hop.node
            producer = s.producer(node)
            branch = owner.get(producer) if producer is not None else None
            if branch is not None and branch is not inside and branch.kind == "mlp":
                edges.append(Edge(current, name[id(branch)], "in"))
            inside = branch
            if branch is not None and branch.kind == "attention":
                if node in (branch.scores, branch.weights, branch.mixed):
                    head = self._head_of(branch, node, hop.index)
                label = f"{branch.module}.head{head}"
                if node == branch.scores:
                    slot = "q" if previous == branch.query else "k"
                    edges.append(Edge(current, label, slot))
                elif node == branch.mixed and previous == branch.values:
                    edges.append(Edge(current, label, "v"))
                if node in branch.outputs:
                    current = label
            elif branch is not None and node in branch.outputs:
                current = name[id(branch)]
            previous = node
        if not edges or edges[-1].downstream != "logits":
            edges.append(Edge(current, "logits", "in"))
        return edges

    def _head_of(self, branch: Branch, node: int, index: tuple[int, ...]) -> int:
        shape = self.graph.nodes[node].shape
        axis = head_axis(shape, branch.heads, max(self.batch, 1), branch.module)
        return index[axis] % branch.heads

    def top_paths(self, k: int) -> list[Path]:
        """The ``k`` best paths from any source element to the output by the TopK
        semiring (largest magnitude), best first, over all examples."""
        result = self.graph.backward(self.output, TopK(k))
        found: list[tuple[float, int, tuple[int, ...], int]] = []
        for i, source in enumerate(self.inputs):
            values = result[source]  # (k, *shape), best rank first
            flat = values.abs().reshape(-1)
            best = torch.topk(flat, min(k, flat.numel()))
            for score, j in zip(best.values.tolist(), best.indices.tolist()):
                rank, element = divmod(j, flat.numel() // k)
                index = unravel_index(element, values.shape[1:])
                found.append((score, i, index, rank))
        found.sort(key=lambda f: -f[0])
        return [
            result.path(self.inputs[i], index, rank=rank)
            for score, i, index, rank in found[:k]
            if score > 0
        ]

    def to_networkx(self, scores: EdgeScores | None = None) -> Any:
        """The component graph as a ``networkx.MultiDiGraph`` (one edge per slot),
        with each edge's ``score`` when ``scores`` is given."""
        import networkx as nx

        g = nx.MultiDiGraph()
        for c in self.components:
            g.add_node(c.name, kind=c.kind, module=c.module, head=c.head)
        totals = scores.as_dict() if scores is not None else {}
        for e in self.edges:
            g.add_edge(
                e.upstream, e.downstream, key=e.slot, slot=e.slot, score=totals.get(e)
            )
        return g

    def __repr__(self) -> str:
        kinds: dict[str, int] = {}
        for c in self.components:
            kinds[c.kind] = kinds.get(c.kind, 0) + 1
        parts = ", ".join(f"{n} {k}" for k, n in kinds.items())
        return f"ComponentGraph({parts}; {len(self.edges)} edges)"


def trace(
    forward_func: Callable[..., Tensor],
    inputs: Tensor | tuple[Tensor, ...],
    additional_forward_args: Iterable[Any] = (),
) -> ComponentGraph:
    """Record ``forward_func(*inputs, *additional_forward_args)`` with the inputs as
    sources and build its component graph.

    Args:
        forward_func: returns one scalar per example (a model with its target
            applied), from the inputs, typically embeddings.
        inputs: the source tensor or tensors.
        additional_forward_args: more positional arguments, not sources.

    Returns:
        :class:`ComponentGraph`.
    """
    xs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    xs = tuple(x.detach() for x in xs)
    with record(*xs) as graph:
        out = forward_func(*xs, *additional_forward_args)
    if not isinstance(out, Tensor):
        raise TypeError(f"forward_func must return a tensor, got {type(out).__name__}")
    return ComponentGraph(graph, out, xs)
