"""The recorder: a dispatch mode that writes down every ATen call on tracked tensors.

Tracked tensors are the sources and everything computed from them. Each scalar element
of a tracked tensor is a node of the gradient graph; each recorded call keeps its
arguments so that its rule can compute local derivatives later, during a sweep.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch._decomp import decomposition_table
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_unflatten

from . import rules
from .rules import UnsupportedOpError

aten = torch.ops.aten

# Float outputs that do not depend on the values read (autograd would not track them).
_NOT_DIFFERENTIABLE = {
    aten.detach.default,
    aten.zeros_like.default,
    aten.ones_like.default,
    aten.empty_like.default,
    aten.full_like.default,
    aten.rand_like.default,
    aten.randn_like.default,
    aten.new_zeros.default,
    aten.new_ones.default,
    aten.new_empty.default,
    aten.new_full.default,
    aten.new_empty_strided.default,
    aten.empty_strided.default,
    aten.bernoulli.p,
    aten.bernoulli.default,
}

# In-place ops that change only metadata, never data.
_METADATA_INPLACE = {
    aten.transpose_.default,
    aten.t_.default,
    aten.squeeze_.default,
    aten.squeeze_.dim,
    aten.unsqueeze_.default,
    aten.as_strided_.default,
}

# Names accepted by ``record(decompose=...)``.
COMPOSITE_PRIMITIVES = {
    "softmax": (aten._softmax.default,),
    "log_softmax": (aten._log_softmax.default,),
    "layer_norm": (aten.native_layer_norm.default,),
    "gelu": (aten.gelu.default,),
}


class RecordingError(RuntimeError):
    """Raised when a recording cannot be made exact."""


def _storage_key(t: Tensor) -> int | None:
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return None


def _footprint(t: Tensor) -> Tensor:
    """Storage offsets of every element of ``t``."""
    size = t.untyped_storage().nbytes() // max(1, t.element_size())
    return (
        torch.arange(size)
        .as_strided(t.shape, t.stride(), t.storage_offset())
        .reshape(-1)
    )


def _overlaps(a: Tensor, b: Tensor) -> bool:
    if a.numel() == 0 or b.numel() == 0:
        return False
    size = a.untyped_storage().nbytes() // max(1, a.element_size())
    mark = torch.zeros(size, dtype=torch.bool)
    mark[_footprint(a)] = True
    return bool(mark[_footprint(b)].any())


def _is_tracked_dtype(t: object) -> bool:
    return isinstance(t, Tensor) and (t.is_floating_point() or t.is_complex())


def _functional(func: torch._ops.OpOverload) -> torch._ops.OpOverload | None:
    """The out-of-place counterpart of an in-place overload (``add_`` to ``add``)."""
    name = func._schema.name.split("::")[-1]
    packet = getattr(aten, name.rstrip("_"), None)
    if packet is None:
        return None
    overload = getattr(packet, func._overloadname, None)
    if overload is not None:
        return overload
    n_args = len(func._schema.arguments)
    for name in packet.overloads():
        candidate = getattr(packet, name)
        if len(candidate._schema.arguments) == n_args:
            return candidate
    return None


# ----- fast argument flattening --------------------------------------------------
# ATen arguments are leaves or flat lists of leaves (``Tensor[]``, ``int[]``), so a
# one-level flatten replaces ``torch.utils._pytree`` at a fraction of its cost per op.
# A spec is ``(layout, keys)``: per argument (keywords last) None for a leaf, or the
# container type and its length; ``keys`` names the keyword arguments.
_PYTREE = "pytree"


def _flatten_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[list, Any]:
    leaves: list[Any] = []
    layout: list[Any] = []
    for value in (*args, *kwargs.values()):
        kind = type(value)
        if kind is list or kind is tuple:
            for x in value:
                if isinstance(x, (list, tuple, dict)):  # nested: not an ATen schema
                    flat, spec = tree_flatten((args, kwargs))
                    return flat, (_PYTREE, spec)
            layout.append((kind, len(value)))
            leaves.extend(value)
        elif kind is dict:
            flat, spec = tree_flatten((args, kwargs))
            return flat, (_PYTREE, spec)
        else:
            layout.append(None)
            leaves.append(value)
    return leaves, (tuple(layout), tuple(kwargs))


def _unflatten_args(leaves: list[Any], spec: Any) -> tuple[tuple, dict]:
    if spec[0] == _PYTREE:
        return tree_unflatten(leaves, spec[1])
    layout, keys = spec
    values: list[Any] = []
    at = 0
    for kind in layout:
        if kind is None:
            values.append(leaves[at])
            at += 1
        else:
            values.append(kind[0](leaves[at : at + kind[1]]))
            at += kind[1]
    n_args = len(layout) - len(keys)
    return tuple(values[:n_args]), dict(zip(keys, values[n_args:], strict=True))


def _flatten_out(out: Any) -> list[Any]:
    """An op's results as a flat list (a tensor, or a tuple or list of them)."""
    if isinstance(out, Tensor):
        return [out]
    if type(out) in (tuple, list) and not any(
        isinstance(x, (list, tuple, dict)) for x in out
    ):
        return list(out)
    return tree_flatten(out)[0]


class _OpInfo:
    """Per-overload facts the recorder and rules ask for on every call, cached."""

    __slots__ = ("arg_index", "writes", "kwarg_write", "metadata_inplace", "skip")

    def __init__(self, func: Any) -> None:
        arguments = func._schema.arguments
        self.arg_index = {a.name: (i, a) for i, a in enumerate(arguments)}
        self.writes = tuple(
            i
            for i, a in enumerate(arguments)
            if a.alias_info is not None and a.alias_info.is_write
        )
        self.kwarg_write = any(arguments[i].kwarg_only for i in self.writes)
        self.metadata_inplace = func in _METADATA_INPLACE
        self.skip = func in _NOT_DIFFERENTIABLE


_OP_INFO: dict[Any, _OpInfo] = {}


def _op_info(func: Any) -> _OpInfo:
    info = _OP_INFO.get(func)
    if info is None:
        info = _OP_INFO[func] = _OpInfo(func)
    return info


# Ops that only copy or view elements: NaN cannot first appear in their outputs.
_COPIES = {
    aten.view.default,
    aten._unsafe_view.default,
    aten.alias.default,
    aten.clone.default,
    aten.expand.default,
    aten.permute.default,
    aten.transpose.int,
    aten.t.default,
    aten.squeeze.default,
    aten.squeeze.dim,
    aten.squeeze.dims,
    aten.unsqueeze.default,
    aten.slice.Tensor,
    aten.select.int,
    aten.split.Tensor,
    aten.split_with_sizes.default,
    aten.unbind.int,
    aten.cat.default,
    aten.stack.default,
    aten.index_select.default,
    aten.embedding.default,
}


@dataclass(eq=False)
class OpRecord:
    """One recorded ATen call.

    ``leaves`` are the flattened ``(args, kwargs)``; ``inputs`` pairs each tracked leaf
    position with its node; ``outputs`` pairs each tracked output position with its
    node. Rules read values through :meth:`arg`, :meth:`output` and :meth:`rerun`.
    """

    func: Any
    leaves: list[Any]
    spec: Any
    out_leaves: list[Any]
    out_spec: Any
    inputs: list[tuple[int, int]]
    outputs: list[tuple[int, int]]
    module: str
    versions: list[tuple[Tensor, int]] = field(default_factory=list)

    @property
    def op_name(self) -> str:
        return str(self.func)

    @property
    def args(self) -> tuple[Any, ...]:
        return _unflatten_args(self.leaves, self.spec)[0]

    @property
    def kwargs(self) -> dict[str, Any]:
        return _unflatten_args(self.leaves, self.spec)[1]

    def arg(self, name: str, default: Any = None) -> Any:
        """An argument by its schema name, whether given by position or keyword."""
        if self.spec[0] != _PYTREE:
            # Fast path: find the argument's slot in the flat layout.
            layout, keys = self.spec
            n_args = len(layout) - len(keys)
            found = _op_info(self.func).arg_index.get(name)
            if found is not None and found[0] < n_args:
                slot = found[0]
            elif name in keys:
                slot = n_args + keys.index(name)
            else:
                if found is not None and found[1].has_default_value():
                    return found[1].default_value
                return default
            at = sum(1 if kind is None else kind[1] for kind in layout[:slot])
            kind = layout[slot]
            if kind is None:
                return self.leaves[at]
            return kind[0](self.leaves[at : at + kind[1]])
        args, kwargs = _unflatten_args(self.leaves, self.spec)
        if name in kwargs:
            return kwargs[name]
        found = _op_info(self.func).arg_index.get(name)
        if found is not None:
            i, a = found
            if i < len(args):
                return args[i]
            if a.has_default_value():
                return a.default_value
        return default

    def position(self, name: str) -> int:
        """The leaf position of a tensor argument, by its schema name."""
        if self.spec[0] == _PYTREE:
            return self._pytree_position(name)
        layout, keys = self.spec
        n_args = len(layout) - len(keys)
        found = _op_info(self.func).arg_index.get(name)
        target = found[0] if found is not None and found[0] < n_args else None
        if target is None and name in keys:
            target = n_args + keys.index(name)
        if target is None:
            raise KeyError(f"{self.op_name} has no tensor argument {name!r}")
        return sum(1 if kind is None else kind[1] for kind in layout[:target])

    def _pytree_position(self, name: str) -> int:
        args, kwargs = tree_unflatten(self.leaves, self.spec[1])
        start = 0
        for i, a in enumerate(args):
            if self.func._schema.arguments[i].name == name:
                return start
            start += len(tree_flatten(a)[0])
        for key, value in kwargs.items():
            if key == name:
                return start
            start += len(tree_flatten(value)[0])
        raise KeyError(f"{self.op_name} has no tensor argument {name!r}")

    def output(self, position: int = 0) -> Any:
        return self.out_leaves[position]

    def rerun(self, replace: dict[int, Any]) -> list[Any]:
        """Call the op again with some leaves replaced; returns flattened outputs."""
        leaves = [replace.get(i, leaf) for i, leaf in enumerate(self.leaves)]
        args, kwargs = _unflatten_args(leaves, self.spec)
        return _flatten_out(self.func(*args, **kwargs))

    def check_unchanged(self) -> None:
        for t, version in self.versions:
            if t._version != version:
                raise RecordingError(
                    f"a tensor read by {self.op_name} in module '{self.module}' was "
                    "changed in place after it was recorded; record again"
                )


@dataclass
class Node:
    """One tracked tensor version: its elements are nodes of the gradient graph."""

    index: int
    shape: tuple[int, ...]
    dtype: torch.dtype
    producer: OpRecord | None
    label: str = ""


class LayerInput:
    """Names a module's input (its first tensor argument or all of them) as a source.

    Examples::

        >>> import torch, captum_semiring as cs
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh())
        >>> with cs.record(cs.layer_input(net[1])) as graph:
        ...     out = net(torch.randn(4, 3)).sum(-1)
        >>> graph.backward(out, "sum")[cs.layer_input(net[1])].shape
        torch.Size([4, 2])
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LayerInput) and other.module is self.module

    def __hash__(self) -> int:
        return hash(("input", id(self.module)))

    def __repr__(self) -> str:
        return f"layer_input({type(self.module).__name__})"


def layer_input(module: nn.Module) -> LayerInput:
    """Mark ``module``'s input as a source for :func:`record`: the first
    floating-point tensor among its positional arguments (a transformer layer's
    hidden states, not its float attention mask)."""
    return LayerInput(module)


Source = Tensor | nn.Module | LayerInput


class Graph:
    """A recorded gradient graph. Made by :func:`record`; swept by :meth:`backward`
    and :meth:`forward`."""

    def __init__(self, decompose: Iterable[Any] = ()) -> None:
        self.nodes: list[Node] = []
        self.records: list[OpRecord] = []
        self.consumers: dict[int, list[tuple[OpRecord, int]]] = {}
        self.sources: dict[Any, list[int]] = {}
        self.module_paths: dict[int, str] = {}
        self.decompose = _decompose_set(decompose)
        self._node_of: dict[int, int] = {}
        self._keep: dict[int, Tensor] = {}
        # Storage -> node tensors and saved slots, for in-place writes. Most models
        # never write in place while recording, so both are built at the first write
        # (from ``_keep`` and the records) and kept up to date from then on.
        self._write_index = False
        self._by_storage: dict[int, set[int]] = {}
        self._saved_by_storage: dict[int, list[tuple[list[Any], int]]] = {}
        self._stale: dict[int, str] = {}
        self._maps: dict[int, dict[tuple[int, int], Any]] = {}
        self._sweep_plan: list[Any] | None = None
        self._module_stack: list[str] = []
        self._nan_warned = False

    # ----- nodes -------------------------------------------------------------
    def _new_node(self, t: Tensor, producer: OpRecord | None, label: str = "") -> int:
        node = Node(len(self.nodes), tuple(t.shape), t.dtype, producer, label)
        self.nodes.append(node)
        self._node_of[id(t)] = node.index
        self._keep[id(t)] = t
        if self._stale:
            self._stale.pop(id(t), None)
        if self._write_index:
            key = _storage_key(t)
            if key is not None:
                self._by_storage.setdefault(key, set()).add(id(t))
        return node.index

    def _index_storage(self) -> None:
        """Build the storage indexes at the first in-place write."""
        if self._write_index:
            return
        self._write_index = True
        for id_, t in self._keep.items():
            key = _storage_key(t)
            if key is not None:
                self._by_storage.setdefault(key, set()).add(id_)
        for record in self.records:
            _index_saved(self._saved_by_storage, record)

    def _warn_first_nan(self) -> None:
        """Warn once, naming the first op whose output has a NaN that its inputs do
        not. Checked when recording ends: one norm per op output in one call (a NaN
        anywhere makes the norm NaN; overflow gives inf), inputs only where needed."""
        if self._nan_warned:
            return
        outs = [
            (record, t)
            for record in self.records
            if record.func not in _COPIES  # copies cannot make a NaN
            for t in record.out_leaves
            if _is_tracked_dtype(t)
        ]
        if not outs:
            return
        norms = torch._foreach_norm([t.detach() for _, t in outs])
        flags = torch.stack([n.isnan().to("cpu") for n in norms]).tolist()
        for (record, _), flag in zip(outs, flags, strict=True):
            if not flag:
                continue
            ins = [t for t in record.leaves if _is_tracked_dtype(t)]
            if any(bool(torch.isnan(t).any()) for t in ins):
                continue
            self._nan_warned = True
            warnings.warn(
                f"NaN first appeared in the output of {record.op_name} in module "
                f"'{record.module}'; semiring values downstream of it are not "
                "meaningful",
                RuntimeWarning,
                stacklevel=4,
            )
            return

    def _lookup(self, t: Tensor) -> int | None:
        index = self._node_of.get(id(t))
        if index is not None and self._keep.get(id(t)) is t:
            return index
        return None

    def node_of(self, item: Any) -> int:
        """The node index for a source, module or recorded tensor."""
        if isinstance(item, (nn.Module, LayerInput)):
            nodes = self.sources.get(item if isinstance(item, LayerInput) else id(item))
            if not nodes:
                raise KeyError(
                    f"{item!r} was not a source of this recording, or never ran"
                )
            if len(nodes) > 1:
                raise KeyError(
                    f"{item!r} ran {len(nodes)} times; name the tensor it produced instead"
                )
            return nodes[0]
        if isinstance(item, Tensor):
            for_source = self.sources.get(("tensor", id(item)))
            if for_source:
                return for_source[0]
            index = self._lookup(item)
            if index is not None:
                return index
        raise KeyError(
            "this tensor was not recorded: pass it to cs.record(...) as a source, or "
            "compute it inside the `with cs.record(...)` block"
        )

    # ----- recorded maps -------------------------------------------------------
    def local_maps(self, record: OpRecord) -> dict[tuple[int, int], Any]:
        """The rule's maps for ``record``, keyed by (input leaf, output position)."""
        maps = self._maps.get(id(record))
        if maps is None:
            rule = rules.rule_for(record.func)
            if torch.is_grad_enabled():
                with torch.no_grad():
                    maps = rule(record)
            else:  # inside a sweep: no grad-mode switch per op
                maps = rule(record)
            self._maps[id(record)] = maps
        return maps

    def clear_cache(self) -> None:
        """Drop cached local derivatives (they are recomputed on the next sweep)."""
        self._maps.clear()

    def check_unchanged(self) -> None:
        for record in self.records:
            record.check_unchanged()

    def _snapshot_versions(self) -> None:
        """Remember saved tensors' versions once recording ends (autograd bumps them
        only after each dispatch returns, so they settle at the end)."""
        for record in self.records:
            record.versions = [
                (t, t._version)
                for t in (*record.leaves, *record.out_leaves)
                if isinstance(t, Tensor)
            ]

    # ----- sweeps --------------------------------------------------------------
    def backward(self, output: Tensor, semiring: Any = "sum") -> Any:
        """Sweep from ``output`` (one scalar per example) back to every node.

        Args:
            output: a recorded tensor of shape ``()`` or ``(batch,)``.
            semiring: a :class:`~captum_semiring.Semiring` or its name.

        Returns:
            A :class:`~captum_semiring.SemiringResult`.
        """
        from ._engine import backward

        return backward(self, output, semiring)

    def forward(self, semiring: Any = "sum") -> Any:
        """Sweep from every source forward: ⊕ over paths from any source element."""
        from ._engine import forward

        return forward(self, semiring)

    def __repr__(self) -> str:
        return f"Graph({len(self.records)} ops, {len(self.nodes)} tensors)"


def _decompose_set(decompose: Iterable[Any]) -> set[Any]:
    if isinstance(decompose, str):
        decompose = (decompose,)
    ops: set[Any] = set()
    for item in decompose:
        if isinstance(item, str):
            if item not in COMPOSITE_PRIMITIVES:
                names = ", ".join(sorted(COMPOSITE_PRIMITIVES))
                raise ValueError(
                    f"cannot decompose {item!r}; choose from {names} or pass an ATen overload"
                )
            ops.update(COMPOSITE_PRIMITIVES[item])
        else:
            ops.add(item)
    return ops


_RECORD, _NO_RULE = object(), object()


class _Recorder(TorchDispatchMode):
    def __init__(self, graph: Graph) -> None:
        super().__init__()
        self.graph = graph
        self._plans: dict[Any, Any] = {}

    @property
    def module(self) -> str:
        stack = self.graph._module_stack
        return stack[-1] if stack else ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        graph = self.graph
        info = _op_info(func)
        leaves, spec = _flatten_args(args, kwargs)
        node_of, keep = graph._node_of, graph._keep
        tracked = []
        for i, x in enumerate(leaves):
            if isinstance(x, Tensor):
                node = node_of.get(id(x))
                if node is not None and keep.get(id(x)) is x:
                    tracked.append((i, node))
        if graph._stale:
            for x in leaves:
                if isinstance(x, Tensor) and id(x) in graph._stale:
                    raise RecordingError(
                        f"{func} in module '{self.module}' reads a tensor that was "
                        f"changed in place through an alias ({graph._stale[id(x)]}) "
                        "after it was recorded; this cannot be made exact"
                    )
        written = [args[i] for i in info.writes if i < len(args)]
        if info.kwarg_write and kwargs and tracked:
            raise RecordingError(
                f"{func} in module '{self.module}' writes to out=; use the functional form"
            )
        for t in written:
            self._copy_saved_before_write(t, metadata_only=info.metadata_inplace)

        if not torch.is_grad_enabled():
            # As in autograd, a tensor changed under no_grad keeps its history.
            return func(*args, **kwargs)
        if not tracked or info.skip:
            out = func(*args, **kwargs)
            for t in written:
                self._forget_written(t, func, info.metadata_inplace)
            return out

        if written:
            return self._record_inplace(
                func, args, kwargs, leaves, spec, tracked, written
            )

        plan = self._plans.get(func)
        if plan is None:
            plan = self._plans[func] = self._plan(func)
        if plan is not _RECORD:
            if plan is _NO_RULE:
                out = func(*args, **kwargs)
                if not any(_is_tracked_dtype(t) for t in _flatten_out(out)):
                    return out  # integer or boolean results carry no gradient
                raise UnsupportedOpError(
                    f"no rule for {func} (in module '{self.module}') and no "
                    "decomposition; register one with "
                    "captum_semiring.rules.register_rule"
                )
            with self:
                out = plan(*args, **kwargs)
            if out is NotImplemented:
                raise UnsupportedOpError(
                    f"no rule for {func} (in module '{self.module}'), and its "
                    "decomposition does not cover these arguments"
                )
            return out
        out = func(*args, **kwargs)
        self._record(func, leaves, spec, out, tracked)
        return out

    def _plan(self, func: Any) -> Any:
        """What to do with a tracked call of ``func``: record it, decompose it (the
        decomposition), or fail (no rule)."""
        decomposition = self._decomposition(func)
        if decomposition is not None:
            return decomposition
        return _RECORD if rules.has_rule(func) else _NO_RULE

    def _decomposition(self, func: Any) -> Callable[..., Any] | None:
        if func in self.graph.decompose:
            table_entry = rules.decomposition_for(func) or decomposition_table.get(func)
            if table_entry is None:
                raise ValueError(f"{func} has no decomposition")
            return table_entry
        if rules.has_rule(func):
            return None
        found = rules.decomposition_for(func) or decomposition_table.get(func)
        if found is None and torch._C._dispatch_has_kernel_for_dispatch_key(
            func.name(), "CompositeImplicitAutograd"
        ):
            found = func.decompose
        return found

    def _record(
        self,
        func: Any,
        leaves: list[Any],
        spec: Any,
        out: Any,
        tracked: list[tuple[int, int]],
        saved_out: Tensor | None = None,
    ) -> OpRecord:
        """Write down one call. ``saved_out`` is a private copy of an in-place op's
        result, whose version counter autograd bumps only after dispatch returns."""
        graph = self.graph
        out_leaves = _flatten_out(out)
        record = OpRecord(
            func, list(leaves), spec, out_leaves, None, tracked, [], self.module
        )
        for i, t in enumerate(out_leaves):
            if _is_tracked_dtype(t):
                record.outputs.append((i, graph._new_node(t, record)))
        if not record.outputs:
            return record  # no float result: nothing flows through this call
        if saved_out is not None:
            record.out_leaves = [saved_out]
        if graph._write_index:
            _index_saved(graph._saved_by_storage, record)
        graph.records.append(record)
        consumers = graph.consumers
        for position, node in tracked:
            entry = consumers.get(node)
            if entry is None:
                consumers[node] = [(record, position)]
            else:
                entry.append((record, position))
        return record

    def _record_inplace(self, func, args, kwargs, leaves, spec, tracked, written):  # type: ignore[no-untyped-def]
        functional = _functional(func)
        if (
            functional is None
            or not rules.has_rule(functional)
            and rules.decomposition_for(functional) is None
            and functional not in decomposition_table
        ):
            raise UnsupportedOpError(
                f"in-place {func} (in module '{self.module}') has no out-of-place rule"
            )
        target = written[0]
        key = _storage_key(target)
        copies: dict[int, Tensor] = {}
        # Every argument that shares the written memory is saved as it was before.
        functional_leaves = [
            copies.setdefault(id(x), x.detach().clone())
            if isinstance(x, Tensor) and key is not None and _storage_key(x) == key
            else x
            for x in leaves
        ]
        out = func(*args, **kwargs)
        self._forget_written(target, func, func in _METADATA_INPLACE)
        self._record(
            functional,
            functional_leaves,
            spec,
            target,
            tracked,
            saved_out=target.detach().clone(),
        )
        return out

    def _copy_saved_before_write(self, t: Tensor, metadata_only: bool) -> None:
        """Saved arguments that share ``t``'s memory get private copies first."""
        graph = self.graph
        graph._index_storage()
        key = _storage_key(t)
        if key is None or key not in graph._saved_by_storage:
            return
        keep = []
        copies: dict[int, Tensor] = {}
        for slots, i in graph._saved_by_storage.pop(key):
            saved = slots[i]
            if metadata_only and saved is not t:
                keep.append((slots, i))
                continue
            if id(saved) not in copies:
                copies[id(saved)] = saved.detach().clone()
            slots[i] = copies[id(saved)]
        if keep:
            graph._saved_by_storage[key] = keep

    def _forget_written(self, t: Tensor, func: Any, metadata_only: bool) -> None:
        """After ``t`` is written, tracked aliases of it hold stale values."""
        graph = self.graph
        graph._index_storage()
        graph._node_of.pop(id(t), None)
        key = _storage_key(t)
        if key is None or metadata_only:
            return
        for other_id in list(graph._by_storage.get(key, ())):
            other = graph._keep.get(other_id)
            if other is None or other is t or graph._node_of.get(other_id) is None:
                continue
            if _overlaps(t, other):
                graph._node_of.pop(other_id, None)
                graph._stale[other_id] = f"{func} in module '{self.module}'"


def _index_saved(
    index: dict[int, list[tuple[list[Any], int]]], record: OpRecord
) -> None:
    """Add ``record``'s saved tensors to a storage index. (An in-place op's saved
    result is a private copy that nothing writes; indexing it is harmless.)"""
    for slots in (record.leaves, record.out_leaves):
        for i, t in enumerate(slots):
            if isinstance(t, Tensor):
                key = _storage_key(t)
                if key is not None:
                    index.setdefault(key, []).append((slots, i))


def _module_hooks(graph: Graph) -> list[Any]:
    """Global forward hooks that keep ``graph._module_stack`` at the running module."""
    names = graph.module_paths
    stack = graph._module_stack

    def pre_hook(module: nn.Module, args: Any) -> None:
        if id(module) not in names:
            parent = stack[-1] if stack else ""
            if not stack:
                for name, sub in module.named_modules(remove_duplicate=False):
                    names.setdefault(id(sub), name)
            else:
                names.setdefault(
                    id(module), f"{parent}.{type(module).__name__}".lstrip(".")
                )
        stack.append(names[id(module)])

    def post_hook(module: nn.Module, args: Any, output: Any) -> None:
        if stack:
            stack.pop()

    from torch.nn.modules import module as module_lib

    return [
        module_lib.register_module_forward_pre_hook(pre_hook),
        module_lib.register_module_forward_hook(post_hook, always_call=True),
    ]


def _mark_source(
    graph: Graph, key: Any, value: Any, label: str, first_only: bool = False
) -> None:
    tensors = [t for t in tree_flatten(value)[0] if _is_tracked_dtype(t)]
    if first_only:
        tensors = tensors[:1]
    if not tensors:
        raise TypeError(f"{label} produced no floating-point tensor to use as a source")
    for t in tensors:
        if not t.requires_grad and t.grad_fn is None:
            t.requires_grad_(True)
        node = graph._lookup(t)
        if node is None:
            node = graph._new_node(t, None, label)
        graph.sources.setdefault(key, []).append(node)


@contextlib.contextmanager
def recording_kernels() -> Iterator[None]:
    """The kernel choices a recording needs: grad on (no fused inference kernels), no
    oneDNN (its fused RNN kernel has no rule), no fused attention fast path."""
    mkldnn = torch._C._get_mkldnn_enabled()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch._C._set_mkldnn_enabled(False)
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.enable_grad():
            yield
    finally:
        torch._C._set_mkldnn_enabled(mkldnn)
        torch.backends.mha.set_fastpath_enabled(fastpath)


@contextlib.contextmanager
def record(*sources: Source, decompose: Iterable[Any] = ()) -> Iterator[Graph]:
    """Record the gradient graph of everything computed from ``sources``.

    Run the model inside the block. Every ATen call that reads a tracked tensor is
    recorded with the module path it ran in. Grad mode is on while recording, so
    PyTorch takes its ordinary (not fused inference) kernels.

    Args:
        sources: float tensors (inputs or parameters), modules (their output), or
            :func:`layer_input` markers (a module's input).
        decompose: composite primitives to split into finer ops before recording:
            ``"softmax"``, ``"log_softmax"``, ``"layer_norm"``, ``"gelu"``, or ATen
            overloads.

    Returns:
        The :class:`Graph`, filled when the block ends.

    Examples::

        >>> import torch, captum_semiring as cs
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        >>> x = torch.randn(5, 3)
        >>> with cs.record(x) as graph:
        ...     out = net(x)[:, 1]
        >>> res = graph.backward(out, cs.MaxProduct())
        >>> res[x].shape
        torch.Size([5, 3])
    """
    graph = Graph(decompose)
    restore_grad: list[Tensor] = []
    handles: list[Any] = []
    for source in sources:
        if isinstance(source, Tensor):
            if not _is_tracked_dtype(source):
                raise TypeError(
                    f"sources must be floating-point tensors; got dtype {source.dtype} "
                    "(integer inputs such as token ids: use the embedding module as source)"
                )
            if not source.requires_grad:
                restore_grad.append(source)
                source.requires_grad_(True)
            node = graph._lookup(source)
            if node is None:
                node = graph._new_node(source, None, "source")
            graph.sources.setdefault(("tensor", id(source)), []).append(node)
        elif isinstance(source, LayerInput):

            def pre(module: nn.Module, args: Any, key: LayerInput = source) -> None:
                label = f"input of {type(module).__name__}"
                _mark_source(graph, key, args, label, first_only=True)

            handles.append(source.module.register_forward_pre_hook(pre))
        elif isinstance(source, nn.Module):

            def post(module: nn.Module, args: Any, output: Any) -> None:
                _mark_source(
                    graph, id(module), output, f"output of {type(module).__name__}"
                )

            handles.append(source.register_forward_hook(post))
        else:
            raise TypeError(
                f"a source must be a tensor, a module or cs.layer_input(module); got {type(source).__name__}"
            )
    handles.extend(_module_hooks(graph))
    recorder = _Recorder(graph)
    try:
        with recording_kernels(), recorder:
            yield graph
    finally:
        graph._snapshot_versions()
        for handle in handles:
            handle.remove()
        for t in restore_grad:
            t.requires_grad_(False)
        graph._module_stack.clear()
    graph._warn_first_nan()  # after the recorder is gone: its norms are not recorded


__all__ = ["record", "layer_input", "Graph", "OpRecord", "LayerInput", "RecordingError"]
