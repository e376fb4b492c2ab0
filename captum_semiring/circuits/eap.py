"""Edge attribution patching (EAP) and its integrated form (EAP-IG) on the same
component graph as the semiring flows, so that every method scores the same edges.

EAP scores an edge by the activation difference at its upstream write times the
gradient at its downstream read: :math:`(z_u - z'_u)^\\top \\, \\partial L /
\\partial x_v`. Here the difference is carried from the write to the read by the
ops between them, linearized (for a pre-LayerNorm model those are additions, so
this is the identity and the score is EAP's); the gradient is the read's own, one
per query, key and value of each head. EAP-IG averages that along the straight
line from the corrupted input to the clean one (Hanna et al., 2024).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from torch import Tensor

from .._record import RecordingError
from ..semirings import SumProduct
from .graph import ComponentGraph, EdgeScores, Env, trace


def check_same_graph(a: ComponentGraph, b: ComponentGraph, what: str) -> None:
    """Raise unless two recordings ran the same ops, so their nodes correspond."""
    ra, rb = a.graph.records, b.graph.records
    na, nb = a.graph.nodes, b.graph.nodes
    if (
        len(ra) != len(rb)
        or len(na) != len(nb)
        or any(x.func != y.func for x, y in zip(ra, rb))
        or any(x.shape != y.shape for x, y in zip(na, nb))
    ):
        raise RecordingError(
            f"the model ran different ops on the {what} input than on the clean one "
            f"({len(rb)} and {len(ra)} recorded calls); circuits compare runs of one "
            "computation, so give inputs of the same shape and padding"
        )


def write_differences(clean: ComponentGraph, other: ComponentGraph) -> dict[str, Env]:
    """Per component: clean minus other activation at its write, as SumProduct
    values (a head's part through its own slice of the attention output)."""
    sr = SumProduct()
    diff: Env = {}
    for c in clean.components:
        if c.write is None:
            continue
        for seed in c.write.seeds:
            n = seed.node
            if n not in diff:
                a = clean.graph.saved_tensor(n).detach()
                b = other.graph.saved_tensor(n).detach()
                diff[n] = (a - b)[None]
    return clean.write_values(sr, diff)


def eap(
    forward_func: Callable[..., Tensor],
    inputs: Tensor,
    corrupted: Tensor,
    additional_forward_args: Iterable[Any] = (),
) -> EdgeScores:
    """Edge attribution patching: per edge and example,
    :math:`(z_u - z'_u)^\\top \\partial L / \\partial x_v` at the clean input.

    Args:
        forward_func: one scalar per example (the metric) from the inputs.
        inputs: the clean input (the source, typically embeddings).
        corrupted: the corrupted input, of the same shape.
        additional_forward_args: more positional arguments, not sources.

    Returns:
        :class:`EdgeScores` (SumProduct values, method ``"eap"``).

    Examples::

        >>> import torch
        >>> from captum_semiring import circuits
        >>> from captum_semiring.reproductions.tasks import induction
        >>> model = induction.AttentionOnlyTransformer(induction.SMALL_CONFIG)
        >>> ids = induction.repeated_sequences(2, 10, 24, seed=0)
        >>> bad = induction.corrupt(ids, seed=1, keep_second_half=False)
        >>> f = lambda e: induction.target_logit(model, ids, inputs_embeds=e)
        >>> scores = circuits.eap(f, model.embed(ids), model.embed(bad))
        >>> scores.finalize().shape
        torch.Size([29, 2])
        >>> circuits.top_edges(scores, 3).edges[0].downstream in ("logits", "blocks.1.attn.head0")
        True
    """
    clean = trace(forward_func, inputs, additional_forward_args)
    other = trace(forward_func, corrupted, additional_forward_args)
    check_same_graph(clean, other, "corrupted")
    sr = SumProduct()
    return EdgeScores(
        clean.edges, clean.flows(sr, write_differences(clean, other)), sr, "eap"
    )


def eap_ig(
    forward_func: Callable[..., Tensor],
    inputs: Tensor,
    corrupted: Tensor,
    n_steps: int = 20,
    additional_forward_args: Iterable[Any] = (),
) -> EdgeScores:
    """EAP with integrated gradients: the gradient at each read (and the
    linearized ops between components) averaged over ``n_steps`` points
    :math:`x' + \\tfrac{k}{m}(x - x')`, :math:`k = 1..m`, times the clean minus
    corrupted activation at the write.

    Args:
        forward_func: one scalar per example (the metric) from the inputs.
        inputs: the clean input.
        corrupted: the corrupted input, of the same shape.
        n_steps: the number of points on the line.
        additional_forward_args: more positional arguments, not sources.

    Returns:
        :class:`EdgeScores` (SumProduct values, method ``"eap-ig"``).
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be at least 1, got {n_steps}")
    clean = trace(forward_func, inputs, additional_forward_args)
    other = trace(forward_func, corrupted, additional_forward_args)
    check_same_graph(clean, other, "corrupted")
    diff = write_differences(clean, other)
    total: Tensor | None = None
    for k in range(1, n_steps + 1):
        alpha = k / n_steps
        point = corrupted.detach() + alpha * (inputs.detach() - corrupted.detach())
        cg = (
            clean
            if k == n_steps
            else trace(forward_func, point, additional_forward_args)
        )
        check_same_graph(clean, cg, "interpolated")
        # the write differences live on the clean recording's nodes, which are the
        # same nodes in every recording of this computation
        flows = cg.flows(SumProduct(), diff)
        total = flows if total is None else total + flows
    assert total is not None
    return EdgeScores(clean.edges, total / n_steps, SumProduct(), "eap-ig")
