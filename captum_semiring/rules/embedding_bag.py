"""``EmbeddingBag``: a lookup and a per-bag sum, mean or max, from ops with rules.

The kernel's integer outputs (which bag each index falls in, bag sizes, the rows that
win each max) are taken from the kernel itself on detached values, so the
decomposition shares its conventions: padding rows and empty bags add nothing.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from . import register_decomposition

aten = torch.ops.aten
_SUM, _MEAN, _MAX = 0, 1, 2


@register_decomposition(aten._embedding_bag.default)
def embedding_bag(
    weight: Tensor,
    indices: Tensor,
    offsets: Tensor,
    scale_grad_by_freq: bool = False,
    mode: int = _SUM,
    sparse: bool = False,
    per_sample_weights: Tensor | None = None,
    include_last_offset: bool = False,
    padding_idx: int = -1,
) -> Any:
    if scale_grad_by_freq:
        return NotImplemented  # its gradient is scaled by counts: no path weight
    with torch.no_grad():
        _, offset2bag, bag_size, max_indices = aten._embedding_bag.default(
            weight.detach(),
            indices,
            offsets,
            False,
            mode,
            False,
            None if per_sample_weights is None else per_sample_weights.detach(),
            include_last_offset,
            padding_idx,
        )
    bags = bag_size.shape[0]
    if mode == _MAX:
        out = torch.gather(weight, 0, max_indices)
        out = torch.where((bag_size > 0)[:, None], out, 0.0)
        return out, offset2bag, bag_size, max_indices
    rows = weight.index_select(0, indices)
    if per_sample_weights is not None:
        rows = rows * per_sample_weights[:, None]
    if padding_idx >= 0:
        rows = torch.where((indices != padding_idx)[:, None], rows, 0.0)
    out = weight.new_zeros((bags, weight.shape[1])).index_add(0, offset2bag, rows)
    if mode == _MEAN:
        out = out / bag_size.clamp(min=1).to(out.dtype)[:, None]
    return out, offset2bag, bag_size, max_indices
