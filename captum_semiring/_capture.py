"""The recorder: a dispatch mode that writes down every ATen call on tracked tensors.

Tracked tensors are the sources and everything computed from them. Each scalar element
of a tracked tensor is a node of the gradient graph; each recorded call keeps its
arguments so that its rule can compute local derivatives later, during a sweep.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch._decomp import decomposition_table
from torch.nn.modules import module as module_lib
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from . import _engine as engine
from . import rules
from ._hooks import HandleSet, removable_handles
from ._record import (
    LayerInput,
    OpRecord,
    Recording,
    RecordingError,
    flatten_args,
    flatten_out,
    footprint,
    index_saved,
    is_tracked_dtype,
    layer_input,
    op_qualified_name,
    op_schema,
    resolve_op,
    storage_key,
    unflatten_args,
)
from .result import SemiringResult
from .rules import UnsupportedOpError, dense_jacobian
from .semirings import Semiring, SumProduct

if TYPE_CHECKING:
    from .rules._maps import LocalMap

Source = Tensor | nn.Module | LayerInput

aten = torch.ops.aten

# Names accepted by ``record(decompose=...)``.
COMPOSITE_PRIMITIVES = {
    "softmax": (aten._softmax.default, aten._safe_softmax.default),
    "log_softmax": (aten._log_softmax.default,),
    "layer_norm": (aten.native_layer_norm.default,),
    "gelu": (aten.gelu.default,),
}


def _overlaps(a: Tensor, b: Tensor) -> bool:
    if a.numel() == 0 or b.numel() == 0:
        return False
    size = a.untyped_storage().nbytes() // max(1, a.element_size())
    mark = torch.zeros(size, dtype=torch.bool)
    mark[footprint(a)] = True
    return bool(mark[footprint(b)].any())


class Graph(Recording):
    """A recorded gradient graph. Made by :func:`record`; swept by :meth:`backward`
    and :meth:`forward`."""

    def __init__(self, decompose: Iterable[Any] = ()) -> None:
        super().__init__()
        self.decompose = _decompose_set(decompose)

    def local_maps(self, record: OpRecord) -> Mapping[tuple[int, int], LocalMap]:
        """The rule's maps for ``record``, keyed by (input leaf, output position)."""
        return engine.local_maps(self, record)

    def clear_cache(self) -> None:
        """Drop cached local derivatives (they are recomputed on the next sweep)."""
        engine.clear_cache(self)

    def backward(
        self,
        output: Tensor | int,
        semiring: Semiring | str = "sum",
        keep: engine.Keep = "all",
    ) -> SemiringResult:
        """Sweep from ``output`` (one scalar per example) back to every node.

        Args:
            output: a recorded tensor of shape ``()`` or ``(batch,)``, or its node
                index (``graph.node_of(out)``; a pickled graph knows only that).
            semiring: a :class:`~captum_semiring.Semiring` or its name.
            keep: ``"all"`` keeps every tensor's value, for paths, branch flow and
                any recorded tensor. ``"sources"`` keeps only the sources' (the
                tensors given to :func:`record`) and frees each other value as soon
                as the sweep is past it, so that the sweep holds about one layer's
                values at a time; ``path()``, ``branch_flow()`` and other tensors'
                values then raise. ``"checkpoints"`` frees them too, but keeps the
                live values at about ``sqrt(ops)`` places, from which any other
                value is swept again when asked for: paths and branch flow then
                cost about one more sweep, in about the memory of ``"sources"``.
                Neither caches the local derivatives it builds, so a later sweep
                of this graph builds them again.

        Returns:
            A :class:`~captum_semiring.SemiringResult`.
        """
        return SemiringResult(engine.backward(self, output, semiring, keep))

    def forward(self, semiring: Semiring | str = "sum") -> SemiringResult:
        """Sweep from every source forward: ⊕ over paths from any source element."""
        return SemiringResult(engine.forward(self, semiring))

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["decompose"] = {op_qualified_name(op) for op in self.decompose}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state["decompose"] = {resolve_op(op) for op in state["decompose"]}
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"Graph({len(self.records)} ops, {len(self.nodes)} tensors)"


def _warn_first_nan(graph: Graph) -> None:
    """Warn once, naming the first op whose output has a NaN that its inputs do
    not. Checked when recording ends: one norm per op output in one call (a NaN
    anywhere makes the norm NaN; overflow gives inf), inputs only where needed."""
    outs = [
        (record, t)
        for record in graph.records
        if not rules.only_copies(record.func)  # copies cannot make a NaN
        for t in record.out_leaves
        if is_tracked_dtype(t)
    ]
    if not outs:
        return
    norms = torch._foreach_norm([t.detach() for _, t in outs])
    flags = torch.stack([n.isnan().to("cpu") for n in norms]).tolist()
    for (record, _), flag in zip(outs, flags, strict=True):
        if not flag:
            continue
        ins = [t for t in record.leaves if is_tracked_dtype(t)]
        if any(bool(torch.isnan(t).any()) for t in ins):
            continue
        warnings.warn(
            f"NaN first appeared in the output of {record.op_name} in module "
            f"'{record.module}'; semiring values downstream of it are not "
            "meaningful",
            RuntimeWarning,
            stacklevel=4,
        )
        return


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


_RECORD = object()


class _Recorder(TorchDispatchMode):
    def __init__(self, graph: Graph) -> None:
        super().__init__()
        self.graph = graph
        self._plans: dict[Any, Any] = {}
        self._side_effect_ops: set[Any] = set()

    @property
    def module(self) -> str:
        stack = self.graph._module_stack
        return stack[-1] if stack else ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        graph = self.graph
        info = op_schema(func)
        leaves, spec = flatten_args(args, kwargs)
        node_of, keep = graph._node_of, graph._keep
        grad = torch.is_grad_enabled()
        provisional = graph.provisional
        tracked = []
        for i, x in enumerate(leaves):
            if isinstance(x, Tensor):
                node = node_of.get(id(x))
                if node is not None and keep.get(id(x)) is x:
                    if grad and node in provisional:
                        if x.grad_fn is None:
                            continue  # computed under no_grad, outside any Function
                        graph.function_outputs.setdefault(x.grad_fn.name(), x)
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
        if func in self._side_effect_ops:
            written = []
        elif written and not rules.writes_its_result(func):
            # Side effects only (batch norm's running statistics): autograd does
            # not track them, so the call is recorded for its results.
            return self._call_with_side_effects(func, types, args, kwargs, written)
        if info.kwarg_write and kwargs and tracked:
            raise RecordingError(
                f"{func} in module '{self.module}' writes to out=; use the functional form"
            )
        for t in written:
            self._copy_saved_before_write(
                t, metadata_only=rules.changes_metadata_only(func)
            )

        if not grad and (written or not tracked):
            # As in autograd, a tensor changed under no_grad keeps its history.
            return func(*args, **kwargs)
        if not tracked or rules.is_constant(func):
            out = func(*args, **kwargs)
            for t in written:
                self._forget_written(t, func, rules.changes_metadata_only(func))
            return out

        if written:
            return self._record_inplace(
                func, args, kwargs, leaves, spec, tracked, written
            )

        plan = self._plans.get(func)
        if plan is None:
            plan = self._plans[func] = self._plan(func)
        if plan is not _RECORD:
            try:
                with self:
                    out = plan(*args, **kwargs)
            except UnsupportedOpError as err:
                if "module '" in str(err):
                    raise
                raise UnsupportedOpError(f"{err} (in module '{self.module}')") from err
            if out is not NotImplemented:
                return out
            # Not covered by the decomposition: the op's own rule, or the
            # dense-Jacobian fallback, applies.
        out = func(*args, **kwargs)
        self._record(func, leaves, spec, out, tracked)
        return out

    def _call_with_side_effects(self, func, types, args, kwargs, written):  # type: ignore[no-untyped-def]
        """Run ``func`` as an out-of-place call; the arguments it also writes hold
        untracked values afterwards."""
        for t in written:
            self._copy_saved_before_write(t, metadata_only=False)
        self._side_effect_ops.add(func)
        try:
            out = self.__torch_dispatch__(func, types, args, kwargs)
        finally:
            self._side_effect_ops.discard(func)
        for t in written:
            self._forget_written(t, func, metadata_only=False)
        return out

    def _plan(self, func: Any) -> Any:
        """What to do with a tracked call of ``func``: decompose it (the
        decomposition) or record it (its rule, else the dense-Jacobian fallback)."""
        decomposition = self._decomposition(func)
        return _RECORD if decomposition is None else decomposition

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
        if not rules.has_rule(func):  # every path to the dense-Jacobian fallback
            dense_jacobian.check_replayable(func, self.module)
        out_leaves = flatten_out(out)
        record = OpRecord(
            func, list(leaves), spec, out_leaves, None, tracked, [], self.module
        )
        provisional = not torch.is_grad_enabled()
        for i, t in enumerate(out_leaves):
            if is_tracked_dtype(t):
                if t.is_complex():
                    # Paths through complex values have no real weights; fail
                    # rather than drop the imaginary part.
                    raise UnsupportedOpError(
                        f"{func} (in module '{self.module}') returns a complex tensor; "
                        "only real floating-point values can be tracked"
                    )
                if t.layout != torch.strided:
                    raise UnsupportedOpError(
                        f"{func} (in module '{self.module}') returns a {t.layout} "
                        "tensor; only dense (strided) tensors can be tracked"
                    )
                node = graph._new_node(t, record)
                record.outputs.append((i, node))
                if provisional:
                    graph.provisional.add(node)
        if not record.outputs:
            return record  # no float result: nothing flows through this call
        if saved_out is not None:
            record.out_leaves = [saved_out]
        if graph._write_index:
            index_saved(graph._saved_by_storage, record)
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
        functional = rules.out_of_place(func)
        if functional is None:
            raise UnsupportedOpError(
                f"in-place {func} (in module '{self.module}') has no out-of-place form"
            )
        target = written[0]
        key = storage_key(target)
        copies: dict[int, Tensor] = {}
        # Every argument that shares the written memory is saved as it was before.
        functional_leaves = [
            copies.setdefault(id(x), x.detach().clone())
            if isinstance(x, Tensor) and key is not None and storage_key(x) == key
            else x
            for x in leaves
        ]
        metadata_only = rules.changes_metadata_only(func)
        base = None if metadata_only else target._base
        base_before = None if base is None else base.detach().clone()
        base_node = None if base is None else self.graph._lookup(base)
        out = func(*args, **kwargs)
        self._forget_written(target, func, metadata_only)
        if rules.has_rule(functional) or self._decomposition(functional) is None:
            self._record(
                functional,
                functional_leaves,
                spec,
                target,
                tracked,
                saved_out=target.detach().clone(),
            )
        else:
            self._record_decomposed_write(
                functional, functional_leaves, spec, tracked, target
            )
        if base is not None and base_before is not None:
            self._record_base_write(base, base_before, base_node, target)
        return out

    def _record_decomposed_write(
        self,
        functional: Any,
        leaves: list[Any],
        spec: Any,
        tracked: list[tuple[int, int]],
        target: Tensor,
    ) -> None:
        """An in-place op whose out-of-place form has only a decomposition
        (``index_add_``): record the decomposition on the saved arguments, then the
        target's new value as a copy of its result."""
        graph = self.graph
        for i, node in tracked:  # saved copies stand for the old values' nodes
            graph._node_of[id(leaves[i])], graph._keep[id(leaves[i])] = node, leaves[i]
        decomposition = self._decomposition(functional)
        f_args, f_kwargs = unflatten_args(leaves, spec)
        with self:
            new = (
                decomposition(*f_args, **f_kwargs) if decomposition else NotImplemented
            )
        if new is NotImplemented:  # the dense-Jacobian fallback applies
            self._record(
                functional,
                leaves,
                spec,
                target,
                tracked,
                saved_out=target.detach().clone(),
            )
            return
        new_node = graph._lookup(new) if isinstance(new, Tensor) else None
        if new_node is None:
            return  # nothing tracked reaches the result
        copy_leaves, copy_spec = flatten_args((target.detach().clone(), new), {})
        self._record(
            aten.copy.default,
            copy_leaves,
            copy_spec,
            target,
            [(1, new_node)],
            saved_out=target.detach().clone(),
        )

    def _record_base_write(
        self, base: Tensor, before: Tensor, base_node: int | None, view: Tensor
    ) -> None:
        """A write through ``view`` also changed its base (``buf[0] = 2 * x`` into
        a fresh ``buf``): record the base's new value as the old one with the view's
        elements scattered in, so later reads of the base are exact."""
        graph = self.graph
        view_node = graph._lookup(view)
        if view_node is None:
            return
        if not base.is_contiguous():
            graph._stale[id(base)] = f"a write through a view in module '{self.module}'"
            return
        offset = view.storage_offset() - base.storage_offset()
        leaves, spec = flatten_args(
            (
                before,
                view.detach().clone(),
                list(view.shape),
                list(view.stride()),
                offset,
            ),
            {},
        )
        tracked = [(1, view_node)]
        if base_node is not None:
            tracked.insert(0, (0, base_node))
        self._record(
            aten.as_strided_scatter.default,
            leaves,
            spec,
            base,
            tracked,
            saved_out=base.detach().clone(),
        )

    def _copy_saved_before_write(self, t: Tensor, metadata_only: bool) -> None:
        """Saved arguments that share ``t``'s memory get private copies first."""
        graph = self.graph
        graph._index_storage()
        key = storage_key(t)
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
        key = storage_key(t)
        if key is None or metadata_only:
            return
        for other_id in list(graph._by_storage.get(key, ())):
            other = graph._keep.get(other_id)
            if other is None or other is t or graph._node_of.get(other_id) is None:
                continue
            if _overlaps(t, other):
                graph._node_of.pop(other_id, None)
                graph._stale[other_id] = f"{func} in module '{self.module}'"


class _UnguardedRecorder(_Recorder):
    """The recorder without torch's guard that keeps torch.compile out of a mode's
    handler, for processes that have not imported ``torch._dynamo``: nothing can be
    compiling there, and the guard's first call would import it (1 to 2 s, the
    whole first-call cost on a plain ``nn.Module``)."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False

    __torch_dispatch__ = inspect.unwrap(_Recorder.__torch_dispatch__)


def _recorder(graph: Graph) -> _Recorder:
    guarded = "torch._dynamo" in sys.modules  # transformers, torch.compile import it
    return (_Recorder if guarded else _UnguardedRecorder)(graph)


def _add_module_hooks(graph: Graph, handles: HandleSet) -> None:
    """Global forward hooks that keep ``graph._module_stack`` at the running module;
    each is in ``handles`` as soon as it is installed."""
    names = graph.module_paths
    stack = graph._module_stack
    # The hooks are global: models running in other threads must not move the stack.
    thread = threading.get_ident()

    def pre_hook(module: nn.Module, args: Any) -> None:
        if threading.get_ident() != thread:
            return
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
        if stack and threading.get_ident() == thread:
            stack.pop()

    handles.add(module_lib.register_module_forward_pre_hook(pre_hook))
    handles.add(module_lib.register_module_forward_hook(post_hook, always_call=True))


def _mark_source(
    graph: Graph, key: Any, value: Any, label: str, first_only: bool = False
) -> None:
    tensors = [t for t in tree_flatten(value)[0] if is_tracked_dtype(t)]
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
    try:  # set inside the try: an interrupt between the two still restores both
        torch._C._set_mkldnn_enabled(False)
        torch.backends.mha.set_fastpath_enabled(False)
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
    with removable_handles() as handles:
        try:
            _mark_sources(graph, sources, handles, restore_grad)
            _add_module_hooks(graph, handles)
            with recording_kernels(), _recorder(graph):
                yield graph
            _check_functions(graph)  # while the sources still require grad
        finally:
            graph._snapshot_versions()
            for t in restore_grad:
                t.requires_grad_(False)
            graph._module_stack.clear()
    _warn_first_nan(graph)  # after the recorder is gone: its norms are not recorded


def _check_functions(graph: Graph) -> None:
    """Warn where a torch.autograd.Function's backward is not the derivative of its
    forward (a straight-through estimator, gradient reversal): paths follow the
    forward, so SumProduct cannot equal autograd there. Compares the two
    vector-Jacobian products from its first output to the tensor sources, on a
    random cotangent."""
    sources = [
        (nodes[0], t)
        for key, nodes in graph.sources.items()
        if isinstance(key, tuple) and key[0] == "tensor"
        for t in [graph._keep[key[1]]]
    ]
    if not sources:
        return
    sr = SumProduct()
    generator = torch.Generator().manual_seed(0)
    for name, out in graph.function_outputs.items():
        v = torch.randn(out.shape, generator=generator, dtype=out.dtype)
        try:
            with torch.enable_grad():
                theirs = torch.autograd.grad(
                    out,
                    [t for _, t in sources],
                    v,
                    retain_graph=True,
                    allow_unused=True,
                )
        except RuntimeError:
            continue  # a Function whose backward refuses autograd.grad (checkpoint)
        node = graph.node_of(out)
        producer = graph.nodes[node].producer
        module = producer.module if producer is not None else ""
        env = engine.reverse(graph, sr, {node: v[None]})
        for (source, t), g in zip(sources, theirs, strict=True):
            ours = env.get(source)
            ours = torch.zeros_like(t) if ours is None else ours[0]
            expected = torch.zeros_like(t) if g is None else g
            if not torch.allclose(ours, expected, rtol=1e-4, atol=1e-6):
                warnings.warn(
                    f"torch.autograd.Function {name.removesuffix('Backward')} in module "
                    f"'{module}' has a backward that is not the derivative of its "
                    "forward; semiring paths follow the forward, so SumProduct differs "
                    "from torch.autograd.grad here",
                    RuntimeWarning,
                    stacklevel=3,
                )
                break


def _remember_order(graph: Graph, source: Source) -> None:
    """Note ``source``'s key in ``graph.sources``, in the order given, with its
    module's class name (a module source's name until its path is known)."""
    key: Any
    if isinstance(source, Tensor):
        key, name = ("tensor", id(source)), "Tensor"
    elif isinstance(source, LayerInput):
        key, name = source, type(source.module).__name__
    elif isinstance(source, nn.Module):
        key, name = id(source), type(source).__name__
    else:
        return  # _mark_sources raises
    if all(k != key for k, _ in graph.source_order):
        graph.source_order.append((key, name))


def _check_independent(tensors: list[Tensor]) -> None:
    """Each tensor source is a leaf of the recording, so one that shares memory
    with another, or was computed from another, would lose the paths between
    them (autograd credits the earlier one with them)."""
    for i, a in enumerate(tensors):
        for j, b in enumerate(tensors):
            if a is b:
                continue
            if j < i and _shares_memory(a, b):
                raise ValueError(
                    f"tensor sources {j} and {i} share memory (one is a view of "
                    "the other); pass only the base tensor"
                )
            if b.is_leaf and _computed_from(a, b):
                raise ValueError(
                    f"tensor source {i} was computed from tensor source {j} "
                    "before the recording; compute it inside the `with` block"
                )


def _shares_memory(a: Tensor, b: Tensor) -> bool:
    key = storage_key(a)  # None for sparse tensors, rejected when recorded
    if key is None or key != storage_key(b):
        return False
    # views as another dtype count as shared
    return a.element_size() != b.element_size() or _overlaps(a, b)


def _computed_from(t: Tensor, leaf: Tensor) -> bool:
    """Whether autograd's graph of ``t`` reaches the leaf tensor ``leaf``."""
    seen, stack = set(), [t.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if getattr(fn, "variable", None) is leaf:
            return True
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return False


def _mark_sources(
    graph: Graph,
    sources: tuple[Source, ...],
    handles: HandleSet,
    restore_grad: list[Tensor],
) -> None:
    """Register tensor sources now, and hooks that mark module outputs and inputs
    as sources when they run."""
    _check_independent([s for s in sources if isinstance(s, Tensor)])
    for source in sources:
        _remember_order(graph, source)
        if isinstance(source, Tensor):
            if source.is_inference():
                raise TypeError(
                    "a source was made under torch.inference_mode(), which autograd "
                    "cannot track; make it outside inference mode (or clone it there)"
                )
            if not is_tracked_dtype(source) or source.is_complex():
                raise TypeError(
                    f"sources must be real floating-point tensors; got dtype {source.dtype} "
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

            handles.add(source.module.register_forward_pre_hook(pre))
        elif isinstance(source, nn.Module):

            def post(module: nn.Module, args: Any, output: Any) -> None:
                _mark_source(
                    graph, id(module), output, f"output of {type(module).__name__}"
                )

            handles.add(source.register_forward_hook(post))
        else:
            raise TypeError(
                f"a source must be a tensor, a module or cs.layer_input(module); got {type(source).__name__}"
            )


__all__ = ["record", "layer_input", "Graph", "OpRecord", "LayerInput", "RecordingError"]
