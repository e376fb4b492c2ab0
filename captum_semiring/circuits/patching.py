"""Edge patching by replaying a recording: each read sees the clean write of the
upstream components whose edge into it is in the circuit, and a replacement
(the corrupted run's write, zero, or the batch mean) of all the others.

The replay reruns the recorded ATen calls with some inputs replaced, in record
order. Heads are patched one by one: each head's query, key and value are
computed from that head's own view of the residual stream, then put together at
the attention's products. An attention write is split into its heads' parts by
replaying the output projection on one head's values at a time, which needs the
write to be affine in the heads' values (true of every output projection; a
model that normalizes the attention output before the residual addition is
refused).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from .._engine import PlanStep
from .._record import RecordingError
from .components import Branch, Component, Edge, head_mask
from .graph import ComponentGraph

Mode = Literal["corrupt", "zero", "mean"]
Values = dict[int, Tensor]


def replay(steps: Iterable[PlanStep], env: Values) -> Values:
    """Rerun ``steps`` in order, reading tracked inputs from ``env`` (filled in
    place with their outputs); a record none of whose inputs is in ``env`` is
    skipped, one with only some of them reads the others' recorded values."""
    for record, ins, outs in steps:
        replace = {leaf: env[n] for leaf, n in ins.items() if n in env}
        if not replace:
            continue
        results = record.rerun(replace)
        for position, node in outs.items():
            env[node] = results[position]
    return env


@dataclass
class Writes:
    """What each component wrote in one run: per component, per write tensor; a
    head's part excludes the output projection's bias, kept once per attention in
    ``base``."""

    parts: dict[str, Values]
    base: dict[str, Values]
    output: Tensor


class Patcher:
    """Replays one recording with edges patched.

    Args:
        cg: the component graph of the recording to replay.
    """

    def __init__(self, cg: ComponentGraph) -> None:
        self.cg = cg
        self.steps = cg.structure.steps
        self.root = cg.graph.node_of(cg.output)
        # per read: the upstream components with an edge into it, and the ops
        # between components that lead to its tensors
        self.upstream: dict[tuple[str, str], list[str]] = {}
        for e in cg.edges:
            self.upstream.setdefault((e.downstream, e.slot), []).append(e.upstream)
        self.read_steps: dict[tuple[str, str], list[PlanStep]] = {}
        for c in cg.components:
            for slot, read in c.reads.items():
                needed, steps = set(read.inputs), []
                for step in reversed(cg.edge_steps):
                    if self._index(step) < c.order and needed & set(step[2].values()):
                        steps.append(step)
                        needed.update(step[1].values())
                self.read_steps[c.name, slot] = steps[::-1]

    def _saved(self, node: int) -> Tensor:
        return self.cg.graph.saved_tensor(node).detach()

    def run(
        self,
        keep: set[Edge] | None,
        replacement: Writes | None,
    ) -> Writes:
        """The run in which every edge outside ``keep`` (all edges when None) carries
        ``replacement``'s write instead of this run's."""
        cg = self.cg
        parts: dict[str, Values] = {
            "embed": {n: self._saved(n) for n in self._source_nodes()}
        }
        base: dict[str, Values] = {}
        memo: dict[Any, Values] = {}
        done_branches: set[int] = set()
        for c in cg.components:
            if c.kind == "embed":
                continue
            if c.kind == "head":
                branch = c.branch
                assert branch is not None
                if id(branch) in done_branches:
                    continue
                done_branches.add(id(branch))
                heads = [h for h in cg.components if h.branch is branch]
                inputs = {
                    (h.name, slot): self._read_input(
                        h, slot, keep, replacement, parts, base, memo
                    )
                    for h in heads
                    for slot in h.reads
                }
                head_parts, branch_base = self._attention(branch, heads, inputs)
                parts.update(head_parts)
                base[branch.module] = branch_base
                continue
            x = self._read_input(c, "in", keep, replacement, parts, base, memo)
            read = c.reads["in"]
            env = replay(read.steps, dict(x))
            if c.kind == "logits":
                output = env.get(self.root, self._saved(self.root))
                return Writes(parts, base, output)
            assert c.write is not None
            parts[c.name] = {n: env[n] for n in c.write.outputs}
        raise RecordingError("the component graph has no logits")

    def _source_nodes(self) -> list[int]:
        embed = self.cg.by_name["embed"]
        assert embed.write is not None
        return embed.write.outputs

    def _read_input(
        self,
        c: Component,
        slot: str,
        keep: set[Edge] | None,
        replacement: Writes | None,
        parts: dict[str, Values],
        base: dict[str, Values],
        memo: dict[Any, Values],
    ) -> Values:
        """The read tensors of ``c``'s ``slot`` in this run: the ops between
        components replayed from each upstream write, clean or replaced per edge.
        Reads of the same tensors that keep the same upstream edges share one
        replay (``memo``, per run)."""
        read = c.reads[slot]
        upstream = self.upstream.get((c.name, slot), [])
        kept = tuple(
            keep is None or replacement is None or Edge(u, c.name, slot) in keep
            for u in upstream
        )
        key = (tuple(read.inputs), tuple(upstream), kept)
        if key in memo:
            return memo[key]
        env: Values = {}
        for u, clean in zip(upstream, kept):
            source = parts if clean else replacement.parts  # type: ignore[union-attr]
            for node, value in source[u].items():
                env[node] = env[node] + value if node in env else value
        for values in base.values():  # output-projection biases, never patched
            for node, value in values.items():
                env[node] = env[node] + value if node in env else value
        replay(self.read_steps[c.name, slot], env)
        for n in read.inputs:
            if n not in env:
                env[n] = self._saved(n)  # not reached from any write: a constant
        memo[key] = {n: env[n] for n in read.inputs}
        return memo[key]

    def _index(self, step: PlanStep) -> int:
        return self.cg.structure.index[id(step[0])]

    def _attention(
        self,
        branch: Branch,
        heads: list[Component],
        inputs: dict[tuple[str, str], Values],
    ) -> tuple[dict[str, Values], Values]:
        batch = max(self.cg.batch, 1)
        before_score, before_value, between, after = branch.split_steps(self.steps)

        def head_part(t: Tensor, h: int) -> Tensor:
            mask = head_mask(tuple(t.shape), branch.heads, batch, h, branch.module)
            return torch.where(mask, t, torch.zeros_like(t))

        # each head's query, key and value from its own reads, put together
        assembled: Values = {}
        for h, c in enumerate(heads):
            for slot, node, steps in (
                ("q", branch.query, before_score),
                ("k", branch.key, before_score),
                ("v", branch.values, before_value),
            ):
                if node is None or slot not in c.reads:
                    continue
                operand = replay(steps, dict(inputs[c.name, slot])).get(node)
                if operand is None:
                    operand = self._saved(node)
                piece = head_part(operand, h)
                assembled[node] = (
                    assembled[node] + piece if node in assembled else piece
                )
        # the weights from the assembled query and key, then the value product
        env = replay(between + [self.steps[branch.value]], assembled)
        z = env[branch.mixed]
        base_env = replay(after, {branch.mixed: torch.zeros_like(z)})
        base = {n: base_env[n] for n in branch.outputs}
        full = replay(after, {branch.mixed: z})
        parts: dict[str, Values] = {}
        for h, c in enumerate(heads):
            env_h = replay(after, {branch.mixed: head_part(z, h)})
            parts[c.name] = {n: env_h[n] - base[n] for n in branch.outputs}
        for n in branch.outputs:  # affine in the heads: the parts add up
            total = base[n] + sum(parts[c.name][n] for c in heads)
            if not torch.allclose(total, full[n], rtol=1e-5, atol=1e-6):
                raise RecordingError(
                    f"the attention output of module '{branch.module}' is not a sum "
                    "over its heads (is it normalized before the residual addition?); "
                    "edge patching needs it to be"
                )
        return parts, base


def _replaced(writes: Writes, fn: Callable[[Tensor], Tensor]) -> Writes:
    parts = {
        c: {n: fn(v) for n, v in values.items()} for c, values in writes.parts.items()
    }
    return Writes(parts, writes.base, writes.output)


class EdgePatching:
    """Runs of a model in which a circuit's edges carry the clean input's
    activations and every other edge a replacement.

    Args:
        forward_func: one scalar per example (the metric) from the inputs.
        inputs: the clean input (the source, typically embeddings).
        corrupted: the corrupted input, for ``mode="corrupt"``.
        mode: what a patched edge carries: the corrupted run's write
            (``"corrupt"``), zero (``"zero"``), or the write's mean over the batch
            (``"mean"``).
        additional_forward_args: more positional arguments, not sources.

    Examples::

        >>> import torch
        >>> from captum_semiring import circuits
        >>> from captum_semiring.reproductions.tasks import induction
        >>> model = induction.AttentionOnlyTransformer(induction.SMALL_CONFIG)
        >>> ids = induction.repeated_sequences(4, 10, 24, seed=0)
        >>> bad = induction.corrupt(ids, seed=1, keep_second_half=False)
        >>> f = lambda e: induction.target_logit(model, ids, inputs_embeds=e)
        >>> patching = circuits.EdgePatching(f, model.embed(ids), model.embed(bad))
        >>> edges = patching.graph.edges
        >>> round(patching.faithfulness(edges), 6), abs(round(patching.faithfulness([]), 6))
        (1.0, 0.0)
    """

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        inputs: Tensor,
        corrupted: Tensor | None = None,
        mode: Mode = "corrupt",
        additional_forward_args: Iterable[Any] = (),
    ) -> None:
        from .eap import check_same_graph
        from .graph import trace

        if mode not in ("corrupt", "zero", "mean"):
            raise ValueError(f"mode must be 'corrupt', 'zero' or 'mean', got {mode!r}")
        if mode == "corrupt" and corrupted is None:
            raise ValueError("mode='corrupt' needs the corrupted input")
        self.graph = trace(forward_func, inputs, additional_forward_args)
        self.patcher = Patcher(self.graph)
        with torch.no_grad():
            self.clean = self.patcher.run(None, None)
            if mode == "corrupt":
                assert corrupted is not None
                other = trace(forward_func, corrupted, additional_forward_args)
                check_same_graph(self.graph, other, "corrupted")
                self.replacement = Patcher(other).run(None, None)
            elif mode == "zero":
                self.replacement = _replaced(self.clean, torch.zeros_like)
            else:
                self.replacement = _replaced(
                    self.clean, lambda t: t.mean(0, keepdim=True).expand_as(t)
                )
            self.baseline = self.patcher.run(set(), self.replacement).output

    def output(self, edges: Iterable[Edge]) -> Tensor:
        """The metric per example with only ``edges`` carrying clean activations."""
        keep = set(edges)
        unknown = keep.difference(self.graph.edges)
        if unknown:
            raise ValueError(
                f"not edges of this component graph: {sorted(map(str, unknown))[:3]}"
            )
        with torch.no_grad():
            return self.patcher.run(keep, self.replacement).output.detach()

    def faithfulness(self, edges: Iterable[Edge]) -> float:
        """The share of the clean metric the circuit recovers, over the batch:
        :math:`(m(C) - m(\\emptyset)) / (m(G) - m(\\emptyset))`, 1 for the whole graph
        and 0 with every edge patched."""
        full = float(self.clean.output.detach().mean())
        none = float(self.baseline.detach().mean())
        if full == none:
            raise ValueError(
                "the clean and the fully patched runs give the same metric"
            )
        return (float(self.output(edges).mean()) - none) / (full - none)

    def curve(self, ranked: Sequence[Edge], sizes: Iterable[int]) -> list[float]:
        """Faithfulness of the first ``n`` edges of ``ranked`` for each ``n``."""
        return [self.faithfulness(ranked[:n]) for n in sizes]
