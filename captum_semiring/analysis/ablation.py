"""Gradients versus ablation: do top gradient paths rank a transformer's components as
knocking them out does, and where do they fail? (``captum-semiring reproduce ablation``
runs it on the paper's models: :mod:`captum_semiring.reproductions.ablation`.)

For each component of a BERT-style encoder (the skip connection, query, key and
value of every layer, and every attention head) :func:`compare_with_ablation`
measures

- ``flow``: the semiring flow from the component's activation to the target (by
  default the magnitude of the best :class:`~captum_semiring.MaxProduct` path),
- ``integrated_flow``: the same flow averaged along the straight line from the
  component's ablated activation to its actual one, as integrated gradients does,
- ``zero_ablation`` and ``mean_ablation``: how much the target moves when the
  activation is replaced by zeros or by its mean over the inputs,
- ``atp`` and ``ig``: the first-order (attribution patching) and path-integrated
  (integrated gradients) estimates of that change, from the plain gradient.

:func:`saturated_softmax_case` builds the case where plain gradients predictably fail:
an attention head whose softmax is saturated, so that no gradient flows into its
queries and keys, although removing them changes the output a lot.

Examples::

    >>> from captum_semiring.analysis.ablation import (
    ...     compare_with_ablation, saturated_softmax_case)
    >>> case = saturated_softmax_case()
    >>> cmp = compare_with_ablation(case.model, case.inputs, target=case.target, n_steps=32)
    >>> key = cmp.row("layer.0.key")
    >>> key["flow"] < 1e-6 < 0.05 < key["integrated_flow"] and key["zero_ablation"] > 1
    True
"""

from __future__ import annotations

import contextlib
import inspect
import math
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .. import _captum_compat as compat
from .._capture import record
from .._hooks import removable_handles
from ..attr import select_output, step_parameters
from ..semirings import MaxProduct, Semiring, SumProduct, get_semiring
from .models import encoder_layers as bert_layers
from .stats import spearman

__all__ = [
    "Component",
    "AblationComparison",
    "SaturatedCase",
    "compare_with_ablation",
    "encoder_layers",
    "transformer_components",
    "resolve_component",
    "ablated",
    "saturated_softmax_case",
]

#: The per-layer components, in the order :func:`transformer_components` lists them;
#: each layer's heads (``head.0``, ``head.1``, ...) follow them.
LAYER_COMPONENTS = ("skip", "query", "key", "value")
#: The gradient measures and the ablation measures, the columns of the comparison.
MEASURES = (
    "flow",
    "integrated_flow",
    "flow_x_delta",
    "integrated_flow_x_delta",
    "atp",
    "ig",
)
ABLATIONS = ("zero_ablation", "mean_ablation")

Target = Any  # Captum's target forms, or a callable on the model output


# ----- components ---------------------------------------------------------------


@dataclass(frozen=True)
class Component:
    """One component of a BERT-style encoder, named ``layer.L.KIND`` or
    ``layer.L.head.H``.

    Its *activation* is the tensor that ablation replaces and whose flow is measured:

    - ``query``/``key``/``value``: the output of the layer's projection
      (``attention.self.query`` etc.), all heads' columns;
    - ``skip``: the residual input of ``attention.output``
      (``BertSelfOutput.forward(hidden_states, input_tensor)`` computes
      ``LayerNorm(dropout(dense(hidden_states)) + input_tensor)``; ``input_tensor`` is
      the layer's input carried around the attention);
    - ``head``: head H's columns ``[H·d, (H+1)·d)`` of the attention context, the input
      of ``attention.output`` before its ``dense`` mixes the heads.

    Attributes:
        name: the name, e.g. ``"layer.0.head.1"``.
        layer: the layer's index.
        kind: ``"skip"``, ``"query"``, ``"key"``, ``"value"`` or ``"head"``.
        head: the head's index (``kind == "head"`` only).
        module: the hooked module (the projection, or the layer's
            ``attention.output``).
        columns: the activation's columns (last axis) that belong to the component.
    """

    name: str
    layer: int
    kind: str
    head: int | None
    module: nn.Module = field(repr=False, compare=False)
    columns: slice = field(repr=False, compare=False)


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer layers of a Hugging Face BERT-style encoder, checked for
    BERT's layout (see :func:`captum_semiring.analysis.models.encoder_layers`).

    Raises:
        ModelLoadError: no BERT-style layers, or a layer lacks
            ``attention.self.{query,key,value}`` and ``attention.output``.
    """
    found = bert_layers(model, strict=True, needed_by="compare_with_ablation")
    return nn.ModuleList(m for _, m in found)


def _heads(layer: Any) -> tuple[int, int]:
    self_attn = layer.attention.self
    n = int(self_attn.num_attention_heads)
    return n, int(self_attn.query.out_features) // n


def transformer_components(model: nn.Module, heads: bool = True) -> list[str]:
    """Every component's name, layer by layer: ``layer.L.skip``, ``.query``,
    ``.key``, ``.value``, then ``layer.L.head.0`` ... (with ``heads=True``).

    Examples::

        >>> from captum_semiring.analysis.ablation import (
        ...     saturated_softmax_case, transformer_components)
        >>> transformer_components(saturated_softmax_case().model)
        ['layer.0.skip', 'layer.0.query', 'layer.0.key', 'layer.0.value', 'layer.0.head.0']
    """
    names = []
    for i, layer in enumerate(encoder_layers(model)):
        names += [f"layer.{i}.{kind}" for kind in LAYER_COMPONENTS]
        if heads:
            names += [f"layer.{i}.head.{h}" for h in range(_heads(layer)[0])]
    return names


_NAME = re.compile(r"layer\.(\d+)\.(skip|query|key|value|head\.(\d+))")


def resolve_component(model: nn.Module, name: str | Component) -> Component:
    """The :class:`Component` called ``name`` (``"layer.0.key"``,
    ``"layer.1.head.3"``) in ``model``."""
    if isinstance(name, Component):
        return name
    match = _NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(
            f"unknown component {name!r}; use 'layer.L.skip', 'layer.L.query', "
            "'layer.L.key', 'layer.L.value' or 'layer.L.head.H'"
        )
    layers = encoder_layers(model)
    index = int(match.group(1))
    if index >= len(layers):
        raise ValueError(f"{name!r}: the encoder has {len(layers)} layers")
    layer: Any = layers[index]
    n_heads, size = _heads(layer)
    kind = match.group(2)
    if kind.startswith("head"):
        head = int(match.group(3))
        if head >= n_heads:
            raise ValueError(f"{name!r}: layer {index} has {n_heads} heads")
        columns = slice(head * size, (head + 1) * size)
        return Component(name, index, "head", head, layer.attention.output, columns)
    module = (
        layer.attention.output
        if kind == "skip"
        else getattr(layer.attention.self, kind)
    )
    return Component(name, index, kind, None, module, slice(None))


# ----- hooks --------------------------------------------------------------------


@contextlib.contextmanager
def _hooked(
    component: Component, fn: Callable[[Tensor], Tensor | None]
) -> Iterator[None]:
    """Call ``fn(activation)`` on the component's full activation (all columns) each
    time it is computed; a tensor it returns replaces the activation. The hook is
    removed when the block ends, also when the forward pass raises."""

    def post(module: nn.Module, args: Any, output: Tensor) -> Tensor | None:
        return fn(output)

    # attention.output(hidden_states, input_tensor): the context and the residual
    position, keyword = (
        (1, "input_tensor") if component.kind == "skip" else (0, "hidden_states")
    )

    def pre(module: nn.Module, args: Any, kwargs: Any) -> Any:
        if len(args) > position:
            new = fn(args[position])
            if new is None:
                return None
            args = (*args[:position], new, *args[position + 1 :])
        else:
            new = fn(kwargs[keyword])
            if new is None:
                return None
            kwargs = {**kwargs, keyword: new}
        return args, kwargs

    with removable_handles() as handles:
        if component.kind in ("query", "key", "value"):
            handles.add(component.module.register_forward_hook(post))
        else:
            handles.add(
                component.module.register_forward_pre_hook(pre, with_kwargs=True)
            )
        yield


def _with_columns(full: Tensor, columns: slice, part: Tensor) -> Tensor:
    """``full`` with its ``columns`` (last axis) set to ``part`` (broadcast)."""
    if columns == slice(None):
        return part.expand_as(full).clone()
    out = full.clone()
    out[..., columns] = part
    return out


@contextlib.contextmanager
def ablated(
    model: nn.Module, component: str | Component, value: Tensor | float = 0.0
) -> Iterator[Component]:
    """Within the block, ``component``'s activation is replaced by ``value`` (a number,
    or a tensor broadcast to the activation's columns, e.g. its mean of shape
    ``(positions, columns)``); the hook goes when the block ends, also on errors.

    Examples::

        >>> import torch
        >>> from captum_semiring.analysis.ablation import ablated, saturated_softmax_case
        >>> case = saturated_softmax_case()
        >>> with torch.no_grad(), ablated(case.model, "layer.0.value"):
        ...     zeroed = case.target(case.model(case.inputs))
        >>> [round(v, 4) for v in zeroed.tolist()]   # no value, no attention output
        [0.0, 0.0, 0.0]
    """
    comp = resolve_component(model, component)

    def replace(activation: Tensor) -> Tensor:
        part = torch.as_tensor(value, dtype=activation.dtype, device=activation.device)
        return _with_columns(activation, comp.columns, part)

    with _hooked(comp, replace):
        yield comp


@contextlib.contextmanager
def _captured(
    components: Sequence[Component], store: dict[str, Tensor]
) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for comp in components:

            def keep(activation: Tensor, name: str = comp.name) -> None:
                store[name] = activation.detach().clone()

            stack.enter_context(_hooked(comp, keep))
        yield


# ----- running the model and the target -----------------------------------------


def _takes_rows(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in positional)


def _logits(output: Any) -> Tensor:
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, (tuple, list)) or hasattr(output, "to_tuple"):
        first = output[0]
        if isinstance(first, Tensor):
            return first
    raise TypeError(
        f"cannot select a target from a model output of type {type(output).__name__}; "
        "pass target as a callable on the output"
    )


def _select(output: Any, target: Target, rows: Tensor) -> Tensor:
    """One scalar per row of the (possibly step-expanded) batch; ``rows`` holds each
    row's index into the original inputs."""
    n = rows.numel()
    if callable(target):
        out = target(output, rows) if _takes_rows(target) else target(output)
        if not isinstance(out, Tensor) or out.shape != (n,):
            raise ValueError(
                "a callable target must return one scalar per example, shape "
                f"({n},); got {getattr(out, 'shape', type(out).__name__)}"
            )
        return out
    if isinstance(target, list):
        target = [target[i] for i in rows.tolist()]
    elif isinstance(target, Tensor) and target.numel() > 1:
        target = target.to(rows.device)[rows]
    return select_output(_logits(output), target, n)


@dataclass
class _Batches:
    """The inputs, additional arguments and target, cut into chunks of examples and
    repeated for the steps of a path integral."""

    inputs: tuple[Tensor, ...]
    args: Any
    target: Target
    batch_size: int

    @property
    def n(self) -> int:
        return self.inputs[0].shape[0]

    def chunks(self) -> Iterator[slice]:
        for start in range(0, self.n, self.batch_size):
            yield slice(start, min(start + self.batch_size, self.n))

    def run(self, model: nn.Module, chunk: slice, steps: int = 1) -> Tensor:
        """The target for the examples of ``chunk``, repeated ``steps`` times along the
        batch (steps outermost, as Captum's IG stacks them)."""
        inputs = tuple(torch.cat([x[chunk]] * steps) for x in self.inputs)
        args = self.args
        if args is not None:
            args = tuple(
                torch.cat([a[chunk]] * steps)
                if isinstance(a, Tensor) and a.dim() > 0 and a.shape[0] == self.n
                else a
                for a in args
            )
        output = compat.run_forward(model, inputs, None, args)
        rows = torch.arange(self.n)[chunk].repeat(steps)
        return _select(output, self.target, rows)


# ----- flows --------------------------------------------------------------------


def _magnitude(semiring: Semiring, finalized: Tensor) -> Tensor:
    """A non-negative size of a finalized per-example flow: the semiring's
    magnitude of its best value (|best path| for MaxProduct and TopK, |sum| for
    SumProduct, Z for LogSum, the value itself for entropy)."""
    return semiring.magnitude(semiring.best(finalized))


def _steps(n_steps: int, method: str) -> tuple[list[float], list[float]]:
    if n_steps == 1:
        return [1.0], [1.0]
    return step_parameters(n_steps, method)


def _flows(
    model: nn.Module,
    batches: _Batches,
    chunk: slice,
    comp: Component,
    clean: Tensor,
    baseline: Tensor,
    semiring: Semiring,
    n_steps: int,
    method: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """For the examples of ``chunk``, from one recording at IG's points on the line
    from ``baseline`` to ``clean`` (the point ``clean`` alone for one step):

    - the per-example flow magnitude, averaged over the points with IG's weights;
    - per element the finalized flow averaged the same way, times
      ``baseline − clean``, and its largest magnitude over the elements;
    - the SumProduct estimate ``Σ (baseline − clean)·ḡ`` of the target's change.
    """
    step_sizes, alphas = _steps(n_steps, method)
    cols = comp.columns
    part, base = clean[..., cols], baseline.expand_as(clean)[..., cols]
    points = torch.cat(
        [_with_columns(clean, cols, base + a * (part - base)) for a in alphas]
    )
    # The interpolated activation is the only source: everything downstream of it is
    # recorded, nothing upstream (the component's own inputs stay at their values).
    source = points.detach().clone()

    def swap(live: Tensor) -> Tensor:
        if live.shape != source.shape:
            raise RuntimeError(
                f"{comp.name}: activation of shape {tuple(live.shape)}, expected "
                f"{tuple(source.shape)}"
            )
        return source

    with _hooked(comp, swap), record(source) as graph:
        out = batches.run(model, chunk, len(alphas))
    n, k = len(alphas), clean.shape[0]
    weights = torch.tensor(step_sizes, dtype=torch.float64)

    def average(per_row: Tensor) -> Tensor:  # (n·k, ...) -> (k, ...), IG's weights
        per_row = per_row.double().reshape(n, k, *per_row.shape[1:])
        return (per_row * weights.reshape(n, *[1] * (per_row.dim() - 1))).sum(0)

    delta = (base - part).double()
    raw = graph.backward(out, semiring).values(source)[..., cols]
    per_row = semiring.finalize(semiring.sum(raw, list(range(2, raw.dim()))))
    flow = average(_magnitude(semiring, per_row))
    per_element = semiring.best(semiring.finalize(raw))
    flow_x_delta = (average(per_element) * delta).abs().flatten(1).amax(1)
    grad = average(graph.backward(out, SumProduct())[source][..., cols])
    estimate = (delta * grad).flatten(1).sum(1)
    return flow, flow_x_delta, estimate


def _plain_flows(
    model: nn.Module,
    batches: _Batches,
    chunk: slice,
    comps: Sequence[Component],
    bases: dict[str, Tensor],
    semiring: Semiring,
) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
    """What :func:`_flows` gives with one step, for all ``comps`` from one recording:
    the first layer's input is the source, and each activation passes through a
    recorded copy (``clone``) whose backward value is the flow from that activation
    alone (the layer input's own value would add up every branch)."""
    from .._capture import layer_input

    copies: dict[str, Tensor] = {}
    with contextlib.ExitStack() as stack:
        for comp in comps:

            def copy(activation: Tensor, name: str = comp.name) -> Tensor:
                copies[name] = activation.clone()
                return copies[name]

            stack.enter_context(_hooked(comp, copy))
        source = layer_input(encoder_layers(model)[0])
        graph = stack.enter_context(record(source))
        out = batches.run(model, chunk)
    result = graph.backward(out, semiring)
    grads = graph.backward(out, SumProduct())
    found = {}
    for comp in comps:
        copy_ = copies[comp.name]
        value = copy_.detach()
        cols = comp.columns
        raw = result.values(copy_)[..., cols]
        per_row = semiring.finalize(semiring.sum(raw, list(range(2, raw.dim()))))
        per_element = semiring.best(semiring.finalize(raw))
        delta = (bases[comp.name].expand_as(value) - value)[..., cols].double()
        found[comp.name] = (
            _magnitude(semiring, per_row).double(),
            (per_element.double() * delta).abs().flatten(1).amax(1),
            (delta * grads[copy_][..., cols].double()).flatten(1).sum(1),
        )
    return found


# ----- the comparison -----------------------------------------------------------


def _summarize(
    per_example: dict[str, dict[str, Tensor]],
) -> tuple[list[dict[str, Any]], dict[str, dict[str, float | None]]]:
    """Rows (means over the examples of the magnitudes) and Spearman correlations."""
    rows: list[dict[str, Any]] = [
        {"component": name}
        | {k: float(v[k].abs().mean()) for k in (*MEASURES, *ABLATIONS)}
        for name, v in per_example.items()
    ]
    correlations = {
        m: {a: spearman([r[m] for r in rows], [r[a] for r in rows]) for a in ABLATIONS}
        for m in MEASURES
    }
    return rows, correlations


@dataclass
class AblationComparison:
    """Gradient measures against ablation effects, per component.

    Every measure is a mean over the examples of a per-example non-negative number:

    - ``flow``: the magnitude of the semiring sum (⊕) of the backward values over all
      of the component's activation elements (every position, every column of the
      component), at the actual activation. Under ``MaxProduct("absolute")`` it is
      the largest-magnitude path from any element of the activation to the target.
    - ``integrated_flow``: that per-example flow averaged, with IG's weights, over
      ``n_steps`` points on the straight line from the ablated activation
      (``baseline``: zeros or the mean) to the actual one, the rest of the model at its
      actual values.
    - ``flow_x_delta`` / ``integrated_flow_x_delta``: per element, the finalized
      flow (at ``a``, or averaged along the line) times ``a' − a``, then the largest
      magnitude over the elements: the best single path's linear estimate of the
      ablation, as ``multiply_by_inputs`` does for Captum's attributions.
    - ``atp`` / ``ig``: ``|Σ (a' − a)·g|`` with ``g`` the gradient at the actual
      activation ``a`` (attribution patching) or averaged along the line
      (integrated gradients), ``a'`` the baseline; estimates of ablating to ``a'``.
    - ``zero_ablation`` / ``mean_ablation``: ``|f(ablated) − f(actual)|`` for the
      activation set to zeros, or to its mean over all the inputs (per position).

    Attributes:
        rows: one dict per component with ``component`` and the columns above.
        correlations: ``correlations[measure][ablation]``: Spearman's rank correlation
            over the components (None where undefined).
        per_example: ``per_example[component][column]``: per-example values, shape
            ``(n,)``; the ablation and estimate columns are *signed* changes of the
            target (ablated minus actual).
        semiring, n_steps, method, baseline: the settings.
        seconds: the wall time of the comparison.

    Examples::

        >>> from captum_semiring.analysis.ablation import (
        ...     compare_with_ablation, saturated_softmax_case)
        >>> case = saturated_softmax_case()
        >>> cmp = compare_with_ablation(case.model, case.inputs, ["layer.0.value"],
        ...                             target=case.target, n_steps=4)
        >>> list(cmp.row("layer.0.value"))
        ['component', 'flow', 'integrated_flow', 'flow_x_delta', 'integrated_flow_x_delta', 'atp', 'ig', 'zero_ablation', 'mean_ablation']
        >>> fig = cmp.plot()
    """

    rows: list[dict[str, Any]]
    correlations: dict[str, dict[str, float | None]]
    per_example: dict[str, dict[str, Tensor]]
    semiring: Semiring
    n_steps: int
    method: str
    baseline: str
    seconds: float = 0.0

    @classmethod
    def concat(cls, parts: Sequence[AblationComparison]) -> AblationComparison:
        """One comparison over the examples of all ``parts`` (same components and
        settings), e.g. batches of different sequence lengths: the per-example values
        are concatenated, the rows and correlations recomputed. Each part's mean
        ablation used the mean over that part's inputs."""
        if not parts:
            raise ValueError("concat needs at least one comparison")
        first = parts[0]
        for part in parts[1:]:
            if list(part.per_example) != list(first.per_example) or (
                part.semiring,
                part.n_steps,
                part.method,
                part.baseline,
            ) != (first.semiring, first.n_steps, first.method, first.baseline):
                raise ValueError("concat needs comparisons of one setting")
        per_example = {
            name: {
                col: torch.cat([p.per_example[name][col] for p in parts])
                for col in first.per_example[name]
            }
            for name in first.per_example
        }
        rows, correlations = _summarize(per_example)
        return cls(
            rows,
            correlations,
            per_example,
            first.semiring,
            first.n_steps,
            first.method,
            first.baseline,
            sum(p.seconds for p in parts),
        )

    @property
    def n_examples(self) -> int:
        """The number of examples."""
        first = next(iter(self.per_example.values()), {})
        return int(next(iter(first.values())).numel()) if first else 0

    def row(self, component: str) -> dict[str, Any]:
        """The row of ``component``."""
        for row in self.rows:
            if row["component"] == component:
                return row
        raise KeyError(component)

    def column(self, name: str) -> list[float]:
        """One column over the components, in row order."""
        return [float(row[name]) for row in self.rows]

    def ranking(self, name: str) -> list[str]:
        """The components, most important first by column ``name``."""
        return [
            row["component"] for row in sorted(self.rows, key=lambda r: -float(r[name]))
        ]

    def scatter(self, ax: Any, measure: str, ablation: str, title: str = "") -> Any:
        """Draw one panel on the matplotlib ``ax``: ``measure`` (x) against
        ``ablation`` (y), one labelled point per component, log axes where some value
        is positive (zeros sit at a floor a decade below the smallest positive value,
        drawn as ▼), Spearman's ρ in the title."""
        xs, x_log = _log_ready(self.column(measure))
        ys, y_log = _log_ready(self.column(ablation))
        for x, y, row in zip(xs, ys, self.rows):
            zero = float(row[measure]) <= 0 or float(row[ablation]) <= 0
            ax.scatter(
                [x],
                [y],
                s=36,
                marker="v" if zero else "o",
                color=_color(row["component"]),
                zorder=3,
            )
            ax.annotate(
                short_name(row["component"]),
                (x, y),
                textcoords="offset points",
                xytext=(4, 3),
                fontsize=7,
            )
        if x_log:
            ax.set_xscale("log")
        if y_log:
            ax.set_yscale("log")
        rho = self.correlations.get(measure, {}).get(ablation)
        rho_text = "n/a" if rho is None else f"{rho:+.2f}"
        ax.set_title(f"{title}Spearman ρ = {rho_text}", fontsize=9)
        ax.set_xlabel(AXIS_LABELS.get(measure, measure), fontsize=8)
        ax.set_ylabel(AXIS_LABELS.get(ablation, ablation), fontsize=8)
        ax.grid(True, alpha=0.3, which="both")
        return ax

    def plot(
        self,
        measures: Sequence[str] = ("flow", "integrated_flow", "ig"),
        ablations: Sequence[str] = ABLATIONS,
        title: str | None = None,
    ) -> Any:
        """Scatter plots of each gradient measure (rows) against each ablation effect
        (columns); see :meth:`scatter`.

        Returns:
            A :class:`matplotlib.figure.Figure`.
        """
        from matplotlib.figure import Figure

        fig = Figure(
            figsize=(4.4 * len(ablations), 3.6 * len(measures)), layout="constrained"
        )
        axes = fig.subplots(len(measures), len(ablations), squeeze=False)
        for i, measure in enumerate(measures):
            for j, ablation in enumerate(ablations):
                self.scatter(axes[i][j], measure, ablation)
        if title:
            fig.suptitle(title, fontsize=10)
        return fig


#: Axis labels of the measures.
AXIS_LABELS = {
    "flow": "flow (plain gradient)",
    "integrated_flow": "integrated flow",
    "flow_x_delta": "max |flow × Δactivation|",
    "integrated_flow_x_delta": "max |integrated flow × Δactivation|",
    "atp": "|attribution patching estimate|",
    "ig": "|integrated gradients estimate|",
    "zero_ablation": "|Δ target|, zero ablation",
    "mean_ablation": "|Δ target|, mean ablation",
}


def short_name(component: str) -> str:
    """``layer.0.head.1`` → ``L0 h1``, ``layer.0.key`` → ``L0 key``."""
    return re.sub(r"^layer\.(\d+)\.", r"L\1 ", component).replace("head.", "h")


def _color(component: str) -> str:
    from ..visualization import BRANCH_COLORS

    kind = component.split(".")[2]
    return BRANCH_COLORS.get(kind, "#9467bd")


def _log_ready(values: list[float]) -> tuple[list[float], bool]:
    """Values for a log axis (non-positive ones at a floor a decade below the
    smallest positive value) and True; the values and False (a linear axis) when
    none is positive."""
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    if not positive:
        return values, False
    floor = min(positive) / 10
    return [v if v > 0 else floor for v in values], True


def compare_with_ablation(
    model: nn.Module,
    inputs: Tensor | tuple[Tensor, ...],
    components: Sequence[str | Component] | None = None,
    target: Target = None,
    additional_forward_args: Any = None,
    semiring: Semiring | str | None = None,
    n_steps: int = 16,
    method: str = "gausslegendre",
    baseline: str = "zero",
    batch_size: int = 256,
) -> AblationComparison:
    r"""Compare gradient-path measures of each component with the effect of ablating it.

    For each component (see :class:`Component` for the activation it names) and each
    example, with ``a`` the component's activation, ``a'`` the baseline activation and
    ``f`` the target:

    - **flow**: :math:`|\mathrm{fin}(\bigoplus_{e \in a} B[e])|`, the semiring sum over
      the activation's elements (all positions and the component's columns) of what
      flows from them to the target, at the actual activation. With the default
      ``MaxProduct("absolute")`` this is the magnitude of the top gradient path that
      starts in the component.
    - **integrated_flow**: the same, averaged with IG's weights over ``n_steps`` points
      :math:`a' + \alpha (a - a')` (only this component moves; the others keep their
      actual values), as :class:`~captum_semiring.SemiringLayerAttribution` does with
      baselines.
    - **flow_x_delta** / **integrated_flow_x_delta**: per element, the finalized flow
      (plain, or averaged along the line) times :math:`a' - a`; the largest magnitude
      over the elements.
    - **atp** / **ig**: :math:`|\sum (a' - a) \cdot g|` with the plain gradient at
      ``a`` (attribution patching) or the gradient averaged along the same line
      (integrated gradients, which by completeness tends to :math:`f(a') - f(a)`).
    - **zero_ablation** / **mean_ablation**: :math:`|f(a \to 0) - f(a)|` and
      :math:`|f(a \to \bar a) - f(a)|`, with :math:`\bar a` the mean of the
      activation over all ``inputs`` (per position and column), implemented with
      forward hooks that are removed even when the model raises.

    Each column is then the mean over the examples, and Spearman's rank correlation
    over the components compares every gradient measure with every ablation.

    Args:
        model (nn.Module): a Hugging Face BERT-style encoder (``BertModel``,
                    ``BertForSequenceClassification``, ``BertForMaskedLM``, ...); see
                    :func:`encoder_layers`. Keep it in eval mode (dropout would make
                    every forward pass different).
        inputs (Tensor or tuple[Tensor, ...]): the model's inputs, batch first (token
                    ids are fine), all of one sequence length (the mean ablation
                    averages per position).
        components (sequence of str, optional): names such as ``"layer.0.key"``,
                    ``"layer.0.skip"``, ``"layer.1.head.3"``. Default: all of them,
                    :func:`transformer_components`.
        target (int, tuple, Tensor, list or callable, optional): the scalar per
                    example. Captum's forms select from the output's ``logits`` (or
                    its first tensor): an int or tuple for every example, or a list /
                    1D tensor with one entry per example. A callable gets the model
                    output and returns shape ``(rows,)``; a callable of two arguments
                    also gets ``rows``, each row's index into ``inputs`` (batches are
                    chunked and repeated for the integration steps), to look up
                    per-example data such as a [MASK] position. Default: None.
        additional_forward_args (Any, optional): further arguments after the inputs;
                    tensors whose first axis is the batch are chunked and repeated
                    with them.
        semiring (Semiring or str, optional): the semiring of ``flow`` and
                    ``integrated_flow``. Default: ``MaxProduct("absolute")``.
        n_steps (int, optional): points of the path integral (> 1). Default: 16.
        method (str, optional): IG's approximation method. Default:
                    ``"gausslegendre"``.
        baseline (str, optional): where the integration starts, and which ablation
                    ``atp`` and ``ig`` estimate: ``"zero"`` or ``"mean"``.
                    Default: ``"zero"``.
        batch_size (int, optional): examples per recording (the integration records
                    ``n_steps`` times as many rows). Default: 256.

    Returns:
        An :class:`AblationComparison` with ``rows``, ``correlations``,
        ``per_example`` and ``plot()``.

    Examples::

        >>> from captum_semiring.analysis.ablation import (
        ...     compare_with_ablation, saturated_softmax_case)
        >>> case = saturated_softmax_case()
        >>> cmp = compare_with_ablation(case.model, case.inputs, target=case.target)
        >>> sorted(cmp.ranking("flow")[-2:])       # plain gradients: q and k look dead
        ['layer.0.key', 'layer.0.query']
        >>> cmp.ranking("zero_ablation")[-1]       # ablation: the skip matters least
        'layer.0.skip'
    """
    start = time.perf_counter()
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 2:
        raise ValueError(f"n_steps must be an integer >= 2; got {n_steps!r}")
    if method not in compat.APPROXIMATION_METHODS:
        raise ValueError(f"unknown method {method!r}")
    if baseline not in ("zero", "mean"):
        raise ValueError(f"baseline must be 'zero' or 'mean'; got {baseline!r}")
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    if getattr(model, "training", False):
        warnings.warn(
            "compare_with_ablation: the model is in training mode; dropout makes the "
            "ablation effects noisy (call model.eval())"
        )
    sr = MaxProduct("absolute") if semiring is None else get_semiring(semiring)
    xs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    args = compat.format_additional_forward_args(additional_forward_args)
    names = transformer_components(model) if components is None else list(components)
    comps = [resolve_component(model, name) for name in names]
    if len({c.name for c in comps}) != len(comps):
        raise ValueError(f"components repeat: {names}")
    batches = _Batches(xs, args, target, batch_size)
    n = batches.n

    # Actual activations, their means over all inputs, and the actual targets.
    clean_target, clean_acts = [], []
    sums: dict[str, Tensor] = {}
    with torch.no_grad():
        for chunk in batches.chunks():
            store: dict[str, Tensor] = {}
            with _captured(comps, store):
                clean_target.append(batches.run(model, chunk).detach())
            for comp in comps:
                if comp.name not in store:
                    raise ValueError(f"{comp.name} never ran in the forward pass")
                sums[comp.name] = sums.get(comp.name, 0) + store[
                    comp.name
                ].double().sum(0)
            clean_acts.append(store)
    means = {c.name: (sums[c.name] / n).to(clean_acts[0][c.name].dtype) for c in comps}
    f_clean = torch.cat(clean_target)

    bases = {
        c.name: torch.zeros_like(means[c.name]) if baseline == "zero" else means[c.name]
        for c in comps
    }
    # The plain (one-step) measures of all components come from one recording per
    # chunk; the integrals move one component at a time, so each has its own.
    plain = [
        _plain_flows(model, batches, chunk, comps, bases, sr)
        for chunk in batches.chunks()
    ]
    per_example: dict[str, dict[str, Tensor]] = {}
    for comp in comps:
        cols: dict[str, list[Tensor]] = {k: [] for k in (*MEASURES, *ABLATIONS)}
        for chunk, store, found in zip(batches.chunks(), clean_acts, plain):
            clean = store[comp.name]
            with torch.no_grad():
                for column, value in (
                    ("zero_ablation", torch.zeros_like(means[comp.name])),
                    ("mean_ablation", means[comp.name]),
                ):
                    with ablated(model, comp, value[..., comp.columns]):
                        cols[column].append(batches.run(model, chunk).detach())
            integrated = _flows(
                model,
                batches,
                chunk,
                comp,
                clean,
                bases[comp.name].expand_as(clean),
                sr,
                n_steps,
                method,
            )
            for columns, measured in (
                (("flow", "flow_x_delta", "atp"), found[comp.name]),
                (("integrated_flow", "integrated_flow_x_delta", "ig"), integrated),
            ):
                for column, value in zip(columns, measured):
                    cols[column].append(value)
        values = {k: torch.cat(v).double() for k, v in cols.items()}
        for column in ABLATIONS:
            values[column] = values[column] - f_clean.double()
        per_example[comp.name] = values

    rows, correlations = _summarize(per_example)
    return AblationComparison(
        rows,
        correlations,
        per_example,
        sr,
        n_steps,
        method,
        baseline,
        time.perf_counter() - start,
    )


# ----- the saturated softmax ----------------------------------------------------


@dataclass
class SaturatedCase:
    """A model, inputs and target where a saturated softmax hides a component from
    plain gradients; made by :func:`saturated_softmax_case`.

    Attributes:
        model: a one-layer ``BertModel`` with hand-set weights.
        inputs: token ids, shape ``(3, 4)``.
        target: a callable on the model output: position 0's final hidden state
            projected on the embedding of token 2.
        component: the hidden component, ``"layer.0.key"``.
        description: how it is built, in words.
    """

    model: Any
    inputs: Tensor
    target: Callable[[Any], Tensor]
    component: str
    description: str


def saturated_softmax_case(logit_gap: float = 20.0) -> SaturatedCase:
    """A one-layer, one-head BERT whose attention is saturated on one key.

    Hidden size 4, four tokens with orthonormal-like embeddings ``e0 = 0`` (padding),
    ``e1 = [1, 1, -1, -1]`` (the query token, always at position 0),
    ``e2 = [1, -1, 1, -1]`` (the attended token) and ``e3 = [1, -1, -1, 1]`` (filler);
    no position embeddings, so the embedding LayerNorm leaves them unchanged. The key
    and value projections are the identity, the query maps ``e1`` to
    ``c·e2`` with ``c`` chosen so that position 0's attention logit on ``e2`` exceeds
    all others by ``logit_gap``: its attention probability is ``1 − O(e^-gap)`` and the
    softmax's Jacobian, and with it every gradient into the queries and keys, is
    ``O(e^-gap)``. The attention output is the identity, the feed-forward block is
    zero, and the target reads position 0's final state along ``e2``: about 2.83, and
    0.73 when the keys (or queries) are zeroed and the attention becomes uniform.

    Args:
        logit_gap: the margin of the attended key's logit (20 puts the other keys'
            probabilities near 2e-9).

    Returns:
        A :class:`SaturatedCase`.

    Examples::

        >>> import torch
        >>> from captum_semiring.analysis.ablation import saturated_softmax_case
        >>> case = saturated_softmax_case()
        >>> with torch.no_grad():
        ...     out = case.model(case.inputs, output_attentions=True)
        >>> out.attentions[0][:, 0, 0].max(-1).values.min() > 1 - 1e-6
        tensor(True)
    """
    from transformers import BertConfig, BertModel

    hidden = 4
    config = BertConfig(
        vocab_size=4,
        hidden_size=hidden,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=4,
        max_position_embeddings=4,
        type_vocab_size=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=0,
    )
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = BertModel(config, add_pooling_layer=False).eval()
    e = torch.tensor([[0.0, 0, 0, 0], [1, 1, -1, -1], [1, -1, 1, -1], [1, -1, -1, 1]])
    eye = torch.eye(hidden)
    # logit(e1 -> e2) = (c·e2)·e2 / sqrt(head size 4) = 2c
    c = logit_gap / 2
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        emb = model.embeddings
        emb.word_embeddings.weight.copy_(e)
        emb.LayerNorm.weight.fill_(1.0)
        layer = model.encoder.layer[0]
        attn = layer.attention
        attn.self.query.weight.copy_(c / 4 * torch.outer(e[2], e[1]))
        attn.self.key.weight.copy_(eye)
        attn.self.value.weight.copy_(eye)
        attn.output.dense.weight.copy_(eye)
        attn.output.LayerNorm.weight.fill_(1.0)
        layer.output.LayerNorm.weight.fill_(1.0)  # the zero feed-forward adds nothing
    inputs = torch.tensor([[1, 2, 3, 3], [1, 3, 2, 3], [1, 3, 3, 2]])
    readout = e[2].clone()

    def target(output: Any) -> Tensor:
        return output.last_hidden_state[:, 0] @ readout

    description = (
        "one-layer, one-head BERT (hidden 4) with hand-set weights: position 0's query "
        f"attends to token 2 with a logit margin of {logit_gap:g}, so its attention "
        "probability is 1 - O(exp(-margin)) and the softmax passes (almost) no gradient "
        "to the queries and keys; zeroing the keys makes the attention uniform. The "
        "target is position 0's final hidden state along token 2's embedding."
    )
    return SaturatedCase(model, inputs, target, "layer.0.key", description)
