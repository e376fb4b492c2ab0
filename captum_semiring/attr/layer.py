"""Semiring attribution to a layer's activations: the counterpart of Captum's
``LayerIntegratedGradients``, plus branch flow at a layer."""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from .. import _captum_compat as compat
from .._captum_compat import BaselineType, TargetType
from .._capture import recording_kernels
from .._engine import Keep
from .._hooks import removable_handles
from ..branch_flow import keep_top_branch
from ..paths import module_label
from ..result import SemiringResult
from ..semirings import Dims, Semiring, get_semiring
from ._common import (
    check_aggregate_dims,
    check_grad_kwargs,
    check_internal_batch_size,
    check_steps,
    check_target_count,
    expand_for_steps,
    extra_axes,
    first_rank,
    format_baselines,
    format_inputs,
    normalize_dims,
    path_points,
    run_steps,
    tensorize_baselines,
)
from ._functional import integrated, sweep

LayerResult = Tensor | tuple[Tensor, ...] | list[Tensor | tuple[Tensor, ...]]


def _float_leaves(value: Any) -> list[Tensor]:
    return [
        t
        for t in tree_flatten(value)[0]
        if isinstance(t, Tensor) and t.is_floating_point()
    ]


def _replace_float_leaves(value: Any, replacements: tuple[Tensor, ...]) -> Any:
    leaves, spec = tree_flatten(value)
    position = [
        i
        for i, t in enumerate(leaves)
        if isinstance(t, Tensor) and t.is_floating_point()
    ]
    if len(position) != len(replacements):
        raise RuntimeError(
            f"the layer produced {len(position)} floating-point tensors here but "
            f"{len(replacements)} when its activations were taken; it must be called the same way"
        )
    for i, t in zip(position, replacements):
        leaves[i] = t
    return tree_unflatten(leaves, spec)


@dataclass
class LayerBranchFlow:
    """Per-branch flow at a layer, from :meth:`SemiringLayerAttribution.branch_flow`.

    Attributes:
        labels: one label per branch: the module path of the consumer operators
            (``...attention.self.query``, ``.key``, ``.value``; the residual add of
            ``...attention.output`` is the skip connection).
        values: finalized flow, shape ``(batch, positions, branches)``.
        semiring: the semiring of the sweep.
        aggregation: ``"branch-max"`` or ``"top-branch"``.

    Examples::

        >>> import torch, captum_semiring as cs
        >>> flow = cs.LayerBranchFlow(
        ...     ["enc.attention.self.query", "enc.attention.self.key", "enc.attention.output"],
        ...     torch.tensor([[[0.5, 0.2, 0.9], [0.1, 0.3, 0.2]]]),
        ...     cs.MaxProduct(),
        ...     "branch-max",
        ... )
        >>> flow.names
        ['self.query', 'self.key', 'output']
        >>> ax = flow.plot(tokens=["[CLS]", "hi"])
        >>> len(ax.patches)
        6
    """

    labels: list[str]
    values: Tensor
    semiring: Semiring
    aggregation: str

    @property
    def names(self) -> list[str]:
        """The labels without their common dotted prefix, for legends."""
        if not self.labels:
            return []
        if len(self.labels) == 1:
            return [module_label(self.labels[0].rsplit(".", 1)[-1])]
        parts = [label.split(".") for label in self.labels]
        common = 0
        while (
            all(len(p) > common + 1 for p in parts)
            and len({p[common] for p in parts}) == 1
        ):
            common += 1
        return [".".join(p[common:]) for p in parts]

    def plot(
        self, example: int = 0, tokens: list[str] | None = None, ax: Any = None
    ) -> Any:
        """A stacked bar chart of the flow per position and branch for one example.

        Args:
            example: which example of the batch.
            tokens: tick labels for the positions (e.g. the input tokens).
            ax: a matplotlib ``Axes`` to draw on; a new figure when None.

        Returns:
            The matplotlib ``Axes``.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(max(4.0, 0.5 * self.values.shape[1] + 2), 3))
        values = self.values[example].detach().cpu().double()
        positions = torch.arange(values.shape[0]).numpy()
        bottom_pos = torch.zeros(values.shape[0], dtype=torch.float64)
        bottom_neg = torch.zeros(values.shape[0], dtype=torch.float64)
        for j, name in enumerate(self.names):
            column = values[:, j]
            bottom = torch.where(column >= 0, bottom_pos, bottom_neg)
            ax.bar(positions, column.numpy(), bottom=bottom.numpy(), label=name)
            bottom_pos = bottom_pos + column.clamp(min=0)
            bottom_neg = bottom_neg + column.clamp(max=0)
        ax.set_xticks(positions)
        if tokens is not None:
            ax.set_xticklabels(tokens, rotation=90)
        ax.set_xlabel("position")
        ax.set_ylabel(f"{self.semiring!r} flow ({self.aggregation})")
        if self.labels:
            ax.legend(fontsize="small")
        return ax


class SemiringLayerAttribution(compat.LayerAttribution, compat.GradientAttribution):
    r"""Semiring gradients with respect to a layer's activations: the semiring
    counterpart of :class:`captum.attr.LayerIntegratedGradients`.

    The layer's output (or its input, with ``attribute_to_layer_input=True``) is the
    source of the semiring sweep, so the model's own inputs may be integer token ids
    when ``layer`` is the embedding layer. With ``n_steps > 1`` the layer's activations
    are replaced, as LayerIntegratedGradients does, by points on the straight line
    between their values at ``baselines`` and at ``inputs``, and the finalized semiring
    gradient is averaged over those points with IG's weights. With
    ``multiply_by_inputs=True`` it is multiplied by the difference of the activations.
    Under :class:`~captum_semiring.SumProduct` with ``multiply_by_inputs=True`` this
    is exactly LayerIntegratedGradients.

    Args:
        forward_func (Callable): the model, or any function of the inputs returning a
                    tensor with the batch first.
        layer (torch.nn.Module or list[torch.nn.Module]): the layer(s) whose
                    activations are attributed. The result has the shape of the
                    layer's output (or input), and LayerIntegratedGradients'
                    structure: a tensor, a tuple when the layer gives several
                    tensors, a list for a list of layers.
        semiring (Semiring or str, optional): the semiring or its name.
                    Default: ``"max"``, the top gradient path.
        device_ids (list[int], optional): accepted for compatibility with
                    LayerIntegratedGradients. The recorder follows one process, so
                    DataParallel models are not supported. Default: None.
        multiply_by_inputs (bool, optional): multiply by the difference of the
                    layer's activations at ``inputs`` and at ``baselines``.
                    Default: False.
        aggregate_dims (int or sequence of int, optional): activation axes (not
                    the batch axis 0) to :math:`\bigoplus` over before finalizing
                    (the aggregated derivative, eq. 3): ``-1`` gives one value per
                    token of an embedding layer. Not with ``multiply_by_inputs``.
                    Default: None.

    Examples::

        >>> import torch, captum_semiring as cs
        >>> _ = torch.manual_seed(0)
        >>> class TextNet(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.embed = torch.nn.Embedding(20, 6)
        ...         self.head = torch.nn.Linear(6, 2)
        ...     def forward(self, ids):
        ...         return self.head(torch.tanh(self.embed(ids)).mean(1))
        >>> net = TextNet()
        >>> ids = torch.randint(1, 20, (2, 5))
        >>> lsa = cs.SemiringLayerAttribution(net, net.embed, "max")
        >>> lsa.attribute(ids, target=1).shape
        torch.Size([2, 5, 6])
        >>> lsa.attribute(ids, baselines=torch.zeros_like(ids), target=1, n_steps=8).shape
        torch.Size([2, 5, 6])
    """

    def __init__(
        self,
        forward_func: Callable[..., Any],
        layer: nn.Module | list[nn.Module],
        semiring: Semiring | str = "max",
        device_ids: list[int] | None = None,
        multiply_by_inputs: bool = False,
        aggregate_dims: Dims | None = None,
    ) -> None:
        layers = layer if isinstance(layer, list) else [layer]
        if not layers or not all(isinstance(m, nn.Module) for m in layers):
            raise TypeError(
                "layer must be a torch.nn.Module or a non-empty list of modules"
            )
        # Captum types ``layer`` as a type variable (a module or a list, fixed per
        # class); this class takes either.
        compat.LayerAttribution.__init__(
            self, forward_func, cast(Any, layer), device_ids=device_ids
        )
        compat.GradientAttribution.__init__(self, forward_func)
        self.semiring: Semiring = get_semiring(semiring)
        self._multiply_by_inputs = bool(multiply_by_inputs)
        self.aggregate_dims = normalize_dims(aggregate_dims)
        if self.aggregate_dims is not None and self._multiply_by_inputs:
            raise ValueError(
                "aggregate_dims cannot be combined with multiply_by_inputs=True"
            )

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply_by_inputs

    def has_convergence_delta(self) -> bool:
        return True

    @property
    def _layers(self) -> list[nn.Module]:
        return self.layer if isinstance(self.layer, list) else [self.layer]

    def _describe(self, index: int) -> str:
        module = self._layers[index]
        name = next(
            (
                n
                for n, m in getattr(self.forward_func, "named_modules", lambda: [])()
                if m is module
            ),
            None,
        )
        return f"'{name}' ({type(module).__name__})" if name else type(module).__name__

    def _hook(
        self, index: int, to_input: bool, fn: Callable[..., Any]
    ) -> torch.utils.hooks.RemovableHandle:
        layer = self._layers[index]
        if to_input:
            return layer.register_forward_pre_hook(lambda module, args: fn(args))
        return layer.register_forward_hook(lambda module, args, output: fn(output))

    def _activations(
        self, inputs: tuple[Any, ...], args: Any, to_input: bool
    ) -> list[tuple[Tensor, ...]]:
        """The layers' floating-point activations for ``inputs``, one tuple per layer."""
        captured: dict[int, tuple[Tensor, ...]] = {}

        def capture(index: int) -> Callable[[Any], None]:
            def fn(value: Any) -> None:
                tensors = _float_leaves(value)
                if not tensors:
                    where = "input" if to_input else "output"
                    raise TypeError(
                        f"the {where} of layer {self._describe(index)} holds no "
                        "floating-point tensor to attribute to (integer token ids? "
                        "attribute to the embedding layer's output; a layer's input "
                        "counts its positional arguments only)"
                    )
                captured[index] = tuple(t.detach().clone() for t in tensors)

            return fn

        with removable_handles() as handles:
            for index in range(len(self._layers)):
                handles.add(self._hook(index, to_input, capture(index)))
            with recording_kernels():
                compat.run_forward(self.forward_func, inputs, None, args)
        for index in range(len(self._layers)):
            if index not in captured:
                raise ValueError(
                    f"layer {self._describe(index)} never ran in the forward pass of "
                    "forward_func; pass a module that forward_func calls"
                )
        return [captured[i] for i in range(len(self._layers))]

    def _sweep(
        self,
        semiring: Semiring,
        sources: list[tuple[Tensor, ...]],
        inputs: tuple[Any, ...],
        target: TargetType,
        args: Any,
        to_input: bool,
        keep: Keep = "sources",
    ) -> SemiringResult:
        """Record with each layer's activations replaced by ``sources`` and sweep."""
        ran: set[int] = set()

        def patch(index: int) -> Callable[[Any], Any]:
            def fn(value: Any) -> Any:
                ran.add(index)
                return _replace_float_leaves(value, sources[index])

            return fn

        with removable_handles() as handles:
            for index in range(len(self._layers)):
                handles.add(self._hook(index, to_input, patch(index)))
            flat = tuple(t for layer_sources in sources for t in layer_sources)
            result = sweep(
                self.forward_func, flat, inputs, semiring, target, args, keep=keep
            )
        for index in range(len(self._layers)):
            if index not in ran:
                raise ValueError(
                    f"layer {self._describe(index)} never ran in the forward pass of forward_func"
                )
        return result

    # As in Captum's LayerIntegratedGradients: with return_convergence_delta=True the
    # result is (attributions, delta), otherwise the attributions alone.
    @typing.overload
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: object | None = None,
        n_steps: int = 1,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        return_convergence_delta: Literal[False] = False,
        attribute_to_layer_input: bool = False,
        grad_kwargs: Mapping[str, Any] | None = None,
        show_progress: bool = False,
    ) -> LayerResult: ...

    @typing.overload
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: object | None = None,
        n_steps: int = 1,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        *,
        return_convergence_delta: Literal[True],
        attribute_to_layer_input: bool = False,
        grad_kwargs: Mapping[str, Any] | None = None,
        show_progress: bool = False,
    ) -> tuple[LayerResult, Tensor]: ...

    @typing.overload
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: object | None = None,
        n_steps: int = 1,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        return_convergence_delta: bool = False,
        attribute_to_layer_input: bool = False,
        grad_kwargs: Mapping[str, Any] | None = None,
        show_progress: bool = False,
    ) -> LayerResult | tuple[LayerResult, Tensor]: ...

    @compat.log_usage(part_of_slo=True)
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: object | None = None,
        n_steps: int = 1,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        return_convergence_delta: bool = False,
        attribute_to_layer_input: bool = False,
        grad_kwargs: Mapping[str, Any] | None = None,
        show_progress: bool = False,
    ) -> LayerResult | tuple[LayerResult, Tensor]:
        r"""The semiring gradient of the selected output with respect to the layer's
        activations.

        Args:
            inputs (Tensor or tuple[Tensor, ...]): the model's inputs, batch first;
                        integer token ids are fine.
            baselines (scalar, Tensor or tuple, optional): the start of the straight
                        line to ``inputs`` (in the model's input space; the layer is
                        evaluated at both ends), in any of IntegratedGradients' forms: a
                        number, a tensor of the input's shape, or one example of shape
                        ``(1, *input.shape[1:])``, per input. Used when ``n_steps > 1``
                        and for ``multiply_by_inputs``. Default: zeros.
            target (int, tuple, Tensor or list, optional): Captum's output selection:
                        an int or tuple for every example, or a list/1D tensor with
                        one index per example. After it, the output must hold one
                        scalar per example. Default: None.
            additional_forward_args (Any, optional): further arguments passed to
                        ``forward_func`` after the inputs; tensors (batch first,
                        repeated per step) and other objects may mix.
            n_steps (int, optional): 1 gives the semiring gradient at ``inputs``.
                        More steps average the finalized semiring gradient over
                        IG's points on the line from ``baselines`` to ``inputs``,
                        with IG's weights. Default: 1.
            method (str, optional): IG's approximation method for ``n_steps > 1``:
                        ``riemann_right``, ``riemann_left``, ``riemann_middle``,
                        ``riemann_trapezoid`` or ``gausslegendre``.
                        Default: ``gausslegendre``.
            internal_batch_size (int, optional): with ``n_steps > 1``, record at
                        most this many examples (steps x batch) at a time; the
                        result is the same. Default: None (all at once).
            return_convergence_delta (bool, optional): also return Captum's
                        completeness delta, :math:`\sum attributions - (f(inputs) -
                        f(baselines))` per example. It is near zero only under
                        :class:`~captum_semiring.SumProduct` with
                        ``multiply_by_inputs=True`` (that is, integrated gradients);
                        for other semirings it measures how far the attribution is
                        from a decomposition of the output. For TopK it uses the
                        best path (rank 0). Default: False.
            attribute_to_layer_input (bool, optional): attribute to the layer's
                        input (its positional floating-point tensor arguments)
                        instead of its output. Default: False.
            grad_kwargs (dict, optional): accepted for compatibility with
                        LayerIntegratedGradients, which passes them to
                        ``torch.autograd.grad``. A semiring sweep runs its own
                        reverse pass and never calls autograd, so only ``None`` or
                        an empty dict is allowed; any key raises ``ValueError``.
                        Default: None.
            show_progress (bool, optional): show a progress bar (tqdm, on stderr)
                        over IG's steps, as Captum's ``show_progress`` does; it
                        advances after each recorded batch of steps (see
                        ``internal_batch_size``). Default: False.

        Returns:
            **attributions** or 2-element tuple of **attributions**, **delta**:

            - **attributions** (*Tensor*, *tuple[Tensor, ...]* or *list*): the
              finalized semiring gradient per element of the layer's activations,
              with their shapes and LayerIntegratedGradients' structure: a tensor, a
              tuple when the layer gives several tensors, a list for a list of
              layers. :class:`~captum_semiring.TopK` adds a leading axis of size
              ``k``, best path first.
            - **delta** (*Tensor*, with ``return_convergence_delta=True``): one value
              per example.
        """
        check_grad_kwargs(grad_kwargs, type(self).__name__)
        _, xs = format_inputs(inputs)
        bs = format_baselines(xs, baselines)
        check_steps(n_steps, method)
        check_internal_batch_size(internal_batch_size)
        check_target_count(xs[0].shape[0], target)
        args = compat.format_additional_forward_args(additional_forward_args)
        layer_inputs = self._activations(xs, args, attribute_to_layer_input)
        for acts in layer_inputs:
            check_aggregate_dims(acts, self.aggregate_dims)
        layer_baselines = None
        if n_steps > 1 or self._multiply_by_inputs:
            layer_baselines = self._activations(
                tensorize_baselines(xs, bs), args, attribute_to_layer_input
            )
            for index, (acts, base) in enumerate(zip(layer_inputs, layer_baselines)):
                if [a.shape for a in acts] != [b.shape for b in base]:
                    raise ValueError(
                        f"layer {self._describe(index)} gives activations of shapes "
                        f"{[tuple(a.shape) for a in acts]} at the inputs but "
                        f"{[tuple(b.shape) for b in base]} at the baselines"
                    )
        kwargs: dict[str, Any] = dict(
            inputs=xs,
            layer_inputs=layer_inputs,
            layer_baselines=layer_baselines,
            target=target,
            additional_forward_args=args,
            method=method,
            attribute_to_layer_input=attribute_to_layer_input,
        )
        flat = run_steps(
            self, xs[0].shape[0], n_steps, internal_batch_size, show_progress, **kwargs
        )
        per_layer, start = [], 0
        for acts in layer_inputs:
            per_layer.append(tuple(flat[start : start + len(acts)]))
            start += len(acts)
        result = compat.format_outputs(isinstance(self.layer, list), per_layer)
        if not return_convergence_delta:
            return result
        delta = self.compute_convergence_delta(
            tuple(
                first_rank(a, t.dim())
                for a, t in zip(flat, (t for acts in layer_inputs for t in acts))
            ),
            bs,
            xs,
            target=target,
            additional_forward_args=args,
        )
        return result, delta

    def attribute_future(self) -> None:
        r"""Not implemented: the attribution is computed eagerly by :meth:`attribute`,
        as for Captum's gradient methods."""
        raise NotImplementedError(
            f"attribute_future is not implemented for {type(self).__name__}"
        )

    def _attribute(
        self,
        inputs: tuple[Any, ...],
        layer_inputs: list[tuple[Tensor, ...]],
        layer_baselines: list[tuple[Tensor, ...]] | None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 1,
        method: str = "gausslegendre",
        attribute_to_layer_input: bool = False,
        step_sizes_and_alphas: tuple[list[float], list[float]] | None = None,
        progress: compat.Progress | None = None,
    ) -> tuple[Tensor, ...]:
        bases: list[tuple[Tensor, ...] | None] = (
            list(layer_baselines) if layer_baselines else [None] * len(layer_inputs)
        )
        points = [
            path_points(acts, base, n_steps, method, step_sizes_and_alphas)
            for acts, base in zip(layer_inputs, bases)
        ]
        step_sizes, sources = points[0][0], [p[1] for p in points]
        n = len(step_sizes)
        expanded = inputs
        if n > 1:
            expanded = cast(
                tuple[Any, ...], compat.expand_additional_forward_args(inputs, n)
            )
        args, target = expand_for_steps(n, additional_forward_args, target)
        result = self._sweep(
            self.semiring, sources, expanded, target, args, attribute_to_layer_input
        )
        if progress is not None:
            progress.update(n)
        return tuple(
            t
            for layer_sources, acts, base in zip(sources, layer_inputs, bases)
            for t in integrated(
                result,
                layer_sources,
                acts,
                base,
                step_sizes,
                self.aggregate_dims,
                self._multiply_by_inputs,
            )
        )

    def branch_flow(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: TargetType = None,
        additional_forward_args: object | None = None,
        semiring: Semiring | str | None = None,
        aggregation: Literal["branch-max", "top-branch"] = "branch-max",
        attribute_to_layer_input: bool = False,
    ) -> LayerBranchFlow:
        r"""How the flow from the layer's activations splits over its consumers.

        The consumer operators of the layer's output (or input) are grouped by the
        module they run in: for a transformer layer's input, the query, key and value
        projections and the residual (skip) add. For each position (axis 1) and
        group, the flow :math:`b(t, c) = \bigoplus_{t \to v, v \in c} w(t, v) \otimes
        B[v]` is :math:`\bigoplus`-ed over the remaining axes (the hidden dimension),
        at ``inputs`` (no path integration). When the layer's output (or input) holds
        several floating-point tensors, the first one is used (for a transformer
        layer's input, the hidden states; an attention mask may follow).

        Args:
            inputs, target, additional_forward_args: as in :meth:`attribute`.
            semiring (Semiring or str, optional): the semiring of the sweep.
                        Default: this attribution's semiring.
            aggregation (str, optional): ``"branch-max"``: each branch's own
                        :math:`\bigoplus` over the hidden axes (its best path under
                        MaxProduct). ``"top-branch"``: the paper's aggregation (Fig. 2
                        and 4): per position, the branch carrying the best value gets
                        it, the others 0. TopK uses its best path (rank 0).
                        Default: ``"branch-max"``.
            attribute_to_layer_input (bool, optional): the layer's input instead of
                        its output. Default: False.

        Returns:
            A :class:`LayerBranchFlow` with ``labels`` and ``values`` of shape
            ``(batch, positions, branches)``, and ``.plot()``.

        Examples::

            >>> import torch, captum_semiring as cs
            >>> _ = torch.manual_seed(0)
            >>> class Residual(torch.nn.Module):
            ...     def __init__(self):
            ...         super().__init__()
            ...         self.mix = torch.nn.Linear(4, 4)
            ...     def forward(self, h):
            ...         return h + torch.tanh(self.mix(h))   # skip and mix branches
            >>> net = torch.nn.Sequential(Residual(), torch.nn.Linear(4, 1))
            >>> lsa = cs.SemiringLayerAttribution(lambda h: net(h).sum((1, 2)), net[0], "max")
            >>> flow = lsa.branch_flow(torch.randn(2, 3, 4), attribute_to_layer_input=True)
            >>> flow.labels, flow.names, flow.values.shape
            (['0.mix', '0'], ['0.mix', '0'], torch.Size([2, 3, 2]))
            >>> ax = flow.plot(example=0, tokens=["a", "b", "c"])
        """
        if aggregation not in ("branch-max", "top-branch"):
            raise ValueError(
                f"aggregation must be 'branch-max' or 'top-branch'; got {aggregation!r}"
            )
        if len(self._layers) != 1:
            raise ValueError("branch_flow needs a single layer, not a list")
        sr = self.semiring if semiring is None else get_semiring(semiring)
        _, xs = format_inputs(inputs)
        check_target_count(xs[0].shape[0], target)
        args = compat.format_additional_forward_args(additional_forward_args)
        (activations,) = self._activations(xs, args, attribute_to_layer_input)
        if activations[0].dim() < 2:
            raise ValueError(
                "branch_flow needs activations of shape (batch, positions, ...); the "
                f"layer's first floating-point tensor has shape {tuple(activations[0].shape)}"
            )
        sources = tuple(a.clone() for a in activations)
        source = sources[0]
        # The flow reads only the values next to the layer: from checkpoints, the
        # first segments are swept again, in about the memory of attribute().
        result = self._sweep(
            sr,
            [sources],
            xs,
            target,
            args,
            attribute_to_layer_input,
            keep="checkpoints",
        )
        flow = result.branch_flow(source)
        batch, positions = source.shape[:2]
        if not flow.labels:
            values = source.new_zeros((batch, positions, 0))
            return LayerBranchFlow([], values, sr, aggregation)
        if source.dim() > 2:
            per_group = flow.aggregate(list(range(2, source.dim())))
        else:
            per_group = flow.finalize()
        for _ in range(extra_axes(sr)):
            per_group = per_group[:, 0]
        if aggregation == "top-branch":
            per_group = keep_top_branch(per_group, sr)
        return LayerBranchFlow(
            list(flow.labels), per_group.permute(1, 2, 0).detach(), sr, aggregation
        )


class SemiringLLMGradientAttribution(compat.LLMGradientAttribution):
    r"""Captum's :class:`~captum.attr.LLMGradientAttribution` that also accepts
    :class:`SemiringLayerAttribution`.

    LLMGradientAttribution checks the wrapped method against an allow-list of Captum
    classes; this subclass adds ours to it. The target is the log probability of
    each generated token. A token's attribution is, as for LayerIntegratedGradients,
    the sum over the embedding axis under :class:`~captum_semiring.SumProduct`; under
    the other semirings a sum of per-dimension path values means nothing, so it is
    the aggregated derivative (eq. 3): the semiring sum over the embedding axis,
    then finalized (for MaxProduct, the best path from any of the token's
    dimensions). Semirings that add a leading axis (TopK) are rejected.

    Args:
        attr_method (GradientAttribution): a :class:`SemiringLayerAttribution` (or a
                    Captum method LLMGradientAttribution supports) built on the language
                    model, usually with its token embedding layer.
        tokenizer: the model's tokenizer.

    Examples::

        >>> import torch, captum_semiring as cs
        >>> from captum.attr import TextTokenInput
        >>> from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel
        >>> from captum_semiring.reproductions.tasks import minilm_dir
        >>> tokenizer = AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True)
        >>> _ = torch.manual_seed(0)
        >>> # a small vocabulary that covers the ids used keeps the log-softmax cheap
        >>> config = GPT2Config(vocab_size=2048, n_embd=8, n_layer=1, n_head=2)
        >>> lm = GPT2LMHeadModel(config).eval()
        >>> lsa = cs.SemiringLayerAttribution(lm, lm.transformer.wte, "max")
        >>> llm = cs.SemiringLLMGradientAttribution(lsa, tokenizer)
        >>> prompt = TextTokenInput("he was in the", tokenizer)  # [CLS] ... [SEP]
        >>> res = llm.attribute(prompt, target="of it")
        >>> res.token_attr.shape, res.seq_attr.shape
        (torch.Size([2, 6]), torch.Size([6]))
    """

    # Captum types its allow-list as the tuple of its own classes; extending it is
    # the point of this subclass.
    SUPPORTED_METHODS = compat.LLMGradientAttribution.SUPPORTED_METHODS + (  # type: ignore[assignment]
        SemiringLayerAttribution,
    )

    def __init__(self, attr_method: compat.GradientAttribution, tokenizer: Any) -> None:
        if isinstance(attr_method, SemiringLayerAttribution) and extra_axes(
            attr_method.semiring
        ):
            raise ValueError(
                f"{attr_method.semiring!r} gives several values per element; "
                "SemiringLLMGradientAttribution needs one (use MaxProduct, Entropy, ...)"
            )
        super().__init__(attr_method, tokenizer)
        if (
            isinstance(attr_method, SemiringLayerAttribution)
            and not attr_method.semiring.linear
        ):
            # the copy whose forward_func Captum replaced with its wrapper
            copied = cast(SemiringLayerAttribution, self.attr_method)
            self.attr_method = cast(Any, _PerToken(copied))


class _PerToken:
    """A SemiringLayerAttribution that aggregates over the embedding axis (eq. 3),
    with a trailing axis of size 1 for LLMGradientAttribution's sum over it."""

    def __init__(self, method: SemiringLayerAttribution) -> None:
        if method.aggregate_dims is not None or method.multiplies_by_inputs:
            raise ValueError(
                "SemiringLLMGradientAttribution aggregates over the embedding axis "
                "itself; build the layer attribution without aggregate_dims and "
                "multiply_by_inputs"
            )
        self.method = method
        self.per_token = SemiringLayerAttribution(
            method.forward_func, method.layer, method.semiring, aggregate_dims=-1
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.method, name)

    def attribute(self, *args: Any, **kwargs: Any) -> Tensor:
        return self.per_token.attribute(*args, **kwargs).unsqueeze(-1)
