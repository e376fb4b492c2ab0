"""Scaled dot-product attention: PyTorch's math decomposition, with the kernel's
second output.

``F.scaled_dot_product_attention`` on CPU dispatches
``_scaled_dot_product_flash_attention_for_cpu``, whose outputs are the attention
and the row logsumexp. ``torch._decomp`` returns the attention weights in place of
the logsumexp; autograd saves that output for the kernel's own backward, so a
user's ``torch.autograd.grad`` inside a recording would read the wrong tensor. The
softmax of the decomposition is ``_safe_softmax`` (see ``rowwise``): rows whose keys
are all masked give zeros, as the kernel does.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch._decomp import decomposition_table

from . import register_decomposition

aten = torch.ops.aten
_FLASH_CPU = aten._scaled_dot_product_flash_attention_for_cpu.default


def _logsumexp(
    query: Tensor,
    key: Tensor,
    is_causal: bool,
    attn_mask: Tensor | None,
    scale: float | None,
) -> Tensor:
    """The kernel's logsumexp ``(batch, heads, L)`` of the scaled, masked scores; 0
    for rows with every key masked."""
    if key.shape[1] != query.shape[1]:  # grouped-query attention
        key = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)
    factor = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = (query @ key.transpose(-2, -1)) * factor
    if is_causal:
        keep = torch.ones(scores.shape[-2:], dtype=torch.bool).tril()
        scores = scores.masked_fill(~keep, -math.inf)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, -math.inf)
        else:
            scores = scores + attn_mask
    lse = torch.logsumexp(scores, dim=-1)
    return torch.where(torch.isinf(lse) & (lse < 0), 0.0, lse).to(query.dtype)


@register_decomposition(_FLASH_CPU)
def flash_attention_for_cpu(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    *,
    attn_mask: Tensor | None = None,
    scale: float | None = None,
) -> Any:
    output, _ = decomposition_table[_FLASH_CPU](
        query,
        key,
        value,
        dropout_p,
        is_causal,
        attn_mask=attn_mask,
        scale=scale,
    )
    with torch.no_grad():  # not a differentiable output: nothing to record
        lse = _logsumexp(query.detach(), key.detach(), is_causal, attn_mask, scale)
    return output, lse
