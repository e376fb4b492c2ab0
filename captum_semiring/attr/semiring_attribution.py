"""Captum attribution classes for semiring gradients of a model's inputs."""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Sequence
from typing import Any, Literal, cast

import torch
from torch import Tensor

from .. import _captum_compat as compat
from .._captum_compat import BaselineType, TargetType, TensorOrTupleOfTensorsGeneric
from .._shapes import unravel_index
from ..paths import Path
from ..semirings import Entropy, MaxProduct, Semiring, TopK, get_semiring
from ._common import (
    Baseline,
    Dims,
    check_aggregate_dims,
    check_float_inputs,
    check_internal_batch_size,
    check_steps,
    check_target_count,
    expand_for_steps,
    first_rank,
    format_baselines,
    format_inputs,
    normalize_dims,
    path_points,
    run_steps,
)
from ._functional import integrated, sweep


class SemiringAttribution(compat.GradientAttribution):
    r"""Semiring gradients as a Captum attribution method.

    The gradient of the output with respect to an input element is the sum, over all
    paths from the element to the output in the computation graph, of the product of
    the local derivatives along the path. A :class:`~captum_semiring.Semiring`
    replaces that :math:`(+, \times)` pair: :class:`~captum_semiring.MaxProduct` gives
    the value of the single best path, :class:`~captum_semiring.Entropy` the entropy of
    the distribution of gradient flow over paths (Du et al., 2023).

    With ``n_steps > 1`` the finalized semiring gradient is averaged over IG's points
    on the straight line from the baselines to the inputs. With
    ``multiply_by_inputs=True`` it is multiplied by ``inputs - baselines``. Under
    :class:`~captum_semiring.SumProduct` this is exactly
    :class:`captum.attr.IntegratedGradients`; with ``n_steps=1`` it is
    :class:`~captum.attr.InputXGradient` (zero baselines) or
    :class:`~captum.attr.Saliency` with ``abs=False`` (without multiplying).

    Max-product and entropy values depend on the granularity of the recorded graph
    (ATen operators); see :func:`~captum_semiring.record`. Examples in a batch must
    not interact (batch norm in training mode mixes them).

    Args:
        forward_func (Callable): the model, or any function of the inputs returning a
                    tensor with the batch first.
        semiring (Semiring or str): the semiring or its name: ``"sum"``, ``"max"``,
                    ``"entropy"``, ``"logsum"``, ``"count"`` or ``"topk5"``.
        multiply_by_inputs (bool, optional): multiply by ``inputs - baselines``
                    (global attribution). Default: False.
        aggregate_dims (int or sequence of int, optional): input axes (not the batch
                    axis) to :math:`\bigoplus` over before finalizing: the aggregated
                    derivative of eq. 3, for example ``-1`` for one value per token
                    over the embedding axis. Cannot be combined with
                    ``multiply_by_inputs``. Default: None.

    Examples::

        >>> import torch, captum_semiring as cs
        >>> from captum.attr import IntegratedGradients
        >>> _ = torch.manual_seed(0)
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).double()
        >>> x, b = torch.randn(2, 4, dtype=torch.float64), torch.zeros(2, 4, dtype=torch.float64)
        >>> sr = cs.SemiringAttribution(net, "sum", multiply_by_inputs=True)
        >>> attr = sr.attribute(x, baselines=b, target=2, n_steps=20)
        >>> ig = IntegratedGradients(net).attribute(x, baselines=b, target=2, n_steps=20)
        >>> torch.allclose(attr, ig)
        True
        >>> cs.SemiringAttribution(net, "logsum").attribute(x, target=0).shape
        torch.Size([2, 4])
        >>> cs.SemiringAttribution(net, cs.TopK(2)).attribute(x, target=0).shape
        torch.Size([2, 2, 4])
    """

    def __init__(
        self,
        forward_func: Callable[..., Any],
        semiring: Semiring | str,
        multiply_by_inputs: bool = False,
        aggregate_dims: Dims | None = None,
    ) -> None:
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

    # As in Captum's IntegratedGradients: with return_convergence_delta=True the
    # result is (attributions, delta), otherwise the attributions alone.
    @typing.overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: object | None = None,
        n_steps: int = 1,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        *,
        return_convergence_delta: Literal[True],
        show_progress: bool = False,
    ) -> tuple[TensorOrTupleOfTensorsGeneric, Tensor]: ...

    @typing.overload
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: object | None = None,
        n_steps: int = 1,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        return_convergence_delta: Literal[False] = False,
        show_progress: bool = False,
    ) -> TensorOrTupleOfTensorsGeneric: ...

    @compat.log_usage(part_of_slo=True)
    def attribute(
        self,
        inputs: TensorOrTupleOfTensorsGeneric,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: object | None = None,
        n_steps: int = 1,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        return_convergence_delta: bool = False,
        show_progress: bool = False,
    ) -> TensorOrTupleOfTensorsGeneric | tuple[TensorOrTupleOfTensorsGeneric, Tensor]:
        r"""The semiring gradient of the selected output with respect to ``inputs``.

        Args:
            inputs (Tensor or tuple[Tensor, ...]): floating-point inputs for which the
                        attributions are computed, batch first. A tuple of tensors
                        gives a tuple of attributions.
            baselines (scalar, Tensor or tuple, optional): the start of the straight
                        line to ``inputs``, in any of IntegratedGradients' forms: a
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
            show_progress (bool, optional): show a progress bar (tqdm, on stderr)
                        over IG's steps, as Captum's ``show_progress`` does; it
                        advances after each recorded batch of steps (see
                        ``internal_batch_size``). Default: False.

        Returns:
            **attributions** or 2-element tuple of **attributions**, **delta**:

            - **attributions** (*Tensor* or *tuple[Tensor, ...]*): the finalized
              semiring gradient per input element, with the structure of ``inputs``
              and each input's shape. :class:`~captum_semiring.TopK` adds a leading
              axis of size ``k``, best path first: ``(k, *input.shape)``. With
              ``aggregate_dims`` those axes are gone.
            - **delta** (*Tensor*, with ``return_convergence_delta=True``): one value
              per example.
        """
        is_tuple, xs = format_inputs(inputs)
        check_float_inputs(xs, type(self).__name__)
        bs = format_baselines(xs, baselines)
        check_steps(n_steps, method)
        check_internal_batch_size(internal_batch_size)
        check_target_count(xs[0].shape[0], target)
        check_aggregate_dims(xs, self.aggregate_dims)
        args = compat.format_additional_forward_args(additional_forward_args)
        attributions = run_steps(
            self,
            xs[0].shape[0],
            n_steps,
            internal_batch_size,
            show_progress,
            inputs=xs,
            baselines=bs,
            target=target,
            additional_forward_args=args,
            method=method,
        )
        formatted = cast(
            TensorOrTupleOfTensorsGeneric,
            compat.format_output(is_tuple, attributions),
        )
        if not return_convergence_delta:
            return formatted
        example_dims = [x.dim() - len(self.aggregate_dims or ()) for x in xs]
        delta = self.compute_convergence_delta(
            tuple(first_rank(a, d) for a, d in zip(attributions, example_dims)),
            bs,
            xs,
            target=target,
            additional_forward_args=args,
        )
        return formatted, delta

    def attribute_future(self) -> None:
        r"""Not implemented: the attribution is computed eagerly by :meth:`attribute`,
        as for Captum's gradient methods."""
        raise NotImplementedError(
            f"attribute_future is not implemented for {type(self).__name__}"
        )

    def _attribute(
        self,
        inputs: tuple[Tensor, ...],
        baselines: tuple[Baseline, ...],
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 1,
        method: str = "gausslegendre",
        step_sizes_and_alphas: tuple[list[float], list[float]] | None = None,
        progress: compat.Progress | None = None,
    ) -> tuple[Tensor, ...]:
        step_sizes, sources = path_points(
            inputs, baselines, n_steps, method, step_sizes_and_alphas
        )
        args, target = expand_for_steps(
            len(step_sizes), additional_forward_args, target
        )
        result = sweep(self.forward_func, sources, sources, self.semiring, target, args)
        if progress is not None:
            progress.update(len(step_sizes))
        return integrated(
            result,
            sources,
            inputs,
            baselines,
            step_sizes,
            self.aggregate_dims,
            self._multiply_by_inputs,
        )


_PathIndex = tuple[int, ...] | tuple[int, tuple[int, ...]]


class TopGradientPath(SemiringAttribution):
    r"""The top gradient path value: :class:`SemiringAttribution` with
    :class:`~captum_semiring.MaxProduct` ``(sign="positive")``.

    For each input element, the largest product of local derivatives along any single
    path from the element to the output (Du et al., 2023). A drop-in replacement for
    :class:`captum.attr.IntegratedGradients`: with baselines and ``n_steps > 1`` the
    top path value is averaged along IG's straight line. :meth:`paths` returns the
    paths themselves, hop by hop, with the modules they pass through.

    Args:
        forward_func (Callable): the model, or any function of the inputs returning a
                    tensor with the batch first.
        multiply_by_inputs (bool, optional): multiply by ``inputs - baselines``.
                    Default: False.
        sign (str, optional): ``"positive"`` (the paper's top path), ``"negative"``
                    (the most negative path product) or ``"absolute"`` (largest
                    magnitude, signed). Default: ``"positive"``.

    Examples::

        >>> import torch, captum_semiring as cs
        >>> _ = torch.manual_seed(0)
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
        >>> x = torch.randn(2, 4)
        >>> tgp = cs.TopGradientPath(net)
        >>> tgp.attribute(x, baselines=torch.zeros_like(x), target=1, n_steps=10).shape
        torch.Size([2, 4])
        >>> top = tgp.attribute(x, target=1)
        >>> path = tgp.paths(x, target=1, index=(0, 2))
        >>> abs(path.value - float(top[0, 2])) < 1e-6
        True
        >>> path.modules()
        ['0', '1', '2', '']
        >>> len(tgp.paths(x, target=1, index=(0, 2), k=3))
        3
    """

    def __init__(
        self,
        forward_func: Callable[..., Any],
        multiply_by_inputs: bool = False,
        sign: Literal["positive", "negative", "absolute"] = "positive",
    ) -> None:
        super().__init__(forward_func, MaxProduct(sign), multiply_by_inputs)

    def paths(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: TargetType = None,
        additional_forward_args: object | None = None,
        index: _PathIndex | list[_PathIndex] | None = None,
        k: int = 1,
        keep: Literal["all", "checkpoints"] = "all",
    ) -> Path | list[Path] | list[Any]:
        r"""The top path (or the ``k`` best) from chosen input elements, at ``inputs``.

        Args:
            inputs (Tensor or tuple[Tensor, ...]): as in :meth:`attribute`.
            target (int, tuple, Tensor or list, optional): as in :meth:`attribute`.
            additional_forward_args (Any, optional): as in :meth:`attribute`.
            index (tuple or list of tuples, optional): the input element, as a full
                        index including the batch position, e.g. ``(0, 5)``. With a
                        tuple of inputs, ``(input_position, element_index)``. A list
                        gives one result per index. ``None`` picks, per example, the
                        element with the best top path value. Default: None.
            k (int, optional): 1 follows this class's
                        :class:`~captum_semiring.MaxProduct`; ``k > 1`` sweeps with
                        :class:`~captum_semiring.TopK` ``(k)`` and returns the ``k``
                        paths of largest magnitude :math:`|g(p)|`, signed, best first
                        (fewer where fewer paths exist). Default: 1.
            keep (str, optional): ``"all"`` keeps every value of the sweep, which
                        the paths read. ``"checkpoints"`` keeps about as little as
                        :meth:`attribute` does and sweeps the values a path reads
                        again, from checkpoints: the same paths, for about one more
                        sweep per path (see :meth:`Graph.backward
                        <captum_semiring.Graph.backward>`). Default: ``"all"``.

        Returns:
            For one index, a :class:`~captum_semiring.Path` (``k=1``) or a list of
            them (``k > 1``); for a list of indices, a list of those; for
            ``index=None``, a list with one entry per example. A path prints hop by
            hop; ``path.value`` is the product of its hop weights, the gradient path
            value (not multiplied by inputs).

        Examples::

            >>> import torch, captum_semiring as cs
            >>> _ = torch.manual_seed(0)
            >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
            >>> best = cs.TopGradientPath(net).paths(torch.randn(2, 3), target=0)
            >>> len(best), [len(p.hops) > 0 for p in best]
            (2, [True, True])
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1; got {k!r}")
        is_tuple, xs = format_inputs(inputs)
        check_float_inputs(xs, type(self).__name__)
        check_target_count(xs[0].shape[0], target)
        semiring = self.semiring if k == 1 else TopK(k)
        sources = tuple(x.detach() for x in xs)
        args = compat.format_additional_forward_args(additional_forward_args)
        if keep not in ("all", "checkpoints"):
            raise ValueError(f"keep must be 'all' or 'checkpoints', got {keep!r}")
        result = sweep(
            self.forward_func, sources, sources, semiring, target, args, keep=keep
        )

        def paths_from(position: int, element: tuple[int, ...]) -> Path | list[Path]:
            if k == 1:
                return result.path(sources[position], element)
            found = []
            for rank in range(k):
                try:
                    found.append(result.path(sources[position], element, rank=rank))
                except ValueError:
                    break
            return found

        def locate(item: Any) -> tuple[int, tuple[int, ...]]:
            if is_tuple:
                if not (
                    isinstance(item, tuple)
                    and len(item) == 2
                    and isinstance(item[0], int)
                ):
                    raise ValueError(
                        f"with a tuple of inputs, an index is (input_position, element_index); got {item!r}"
                    )
                position, element = item
                if not 0 <= position < len(xs):
                    raise IndexError(
                        f"input position {position} is out of range for {len(xs)} inputs"
                    )
            else:
                position, element = 0, item
            element = (
                tuple(element) if isinstance(element, (tuple, list)) else (element,)
            )
            if len(element) != xs[position].dim():
                raise IndexError(
                    f"index {element} does not fit input {position} of shape {tuple(xs[position].shape)}; "
                    "give one position per axis, batch first"
                )
            return position, element

        if index is None:
            return [
                paths_from(*self._best_element(result, semiring, sources, b))
                for b in range(xs[0].shape[0])
            ]
        if isinstance(index, list):
            return [paths_from(*locate(item)) for item in index]
        return paths_from(*locate(index))

    @staticmethod
    def _best_element(
        result: Any, semiring: Semiring, sources: tuple[Tensor, ...], example: int
    ) -> tuple[int, tuple[int, ...]]:
        best: tuple[float, int, tuple[int, ...]] | None = None
        for position, source in enumerate(sources):
            raw = result.values(source)[:, example]
            score = semiring.score(first_rank(semiring.finalize(raw), source.dim() - 1))
            score = torch.where(torch.isfinite(raw).any(0), score, -math.inf).reshape(
                -1
            )
            flat = int(score.argmax())
            value = float(score[flat])
            if value > -math.inf and (best is None or value > best[0]):
                element = unravel_index(flat, source.shape[1:])
                best = (value, position, (example, *element))
        if best is None:
            raise ValueError(
                f"no path leads from the inputs to the output of example {example}"
            )
        return best[1], best[2]


class GradientEntropy(SemiringAttribution):
    r"""Gradient path entropy: :class:`SemiringAttribution` with
    :class:`~captum_semiring.Entropy`.

    For each input element, the entropy (in nats) of the distribution
    :math:`|g(p)| / Z` of gradient flow over the paths :math:`p` from the element to
    the output: low when one path carries the gradient, high when many paths share
    it (Du et al., 2023, eq. 6). An element with no flow has entropy 0. A drop-in
    replacement for :class:`captum.attr.IntegratedGradients`: with baselines and
    ``n_steps > 1`` the entropy is averaged along IG's straight line.

    Args:
        forward_func (Callable): the model, or any function of the inputs returning a
                    tensor with the batch first.
        aggregate_dims (int or sequence of int, optional): input axes to
                    :math:`\bigoplus` over before finalizing (eq. 3): the entropy of
                    all paths from a group of elements, e.g. ``-1`` for one entropy
                    per token over the embedding axis. This is not a sum or mean of
                    per-element entropies. Default: None.

    Examples::

        >>> import torch, captum_semiring as cs
        >>> _ = torch.manual_seed(0)
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
        >>> tokens = torch.randn(2, 5, 4)  # (batch, tokens, embedding)
        >>> ent = cs.GradientEntropy(net).attribute(tokens, target=(0, 1))
        >>> ent.shape, bool((ent >= 0).all())
        (torch.Size([2, 5, 4]), True)
        >>> cs.GradientEntropy(net, aggregate_dims=-1).attribute(tokens, target=(0, 1)).shape
        torch.Size([2, 5])
    """

    def __init__(
        self,
        forward_func: Callable[..., Any],
        aggregate_dims: int | Sequence[int] | None = None,
    ) -> None:
        super().__init__(
            forward_func,
            Entropy(),
            multiply_by_inputs=False,
            aggregate_dims=aggregate_dims,
        )
