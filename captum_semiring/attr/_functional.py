"""The functional form: one semiring sweep with Captum's ``target`` semantics.

:func:`select_output` is public, exported as ``captum_semiring.attr.select_output``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from torch import Tensor

from .. import _captum_compat as compat
from .._captum_compat import TargetType, TensorOrTupleOfTensorsGeneric
from .._capture import record
from .._engine import Keep
from ..result import SemiringResult
from ..semirings import Semiring, get_semiring
from ._common import (
    Baseline,
    Dims,
    check_aggregate_dims,
    check_float_inputs,
    check_target_count,
    format_inputs,
    integrate,
    normalize_dims,
)


def _check_index(output: Tensor, index: Any, what: str) -> None:
    example_shape = tuple(output.shape[1:])
    index = (index,) if isinstance(index, int) else tuple(index)
    if len(index) > len(example_shape):
        raise ValueError(
            f"target {what} has {len(index)} indices, but each example's output has "
            f"shape {example_shape} (model output shape {tuple(output.shape)})"
        )
    for i, size in zip(index, example_shape):
        if isinstance(i, int) and not -size <= i < size:
            raise ValueError(
                f"target {what} is out of range for the model output of shape {tuple(output.shape)}"
            )


def check_target(output: Tensor, target: TargetType) -> None:
    """Check every Captum target form against the model output's shape."""
    if target is None:
        return
    if output.dim() < 2:
        raise ValueError(
            f"target={target!r} was given, but forward_func returns shape "
            f"{tuple(output.shape)}, one value per example; pass target=None"
        )
    n = output.shape[0]
    if isinstance(target, bool):
        raise TypeError(
            "target must be an int, a tuple, a tensor or a list, not a bool"
        )
    if isinstance(target, (int, tuple)):
        _check_index(output, target, repr(target))
    elif isinstance(target, Tensor):
        if target.is_floating_point() or target.is_complex():
            raise TypeError(
                f"a tensor target must hold integer class indices; got dtype {target.dtype}"
            )
        if target.numel() == 1:
            _check_index(output, int(target.item()), repr(int(target.item())))
        elif target.dim() == 1 and target.numel() == n:
            if output.dim() != 2:
                raise ValueError(
                    f"a tensor of per-example targets needs a 2D model output, got shape {tuple(output.shape)}"
                )
            for b, t in enumerate(target.tolist()):
                _check_index(output, int(t), f"{int(t)} (example {b})")
        else:
            raise ValueError(
                f"a tensor target must hold one index, or one per example ({n}); got shape {tuple(target.shape)}"
            )
    elif isinstance(target, list):
        if len(target) != n:
            raise ValueError(f"target list has {len(target)} entries for {n} examples")
        for b, t in enumerate(target):
            if isinstance(t, int) and output.dim() != 2:
                raise ValueError(
                    f"a list of int targets needs a 2D model output, got shape {tuple(output.shape)}"
                )
            if not isinstance(t, (int, tuple)):
                raise TypeError(
                    f"target list entries must be ints or tuples; got {type(t).__name__}"
                )
            _check_index(output, t, f"{t!r} (example {b})")
    else:
        raise TypeError(
            f"target must be an int, a tuple, a tensor or a list; got {type(target).__name__}"
        )


def select_output(output: Any, target: TargetType, num_examples: int) -> Tensor:
    """Captum's target selection, then one scalar per example.

    This is how every attribution class in this package turns a model output into
    the scalars a sweep starts from. ``target`` is checked against the output's shape
    first, so a wrong target gives an error that names both, instead of an indexing
    error inside Captum.

    Args:
        output (Tensor): the model output, batch first.
        target (int, tuple, Tensor or list, optional): Captum's output selection: an
            int or tuple of indices for every example, or a list or 1D tensor with one
            index per example; ``None`` when the output already holds one value per
            example.
        num_examples (int): the batch size the output must have.

    Returns:
        *Tensor*: the selected values, shape ``(num_examples,)`` (a 0-dimensional
        output stays 0-dimensional).

    Raises:
        TypeError: ``output`` is not a tensor, or ``target`` has an unknown form.
        ValueError: ``target`` does not fit the output, or does not select one scalar
            per example.

    Examples::

        >>> import torch
        >>> from captum_semiring.attr import select_output
        >>> logits = torch.tensor([[0.1, 0.9], [0.7, 0.3]])
        >>> select_output(logits, 1, 2)
        tensor([0.9000, 0.3000])
        >>> select_output(logits, [0, 1], 2)
        tensor([0.1000, 0.3000])
        >>> select_output(logits, None, 2)
        Traceback (most recent call last):
        ...
        ValueError: the selected output has shape (2, 2); it must hold one scalar per example. Pass a target (for example target=0) that selects one
    """
    if not isinstance(output, Tensor):
        raise TypeError(
            f"forward_func must return a tensor; got {type(output).__name__}"
        )
    check_target(output, target)
    selected = compat.select_targets(output, target)
    if selected.dim() == 0:
        return selected
    if selected.shape[0] != num_examples:
        raise ValueError(
            f"forward_func returned {selected.shape[0]} rows for {num_examples} examples"
        )
    if selected.dim() > 1:
        if selected[0].numel() != 1:
            raise ValueError(
                f"the selected output has shape {tuple(selected.shape)}; it must hold one "
                "scalar per example. Pass a target (for example target=0) that selects one"
            )
        selected = selected.reshape(num_examples)
    return selected


def sweep(
    forward_func: Callable[..., Any],
    sources: tuple[Tensor, ...],
    forward_inputs: tuple[Any, ...],
    semiring: Semiring,
    target: TargetType,
    additional_forward_args: Any,
    keep: Keep = "sources",
) -> SemiringResult:
    """Record ``forward_func(*forward_inputs, *additional_forward_args)`` with
    ``sources`` tracked, select ``target`` and sweep back with ``semiring``,
    keeping only the sources' values unless ``keep`` says otherwise (paths, branch
    flow: ``"all"`` or ``"checkpoints"``)."""
    with record(*sources) as graph:
        output = compat.run_forward(
            forward_func, forward_inputs, None, additional_forward_args
        )
        selected = select_output(output, target, forward_inputs[0].shape[0])
    return graph.backward(selected, semiring, keep=keep)


def finalized(
    result: SemiringResult, source: Tensor, aggregate_dims: tuple[int, ...] | None
) -> Tensor:
    """``result[source]``, or the aggregated derivative (eq. 3) over ``aggregate_dims``."""
    if aggregate_dims is None:
        return result[source].detach()
    return result.aggregate(source, dim=list(aggregate_dims)).detach()


def integrated(
    result: SemiringResult,
    sources: tuple[Tensor, ...],
    values: tuple[Tensor, ...],
    baselines: Sequence[Baseline] | None,
    step_sizes: list[float],
    aggregate_dims: tuple[int, ...] | None,
    multiply: bool,
) -> tuple[Tensor, ...]:
    """Per source, the finalized values averaged over the stacked steps with IG's
    ``step_sizes``; times ``values - baselines`` when ``multiply``."""
    out = []
    for i, (source, value) in enumerate(zip(sources, values)):
        example_dim = value.dim() - len(aggregate_dims or ())
        total = integrate(
            finalized(result, source, aggregate_dims), step_sizes, example_dim
        )
        if multiply:
            assert baselines is not None
            total = total * (value - baselines[i])
        out.append(total)
    return tuple(out)


def semiring_grad(
    func: Callable[..., Any],
    inputs: TensorOrTupleOfTensorsGeneric,
    semiring: Semiring | str,
    target: TargetType = None,
    additional_forward_args: object | None = None,
    aggregate_dims: Dims | None = None,
) -> TensorOrTupleOfTensorsGeneric:
    r"""The semiring gradient of ``func``'s output with respect to ``inputs``.

    The functional counterpart of :class:`~captum_semiring.SemiringAttribution` at
    ``n_steps=1``: it runs ``func(*inputs, *additional_forward_args)`` once under
    :func:`~captum_semiring.record`, selects ``target`` as Captum does, so that there
    is one scalar per example, and sweeps back with ``semiring``.

    Args:
        func (Callable): the model or any function returning a tensor whose first
            axis is the batch.
        inputs (Tensor or tuple[Tensor, ...]): floating-point inputs, batch first.
        semiring (Semiring or str): a :class:`~captum_semiring.Semiring` or its name
            (``"sum"``, ``"max"``, ``"entropy"``, ``"logsum"``, ``"count"``,
            ``"topk5"``).
        target (int, tuple, Tensor or list, optional): Captum's output selection.
        additional_forward_args (Any, optional): extra arguments passed after
            ``inputs``; tensors and other objects may mix.
        aggregate_dims (int or sequence of int, optional): input axes (not 0) to
            :math:`\bigoplus` over before finalizing (eq. 3).

    Returns:
        *Tensor* or *tuple[Tensor, ...]*: finalized values with the structure of
        ``inputs``: each input's shape (without ``aggregate_dims``), and for
        :class:`~captum_semiring.TopK` an extra leading axis of size ``k``.

    Examples::

        >>> import torch, captum_semiring as cs
        >>> _ = torch.manual_seed(0)
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
        >>> x = torch.randn(2, 4)
        >>> grad = cs.semiring_grad(net, x, "sum", target=1)
        >>> xg = x.clone().requires_grad_()
        >>> torch.allclose(grad, torch.autograd.grad(net(xg)[:, 1].sum(), xg)[0])
        True
        >>> cs.semiring_grad(net, x, cs.TopK(3), target=1).shape
        torch.Size([3, 2, 4])
    """
    is_tuple, xs = format_inputs(inputs)
    check_float_inputs(xs, "semiring_grad")
    sr = get_semiring(semiring)
    dims = normalize_dims(aggregate_dims)
    check_aggregate_dims(xs, dims)
    check_target_count(xs[0].shape[0], target)
    args = compat.format_additional_forward_args(additional_forward_args)
    sources = tuple(x.detach() for x in xs)
    result = sweep(func, sources, sources, sr, target, args)
    return cast(
        TensorOrTupleOfTensorsGeneric,
        compat.format_output(
            is_tuple, tuple(finalized(result, s, dims) for s in sources)
        ),
    )
