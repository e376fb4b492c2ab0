"""What a recording holds: recorded calls (:class:`OpRecord`), tracked tensors
(:class:`Node`), sources, and the graph that ties them (:class:`Recording`).

This is the bottom layer: the rules read :class:`OpRecord`, the engine sweeps a
:class:`Recording`, and the recorder in :mod:`captum_semiring._capture` fills one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_unflatten


class RecordingError(RuntimeError):
    """Raised when a recording cannot be made exact."""


def storage_key(t: Tensor) -> int | None:
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return None


def footprint(t: Tensor) -> Tensor:
    """Storage offsets of every element of ``t``, in its element order."""
    size = t.untyped_storage().nbytes() // max(1, t.element_size())
    return (
        torch.arange(size)
        .as_strided(t.shape, t.stride(), t.storage_offset())
        .reshape(-1)
    )


def is_tracked_dtype(t: object) -> bool:
    return isinstance(t, Tensor) and (t.is_floating_point() or t.is_complex())


# ----- fast argument flattening --------------------------------------------------
# ATen arguments are leaves or flat lists of leaves (``Tensor[]``, ``int[]``), so a
# one-level flatten replaces ``torch.utils._pytree`` at a fraction of its cost per op.
# A spec is ``(layout, keys)``: per argument (keywords last) None for a leaf, or the
# container type and its length; ``keys`` names the keyword arguments.
_PYTREE = "pytree"


def flatten_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[list, Any]:
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


def unflatten_args(leaves: list[Any], spec: Any) -> tuple[tuple, dict]:
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


def flatten_out(out: Any) -> list[Any]:
    """An op's results as a flat list (a tensor, or a tuple or list of them)."""
    if isinstance(out, Tensor):
        return [out]
    if type(out) in (tuple, list) and not any(
        isinstance(x, (list, tuple, dict)) for x in out
    ):
        return list(out)
    return tree_flatten(out)[0]


class OpSchema:
    """Per-overload schema facts the recorder and rules ask for on every call."""

    __slots__ = ("arg_index", "writes", "kwarg_write")

    def __init__(self, func: Any) -> None:
        arguments = func._schema.arguments
        self.arg_index = {a.name: (i, a) for i, a in enumerate(arguments)}
        self.writes = tuple(
            i
            for i, a in enumerate(arguments)
            if a.alias_info is not None and a.alias_info.is_write
        )
        self.kwarg_write = any(arguments[i].kwarg_only for i in self.writes)


_OP_SCHEMAS: dict[Any, OpSchema] = {}


def op_schema(func: Any) -> OpSchema:
    """The cached :class:`OpSchema` of an ATen overload."""
    info = _OP_SCHEMAS.get(func)
    if info is None:
        info = _OP_SCHEMAS[func] = OpSchema(func)
    return info


def op_qualified_name(func: Any) -> Any:
    """An ATen overload as its qualified name (``"aten::addmm.default"``), which
    pickles; anything else is returned as it is."""
    if isinstance(func, torch._ops.OpOverload):
        return _QualifiedOp(f"{func._schema.name}.{func._overloadname}")
    return func


def resolve_op(name: Any) -> Any:
    """The overload :func:`op_qualified_name` named, looked up in ``torch.ops``."""
    if not isinstance(name, _QualifiedOp):
        return name
    namespace, _, rest = name.partition("::")
    op, _, overload = rest.rpartition(".")
    try:
        return getattr(getattr(getattr(torch.ops, namespace), op), overload)
    except (AttributeError, RuntimeError) as err:
        raise RecordingError(
            f"cannot load a recording that calls {name}: no such operator is "
            "registered; import the library that defines it before loading"
        ) from err


class _QualifiedOp(str):
    """A pickled overload's name (a ``str``, told apart from string arguments)."""


class _MemoryFormat(str):
    """A pickled memory format's name: ``torch.save`` cannot pickle
    ``torch.memory_format`` (``pickle`` can)."""


def _portable(leaf: Any) -> Any:
    if isinstance(leaf, torch.memory_format):
        return _MemoryFormat(str(leaf).removeprefix("torch."))
    return leaf


def _restored(leaf: Any) -> Any:
    return getattr(torch, leaf) if isinstance(leaf, _MemoryFormat) else leaf


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
        return unflatten_args(self.leaves, self.spec)[0]

    @property
    def kwargs(self) -> dict[str, Any]:
        return unflatten_args(self.leaves, self.spec)[1]

    def arg(self, name: str, default: Any = None) -> Any:
        """An argument by its schema name, whether given by position or keyword."""
        if self.spec[0] != _PYTREE:
            # Fast path: find the argument's slot in the flat layout.
            layout, keys = self.spec
            n_args = len(layout) - len(keys)
            found = op_schema(self.func).arg_index.get(name)
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
        args, kwargs = unflatten_args(self.leaves, self.spec)
        if name in kwargs:
            return kwargs[name]
        found = op_schema(self.func).arg_index.get(name)
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
        found = op_schema(self.func).arg_index.get(name)
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
        args, kwargs = unflatten_args(leaves, self.spec)
        return flatten_out(self.func(*args, **kwargs))

    def check_unchanged(self) -> None:
        for t, version in self.versions:
            if t._version != version:
                raise RecordingError(
                    f"a tensor read by {self.op_name} in module '{self.module}' was "
                    "changed in place after it was recorded; record again"
                )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["func"] = op_qualified_name(self.func)
        state["leaves"] = [_portable(leaf) for leaf in self.leaves]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state["func"] = resolve_op(state["func"])
        state["leaves"] = [_restored(leaf) for leaf in state["leaves"]]
        # Loaded tensors start a fresh version count; they are the saved values.
        state["versions"] = [(t, t._version) for t, _ in state["versions"]]
        self.__dict__.update(state)


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


def index_saved(
    index: dict[int, list[tuple[list[Any], int]]], record: OpRecord
) -> None:
    """Add ``record``'s saved tensors to a storage index. (An in-place op's saved
    result is a private copy that nothing writes; indexing it is harmless.)"""
    for slots in (record.leaves, record.out_leaves):
        for i, t in enumerate(slots):
            if isinstance(t, Tensor):
                key = storage_key(t)
                if key is not None:
                    index.setdefault(key, []).append((slots, i))


class Recording:
    """What a recording holds: the tracked tensors (nodes), the recorded calls, each
    node's consumers, the sources and module paths. The recorder fills it; the
    engine sweeps it."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.records: list[OpRecord] = []
        self.consumers: dict[int, list[tuple[OpRecord, int]]] = {}
        self.sources: dict[Any, list[int]] = {}
        # Each source's key in ``sources`` and a fallback name (its module's class),
        # in the order the sources were given to ``cs.record``.
        self.source_order: list[tuple[Any, str]] = []
        self.module_paths: dict[int, str] = {}
        # Set on a recording loaded from a pickle: tensors no longer name its nodes.
        self.loaded = False
        self._node_of: dict[int, int] = {}
        self._keep: dict[int, Tensor] = {}
        # Storage -> node tensors and saved slots, for in-place writes. Most models
        # never write in place while recording, so both are built at the first write
        # (from ``_keep`` and the records) and kept up to date from then on.
        self._write_index = False
        self._by_storage: dict[int, set[int]] = {}
        self._saved_by_storage: dict[int, list[tuple[list[Any], int]]] = {}
        self._stale: dict[int, str] = {}
        self._module_stack: list[str] = []
        # Nodes computed under no_grad from tracked tensors. They count only when
        # autograd tracks them after all: the outputs of a torch.autograd.Function,
        # whose forward runs under no_grad, have a grad_fn.
        self.provisional: set[int] = set()
        # The first output of each autograd.Function seen, by its backward's name.
        self.function_outputs: dict[str, Tensor] = {}

    # ----- nodes -------------------------------------------------------------
    def _new_node(self, t: Tensor, producer: OpRecord | None, label: str = "") -> int:
        node = Node(len(self.nodes), tuple(t.shape), t.dtype, producer, label)
        self.nodes.append(node)
        self._node_of[id(t)] = node.index
        self._keep[id(t)] = t
        if self._stale:
            self._stale.pop(id(t), None)
        if self._write_index:
            key = storage_key(t)
            if key is not None:
                self._by_storage.setdefault(key, set()).add(id(t))
        return node.index

    def _index_storage(self) -> None:
        """Build the storage indexes at the first in-place write."""
        if self._write_index:
            return
        self._write_index = True
        for id_, t in self._keep.items():
            key = storage_key(t)
            if key is not None:
                self._by_storage.setdefault(key, set()).add(id_)
        for record in self.records:
            index_saved(self._saved_by_storage, record)

    def _lookup(self, t: Tensor) -> int | None:
        index = self._node_of.get(id(t))
        if index is not None and self._keep.get(id(t)) is t:
            return index
        return None

    def node_of(self, item: Any) -> int:
        """The node index for a source, module or recorded tensor, a source's name
        (see :meth:`source_names`), or a node index itself."""
        if isinstance(item, str):
            return self._node_named(item)
        if isinstance(item, int) and not isinstance(item, bool):
            if not 0 <= item < len(self.nodes):
                raise KeyError(
                    f"node {item} is out of range: the recording has "
                    f"{len(self.nodes)} tensors"
                )
            return item
        if self.loaded and isinstance(item, (Tensor, nn.Module, LayerInput)):
            raise KeyError(
                "this recording was loaded from a pickle, so tensors and modules from "
                "before saving no longer name its nodes; use a source's name (one of "
                f"{self.source_names()}) or a node index"
            )
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
            if index is not None and not (
                index in self.provisional and item.grad_fn is None
            ):
                return index
        raise KeyError(
            "this tensor was not recorded: pass it to cs.record(...) as a source, or "
            "compute it inside the `with cs.record(...)` block"
        )

    # ----- sources by name ------------------------------------------------------
    def named_sources(self) -> list[tuple[str, list[int]]]:
        """Each source's name and nodes, in the order given to ``cs.record``.

        A tensor source is ``"tensor i"`` (``i`` its position among the sources), a
        module ``"output of PATH"`` and a layer input ``"input of PATH"``, ``PATH``
        being the module's dotted path, or its class name at the top level or when it
        never ran. A module that never ran has no nodes."""
        order = list(self.source_order)
        known = {key for key, _ in order}
        order += [(key, "") for key in self.sources if key not in known]
        named = []
        for position, (key, fallback) in enumerate(order):
            if isinstance(key, str):
                name = key
            elif isinstance(key, tuple) and key[0] == "tensor":
                name = f"tensor {position}"
            elif isinstance(key, LayerInput):
                where = self.module_paths.get(id(key.module)) or fallback
                name = f"input of {where}"
            else:
                name = f"output of {self.module_paths.get(key) or fallback}"
            named.append((name, list(self.sources.get(key, ()))))
        return named

    def source_names(self) -> list[str]:
        """Names of the sources, in the order given to ``cs.record``; a module that
        ran n > 1 times also names each run, ``"output of block #0"`` to ``#n-1``."""
        names = []
        for name, nodes in self.named_sources():
            names.append(name)
            if len(nodes) > 1:
                names += [f"{name} #{j}" for j in range(len(nodes))]
        return names

    def _node_named(self, name: str) -> int:
        for base, nodes in self.named_sources():
            if name == base:
                if len(nodes) == 1:
                    return nodes[0]
                if not nodes:
                    raise KeyError(f"source {name!r} never ran while recording")
                raise KeyError(
                    f"source {name!r} ran {len(nodes)} times; name one run, "
                    f"{name + ' #0'!r} to {f'{name} #{len(nodes) - 1}'!r}"
                )
            run = name.removeprefix(base + " #")
            if run != name and run.isdigit() and int(run) < len(nodes):
                return nodes[int(run)]
        raise KeyError(
            f"no source is named {name!r}; the sources are {self.source_names()}"
        )

    def saved_tensor(self, node: int) -> Tensor:
        """The value a node's producer saved (its output as recorded)."""
        producer = self.nodes[node].producer
        if producer is not None:
            for position, out_node in producer.outputs:
                if out_node == node:
                    return producer.out_leaves[position]
        for record, leaf in self.consumers.get(node, ()):
            return record.leaves[leaf]  # a source, as its first consumer saved it
        raise KeyError(f"node {node} has no saved value: nothing read it")

    # ----- pickling ---------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """A pickle keeps the nodes, the recorded calls with their saved tensors, and
        the sources by name. What names a node by identity (tensors, modules) and the
        recorder's own bookkeeping do not survive: index a loaded recording with a
        source's name or a node index."""
        state = self.__dict__.copy()
        named = self.named_sources()
        state["sources"] = {name: nodes for name, nodes in named}
        state["source_order"] = [(name, "") for name, _ in named]
        state.update(
            module_paths={},
            _node_of={},
            _keep={},
            _write_index=False,
            _by_storage={},
            _saved_by_storage={},
            _stale={},
            _module_stack=[],
            function_outputs={},
            loaded=True,
        )
        return state

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


__all__ = [
    "OpRecord",
    "Node",
    "LayerInput",
    "Recording",
    "RecordingError",
    "layer_input",
]
