"""Argument checks and the integration along IG's straight-line path, shared by the
attribution classes and the functional form.

:func:`step_parameters` is public, exported as ``captum_semiring.attr.step_parameters``;
the rest serves the attribution classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .. import _captum_compat as compat
from .._captum_compat import BaselineType, TargetType
from ..semirings import Semiring

Baseline = Tensor | int | float
Dims = int | Sequence[int]


def format_inputs(inputs: Any, name: str = "inputs") -> tuple[bool, tuple[Tensor, ...]]:
    """``(is_tuple, inputs as a tuple)``; a clear ``TypeError`` for anything else."""
    if isinstance(inputs, Tensor):
        return False, (inputs,)
    if (
        isinstance(inputs, tuple)
        and inputs
        and all(isinstance(x, Tensor) for x in inputs)
    ):
        return True, inputs
    if isinstance(inputs, tuple):
        kinds = ", ".join(type(x).__name__ for x in inputs) or "nothing"
        got = f"a tuple of ({kinds})"
    else:
        got = type(inputs).__name__
    raise TypeError(
        f"{name} must be a tensor or a non-empty tuple of tensors; got {got}"
    )


def check_float_inputs(inputs: tuple[Tensor, ...], cls: str) -> None:
    for i, x in enumerate(inputs):
        if not x.is_floating_point():
            raise TypeError(
                f"{cls} attributes to floating-point inputs, but input {i} has dtype "
                f"{x.dtype}. For integer inputs such as token ids, attribute to the "
                "embedding layer with SemiringLayerAttribution(forward_func, embedding)"
            )


def format_baselines(
    inputs: tuple[Tensor, ...], baselines: BaselineType
) -> tuple[Baseline, ...]:
    """Baselines as a tuple matching ``inputs``: zeros when ``None``, and each a scalar,
    a tensor of the input's shape, or a single example of shape ``(1, *shape[1:])``."""
    if baselines is None:
        return tuple(0 for _ in inputs)
    if not isinstance(baselines, tuple):
        baselines = (baselines,)
    if len(baselines) != len(inputs):
        raise ValueError(
            f"got {len(baselines)} baselines for {len(inputs)} inputs; give one per input"
        )
    for i, (x, b) in enumerate(zip(inputs, baselines)):
        if isinstance(b, bool) or not isinstance(b, (Tensor, int, float)):
            raise TypeError(
                f"baseline {i} must be a tensor or a number; got {type(b).__name__}"
            )
        if isinstance(b, Tensor) and b.dim() > 0:
            one_example = (1, *x.shape[1:])
            if b.shape != x.shape and tuple(b.shape) != one_example:
                raise ValueError(
                    f"baseline {i} has shape {tuple(b.shape)}, but input {i} has shape "
                    f"{tuple(x.shape)}; give a number, a tensor of the input's shape, or "
                    f"one example of shape {one_example}"
                )
    return baselines


def tensorize_baselines(
    inputs: tuple[Tensor, ...], baselines: tuple[Baseline, ...]
) -> tuple[Tensor, ...]:
    """Each baseline as a tensor of its input's full shape."""
    out = []
    for x, b in zip(inputs, baselines):
        if isinstance(b, Tensor):
            out.append(b.to(x.dtype).expand_as(x).clone())
        else:
            out.append(torch.full_like(x, b))
    return tuple(out)


def check_steps(n_steps: Any, method: Any) -> None:
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be an integer >= 1; got {n_steps!r}")
    if method not in compat.APPROXIMATION_METHODS:
        names = ", ".join(repr(m) for m in compat.APPROXIMATION_METHODS)
        raise ValueError(f"unknown method {method!r}; choose one of {names}")


def check_internal_batch_size(internal_batch_size: Any) -> None:
    if internal_batch_size is None:
        return
    if (
        isinstance(internal_batch_size, bool)
        or not isinstance(internal_batch_size, int)
        or internal_batch_size < 1
    ):
        raise ValueError(
            f"internal_batch_size must be a positive integer or None; got {internal_batch_size!r}"
        )


def check_grad_kwargs(grad_kwargs: Mapping[str, Any] | None, cls: str) -> None:
    """``grad_kwargs`` are keyword arguments for ``torch.autograd.grad``, which a
    semiring sweep never calls: accept ``None`` or an empty mapping, reject the rest."""
    if grad_kwargs is None:
        return
    if not isinstance(grad_kwargs, Mapping):
        raise TypeError(
            f"grad_kwargs must be a dict of torch.autograd.grad keyword arguments or "
            f"None; got {type(grad_kwargs).__name__}"
        )
    if grad_kwargs:
        names = ", ".join(repr(k) for k in grad_kwargs)
        raise ValueError(
            f"{cls} cannot honour grad_kwargs ({names}): they are keyword arguments "
            "for torch.autograd.grad, but a semiring sweep runs its own reverse pass "
            "over the recorded operators and never calls autograd (its results carry "
            "no autograd graph, and the output is seeded with the semiring's one). "
            "Pass grad_kwargs=None"
        )


def check_target_count(num_examples: int, target: TargetType) -> None:
    """A list or multi-element tensor target names one index per example."""
    if isinstance(target, list) or (isinstance(target, Tensor) and target.numel() > 1):
        if len(target) != num_examples:
            raise ValueError(
                f"target has {len(target)} entries for {num_examples} examples; give one per example"
            )


def normalize_dims(dims: Dims | None) -> tuple[int, ...] | None:
    if dims is None:
        return None
    out = (dims,) if isinstance(dims, int) else tuple(dims)
    if not out or not all(isinstance(d, int) and not isinstance(d, bool) for d in out):
        raise TypeError(
            f"aggregate_dims must be an int or a non-empty sequence of ints; got {dims!r}"
        )
    return out


def check_aggregate_dims(
    inputs: tuple[Tensor, ...], dims: tuple[int, ...] | None
) -> None:
    if dims is None:
        return
    for i, x in enumerate(inputs):
        for d in dims:
            if not -x.dim() <= d < x.dim():
                raise ValueError(
                    f"aggregate_dims {dims} do not fit input {i} of shape {tuple(x.shape)}"
                )
            if d % x.dim() == 0:
                raise ValueError(
                    "aggregate_dims must not include the batch axis 0: examples must not mix"
                )


def step_parameters(n_steps: int, method: str) -> tuple[list[float], list[float]]:
    r"""Integrated gradients' quadrature: step sizes (weights) and alphas.

    The points of the straight line from a baseline :math:`x'` to an input :math:`x`
    are :math:`x' + \alpha_i (x - x')`, and a quantity taken at those points is
    integrated as :math:`\sum_i s_i f(\alpha_i)`. These are exactly the numbers
    :class:`captum.attr.IntegratedGradients` uses, so a sweep along them reproduces
    it.

    Args:
        n_steps (int): number of points, at least 1.
        method (str): Captum's approximation method: ``"riemann_right"``,
            ``"riemann_left"``, ``"riemann_middle"``, ``"riemann_trapezoid"`` or
            ``"gausslegendre"``.

    Returns:
        *tuple[list[float], list[float]]*: ``(step_sizes, alphas)``, each of length
        ``n_steps``.

    Examples::

        >>> from captum_semiring.attr import step_parameters
        >>> step_parameters(4, "riemann_left")
        ([0.25, 0.25, 0.25, 0.25], [0.0, 0.25, 0.5, 0.75])
        >>> sizes, alphas = step_parameters(5, "gausslegendre")
        >>> round(sum(sizes), 6)
        1.0
    """
    step_sizes_func, alphas_func = compat.approximation_parameters(method)
    return list(step_sizes_func(n_steps)), list(alphas_func(n_steps))


def interpolate(
    x: Tensor, baseline: Baseline | Tensor, alphas: Sequence[float]
) -> Tensor:
    """The straight line from ``baseline`` to ``x`` at ``alphas``, steps stacked along
    the batch axis, exactly as IntegratedGradients builds it."""
    return torch.cat(
        [baseline + alpha * (x - baseline) for alpha in alphas], dim=0
    ).detach()


def path_points(
    values: tuple[Tensor, ...],
    baselines: Sequence[Baseline] | None,
    n_steps: int,
    method: str,
    step_sizes_and_alphas: tuple[list[float], list[float]] | None,
) -> tuple[list[float], tuple[Tensor, ...]]:
    """IG's step sizes and the points where the semiring gradient is taken: fresh
    copies of ``values`` themselves for one step (no batch split), else IG's points
    from ``baselines`` to ``values``."""
    if step_sizes_and_alphas is None and n_steps == 1:
        return [1.0], tuple(v.detach().clone() for v in values)
    assert baselines is not None
    step_sizes, alphas = step_sizes_and_alphas or step_parameters(n_steps, method)
    return step_sizes, tuple(
        interpolate(v, b, alphas) for v, b in zip(values, baselines)
    )


def run_steps(
    attribution: Any,
    num_examples: int,
    n_steps: int,
    internal_batch_size: int | None,
    show_progress: bool,
    **kwargs: Any,
) -> tuple[Tensor, ...]:
    """``attribution._attribute(**kwargs)`` over IG's ``n_steps``: in chunks of at most
    ``internal_batch_size`` examples (Captum's internal batching, which adds the
    chunks up), with a progress bar over the steps when ``show_progress``."""
    with compat.progress(
        desc=f"{attribution.get_name()} attribution",
        total=n_steps,
        unit="step",
        show=show_progress,
    ) as bar:
        if internal_batch_size is not None and n_steps > 1:
            return compat.batch_attribution(
                attribution,
                num_examples,
                internal_batch_size,
                n_steps,
                progress=bar,
                **kwargs,
            )
        return attribution._attribute(n_steps=n_steps, progress=bar, **kwargs)


def expand_for_steps(
    n: int, additional_forward_args: Any, target: Any
) -> tuple[Any, Any]:
    """Additional arguments and target repeated for ``n`` steps stacked on the batch."""
    if n == 1:
        return additional_forward_args, target
    return (
        compat.expand_additional_forward_args(additional_forward_args, n),
        compat.expand_target(target, n),
    )


def integrate(values: Tensor, step_sizes: Sequence[float], example_dim: int) -> Tensor:
    """Weighted sum over the steps stacked on ``values``' batch axis.

    ``example_dim`` is the number of axes of one result without extra semiring axes;
    axes in front of those (``k`` for TopK) are kept.
    """
    n = len(step_sizes)
    axis = values.dim() - example_dim
    shape = values.shape
    steps = values.reshape(*shape[:axis], n, shape[axis] // n, *shape[axis + 1 :])
    weights = torch.tensor(step_sizes, dtype=values.dtype, device=values.device)
    weights = weights.reshape(n, *([1] * (steps.dim() - axis - 1)))
    return (steps * weights).sum(axis)


def extra_axes(semiring: Semiring) -> int:
    """How many axes the semiring's finalized values put in front (1 for TopK)."""
    return semiring.finalize(semiring.zeros((1,), torch.empty(()))).dim() - 1


def first_rank(values: Tensor, example_dim: int) -> Tensor:
    """Drop extra leading semiring axes (TopK's ``k``) by taking their first entry."""
    while values.dim() > example_dim:
        values = values[0]
    return values
