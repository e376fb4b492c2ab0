"""The sweeps: one reverse (or forward) walk over the recorded ops, any semiring.

The environment maps node index to its accumulated semiring value; a node with no
entry is the symbolic zero, and ops whose outputs are all zero are skipped. The
engine owns its caches per recording: each record's local maps (built by its rule
on first use) and the sweep plan.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch
from torch import Tensor

from . import rules
from ._record import OpRecord, Recording, RecordingError
from .rules import UnsupportedOpError
from .rules._maps import LocalMap
from .semirings import Semiring, get_semiring

Maps = Mapping[tuple[int, int], LocalMap]
PlanStep = tuple[OpRecord, dict[int, int], dict[int, int]]


@dataclass
class _Cache:
    maps: dict[int, Maps] = field(default_factory=dict)
    plan: list[PlanStep] = field(default_factory=list)


_CACHES: weakref.WeakKeyDictionary[Recording, _Cache] = weakref.WeakKeyDictionary()


def _cache(recording: Recording) -> _Cache:
    cache = _CACHES.get(recording)
    if cache is None:
        cache = _CACHES[recording] = _Cache()
    return cache


def clear_cache(recording: Recording) -> None:
    """Drop the cached local maps (they are rebuilt on the next sweep)."""
    _cache(recording).maps.clear()


class RuleError(RuntimeError):
    """A rule failed while building the local derivatives of one recorded call."""


def local_maps(recording: Recording, record: OpRecord, cache_new: bool = True) -> Maps:
    """The rule's maps for ``record``, keyed by (input leaf, output position);
    built on first use and cached (unless not ``cache_new``)."""
    cache = _cache(recording).maps
    maps = cache.get(id(record))
    if maps is None:
        rule = rules.rule_for(record.func)
        try:
            if torch.is_grad_enabled():
                with torch.no_grad():
                    maps = rule(record)
            else:  # inside a sweep: no grad-mode switch per op
                maps = rule(record)
        except UnsupportedOpError as err:
            if f"module '{record.module}'" in str(err):
                raise
            raise UnsupportedOpError(f"{err} (in module '{record.module}')") from err
        except RecordingError:
            raise  # names the op and module already
        except Exception as err:
            raise RuleError(
                f"the rule for {record.func._schema.name} (overload "
                f"{record.func._overloadname!r}) in module '{record.module}' failed: "
                f"{type(err).__name__}: {err}"
            ) from err
        if cache_new:
            cache[id(record)] = maps
    return maps


def _accumulate(
    sr: Semiring, env: dict[int, Tensor], node: int, value: Tensor, dtype: torch.dtype
) -> None:
    if value.dtype != dtype:
        value = value.to(dtype)
    previous = env.get(node)
    env[node] = value if previous is None else sr.plus(previous, value)


def plan(graph: Recording) -> list[PlanStep]:
    """Per record: the record, input node by leaf, output node by position. Cached;
    a sweep then does no per-record bookkeeping of its own. A caller may sweep a
    subset of these steps, or steps with some input leaves left out (paths through
    those leaves are then cut)."""
    cache = _cache(graph)
    if len(cache.plan) != len(graph.records):
        cache.plan = [(r, dict(r.inputs), dict(r.outputs)) for r in graph.records]
    return cache.plan


#: What a backward sweep keeps: every value, the sources' only, or the sources' and
#: checkpoints from which any other value is recomputed when asked for.
Keep = Literal["all", "sources", "checkpoints"]


@torch.no_grad()
def backward(
    graph: Recording,
    output: Tensor | int,
    semiring: Semiring | str,
    keep: Keep = "all",
) -> Sweep:
    sr = get_semiring(semiring)
    if keep not in get_args(Keep):
        raise ValueError(
            f"keep must be 'all', 'sources' or 'checkpoints', got {keep!r}"
        )
    node: int | None = None
    if isinstance(output, int) and not isinstance(output, bool):
        node = graph.node_of(output)  # a node index (of a loaded recording, say)
        output = graph.saved_tensor(node).detach()
    if not isinstance(output, Tensor):
        raise TypeError(
            f"output must be a tensor or a node index, got {type(output).__name__}"
        )
    if output.dim() > 1:
        raise ValueError(
            f"output must hold one scalar per example, shape () or (batch,); got shape "
            f"{tuple(output.shape)}. Select a target first, for example out[:, 3]"
        )
    if node is None:
        try:
            node = graph.node_of(output)
        except KeyError as err:
            if graph.loaded:
                raise ValueError(err.args[0]) from None
            raise ValueError(
                "the output was not computed from the sources inside the "
                "`with cs.record(...)` block, so no path leads to it"
            ) from None
    graph.check_unchanged()
    kept, checkpoints = None, None
    if keep != "all":
        kept = frozenset(n for nodes in graph.sources.values() for n in nodes)
    if keep == "checkpoints":
        checkpoints = Checkpoints(plan(graph))
    seed = {node: sr.ones(output.shape, output.detach())}
    # A sweep that frees values drops the maps it builds too (they hold derived
    # tensors, as much as a fifth of the peak); a later sweep builds them again.
    cache_maps = keep == "all"
    env = reverse(graph, sr, seed, kept, checkpoints=checkpoints, cache_maps=cache_maps)
    return Sweep(graph, sr, env, node, output, kept, checkpoints)


@torch.no_grad()
def reverse(
    graph: Recording,
    sr: Semiring,
    env: dict[int, Tensor],
    kept: frozenset[int] | None = None,
    steps: list[PlanStep] | None = None,
    checkpoints: Checkpoints | None = None,
    cache_maps: bool = True,
) -> dict[int, Tensor]:
    """The reverse sweep from seed values ``env`` (node to value), filled in place.

    With ``kept``, every other node's value is dropped once the sweep has passed its
    producer (all its consumers come before, in reverse order), so only about one
    layer's values are alive at a time. ``steps`` (a subsequence of :func:`plan`,
    default all of it) restricts the sweep to those records and input leaves.
    ``checkpoints`` (over all of :func:`plan`) saves the live values as it passes
    its boundaries. Without ``cache_maps``, local maps it builds are not cached."""
    nodes = graph.nodes
    steps = plan(graph) if steps is None else steps
    # Ops none of whose outputs reach the output (dead branches, or ops recorded
    # after it) have no value: they are skipped before their local maps are built.
    for i in range(len(steps) - 1, -1, -1):
        if checkpoints is not None:
            checkpoints.save(i + 1, env)
        record, ins, outs = steps[i]
        live = {p: env[n] for p, n in outs.items() if n in env}
        if not live:
            continue
        for (leaf, position), local in local_maps(graph, record, cache_maps).items():
            value = live.get(position)
            node = ins.get(leaf)
            if value is not None and node is not None:
                _accumulate(sr, env, node, local.backward(sr, value), nodes[node].dtype)
        if kept is not None:
            for n in outs.values():
                if n not in kept:
                    env.pop(n, None)
    return env


@torch.no_grad()
def forward(graph: Recording, semiring: Semiring | str) -> Sweep:
    sr = get_semiring(semiring)
    graph.check_unchanged()
    env: dict[int, Tensor] = {}
    nodes = graph.nodes
    for sources in graph.sources.values():
        for node in sources:
            meta = nodes[node]
            env[node] = sr.ones(meta.shape, torch.empty((), dtype=meta.dtype))
    return Sweep(graph, sr, propagate(graph, sr, env), None, None)


@torch.no_grad()
def propagate(
    graph: Recording,
    sr: Semiring,
    env: dict[int, Tensor],
    steps: list[PlanStep] | None = None,
) -> dict[int, Tensor]:
    """The forward sweep from seed values ``env`` (node to value), filled in place,
    over ``steps`` (a subsequence of :func:`plan`, default all of it)."""
    nodes = graph.nodes
    for record, ins, outs in plan(graph) if steps is None else steps:
        live = {leaf: env[n] for leaf, n in ins.items() if n in env}
        if not live:
            continue
        for (leaf, position), local in local_maps(graph, record).items():
            value = live.get(leaf)
            node = outs.get(position)
            if value is not None and node is not None:
                _accumulate(sr, env, node, local.forward(sr, value), nodes[node].dtype)
    return env


class Checkpoints:
    """The live values of a reverse sweep at every ``every``-th step of ``steps``
    (shallow copies of its values: a sweep never changes a value in place), from
    which one segment of steps is swept again when a dropped value is asked for.

    A path visits segments in order, so it costs about one more sweep, while the
    sweep holds about one layer's values plus one snapshot per segment (on a
    transformer, the residual stream at ``sqrt(records)`` places)."""

    def __init__(self, steps: list[PlanStep]) -> None:
        self.steps = steps
        self.every = max(1, math.isqrt(len(steps)))
        self.saved: dict[int, dict[int, Tensor]] = {}
        self._step_of: dict[int, int] | None = None
        self._segment: tuple[int, dict[int, Tensor]] | None = None

    def save(self, boundary: int, env: dict[int, Tensor]) -> None:
        """At ``boundary``, the sweep has done every step from there on."""
        if boundary % self.every == 0 or boundary == len(self.steps):
            self.saved[boundary] = dict(env)

    def value(self, graph: Recording, sr: Semiring, node: int) -> Tensor | None:
        """The node's value, from its producer's segment swept again (the last one
        is cached); None for a node no step produced or no path reaches."""
        if self._step_of is None:
            self._step_of = {id(r): i for i, (r, _, _) in enumerate(self.steps)}
        producer = graph.nodes[node].producer
        step = None if producer is None else self._step_of.get(id(producer))
        if step is None:
            return None
        start = step // self.every * self.every
        if self._segment is None or self._segment[0] != start:
            end = min(start + self.every, len(self.steps))
            env = dict(self.saved[end])
            reverse(graph, sr, env, steps=self.steps[start:end], cache_maps=False)
            self._segment = (start, env)
        return self._segment[1].get(node)


class Sweep:
    """The raw outcome of one sweep: the semiring value of every node reached.

    Attributes:
        graph: the swept recording.
        semiring: the semiring of the sweep.
        env: node index to its value ``(S, *shape)``; absent nodes hold the zero.
        root: the output node (backward sweeps), else None.
        output: the output tensor (backward sweeps), else None.
        kept: the nodes whose values a ``keep="sources"`` or ``"checkpoints"``
            sweep kept, else None (every value kept).
        checkpoints: a ``keep="checkpoints"`` sweep's :class:`Checkpoints`, else
            None.
    """

    def __init__(
        self,
        graph: Recording,
        semiring: Semiring,
        env: dict[int, Tensor],
        root: int | None,
        output: Tensor | None,
        kept: frozenset[int] | None = None,
        checkpoints: Checkpoints | None = None,
    ) -> None:
        self.graph, self.semiring, self.env, self.root, self.output = (
            graph,
            semiring,
            env,
            root,
            output,
        )
        self.kept, self.checkpoints = kept, checkpoints

    def require_every_value(self, what: str) -> None:
        """Raise unless every node's value can be had: ``what`` needs them."""
        if self.kept is not None and self.checkpoints is None:
            raise ValueError(
                f"{what} needs the values of tensors inside the model, and this sweep "
                "kept only its sources (keep='sources'); sweep with keep='all' or "
                "keep='checkpoints'"
            )

    def value(self, node: int) -> Tensor | None:
        """A node's raw value, None where nothing flows (recomputed from the
        checkpoints where the sweep dropped it)."""
        value = self.env.get(node)
        if value is None and self.checkpoints is not None and node not in self.kept:  # type: ignore[operator]
            value = self.checkpoints.value(self.graph, self.semiring, node)
        return value

    def values(self, item: Any) -> Tensor:
        """Raw semiring values ``(S, *shape)``; the semiring zero where nothing flows."""
        node = self.graph.node_of(item)
        if self.kept is not None and node not in self.kept:
            self.require_every_value("this tensor's value")
        value = self.value(node)
        if value is None:
            meta = self.graph.nodes[node]
            value = self.semiring.zeros(meta.shape, torch.empty((), dtype=meta.dtype))
        return value
