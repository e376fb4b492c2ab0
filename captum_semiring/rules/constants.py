"""Ops whose float outputs do not depend on the values they read.

Autograd does not track them (or, for ``detach``, is told not to), so a path ends
there and no rule is needed.
"""

from __future__ import annotations

import torch

from . import register_constant

aten = torch.ops.aten

register_constant(
    aten.detach.default,
    aten.zeros_like.default,
    aten.ones_like.default,
    aten.empty_like.default,
    aten.full_like.default,
    aten.rand_like.default,
    aten.randn_like.default,
    aten.new_zeros.default,
    aten.new_ones.default,
    aten.new_empty.default,
    aten.new_full.default,
    aten.new_empty_strided.default,
    aten.empty_strided.default,
    aten.bernoulli.p,
    aten.bernoulli.default,
)
