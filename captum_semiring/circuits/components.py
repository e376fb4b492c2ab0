"""The component graph of a recording: which recorded ops belong to which component.

A *component* is a branch that reads the residual stream and writes back into it:
an attention module, split into its heads, or any other branch that starts with a
contraction (an MLP). It is found from the recorded graph alone, so it needs no
hand-written names per architecture:

* its *interior* is the closure of an anchor (the attention's score, softmax and
  value products; an MLP's first contraction): a producer joins when every consumer
  of its outputs is inside, a consumer joins when every tracked input it reads comes
  from inside;
* its *read* tensors are produced outside and read inside (the residual stream
  before the layer norm, for a pre-LayerNorm transformer), its *write* tensors are
  produced inside and read outside (the output projection's result).

Whatever is in no interior (residual additions, layer norms between blocks, the
embeddings' own ops) belongs to the *edges*: an edge from component ``u`` to a read
of component ``v`` carries every path that leaves ``u``'s write and reaches ``v``'s
read tensors without entering another component. That holds for pre-LayerNorm
models, where the edge is the identity, and for post-LayerNorm models such as BERT,
where it passes layer norms.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from .._engine import PlanStep, plan
from .._record import Recording, RecordingError

Kind = Literal["embed", "head", "mlp", "logits"]

ops = torch.ops.aten
SOFTMAX = {ops._softmax.default, ops._safe_softmax.default}
# contractions by the leaves of their two operands
CONTRACTIONS = {
    ops.mm.default: (0, 1),
    ops.bmm.default: (0, 1),
    ops.addmm.default: (1, 2),
    ops.baddbmm.default: (1, 2),
}
MLP_ANCHORS = set(CONTRACTIONS) | {ops.convolution.default}


@dataclass(frozen=True)
class Edge:
    """An edge of the component graph: ``upstream``'s write into ``downstream``'s
    ``slot`` (``"q"``, ``"k"``, ``"v"`` of a head, ``"in"`` otherwise)."""

    upstream: str
    downstream: str
    slot: str

    def __str__(self) -> str:
        return f"{self.upstream} -> {self.downstream}.{self.slot}"


@dataclass
class Seed:
    """Semiring values taken from a sweep at ``node``, kept where ``mask`` is True."""

    node: int
    mask: Tensor | None = None


@dataclass
class Read:
    """One read of a component: seed values at the seed nodes, swept back through
    ``steps`` to the read tensors ``inputs``."""

    seeds: list[Seed]
    steps: list[PlanStep]
    inputs: list[int]


@dataclass
class Write:
    """A component's write: seed values swept forward through ``steps`` to the write
    tensors ``outputs``."""

    seeds: list[Seed]
    steps: list[PlanStep]
    outputs: list[int]


@dataclass
class Component:
    """A node of the component graph.

    Attributes:
        name: ``"embed"``, ``"logits"``, ``"<attention module>.head<h>"`` or the
            module path of an MLP.
        kind: ``"embed"``, ``"head"``, ``"mlp"`` or ``"logits"``.
        module: the module path it ran in (``""`` for embed and logits).
        head: the head index, for heads.
        order: its position along the residual stream (the first record it reads).
    """

    name: str
    kind: Kind
    module: str
    head: int | None = None
    order: int = 0
    reads: dict[str, Read] = field(default_factory=dict, repr=False)
    write: Write | None = field(default=None, repr=False)
    branch: Branch | None = field(default=None, repr=False)


@dataclass
class Branch:
    """One interior: the records of an attention module or of an MLP."""

    records: set[int]
    kind: Literal["attention", "mlp"]
    module: str
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    # attention only: the records of the score product, the softmax and the value
    # product; the nodes of their outputs; the query, key and value operands
    score: int = -1
    softmax: int = -1
    value: int = -1
    heads: int = 0
    scores: int = -1
    weights: int = -1
    mixed: int = -1
    query: int | None = None
    key: int | None = None
    values: int | None = None

    def split_steps(self, steps: list[PlanStep]) -> tuple[list[PlanStep], ...]:
        """An attention's interior steps (of :func:`plan` ``steps``): before the
        score product, before the value product, from the score product up to the
        value product, and after the value product."""
        inside = sorted(self.records)
        return (
            [steps[i] for i in inside if i < self.score],
            [steps[i] for i in inside if i < self.value],
            [steps[i] for i in inside if self.score <= i < self.value],
            [steps[i] for i in inside if i > self.value],
        )

    def leaf_of(self, s: Structure, record: int, node: int | None) -> set[int]:
        """The input leaves by which ``record`` reads ``node``."""
        return {leaf for leaf, n in s.graph.records[record].inputs if n == node}


class Structure:
    """Producers and consumers by record index, for the closures."""

    def __init__(self, graph: Recording) -> None:
        self.graph = graph
        self.steps = plan(graph)
        self.index = {id(r): i for i, r in enumerate(graph.records)}

    def producer(self, node: int) -> int | None:
        record = self.graph.nodes[node].producer
        return None if record is None else self.index.get(id(record))

    def consumers(self, node: int) -> list[int]:
        return [self.index[id(r)] for r, _ in self.graph.consumers.get(node, [])]

    def input_nodes(self, i: int) -> list[int]:
        return [n for _, n in self.graph.records[i].inputs]

    def output_nodes(self, i: int) -> list[int]:
        return [n for _, n in self.graph.records[i].outputs]

    def chain(self, node: int, forward: bool) -> list[int]:
        """Records along a single-input chain from ``node`` up to and including the
        first contraction of two tracked operands (the attention products)."""
        records: list[int] = []
        while True:
            if forward:
                nxt = self.consumers(node)
                if len(nxt) != 1:
                    return []
                i = nxt[0]
            else:
                found = self.producer(node)
                if found is None:
                    return []
                i = found
            records.append(i)
            func = self.graph.records[i].func
            if func in CONTRACTIONS:
                return records
            ins, outs = self.input_nodes(i), self.output_nodes(i)
            if len(ins) != 1 or len(outs) != 1:
                return []
            node = outs[0] if forward else ins[0]

    def closure(self, seed: Iterable[int], claimed: set[int]) -> set[int]:
        """The records reached from ``seed`` (none of ``claimed``): a producer
        joins when every consumer of its outputs is inside, a consumer when every
        tracked input it reads is produced inside."""
        inside = set(seed)
        work = list(inside)
        while work:
            i = work.pop()
            found = []
            for n in self.input_nodes(i):
                p = self.producer(n)
                if p is None or p in inside or p in claimed:
                    continue
                if all(
                    c in inside for m in self.output_nodes(p) for c in self.consumers(m)
                ):
                    found.append(p)
            for n in self.output_nodes(i):
                for c in self.consumers(n):
                    if c in inside or c in claimed:
                        continue
                    producers = [self.producer(m) for m in self.input_nodes(c)]
                    if all(p is not None and p in inside for p in producers):
                        found.append(c)
            for j in found:
                if j not in inside:
                    inside.add(j)
                    work.append(j)
        return inside

    def boundary(self, records: set[int]) -> tuple[list[int], list[int]]:
        """(tensors read inside but produced outside, tensors produced inside and
        read outside), each in node order."""
        inputs = {
            n
            for i in records
            for n in self.input_nodes(i)
            if self.producer(n) not in records
        }
        outputs = {
            n
            for i in records
            for n in self.output_nodes(i)
            if any(c not in records for c in self.consumers(n))
        }
        return sorted(inputs), sorted(outputs)


def common_module(modules: Iterable[str]) -> str:
    """The longest dotted prefix the module paths share."""
    parts = [m.split(".") for m in modules]
    if not parts:
        return ""
    prefix = []
    for column in zip(*parts):
        if len(set(column)) != 1:
            break
        prefix.append(column[0])
    return ".".join(prefix)


def find_branches(s: Structure, batch: int) -> list[Branch]:
    """The attention branches (from their softmax), then the other branches (from
    each contraction not yet claimed), in record order."""
    graph, claimed = s.graph, set[int]()
    branches = []
    for i, record in enumerate(graph.records):
        if record.func not in SOFTMAX or i in claimed:
            continue
        (p_in,), (p_out,) = s.input_nodes(i), s.output_nodes(i)
        before, after = s.chain(p_in, forward=False), s.chain(p_out, forward=True)
        if not before or not after:
            continue  # a softmax outside an attention (a classifier's, say)
        shape = graph.nodes[p_out].shape
        heads = shape[1] if len(shape) == 4 else shape[0] // max(batch, 1)
        records = s.closure({i, *before, *after}, claimed)
        claimed |= records
        score, value = before[-1], after[-1]
        q_leaf, k_leaf = CONTRACTIONS[graph.records[score].func]
        score_in = dict(graph.records[score].inputs)
        # the chain from the softmax enters the value product as its weights
        entering = s.output_nodes(after[-2])[0] if len(after) > 1 else p_out
        value_in = dict(graph.records[value].inputs)
        a, b = CONTRACTIONS[graph.records[value].func]
        branches.append(
            Branch(
                records,
                "attention",
                record.module,
                score=score,
                softmax=i,
                value=value,
                heads=heads,
                scores=s.output_nodes(score)[0],
                weights=p_out,
                mixed=s.output_nodes(value)[0],
                query=score_in.get(q_leaf),
                key=score_in.get(k_leaf),
                values=value_in.get(b)
                if value_in.get(a) == entering
                else value_in.get(a),
            )
        )
    attention_records = set(claimed)
    others = []
    for i, record in enumerate(graph.records):
        if record.func not in MLP_ANCHORS or i in claimed:
            continue
        records = s.closure({i}, claimed)
        claimed |= records
        others.append(records)
    for records in merge_gated(s, others, attention_records):
        module = common_module(
            graph.records[j].module
            for j in records
            if graph.records[j].func in MLP_ANCHORS
        )
        branches.append(Branch(records, "mlp", module))
    for branch in branches:
        branch.inputs, branch.outputs = s.boundary(branch.records)
    return sorted(branches, key=lambda b: min(b.records))


def merge_gated(
    s: Structure, closures: list[set[int]], claimed: set[int]
) -> list[set[int]]:
    """Closures merged where two or more read the same tensors and all their writes
    meet in one other closure: a gated MLP's gate, up and down projections."""
    merged = [set(c) for c in closures]
    while True:
        boundaries = [s.boundary(c) for c in merged]
        owner = {i: k for k, c in enumerate(merged) for i in c}
        found = None
        for k, (inputs, outputs) in enumerate(boundaries):
            targets = {owner.get(c) for n in outputs for c in s.consumers(n)}
            siblings = [
                j
                for j, (other_in, other_out) in enumerate(boundaries)
                if j != k
                and other_in == inputs
                and {owner.get(c) for n in other_out for c in s.consumers(n)} == targets
            ]
            if siblings and len(targets) == 1 and None not in targets:
                (target,) = targets
                if target is not None and target != k and target not in siblings:
                    found = (target, [k, *siblings])
                    break
        if found is None:
            return merged
        target, parts = found
        union = set(merged[target]).union(*(merged[j] for j in parts))
        taken = claimed.union(
            *(c for j, c in enumerate(merged) if j != target and j not in parts)
        )
        union = s.closure(union, taken)
        merged = [c for j, c in enumerate(merged) if j != target and j not in parts]
        merged.append(union)


def head_axis(shape: tuple[int, ...], heads: int, batch: int, module: str = "") -> int:
    """The axis that holds the heads of an attention tensor: 1 for ``(batch, heads,
    ...)``, 0 for ``(batch * heads, ...)`` (head ``i % heads`` there)."""
    if len(shape) == 4 and shape[1] == heads:
        return 1
    if shape and shape[0] == batch * heads:
        return 0
    raise RecordingError(
        f"cannot find the {heads} heads in an attention tensor of shape {shape} in "
        f"module '{module}'; circuits need the heads on the first axis (batch * "
        "heads) or the second"
    )


def head_mask(
    shape: tuple[int, ...], heads: int, batch: int, h: int, module: str = ""
) -> Tensor:
    """True on head ``h``'s elements of an attention tensor (:func:`head_axis`)."""
    axis = head_axis(shape, heads, batch, module)
    rows = torch.arange(shape[axis]) % heads == h
    view = [1] * len(shape)
    view[axis] = shape[axis]
    return rows.reshape(view).expand(shape)


def _restricted(step: PlanStep, leaves: set[int]) -> PlanStep:
    record, ins, outs = step
    return record, {leaf: n for leaf, n in ins.items() if leaf in leaves}, outs


def components_of(
    s: Structure, branches: list[Branch], output_node: int, batch: int
) -> list[Component]:
    """Embed, then each branch's heads or MLP, then logits, with their reads and
    writes. The branch holding the output's producer is the logits read."""
    graph, steps = s.graph, s.steps
    sources = sorted(n for nodes in graph.sources.values() for n in nodes)
    embed_write = Write([Seed(n) for n in sources], [], sources)
    found = [Component("embed", "embed", "", order=-1, write=embed_write)]
    logits = Component("logits", "logits", "", order=len(graph.records))
    logits.reads["in"] = Read([Seed(output_node)], [], [output_node])
    names: set[str] = set()
    for branch in branches:
        inside = sorted(branch.records)
        order = inside[0]
        if s.producer(output_node) in branch.records:
            logits.reads["in"] = Read(
                [Seed(output_node)], [steps[i] for i in inside], branch.inputs
            )
            logits.order, logits.branch = order, branch
            continue
        if branch.kind == "mlp":
            name = branch.module or f"branch{order}"
            while name in names:
                name += "'"
            names.add(name)
            c = Component(name, "mlp", branch.module, order=order, branch=branch)
            c.reads["in"] = Read(
                [Seed(n) for n in branch.outputs],
                [steps[i] for i in inside],
                branch.inputs,
            )
            c.write = Write([Seed(n) for n in branch.outputs], [], branch.outputs)
            found.append(c)
            continue
        before_score, before_value, _, after_value = branch.split_steps(steps)
        score_step, value_step = steps[branch.score], steps[branch.value]
        nodes = graph.nodes
        for h in range(branch.heads):
            c = Component(
                f"{branch.module}.head{h}",
                "head",
                branch.module,
                head=h,
                order=order,
                branch=branch,
            )

            mask = {
                n: head_mask(nodes[n].shape, branch.heads, batch, h, branch.module)
                for n in (branch.scores, branch.weights, branch.mixed)
            }
            for slot, node in (("q", branch.query), ("k", branch.key)):
                if node is None:
                    continue  # not computed from the sources
                leaves = branch.leaf_of(s, branch.score, node)
                c.reads[slot] = Read(
                    [Seed(branch.scores, mask[branch.scores])],
                    before_score + [_restricted(score_step, leaves)],
                    branch.inputs,
                )
            if branch.values is not None:
                leaves = branch.leaf_of(s, branch.value, branch.values)
                c.reads["v"] = Read(
                    [Seed(branch.mixed, mask[branch.mixed])],
                    before_value + [_restricted(value_step, leaves)],
                    branch.inputs,
                )
            seeds = [Seed(branch.mixed, mask[branch.mixed])]
            seeds.append(Seed(branch.weights, mask[branch.weights]))
            c.write = Write(seeds, after_value, branch.outputs)
            found.append(c)
    found.append(logits)
    return found
